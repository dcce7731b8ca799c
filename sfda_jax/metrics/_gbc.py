"""GBC: Gaussian Bhattacharyya Coefficient.

Pandy, Agostinelli, Uijlings, Ferrari, Mensink. "Transferability Estimation
using Bhattacharyya Class Separability." CVPR 2022.

Each class is modelled as a Gaussian with diagonal (or spherical) covariance on
the (optionally PCA-reduced) features. With ``S = (S_k + S_l)/2``,
``D_B = 1/8 (mu_k-mu_l)^T S^-1 (mu_k-mu_l) + 1/2 ln(det S / sqrt(det S_k det S_l))``
and ``GBC = - sum_{k != l} exp(-D_B)`` over ordered pairs (higher is better,
at most 0).

Variance floor (a documented choice; the paper leaves it open): every
per-class variance gets ``reg * mean_d Var(X)_d`` added (``reg = 1e-6``), so a
dimension that is constant inside a class does not produce ``log 0``; the
floor is relative, so the score is invariant to rescaling the features.

The score needs only class means, per-class variances and the global
variances of the (projected) features: :func:`gbc_from_stats` is shared by
the in-memory kernel and ``sfda_jax.streaming.gbc``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _spec
from sfda_jax.metrics import _validation
from sfda_jax.metrics import stats

__all__ = ["gbc", "gbc_core", "gbc_from_stats"]

_GAUSSIAN_TYPES = ("diagonal", "spherical")


def gbc_core(x: jax.Array, labels: jax.Array, num_classes: int,
             gaussian_type: str = "diagonal", pca_dim: int | None = None,
             reg: float = 1e-6) -> jax.Array:
  """GBC on validated inputs (pure, jittable, vmappable over ``x``)."""
  # Translation invariant: centred first, for accurate class means.
  x = stats.project_principal(stats.center(x), pca_dim)
  means, counts = stats.class_means(x, labels, num_classes)
  centred = x - means[labels]
  y = stats.one_hot(labels, num_classes, x.dtype)
  var = stats.matmul(y.T, centred * centred) / counts[:, None]     # [K, D]
  global_var = jnp.mean(x * x, axis=0)
  return gbc_from_stats(means, var, global_var, gaussian_type, reg)


def gbc_from_stats(means: jax.Array, var: jax.Array, global_var: jax.Array,
                   gaussian_type: str = "diagonal", reg: float = 1e-6
                   ) -> jax.Array:
  """GBC from class statistics (pure, jittable).

  Args:
    means: class means ``[K, D]``.
    var: biased per-class variances ``[K, D]``.
    global_var: biased variances of all samples ``[D]`` (sets the floor).
    gaussian_type: ``"diagonal"`` or ``"spherical"`` (static).
    reg: relative variance floor (static).

  Returns:
    ``- sum_{k != l} BC(k, l)`` (scalar).
  """
  num_classes = means.shape[0]
  var = var + reg * jnp.mean(global_var)
  if gaussian_type == "spherical":
    var = jnp.broadcast_to(var.mean(axis=1, keepdims=True), var.shape)
  log_var = jnp.log(var)

  def row(args):
    mu_k, var_k, log_var_k = args
    avg = 0.5 * (var_k[None, :] + var)                             # [K, D]
    d_b = (0.125 * jnp.sum((mu_k[None, :] - means) ** 2 / avg, axis=1)
           + 0.5 * jnp.sum(jnp.log(avg) - 0.5 * log_var_k[None, :]
                           - 0.5 * log_var, axis=1))
    return jnp.exp(-d_b)

  bc = lax.map(row, (means, var, log_var), batch_size=min(num_classes, 64))
  # Zero the diagonal (BC(k, k) = 1) before summing: subtracting the trace
  # afterwards would cancel K against a sum that can be ~1e-4 in float32.
  off_diagonal = ~jnp.eye(num_classes, dtype=bool)
  return -jnp.sum(jnp.where(off_diagonal, bc, 0.0))


def check_options(gaussian_type: str, pca_dim: int | None, reg: float) -> None:
  """Raises ValueError for an unknown ``gaussian_type``, a ``pca_dim`` that is
  not a positive int or ``None``, or ``reg <= 0``."""
  if gaussian_type not in _GAUSSIAN_TYPES:
    raise ValueError(f"gaussian_type must be one of {_GAUSSIAN_TYPES}, got "
                     f"{gaussian_type!r}.")
  _validation.positive_int(pca_dim, "pca_dim", none_means="no PCA")
  if not reg > 0:
    raise ValueError(f"reg must be > 0, got {reg}.")


#: The default number of principal components (the GBC paper's setting):
#: without a reduction, diagonal Gaussians in ~1000-D feature spaces are so
#: far apart that every Bhattacharyya coefficient underflows and all models
#: score 0. Features with at most this many dimensions are not reduced.
DEFAULT_PCA_DIM = 64


def gbc(features: Any, labels: Any, gaussian_type: str = "diagonal",
        pca_dim: int | None = DEFAULT_PCA_DIM, reg: float = 1e-6) -> float:
  """Gaussian Bhattacharyya Coefficient (higher is better, at most 0).

  Args:
    features: ``[N, D]``.
    labels: ``[N]`` class ids (any; remapped).
    gaussian_type: ``"diagonal"`` or ``"spherical"`` class covariances.
    pca_dim: reduce to this many principal components first (default 64,
      the paper's setting; features with ``D <= pca_dim`` are not reduced);
      ``None`` keeps all dimensions.
    reg: relative variance floor (see module docstring).

  Example:
    >>> import numpy as np, sfda_jax
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), 25)
    >>> x = rng.normal(size=(100, 8)) + 3 * np.eye(8)[y]
    >>> sfda_jax.gbc(x, y) > sfda_jax.gbc(x, rng.permutation(y))
    True
  """
  return _runner.score(SPEC, features, labels, gaussian_type=gaussian_type,
                       pca_dim=pca_dim, reg=reg)


def _prepare(enc, gaussian_type, pca_dim, reg):
  p = _spec.codes(enc)
  return p._replace(static={**p.static, "gaussian_type": gaussian_type,
                            "pca_dim": pca_dim, "reg": float(reg)})


SPEC = _spec.MetricSpec(
    name="gbc", order=50, fn=gbc, inputs="features", core=gbc_core,
    prepare=_prepare, check_options=check_options, scale_invariant=True,
    defaults={"gaussian_type": "diagonal", "pca_dim": DEFAULT_PCA_DIM,
              "reg": 1e-6},
    streaming="gbc")
