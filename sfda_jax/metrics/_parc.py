"""PARC: Pairwise Annotation Representation Comparison.

Bolya, Mittapalli, Hoffman. "Scalable Diverse Model Selection for Accessible
Transfer Learning." NeurIPS 2021.

Features are reduced to 32 principal components (sign convention of
:func:`stats.principal_basis`) and standardised (a column whose std is below
``sqrt(eps) * max std`` is rounding noise and is set to 0); the feature dissimilarity is
``1 - corrcoef`` between samples and the label dissimilarity is the same on
one-hot labels (``0`` for a same-class pair, ``1 + 1/(K-1)`` otherwise).
``PARC = 100 * Spearman`` correlation of the two strict upper triangles.

Memory is ``O(n^2)``: above ``max_samples`` (default 5000, i.e. 12.5 M pairs)
a class-stratified subsample, deterministic for ``seed``, is scored instead.
Spearman ranks average ties, as ``scipy.stats.spearmanr``.

Sharded input: the centring and PCA run data-parallel on features sharded over
samples; the reduced ``[n, pca_dim]`` matrix is then gathered onto one device
for the pairwise step (an ``n x n`` comparison and a global sort of its pairs
are inherently global; see :func:`_validation.gather_if_sharded`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _spec
from sfda_jax.metrics import _validation
from sfda_jax.metrics import sampling
from sfda_jax.metrics import stats

__all__ = ["parc", "parc_core", "stratified_subsample"]

DEFAULT_MAX_SAMPLES = 5000


def _sorted_average_ranks(v: jax.Array, *carried: jax.Array
                          ) -> tuple[jax.Array, ...]:
  """1-based ranks of ``v`` with ties given their average rank, in sorted
  order, with ``carried`` arrays permuted alongside.

  One sort, then each run of equal values gets ``(first + last) / 2 + 1``
  from a forward ``cummax`` of run starts and a backward ``cummin`` of run
  ends. A rank correlation is a sum over pairs, so it is taken in sorted
  order with the other variable carried through the sort: no scatter back
  to the original positions and no binary searches over the (up to 50 M)
  pairs.
  """
  m = v.shape[0]
  pos = jnp.arange(m)
  s, *rest = lax.sort((v, *carried), num_keys=1)
  new_run = jnp.concatenate([jnp.ones((1,), bool), s[1:] != s[:-1]])
  run_end = jnp.concatenate([s[1:] != s[:-1], jnp.ones((1,), bool)])
  first = lax.cummax(jnp.where(new_run, pos, 0))
  last = lax.cummin(jnp.where(run_end, pos, m - 1), reverse=True)
  return ((first + last).astype(v.dtype) / 2.0 + 1.0, *rest)


def _reduce(x: jax.Array, pca_dim: int) -> jax.Array:
  """Centred features projected on their top ``pca_dim`` principal axes."""
  return stats.project_principal(stats.center(x), pca_dim)


def parc_core(x: jax.Array, labels: jax.Array, num_classes: int,
              pca_dim: int = 32) -> jax.Array:
  """PARC on validated inputs (pure, jittable, vmappable over ``x``)."""
  del num_classes  # static for a uniform kernel signature; not needed
  return _pairwise(_reduce(x, pca_dim), labels)


def _pairwise(xc: jax.Array, labels: jax.Array) -> jax.Array:
  """PARC from centred, reduced features ``[n, d]`` (the global step)."""
  n = xc.shape[0]
  # A column is constant when its std is at rounding level relative to the
  # largest (directions beyond the data's rank when N <= pca_dim); it stays 0.
  std = jnp.sqrt(jnp.mean(xc * xc, axis=0))
  live = std > jnp.sqrt(jnp.finfo(xc.dtype).eps) * jnp.max(std)
  z = jnp.where(live, xc / jnp.where(live, std, 1.0), 0.0)
  zc = z - z.mean(axis=1, keepdims=True)
  norm = jnp.linalg.norm(zc, axis=1, keepdims=True)
  r = zc / jnp.where(norm > 0, norm, 1.0)
  iu = jnp.triu_indices(n, 1)
  dist_f = (1.0 - stats.matmul(r, r.T))[iu]
  # Label dissimilarity takes two values: ties get their average rank.
  same = (labels[:, None] == labels[None, :])[iu]
  rank_f, same = _sorted_average_ranks(dist_f, same)   # both in sorted order
  num_pairs = same.shape[0]
  num_same = jnp.sum(same).astype(xc.dtype)
  rank_y = jnp.where(same, (num_same + 1.0) / 2.0,
                     num_same + (num_pairs - num_same + 1.0) / 2.0)
  # Pearson of the ranks, scaled to [0, 1] first: raw rank products reach
  # M^3 ~ 1e21 for 12.5 M pairs and their product overflows float32.
  a = (rank_f - rank_f.mean()) / num_pairs
  b = (rank_y - rank_y.mean()) / num_pairs
  return 100.0 * jnp.sum(a * b) / (jnp.sqrt(jnp.sum(a * a))
                                   * jnp.sqrt(jnp.sum(b * b)))


_reduce_jit = jax.jit(_reduce, static_argnames="pca_dim")
_pairwise_jit = jax.jit(_pairwise)


def stratified_subsample(codes: np.ndarray, max_samples: int, seed: int
                         ) -> np.ndarray:
  """Sorted indices of a class-stratified subsample of ``max_samples``.

  All ``N`` samples when ``N <= max_samples``; otherwise the package's one
  stratified rule (`sfda_jax.metrics.sampling`, largest remainder) with at
  least 2 samples per class (so each class has a pair; the top-ups can add a
  few samples beyond ``max_samples``). Deterministic for a seed.
  """
  n = codes.shape[0]
  if n <= max_samples:
    return np.arange(n)
  return sampling.stratified_indices(codes, max_samples, seed, minimum=2)


def parc(features: Any, labels: Any, pca_dim: int = 32,
         max_samples: int = DEFAULT_MAX_SAMPLES, seed: int = 0) -> float:
  """PARC score (higher is better; a Spearman correlation times 100).

  Args:
    features: ``[N, D]``.
    labels: ``[N]`` class ids (any; remapped).
    pca_dim: principal components kept (32 in the paper).
    max_samples: cap on the samples compared pairwise (memory is quadratic).
    seed: seed of the stratified subsample when ``N > max_samples``.

  Example:
    >>> import numpy as np, sfda_jax
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), 25)
    >>> x = rng.normal(size=(100, 8)) + 3 * np.eye(8)[y]
    >>> sfda_jax.parc(x, y) > sfda_jax.parc(x, rng.permutation(y))
    True
  """
  return _runner.score(SPEC, features, labels, pca_dim=pca_dim,
                       max_samples=max_samples, seed=seed)


def _check_options(pca_dim, max_samples, seed):
  del seed
  _validation.positive_int(pca_dim, "pca_dim")
  if max_samples < 4:
    raise ValueError(f"max_samples must be >= 4, got {max_samples}.")


def _check_input(x, enc, **_):
  del enc
  if x.shape[1] < 2:
    raise ValueError(
        f"parc needs at least 2 feature dimensions, got {x.shape[1]}: its "
        "feature dissimilarity is 1 - the correlation between two samples' "
        "feature vectors, undefined for 1-D features.")


def _prepare(enc, pca_dim, max_samples, seed):
  rows = stratified_subsample(enc.codes, max_samples, seed)
  return _spec.Prepared(rows, (enc.codes[rows],),
                        {"num_classes": enc.num_classes, "pca_dim": pca_dim},
                        (True,))


def _compute(x, enc, **options):
  if len(x.sharding.device_set) <= 1:
    return _runner.call_core(SPEC, x, enc, **options)
  # Data-parallel PCA, then the global pairwise step on one device.
  p = _prepare(enc, **options)
  if p.rows.shape[0] != x.shape[0]:
    x = x[jnp.asarray(p.rows)]
  z = _validation.gather_if_sharded(_reduce_jit(x, pca_dim=options["pca_dim"]))
  return _pairwise_jit(z, jnp.asarray(p.args[0]))


SPEC = _spec.MetricSpec(
    name="parc", order=70, fn=parc, inputs="features", core=parc_core,
    prepare=_prepare, compute=_compute, check_options=_check_options,
    check_input=_check_input, scale_invariant=True, placement="gather",
    defaults={"pca_dim": 32, "max_samples": DEFAULT_MAX_SAMPLES, "seed": 0})
