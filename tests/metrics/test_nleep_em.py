"""NLEEP's EM steps against scikit-learn's, in float64.

The M step multiplies only the rows whose responsibility is positive, in
blocks (``_nleep._weighted_scatter``); these tests pin it to scikit-learn's
dense ``_estimate_gaussian_parameters`` / ``_compute_precision_cholesky`` for
hard, soft and mixed responsibilities, with components owning 0, 1, a block's
worth +- 1 and all of the rows.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from sfda_jax.metrics import _nleep

mixture = pytest.importorskip("sklearn.mixture._gaussian_mixture")


def _responsibilities(kind, n, c, rng):
  if kind == "soft":                         # every entry positive
    r = rng.uniform(0.01, 1.0, size=(n, c))
  elif kind == "hard":                       # one-hot, uneven ownership
    owner = np.concatenate([np.full(1, 1), np.full(31, 2), np.full(32, 3),
                            np.full(33, 4), rng.integers(5, c, n - 97)])
    r = np.eye(c)[rng.permutation(owner)]    # component 0 owns nothing
  else:                                      # sparse soft: most entries 0
    r = rng.uniform(0.01, 1.0, size=(n, c)) * (rng.uniform(size=(n, c)) < 0.2)
    r[:, 1:3] = 0.0
    r[np.arange(n), rng.integers(3, c, n)] += 1.0
    r[0, 2] = 0.5                            # a component with one row
  return r / r.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["soft", "hard", "sparse"])
@pytest.mark.parametrize("n,d,c", [(300, 6, 8), (200, 24, 6), (97 + 40, 5, 9)])
def test_m_step_matches_sklearn(x64, kind, n, d, c):
  if kind == "hard" and n < 97 + c:
    pytest.skip("the hard case needs 97 + C rows")
  rng = np.random.default_rng(n + d + c)
  x = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d) + 1.5
  r = _responsibilities(kind, n, c, rng)
  weights, means, precs = _nleep._m_step(jnp.asarray(x), jnp.asarray(r), 1e-6)
  nk, mu, cov = mixture._estimate_gaussian_parameters(x, r, 1e-6, "full")
  want = mixture._compute_precision_cholesky(cov, "full")
  np.testing.assert_allclose(weights, nk / n, rtol=1e-12)
  np.testing.assert_allclose(means, mu, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(precs, want, rtol=1e-8, atol=1e-8)
  # The accelerators' dense form (the CPU takes the sparse one above).
  counts = jnp.asarray(r.sum(axis=0) + 10 * np.finfo(float).eps)
  dense = _nleep._precisions(jnp.asarray(x), jnp.asarray(r), means, counts,
                             1e-6, sparse=False)
  np.testing.assert_allclose(dense, want, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("block", [32, 64])
def test_weighted_scatter_is_the_dense_sum(x64, block):
  rng = np.random.default_rng(block)
  n, d = 257, 7
  x = rng.normal(size=(n, d))
  mu = rng.normal(size=d)
  for count in (0, 1, block - 1, block, block + 1, n):
    r = np.zeros(n)
    r[rng.permutation(n)[:count]] = rng.uniform(0.1, 1.0, size=count)
    got = _nleep._weighted_scatter(jnp.asarray(x), jnp.asarray(r),
                                   jnp.asarray(mu), block)
    diff = (x - mu) * np.sqrt(r)[:, None]
    np.testing.assert_allclose(got, diff.T @ diff, rtol=1e-12, atol=1e-12,
                               err_msg=f"{count} positive rows")
    np.testing.assert_array_equal(got, np.asarray(got).T)


def test_row_block():
  assert _nleep._row_block(10000, 50) == 128
  assert _nleep._row_block(100, 50) == 32
  assert _nleep._row_block(10 ** 6, 10) == 256
