"""SFDA: Self-challenging Fisher Discriminant Analysis.

Shao, Zhao, Ge, Ma, Ge, Wu, Luo. "Not All Models Are Equal: Predicting Model
Transferability in a Self-challenging Fisher Space." ECCV 2022.

The score fits a regularised Fisher discriminant (LDA with adaptive shrinkage)
on the target features, mixes every sample towards the mean of the *other*
classes in proportion to how unsure the first fit was (ConfMix, the
"self-challenging" step), refits with the same shrinkage and reports the mean
probability of the true class. Semantics follow the published code (see
``METRICS.md``) except its in-place overwrite of the caller's array and its
rounding of the mixed features to the input dtype.

Fisher space. ``fit`` solves ``Sb v = e Sw_s v`` with eigenvectors normalised
so that ``V^T Sw_s V = I`` by whitening with the Cholesky factor ``L`` of
``Sw_s``: ``L^-1 Sb L^-T = U diag(e) U^T``, ``V = L^-T U``. Because ``V`` is
square, ``V V^T = Sw_s^-1`` and the classifier ``coef = M V V^T = M Sw_s^-1``
needs only a Cholesky solve; the score path uses that identity and skips the
eigen-solve. Means are centred on the global mean first (same probabilities:
the shift adds a per-sample constant to every class's decision value), which
keeps the float32 path accurate. ``transform`` projects onto the first ``min(K-1, D)`` columns.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _spec
from sfda_jax.metrics import _validation
from sfda_jax.metrics import stats

__all__ = ["SFDAState", "sfda", "sfda_core", "sfda_fit", "sfda_fit_core",
           "sfda_fit_from_stats", "sfda_predict_proba", "sfda_transform",
           "confmix", "self_challenge", "true_class_probability"]


class SFDAState(NamedTuple):
  """A fitted SFDA model (a pytree).

  Attributes:
    means: class means ``[K, D]``.
    priors: class priors ``[K]``.
    shrinkage: the shrinkage intensity ``s`` used (scalar).
    center: the global mean ``m = sum_k pi_k mu_k``, ``[D]``.
    coef: ``(M - m) Sw_s^-1``, ``[K, D]``.
    intercept: ``-1/2 (mu_k - m) . coef_k + log pi_k``, ``[K]``; the
      decision function is ``(X - m) coef^T + intercept``.
    scalings: generalized eigenvectors ``V`` ``[D, D]`` sorted by eigenvalue,
      descending, with ``V^T Sw_s V = I``; ``None`` when fitted without the
      eigen-solve.
    eigenvalues: the matching generalized eigenvalues ``[D]`` or ``None``.
    classes: the original class ids ``[K]`` (host array) or ``None`` inside
      jitted code.
  """
  means: jax.Array
  priors: jax.Array
  shrinkage: jax.Array
  center: jax.Array
  coef: jax.Array
  intercept: jax.Array
  scalings: jax.Array | None = None
  eigenvalues: jax.Array | None = None
  classes: Any = None


def sfda_fit_core(x: jax.Array, labels: jax.Array, num_classes: int,
                  shrinkage: jax.Array | float | None = None,
                  eigen: bool = False) -> SFDAState:
  """Fits SFDA's regularised Fisher discriminant (pure, jittable).

  Args:
    x: features ``[N, D]`` (float).
    labels: integer codes ``[N]`` in ``[0, K)``.
    num_classes: ``K`` (static).
    shrinkage: ``None`` for the adaptive ``max(exp(-5 lambda_max(Sw)), 1e-10)``,
      or a fixed intensity in ``[0, 1]``.
    eigen: also solve the generalized eigenproblem (needed by ``transform``).

  Returns:
    An :class:`SFDAState`.
  """
  means, counts = stats.class_means(x, labels, num_classes)
  sw = stats.within_scatter(x, labels, means)
  total = stats.total_scatter(x) if eigen else None
  return sfda_fit_from_stats(means, counts, sw, shrinkage, total)


def sfda_fit_from_stats(means: jax.Array, counts: jax.Array, sw: jax.Array,
                        shrinkage: jax.Array | float | None = None,
                        total: jax.Array | None = None) -> SFDAState:
  """Fits SFDA's Fisher discriminant from class statistics (pure, jittable).

  The one fitting routine: :func:`sfda_fit_core` (in memory) and
  ``sfda_jax.streaming.sfda`` (statistics accumulated over chunks) both call
  it.

  Args:
    means: class means ``[K, D]``.
    counts: samples per class ``[K]`` (float).
    sw: pooled within-class scatter ``Sw = sum_k pi_k Cov(X_k)``, ``[D, D]``.
    shrinkage: ``None`` for the adaptive ``max(exp(-5 lambda_max(Sw)), 1e-10)``,
      or a fixed intensity in ``[0, 1]``.
    total: ``Cov(X)`` ``[D, D]`` to also solve the generalized eigenproblem
      (``scalings``, needed by ``transform``); ``None`` skips it.

  Returns:
    An :class:`SFDAState`.
  """
  priors = counts / counts.sum()
  if shrinkage is None:
    s, lam = stats.adaptive_shrinkage(sw)
  else:
    s = jnp.asarray(shrinkage, dtype=sw.dtype)
    lam = stats.power_iteration_top_eigenvalue(sw)
  sw_s = stats.shrink(sw, s)
  chol = stats.cholesky_with_jitter(sw_s, lam)
  # Centred parametrisation: the reference's decision X M^T Sw_s^-1 ... differs
  # from (X - m)(M - m)^T Sw_s^-1 ... by a per-sample constant, which softmax
  # ignores; the centred form avoids float32 cancellation between classes.
  center = priors @ means
  centred = means - center
  coef = stats.solve_triangular(                                    # [K, D]
      chol.T, stats.solve_triangular(chol, centred.T, lower=True),
      lower=False).T
  intercept = -0.5 * jnp.sum(centred * coef, axis=1) + jnp.log(priors)
  scalings = evals = None
  if total is not None:
    st_s = stats.shrink(total, s)
    sb = st_s - sw_s
    tmp = stats.solve_triangular(chol, sb, lower=True)               # L^-1 Sb
    whitened = stats.solve_triangular(chol, tmp.T, lower=True)       # L^-1 Sb L^-T
    whitened = 0.5 * (whitened + whitened.T)
    evals, u = stats.eigh(whitened)
    evals, u = evals[::-1], u[:, ::-1]
    scalings = stats.solve_triangular(chol.T, u, lower=False)        # L^-T U
  return SFDAState(means=means, priors=priors, shrinkage=s, center=center,
                   coef=coef,
                   intercept=intercept, scalings=scalings, eigenvalues=evals)


def _decision(state: SFDAState, x: jax.Array) -> jax.Array:
  return stats.matmul(x - state.center, state.coef.T) + state.intercept


def confmix(x: jax.Array, labels: jax.Array, probs: jax.Array,
            means: jax.Array) -> jax.Array:
  """SFDA's self-challenging ConfMix step (pure, jittable).

  ``x_i <- q_i x_i + (1 - q_i) mubar_{y_i}`` with ``q_i = probs[i, y_i]`` and
  ``mubar_k`` the mean of the other classes' means.

  Args:
    x: features ``[N, D]``.
    labels: integer codes ``[N]``.
    probs: class probabilities ``[N, K]`` (the softened first-fit output).
    means: class means of ``x``, ``[K, D]``.

  Returns:
    The mixed features ``[N, D]`` (a new array).
  """
  k = means.shape[0]
  other_means = (means.sum(axis=0) - means) / (k - 1)
  q = jnp.take_along_axis(probs, labels[:, None], axis=1)
  return q * x + (1.0 - q) * other_means[labels]


def self_challenge(first: SFDAState, x: jax.Array, labels: jax.Array
                   ) -> jax.Array:
  """The mixed features of SFDA's score: first-fit probabilities, softened by
  a second softmax (as the reference), then :func:`confmix`.

  Row-wise: mixing a chunk of samples gives that chunk of the mixed features,
  which is what lets ``sfda_jax.streaming.sfda`` mix chunk by chunk.

  Args:
    first: the first fit (adaptive shrinkage) on the original features.
    x: features ``[N, D]``.
    labels: integer codes ``[N]``.

  Returns:
    The mixed features ``[N, D]``.
  """
  probs = jax.nn.softmax(_decision(first, x), axis=1)
  probs = jax.nn.softmax(probs, axis=1)        # the reference's "soften" step
  return confmix(x, labels, probs, first.means)


def true_class_probability(state: SFDAState, x: jax.Array, labels: jax.Array
                           ) -> jax.Array:
  """``predict_proba(x)[i, y_i]`` for each sample, ``[N]``."""
  probs = jax.nn.softmax(_decision(state, x), axis=1)
  return jnp.take_along_axis(probs, labels[:, None], axis=1)[:, 0]


def sfda_core(x: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """The SFDA score on validated inputs (pure, jittable, vmappable over x).

  The score is translation invariant; ``x`` is centred first (two passes) so
  that class means and scatters come from accurate, small numbers.
  """
  x = stats.center(x)
  first = sfda_fit_core(x, labels, num_classes)
  mixed = self_challenge(first, x, labels)
  second = sfda_fit_core(mixed, labels, num_classes, shrinkage=first.shrinkage)
  return jnp.mean(true_class_probability(second, mixed, labels))


_fit_jit = jax.jit(sfda_fit_core, static_argnames=("num_classes", "eigen"))


def sfda(features: Any, labels: Any) -> float:
  """SFDA transferability score (higher is better), in ``(0, 1]``.

  Args:
    features: ``[N, D]`` target-set features from the candidate model.
    labels: ``[N]`` class ids (any integers or strings; remapped).

  Returns:
    The mean probability of the true class after the self-challenging refit.

  Example:
    >>> import numpy as np, sfda_jax
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 20)
    >>> x = rng.normal(size=(60, 8)) + 3 * np.eye(8)[y]
    >>> 0.5 < sfda_jax.sfda(x, y) <= 1.0
    True
  """
  return _runner.score(SPEC, features, labels)


def sfda_fit(features: Any, labels: Any,
             shrinkage: float | None = None) -> SFDAState:
  """Fits SFDA's Fisher discriminant, including the Fisher-space projection.

  Args:
    features: ``[N, D]``.
    labels: ``[N]`` class ids (any; remapped, kept in ``state.classes``).
    shrinkage: ``None`` (adaptive, as the paper) or a fixed value in [0, 1].

  Returns:
    An :class:`SFDAState` with ``scalings`` set.
  """
  x = _validation.check_features(features)
  enc = _validation.encode_labels(labels, x.shape[0])
  if shrinkage is not None and not 0.0 <= float(shrinkage) <= 1.0:
    raise ValueError(f"shrinkage must be in [0, 1] or None, got {shrinkage}.")
  x = _validation.check_feature_values(x, "sfda_fit", scale_invariant=False)
  state = _fit_jit(x, _validation.place_like_samples(enc.codes, x),
                   num_classes=enc.num_classes, shrinkage=shrinkage,
                   eigen=True)
  if not _validation.fetch(jnp.all(jnp.isfinite(state.coef))):
    raise ValueError("sfda_fit: the shrunk within-class scatter could not be "
                     "factorised (numerically singular).")
  return state._replace(classes=enc.classes)


@jax.jit
def _predict_proba(state: SFDAState, x: jax.Array) -> jax.Array:
  return jax.nn.softmax(_decision(state, x), axis=1)


def sfda_predict_proba(state: SFDAState, features: Any) -> jax.Array:
  """Class probabilities ``softmax(X coef^T + intercept)``, ``[N, K]``.

  Columns follow ``state.classes`` (sorted original ids).
  """
  x = _validation.check_features(features)
  _check_dim(state, x)
  return _predict_proba(state._replace(classes=None), x)


def sfda_transform(state: SFDAState, features: Any) -> jax.Array:
  """Projection onto the Fisher space, ``X V[:, :min(K-1, D)]``."""
  if state.scalings is None:
    raise ValueError("this SFDAState was fitted without the eigen-solve; "
                     "use sfda_fit(...) to get scalings for transform().")
  x = _validation.check_features(features)
  _check_dim(state, x)
  k, d = state.means.shape
  return stats.matmul(x, state.scalings[:, :min(k - 1, d)].astype(x.dtype))


def _check_dim(state: SFDAState, x: jax.Array) -> None:
  if x.shape[1] != state.means.shape[1]:
    raise ValueError(f"features have {x.shape[1]} dims but the model was "
                     f"fitted on {state.means.shape[1]}.")


SPEC = _spec.MetricSpec(
    name="sfda", order=0, fn=sfda, inputs="features", core=sfda_core,
    prepare=_spec.codes, streaming="sfda",
    hint="The within-class scatter may be numerically singular; try "
    "jax.config.update('jax_enable_x64', True).")
