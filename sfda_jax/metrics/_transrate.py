"""TransRate: transferability as a coding-rate difference.

Huang, Huang, Zhang, Wang, Tao, Wen. "Frustratingly Easy Transferability
Estimation." ICML 2022.

Features are centred once with the global mean. With
``R(Z) = 1/2 logdet(I + Z^T Z / (n eps))`` (``n`` the rows of ``Z``),
``TransRate = R(X) - (1/K) sum_k R(X_k)``, ``eps = 1e-4`` (the common reference
implementation). Each log-determinant is taken on the smaller of the two Gram
matrices (``Z^T Z`` or ``Z Z^T``, Sylvester's identity), via a Cholesky
factor of the SPD matrix ``I + c G``. Classes are processed one at a time
(``lax.map``) from a padded per-class index table, so memory stays at one
class of features and no ``[K, D, D]`` stack is built.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _spec
from sfda_jax.metrics import stats

__all__ = ["transrate", "transrate_core", "class_index_table",
           "coding_rate_from_gram"]


def class_index_table(codes: np.ndarray, num_classes: int
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Host-side padded table of each class's sample indices.

  Returns:
    ``(index [K, n_max] int32, valid [K, n_max] bool)``; padded slots point at
    row 0 and are marked invalid.
  """
  counts = np.bincount(codes, minlength=num_classes)
  n_max = int(counts.max())
  order = np.argsort(codes, kind="stable")
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  slot = np.arange(n_max)[None, :]
  valid = slot < counts[:, None]
  pos = np.where(valid, starts[:, None] + slot, 0)
  index = np.where(valid, order[pos], 0).astype(np.int32)
  return index, valid


def _coding_rate(z: jax.Array, n: jax.Array, eps: float) -> jax.Array:
  """``1/2 logdet(I + Z^T Z / (n eps))`` using the smaller Gram matrix."""
  rows, dim = z.shape
  return coding_rate_from_gram(
      stats.gram(z) if dim <= rows else stats.gram(z.T), n, eps)


def coding_rate_from_gram(g: jax.Array, n: jax.Array, eps: float
                          ) -> jax.Array:
  """``1/2 logdet(I + G / (n eps))`` for a Gram matrix ``G`` ``[m, m]``.

  ``G`` may be ``Z^T Z`` or ``Z Z^T`` (equal log-determinants, Sylvester's
  identity); ``sfda_jax.streaming.transrate`` passes the ``[D, D]`` scatters it
  accumulates.
  """
  m = g.shape[0]
  a = jnp.eye(m, dtype=g.dtype) + g / (n * eps)
  chol = stats.cholesky(a)
  return jnp.sum(jnp.log(jnp.diagonal(chol)))


def transrate_core(x: jax.Array, index: jax.Array, valid: jax.Array,
                   eps: float = 1e-4) -> jax.Array:
  """TransRate on validated inputs (pure, jittable, vmappable over ``x``).

  Args:
    x: features ``[N, D]``.
    index, valid: the :func:`class_index_table` of the labels.
    eps: the distortion ``eps`` of the coding rate.
  """
  n = x.shape[0]
  z = stats.center(x)
  total = _coding_rate(z, jnp.asarray(n, x.dtype), eps)

  def per_class(args):
    idx, ok = args
    zk = jnp.where(ok[:, None], z[idx], 0.0)          # padded rows are zero
    return _coding_rate(zk, ok.sum().astype(x.dtype), eps)

  return total - jnp.mean(lax.map(per_class, (index, valid)))


def transrate(features: Any, labels: Any, eps: float = 1e-4) -> float:
  """TransRate (higher is better).

  Args:
    features: ``[N, D]``.
    labels: ``[N]`` class ids (any; remapped).
    eps: coding-rate distortion (``1e-4`` as the reference implementation).

  Example:
    >>> import numpy as np, sfda_jax
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), 25)
    >>> x = rng.normal(size=(100, 8)) + 3 * np.eye(8)[y]
    >>> sfda_jax.transrate(x, y) > sfda_jax.transrate(x, rng.permutation(y))
    True
  """
  return _runner.score(SPEC, features, labels, eps=eps)


def _check_options(eps):
  if not eps > 0:
    raise ValueError(f"eps must be > 0, got {eps}.")


def _prepare(enc, eps):
  index, valid = class_index_table(enc.codes, enc.num_classes)
  return _spec.Prepared(None, (index, valid), {"eps": float(eps)},
                        (False, False))


SPEC = _spec.MetricSpec(
    name="transrate", order=60, fn=transrate, inputs="features",
    core=transrate_core, prepare=_prepare, check_options=_check_options,
    defaults={"eps": 1e-4}, streaming="transrate")
