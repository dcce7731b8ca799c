r"""The ranking workflow as one library call: :func:`rank_zoo`.

dataset (a TFDS name, an image folder, or a directory of precomputed
``{model}_{dataset}_feature.npy`` / ``_label.npy`` pairs) -> backbones ->
features (cached) -> every applicable metric (``score_models(...,
on_error="record")``: a failing (metric, model) cell is recorded with its
reason, never aborts the ranking) -> agreement with fine-tune accuracies ->
a :class:`RankResult` that prints its tables and writes results.json,
results.csv and ranking.png.

Example (the offline zoo on Fashion-MNIST; about 5-6 minutes on a 2-core CPU):

  >>> import sfda_jax
  >>> result = sfda_jax.rank_zoo(sfda_jax.RankConfig())  # doctest: +SKIP
  >>> print(result.tables())  # doctest: +SKIP
  >>> result.write("outputs/rank")  # doctest: +SKIP

``python -m experiments.rank`` is this call with flags.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Sequence

from absl import logging
import numpy as np

from sfda_jax import checks
from sfda_jax import ensemble as ensemble_lib
from sfda_jax import environment
from sfda_jax import ranking
from sfda_jax import report
from sfda_jax import uncertainty
from sfda_jax.evaluation import ground_truth as ground_truth_lib
from sfda_jax.evaluation import priors as priors_lib
from sfda_jax.metrics import registry

__all__ = ["ZOOS", "RankConfig", "RankResult", "model_names", "rank_zoo",
           "rejudge"]

_LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
_BENCH_POOL = (tuple(f"{arch}{cut}" for arch in _LITES
                     for cut in ("", ":stage6", ":stage5", ":stage4"))
               + ("efficientnet_lite0@random", "pixels")
               + ("efficientnet_lite0:stage1", "efficientnet_lite0:stage2",
                  "efficientnet_lite0:stage3", "efficientnet_lite1:stage2",
                  "efficientnet_lite1:stage3", "efficientnet_lite2:stage2",
                  "efficientnet_lite2:stage3",
                  "efficientnet_lite0:stage2@random",
                  "efficientnet_lite0:stage3@random",
                  "efficientnet_lite0:stage4@random",
                  "efficientnet_lite0:stage5@random",
                  "efficientnet_lite0:stage6@random",
                  "efficientnet_lite2:stage6@random"))
# Chosen by zoo_benchmark.choose_bench_zoo from the committed ground truths
# (6 of 11 adjacent pairs resolved in both fine-tuning columns, 8 and 9 of
# 11 in the linear-probe ones; `python -m experiments.zoo_benchmark
# --choose_zoo` prints it again).
_BENCH_ZOO = ("efficientnet_lite0", "efficientnet_lite0:stage6",
              "efficientnet_lite1", "efficientnet_lite2",
              "efficientnet_lite0@random", "pixels",
              "efficientnet_lite0:stage1", "efficientnet_lite0:stage3",
              "efficientnet_lite2:stage2", "efficientnet_lite2:stage3",
              "efficientnet_lite0:stage2@random",
              "efficientnet_lite0:stage4@random")

#: Named model zoos for ``RankConfig.models``.
ZOOS = {
    "offline": ("efficientnet_lite0", "efficientnet_lite1",
                "efficientnet_lite2", "efficientnet_lite0@random"),
    # Issue 12's candidate pool (every model of the committed bench ground
    # truth): each offline network whole and cut after stages 6, 5 and 4
    # (pooled stage outputs), Lite0 also after stages 3, 2 and 1 and Lite1 /
    # Lite2 after 3 and 2, random-init controls (Lite0 whole and cut after
    # stages 2-6, Lite2 cut after stage 6) and the raw-pixel baseline.
    "bench_all": _BENCH_POOL,
    # The benchmark zoo: the subset of the pool whose fine-tuning and
    # linear-probe ground truths resolve the most adjacent pairs
    # (zoo_benchmark.choose_zoo on the committed files; a test checks it).
    "bench": _BENCH_ZOO,
    "online": ("hf:microsoft/resnet-50", "hf:google/vit-base-patch16-224",
               "hf:openai/clip-vit-base-patch32",
               "hf:facebook/dinov2-small"),
}


def model_names(spec: str | Sequence[str], dataset: str) -> list[str]:
  """Backbone names for ``spec``: a zoo name (``offline``, ``bench``,
  ``bench_all``, ``online``), ``auto`` (offline for fashion_mnist, digits
  and folders, online otherwise), a comma-separated string or a sequence
  of names.

  Raises:
    ValueError: no name.
  """
  if isinstance(spec, str):
    if spec == "auto":
      spec = "offline" if dataset in ("fashion_mnist", "digits") or (
          os.path.isdir(dataset)) else "online"
    spec = spec.split(",")
  # A zoo name inside a list expands in place ("bench,hf:..." works too).
  names = [n for item in spec if item.strip()
           for n in ZOOS.get(item.strip(), (item.strip(),))]
  if not names:
    raise ValueError("--models is empty.")
  return names


@dataclasses.dataclass(frozen=True)
class RankConfig:
  """What to rank and how (the flags of ``experiments.rank``).

  Attributes:
    dataset: TFDS name, image folder, or a directory of precomputed
      ``*_feature.npy`` / ``*_label.npy``.
    models: backbone names (``name@random``: a randomly initialised control),
      a comma-separated string, a zoo name (:data:`ZOOS`) or ``auto``.
    metrics: metric names (empty: every metric that applies), variants
      (``sfda_cv5``...) and set-level parts included.
    split: dataset split.
    num_examples: class-stratified subset size (0 or None: the whole split).
      The default, 2000, is >= 1.5 x the 1280-d features of the offline zoo:
      with N < D, SFDA saturates near 1 and H-score at K - 1 for every
      model, and their order is rounding noise.
    batch_size: extraction batch size.
    data_dir: TFDS data_dir.
    cache_dir: feature cache (None: ``~/.cache/sfda_jax``).
    ground_truth: a JSON of fine-tune accuracies, ``auto`` (the first
      complete committed file for the dataset that covers every model:
      ``ground_truth.COMMITTED``) or ``none``.
    features_dataset: dataset part of precomputed feature file names
      (inferred when unambiguous).
    dtype: backbone compute dtype, ``float32`` / ``bfloat16`` (None: bfloat16
      on accelerators, float32 on CPU).
    image_size: input resolution in px (0: each model's native one; None:
      the resolution the ground truth was fine-tuned at when its file states
      one, ``config.image_size``, else native). ``auto`` picks the bench
      ground truth for Fashion-MNIST and digits, fine-tuned at 32 px (about
      the images' own 28 px), so the default job scores at 32 px too; the
      112-px file of the offline zoo is
      ``ground_truth/fashion_mnist_efficientnet_lite.json``.
    seed: seed of the subset, random controls, NLEEP and the resamples.
    resamples: ``B`` paired resamples of 80% of the samples for score
      uncertainty (:func:`sfda_jax.resample_scores`); 0: none.
    ensemble: ``k >= 2``: also choose ``k`` models for an ensemble by SFDA's
      selection (:func:`sfda_jax.select_ensemble`); 0: off.
    priors: also score the data-free priors (ImageNet top-1, parameter
      count, leave-one-dataset-out where the ground truth has other
      datasets) and report their agreement beside the metrics'.
    skip_unreadable: an image folder's unreadable or undecodable images
      are left out (each logged, then the count) instead of stopping the
      run with an error naming the first
      (``sfda_jax.data.load(..., skip_unreadable=True)``).
  """
  dataset: str = "fashion_mnist"
  models: str | Sequence[str] = "auto"
  metrics: Sequence[str] = ()
  split: str = "train"
  num_examples: int | None = 2000
  batch_size: int = 32
  data_dir: str | None = None
  cache_dir: str | None = None
  ground_truth: str = "auto"
  features_dataset: str | None = None
  dtype: str | None = None
  image_size: int | None = None
  seed: int = 0
  resamples: int = 4
  priors: bool = True
  ensemble: int = 0
  skip_unreadable: bool = False

  def validate(self) -> None:
    """Raises ValueError for an unknown metric, a batch size or subset
    size that is not a positive int, or ``resamples`` that is neither 0 nor
    >= 2 (before any work)."""
    checks.positive_int(self.batch_size, "batch_size")
    if self.image_size:
      checks.positive_int(self.image_size, "image_size",
                          none_means="the ground truth's or native")
    if self.resamples != 0 and (isinstance(self.resamples, bool) or
                                not isinstance(self.resamples, int) or
                                self.resamples < 2):
      raise ValueError(f"resamples must be 0 (off) or an int >= 2, got "
                       f"{self.resamples!r}.")
    if self.num_examples != 0:
      checks.positive_int(self.num_examples, "num_examples",
                          none_means="the whole split")
    if self.metrics:
      ranking.metric_names(self.metrics)      # unknown names: ValueError
    if self.ensemble != 0 and (isinstance(self.ensemble, bool) or
                               not isinstance(self.ensemble, int) or
                               self.ensemble < 2):
      raise ValueError(f"ensemble must be 0 (off) or an int >= 2 (the "
                       f"ensemble size), got {self.ensemble!r}.")


@dataclasses.dataclass
class RankResult:
  """Everything one ranking produced.

  Attributes:
    dataset, split, num_examples: what was scored.
    models: the ranked models, sorted.
    scores: ``{metric: {model: score or None}}`` (``None``: a failed cell).
    failures: ``{metric: {model: reason}}`` of the failed cells.
    num_scored: cells that scored.
    ground_truth: ``{model: fine-tune accuracy}`` or None.
    ground_truth_file: where it came from.
    agreement: ``{metric: statistics}`` (:func:`sfda_jax.agreement`; with
      resampling also ``weighted_tau_mean/_p5/_p95`` over the resamples;
      with priors ``margin_over_best_prior`` in weighted tau).
    agreement_skipped: ``{metric: reason}`` for metrics without agreement.
    resampling: :class:`sfda_jax.ResampleResult` or None.
    priors: :class:`priors.PriorScores` or None.
    prior_agreement: ``{prior: statistics}``.
    image_size: the input resolution scored at (0: each model's native).
    timings: seconds per extraction, for scoring and in total.
    versions: :func:`sfda_jax.environment.record`.
    paths: the files :meth:`write` wrote.
    ground_truth_note: what is wrong with the ground truth's per-seed
      accuracies (models lacking seeds), or None.
    ensemble: the :class:`sfda_jax.EnsembleResult` of ``config.ensemble``,
      or None; ``ensemble_error`` says why it could not be chosen.
  """
  dataset: str
  split: str
  num_examples: int
  models: list[str]
  scores: dict[str, dict[str, float | None]]
  failures: dict[str, dict[str, str]]
  num_scored: int
  ground_truth: dict[str, float] | None
  ground_truth_file: str | None
  agreement: dict[str, dict[str, float]]
  agreement_skipped: dict[str, str]
  timings: dict[str, float]
  versions: dict[str, Any]
  image_size: int = 0
  resampling: uncertainty.ResampleResult | None = None
  priors: priors_lib.PriorScores | None = None
  prior_agreement: dict[str, dict[str, float]] = dataclasses.field(
      default_factory=dict)
  paths: list[str] = dataclasses.field(default_factory=list)
  ground_truth_note: str | None = None
  ensemble: ensemble_lib.EnsembleResult | None = None
  ensemble_error: str | None = None

  @property
  def num_failed(self) -> int:
    return sum(len(v) for v in self.failures.values())

  def tables(self) -> str:
    """One ranking table per metric, then the agreement table (if any)."""
    r = self.resampling
    parts = [report.ranking_table(
        metric, per_model, self.ground_truth, self.failures.get(metric),
        std=r.std.get(metric) if r else None,
        p_above=r.p_above.get(metric) if r else None) + "\n"
             for metric, per_model in self.scores.items()]
    if r is not None:
      parts.append(f"(+- std over {r.resamples} paired resamples of "
                   f"{r.num_samples} of the samples; P>next: the share of "
                   "resamples ranking a model above the next one; "
                   "'unresolved' when it is between 0.1 and 0.9)\n")
    if self.agreement or self.agreement_skipped:
      n = len(self.models)
      trivial = {key for row in [*self.agreement.values(),
                                 *self.prior_agreement.values()]
                 for key in row if key.startswith("rel@")
                 and int(key[4:]) >= n - 1}

      def shown(rows):
        return {name: {k: v for k, v in row.items() if k not in trivial}
                for name, row in rows.items()}
      note = ("(pearson is linear in the raw scores, so one far-off model, "
              "e.g. a random control, can dominate it: read weighted tau "
              "first" + (f"; {', '.join(sorted(trivial))} left out: with "
                         f"{n} models the top {n - 1} nearly always hold the "
                         "best one" if trivial else "") + ")")
      parts.append("agreement with fine-tune accuracy\n"
                   + report.agreement_table(shown(self.agreement),
                                            self.agreement_skipped,
                                            shown(self.prior_agreement))
                   + "\n" + note + "\n")
    if self.ground_truth_note:
      parts.append(f"ground truth: {self.ground_truth_note}\n")
    if self.priors is not None and self.priors.omitted:
      parts.append("priors left out: " + "; ".join(
          f"{p} ({why})" for p, why in self.priors.omitted.items()) + "\n")
    advice = self.recommendation()
    if advice:
      parts.append(advice + "\n")
    if self.ensemble is not None or self.ensemble_error:
      parts.append(self.ensemble_text() + "\n")
    return "\n".join(parts)

  def ensemble_text(self) -> str:
    """The chosen ensemble, step by step (or why there is none)."""
    if self.ensemble is None:
      return f"ensemble: not chosen ({self.ensemble_error})"
    e = self.ensemble
    lines = [f"ensemble of {len(e.models)} (SFDA selection: r = {e.r:g} x "
             f"min-max SFDA + {1 - e.r:g} x min-max complementarity in the "
             "Fisher space)"]
    for i, (m, step, com) in enumerate(zip(e.models, e.step_scores,
                                           e.complementarity)):
      lines.append(f"  {i + 1}. {m:<28} sfda {e.sfda[m]:.4f}  criterion "
                   f"{step:.3f}  T_com {com:.3f}")
    return "\n".join(lines)

  def recommendation(self) -> str:
    """Which model to pick, by which metrics, how resolved, and how far
    the ground truth can be trusted (empty when nothing scored)."""
    votes: dict[str, list[str]] = {}
    for metric, per_model in self.scores.items():
      scored = {m: v for m, v in per_model.items() if v is not None}
      if scored:
        top = max(scored.values())
        leaders = sorted(m for m, v in scored.items() if v == top)
        if len(leaders) == 1:                  # a tie picks nobody
          votes.setdefault(leaders[0], []).append(metric)
    if not votes:
      return ""
    counted = sum(len(v) for v in votes.values())
    most = max(len(v) for v in votes.values())
    leaders = sorted(m for m, v in votes.items() if len(v) == most)
    if len(leaders) > 1:              # no alphabetical tie-break either
      return "\n".join(["recommendation", "  no clear pick: " + "; ".join(
          f"{m} is ranked first by {', '.join(votes[m])}" for m in leaders)
          + f" ({most} of {counted} metrics each)"])
    pick = leaders[0]
    lines = ["recommendation",
             f"  pick {pick}: ranked first by {len(votes[pick])} of "
             f"{counted} metrics ({', '.join(votes[pick])})"]
    others = [f"{m} by {', '.join(v)}" for m, v in sorted(votes.items())
              if m != pick]
    if others:
      lines.append("  ranked first instead: " + "; ".join(others))
    r = self.resampling
    if r is not None:
      stab = [r.top1_stability[m] for m in votes[pick]
              if m in r.top1_stability]
      if stab:
        lines.append(f"  resolved: {pick} stays first in "
                     f"{min(stab):.0%}-{max(stab):.0%} of the {r.resamples} "
                     "resamples of those metrics" if min(stab) < max(stab)
                     else f"  resolved: {pick} stays first in {stab[0]:.0%} "
                     f"of the {r.resamples} resamples of those metrics")
    if self.agreement:
      # Metrics that scored every model first: LEEP / NCE rank only the
      # models with a classifier head, an easier question.
      whole = {m: row for m, row in self.agreement.items()
               if sum(v is not None for v in self.scores[m].values())
               == len(self.models)} or self.agreement
      tau = max(row["weighted_tau"] for row in whole.values())
      best = [m for m, row in whole.items() if row["weighted_tau"] == tau]
      line = (f"  on this ground truth the best metric"
              + (f"s were {', '.join(best)}" if len(best) > 1 else
                 f" was {best[0]}") + f" (weighted tau {tau:.3f})")
      if self.prior_agreement:
        prior = max(sorted(self.prior_agreement),
                    key=lambda p: self.prior_agreement[p]["weighted_tau"])
        ptau = self.prior_agreement[prior]["weighted_tau"]
        line += (f"; the best data-free prior, {prior}, reaches {ptau:.3f}"
                 + (" (as good or better: the metrics add nothing here)"
                    if ptau >= tau else ""))
      lines.append(line)
      weak = self._weak_ground_truth()
      if weak:
        lines.append("  caveat: " + weak)
    return "\n".join(lines)

  def _weak_ground_truth(self) -> str | None:
    """A caveat when the ground truth's two best models are within 2 seed
    std of each other (their order is noise), else None."""
    acc = self.ground_truth or {}
    if len(acc) < 2:
      return None
    top = ground_truth_lib.adjacent_pairs(
        acc, ground_truth_lib.seed_std(self.ground_truth_file,
                                       self.dataset))[0]
    if top["noise"] is None or top["resolved"]:
      return None
    first, second = top["upper"], top["lower"]
    return (f"the ground truth does not separate its two best models "
            f"({first} {acc[first]:.4f} vs {second} {acc[second]:.4f}, gap "
            f"{top['gap']:.4f} <= 2 seed std {top['noise']:.4f}): which of "
            "them is better is not known, so agreement at the top is partly "
            "noise")

  def payload(self) -> dict[str, Any]:
    """The results.json content."""
    return {
        "dataset": self.dataset, "split": self.split,
        "num_examples": self.num_examples, "models": self.models,
        "image_size": self.image_size or "native",
        "metrics": list(self.scores), "scores": self.scores,
        "failures": self.failures,
        "ground_truth": self.ground_truth,
        "ground_truth_file": self.ground_truth_file,
        "ground_truth_note": self.ground_truth_note,
        "agreement": self.agreement or None,
        "agreement_skipped": self.agreement_skipped,
        "resampling": (self.resampling.to_json()
                       if self.resampling is not None else None),
        "priors": (None if self.priors is None else {
            "scores": self.priors.scores, "omitted": self.priors.omitted,
            "agreement": self.prior_agreement or None}),
        "timings": self.timings, "versions": self.versions,
        "recommendation": self.recommendation() or None,
        "ensemble": (None if self.ensemble is None else {
            "models": list(self.ensemble.models),
            "step_scores": list(self.ensemble.step_scores),
            "complementarity": list(self.ensemble.complementarity),
            "r": self.ensemble.r}),
        "ensemble_error": self.ensemble_error,
    }

  def write(self, output_dir: str) -> list[str]:
    """Writes results.json, results.csv and ranking.png atomically to
    ``output_dir``; returns (and keeps in ``paths``) their paths."""
    self.paths = report.write_results(output_dir, self.payload())
    return self.paths

  def check(self) -> None:
    """Logs the failed cells; raises ValueError when no cell scored."""
    if self.failures:
      logging.warning(report.failure_summary(self.failures, self.num_scored))
    if not self.num_scored:
      where = f"; reasons in {self.paths[0]}" if self.paths else ""
      raise ValueError(f"no (metric, model) cell could be scored "
                       f"({self.num_failed} failed{where}).")


def _is_features_dir(dataset: str) -> bool:
  return os.path.isdir(dataset) and any(
      f.endswith("_feature.npy") for f in os.listdir(dataset))


def rank_zoo(config: RankConfig, output_dir: str | None = None
             ) -> RankResult:
  """Ranks ``config.models`` on ``config.dataset`` with every metric.

  Bad input (an unknown metric, backbone or suffix, a ground truth that
  misses a model, an unwritable ``output_dir``) raises before any data is
  loaded or feature extracted. A (metric, model) cell that cannot be scored
  is recorded in ``failures`` and the rest still runs.

  Args:
    config: what to rank.
    output_dir: when given, checked writable first and the results are
      written there at the end (:meth:`RankResult.write`).

  Returns:
    The :class:`RankResult` (even when no cell scored: see
    :meth:`RankResult.check`).

  Raises:
    ValueError: bad input, as above.
    OSError: a missing dataset, an unreachable hub.
  """
  config.validate()
  if output_dir is not None:
    report.check_output_dir(output_dir)        # before any extraction
  timings: dict[str, float] = {}
  source_probs = {}
  size = 0
  start = time.perf_counter()
  if _is_features_dir(config.dataset):
    dataset_name, feats, labels = report.load_features_dir(
        config.dataset, config.features_dataset)
    feats = _select_precomputed(feats, config, labels.shape[0])
    split, num_examples = "precomputed", int(labels.shape[0])
    _check_resamples(config, labels)
    gt_file, accuracies = ground_truth_lib.resolve(
        config.ground_truth, dataset_name, feats)
  else:
    # pylint: disable-next=g-import-not-at-top
    from sfda_jax import backbones, data, features
    data.check_name(config.dataset)      # a typo, before choosing the zoo
    names = model_names(config.models, config.dataset)
    gt_file, accuracies = ground_truth_lib.resolve(     # before extraction
        config.ground_truth, config.dataset, names)
    size = _image_size(config.image_size, gt_file)
    bbs = {name: backbones.resized(backbones.get(
        name, dtype=config.dtype, seed=config.seed), size)
           for name in names}                           # fail fast
    ds = data.load(config.dataset, split=config.split,
                   num_examples=config.num_examples or None,
                   data_dir=config.data_dir, seed=config.seed,
                   skip_unreadable=config.skip_unreadable)
    dataset_name, split, num_examples = config.dataset, config.split, len(ds)
    _check_labels_and_heads(config, ds.labels, bbs,     # before extraction
                            getattr(ds, "class_names", None))
    _check_resamples(config, ds.labels)
    feats, labels = {}, None
    for name, bb in bbs.items():
      res = features.extract(bb, ds, batch_size=config.batch_size,
                             cache_dir=config.cache_dir)
      feats[name], labels = res.features, res.labels
      if res.source_logits is not None:
        source_probs[name] = res.source_probs
      timings[f"extract/{name}"] = res.seconds
  if config.ensemble and config.ensemble > len(feats):
    raise ValueError(f"ensemble={config.ensemble} asks for more models than "
                     f"the {len(feats)} ranked ({sorted(feats)}).")
  metrics = list(config.metrics) or [
      m for m in ranking.ALL_METRICS
      if m in ranking.FEATURE_METRICS or source_probs]
  if any(m in ranking.SOURCE_METRICS for m in metrics) and not source_probs:
    raise ValueError("leep/nce need models with a classifier head; none "
                     f"of {sorted(feats)} has one.")
  t0 = time.perf_counter()
  scored = ranking.score_models(feats, labels, metrics=metrics,
                                source_probs_by_model=source_probs,
                                seed=config.seed, on_error="record")
  timings["scoring"] = time.perf_counter() - t0
  scores = scored.table()                       # None for a failed cell
  resampling = None
  resampled = [m for m in metrics
               if registry.get(m).inputs == "features"]
  if config.resamples and resampled:
    t0 = time.perf_counter()
    import tqdm  # pylint: disable=g-import-not-at-top
    cells = sum(len(scored.scores[m]) for m in resampled)
    with tqdm.tqdm(total=cells, unit="cell",
                   desc=f"resampling ({config.resamples} x)") as bar:
      resampling = uncertainty.resample_scores(
          feats, labels, metrics=resampled, resamples=config.resamples,
          seed=config.seed, full=scored,
          progress=lambda m, n: (bar.set_postfix_str(f"{m} / {n}"),
                                 bar.update()))
    timings["resampling"] = time.perf_counter() - t0
  chosen, ensemble_error = None, None
  if config.ensemble:
    t0 = time.perf_counter()
    try:
      chosen = ensemble_lib.select_ensemble(feats, labels, config.ensemble)
    except ValueError as e:              # e.g. a model SFDA cannot score
      ensemble_error = ranking._one_line(e)  # pylint: disable=protected-access
      logging.warning("no ensemble chosen: %s", ensemble_error)
    timings["ensemble"] = time.perf_counter() - t0
  judged = _judge(scores, resampling, sorted(feats), gt_file, dataset_name,
                  accuracies, config.priors)
  timings["total"] = time.perf_counter() - start
  result = RankResult(
      dataset=dataset_name, split=split, num_examples=num_examples,
      models=sorted(feats), scores=scores, failures=scored.failures,
      num_scored=scored.num_scored,
      timings=timings, versions=environment.record(("flax",)),
      image_size=size, resampling=resampling, ensemble=chosen,
      ensemble_error=ensemble_error, **judged)
  if output_dir is not None:
    result.write(output_dir)
  return result


def _select_precomputed(feats: dict, config: RankConfig, n: int) -> dict:
  """A features directory's models filtered by ``config.models`` (unless
  ``auto``: all of them); ``num_examples`` does not subsample precomputed
  features, which is said when it would have."""
  if not (isinstance(config.models, str) and config.models == "auto"):
    wanted = model_names(config.models, config.dataset)
    unknown = [m for m in wanted if m not in feats]
    if unknown:
      raise ValueError(f"--models names {unknown}, which have no features in "
                       f"{config.dataset}; it has {sorted(feats)}.")
    feats = {m: feats[m] for m in wanted}
  if config.num_examples and config.num_examples < n:
    logging.warning(
        "a features directory is scored whole: all %d samples, not "
        "num_examples=%d (--num_examples; precomputed features are not "
        "subsampled; pass --num_examples=0 to silence this).", n,
        config.num_examples)
  return feats


def _judge(scores, resampling, models, gt_file, dataset_name, accuracies,
           priors: bool) -> dict:
  """The ground-truth half of a :class:`RankResult` (agreement, its draws,
  priors, seed note) from the scores: what :func:`rejudge` recomputes for
  another ground truth without scoring again."""
  agreement, skipped = (report.agreement_by_metric(scores, accuracies)
                        if accuracies else ({}, {}))
  seed_note = None
  if accuracies:
    seed_table, seed_note = _seed_accuracies(gt_file, dataset_name,
                                             accuracies)
    if seed_note:
      logging.warning("ground truth %s: %s", gt_file, seed_note)
    _add_agreement_draws(agreement, scores, resampling, accuracies,
                         seed_table)
  prior_scores, prior_agreement = None, {}
  if priors:
    try:
      prior_scores = priors_lib.prior_scores(
          models, accuracies=_other_datasets(gt_file, dataset_name),
          target=dataset_name)
    except ValueError as e:       # e.g. another dataset with equal accuracies
      partial = priors_lib.prior_scores(models)
      prior_scores = priors_lib.PriorScores(
          scores=partial.scores,
          omitted={**partial.omitted, "lodo": ranking._one_line(e)})  # pylint: disable=protected-access
    for prior, why in prior_scores.omitted.items():
      logging.info("prior %s left out: %s", prior, why)
    if accuracies:
      prior_agreement = {p: ranking.agreement(s, accuracies)
                         for p, s in prior_scores.scores.items()}
      if prior_agreement:
        best = max(a["weighted_tau"] for a in prior_agreement.values())
        for row in agreement.values():
          row["margin_over_best_prior"] = row["weighted_tau"] - best
  return dict(ground_truth=accuracies, ground_truth_file=gt_file,
              agreement=agreement, agreement_skipped=skipped,
              priors=prior_scores, prior_agreement=prior_agreement,
              ground_truth_note=seed_note)


def rejudge(result: RankResult, ground_truth: str,
            priors: bool = True) -> RankResult:
  """``result`` judged against another ground-truth file: the same scores
  and resamples (nothing is extracted or scored again), with the agreement,
  its intervals, the priors and the seed note recomputed.

  Raises:
    ValueError: what ``ground_truth`` resolution raises (e.g. the file has
      no accuracy for a ranked model).
  """
  gt_file, accuracies = ground_truth_lib.resolve(ground_truth,
                                                 result.dataset,
                                                 result.models)
  return dataclasses.replace(result, **_judge(
      result.scores, result.resampling, list(result.models), gt_file,
      result.dataset, accuracies, priors))


def _check_labels_and_heads(config: RankConfig, labels, bbs,
                            class_names=None) -> None:
  """Before any extraction: the subset's labels can be scored (>= 2
  classes, >= 2 samples per class) and metrics that read a classifier's
  outputs (LEEP, NCE), when asked for by name, have a model with one."""
  from sfda_jax.metrics import _validation  # pylint: disable=g-import-not-at-top
  named = np.asarray(labels)
  if class_names is not None and len(class_names) > int(named.max(initial=0)):
    named = np.asarray([str(c) for c in class_names])[named]  # errors name them
  try:
    _validation.encode_labels(named)
  except ValueError as e:
    raise ValueError(f"the {len(labels)} images of {config.dataset!r} "
                     f"(split {config.split!r}) cannot be scored: {e}") from None
  asked = [m for m in config.metrics if m in ranking.SOURCE_METRICS]
  if asked and not any(bb.num_source_classes for bb in bbs.values()):
    raise ValueError(f"{'/'.join(asked)} need models with a classifier head; "
                     f"none of {sorted(bbs)} has one (drop them from "
                     "--metrics, or add a model with an ImageNet head).")


def _check_resamples(config: RankConfig, labels) -> None:
  """Raises the resampling's ValueError (a class too small for 80%
  subsets) before any extraction or scoring."""
  if config.resamples:
    names, codes = np.unique(np.asarray(labels), return_inverse=True)
    try:
      uncertainty.resample_indices(codes.reshape(-1), config.resamples, 0.8,
                                   config.seed, class_names=list(names))
    except ValueError as e:
      raise ValueError(f"{e} Or rank without resampling: resamples=0 "
                       "(--resamples=0).") from None


def _add_agreement_draws(agreement, scores, resampling, accuracies,
                         seed_accuracies) -> None:
  """Weighted tau per draw: mean and 5-95% interval, per metric.

  A draw pairs a score resample ``b`` with the fine-tune seed
  ``seeds[b % S]`` when the ground truth has per-seed accuracies (so both
  sources of noise enter); without resampling the draws are the seeds with
  the full-data scores; with neither nothing is added.
  """
  seeds = seed_accuracies or [accuracies]
  for metric in agreement:
    per_model = resampling.values.get(metric, {}) if resampling else {}
    names = [m for m, v in scores[metric].items() if v is not None]
    if per_model and len(per_model) >= 2:
      names = list(per_model)
      draws = [({m: float(per_model[m][b]) for m in names},
                seeds[b % len(seeds)]) for b in range(resampling.resamples)]
    elif seed_accuracies and len(names) >= 2:
      draws = [({m: scores[metric][m] for m in names}, acc) for acc in seeds]
    else:
      continue
    taus = [ranking.weighted_tau(s, {m: acc[m] for m in s})
            for s, acc in draws]
    agreement[metric].update(
        weighted_tau_mean=float(np.mean(taus)),
        weighted_tau_p5=float(np.percentile(taus, 5)),
        weighted_tau_p95=float(np.percentile(taus, 95)),
        weighted_tau_draws=len(taus))


def _seed_accuracies(gt_file, dataset, accuracies):
  """``([{model: accuracy}] per fine-tune seed, note)`` from the ground
  truth's ``accuracy_seeds``: the table when every ranked model has the
  same >= 2 seeds, else ``None``; ``note`` says which models lack which
  seeds (their means average fewer seeds than the others'), or is None."""
  seeds = _document(gt_file).get("accuracy_seeds", {})
  per_model = seeds.get(report.dataset_key(seeds, dataset)) if isinstance(
      seeds, dict) else None
  if not per_model:
    return None, None
  no_seeds = sorted(set(accuracies) - set(per_model))
  seed_sets = {m: set(per_model[m]) for m in accuracies if m in per_model}
  every = set.union(*seed_sets.values()) if seed_sets else set()
  lacking = {m: sorted(every - s, key=int) for m, s in seed_sets.items()
             if s != every}
  if no_seeds or lacking:
    parts = ([f"no per-seed accuracies for {no_seeds}"] if no_seeds else [])
    parts += [f"{m} lacks seed(s) {', '.join(v)}" for m, v in lacking.items()]
    return None, ("seeds differ between models: " + "; ".join(parts)
                  + f" (of seeds {sorted(every, key=int)}); agreement "
                  "intervals leave the fine-tune seeds out")
  common = sorted(every, key=int)
  if len(common) < 2:
    return None, None
  return [{m: float(per_model[m][s]) for m in accuracies}
          for s in common], None


def _other_datasets(gt_file: str | None, dataset: str):
  """The ground-truth file's whole ``{dataset: {model: accuracy}}`` table
  when it holds a dataset other than ``dataset`` (for the lodo prior);
  otherwise None."""
  table = _document(gt_file).get("accuracies", {})
  if not isinstance(table, dict) or not all(
      isinstance(row, dict) for row in table.values()):
    return None
  key = report.dataset_key(table, dataset)
  if key is not None and key != dataset:       # the same folder, spelt
    table = {(dataset if k == key else k): v for k, v in table.items()}
  return table if set(table) - {dataset} else None


def _image_size(requested: int | None, gt_file: str | None) -> int:
  """The input resolution: ``requested`` (0 = native), or for None the
  ground truth file's ``config.image_size`` (0 when it states none)."""
  if requested is not None:
    return int(requested)
  size = _document(gt_file).get("config", {}).get("image_size")
  return int(size) if isinstance(size, int) and size > 0 else 0


def _document(gt_file: str | None) -> dict:
  """The ground-truth file's JSON (``{}`` for none): the extra fields the
  agreement uses beside ``resolve``'s accuracies (other datasets for lodo,
  per-seed accuracies, the fine-tune resolution)."""
  if gt_file is None:
    return {}
  import json  # pylint: disable=g-import-not-at-top
  with open(gt_file) as f:
    doc = json.load(f)
  return doc if isinstance(doc, dict) else {}
