r"""The ranking workflow as one library call: :func:`rank_zoo`.

dataset (a TFDS name, an image folder, or a directory of precomputed
``{model}_{dataset}_feature.npy`` / ``_label.npy`` pairs) -> backbones ->
features (cached) -> every applicable metric (``score_models(...,
on_error="record")``: a failing (metric, model) cell is recorded with its
reason, never aborts the ranking) -> agreement with fine-tune accuracies ->
a :class:`RankResult` that prints its tables and writes results.json,
results.csv and ranking.png.

Example (the offline zoo on Fashion-MNIST; about 6 minutes on a CPU):

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

from sfda_jax import checks
from sfda_jax import environment
from sfda_jax import ranking
from sfda_jax import report
from sfda_jax.evaluation import ground_truth as ground_truth_lib

__all__ = ["ZOOS", "RankConfig", "RankResult", "model_names", "rank_zoo"]

#: Named model zoos for ``RankConfig.models``.
ZOOS = {
    "offline": ("efficientnet_lite0", "efficientnet_lite1",
                "efficientnet_lite2", "efficientnet_lite0@random"),
    "online": ("hf:microsoft/resnet-50", "hf:google/vit-base-patch16-224",
               "hf:openai/clip-vit-base-patch32",
               "hf:facebook/dinov2-small"),
}


def model_names(spec: str | Sequence[str], dataset: str) -> list[str]:
  """Backbone names for ``spec``: a zoo name (``offline``, ``online``),
  ``auto`` (offline for fashion_mnist and folders, online otherwise), a
  comma-separated string or a sequence of names.

  Raises:
    ValueError: no name.
  """
  if isinstance(spec, str):
    if spec == "auto":
      spec = "offline" if dataset == "fashion_mnist" or os.path.isdir(
          dataset) else "online"
    spec = ZOOS.get(spec) or spec.split(",")
  names = [m.strip() for m in spec if m.strip()]
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
    metrics: metric names (empty: every metric that applies).
    split: dataset split.
    num_examples: class-stratified subset size (0 or None: the whole split).
    batch_size: extraction batch size.
    data_dir: TFDS data_dir.
    cache_dir: feature cache (None: ``~/.cache/sfda_jax``).
    ground_truth: a JSON of fine-tune accuracies, ``auto`` (the committed one
      for the dataset when it covers every model) or ``none``.
    features_dataset: dataset part of precomputed feature file names
      (inferred when unambiguous).
    dtype: backbone compute dtype, ``float32`` / ``bfloat16`` (None: bfloat16
      on accelerators, float32 on CPU).
    seed: seed of the subset, random controls and NLEEP.
  """
  dataset: str = "fashion_mnist"
  models: str | Sequence[str] = "auto"
  metrics: Sequence[str] = ()
  split: str = "train"
  num_examples: int | None = 1000
  batch_size: int = 32
  data_dir: str | None = None
  cache_dir: str | None = None
  ground_truth: str = "auto"
  features_dataset: str | None = None
  dtype: str | None = None
  seed: int = 0

  def validate(self) -> None:
    """Raises ValueError for an unknown metric or a batch size or subset
    size that is not a positive int (before any work)."""
    checks.positive_int(self.batch_size, "batch_size")
    if self.num_examples != 0:
      checks.positive_int(self.num_examples, "num_examples",
                          none_means="the whole split")
    unknown = [m for m in self.metrics if m not in ranking.ALL_METRICS]
    if unknown:
      raise ValueError(f"unknown metric(s) {unknown}; valid: "
                       f"{', '.join(ranking.ALL_METRICS)}")


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
    agreement: ``{metric: statistics}`` (:func:`sfda_jax.agreement`).
    agreement_skipped: ``{metric: reason}`` for metrics without agreement.
    timings: seconds per extraction, for scoring and in total.
    versions: :func:`sfda_jax.environment.record`.
    paths: the files :meth:`write` wrote.
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
  paths: list[str] = dataclasses.field(default_factory=list)

  @property
  def num_failed(self) -> int:
    return sum(len(v) for v in self.failures.values())

  def tables(self) -> str:
    """One ranking table per metric, then the agreement table (if any)."""
    parts = [report.ranking_table(metric, per_model, self.ground_truth,
                                  self.failures.get(metric)) + "\n"
             for metric, per_model in self.scores.items()]
    if self.agreement or self.agreement_skipped:
      parts.append("agreement with fine-tune accuracy\n"
                   + report.agreement_table(self.agreement,
                                            self.agreement_skipped) + "\n")
    return "\n".join(parts)

  def payload(self) -> dict[str, Any]:
    """The results.json content."""
    return {
        "dataset": self.dataset, "split": self.split,
        "num_examples": self.num_examples, "models": self.models,
        "metrics": list(self.scores), "scores": self.scores,
        "failures": self.failures,
        "ground_truth": self.ground_truth,
        "ground_truth_file": self.ground_truth_file,
        "agreement": self.agreement or None,
        "agreement_skipped": self.agreement_skipped,
        "timings": self.timings, "versions": self.versions,
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
  start = time.perf_counter()
  if _is_features_dir(config.dataset):
    dataset_name, feats, labels = report.load_features_dir(
        config.dataset, config.features_dataset)
    split, num_examples = "precomputed", int(labels.shape[0])
    gt_file, accuracies = ground_truth_lib.resolve(
        config.ground_truth, dataset_name, feats)
  else:
    # pylint: disable-next=g-import-not-at-top
    from sfda_jax import backbones, data, features
    names = model_names(config.models, config.dataset)
    gt_file, accuracies = ground_truth_lib.resolve(     # before extraction
        config.ground_truth, config.dataset, names)
    bbs = {name: backbones.get(name, dtype=config.dtype, seed=config.seed)
           for name in names}                           # fail fast
    ds = data.load(config.dataset, split=config.split,
                   num_examples=config.num_examples or None,
                   data_dir=config.data_dir, seed=config.seed)
    dataset_name, split, num_examples = config.dataset, config.split, len(ds)
    feats, labels = {}, None
    for name, bb in bbs.items():
      res = features.extract(bb, ds, batch_size=config.batch_size,
                             cache_dir=config.cache_dir)
      feats[name], labels = res.features, res.labels
      if res.source_logits is not None:
        source_probs[name] = res.source_probs
      timings[f"extract/{name}"] = res.seconds
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
  agreement, skipped = (report.agreement_by_metric(scores, accuracies)
                        if accuracies else ({}, {}))
  timings["total"] = time.perf_counter() - start
  result = RankResult(
      dataset=dataset_name, split=split, num_examples=num_examples,
      models=sorted(feats), scores=scores, failures=scored.failures,
      num_scored=scored.num_scored, ground_truth=accuracies,
      ground_truth_file=gt_file, agreement=agreement,
      agreement_skipped=skipped, timings=timings,
      versions=environment.record(("flax",)))
  if output_dir is not None:
    result.write(output_dir)
  return result
