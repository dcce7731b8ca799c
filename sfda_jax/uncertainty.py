"""Score uncertainty by resampling the scoring set (METRICS.md, "Score
uncertainty").

``resample_scores`` scores every model on ``B`` resamples of the target set,
the SAME index sets for every model (paired), and reports per model the mean,
std and 5th/95th percentiles, per pair of models P(a above b), and per metric
the top-1 stability (the fraction of resamples whose best model is the
full-data best). Two models whose P(a above b) lies between 0.1 and 0.9 are
not resolved by that metric on this data.

Resamples are class-stratified (`sfda_jax.metrics.sampling`, the package's
one rounding rule) subsets of ``round(fraction * N)`` samples, without
replacement by default (duplicate rows would distort scatter matrices); with
``replace=True`` each class's quota is drawn with replacement (a stratified
bootstrap). Every class keeps at least 2 samples in every resample, or the
call raises before any scoring.

Each metric with a batched kernel runs as one compiled call per feature
shape over all ``B`` resamples (``lax.map`` on CPU, ``vmap`` on GPU/TPU, as
``score_models`` batches models); NLEEP (host-side k-means/EM steps) runs its
compiled steps once per resample.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sfda_jax import ranking
from sfda_jax.metrics import _runner, _validation, registry, sampling

__all__ = ["ResampleResult", "resample_indices", "resample_scores"]


@dataclasses.dataclass(frozen=True)
class ResampleResult:
  """What :func:`resample_scores` returns.

  Attributes:
    scores: ``{metric: {model: full-data score}}`` (the cells that scored).
    values: ``{metric: {model: [B] scores on the resamples}}``.
    mean, std, p5, p95: ``{metric: {model: float}}`` over the resamples
      (``std`` with ``ddof=1``).
    p_above: ``{metric: {a: {b: P(score_a > score_b)}}}`` over the
      resamples, for every ordered pair of distinct models.
    top1_stability: ``{metric: fraction of resamples whose best model is the
      full-data best}``.
    failures: ``{metric: {model: reason}}`` of the cells that could not be
      scored (on the full data or on some resample).
    resamples, fraction, replace, seed: the settings.
    num_samples: rows per resample.
  """
  scores: dict[str, dict[str, float]]
  values: dict[str, dict[str, np.ndarray]]
  mean: dict[str, dict[str, float]]
  std: dict[str, dict[str, float]]
  p5: dict[str, dict[str, float]]
  p95: dict[str, dict[str, float]]
  p_above: dict[str, dict[str, dict[str, float]]]
  top1_stability: dict[str, float]
  failures: dict[str, dict[str, str]]
  resamples: int
  fraction: float
  replace: bool
  seed: int
  num_samples: int

  def unresolved(self, metric: str, low: float = 0.1, high: float = 0.9
                 ) -> list[tuple[str, str]]:
    """Adjacent pairs ``(a, b)`` of the full-data ranking (a above b) whose
    order the resamples do not resolve: ``low <= P(a above b) <= high``."""
    order = sorted(self.scores[metric], key=self.scores[metric].get,
                   reverse=True)
    order = [m for m in order if m in self.values.get(metric, {})]
    return [(a, b) for a, b in zip(order, order[1:])
            if low <= self.p_above[metric][a][b] <= high]

  def to_json(self) -> dict[str, Any]:
    """A JSON-ready dict (arrays as lists)."""
    out = dataclasses.asdict(self)
    out["values"] = {m: {k: [float(v) for v in a] for k, a in per.items()}
                     for m, per in self.values.items()}
    return out


def _check_settings(resamples, fraction, replace, seed):
  if (isinstance(resamples, bool) or not isinstance(resamples,
                                                    (int, np.integer))
      or resamples < 2):
    raise ValueError(f"resamples must be an int >= 2 (a spread needs two "
                     f"draws), got {resamples!r}.")
  if (isinstance(fraction, bool)
      or not isinstance(fraction, (int, float, np.floating))
      or not 0.0 < float(fraction) <= 1.0):
    raise ValueError(f"fraction must be a number in (0, 1] (the share of "
                     f"the samples each resample keeps), got {fraction!r}.")
  if not isinstance(replace, (bool, np.bool_)):
    raise ValueError(f"replace must be a bool, got {replace!r}.")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise ValueError(f"seed must be an int, got {seed!r}.")


def resample_indices(codes: np.ndarray, resamples: int = 32,
                     fraction: float = 0.8, seed: int = 0,
                     replace: bool = False,
                     class_names: Sequence[Any] | None = None) -> np.ndarray:
  """``[B, n]`` row indices of ``B`` class-stratified resamples.

  ``n = round(fraction * N)``; class ``k`` gets its largest-remainder quota
  of ``n`` (`sampling.stratified_quotas`) in every resample. Resample ``b``
  draws with ``numpy.random.default_rng([seed, b])``, so a resample does not
  depend on how many others are drawn.

  Raises:
    ValueError: bad settings, or a class that would keep fewer than 2
      samples (naming it and its count).
  """
  _check_settings(resamples, fraction, replace, seed)
  codes = np.asarray(codes).reshape(-1)
  counts = np.bincount(codes)
  n = int(round(float(fraction) * codes.shape[0]))
  floor = (n * counts) // codes.shape[0]
  short = np.flatnonzero(floor < 2)
  if short.size:
    k = int(short[0])
    name = class_names[k] if class_names is not None else k
    name = name.item() if isinstance(name, np.generic) else name
    raise ValueError(
        f"fraction={fraction} keeps about {n} of {codes.shape[0]} samples, "
        f"which leaves class {name!r} ({counts[k]} samples) with fewer than "
        f"2 per resample ({len(short)} class(es) affected): raise fraction "
        "or score more samples.")
  out = np.empty((resamples, n), np.int64)
  for b in range(resamples):
    rng = np.random.default_rng([int(seed), b])
    quotas = sampling.stratified_quotas(counts, n, rng)
    out[b] = sampling.draw_per_class(codes, quotas, rng, replace=replace)
  return out


def _subset(enc, rows):
  """The encoded labels of ``rows`` (every class is present in a resample,
  so codes and classes stay those of the full set)."""
  return _validation.EncodedLabels(codes=enc.codes[rows], classes=enc.classes)


@functools.lru_cache(maxsize=None)
def _resampled_fn(metric: str, static: tuple):
  """One jitted call: the metric's core on ``x[idx[b]]`` for every ``b``."""
  core = functools.partial(registry.REGISTRY[metric].core, **dict(static))
  return jax.jit(lambda x, idx, *args: ranking.batch_map(
      lambda item: core(x[item[0]], *item[1]), (idx, args)))


def _resample_batched(spec, x, enc, idx, options):
  """``[B]`` scores of a batched metric, one compiled call."""
  prepared = [spec.prepare(_subset(enc, i), **options) for i in idx]
  static = prepared[0].static
  rows = [p.rows for p in prepared]
  eff = np.stack([i if r is None or r.shape[0] == i.shape[0] else i[r]
                  for i, r in zip(idx, rows)])
  args = [jnp.stack([jnp.asarray(p.args[j]) for p in prepared])
          for j in range(len(prepared[0].args))]
  fn = _resampled_fn(spec.name, tuple(sorted(static.items())))
  return np.asarray(fn(x, jnp.asarray(eff), *args))


def resample_scores(features_by_model: Mapping[str, Any], labels: Any,
                    metrics: Sequence[str] = ("sfda", "logme"),
                    resamples: int = 32, fraction: float = 0.8,
                    seed: int = 0, replace: bool = False,
                    full: ranking.ScoreResult | None = None,
                    progress: Callable[[str, str], None] | None = None
                    ) -> ResampleResult:
  """Scores every model on ``resamples`` paired resamples of the target set.

  Args:
    features_by_model: ``{model: features [N, D_model]}``.
    labels: ``[N]`` target class ids (any; remapped).
    metrics: feature metrics (names from ``sfda_jax.FEATURE_METRICS``).
    resamples: ``B >= 2``.
    fraction: each resample keeps ``round(fraction * N)`` rows, in
      ``(0, 1]``.
    seed: the resampling seed (also NLEEP's mixture seed, as in
      ``score_models``).
    replace: draw each class's quota with replacement (a stratified
      bootstrap) instead of without.
    full: the full-data ``score_models(..., on_error="record")`` result of
      the same features, labels, metrics and seed, when the caller already
      has it (``rank_zoo`` does); computed otherwise.
    progress: called as ``progress(metric, model)`` after each (metric,
      model) cell is resampled (e.g. to advance a progress bar).

  Returns:
    A :class:`ResampleResult`. A (metric, model) cell that cannot be scored
    on the full data or on some resample is recorded in ``failures`` and
    left out of the statistics, as ``score_models(on_error="record")`` does.

  Raises:
    ValueError: bad settings, a non-feature metric, or a resample that would
      leave a class with fewer than 2 samples, all before any scoring; and
      everything ``score_models`` raises for the whole call.

  Example:
    >>> import numpy as np, sfda_jax
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 40)
    >>> feats = {"good": rng.normal(size=(120, 6)) + 3 * np.eye(6)[y],
    ...          "bad": rng.normal(size=(120, 6)) + 0.3 * np.eye(6)[y]}
    >>> r = sfda_jax.resample_scores(feats, y, metrics=("logme",),
    ...                              resamples=8)
    >>> r.p_above["logme"]["good"]["bad"], r.top1_stability["logme"]
    (1.0, 1.0)
  """
  _check_settings(resamples, fraction, replace, seed)
  metrics = ranking.metric_names(metrics)      # "sfda" is one metric
  wrong = [m for m in metrics if registry.get(m).inputs != "features"]
  if wrong:
    raise ValueError(f"resample_scores scores feature metrics; {wrong} "
                     f"is not one of {list(registry.FEATURE_METRICS)}.")
  requested, metrics = metrics, registry.expand(metrics)
  if not features_by_model:
    raise ValueError("features_by_model is empty.")
  feats, enc = ranking.checked_features(features_by_model, labels)
  idx = resample_indices(enc.codes, resamples, fraction, seed, replace,
                         class_names=list(enc.classes))
  if full is None:
    full = ranking.score_models(feats, labels, metrics=tuple(requested),
                                seed=seed, on_error="record")
  missing = [m for m in metrics if m not in full.scores and m not in full.parts]
  if missing or set(full.models) != set(feats):
    raise ValueError("full= must be the score_models result of the same "
                     f"models and metrics; it lacks {missing or 'models'}.")
  full_scores = {**full.parts, **full.scores}
  failures = {m: dict(v) for m, v in full.failures.items()}
  values: dict[str, dict[str, np.ndarray]] = {}
  cells = ranking._Cells(metrics, "record")  # pylint: disable=protected-access
  specs = {m: registry.REGISTRY[m] for m in metrics}
  options = ranking.metric_options(specs, seed)
  scales = ranking._feature_scales(  # pylint: disable=protected-access
      feats, list(metrics), enc, options, cells)
  for metric, spec in specs.items():
    values[metric] = {}
    for name in full_scores[metric]:
      x = ranking._scaled(feats[name], scales[metric][name])  # pylint: disable=protected-access
      try:
        if spec.batched:
          v = _resample_batched(spec, x, enc, idx, options[metric])
        else:
          v = np.array([float(_runner.compute(
              spec, x[jnp.asarray(i)], _subset(enc, i), **options[metric]))
                        for i in idx])
      except ValueError as e:
        failures.setdefault(metric, {})[name] = (
            f"on a resample: {ranking._one_line(e)}")  # pylint: disable=protected-access
        continue
      finally:
        if progress is not None:
          progress(metric, name)
      if not np.all(np.isfinite(v)):
        failures.setdefault(metric, {})[name] = (
            f"non-finite score on {int(np.sum(~np.isfinite(v)))} of "
            f"{resamples} resamples")
        continue
      values[metric][name] = v
  set_cells = ranking._Cells(requested, "record")  # pylint: disable=protected-access
  ranking.combine_set_metrics(requested, values, failures, list(feats),
                              set_cells)
  for m, per_model in set_cells.failures.items():
    failures.setdefault(m, {}).update(per_model)
  for m in requested:
    if m in registry.SET_REGISTRY:
      values[m] = set_cells.scores.get(m, {})
  values = {m: values[m] for m in requested}
  failures = {m: v for m, v in failures.items() if m in requested}
  return _summarise(full.scores, values, failures, resamples, fraction,
                    replace, seed, idx.shape[1])


def _summarise(scores, values, failures, resamples, fraction, replace, seed,
               num_samples) -> ResampleResult:
  mean, std, p5, p95, p_above, top1 = {}, {}, {}, {}, {}, {}
  for metric, per_model in values.items():
    mean[metric] = {m: float(v.mean()) for m, v in per_model.items()}
    std[metric] = {m: float(v.std(ddof=1)) for m, v in per_model.items()}
    p5[metric] = {m: float(np.percentile(v, 5)) for m, v in per_model.items()}
    p95[metric] = {m: float(np.percentile(v, 95))
                   for m, v in per_model.items()}
    p_above[metric] = {a: {b: float(np.mean(va > vb))
                           for b, vb in per_model.items() if b != a}
                       for a, va in per_model.items()}
    if per_model:
      names = list(per_model)
      stacked = np.stack([per_model[m] for m in names])       # [M, B]
      best = max(names, key=lambda m: scores[metric][m])
      top1[metric] = float(np.mean(
          np.asarray(names)[np.argmax(stacked, axis=0)] == best))
  return ResampleResult(
      scores={m: dict(v) for m, v in scores.items()}, values=values,
      mean=mean, std=std, p5=p5, p95=p95, p_above=p_above,
      top1_stability=top1, failures=failures, resamples=int(resamples),
      fraction=float(fraction), replace=bool(replace), seed=int(seed),
      num_samples=int(num_samples))
