"""The shared statistics kernels against direct NumPy / scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sfda_jax.baselines import numpy_reference as reference
from sfda_jax.metrics import stats
from conftest import make_features


@pytest.mark.parametrize("d", [7, 600, 1100])
def test_gram_matches_numpy_and_is_symmetric(x64, d):
  x = np.random.default_rng(d).normal(size=(50, d))
  g = np.asarray(stats.gram(jnp.asarray(x)))
  np.testing.assert_allclose(g, x.T @ x, rtol=1e-12, atol=1e-10)
  np.testing.assert_array_equal(g, g.T)


def test_scatter_decomposition(x64):
  x, y = make_features(200, 6, 4, seed=0, label_ids=np.arange(4))
  means, counts = stats.class_means(jnp.asarray(x), jnp.asarray(y), 4)
  priors = counts / 200
  sw = stats.within_scatter(jnp.asarray(x), jnp.asarray(y), means)
  sb = stats.between_scatter(means, priors)
  st = stats.total_scatter(jnp.asarray(x))
  np.testing.assert_allclose(sw + sb, st, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(st, np.cov(x, rowvar=False, bias=True),
                             rtol=1e-10)


def test_power_iteration_and_shrink(x64):
  a = np.random.default_rng(1).normal(size=(30, 8))
  s = a.T @ a
  lam = float(stats.power_iteration_top_eigenvalue(jnp.asarray(s)))
  # Exactly the published 3-step estimate (a lower bound of the top one).
  assert lam == pytest.approx(reference._power_iteration(s), rel=1e-12)
  assert lam <= np.linalg.eigvalsh(s)[-1] * (1 + 1e-12)
  shrunk = np.asarray(stats.shrink(jnp.asarray(s), 0.25))
  np.testing.assert_allclose(
      shrunk, 0.75 * s + 0.25 * np.trace(s) / 8 * np.eye(8), rtol=1e-12)


def test_ledoit_wolf_matches_sklearn(x64):
  from sklearn.covariance import ledoit_wolf
  x = np.random.default_rng(2).normal(size=(40, 25)) @ np.diag(
      np.linspace(0.1, 3, 25))
  xc = x - x.mean(0)
  _, expected = ledoit_wolf(xc, assume_centered=True)
  got = stats.ledoit_wolf_shrinkage(jnp.asarray(xc),
                                    jnp.asarray(xc.T @ xc / 40))
  assert float(got) == pytest.approx(expected, rel=1e-10)


def test_principal_basis_matches_sklearn_pca_signs(x64):
  from sklearn.decomposition import PCA
  x = np.random.default_rng(3).normal(size=(100, 6)) @ np.diag([5, 4, 3, 2,
                                                                1, .5])
  w, v = stats.principal_basis(jnp.asarray(np.cov(x, rowvar=False,
                                                  bias=True)))
  pca = PCA(svd_solver="full").fit(x)
  np.testing.assert_allclose(np.asarray(v).T, pca.components_, atol=1e-8)
  assert np.all(np.diff(np.asarray(w)) <= 0)


def test_pinv_and_jittered_cholesky(x64):
  a = np.random.default_rng(4).normal(size=(5, 8))
  s = a.T @ a                                   # rank 5 of 8
  inv_w, u = stats.pinv_eigh(jnp.asarray(s))
  pinv = np.asarray(u) @ np.diag(np.asarray(inv_w)) @ np.asarray(u).T
  np.testing.assert_allclose(pinv, np.linalg.pinv(s, rcond=8 * 2.2e-16),
                             rtol=1e-8, atol=1e-10)
  chol = np.asarray(stats.cholesky_with_jitter(jnp.asarray(s)))
  assert np.all(np.isfinite(chol))
  np.testing.assert_allclose(chol @ chol.T, s, atol=1e-10 * np.abs(s).max())


_CONCURRENT_LAPACK = r"""
import sys
import jax, jax.numpy as jnp, numpy as np
from sfda_jax.metrics import stats

RAW = sys.argv[1:] == ["raw"]  # jnp.linalg directly: the negative control.
cholesky = jnp.linalg.cholesky if RAW else jax.vmap(stats.cholesky)
solve = (lambda l, b: jax.scipy.linalg.solve_triangular(l, b, lower=True)
         ) if RAW else jax.vmap(
             lambda l, b: stats.solve_triangular(l, b, lower=True))
eigh = jnp.linalg.eigh if RAW else jax.vmap(stats.eigh)

@jax.jit
def f(x):
  # Independent batches of 50 factorizations: with jnp.linalg directly,
  # jaxlib 0.10 deadlocks here on a 2-core CPU on the first call.
  a = x @ jnp.swapaxes(x, -1, -2) + 64 * jnp.eye(64)
  total = sum(cholesky(a[i]).sum() for i in range(4))
  total += sum(solve(jnp.tril(a[i]), a[i]).sum() for i in range(4))
  return total + sum(eigh(a[i])[0].sum() for i in range(4))

x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 50, 64, 64)),
                jnp.float32)
for i in range(5):
  f(x + i).block_until_ready()
print("done")
"""


@pytest.mark.slow
def test_concurrent_batched_factorizations_do_not_deadlock(tmp_path):
  """Regression: batched LAPACK calls running concurrently hung XLA:CPU."""
  import subprocess
  import sys
  result = subprocess.run([sys.executable, "-c", _CONCURRENT_LAPACK],
                          capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().endswith("done")


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
def test_linalg_wrappers_match_jnp_under_vmap(x64, batch_shape):
  rng = np.random.default_rng(7)
  a = rng.normal(size=batch_shape + (6, 6))
  spd = jnp.asarray(a @ np.swapaxes(a, -1, -2) + 6 * np.eye(6))
  rect = jnp.asarray(rng.normal(size=batch_shape + (6, 4)))

  def vmapped(fn):
    for _ in batch_shape:
      fn = jax.vmap(fn)
    return fn

  chol = vmapped(stats.cholesky)(spd)
  np.testing.assert_allclose(chol, jnp.linalg.cholesky(spd), rtol=1e-12)
  for lower, tri in ((True, chol), (False, jnp.swapaxes(chol, -1, -2))):
    x = vmapped(lambda t, b, lower=lower: stats.solve_triangular(
        t, b, lower=lower))(tri, rect)
    np.testing.assert_allclose(tri @ x, rect, rtol=1e-10, atol=1e-12)
  w, v = vmapped(stats.eigh)(spd)
  np.testing.assert_allclose(w, jnp.linalg.eigvalsh(spd), rtol=1e-12)
  np.testing.assert_allclose((v * w[..., None, :]) @ jnp.swapaxes(v, -1, -2),
                             spd, rtol=1e-10)
  u, s, vh = vmapped(stats.svd)(rect)
  np.testing.assert_allclose(s, jnp.linalg.svd(rect, compute_uv=False),
                             rtol=1e-12)
  np.testing.assert_allclose((u * s[..., None, :]) @ vh, rect, rtol=1e-10,
                             atol=1e-12)


def test_small_host_steps_run_blas_on_one_thread():
  """stats.precise's host path limits BLAS to one thread for small inputs
  (SMALL_HOST_ELEMENTS) and leaves large ones alone."""
  threadpoolctl = pytest.importorskip("threadpoolctl")
  if jax.config.jax_enable_x64:
    pytest.skip("under x64 precise runs on the device")
  controller = threadpoolctl.ThreadpoolController()
  blas = controller.select(user_api="blas")
  if not blas.lib_controllers:
    pytest.skip("no BLAS library found by threadpoolctl")
  seen = []

  def fn(ops, a):
    if ops is stats._HOST_OPS:      # not while precise traces fn's shapes
      seen.append(max(c.num_threads for c in controller.select(
          user_api="blas").lib_controllers))
    return ops.sum(a * a)

  before = max(c.num_threads for c in blas.lib_controllers)
  small = jnp.ones((8, 8), jnp.float32)
  large = jnp.ones((stats.SMALL_HOST_ELEMENTS,), jnp.float32)
  assert float(jax.jit(lambda a: stats.precise(fn, a))(small)) == 64.0
  jax.jit(lambda a: stats.precise(fn, a))(large).block_until_ready()
  assert seen == [1, before]
  assert max(c.num_threads for c in controller.select(
      user_api="blas").lib_controllers) == before
