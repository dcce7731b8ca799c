"""LogME: the log of the maximum label evidence.

You, Liu, Wang, Long. "LogME: Practical Assessment of Pre-trained Models for
Transfer Learning." ICML 2021; fixed-point solver from "Ranking and Tuning
Pre-trained Models: A New Paradigm for Exploiting Model Hubs" (arXiv
2110.10545).

Sufficient statistics: for ``N > D`` the score needs only the Gram, column
sums and target products of the features centred at their mean, the mean,
``|t|^2`` per column and ``N`` (:func:`logme_from_stats`, shared with
``sfda_jax.streaming.logme``). For ``N <= D`` the ``N x N`` row Gram of the
centred features gives the left singular vectors of ``F`` directly.

Precision: the eigen-solve and the projections of the targets onto the
eigenbasis run in float64 whatever the working dtype
(:func:`stats.precise`: on the host through a callback when x64 is off).
The uncentred ``F^T F`` of ReLU features is ill-conditioned (1e9 is common),
and a float32 eigen-solve of it loses every eigenvalue below ``1e-7`` of the
largest: the residual ``|t|^2 - sum x^2`` went negative and the score NaN.
The centred statistics are formed on the device in the working dtype (they
are accurate: no offset), the rank-one mean terms are added back in float64,
eigenvalues at the rounding level of that formation count as exact zeros of
the fit (see ``_RESOLVE``) and the residual is clamped at 0.

For each target column ``t`` (one-hot class indicator, or a regression target)
a Bayesian linear model ``t ~ N(F w, 1/beta)``, ``w ~ N(0, 1/alpha)`` has its
evidence maximised over ``(alpha, beta)`` by a fixed point run in the
eigenbasis of ``F^T F``; the score is the mean per-sample log evidence.

Implementation: for ``N > D`` the eigenbasis projection ``x = u^T t`` is
formed as ``diag(1/s) V^T (F^T T)``, so the ``[N, D]`` matrix ``u`` is never
built; the fixed point is a ``lax.while_loop`` (at most 11 steps, as the reference) vmapped
over target columns. Reference semantics for ``N < D`` are kept: the
log-determinant omits the ``D - k`` zero singular values.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _spec
from sfda_jax.metrics import _validation
from sfda_jax.metrics import stats

__all__ = ["Diagnostics", "logme", "logme_core", "logme_from_stats"]

_MAX_ITERS = 11
_EPS = 1e-5
#: Eigenvalues below ``_RESOLVE * eps * |Gc|_F`` (``Gc`` the centred Gram,
#: ``eps`` of the dtype it was formed in) are rounding noise of that
#: formation. Such a direction is kept in the log-determinant with
#: ``sigma = 0`` and its share of the targets goes to the residual, which is
#: what an exact tiny ``sigma`` contributes (``sigma << tau``); dividing by a
#: noisy ``sigma`` instead turned float32 scores into NaN. 10 was the best of
#: 0/1/10/100 on the float32 battery (BUILD_NOTES.md); under float64 the
#: floor is ~1e-15 of the spectrum and changes nothing.
_RESOLVE = 10.0


def _floor(ops, gram, eps):
  """The rounding level of a Gram matrix formed in a dtype of ``eps``."""
  return _RESOLVE * eps * ops.sqrt(ops.sum(gram * gram))


def _spectrum_cols(ops, gram_c, csum, center, ft_t_c, tsum, t_sq, scale, *, n,
                   rank, eps):
  """The eigenbasis of ``F^T F`` [D, D] from centred statistics (float64).

  ``F^T F = S Gc S + S c m^T + m c^T S + N m m^T`` and ``F^T T = S Sc +
  m tsum^T`` with ``S = diag(scale)``, ``m`` the (rounded) mean, and
  ``Gc``/``c``/``Sc`` the Gram, column sums and target products of
  ``(F - m) / scale``: exact identities whose big rank-one parts are
  added here in float64, so an offset (ReLU features are all positive) costs
  no float32 accuracy, and whose column scaling keeps the rounding of ``Gc``
  relative to each column's own size. A direction ``v`` is resolved when its
  eigenvalue exceeds that rounding as it reaches ``v``: ``floor * |S v|^2``.
  """
  d = gram_c.shape[0]
  c = scale * csum
  g = (scale[:, None] * gram_c * scale[None, :] + ops.outer(c, center)
       + ops.outer(center, c) + n * ops.outer(center, center))
  ft_t = scale[:, None] * ft_t_c + ops.outer(center, tsum)
  evals, v = ops.eigh(0.5 * (g + g.T))                              # ascending
  s = ops.sqrt(ops.maximum(evals, 0.0))
  mask = (s > 1e-10) & (ops.arange(d) >= d - rank)
  reach = ops.sum((scale[:, None] * v) ** 2, axis=0)
  ok = mask & (evals > _floor(ops, gram_c, eps) * reach)
  x = ops.where(ok[:, None], (v.T @ ft_t) / ops.where(ok, s, 1.0)[:, None],
                0.0)
  return _spectrum(ops, evals, ok, mask, x, t_sq)


def _spectrum_rows(ops, u_c, s_c, r, center_sq, targets, *, eps):
  """The eigenbasis of ``F F^T`` [N, N] (``N <= D``, float64).

  ``F F^T = Kc + r 1^T + 1 r^T + |m|^2 1 1^T`` with ``Kc = U S^2 U^T`` from
  the thin SVD ``(U, S)`` of ``F - m`` (taken in the working dtype: an SVD
  resolves singular values down to ``eps * s_max``, a Gram only down to
  ``sqrt(eps) * s_max``) and ``r = (F - m) m``; the eigenvectors of ``F F^T``
  are the left singular vectors ``u`` of ``F``, so ``x = u^T t`` needs no
  division. Directions below the SVD's resolution, ``(R eps s_max)^2``, count
  as exact zeros of the fit.
  """
  kc = (u_c * (s_c * s_c)[None, :]) @ u_c.T
  k = kc + r[:, None] + r[None, :] + center_sq
  evals, u = ops.eigh(0.5 * (k + k.T))
  mask = ops.sqrt(ops.maximum(evals, 0.0)) > 1e-10
  ok = mask & (evals > (_RESOLVE * eps * ops.max(s_c)) ** 2)
  x = ops.where(ok[:, None], u.T @ targets, 0.0)
  return _spectrum(ops, evals, ok, mask, x, ops.sum(targets * targets, 0))


def _spectrum(ops, evals, ok, mask, x, t_sq):
  """``(sigma, x^2, residual |t|^2 - sum x^2 >= 0, log-det mask)``."""
  x2 = x * x
  return (ops.where(ok, evals, 0.0), x2,
          ops.maximum(t_sq - ops.sum(x2, 0), 0.0), mask)


def _evidence(sigma, mask, x2, res_x2, n, d):
  """Maximised evidence for one target column (``x2``: ``[k]``)."""

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
  it, _, _, ev, done = lax.while_loop(cond, step, init)
  return ev, it, done


#: ``logme(..., corrected=...)`` values.
CORRECTIONS = (False, True, "rank")


def _log_alpha_count(corrected, mask, n: int, d: int):
  """The coefficient ``c`` of the evidence's ``c/2 log alpha`` term: ``D``
  (the reference), ``N`` for ``N < D`` with PR #24's fix (``corrected=True``:
  the log-determinant over ``sigma`` zero-padded to length ``D``), or the
  number of directions kept in the log-determinant (``"rank"``: the same
  padding for the directions the ``s > 1e-10`` filter drops, also when
  ``N > D``; our generalisation)."""
  if corrected == "rank":
    return jnp.sum(mask).astype(jnp.float32)
  if corrected and n < d:
    return n
  return d


def logme_core(f: jax.Array, targets: jax.Array, corrected: bool | str = False,
               return_diagnostics: bool = False) -> jax.Array:
  """LogME on validated inputs (pure, jittable, vmappable over ``f``).

  Args:
    f: features ``[N, D]``.
    targets: ``[N, T]`` target columns (one-hot classes or regression targets).
    corrected: (static) one of :data:`CORRECTIONS` (see :func:`logme`).
    return_diagnostics: (static) also return the fixed point's iterations
      (the most over the ``T`` columns) and whether every column converged.

  Returns:
    Mean evidence over the ``T`` columns (scalar); with
    ``return_diagnostics``, ``(score, iterations, converged)``.
  """
  chex.assert_rank([f, targets], 2)
  chex.assert_equal_shape_prefix([f, targets], 1)
  n, d = f.shape
  targets = targets.astype(f.dtype)
  center = f.mean(axis=0)
  fc = f - center
  if n > d:
    scale = jnp.sqrt(jnp.mean(fc * fc, axis=0))
    scale = jnp.where(scale > 0, scale, 1.0)
    fs = fc / scale
    return logme_from_stats(center, stats.gram(fs), fs.sum(axis=0),
                            stats.matmul(fs.T, targets), targets.sum(axis=0),
                            jnp.sum(targets * targets, axis=0), n, scale,
                            corrected=corrected,
                            return_diagnostics=return_diagnostics)
  eps = float(jnp.finfo(f.dtype).eps)
  u_c, s_c, _ = stats.svd(fc)
  sigma, x2, res_x2, mask = stats.precise(
      functools.partial(_spectrum_rows, eps=eps), u_c, s_c,
      stats.matmul(fc, center), jnp.sum(center * center), targets)
  return _mean_evidence(sigma, mask, x2, res_x2, n,
                        _log_alpha_count(corrected, mask, n, d),
                        return_diagnostics)


def logme_from_stats(center: jax.Array, gram_c: jax.Array, csum: jax.Array,
                     ft_t_c: jax.Array, tsum: jax.Array, t_sq: jax.Array,
                     n: int, scale: jax.Array | None = None,
                     corrected: bool | str = False,
                     return_diagnostics: bool = False) -> jax.Array:
  """LogME from sufficient statistics centred at ``center`` (pure, jittable).

  Shared by :func:`logme_core` (``N > D``) and ``sfda_jax.streaming.logme``.
  The ``D x D`` eigen-solve and the projections run in float64
  (:func:`stats.precise`); the fixed point runs in the working dtype (its
  sums are all of positive terms).

  Args:
    center: the point the statistics are centred at, ``[D]`` (the mean, up
      to rounding).
    gram_c: ``Z^T Z`` with ``Z = (F - center) / scale``, ``[D, D]``.
    csum: ``Z^T 1``, ``[D]`` (zero up to rounding).
    ft_t_c: ``Z^T T``, ``[D, T]``.
    tsum: ``1^T T`` per target column, ``[T]`` (class counts for one-hot).
    t_sq: ``|t|^2`` per target column, ``[T]`` (class counts for one-hot).
    n: ``N`` (static).
    scale: per-column scale ``[D]`` of the statistics (default: ones).
    corrected, return_diagnostics: as :func:`logme_core`.

  Returns:
    Mean evidence over the ``T`` columns (scalar), or ``(score, iterations,
    converged)``.
  """
  d = gram_c.shape[0]
  eps = float(jnp.finfo(gram_c.dtype).eps)
  if scale is None:
    scale = jnp.ones((d,), gram_c.dtype)
  sigma, x2, res_x2, mask = stats.precise(
      functools.partial(_spectrum_cols, n=float(n), rank=min(n, d), eps=eps),
      gram_c, csum, center, ft_t_c, tsum, t_sq, scale)
  return _mean_evidence(sigma, mask, x2, res_x2, n,
                        _log_alpha_count(corrected, mask, n, d),
                        return_diagnostics)


def _mean_evidence(sigma, mask, x2, res_x2, n, d, return_diagnostics=False):
  ev, its, done = jax.vmap(_evidence, in_axes=(None, None, 1, 0, None, None))(
      sigma, mask, x2, res_x2, n, d)
  if return_diagnostics:
    return ev.mean(), jnp.max(its), jnp.all(done)
  return ev.mean()


_logme_jit = jax.jit(logme_core,
                     static_argnames=("corrected", "return_diagnostics"))

#: The fixed point's iteration cap (the reference's).
MAX_ITERATIONS = _MAX_ITERS


class Diagnostics(NamedTuple):
  """How an iterative solver ended.

  Attributes:
    iterations: iterations used (LogME: the most over the target columns).
    converged: whether it stopped on its tolerance rather than its cap
      (LogME: every target column did).
  """
  iterations: int
  converged: bool


def logme(features: Any, labels: Any, regression: bool = False,
          return_diagnostics: bool = False, corrected: bool | str = False):
  """LogME transferability score (higher is better).

  Args:
    features: ``[N, D]``.
    labels: ``[N]`` class ids (classification), or with ``regression=True``
      float targets ``[N]`` or ``[N, T]`` (one evidence per column).
    regression: treat ``labels`` as real-valued targets.
    corrected: ``False`` (the reference). ``True``: the ``N < D`` evidence
      fix of thuml/LogME issue #23 / PR #24 (open, not merged): the
      log-determinant runs over ``sigma`` zero-padded to length ``D``, so
      per column the evidence drops by ``(D - N) / (2N) log alpha`` (``D/2
      log alpha`` becomes ``N/2 log alpha``); ``N >= D`` is unchanged.
      ``"rank"``: also for ``N > D``, the same term for the directions whose
      singular value the reference's ``s > 1e-10`` filter drops
      (rank-deficient features; our generalisation, not in the PR).
    return_diagnostics: also return a :class:`Diagnostics` of the fixed
      point (iterations used, at most 11; whether every column converged).

  Returns:
    The mean per-sample log evidence, averaged over target columns; with
    ``return_diagnostics``, ``(score, Diagnostics(iterations, converged))``.

  Example:
    >>> import numpy as np, sfda_jax
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), 25)
    >>> good = rng.normal(size=(100, 16)) + 4 * np.eye(16)[y]
    >>> sfda_jax.logme(good, y) > sfda_jax.logme(good, rng.permutation(y))
    True
  """
  _check_options(corrected)
  if not regression and not return_diagnostics:
    return _runner.score(SPEC, features, labels, corrected=corrected)
  if not regression:
    x, enc = _runner.validated_features(SPEC, features, labels,
                                        SPEC.options(corrected=corrected))
    t = stats.one_hot(_validation.place_like_samples(enc.codes, x),
                      enc.num_classes, x.dtype)
    return _with_diagnostics(x, t, corrected)
  x = _validation.check_features(features)
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
  if return_diagnostics:
    return _with_diagnostics(x, t, corrected)
  return _runner.finish(SPEC, _logme_jit(x, t, corrected=corrected))


def _with_diagnostics(x, t, corrected):
  score, its, done = _logme_jit(x, t, corrected=corrected,
                                return_diagnostics=True)
  return _runner.finish(SPEC, score), Diagnostics(
      int(_validation.fetch(its)), bool(_validation.fetch(done)))


def _check_options(corrected=False) -> None:
  if not any(corrected is c or (isinstance(corrected, str) and corrected == c)
             for c in CORRECTIONS):
    raise ValueError(f"corrected must be one of {list(CORRECTIONS)}, got "
                     f"{corrected!r}.")


def _prepare(enc, corrected=False) -> _spec.Prepared:
  one_hot = _spec.one_hot(enc)
  return one_hot._replace(static={"corrected": corrected})


SPEC = _spec.MetricSpec(
    name="logme", order=10, fn=logme, inputs="features", core=logme_core,
    prepare=_prepare, check_options=_check_options,
    defaults={"corrected": False}, streaming="logme")

SPECS = (SPEC, SPEC.variant("logme_corrected", 11, corrected=True))
