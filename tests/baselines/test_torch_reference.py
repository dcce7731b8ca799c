"""The PyTorch baseline agrees with the float64 NumPy reference."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg

from conftest import make_features
from sfda_jax.baselines import numpy_reference
from sfda_jax.baselines import torch_reference

torch = pytest.importorskip("torch")

RTOL = 1e-8

# (N, D, K, unbalanced, label ids): N > D and N < D, 2..20 classes,
# unbalanced counts, non-contiguous (and negative) ids.
CASES = [
    (300, 20, 3, True, None),
    (120, 200, 5, True, None),
    (2000, 64, 20, True, None),
    (500, 50, 2, False, np.array([-7, 40])),
    (400, 30, 8, True, np.array([3, 5, 11, 12, 100, 101, 250, 999])),
    (60, 100, 12, False, None),
]


def _rel(a, b):
  return abs(a - b) / max(abs(b), 1e-300)


@pytest.mark.parametrize("n,d,k,unbalanced,ids", CASES)
def test_sfda_score_matches_numpy(n, d, k, unbalanced, ids):
  x, y = make_features(n, d, k, seed=n + d, unbalanced=unbalanced,
                       label_ids=ids)
  x_before = x.copy()
  ref = numpy_reference.sfda_score(x, y)
  got = torch_reference.sfda_score(x, y, device="cpu", dtype="float64")
  assert _rel(got, ref) <= RTOL, (got, ref)
  np.testing.assert_array_equal(x, x_before)   # caller's array untouched


@pytest.mark.parametrize("n,d,k,unbalanced,ids", CASES)
def test_logme_matches_numpy(n, d, k, unbalanced, ids):
  x, y = make_features(n, d, k, seed=n + 2 * d, unbalanced=unbalanced,
                       label_ids=ids)
  ref = numpy_reference.logme(x, y)
  got = torch_reference.logme(x, y, device="cpu", dtype="float64")
  assert _rel(got, ref) <= RTOL, (got, ref)


@pytest.mark.parametrize("n,d", [(300, 20), (40, 60)])
def test_logme_regression_matches_numpy(n, d):
  x, _ = make_features(n, d, 3, seed=3)
  t = np.random.default_rng(0).normal(size=(n, 2)) + x[:, :2]
  ref = numpy_reference.logme(x, t, regression=True)
  got = torch_reference.logme(x, t, regression=True, device="cpu")
  assert _rel(got, ref) <= RTOL, (got, ref)


def test_sfda_fit_state_matches_numpy():
  x, y = make_features(400, 24, 6, seed=5)
  ref = numpy_reference.sfda_fit(x, y)
  got = torch_reference.sfda_fit(x, y, device="cpu")
  assert _rel(got["shrinkage"], ref["shrinkage"]) <= RTOL
  for key in ("means", "priors", "coef", "intercept"):
    np.testing.assert_allclose(got[key].numpy(), ref[key], rtol=1e-8,
                               atol=1e-10, err_msg=key)
  # V solves the generalized problem: V^T Sw_s V = I and the eigenvalues
  # are scipy's, descending.
  v = got["scalings"].numpy()
  sw = sum(np.mean(y == c) * np.cov(x[y == c], rowvar=False, bias=True)
           for c in np.unique(y))
  s = ref["shrinkage"]
  sw_s = (1 - s) * sw + s * np.trace(sw) / sw.shape[0] * np.eye(sw.shape[0])
  np.testing.assert_allclose(v.T @ sw_s @ v, np.eye(v.shape[0]), atol=1e-8)
  st = np.cov(x, rowvar=False, bias=True)
  st_s = (1 - s) * st + s * np.trace(st) / st.shape[0] * np.eye(st.shape[0])
  evals = scipy.linalg.eigh(st_s - sw_s, sw_s, eigvals_only=True)[::-1]
  np.testing.assert_allclose(got["eigenvalues"].numpy(), evals, rtol=1e-7,
                             atol=1e-9)
  proba = torch_reference.sfda_predict_proba(got, x).numpy()
  np.testing.assert_allclose(proba, numpy_reference.sfda_predict_proba(ref, x),
                             rtol=1e-8, atol=1e-12)


def test_float32_is_close_and_tensor_input_is_not_modified():
  x, y = make_features(1000, 32, 10, seed=7)
  ref = numpy_reference.sfda_score(x, y)
  xt = torch.as_tensor(x, dtype=torch.float32)
  before = xt.clone()
  got = torch_reference.sfda_score(xt, torch.as_tensor(y), device="cpu",
                                   dtype=torch.float32)
  assert _rel(got, ref) <= 1e-4, (got, ref)
  assert torch.equal(xt, before)
  got_logme = torch_reference.logme(xt, y, device="cpu", dtype="float32")
  assert _rel(got_logme, numpy_reference.logme(x, y)) <= 1e-3


def test_shuffled_labels_score_lower():
  x, y = make_features(600, 16, 4, seed=9, separation=4.0)
  y_bad = np.random.default_rng(0).permutation(y)
  assert (torch_reference.sfda_score(x, y, device="cpu")
          > torch_reference.sfda_score(x, y_bad, device="cpu"))


def test_nleep_delegates_to_sklearn_path():
  x, y = make_features(300, 12, 3, seed=11)
  assert torch_reference.nleep(torch.as_tensor(x), y, seed=1) == \
      numpy_reference.nleep_sklearn(x, y, seed=1)


def test_bad_arguments_raise_value_error():
  x, y = make_features(100, 8, 2)
  with pytest.raises(ValueError, match="dtype"):
    torch_reference.sfda_score(x, y, device="cpu", dtype="float16")
  with pytest.raises(ValueError, match="length mismatch"):
    torch_reference.logme(x, y[:-1], device="cpu")
  with pytest.raises(ValueError, match="2-D"):
    torch_reference.sfda_score(x[:, 0], y, device="cpu")


def test_missing_torch_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)   # import torch -> error
  assert not torch_reference.available()
  with pytest.raises(ImportError, match=r"pip install -e '\.\[baseline\]'"):
    torch_reference.sfda_score(np.zeros((4, 2)), [0, 0, 1, 1])


@pytest.mark.slow
def test_sfda_jax_does_not_import_torch():
  code = ("import sys, sfda_jax, sfda_jax.baselines.torch_reference; "
          "print('torch' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=300, check=True)
  assert out.stdout.strip() == "False"
