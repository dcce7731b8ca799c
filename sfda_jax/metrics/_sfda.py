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
import numpy as np

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _spec
from sfda_jax.metrics import _validation
from sfda_jax.metrics import sampling
from sfda_jax.metrics import stats

__all__ = ["SFDAState", "SHRINKAGE_RULES", "sfda", "sfda_core", "sfda_cv_core",
           "sfda_fit", "sfda_fit_core",
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


#: ``sfda(..., shrinkage=...)`` rules: the published adaptive
#: ``max(exp(-5 lambda), 1e-10)``, Ledoit-Wolf, OAS.
SHRINKAGE_RULES = ("adaptive", "lw", "oas")


def _rule_shrinkage(rule: str, sw: jax.Array, residuals: jax.Array,
                    n: jax.Array) -> jax.Array | None:
  """The shrinkage of ``rule`` for the within-class scatter ``sw`` of the
  class-centred ``residuals`` (zero rows for samples left out) of ``n``
  samples; ``None`` for "adaptive" (the fit computes it)."""
  if rule == "adaptive":
    return None
  if rule == "lw":
    row_sq = jnp.sum(residuals * residuals, axis=1)
    return stats.ledoit_wolf_shrinkage_from_moments(
        sw, jnp.sum(row_sq * row_sq), n)
  return stats.oas_shrinkage(sw, n)


def _reduced(x: jax.Array, num_classes: int, pca_dim: int | None
             ) -> jax.Array:
  """``x`` centred (two passes), then on its top ``min(pca_dim, D, N - K)``
  principal axes (signs: scikit-learn's) when ``pca_dim`` is set (the
  saturation remedy (a))."""
  x = stats.center(x)
  if pca_dim is None:
    return x
  n, d = x.shape
  dim = max(1, min(pca_dim, d, n - num_classes))
  # Always the rotation, also for dim == D: the adaptive shrinkage's power
  # iteration starts from Sw 1, which is not rotation invariant.
  _, basis = stats.principal_basis(stats.gram(x) / n, top=dim)
  return stats.matmul(x, basis)


def sfda_core(x: jax.Array, labels: jax.Array, num_classes: int,
              pca_dim: int | None = None, shrinkage: str = "adaptive"
              ) -> jax.Array:
  """The SFDA score on validated inputs (pure, jittable, vmappable over x).

  The score is translation invariant; ``x`` is centred first (two passes) so
  that class means and scatters come from accurate, small numbers.

  Args:
    x: features ``[N, D]``.
    labels: integer codes ``[N]``.
    num_classes: ``K`` (static).
    pca_dim: (static) project onto this many principal axes first (at most
      ``min(D, N - K)``); ``None``: the reference (no projection).
    shrinkage: (static) one of :data:`SHRINKAGE_RULES`; both fits use the
      first fit's intensity, as the reference does.
  """
  x = _reduced(x, num_classes, pca_dim)
  if shrinkage == "adaptive":
    first = sfda_fit_core(x, labels, num_classes)
  else:
    means, counts = stats.class_means(x, labels, num_classes)
    residuals = x - means[labels]
    sw = stats.gram(residuals) / x.shape[0]
    first = sfda_fit_from_stats(
        means, counts, sw,
        _rule_shrinkage(shrinkage, sw, residuals, x.shape[0]))
  mixed = self_challenge(first, x, labels)
  second = sfda_fit_core(mixed, labels, num_classes, shrinkage=first.shrinkage)
  return jnp.mean(true_class_probability(second, mixed, labels))


def sfda_cv_core(x: jax.Array, labels: jax.Array, folds: jax.Array,
                 num_classes: int, num_folds: int, pca_dim: int | None = None,
                 shrinkage: str = "adaptive", mix_heldout: bool = True
                 ) -> jax.Array:
  """Cross-fitted SFDA (the saturation remedy (d); pure, jittable).

  For each fold ``f``: both fits (shrinkage from the training part by
  ``shrinkage``'s rule, priors and class means from it) on the samples not in
  ``f``; each held-out sample ``i`` is mixed with ``q_i`` from the first fit
  and the training part's class means (unmixed when ``mix_heldout`` is
  False) and scored ``p2(x_i)[y_i]``. The score is the mean over all ``N``
  samples, each scored once.

  Args:
    x, labels, num_classes, pca_dim, shrinkage: as :func:`sfda_core`.
    folds: fold ids ``[N]`` in ``[0, num_folds)``.
    num_folds: ``F`` (static).
    mix_heldout: (static) ConfMix the held-out samples too.
  """
  x = _reduced(x, num_classes, pca_dim)
  total = jnp.zeros((), x.dtype)
  for f in range(num_folds):
    train = folds != f
    codes = jnp.where(train, labels, -1)         # -1: left out of the stats
    n_train = jnp.sum(train).astype(x.dtype)
    mom = stats.class_moments(x, codes, num_classes)
    sw = mom.scatter / n_train
    residuals = jnp.where(train[:, None], x - mom.means[labels], 0.0)
    first = sfda_fit_from_stats(
        mom.means, mom.counts, sw,
        _rule_shrinkage(shrinkage, sw, residuals, n_train))
    probs = jax.nn.softmax(jax.nn.softmax(_decision(first, x), axis=1),
                           axis=1)
    mixed = confmix(x, labels, probs, mom.means)
    mom2 = stats.class_moments(mixed, codes, num_classes)
    second = sfda_fit_from_stats(mom2.means, mom2.counts,
                                 mom2.scatter / n_train, first.shrinkage)
    q = true_class_probability(second, mixed if mix_heldout else x, labels)
    total = total + jnp.sum(jnp.where(train, 0.0, q))
  return total / x.shape[0]


def _variant_core(x: jax.Array, labels: jax.Array, *folds: jax.Array,
                  num_classes: int, pca_dim: int | None = None,
                  shrinkage: str = "adaptive", num_folds: int | None = None,
                  mix_heldout: bool = True) -> jax.Array:
  """The registry's core: :func:`sfda_cv_core` when fold ids are given,
  else :func:`sfda_core`."""
  if folds:
    return sfda_cv_core(x, labels, folds[0], num_classes, num_folds, pca_dim,
                        shrinkage, mix_heldout)
  return sfda_core(x, labels, num_classes, pca_dim, shrinkage)


_fit_jit = jax.jit(sfda_fit_core, static_argnames=("num_classes", "eigen"))


def sfda(features: Any, labels: Any, pca_dim: int | None = None,
         shrinkage: str = "adaptive", folds: Any = None, seed: int = 0,
         mix_heldout: bool = True) -> float:
  """SFDA transferability score (higher is better), in ``(0, 1]``.

  The defaults are the published method. The other options are opt-in
  remedies for ``N`` close to or below ``D``, where the reference saturates
  (TencentARC/SFDA issue #5: with ``rank Sw <= N - K < D`` the adaptive
  shrinkage sits at its 1e-10 floor and in-sample LDA separates every
  training point, so every model scores ~1). They are this library's
  choices, with no published reference (METRICS.md, "SFDA saturation").

  Args:
    features: ``[N, D]`` target-set features from the candidate model.
    labels: ``[N]`` class ids (any integers or strings; remapped).
    pca_dim: project the centred features onto ``min(pca_dim, D, N - K)``
      principal axes first (issue #5 used 32); ``None``: no projection.
    shrinkage: ``"adaptive"`` (the paper's ``max(exp(-5 lambda_max(Sw)),
      1e-10)``), ``"lw"`` (Ledoit-Wolf intensity of the class-centred
      residuals: scikit-learn's ``ledoit_wolf_shrinkage(R,
      assume_centered=True)``, NOT LDA's ``shrinkage="auto"``) or ``"oas"``
      (scikit-learn's ``oas(R, assume_centered=True)``); used by both fits.
    folds: ``None`` (in-sample, the reference), an int ``F >= 2`` (stratified
      folds drawn with ``seed``: each class's indices permuted with one
      ``numpy.random.default_rng(seed)``, the ``j``-th going to fold ``j mod
      F``) or fold ids ``[N]``: cross-fitted SFDA, every sample scored by
      fits on the other folds. Drawn folds follow the sorted class ids, so
      renaming classes in a different order draws different folds.
    seed: the fold seed (with an int ``folds``).
    mix_heldout: with ``folds``, ConfMix the held-out samples as the
      in-sample score mixes every sample (our choice); False scores them
      unmixed.

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
  return _runner.score(SPEC, features, labels, pca_dim=pca_dim,
                       shrinkage=shrinkage, folds=folds, seed=seed,
                       mix_heldout=mix_heldout)


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


def _check_options(pca_dim, shrinkage, folds, seed, mix_heldout) -> None:
  if pca_dim is not None:
    _validation.positive_int(pca_dim, "pca_dim", none_means="no projection")
  if shrinkage not in SHRINKAGE_RULES:
    raise ValueError(f"shrinkage must be one of {list(SHRINKAGE_RULES)}, "
                     f"got {shrinkage!r}.")
  if folds is not None and np.ndim(folds) == 0:
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) \
        or folds < 2:
      raise ValueError(f"folds must be None, an int >= 2 or fold ids [N], "
                       f"got {folds!r}.")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
      or seed < 0:
    raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
  if not isinstance(mix_heldout, (bool, np.bool_)):
    raise ValueError(f"mix_heldout must be a bool, got {mix_heldout!r}.")


def _fold_ids(enc, folds, seed) -> tuple[np.ndarray, int]:
  """Fold ids ``[N]`` in ``[0, F)`` and ``F`` (drawn, or the given ids
  remapped), checked: every fold leaves >= 1 sample of every class for
  training and holds >= 1 sample."""
  codes = np.asarray(enc.codes)
  if np.ndim(folds) == 0:
    ids, num = sampling.fold_assignment(codes, int(folds), int(seed)), int(folds)
  else:
    given = np.asarray(folds)
    if given.shape != codes.shape or not np.issubdtype(given.dtype,
                                                       np.integer):
      raise ValueError(f"fold ids must be integers of shape {codes.shape} "
                       f"(one per sample), got {given.dtype} "
                       f"{given.shape}.")
    uniq, ids = np.unique(given, return_inverse=True)
    num = len(uniq)
    if num < 2:
      raise ValueError(f"fold ids name {num} fold; cross-fitting needs >= 2.")
  counts = np.bincount(codes, minlength=enc.num_classes)
  for f in range(num):
    held = np.bincount(codes[ids == f], minlength=enc.num_classes)
    short = np.flatnonzero(counts - held < 1)
    if short.size:
      name = enc.classes[short[0]]
      raise ValueError(
          f"fold {f} holds every sample of class {name!r}, so its training "
          "part has none; each class needs samples outside every fold "
          "(at least 2 per class, spread over the folds).")
    if np.all(counts - held < 2):
      raise ValueError(
          f"the training part of fold {f} has a single sample of every "
          "class, so its within-class scatter is zero and no Fisher fit "
          "exists; use fewer folds or more samples per class.")
  return ids.astype(np.int32), num


def _prepare(enc, pca_dim, shrinkage, folds, seed, mix_heldout):
  static = {"num_classes": enc.num_classes, "pca_dim": pca_dim,
            "shrinkage": shrinkage}
  if folds is None:
    return _spec.Prepared(None, (enc.codes,), static, (True,))
  ids, num = _fold_ids(enc, folds, seed)
  return _spec.Prepared(None, (enc.codes, ids),
                        {**static, "num_folds": num,
                         "mix_heldout": bool(mix_heldout)}, (True, True))


def _check_input(x, enc, pca_dim, shrinkage, folds, seed, mix_heldout):
  del pca_dim, shrinkage, mix_heldout, x
  if folds is not None:
    _fold_ids(enc, folds, seed)


SPEC = _spec.MetricSpec(
    name="sfda", order=0, fn=sfda, inputs="features", core=_variant_core,
    prepare=_prepare, check_options=_check_options, check_input=_check_input,
    defaults={"pca_dim": None, "shrinkage": "adaptive", "folds": None,
              "seed": 0, "mix_heldout": True},
    streaming="sfda",
    hint="The within-class scatter may be numerically singular; try "
    "jax.config.update('jax_enable_x64', True).")

#: Named presets of the remedies (``score_models(metrics=("sfda_cv5",))``,
#: ``experiments.rank --metrics=...``); the benchmark judges them.
VARIANTS = (
    SPEC.variant("sfda_pca32", 1, pca_dim=32),
    SPEC.variant("sfda_lw", 2, shrinkage="lw"),
    SPEC.variant("sfda_oas", 3, shrinkage="oas"),
    SPEC.variant("sfda_cv5", 4, folds=5),
)
SPECS = (SPEC,) + VARIANTS
