"""Float64 parity of every metric with the NumPy references
(sfda_jax/baselines/numpy_reference.py, written from METRICS.md).

Under ``jax_enable_x64`` each JAX metric must match its reference to 1e-6
relative, across N > D and N < D, 2..100 classes, unbalanced class sizes and
non-contiguous (negative, gapped) label ids.
"""

import numpy as np
import pytest

from sfda_jax.baselines import numpy_reference as reference
import sfda_jax
from conftest import fast_subset, make_features

RTOL = 1e-6

# (N, D, K): N > D, N < D, binary, many classes (K = 100), K > D.
CASES = [
    pytest.param(400, 24, 5, id="N>D-K5"),
    pytest.param(60, 120, 3, id="N<D-K3"),
    pytest.param(150, 8, 2, id="binary"),
    pytest.param(1000, 40, 100, id="K100"),
    pytest.param(90, 200, 10, id="N<D-K10"),
]
#: The fast subset runs N > D and N < D; the whole grid runs in .ci/run.
FAST_CASES = fast_subset(CASES, {"N>D-K5", "N<D-K3"})


def _close(actual, expected, rtol=RTOL):
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("n,d,k", FAST_CASES)
@pytest.mark.parametrize("metric", ["sfda", "logme", "hscore",
                                    "regularized_hscore", "transrate", "parc"])
def test_feature_metric_parity(x64, metric, n, d, k):
  x, y = make_features(n, d, k, seed=n + d + k)
  ref = reference.sfda_score if metric == "sfda" else getattr(reference, metric)
  _close(getattr(sfda_jax, metric)(x, y), ref(x, y))


@pytest.mark.parametrize("n,d,k", FAST_CASES)
@pytest.mark.parametrize("kwargs", [
    {"pca_dim": None}, {"gaussian_type": "spherical", "pca_dim": None},
    {"pca_dim": 6}, {}],
    ids=["diagonal", "spherical", "pca6", "default-pca64"])
def test_gbc_parity(x64, n, d, k, kwargs):
  x, y = make_features(n, d, k, seed=3 * n + d)
  ref_kwargs = {"pca_dim": 64, **kwargs}      # the library default is 64
  _close(sfda_jax.gbc(x, y, **kwargs), reference.gbc(x, y, **ref_kwargs))


@pytest.mark.parametrize("n,d", [(300, 16), (40, 64)], ids=["N>D", "N<D"])
@pytest.mark.parametrize("t", [1, 3])
def test_logme_regression_parity(x64, n, d, t):
  rng = np.random.default_rng(n + t)
  x = rng.normal(size=(n, d))
  w = rng.normal(size=(d, t))
  targets = x @ w + 0.3 * rng.normal(size=(n, t))
  if t == 1:
    targets = targets[:, 0]
  _close(sfda_jax.logme(x, targets, regression=True),
         reference.logme(x, targets, regression=True))


@pytest.mark.parametrize("n,k,z", [(200, 4, 10), (500, 100, 37), (50, 2, 1000)])
def test_leep_nce_parity(x64, n, k, z):
  rng = np.random.default_rng(n + z)
  _, y = make_features(n, 3, k, seed=k)
  theta = rng.dirichlet(np.full(z, 0.3), size=n)
  _close(sfda_jax.leep(theta, y), reference.leep(theta, y))
  source = rng.integers(0, z, size=n) * 7 - 11          # non-contiguous ids
  _close(sfda_jax.nce(source, y), reference.nce(source, y))


@pytest.mark.parametrize("n,d,k", FAST_CASES[:4])
def test_sfda_fit_predict_transform_parity(x64, n, d, k):
  x, y = make_features(n, d, k, seed=7 * n + k)
  state = sfda_jax.sfda_fit(x, y)
  ref = reference.sfda_fit(x, y)
  _close(state.shrinkage, ref["shrinkage"])
  probs = np.asarray(sfda_jax.sfda_predict_proba(state, x))
  ref_probs = reference.sfda_predict_proba(ref, x)
  np.testing.assert_allclose(probs, ref_probs, rtol=1e-6, atol=1e-9)
  # Eigenvectors are defined up to sign: compare projections column-wise.
  proj = np.asarray(sfda_jax.sfda_transform(state, x))
  ref_proj = reference.sfda_transform(ref, x)
  signs = np.sign(np.sum(proj * ref_proj, axis=0))
  np.testing.assert_allclose(proj * signs, ref_proj, rtol=1e-5,
                             atol=1e-7 * np.abs(ref_proj).max())
  np.testing.assert_array_equal(state.classes, np.unique(y))


def test_sfda_fixed_shrinkage_parity(x64):
  x, y = make_features(300, 20, 4, seed=11)
  state = sfda_jax.sfda_fit(x, y, shrinkage=0.3)
  ref = reference.sfda_fit(x, y, shrinkage=0.3)
  # Centred parametrisation: coef = ref_coef - m Sw_s^-1 (the same row shift
  # for every class), and decision values differ by a per-sample constant.
  shift = ref["coef"] - np.asarray(state.coef)
  np.testing.assert_allclose(shift, np.broadcast_to(shift[:1], shift.shape),
                             rtol=1e-6, atol=1e-9)
  ours = (x - np.asarray(state.center)) @ np.asarray(state.coef).T + \
      np.asarray(state.intercept)
  theirs = x @ ref["coef"].T + ref["intercept"]
  np.testing.assert_allclose(ours - ours[:, :1], theirs - theirs[:, :1],
                             rtol=1e-6, atol=1e-8)
