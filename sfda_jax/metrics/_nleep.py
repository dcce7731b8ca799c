"""NLEEP: Gaussian-mixture LEEP.

Li, Jia, Huang, Chen, Lu, Lin, Zhang. "Ranking Neural Checkpoints." CVPR 2021,
with the protocol of the SFDA paper's code: PCA keeping 80% of the variance,
a Gaussian mixture with ``5 K`` full-covariance components fitted by EM
(k-means initialisation, at most 100 iterations, tolerance 1e-3 on the mean
log-likelihood, ``reg_covar = 1e-6``: scikit-learn's defaults), then LEEP on
the mixture's posterior responsibilities.

Everything after the choice of the number of principal components runs in one
jitted function: k-means++ seeding (greedy, ``2 + ln(C)`` local trials, as
scikit-learn) and Lloyd iterations (``lax.while_loop``, at most 300, tolerance
``1e-4 * mean variance``), then EM in a ``lax.while_loop``. The E step
processes components in batches with ``lax.map`` so memory stays at a few
``[N, d]`` blocks; on CPU the M step forms each component's scatter from
only the rows with a positive responsibility (in more than a few dimensions
a fitted mixture's responsibilities are nearly hard and most are exactly 0,
so this is ~``C`` times fewer flops than the dense sum, and the same sum).
The result is stochastic through its initialisation: ``seed`` selects
it (bit-identical scores for the same seed and input on the same backend),
and the score agrees with scikit-learn's in distribution over seeds.

Sharded input: the PCA (centring, covariance, projection) runs data-parallel
on features sharded over samples; the reduced ``[N, d]`` matrix is then
gathered onto one device for k-means++ and EM, whose seeding is sequential
and global (see :func:`_validation.gather_if_sharded`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _spec
from sfda_jax.metrics import _validation
from sfda_jax.metrics import _leep as leep_lib
from sfda_jax.metrics import stats

__all__ = ["Diagnostics", "nleep", "nleep_core", "pca_num_components",
           "gmm_posteriors"]

# Size of one lax.map batch of [N, d] blocks. Batching more components than
# memory needs buys nothing on CPU (each is already a large GEMM).
_TARGET_BYTES = 64 * 2 ** 20


def pca_num_components(eigenvalues: np.ndarray, variance: float) -> int:
  """Smallest k whose top-k eigenvalues explain at least ``variance``."""
  w = np.maximum(np.asarray(eigenvalues, dtype=np.float64), 0.0)
  ratio = np.cumsum(w) / w.sum()
  return int(min(np.searchsorted(ratio, variance - 1e-12, side="left") + 1,
                 w.shape[0]))


def _sq_dists(x, x_sq, centers):
  c_sq = jnp.sum(centers * centers, axis=1)
  return jnp.maximum(x_sq[:, None] + c_sq[None, :]
                     - 2.0 * stats.matmul(x, centers.T), 0.0)


def _kmeans(key, x, num_clusters, max_iter=300, tol=1e-4):
  """k-means++ (greedy) seeding + Lloyd.

  Returns:
    ``(labels [N], iterations, converged)``: Lloyd steps used and whether the
    centre shift fell below the tolerance before ``max_iter``.
  """
  n, d = x.shape
  x_sq = jnp.sum(x * x, axis=1)
  trials = 2 + int(math.log(num_clusters))
  key, sub = jax.random.split(key)
  first = jax.random.randint(sub, (), 0, n)
  centers = jnp.zeros((num_clusters, d), x.dtype).at[0].set(x[first])
  closest = _sq_dists(x, x_sq, x[first][None])[:, 0]

  def seed_body(c, carry):
    centers, closest, key = carry
    key, sub = jax.random.split(key)
    cum = jnp.cumsum(closest)
    r = jax.random.uniform(sub, (trials,), x.dtype) * cum[-1]
    cand = jnp.minimum(jnp.searchsorted(cum, r), n - 1)
    dist = _sq_dists(x, x_sq, x[cand])                          # [N, trials]
    new = jnp.minimum(closest[:, None], dist)
    best = jnp.argmin(new.sum(axis=0))
    return centers.at[c].set(x[cand[best]]), new[:, best], key

  centers, _, _ = lax.fori_loop(1, num_clusters, seed_body,
                                (centers, closest, key))
  tol_abs = tol * jnp.mean(jnp.var(x, axis=0))

  def assign(centers):
    return jnp.argmin(_sq_dists(x, x_sq, centers), axis=1)

  def lloyd_body(carry):
    it, centers, _ = carry
    onehot = stats.one_hot(assign(centers), num_clusters, x.dtype)
    counts = onehot.sum(axis=0)
    sums = stats.matmul(onehot.T, x)
    new = jnp.where(counts[:, None] > 0,
                    sums / jnp.maximum(counts, 1.0)[:, None], centers)
    return it + 1, new, jnp.sum((new - centers) ** 2)

  def lloyd_cond(carry):
    it, _, shift = carry
    return (it < max_iter) & (shift > tol_abs)

  its, centers, shift = lax.while_loop(
      lloyd_cond, lloyd_body, (0, centers, jnp.asarray(jnp.inf, x.dtype)))
  return assign(centers), its, shift <= tol_abs


def _batch_size(n, d, c, itemsize):
  return int(max(1, min(c, _TARGET_BYTES // max(1, n * d * itemsize))))


def _row_block(n: int, num_components: int) -> int:
  """Rows per block of :func:`_weighted_scatter`: about the mean number of
  rows a component owns under hard assignments (so padding costs at most
  about one block per component), a power of two in ``[32, 256]``."""
  share = max(1, n // max(1, num_components))
  return int(min(256, max(32, 2 ** int(math.log2(share)))))


def _weighted_scatter(x, r, mu, block):
  """``sum_i r_i (x_i - mu)(x_i - mu)^T`` over the rows with ``r_i > 0``.

  Responsibilities of a fitted mixture in more than a few dimensions are
  nearly hard: most are exactly 0 (``exp`` underflows), and those rows add
  exactly nothing. The rows with ``r_i > 0`` are gathered first and
  multiplied in blocks of ``block`` rows, as many blocks as they need (a
  ``while_loop``), so a component costs ``(n_k + block) d^2`` instead of
  ``N d^2``; with soft responsibilities everywhere it is the dense sum plus
  at most one block.
  """
  n, d = x.shape
  positive = r > 0
  count = jnp.sum(positive)
  padded = -(-n // block) * block
  order = jnp.nonzero(positive, size=padded, fill_value=0)[0]
  offsets = jnp.arange(block)

  def body(b, acc):
    idx = lax.dynamic_slice(order, (b * block,), (block,))
    w = jnp.where(b * block + offsets < count, jnp.sqrt(r[idx]), 0.0)
    rows = (x[idx] - mu) * w[:, None]
    return acc + stats.matmul(rows.T, rows)

  s = lax.fori_loop(0, (count + block - 1) // block, body,
                    jnp.zeros((d, d), x.dtype))
  return 0.5 * (s + s.T)


def _precisions(x, resp, means, nk, reg_covar, sparse: bool):
  """Precision Cholesky factors ``[C, d, d]`` of the weighted scatters.

  ``sparse`` (static): each component's scatter from its rows with a
  positive responsibility only (:func:`_weighted_scatter`), one component at
  a time; otherwise the dense sum over all rows, components batched.
  """
  n, d = x.shape
  eye = jnp.eye(d, dtype=x.dtype)
  block = _row_block(n, resp.shape[1])

  def prec_chol(args):
    r, mu, count = args
    if sparse:
      scatter = _weighted_scatter(x, r, mu, block)
    else:
      scatter = stats.gram((x - mu) * jnp.sqrt(r)[:, None])
    cov = scatter / count + reg_covar * eye
    chol = stats.cholesky_with_jitter(cov)
    return stats.solve_triangular(chol, eye, lower=True).T

  # Sparse: one component at a time (each has its own number of blocks).
  batch = None if sparse else _batch_size(n, d, means.shape[0],
                                          x.dtype.itemsize)
  return lax.map(prec_chol, (resp.T, means, nk), batch_size=batch)


def _m_step(x, resp, reg_covar):
  """Weights ``[C]``, means ``[C, d]`` and precision Cholesky ``[C, d, d]``.

  On CPU the scatters skip the rows with zero responsibility (the M step of
  N=10000, d=1176, 50 components: 12.1 s dense, 1.9 s sparse; BUILD_NOTES,
  issue 14); elsewhere the dense, batched form is kept, whose large GEMMs
  suit an accelerator better than many small sequential ones (measured
  there, 2026-12-04; the sparse form is not yet measured on a GPU).
  """
  n = x.shape[0]
  nk = resp.sum(axis=0) + 10.0 * jnp.finfo(x.dtype).eps
  means = stats.matmul(resp.T, x) / nk[:, None]
  precs = lax.platform_dependent(
      x, resp, means, nk,
      cpu=lambda *a: _precisions(*a, reg_covar, sparse=True),
      default=lambda *a: _precisions(*a, reg_covar, sparse=False))
  return nk / n, means, precs


def _e_step(x, weights, means, precs):
  """Mean log-likelihood and log responsibilities ``[N, C]``."""
  n, d = x.shape

  def log_gauss(args):
    mu, prec = args
    y = stats.matmul_upper_triangular(x, prec) - mu @ prec
    log_det = jnp.sum(jnp.log(jnp.diagonal(prec)))
    return -0.5 * (d * jnp.log(2 * jnp.pi) + jnp.sum(y * y, axis=1)) + log_det

  log_prob = lax.map(log_gauss, (means, precs),
                     batch_size=_batch_size(n, d, means.shape[0],
                                            x.dtype.itemsize)).T    # [N, C]
  weighted = log_prob + jnp.log(weights)
  norm = jax.nn.logsumexp(weighted, axis=1)
  return norm.mean(), weighted - norm[:, None]


class Diagnostics(NamedTuple):
  """How NLEEP's two iterative solvers ended (arrays inside jit, Python
  scalars from :func:`nleep`).

  Attributes:
    kmeans_iterations: Lloyd steps of the k-means initialisation (cap 300).
    kmeans_converged: the centre shift fell below its tolerance.
    em_iterations: EM steps (cap ``max_iter``, 100 by default).
    em_converged: the mean log-likelihood changed by less than ``tol``.
  """
  kmeans_iterations: Any
  kmeans_converged: Any
  em_iterations: Any
  em_converged: Any


def gmm_posteriors(key: jax.Array, x: jax.Array, num_components: int,
                   max_iter: int = 100, tol: float = 1e-3,
                   reg_covar: float = 1e-6, return_diagnostics: bool = False):
  """Posterior responsibilities ``[N, C]`` of a full-covariance GMM fitted by EM.

  Mirrors ``sklearn.mixture.GaussianMixture(covariance_type='full')`` with
  ``init_params='kmeans'`` (pure, jittable; ``num_components`` static).
  With ``return_diagnostics`` (static), returns ``(responsibilities,
  Diagnostics)``.
  """
  labels, km_its, km_done = _kmeans(key, x, num_components)
  resp = stats.one_hot(labels, num_components, x.dtype)
  params = _m_step(x, resp, reg_covar)

  def body(carry):
    it, params, lower, _ = carry
    new_lower, log_resp = _e_step(x, *params)
    params = _m_step(x, jnp.exp(log_resp), reg_covar)
    return it + 1, params, new_lower, jnp.abs(new_lower - lower) < tol

  def cond(carry):
    it, _, _, done = carry
    return (it < max_iter) & ~done

  init = (0, params, jnp.asarray(-jnp.inf, x.dtype), jnp.zeros((), bool))
  em_its, params, _, em_done = lax.while_loop(cond, body, init)
  _, log_resp = _e_step(x, *params)
  if return_diagnostics:
    return jnp.exp(log_resp), Diagnostics(km_its, km_done, em_its, em_done)
  return jnp.exp(log_resp)


@jax.jit
def _pca_spectrum(x):
  xc = stats.center(x)
  w, basis = stats.principal_basis(stats.gram(xc) / x.shape[0])
  return xc, w, basis


def nleep_core(key: jax.Array, z: jax.Array, labels: jax.Array,
               num_classes: int, components_per_class: int = 5,
               return_diagnostics: bool = False):
  """NLEEP on already PCA-reduced features ``z [N, d]`` (pure, jittable).

  With ``return_diagnostics`` (static): ``(score, Diagnostics)``.
  """
  out = gmm_posteriors(key, z, components_per_class * num_classes,
                       return_diagnostics=return_diagnostics)
  theta, diag = out if return_diagnostics else (out, None)
  score = leep_lib.leep_core(theta, labels, num_classes)
  return (score, diag) if return_diagnostics else score


_nleep_jit = jax.jit(nleep_core,
                     static_argnames=("num_classes", "components_per_class",
                                      "return_diagnostics"))


def nleep(features: Any, labels: Any, seed: int = 0,
          variance: float = 0.8, components_per_class: int = 5,
          return_diagnostics: bool = False):
  """NLEEP score (higher is better; at most 0).

  Args:
    features: ``[N, D]``.
    labels: ``[N]`` class ids (any; remapped).
    seed: seeds the k-means++ initialisation of the mixture (the score is
      stochastic through it; the same seed and input give bit-identical
      scores on the same backend).
    variance: fraction of variance the PCA keeps (0.8 in the protocol).
    components_per_class: mixture components per target class (5).
    return_diagnostics: also return a :class:`Diagnostics` (iterations and
      convergence of the k-means initialisation and of EM).

  Returns:
    The score; with ``return_diagnostics``, ``(score, Diagnostics)``.
  """
  options = dict(seed=seed, variance=variance,
                 components_per_class=components_per_class)
  if not return_diagnostics:
    return _runner.score(SPEC, features, labels, **options)
  options = SPEC.options(**options)
  x, enc = _runner.validated_features(SPEC, features, labels, options)
  score, diag = _compute(x, enc, diagnostics=True, **options)
  host = _validation.fetch
  return _runner.finish(SPEC, score), Diagnostics(
      int(host(diag.kmeans_iterations)), bool(host(diag.kmeans_converged)),
      int(host(diag.em_iterations)), bool(host(diag.em_converged)))


def _check_options(seed, variance, components_per_class):
  del seed, components_per_class
  if not 0.0 < variance <= 1.0:
    raise ValueError(f"variance must be in (0, 1], got {variance}.")


def _check_input(x, enc, components_per_class, **_):
  num_components = components_per_class * enc.num_classes
  if num_components > x.shape[0]:
    raise ValueError(
        f"nleep fits {components_per_class} x {enc.num_classes} = "
        f"{num_components} mixture components but there are only "
        f"{x.shape[0]} samples.")


def _compute(x, enc, seed, variance, components_per_class, diagnostics=False):
  xc, w, basis = _pca_spectrum(x)                 # data-parallel if sharded
  k = pca_num_components(_validation.fetch(w), variance)
  z = _validation.gather_if_sharded(stats.matmul(xc, basis[:, :k]))
  codes = jax.device_put(enc.codes, next(iter(z.sharding.device_set))) if (
      len(z.sharding.device_set) == 1) else _validation.place_like_samples(
          enc.codes, z)
  return _nleep_jit(jax.random.PRNGKey(seed), z, codes,
                    num_classes=enc.num_classes,
                    components_per_class=components_per_class,
                    return_diagnostics=diagnostics)


SPEC = _spec.MetricSpec(
    name="nleep", order=20, fn=nleep, inputs="features", core=None,
    compute=_compute, check_options=_check_options, check_input=_check_input,
    placement="gather",
    defaults={"seed": 0, "variance": 0.8, "components_per_class": 5},
    seeded_option="seed")
