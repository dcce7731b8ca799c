"""Many models x many metrics -> a score table; agreement with fine-tuning.

``score_models`` scores a zoo in as few compiled calls as possible: models
whose features share a shape are stacked and each metric runs once, vmapped
over the model axis. ``agreement`` compares a metric's ranking with fine-tune
accuracies (weighted Kendall tau from scipy, Kendall tau, Pearson, rel@k,
top-1 hit).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from sfda_jax.metrics import _validation
from sfda_jax.metrics import _gbc as gbc_lib
from sfda_jax.metrics import _hscore as hscore_lib
from sfda_jax.metrics import _leep as leep_lib
from sfda_jax.metrics import _logme as logme_lib
from sfda_jax.metrics import _nleep as nleep_lib
from sfda_jax.metrics import _parc as parc_lib
from sfda_jax.metrics import _sfda as sfda_lib
from sfda_jax.metrics import _transrate as transrate_lib

__all__ = ["FEATURE_METRICS", "SOURCE_METRICS", "ALL_METRICS", "score_models",
           "agreement", "weighted_tau", "kendall_tau", "pearson", "rel_at_k",
           "top1_hit"]


@dataclasses.dataclass(frozen=True)
class _Spec:
  """How ``score_models`` runs one feature metric on a batch of models.

  ``prepare(enc)`` returns ``(rows, args, static)``: an optional host index of
  the rows to keep, extra (shared, un-batched) array arguments of ``core``
  after the features, and its static keyword arguments.
  """
  core: Callable[..., jax.Array]
  prepare: Callable[[_validation.EncodedLabels], tuple]


def _codes(enc):
  return None, (jnp.asarray(enc.codes),), {"num_classes": enc.num_classes}


def _onehot(enc):
  return None, (jax.nn.one_hot(enc.codes, enc.num_classes),), {}


#: GBC's PCA dimension in :func:`score_models` (the GBC paper's setting):
#: without it, diagonal Gaussians in ~1000-D feature spaces are so far apart
#: that every Bhattacharyya coefficient underflows and all models score 0.
GBC_PCA_DIM = 64


def _gbc_codes(enc):
  rows, args, static = _codes(enc)
  return rows, args, {**static, "pca_dim": GBC_PCA_DIM}


def _index_table(enc):
  index, valid = transrate_lib.class_index_table(enc.codes, enc.num_classes)
  return None, (jnp.asarray(index), jnp.asarray(valid)), {}


def _subsampled_codes(enc):
  rows = parc_lib.stratified_subsample(enc.codes, parc_lib.DEFAULT_MAX_SAMPLES,
                                       seed=0)
  return rows, (jnp.asarray(enc.codes[rows]),), {"num_classes": enc.num_classes}


_BATCHED = {
    "sfda": _Spec(sfda_lib.sfda_core, _codes),
    "logme": _Spec(logme_lib.logme_core, _onehot),
    "hscore": _Spec(hscore_lib.hscore_core, _codes),
    "regularized_hscore": _Spec(hscore_lib.regularized_hscore_core, _codes),
    "gbc": _Spec(gbc_lib.gbc_core, _gbc_codes),
    "transrate": _Spec(transrate_lib.transrate_core, _index_table),
    "parc": _Spec(parc_lib.parc_core, _subsampled_codes),
}
#: Metrics computed from features and target labels.
FEATURE_METRICS = ("sfda", "logme", "nleep", "hscore", "regularized_hscore",
                   "gbc", "transrate", "parc")
#: Metrics that need the source model's classifier outputs.
SOURCE_METRICS = ("leep", "nce")
ALL_METRICS = FEATURE_METRICS + SOURCE_METRICS


@functools.lru_cache(maxsize=None)
def _batched_fn(metric: str, num_args: int, static: tuple):
  """One jitted call scoring a stack of models ``[M, N, D]``.

  On GPU/TPU the models are vmapped (one batched pass). On CPU they are
  scored one after another inside the same call (``lax.map``): a CPU has no
  idle lanes for a batch to fill, and the batched products and looped
  factorizations measured 27% slower than separate calls (3 models, N=10000,
  D=2048, C=100; BUILD_NOTES.md).
  """
  core = functools.partial(_BATCHED[metric].core, **dict(static))

  def scores(stacked, *args):
    return lax.platform_dependent(
        stacked,
        cpu=lambda xs: lax.map(lambda x: core(x, *args), xs),
        default=lambda xs: jax.vmap(lambda x: core(x, *args))(xs))

  return jax.jit(scores)


def score_models(features_by_model: Mapping[str, Any], labels: Any,
                 metrics: Sequence[str] = FEATURE_METRICS,
                 source_probs_by_model: Mapping[str, Any] | None = None,
                 seed: int = 0) -> dict[str, dict[str, float]]:
  """Scores every model with every metric.

  Args:
    features_by_model: ``{model: features [N, D_model]}``; all share the
      target labels. Models with equal feature shapes are scored together in
      one vmapped call per metric.
    labels: ``[N]`` target class ids (any; remapped).
    metrics: names from :data:`ALL_METRICS`.
    source_probs_by_model: ``{model: source probabilities [N, Z]}`` for the
      models that have a classifier head; ``leep`` and ``nce`` score only
      those models.
    seed: seed for NLEEP's mixture initialisation (PARC subsamples with 0).

  GBC is computed on the first :data:`GBC_PCA_DIM` (64) principal components,
  as in the GBC paper (``sfda_jax.gbc(..., pca_dim=64)``); every other metric
  uses its defaults.

  Returns:
    ``{metric: {model: score}}``, higher is better for every metric.

  Example:
    >>> import numpy as np, sfda_jax
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 20)
    >>> feats = {"good": rng.normal(size=(60, 8)) + 3 * np.eye(8)[y],
    ...          "bad": rng.normal(size=(60, 8))}
    >>> table = sfda_jax.score_models(feats, y, metrics=("sfda", "logme"))
    >>> table["sfda"]["good"] > table["sfda"]["bad"]
    True
  """
  unknown = [m for m in metrics if m not in ALL_METRICS]
  if unknown:
    raise ValueError(f"unknown metric(s) {unknown}; valid: {list(ALL_METRICS)}.")
  if not features_by_model:
    raise ValueError("features_by_model is empty.")
  source_probs_by_model = dict(source_probs_by_model or {})
  extra = sorted(set(source_probs_by_model) - set(features_by_model))
  if extra:
    raise ValueError(f"source_probs_by_model names models without features: "
                     f"{extra}.")
  enc = _validation.encode_labels(labels)
  n = enc.codes.shape[0]
  feats = {}
  for name, f in features_by_model.items():
    x = _validation.check_features(f, name=f"features of model {name!r}")
    if x.shape[0] != n:
      raise ValueError(f"length mismatch: features of model {name!r} have "
                       f"{x.shape[0]} rows but labels has {n} entries.")
    feats[name] = x
  groups = collections.defaultdict(list)
  for name, x in feats.items():
    groups[(x.shape, x.dtype)].append(name)

  table: dict[str, dict[str, float]] = {m: {} for m in metrics}
  for metric in metrics:
    if metric in _BATCHED:
      rows, args, static = _BATCHED[metric].prepare(enc)
      fn = _batched_fn(metric, len(args), tuple(sorted(static.items())))
      for names in groups.values():
        stacked = jnp.stack([feats[m] for m in names])
        if rows is not None and rows.shape[0] != n:
          stacked = stacked[:, jnp.asarray(rows)]
        values = np.asarray(fn(stacked, *args))
        for name, v in zip(names, values):
          table[metric][name] = _validation.check_finite_score(
              v, f"{metric} (model {name!r})")
    elif metric == "nleep":
      for name, x in feats.items():
        table[metric][name] = nleep_lib.nleep(x, enc.codes, seed=seed)
    elif metric == "leep":
      for name, p in source_probs_by_model.items():
        table[metric][name] = leep_lib.leep(p, enc.codes)
    elif metric == "nce":
      for name, p in source_probs_by_model.items():
        z = np.asarray(jnp.argmax(jnp.asarray(p), axis=1))
        table[metric][name] = leep_lib.nce(z, enc.codes)
  return table


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
  """Best accuracy among the top-``k`` scored models / best accuracy overall."""
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}.")
  _, s, a = _aligned(scores, accuracies)
  top = np.argsort(-s, kind="stable")[:k]
  return float(a[top].max() / a.max())


def top1_hit(scores: Mapping[str, float],
             accuracies: Mapping[str, float]) -> bool:
  """Whether the top-scored model has the best accuracy (ties count)."""
  _, s, a = _aligned(scores, accuracies)
  return bool(a[int(np.argmax(s))] == a.max())


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
