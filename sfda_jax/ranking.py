"""Many models x many metrics -> a score table; agreement with fine-tuning.

``score_models`` scores a zoo in as few compiled calls as possible: models
whose features share a shape are stacked and each metric runs once, vmapped
over the model axis; with ``on_error="record"`` a (metric, model) cell that
cannot be scored is recorded with its reason (:class:`ScoreResult`) instead
of ending the call. ``agreement`` compares a metric's ranking with fine-tune
accuracies (weighted Kendall tau from scipy, Kendall tau, Pearson, rel@k,
top-1 hit).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from absl import logging

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _validation
from sfda_jax.metrics import registry

__all__ = ["FEATURE_METRICS", "SOURCE_METRICS", "ALL_METRICS", "ON_ERROR",
           "ScoreResult", "score_models", "agreement", "weighted_tau",
           "kendall_tau", "pearson", "rel_at_k", "top1_hit"]


#: Metrics computed from features and target labels (from the registry).
FEATURE_METRICS = registry.FEATURE_METRICS
#: Metrics that need the source model's classifier outputs.
SOURCE_METRICS = registry.SOURCE_METRICS
#: Every metric, in the registry's order.
ALL_METRICS = registry.ALL_METRICS


@functools.lru_cache(maxsize=None)
def _batched_fn(metric: str, num_args: int, static: tuple):
  """One jitted call scoring a stack of models ``[M, N, D]``.

  On GPU/TPU the models are vmapped (one batched pass). On CPU they are
  scored one after another inside the same call (``lax.map``): a CPU has no
  idle lanes for a batch to fill, and the batched products and looped
  factorizations measured 27% slower than separate calls (3 models, N=10000,
  D=2048, C=100; BUILD_NOTES.md).
  """
  core = functools.partial(registry.REGISTRY[metric].core, **dict(static))
  return jax.jit(lambda stacked, *args: batch_map(
      lambda x: core(x, *args), stacked))


def batch_map(fn: Callable, xs: Any) -> Any:
  """``fn`` over the leading axis of the pytree ``xs``, inside jit:
  ``lax.map`` on CPU, ``vmap`` elsewhere (see :func:`_batched_fn` for why).
  The one batching rule of ``score_models`` and ``resample_scores``."""
  return lax.platform_dependent(
      xs, cpu=lambda v: lax.map(fn, v), default=lambda v: jax.vmap(fn)(v))


#: ``score_models(on_error=...)`` values.
ON_ERROR = ("raise", "record")


@dataclasses.dataclass(frozen=True)
class ScoreResult:
  """What ``score_models(..., on_error="record")`` returns.

  Attributes:
    scores: ``{metric: {model: score}}`` of the cells that scored (a metric
      none of whose cells scored maps to ``{}``); finite floats only, ready
      for :func:`agreement`.
    failures: ``{metric: {model: reason}}`` of the cells that raised a
      ``ValueError``, the reason being its message on one line; only metrics
      with a failed cell appear.
    models: every model given, in input order.
    parts: ``{part: {model: value}}`` of the per-model parts of the
      set-level metrics asked for (``etran_energy``...) that were not asked
      for by name; what ``resample_scores(full=...)`` reuses.
  """
  scores: dict[str, dict[str, float]]
  failures: dict[str, dict[str, str]]
  models: tuple[str, ...]
  parts: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

  @property
  def num_scored(self) -> int:
    """How many (metric, model) cells scored."""
    return sum(len(v) for v in self.scores.values())

  @property
  def num_failed(self) -> int:
    """How many (metric, model) cells failed."""
    return sum(len(v) for v in self.failures.values())

  def table(self) -> dict[str, dict[str, float | None]]:
    """``{metric: {model: score or None}}``: every attempted cell, ``None``
    where it failed (models without source probabilities are absent from
    ``leep``/``nce``), models in input order."""
    out = {}
    for metric, per_model in self.scores.items():
      failed = self.failures.get(metric, {})
      out[metric] = {m: per_model.get(m) for m in self.models
                     if m in per_model or m in failed}
    return out


def _one_line(error: Exception) -> str:
  """An exception's message on one line (its type name if it has none)."""
  return " ".join(str(error).split()) or type(error).__name__


class _Cells:
  """Scores and failures of a ``score_models`` call, cell by cell.

  ``guard(metric, models)`` runs a block for those cells: in "raise" mode a
  ValueError propagates; in "record" mode it becomes each cell's failure.
  Only ValueError is recorded: it is the metrics' contract for "this input
  cannot be scored" (constant features, a non-finite score, ...); any other
  exception is a bug or an environment problem and always propagates.
  """

  def __init__(self, metrics: Sequence[str], on_error: str):
    self.record = on_error == "record"
    self.scores: dict[str, dict[str, float]] = {m: {} for m in metrics}
    self.failures: dict[str, dict[str, str]] = {}

  def fail(self, metric: str, models: Sequence[str], error: ValueError):
    if not self.record:
      raise error
    for model in models:
      self.failures.setdefault(metric, {})[model] = _one_line(error)

  @contextlib.contextmanager
  def guard(self, metric: str, models: Sequence[str]):
    try:
      yield
    except ValueError as e:
      self.fail(metric, models, e)


def _feature_scales(feats: Mapping[str, jax.Array], metrics: Sequence[str],
                    enc: _validation.EncodedLabels, options: Mapping[str, dict],
                    cells: _Cells) -> dict[str, dict[str, float]]:
  """The value checks of every (feature metric, model) cell, as the metric's
  own wrapper runs them (``_runner.check_cell``: NaN/Inf, the metric's own
  input check, constant features, magnitude range), from one summary per
  model.

  Returns:
    ``{metric: {model: scale}}`` for the cells that passed: the power of two
    to multiply the features by (1.0 but for scale-invariant metrics with
    out-of-range values; see ``check_feature_values``). The others are
    failed in ``cells``.
  """
  scales: dict[str, dict[str, float]] = {m: {} for m in metrics}
  if not metrics:
    return scales
  for name, x in feats.items():
    try:
      _validation.check_finite_features(x, f"features of model {name!r}")
      summary = _validation.feature_value_summary(x)
    except ValueError as e:
      for metric in metrics:
        cells.fail(metric, [name], e)
      continue
    for metric in metrics:
      with cells.guard(metric, [name]):
        scales[metric][name] = _runner.check_cell(
            registry.REGISTRY[metric], x, enc, summary, options[metric], name)
  return scales


def _scaled(x: jax.Array, scale: float) -> jax.Array:
  return x if scale == 1.0 else x * jnp.asarray(scale, x.dtype)


def _score_batched(metric: str, feats: Mapping[str, jax.Array],
                   scales: Mapping[str, float],
                   enc: _validation.EncodedLabels, options: Mapping[str, Any],
                   cells: _Cells) -> None:
  """Scores the models in ``scales`` with a batched metric, one call per
  group of equal feature shapes, into ``cells``.

  A non-finite score fails only its model's cell. When a group's call
  raises a ValueError in "record" mode, its models are rescored one at a
  time, so only the offending model's cell fails.
  """
  spec = registry.REGISTRY[metric]
  prepared = spec.prepare(enc, **options)
  rows = prepared.rows
  args = [jnp.asarray(a) for a in prepared.args]
  fn = _batched_fn(metric, len(args), tuple(sorted(prepared.static.items())))
  n = enc.codes.shape[0]

  def run(names):
    stacked = jnp.stack([_scaled(feats[m], scales[m]) for m in names])
    if rows is not None and rows.shape[0] != n:
      stacked = stacked[:, jnp.asarray(rows)]
    return np.asarray(fn(stacked, *args))

  groups = collections.defaultdict(list)
  for name in scales:
    groups[(feats[name].shape, feats[name].dtype)].append(name)
  for names in groups.values():
    try:
      values = run(names)
    except ValueError as e:
      if len(names) == 1 or not cells.record:
        cells.fail(metric, names, e)
        continue
      values = None                    # one model at a time: only it fails
    for i, name in enumerate(names):
      with cells.guard(metric, [name]):
        v = values[i] if values is not None else run([name])[0]
        cells.scores[metric][name] = _runner.finish(spec, v, name)


def metric_options(specs: Mapping[str, Any], seed: int) -> dict[str, dict]:
  """Each metric's options: its defaults, with ``seed`` in the option it
  seeds (NLEEP's mixture), checked."""
  return {m: spec.options(**({spec.seeded_option: seed}
                             if spec.seeded_option else {}))
          for m, spec in specs.items()}


def checked_features(features_by_model: Mapping[str, Any], labels: Any
                     ) -> tuple[dict[str, jax.Array],
                                _validation.EncodedLabels]:
  """The structure checks of every model's features, then the labels, as
  the single-metric functions order them; one row per label.

  Returns:
    ``({model: features}, encoded labels)``; values (NaN, range) are checked
    per cell later.
  """
  feats = {name: _validation.check_features(
      f, name=f"features of model {name!r}", check_values=False)
           for name, f in features_by_model.items()}
  enc = _validation.encode_labels(labels)
  n = enc.codes.shape[0]
  for name, x in feats.items():
    if x.shape[0] != n:
      raise ValueError(f"length mismatch: features of model {name!r} have "
                       f"{x.shape[0]} rows but labels has {n} entries.")
  return feats, enc


#: Metrics that saturate when samples do not outnumber feature dimensions
#: (a full-rank within-class scatter / Gram is then singular: SFDA -> 1,
#: H-score -> K - 1, LogME's evidence stops separating models).
SATURATING_METRICS = ("sfda", "hscore", "logme")


def saturation_warning(shapes: Mapping[str, tuple[int, ...]],
                       metrics: Sequence[str]) -> str | None:
  """A warning when ``N <= D`` for a model scored by a metric of
  :data:`SATURATING_METRICS` (``shapes``: ``{model: (N, D)}``), naming the
  fix; None otherwise."""
  hit = [m for m in metrics if m in SATURATING_METRICS]
  small = {name: shape for name, shape in shapes.items()
           if len(shape) == 2 and shape[0] <= shape[1]}
  if not hit or not small:
    return None
  worst = max(shape[1] for shape in small.values())
  models = ", ".join(f"{name} (N={shape[0]}, D={shape[1]})"
                     for name, shape in sorted(small.items()))
  return (f"{', '.join(hit)} saturate when samples do not outnumber feature "
          f"dimensions (N <= D), so their scores may not separate models: "
          f"{models}. Score at least 1.5 x D = {int(1.5 * worst)} samples "
          f"(experiments.rank: --num_examples={int(1.5 * worst)}) or compare "
          "with a metric that reduces dimensions first (gbc, parc, nleep, "
          "transrate).")


def metric_names(metrics: str | Sequence[str]) -> tuple[str, ...]:
  """``metrics`` as a tuple of known metric names: a sequence of names, or a
  string holding one name or several separated by commas (``"sfda"`` is one
  metric, not four letters).

  Raises:
    ValueError: no name, or a name not in :data:`ALL_METRICS`.
  """
  if isinstance(metrics, str):
    metrics = metrics.split(",")
  names = tuple(str(m).strip() for m in metrics)
  if not names or not all(names):
    raise ValueError(f"metrics must name at least one metric (empty names "
                     f"are not allowed), got {metrics!r}; "
                     f"{registry.valid_names()}.")
  unknown = [m for m in names if m not in registry.KNOWN_METRICS]
  if unknown:
    raise ValueError(f"unknown metric(s) {unknown}; "
                     f"{registry.valid_names()}.")
  return names


def combine_set_metrics(metrics: Sequence[str],
                        scores: dict[str, dict[str, Any]],
                        failures: dict[str, dict[str, str]],
                        models: Sequence[str], cells: "_Cells") -> None:
  """Adds each set-level metric of ``metrics`` to ``cells`` from its parts'
  ``scores`` (values may be ``[B]`` arrays): the models whose every part
  scored are min-max combined; a model with a failed part fails with that
  part's reason; fewer than 2 such models fail them all."""
  for name in metrics:
    if name not in registry.SET_REGISTRY:
      continue
    spec = registry.SET_REGISTRY[name]
    ok = [m for m in models if all(m in scores[p] for p in spec.parts)]
    for m in models:
      failed = [p for p in spec.parts if m in failures.get(p, {})]
      if failed and m not in ok:
        cells.fail(name, [m], ValueError(
            f"part {failed[0]}: {failures[failed[0]][m]}"))
    if len(ok) < 2:
      if ok:
        cells.fail(name, ok, ValueError(
            f"{name} is a set-level metric (a min-max over the candidate "
            f"models) and needs at least 2 scored models, got {ok}."))
      continue
    cells.scores[name] = spec.combine(
        {p: {m: scores[p][m] for m in ok} for p in spec.parts})


def split_parts(metrics: Sequence[str], cells: "_Cells"
                ) -> dict[str, dict[str, Any]]:
  """Removes from ``cells`` the parts scored only for a set-level metric
  (not named in ``metrics``) and returns their scores."""
  parts = {}
  for m in list(cells.scores):
    if m in registry.PART_METRICS and m not in metrics:
      parts[m] = cells.scores.pop(m)
      cells.failures.pop(m, None)
  return parts


def score_models(features_by_model: Mapping[str, Any], labels: Any,
                 metrics: Sequence[str] = FEATURE_METRICS,
                 source_probs_by_model: Mapping[str, Any] | None = None,
                 seed: int = 0, on_error: str = "raise"
                 ) -> dict[str, dict[str, float]] | ScoreResult:
  """Scores every model with every metric.

  Args:
    features_by_model: ``{model: features [N, D_model]}``; all share the
      target labels. Models with equal feature shapes are scored together in
      one vmapped call per metric.
    labels: ``[N]`` target class ids (any; remapped).
    metrics: names from :data:`ALL_METRICS` (set-level ones such as
      ``etran`` included: their parts are scored per model, then min-max
      combined over the models whose every part scored) or the parts
      themselves (``registry.PART_METRICS``).
    source_probs_by_model: ``{model: source probabilities [N, Z]}`` for the
      models that have a classifier head; ``leep`` and ``nce`` score only
      those models.
    seed: seed for NLEEP's mixture initialisation (PARC subsamples with 0).
    on_error: what a (metric, model) cell that cannot be scored does (a
      ``ValueError``: NaN/Inf or constant features, magnitudes out of range,
      a non-finite score, ...). ``"raise"`` (default): the error propagates.
      ``"record"``: the cell is recorded as failed with the error's message
      and every other cell is still scored; when a batched call for models
      of one shape raises, those models are rescored one at a time, so only
      the offending model's cell fails.

  Errors that concern every cell raise in both modes, before any scoring:
  unknown metric names, an invalid ``on_error``, no models, invalid labels,
  features or source probabilities that are not non-empty 2-D numeric arrays
  with one row per label, source probabilities for models without features.
  Exceptions other than ``ValueError`` (bugs, out-of-memory errors) always
  propagate.

  Features are checked as the single-metric functions check them: NaN/Inf
  values and constant features raise (or fail the model's cells), and
  scale-invariant metrics (H-score, regularized H-score, GBC, PARC) rescale
  features whose magnitude is out of range by an exact power of two.
  Every metric runs with its library defaults (``registry.REGISTRY[m]
  .defaults``; GBC on the first 64 principal components, as in the GBC
  paper and ``sfda_jax.gbc``), and each cell goes through the checks of the
  single-metric function (``metrics/_runner.py``), so a cell's score or error
  message is the single call's (the message naming the model).

  Returns:
    ``"raise"``: ``{metric: {model: score}}``, higher is better for every
    metric. ``"record"``: a :class:`ScoreResult` (``.scores`` in that form
    holding the cells that scored, ``.failures`` ``{metric: {model:
    reason}}``).

  Example:
    >>> import numpy as np, sfda_jax
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 20)
    >>> feats = {"good": rng.normal(size=(60, 8)) + 3 * np.eye(8)[y],
    ...          "bad": rng.normal(size=(60, 8))}
    >>> table = sfda_jax.score_models(feats, y, metrics=("sfda", "logme"))
    >>> table["sfda"]["good"] > table["sfda"]["bad"]
    True
    >>> feats["flat"] = np.ones((60, 8))
    >>> result = sfda_jax.score_models(feats, y, metrics=("sfda",),
    ...                                on_error="record")
    >>> sorted(result.scores["sfda"]), list(result.failures["sfda"])
    (['bad', 'good'], ['flat'])
  """
  metrics = metric_names(metrics)
  if on_error not in ON_ERROR:
    raise ValueError(f"on_error must be one of {list(ON_ERROR)}, got "
                     f"{on_error!r}.")
  if not features_by_model:
    raise ValueError("features_by_model is empty.")
  source_probs_by_model = dict(source_probs_by_model or {})
  extra = sorted(set(source_probs_by_model) - set(features_by_model))
  if extra:
    raise ValueError(f"source_probs_by_model names models without features: "
                     f"{extra}.")
  requested = metrics
  metrics = registry.expand(requested)       # set-level names -> parts
  specs = {m: registry.REGISTRY[m] for m in metrics}
  options = metric_options(specs, seed)
  feats, enc = checked_features(features_by_model, labels)
  n = enc.codes.shape[0]
  for name, p in source_probs_by_model.items():
    shape = np.shape(p)
    if len(shape) != 2 or shape[0] != n:
      raise ValueError(f"source_probs of model {name!r} must be [{n}, Z] "
                       f"(one row per label), got shape {tuple(shape)}.")

  warning = saturation_warning({k: tuple(v.shape) for k, v in feats.items()},
                               metrics)
  if warning:
    logging.warning("%s", warning)
  cells = _Cells(metrics, on_error)
  feature_metrics = [m for m in metrics if specs[m].inputs == "features"]
  # Every feature cell's value check runs before any heavy work.
  scales = _feature_scales(feats, feature_metrics, enc, options, cells)
  for metric, spec in specs.items():
    if spec.inputs == "features" and spec.batched:
      _score_batched(metric, feats, scales[metric], enc, options[metric],
                     cells)
    elif spec.inputs == "features":
      for name in scales[metric]:
        with cells.guard(metric, [name]):
          x = _scaled(feats[name], scales[metric][name])
          cells.scores[metric][name] = _runner.finish(
              spec, _runner.compute(spec, x, enc, **options[metric]), name)
    else:
      for name, p in source_probs_by_model.items():
        with cells.guard(metric, [name]):
          if spec.inputs == "source_labels":     # NCE: the argmax labels
            p = np.asarray(jnp.argmax(jnp.asarray(p), axis=1))
          source = _runner.validate_source(spec, p, enc)
          cells.scores[metric][name] = _runner.finish(
              spec, _runner.compute(spec, source, enc, **options[metric]),
              name)
  combine_set_metrics(requested, cells.scores, cells.failures, list(feats),
                      cells)
  parts = split_parts(requested, cells)
  cells.scores = {m: cells.scores.get(m, {}) for m in requested}
  if not cells.record:
    return cells.scores
  return ScoreResult(scores=cells.scores, failures=cells.failures,
                     models=tuple(feats), parts=parts)


# ---------------------------------------------------------------------------
# Agreement with fine-tuning accuracy.


def _aligned(scores: Mapping[str, float], accuracies: Mapping[str, float]
             ) -> tuple[list[str], np.ndarray, np.ndarray]:
  missing = sorted(set(scores) - set(accuracies))
  if missing:
    raise ValueError(f"ground truth has no accuracy for model(s) {missing}; "
                     f"it has {sorted(accuracies)}.")
  models = sorted(scores)
  if len(models) < 2:
    raise ValueError(f"need at least 2 models to compare rankings, got "
                     f"{models}.")
  s = np.array([float(scores[m]) for m in models])
  a = np.array([float(accuracies[m]) for m in models])
  if not (np.all(np.isfinite(s)) and np.all(np.isfinite(a))):
    raise ValueError("scores and accuracies must be finite.")
  return models, s, a


def weighted_tau(scores: Mapping[str, float],
                 accuracies: Mapping[str, float]) -> float:
  """``scipy.stats.weightedtau(scores, accuracies)`` with its defaults.

  Hyperbolic weigher, ``rank=True``: swaps among the top models weigh most.
  NaN when either side is constant (the correlation is undefined).
  """
  _, s, a = _aligned(scores, accuracies)
  return float(scipy.stats.weightedtau(s, a).statistic)


def kendall_tau(scores: Mapping[str, float],
                accuracies: Mapping[str, float]) -> float:
  """Kendall's tau-b between scores and accuracies (NaN if one is constant)."""
  _, s, a = _aligned(scores, accuracies)
  return float(scipy.stats.kendalltau(s, a).statistic)


def pearson(scores: Mapping[str, float],
            accuracies: Mapping[str, float]) -> float:
  """Pearson correlation of scores and accuracies (NaN if one is constant)."""
  _, s, a = _aligned(scores, accuracies)
  if np.ptp(s) == 0 or np.ptp(a) == 0:
    return float("nan")
  return float(scipy.stats.pearsonr(s, a).statistic)


def rel_at_k(scores: Mapping[str, float], accuracies: Mapping[str, float],
             k: int) -> float:
  """Best accuracy among the top-``k`` scored models / best accuracy overall
  (models tied at the ``k``-th score are taken worst accuracy first)."""
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}.")
  _, s, a = _aligned(scores, accuracies)
  return float(a[_top_no_tie_credit(s, a, k)].max() / a.max())


def _top_no_tie_credit(s: np.ndarray, a: np.ndarray, k: int) -> np.ndarray:
  """Indices of the top-``k`` scores where models with tied scores are
  taken worst accuracy first: a tie the metric cannot break earns no credit
  (an alphabetical or positional tie-break would hand it out by name)."""
  return np.lexsort((a, -s))[:k]


def top1_hit(scores: Mapping[str, float],
             accuracies: Mapping[str, float]) -> bool:
  """Whether the top-scored model has the best accuracy (tied best
  accuracies count; models tied for the top score must all have it)."""
  _, s, a = _aligned(scores, accuracies)
  return bool(a[_top_no_tie_credit(s, a, 1)[0]] == a.max())


def agreement(scores: Mapping[str, float], accuracies: Mapping[str, float],
              ks: Sequence[int] = (1, 3)) -> dict[str, float]:
  """All agreement statistics of one metric's scores with fine-tune accuracy.

  Returns:
    ``{"weighted_tau", "kendall_tau", "pearson", "rel@1", "rel@3", "top1_hit"}``
    (one ``rel@k`` per entry of ``ks``).
  """
  out = {"weighted_tau": weighted_tau(scores, accuracies),
         "kendall_tau": kendall_tau(scores, accuracies),
         "pearson": pearson(scores, accuracies)}
  for k in ks:
    out[f"rel@{k}"] = rel_at_k(scores, accuracies, k)
  out["top1_hit"] = float(top1_hit(scores, accuracies))
  return out
