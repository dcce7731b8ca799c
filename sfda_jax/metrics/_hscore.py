"""H-score and regularized H-score.

H-score: Bao, Li, Huang, Zheng, Hong, Tomizuka. "An Information-Theoretic
Approach to Transferability in Task Transfer Learning." ICIP 2019.
Regularized H-score: Ibrahim, Ponomareva, Mazumder. "Newer is Not Always
Better: Rethinking Transferability Metrics, Their Peculiarities, Stability and
Performance." ECML-PKDD 2022 (arXiv 2110.06893).

``H = tr(pinv(Cov(X)) Cov(G))`` with ``G_i = mu_{y_i}``. ``Cov(G)`` is the
between-class scatter ``sum_k pi_k (mu_k - mu)(mu_k - mu)^T``, so the trace is
``sum_k pi_k (mu_k - mu)^T pinv(Cov X) (mu_k - mu)``. The pseudo-inverse drops
eigenvalues below ``D * eps(dtype) * max``. The regularized version replaces
``Cov(X)`` by its Ledoit-Wolf estimate ``C_a`` with shrinkage ``a`` and scales
``Cov(G)`` by ``1 - a``.

Precision: the eigen-solve behind the pseudo-inverse runs in float64 whatever
the working dtype (``stats.precise``), with the reference's threshold. In
float32 it dropped or mis-sized every eigenvalue below ~1e-6 of the largest;
a tiny HuggingFace ResNet's features (condition 7e6) scored 3.836 instead of
4.302. ``Cov(X)`` itself is formed from centred data on the device and is
accurate far below that level.

Both scores are functions of ``Cov(X)``, the class means and priors (and, for
the Ledoit-Wolf intensity, ``sum_i |x_i - mu|^4``): :func:`hscore_from_stats`
and :func:`regularized_hscore_from_stats` are shared by the in-memory kernels
and ``sfda_jax.streaming``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _spec
from sfda_jax.metrics import stats

_EPS64 = float(np.finfo(np.float64).eps)

__all__ = ["hscore", "hscore_core", "hscore_from_stats", "regularized_hscore",
           "regularized_hscore_core", "regularized_hscore_from_stats"]


def hscore_from_stats(cov: jax.Array, means: jax.Array, priors: jax.Array
                      ) -> jax.Array:
  """H-score ``tr(pinv(cov) Sb)`` from statistics (pure, jittable).

  Args:
    cov: ``Cov(X)`` ``[D, D]``.
    means: class means ``[K, D]``.
    priors: class priors ``[K]``; ``Sb`` is the between-class scatter.
  """
  return stats.precise(_trace_pinv_between, cov, means, priors)


def _trace_pinv_between(ops, cov, means, priors):
  """``tr(pinv(cov) Sb)`` (float64, see :func:`stats.precise`): the
  pseudo-inverse drops eigenvalues below ``D * eps(float64) * max``, the
  reference's rule."""
  d = cov.shape[0]
  w, u = ops.eigh(0.5 * (cov + cov.T))
  keep = ops.abs(w) > d * _EPS64 * ops.max(ops.abs(w))
  inv_w = ops.where(keep, 1.0 / ops.where(keep, w, 1.0), 0.0)
  centred = means - priors @ means                                 # [K, D]
  proj = centred @ u
  return ops.sum(priors[:, None] * proj * proj * inv_w[None, :])


def regularized_hscore_from_stats(cov: jax.Array, shrinkage: jax.Array,
                                  means: jax.Array, priors: jax.Array
                                  ) -> jax.Array:
  """``(1 - a) tr(pinv(C_a) Sb)`` with ``C_a`` = ``cov`` shrunk by ``a``.

  Args:
    cov: ``Cov(X)`` ``[D, D]``.
    shrinkage: the Ledoit-Wolf intensity ``a`` (scalar).
    means, priors: class means ``[K, D]`` and priors ``[K]``.
  """
  return (1.0 - shrinkage) * hscore_from_stats(
      stats.shrink(cov, shrinkage), means, priors)


def hscore_core(x: jax.Array, labels: jax.Array, num_classes: int
                ) -> jax.Array:
  """H-score on validated inputs (pure, jittable, vmappable over ``x``).

  The score is invariant to translating and to rescaling the columns of
  ``x``, so the features are centred (two passes) and each column is scaled
  to unit variance first: the covariance is then formed from accurate,
  equally scaled numbers, and what remains ill-conditioned is the data's own
  correlation structure.
  """
  xc = stats.center(x)
  scale = jnp.sqrt(jnp.mean(xc * xc, axis=0))
  xs = xc / jnp.where(scale > 0, scale, 1.0)
  means, counts = stats.class_means(xs, labels, num_classes)
  return hscore_from_stats(stats.gram(xs) / x.shape[0], means,
                           counts / x.shape[0])


def regularized_hscore_core(x: jax.Array, labels: jax.Array, num_classes: int
                            ) -> jax.Array:
  """Regularized (Ledoit-Wolf) H-score on validated inputs (pure, jittable)."""
  n, d = x.shape
  xc = stats.center(x)
  cov = stats.gram(xc) / n
  a = stats.ledoit_wolf_shrinkage(xc, cov)
  means, counts = stats.class_means(xc, labels, num_classes)
  return regularized_hscore_from_stats(cov, a, means, counts / n)


def hscore(features: Any, labels: Any) -> float:
  """H-score (higher is better).

  Args:
    features: ``[N, D]``.
    labels: ``[N]`` class ids (any; remapped).

  Example:
    >>> import numpy as np, sfda_jax
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), 25)
    >>> x = rng.normal(size=(100, 8)) + 3 * np.eye(8)[y]
    >>> sfda_jax.hscore(x, y) > sfda_jax.hscore(x, rng.permutation(y))
    True
  """
  return _runner.score(SPECS[0], features, labels)


def regularized_hscore(features: Any, labels: Any) -> float:
  """Regularized H-score with Ledoit-Wolf shrinkage (higher is better).

  Args:
    features: ``[N, D]``.
    labels: ``[N]`` class ids (any; remapped).
  """
  return _runner.score(SPECS[1], features, labels)


SPECS = (
    _spec.MetricSpec(
        name="hscore", order=30, fn=hscore, inputs="features",
        core=hscore_core, prepare=_spec.codes, scale_invariant=True,
        streaming="hscore"),
    _spec.MetricSpec(
        name="regularized_hscore", order=40, fn=regularized_hscore,
        inputs="features", core=regularized_hscore_core,
        prepare=_spec.codes, scale_invariant=True,
        streaming="regularized_hscore"),
)
