"""LogME: the log of the maximum label evidence.

You, Liu, Wang, Long. "LogME: Practical Assessment of Pre-trained Models for
Transfer Learning." ICML 2021; fixed-point solver from "Ranking and Tuning
Pre-trained Models: A New Paradigm for Exploiting Model Hubs" (arXiv
2110.10545).

Sufficient statistics: for ``N > D`` the score needs only ``F^T F`` ``[D, D]``,
``F^T T`` ``[D, T]``, ``|t|^2`` per column and ``N`` (:func:`logme_from_gram`,
shared with ``sfda_jax.streaming.logme``). For ``N <= D`` the in-memory path
takes a thin SVD of ``F``; the Gram route gives the same spectrum when only
the top ``rank = min(N, D)`` eigenvalues are kept (the other ``D - N`` are
rounding noise of exact zeros).

For each target column ``t`` (one-hot class indicator, or a regression target)
a Bayesian linear model ``t ~ N(F w, 1/beta)``, ``w ~ N(0, 1/alpha)`` has its
evidence maximised over ``(alpha, beta)`` by a fixed point run in the
eigenbasis of ``F^T F``; the score is the mean per-sample log evidence.

Implementation: the eigenbasis projection ``x = u^T t`` is formed as
``diag(1/s) V^T (F^T T)``, so the ``[N, D]`` matrix ``u`` is never built; the
fixed point is a ``lax.while_loop`` (at most 11 steps, as the reference) vmapped
over target columns. Reference semantics for ``N < D`` are kept: the
log-determinant omits the ``D - k`` zero singular values.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from sfda_jax.metrics import _validation
from sfda_jax.metrics import stats

__all__ = ["logme", "logme_core", "logme_from_gram"]

_MAX_ITERS = 11
_EPS = 1e-5


def _spectrum_from_gram(gram: jax.Array, ft_t: jax.Array, rank: int):
  """``(sigma [D], x [D, T], mask [D])`` from ``F^T F`` and ``F^T T``.

  Keeps the top ``rank`` eigenvalues (``rank = min(N, D)``: ``F^T F`` has at
  most ``N`` non-zero ones) whose square roots exceed ``1e-10``.
  """
  d = gram.shape[0]
  evals, v = stats.eigh(gram)                                      # ascending
  s = jnp.sqrt(jnp.maximum(evals, 0.0))
  mask = (s > 1e-10) & (jnp.arange(d) >= d - rank)
  proj = stats.matmul(v.T, ft_t)                                   # s * u^T t
  x = proj / jnp.where(mask, s, 1.0)[:, None]
  return _masked(s, x, mask)


def _spectrum_svd(f: jax.Array, targets: jax.Array):
  """``(sigma [k], x [k, T], mask [k])`` from a thin SVD of ``F`` (N <= D)."""
  u, s, _ = stats.svd(f)
  return _masked(s, stats.matmul(u.T, targets), s > 1e-10)


def _masked(s, x, mask):
  x = jnp.where(mask[:, None], x, 0.0)
  sigma = jnp.where(mask, s * s, 0.0)
  return sigma, x, mask


def _evidence(sigma, mask, x, t_sq, n, d):
  """Maximised evidence for one target column (``x``: ``[k]``)."""
  x2 = x * x
  res_x2 = t_sq - x2.sum()

  def step(carry):
    it, alpha, beta, _, _ = carry
    tau = alpha / beta
    gamma = jnp.sum(sigma / (sigma + tau))
    m2 = jnp.sum(sigma * x2 / (tau + sigma) ** 2)
    res2 = jnp.sum(x2 / (1.0 + sigma / tau) ** 2) + res_x2
    alpha = gamma / (m2 + _EPS)
    beta = (n - gamma) / (res2 + _EPS)
    log_det = jnp.sum(jnp.where(mask, jnp.log(alpha + beta * sigma), 0.0))
    ev = (d / 2.0 * jnp.log(alpha) + n / 2.0 * jnp.log(beta) - 0.5 * log_det
          - beta / 2.0 * res2 - alpha / 2.0 * m2
          - n / 2.0 * jnp.log(2.0 * jnp.pi)) / n
    done = jnp.abs(alpha / beta - tau) / tau <= 1e-3
    return it + 1, alpha, beta, ev, done

  def cond(carry):
    it, _, _, _, done = carry
    return (it < _MAX_ITERS) & ~done

  one = jnp.ones((), sigma.dtype)
  init = (0, one, one, jnp.zeros((), sigma.dtype), jnp.zeros((), bool))
  return lax.while_loop(cond, step, init)[3]


def logme_core(f: jax.Array, targets: jax.Array) -> jax.Array:
  """LogME on validated inputs (pure, jittable, vmappable over ``f``).

  Args:
    f: features ``[N, D]``.
    targets: ``[N, T]`` target columns (one-hot classes or regression targets).

  Returns:
    Mean evidence over the ``T`` columns (scalar).
  """
  n, d = f.shape
  targets = targets.astype(f.dtype)
  t_sq = jnp.sum(targets * targets, axis=0)
  if n > d:
    return logme_from_gram(stats.gram(f), stats.matmul(f.T, targets), t_sq, n)
  sigma, x, mask = _spectrum_svd(f, targets)
  return _mean_evidence(sigma, mask, x, t_sq, n, d)


def logme_from_gram(gram: jax.Array, ft_t: jax.Array, t_sq: jax.Array,
                    n: int) -> jax.Array:
  """LogME from sufficient statistics (pure, jittable).

  Args:
    gram: ``F^T F`` (uncentred), ``[D, D]``.
    ft_t: ``F^T T``, ``[D, T]`` (for one-hot targets: the per-class feature
      sums, transposed).
    t_sq: ``|t|^2`` per target column, ``[T]`` (class counts for one-hot).
    n: ``N`` (static).

  Returns:
    Mean evidence over the ``T`` columns (scalar).
  """
  d = gram.shape[0]
  sigma, x, mask = _spectrum_from_gram(gram, ft_t, min(n, d))
  return _mean_evidence(sigma, mask, x, t_sq, n, d)


def _mean_evidence(sigma, mask, x, t_sq, n, d):
  ev = jax.vmap(_evidence, in_axes=(None, None, 1, 0, None, None))(
      sigma, mask, x, t_sq, n, d)
  return ev.mean()


@jax.jit
def _logme_jit(f, targets):
  return logme_core(f, targets)


def logme(features: Any, labels: Any, regression: bool = False) -> float:
  """LogME transferability score (higher is better).

  Args:
    features: ``[N, D]``.
    labels: ``[N]`` class ids (classification), or with ``regression=True``
      float targets ``[N]`` or ``[N, T]`` (one evidence per column).
    regression: treat ``labels`` as real-valued targets.

  Returns:
    The mean per-sample log evidence, averaged over target columns.

  Example:
    >>> import numpy as np, sfda_jax
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), 25)
    >>> good = rng.normal(size=(100, 16)) + 4 * np.eye(16)[y]
    >>> sfda_jax.logme(good, y) > sfda_jax.logme(good, rng.permutation(y))
    True
  """
  x = _validation.check_features(features)
  if regression:
    t = labels if isinstance(labels, jax.Array) else np.asarray(labels)
    t = _validation.check_features(t.reshape(-1, 1) if t.ndim == 1 else t,
                                   name="regression targets")
    if t.shape[0] != x.shape[0]:
      raise ValueError(f"length mismatch: features have {x.shape[0]} rows but "
                       f"targets have {t.shape[0]}.")
    x = _validation.check_feature_values(x, "logme", scale_invariant=False)
    t = t.astype(x.dtype)
    if not isinstance(labels, jax.Array):
      t = _validation.place_like_samples(t, x)
  else:
    enc = _validation.encode_labels(labels, x.shape[0])
    x = _validation.check_feature_values(x, "logme", scale_invariant=False)
    t = stats.one_hot(_validation.place_like_samples(enc.codes, x),
                      enc.num_classes, x.dtype)
  return _validation.check_finite_score(_logme_jit(x, t), "logme")
