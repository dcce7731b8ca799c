"""NCTI: neural-collapse transferability (a set-level metric).

Wang, Luo, Zheng, Huang, Baktashmotlagh. "How Far Pre-trained Models Are
from Neural Collapse on the Target Dataset Informs their Transferability."
ICCV 2023. Semantics follow METRICS.md ("NCTI - neural-collapse
transferability"), specified from the official code (BUserName/NCTI@b18d395:
metrics.py ``NCTI_Score``, evaluate_metric_group1_cpu.py) and the
scikit-learn steps it calls (``PCA``, ``LinearDiscriminantAnalysis``).

Per model, on features ``X [N, D]`` and labels (``K >= 2`` classes):

1. Exact PCA to 64 dims: ``X_p = (X - mean) V_64`` ``[N, 64]``, variances
   ``lambda_j = S_j^2 / (N - 1)``. Needs ``min(N, D) >= 64``. Computed from
   the ``D x D`` covariance when ``N >= D``, else from the ``N x N`` Gram
   (:func:`principal_scores`). Signs and rotations of the components change
   none of the terms below.
2. ``s = max(exp(-sum_{j<32} lambda_j), 1e-10)``.
3. LDA on ``X_p``, one formula for both of the reference's branches: ``V`` =
   generalised eigenvectors of ``(Sb, Sigma)`` with ``V^T Sigma V = I``,
   eigenvalues descending, and ``p = softmax(X_p Sigma^-1 M^T - 1/2
   diag(M Sigma^-1 M^T) + log pi)``.

   * ``s == 1e-10`` (the usual case for raw CNN features; scikit-learn solver
     ``'svd'``): ``Sigma = c Sw``, ``Sb`` the between-class scatter, with
     ``c = N / (N - K)`` (``within="unbiased"``, the default: scikit-learn
     before PR #33626, the NCTI era) or ``c = 1`` (``within="biased"``,
     scikit-learn 1.9.1). As scikit-learn's svd solver, within-class
     directions whose singular value of ``sqrt(c/N) R / sigma_R`` (``R`` the
     class-centred ``X_p``, ``sigma_R`` its column std) is ``<= 1e-4`` and
     between-class directions ``<= 1e-4`` x the largest are dropped (this
     matters only for near-degenerate data, e.g. ``N - K < 64``).
   * otherwise (solver ``'eigen'``, shrinkage ``s``): ``Sigma = Sw_s`` and
     ``Sb = St_s - Sw_s`` (``= (Sb)_s``, exactly).
4. ``Z = X_p V[:, :r]``, ``r = min(K - 1, 64)``; ``seli = ||Z - 1 zbar^T||_*``.
5. ``ncc = mean_i p[i, y_i]``.
6. ``vc = log(sum_k ||P_k||_*)``, ``P_k`` the rows of ``p`` of class ``k``
   (a class with one sample adds ``||p_i||_2``).

Set level (evaluate_metric_group1_cpu.py): ``NCTI_m = mm(ncc)_m +
mm(seli)_m - mm(vc)_m`` with ``mm`` the min-max over the candidate models of
one target set, in ``[-1, 2]``, higher is better. The raw parts: ``seli >= 0``
and ``ncc`` in ``(0, 1]`` are better when higher, ``vc`` when lower.

DEVIATIONs from the reference (METRICS.md):

* Exact PCA. The reference's ``PCA(64)`` with the 'auto' solver is a
  randomized SVD with an unset seed for ``D > 1000`` (or ``N < 10 D``), so it
  is approximate and nondeterministic; agreement with it is close, not 1e-6.
* ``mm = 0`` for every model when a part is equal for all of them (the
  reference gives NaN/inf); at least 2 models are needed.
* ``within`` selects ``c``; the default ``"unbiased"`` is the behaviour of
  the scikit-learn the paper used, not of the current one (``"biased"``).
  The choice moves ``p`` (so ``ncc`` and ``vc``) by ~1e-3 to 1e-2 and scales
  ``seli`` by exactly ``sqrt((N - K) / N)``.

Numerics: in the svd branch every term is invariant to rescaling the PCA
columns (the truncation rule included), so they are standardised first: the
within-class scatter is then a correlation-like, well-conditioned matrix
even for ill-conditioned float32 features. The ``64 x 64`` eigen-solves run
in float64 (:func:`stats.precise`); ``seli`` and the ``||P_k||_*`` are sums
of singular values from SVDs of the matrices themselves (not square roots of
Gram eigenvalues, which lose the small singular values in float32).

Cost: PCA ``O(N D min(N, D))`` (the Gram) plus an eigen-solve of the smaller
side; LDA ``O(64^2 N + 64^3)``; seli ``O(N r^2)``; vc ``O(K W K min(W, K))``
with a padded ``[K, W, K]`` layout, ``W = max_k n_k + 1`` (memory
``K^2 W``). The three parts share the PCA and the LDA but are
separate registry entries (batched by ``score_models`` part by part), so
scoring all three computes the PCA three times; :func:`ncti_parts_core`
computes all three in one pass for use inside your own jitted code.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _spec
from sfda_jax.metrics import stats

__all__ = ["ncti", "ncti_parts", "ncti_seli", "ncti_ncc", "ncti_vc",
           "ncti_seli_core", "ncti_ncc_core", "ncti_vc_core",
           "ncti_parts_core", "ncti_lda", "NCTILDA", "principal_scores",
           "max_class_size", "WITHIN_OPTIONS", "PCA_DIM"]

#: Principal components kept (the reference's ``PCA(n_components=64)``).
PCA_DIM = 64
#: Leading PCA variances summed by the shrinkage rule.
SHRINK_DIMS = 32
#: ``s`` floor; ``s`` at the floor selects the svd branch.
S_FLOOR = 1e-10
#: scikit-learn's ``tol``: singular values ``<= 1e-4`` are dropped.
SVD_TOL = 1e-4
#: ``within`` options (``c = N/(N-K)`` and ``c = 1`` in the svd branch).
WITHIN_OPTIONS = ("unbiased", "biased")
#: NCTI = mm(ncc) + mm(seli) - mm(vc).
WEIGHTS = (1.0, 1.0, -1.0)


def principal_scores(x: jax.Array, dim: int) -> tuple[jax.Array, jax.Array]:
  """Exact PCA scores of ``x`` on its top ``dim`` components.

  From the ``D x D`` covariance (:func:`stats.project_principal`'s basis)
  when ``N >= D``, else from the ``N x N`` Gram of the centred rows:
  ``X_p = U_dim diag(S_dim)``. Both eigen-solves are
  :func:`stats.principal_basis` (float64, top pairs only).

  Args:
    x: features ``[N, D]`` with ``min(N, D) >= dim``.
    dim: components kept (static).

  Returns:
    ``(scores [N, dim], variances [dim])``, variances descending and
    normalised by ``N - 1`` (scikit-learn's ``explained_variance_``).
  """
  xc = stats.center(x)
  n, d = xc.shape
  if n >= d:
    w, basis = stats.principal_basis(stats.gram(xc) / n, top=dim)
    scores = stats.matmul(xc, basis)
  else:
    w, u = stats.principal_basis(stats.gram(xc.T) / n, top=dim)
    scores = u * jnp.sqrt(jnp.maximum(w, 0.0) * n)
  return scores, jnp.maximum(w, 0.0) * (n / (n - 1.0))


class NCTILDA(NamedTuple):
  """NCTI's LDA fit on the PCA scores (a pytree).

  Attributes:
    features: the PCA scores the fit used ``[N, 64]`` (standardised columns
      in the svd branch).
    projection: ``V[:, :r]`` ``[64, r]`` (dropped directions zero).
    coef: ``(M - xbar) Sigma^-1`` ``[K, 64]``.
    intercept: ``-1/2 diag((M - xbar) coef^T) + log pi`` ``[K]``; the
      decision function is ``(features - xbar) coef^T + intercept``.
    center: ``xbar = pi M`` ``[64]``.
    shrinkage: ``s`` (0 in the svd branch).
    svd_branch: whether ``s`` hit its floor (scikit-learn solver 'svd').
  """
  features: jax.Array
  projection: jax.Array
  coef: jax.Array
  intercept: jax.Array
  center: jax.Array
  shrinkage: jax.Array
  svd_branch: jax.Array


def _within_factor(within: str, n: int, k: int) -> float:
  if within == "unbiased":
    return n / (n - k)
  if within == "biased":
    return 1.0
  raise ValueError(f"within must be one of {WITHIN_OPTIONS}, got {within!r}.")


def ncti_lda(x: jax.Array, labels: jax.Array, num_classes: int,
             within: str = "unbiased") -> NCTILDA:
  """Steps 1-3 of NCTI (PCA, the ``s`` rule, the LDA fit); pure, jittable.

  Args:
    x: features ``[N, D]``, ``min(N, D) >= 64``.
    labels: integer codes ``[N]`` in ``[0, K)``.
    num_classes: ``K`` (static).
    within: ``"unbiased"`` (``c = N/(N-K)``) or ``"biased"`` (``c = 1``),
      static.
  """
  n = x.shape[0]
  k = num_classes
  c = _within_factor(within, n, k)
  xp, var = principal_scores(x, PCA_DIM)
  dtype = xp.dtype
  s_raw = jnp.maximum(jnp.exp(-jnp.sum(var[:SHRINK_DIMS])), S_FLOOR)
  svd_branch = s_raw <= jnp.asarray(S_FLOOR, dtype)
  # svd branch: scale invariant per column, so standardise (conditioning).
  col_std = jnp.sqrt(jnp.mean(xp * xp, axis=0))
  scale = jnp.where(svd_branch & (col_std > 0),
                    1.0 / jnp.where(col_std > 0, col_std, 1.0), 1.0)
  xq = xp * scale
  means, counts = stats.class_means(xq, labels, k)
  priors = counts / n
  center = priors @ means
  sw = stats.within_scatter(xq, labels, means)
  sb = stats.between_scatter(means, priors)
  s = jnp.where(svd_branch, 0.0, s_raw).astype(dtype)
  sigma = jnp.where(svd_branch, c, 1.0).astype(dtype) * stats.shrink(sw, s)
  sb_s = stats.shrink(sb, s)
  std_r = jnp.sqrt(jnp.diagonal(sw))
  r = min(k - 1, PCA_DIM)
  projection, coef, intercept = stats.precise(
      lambda ops, *a: _lda_solve(ops, *a, r=r), sigma, sb_s, std_r,
      means - center, priors, svd_branch.astype(dtype))
  return NCTILDA(features=xq, projection=projection, coef=coef,
                 intercept=intercept, center=center, shrinkage=s,
                 svd_branch=svd_branch)


def _lda_solve(ops, sigma, sb, std_r, centred_means, priors, svd_branch, r):
  """The ``64 x 64`` generalised eigen-solve (float64, :func:`stats.precise`).

  Whitening ``W1 = D^-1 Q w^-1/2`` from ``D^-1 Sigma D^-1 = Q diag(w) Q^T``
  (``D = diag(std_r)``, the class-centred column stds, 1 where 0), so
  ``W1^T Sigma W1 = I``; in the svd branch ``w <= tol^2`` is dropped (the
  singular values of ``sqrt(c/N) R / sigma_R`` are ``sqrt(w)``). Then
  ``W1^T Sb W1 = U diag(e) U^T`` (``e`` descending), ``V = W1 U``; in the svd
  branch ``e <= tol^2 e_max`` is dropped (relative singular value ``<=
  tol``). ``Sigma^-1`` is ``V diag(kept) V^T`` (all of ``V`` in the eigen
  branch, where it is exactly ``Sigma^-1``).
  """
  svd = svd_branch > 0.5
  d = ops.where(std_r > 0, std_r, 1.0)
  corr = sigma / ops.outer(d, d)
  w, q = ops.eigh(0.5 * (corr + corr.T))
  keep_w = w > ops.where(svd, SVD_TOL ** 2, 0.0)
  inv_sqrt = ops.where(keep_w, 1.0 / ops.sqrt(ops.where(keep_w, w, 1.0)), 0.0)
  w1 = q * inv_sqrt[None, :] / d[:, None]
  b = w1.T @ sb @ w1
  e, u = ops.eigh(0.5 * (b + b.T))
  e, u = e[::-1], u[:, ::-1]
  keep_b = ops.where(svd, e > SVD_TOL ** 2 * e[0], True)
  v = (w1 @ u) * ops.where(keep_b, 1.0, 0.0)[None, :]
  coef = (centred_means @ v) @ v.T
  intercept = -0.5 * ops.sum(centred_means * coef, axis=1) + ops.log(priors)
  return v[:, :r], coef, intercept


def _probabilities(fit: NCTILDA) -> jax.Array:
  logits = (stats.matmul(fit.features - fit.center, fit.coef.T)
            + fit.intercept)
  return jax.nn.softmax(logits, axis=1)


def _nuclear_norm(a: jax.Array) -> jax.Array:
  """``||a||_*``: the sum of the singular values of ``a`` itself."""
  return jnp.sum(stats.svd(a)[1])


def _seli(fit: NCTILDA) -> jax.Array:
  z = stats.matmul(fit.features, fit.projection)
  return _nuclear_norm(z - z.mean(axis=0))


def _ncc(probs: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.mean(jnp.take_along_axis(probs, labels[:, None], axis=1))


def _vc(probs: jax.Array, labels: jax.Array, num_classes: int,
        max_class_size: int | None) -> jax.Array:
  """``log sum_k ||P_k||_*``.

  The rows of each class go to a zero-padded ``[K, W, K]`` block layout
  (``W = max_class_size``, static; ``None``: ``N``), built on the device from
  the codes (a scatter of distinct positions: deterministic), and each
  block's singular values come from its own SVD. A class larger than ``W``
  gives NaN (never a silently truncated class).
  """
  k = num_classes
  width = probs.shape[0] if max_class_size is None else int(max_class_size)
  onehot = stats.one_hot(labels, k, jnp.int32)
  rank = jnp.take_along_axis(jnp.cumsum(onehot, axis=0), labels[:, None],
                             axis=1)[:, 0] - 1          # position in class
  blocks = jnp.zeros((k, width, k), probs.dtype).at[labels, rank].set(
      probs, mode="drop")
  total = jnp.sum(jax.vmap(_nuclear_norm)(blocks))
  return jnp.where(jnp.max(onehot.sum(axis=0)) > width, jnp.nan,
                   jnp.log(total))


def ncti_seli_core(x: jax.Array, labels: jax.Array, num_classes: int,
                   within: str = "unbiased") -> jax.Array:
  """NCTI's seli ``||Z - 1 zbar^T||_*`` (pure, jittable, vmappable)."""
  return _seli(ncti_lda(x, labels, num_classes, within))


def ncti_ncc_core(x: jax.Array, labels: jax.Array, num_classes: int,
                  within: str = "unbiased") -> jax.Array:
  """NCTI's ncc ``mean_i p[i, y_i]`` (pure, jittable, vmappable)."""
  return _ncc(_probabilities(ncti_lda(x, labels, num_classes, within)),
              labels)


def ncti_vc_core(x: jax.Array, labels: jax.Array, num_classes: int,
                 max_class_size: int | None = None,
                 within: str = "unbiased") -> jax.Array:
  """NCTI's vc ``log sum_k ||P_k||_*`` (pure, jittable, vmappable).

  Args:
    max_class_size: a bound on the largest class (static; the padded block
      width, memory ``K^2 W``); ``None``: ``N``. NaN when a class is larger.
  """
  return _vc(_probabilities(ncti_lda(x, labels, num_classes, within)),
             labels, num_classes, max_class_size)


def ncti_parts_core(x: jax.Array, labels: jax.Array, num_classes: int,
                    max_class_size: int | None = None,
                    within: str = "unbiased") -> jax.Array:
  """``[seli, ncc, vc]`` in one pass (one PCA, one LDA); pure, jittable.

  ``max_class_size`` as :func:`ncti_vc_core`.
  """
  fit = ncti_lda(x, labels, num_classes, within)
  probs = _probabilities(fit)
  return jnp.stack([_seli(fit), _ncc(probs, labels),
                    _vc(probs, labels, num_classes, max_class_size)])


def max_class_size(codes: np.ndarray) -> int:
  """The block width ``ncti_vc`` is prepared with: the largest class plus
  one row of slack. ``sfda_jax.uncertainty`` reuses one resample's static
  options for every resample, and its stratified (largest-remainder) quotas
  put ``floor(n c_k / N)`` or one more sample in each class, so one row
  covers the largest class of every resample; a larger class would give NaN,
  not a wrong number."""
  return int(np.bincount(np.asarray(codes).reshape(-1)).max()) + 1


def _check_within(within):
  if not isinstance(within, str) or within not in WITHIN_OPTIONS:
    raise ValueError(f"ncti: within must be one of {list(WITHIN_OPTIONS)}, "
                     f"got {within!r}.")


def _check_input(x, enc, **_):
  del enc
  n, d = x.shape
  if min(n, d) < PCA_DIM:
    raise ValueError(
        f"ncti needs min(N, D) >= {PCA_DIM} (it projects the features on "
        f"their top {PCA_DIM} principal components), got N = {n}, D = {d}; "
        "the reference's PCA(n_components=64) raises too.")


def _prepare(enc, within):
  p = _spec.codes(enc)
  return p._replace(static={**p.static, "within": within})


def _prepare_vc(enc, within):
  p = _spec.codes(enc)
  return p._replace(static={**p.static, "within": within,
                            "max_class_size": max_class_size(enc.codes)})


def ncti_seli(features: Any, labels: Any, within: str = "unbiased") -> float:
  """NCTI's raw seli part of one model (``>= 0``, higher is better)."""
  return _runner.score(SPECS[0], features, labels, within=within)


def ncti_ncc(features: Any, labels: Any, within: str = "unbiased") -> float:
  """NCTI's raw ncc part of one model (in ``(0, 1]``, higher is better)."""
  return _runner.score(SPECS[1], features, labels, within=within)


def ncti_vc(features: Any, labels: Any, within: str = "unbiased") -> float:
  """NCTI's raw vc part of one model (real, LOWER is better)."""
  return _runner.score(SPECS[2], features, labels, within=within)


def ncti_parts(features: Any, labels: Any, within: str = "unbiased"
               ) -> dict[str, float]:
  """NCTI's raw per-model parts, before the set-level min-max.

  Args:
    features: ``[N, D]`` features of one model, ``min(N, D) >= 64``.
    labels: ``[N]`` class ids (any; remapped; ``K >= 2``).
    within: ``"unbiased"`` (default, ``c = N/(N-K)``) or ``"biased"``
      (``c = 1``, scikit-learn >= PR #33626): the svd branch's within-class
      scatter normalisation.

  Returns:
    ``{"seli": ..., "ncc": ..., "vc": ...}``: ``seli >= 0`` and ``ncc`` in
    ``(0, 1]`` are better when higher, ``vc`` when lower. Every check runs
    before any part is computed.

  Example:
    >>> import numpy as np
    >>> from sfda_jax.metrics._ncti import ncti_parts
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), 50)
    >>> x = rng.normal(size=(200, 80)) + 3 * np.eye(80)[y]
    >>> parts = ncti_parts(x, y)
    >>> sorted(parts), parts["seli"] > 0, 0.5 < parts["ncc"] <= 1.0
    (['ncc', 'seli', 'vc'], True, True)
  """
  values = _runner.score_parts(SPECS, features, labels, {"within": within})
  return {"seli": values["ncti_seli"], "ncc": values["ncti_ncc"],
          "vc": values["ncti_vc"]}


def ncti(features_by_model: Any, labels: Any, within: str = "unbiased"
         ) -> dict[str, float]:
  """NCTI set-level score of every candidate model (higher is better).

  ``NCTI_m = mm(ncc)_m + mm(seli)_m - mm(vc)_m``, ``mm`` the min-max over the
  models (0 for every model when a part is equal for all: DEVIATION).

  Args:
    features_by_model: ``{model: features [N, D_model]}``, at least 2
      models, the same samples in the same order, ``min(N, D_model) >= 64``.
    labels: ``[N]`` class ids (any; remapped).
    within: ``"unbiased"`` or ``"biased"`` (see :func:`ncti_parts`).

  Returns:
    ``{model: score}`` with scores in ``[-1, 2]``. Every model's input is
    checked before any part is computed.

  Example:
    >>> import numpy as np
    >>> from sfda_jax.metrics._ncti import ncti
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), 50)
    >>> noise = rng.normal(size=(200, 80))
    >>> scores = ncti({"good": noise + 4 * np.eye(80)[y],
    ...                "bad": noise + 0.5 * np.eye(80)[y]}, y)
    >>> scores["good"] > scores["bad"]
    True
  """
  return _runner.score_set(SET_SPEC, features_by_model, labels, within=within)


_HINT = ("The LDA of the 64 principal components may be numerically "
         "singular; try jax.config.update('jax_enable_x64', True).")

SPECS = (
    _spec.MetricSpec(
        name="ncti_seli", order=150, fn=ncti_seli, inputs="features",
        core=ncti_seli_core, prepare=_prepare, check_options=_check_within,
        check_input=_check_input, placement="gather",
        defaults={"within": "unbiased"}, part_of="ncti", hint=_HINT),
    _spec.MetricSpec(
        name="ncti_ncc", order=151, fn=ncti_ncc, inputs="features",
        core=ncti_ncc_core, prepare=_prepare, check_options=_check_within,
        check_input=_check_input, placement="gather",
        defaults={"within": "unbiased"}, part_of="ncti", hint=_HINT),
    _spec.MetricSpec(
        name="ncti_vc", order=152, fn=ncti_vc, inputs="features",
        core=ncti_vc_core, prepare=_prepare_vc, check_options=_check_within,
        check_input=_check_input, placement="gather",
        defaults={"within": "unbiased"}, part_of="ncti", hint=_HINT),
)

SET_SPEC = _spec.SetMetricSpec(
    name="ncti", order=150, fn=ncti,
    parts=("ncti_ncc", "ncti_seli", "ncti_vc"), weights=WEIGHTS,
    defaults={"within": "unbiased"},
    hint="NCTI is a min-max over the candidate models of one target set.")
