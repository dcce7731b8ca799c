"""Edge and bad inputs across every metric: each case either returns a
finite score with a checked property (scale or renaming invariance, string
labels equal to integer codes, ...) or raises ValueError naming the problem.
Never a crash, a hang or a NaN. Sizes are tiny so every case runs quickly."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import sfda_jax
from sfda_jax.metrics import registry
from conftest import make_features

METRICS = ["sfda", "logme", "nleep", "hscore", "regularized_hscore", "gbc",
           "transrate", "parc", "leep", "nce", "knn", "inter_class_distance",
           "ped", "sfda_cv5", "sfda_lw", "sfda_pca32", "logme_corrected"]
SCALE_INVARIANT = {"hscore", "regularized_hscore", "gbc", "parc", "knn"}
SOURCE = {"leep", "nce"}       # scored from the source model's outputs


def _base():
  x, y = make_features(40, 6, 4, seed=0, separation=3.0)
  return x.astype(np.float32), y


def _is_numeric_2d(x):
  a = x if isinstance(x, jax.Array) else np.asarray(x)
  return a.ndim == 2 and a.size > 0 and (
      np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_
      or a.dtype == ml_dtypes.bfloat16) and not np.issubdtype(
          a.dtype, np.complexfloating)


def _to_probs(x):
  """LEEP's input made from the case's features: a row softmax (float64,
  cast back to the case's float dtype); NaN/Inf rows stay non-finite."""
  if not _is_numeric_2d(x):
    return x
  a = np.asarray(x)
  f = a.astype(np.float64)
  with np.errstate(invalid="ignore", over="ignore"):
    e = np.exp(f - f.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
  if np.issubdtype(a.dtype, np.floating) or a.dtype == ml_dtypes.bfloat16:
    return p.astype(a.dtype)
  return p.astype(np.float32)


def _to_hard(x):
  """NCE's input: argmax source labels; a non-finite row gives a NaN id."""
  if not _is_numeric_2d(x):
    return x
  a = np.asarray(x).astype(np.float64)
  z = np.argmax(np.nan_to_num(a, nan=0.0), axis=1).astype(np.float64)
  z[~np.all(np.isfinite(a), axis=1)] = np.nan
  return z


def score(metric, x, y):
  if metric == "leep":
    x = _to_probs(x)
  elif metric == "nce":
    x = _to_hard(x)
  return registry.get(metric).fn(x, y)


_CACHE = {}


def base_score(metric):
  if metric not in _CACHE:
    _CACHE[metric] = score(metric, *_base())
  return _CACHE[metric]


def _nan(x, y):
  x = x.copy()
  x[3, 2] = np.nan
  return x, y


def _inf(x, y):
  x = x.copy()
  x[5, 1] = np.inf
  return x, y


rng = np.random.default_rng(7)
# case -> (make(x, y) -> (x, y), expectation). An expectation is a regex of
# the ValueError, "finite", or "base" (the base score, rel 1e-5); a dict maps
# metric -> expectation with "*" as the default.
CASES = {
    "nan": (_nan, "NaN or Inf"),
    "inf": (_inf, "NaN or Inf"),
    "constant_features": (lambda x, y: (np.full_like(x, 2.5), y),
                          {"*": "features are constant", "leep": "finite",
                           "nce": "finite"}),
    "all_zero_features": (lambda x, y: (np.zeros_like(x), y),
                          {"*": "features are constant", "leep": "finite",
                           "nce": "finite"}),
    "one_dimension": (lambda x, y: (x[:, :1], y),
                      {"*": "finite", "parc": "at least 2 feature dim"}),
    "fewer_samples_than_dims": (
        lambda x, y: (rng.normal(size=(12, 30)).astype(np.float32),
                      np.repeat([0, 1, 2], 4)),
        {"*": "finite", "nleep": "mixture components",
         "knn": "must be at most N - 1"}),
    "one_sample_per_class": (lambda x, y: (x[:4], np.arange(4)),
                             "at least 2 samples"),
    "a_single_sample_class": (
        lambda x, y: (x, np.where(np.arange(len(y)) == 0, 12345, y)),
        "at least 2 samples"),
    "two_classes": (lambda x, y: (x, (y == y[0]).astype(int)), "finite"),
    "thousand_classes": (
        lambda x, y: (rng.normal(size=(2000, 8)).astype(np.float32),
                      np.repeat(np.arange(1000), 2)),
        {"*": "finite", "nleep": "mixture components",
         "sfda_cv5": "single sample of every class"}),
    "huge_magnitude": (lambda x, y: (x * np.float32(1e30), y),
                       {"*": "too large", **{m: "base" for m in
                                             SCALE_INVARIANT},
                        "leep": "finite", "nce": "base"}),
    "tiny_magnitude": (lambda x, y: (x * np.float32(1e-30), y),
                       {"*": "too small", **{m: "base" for m in
                                             SCALE_INVARIANT},
                        "leep": "finite", "nce": "base"}),
    "float16": (lambda x, y: (x.astype(np.float16), y), "close"),
    "bfloat16": (lambda x, y: (jnp.asarray(x, jnp.bfloat16), y), "close"),
    "integer_features": (lambda x, y: (np.round(x * 4).astype(np.int32), y),
                         "finite"),
    "bool_features": (lambda x, y: (x > np.median(x, axis=0), y), "finite"),
    "non_contiguous": (
        lambda x, y: (np.asfortranarray(np.repeat(x, 2, axis=1))[:, ::2],
                      y), "base"),
    "negative_noncontiguous_label_ids": (
        lambda x, y: (x, np.array([-1000, -3, 7, 500])[
            np.unique(y, return_inverse=True)[1]]), "base"),
    # Drawn folds follow the sorted class ids: another order, other folds.
    "order_reversing_renaming": (lambda x, y: (x, -7 * y + 3),
                                 {"*": "base", "sfda_cv5": "finite"}),
    "string_labels": (lambda x, y: (x, np.array([f"c{v:+d}" for v in y])),
                      {"*": "base", "sfda_cv5": "finite"}),
    "nan_label": (lambda x, y: (x, np.where(np.arange(len(y)) == 2, np.nan,
                                            y.astype(float))), "NaN or Inf"),
    "length_mismatch": (lambda x, y: (x, y[:-1]), {
        "*": "length mismatch"}),
    "empty": (lambda x, y: (x[:0], y[:0]), "empty"),
    "three_dimensional": (lambda x, y: (x.reshape(40, 3, 2), y),
                          {"*": "2-D", "nce": "1-D"}),
    "complex_features": (lambda x, y: (x.astype(np.complex64), y),
                         {"*": "real-valued", "nce": "1-D"}),
    "string_features": (lambda x, y: (x.astype(str), y),
                        {"*": "numeric", "nce": "1-D"}),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("metric", METRICS)
def test_edge_input(metric, case):
  make, expect = CASES[case]
  if isinstance(expect, dict):
    expect = expect.get(metric, expect["*"])
  x, y = make(*_base())
  if expect in ("finite", "base", "close"):
    value = score(metric, x, y)
    assert isinstance(value, float) and np.isfinite(value), value
    if expect == "base":
      assert value == pytest.approx(base_score(metric), rel=1e-5, abs=1e-7)
    elif expect == "close" and metric != "nleep":
      # half precision rounds the features: the score moves a little
      # (NLEEP's mixture seeding may pick other points: finite only).
      assert value == pytest.approx(base_score(metric), rel=2e-2, abs=2e-2)
  else:
    with pytest.raises(ValueError, match=expect):
      score(metric, x, y)


def test_leep_accepts_half_precision_probabilities():
  _, y = _base()
  theta = _to_probs(_base()[0])
  want = sfda_jax.leep(theta, y)
  for dtype in (np.float16, ml_dtypes.bfloat16):
    got = sfda_jax.leep(theta.astype(dtype), y)
    assert got == pytest.approx(want, rel=2e-2)


# --------------------------------------------------------------------------
# One path: every case of the battery gives the single call's score or its
# error through score_models as well.

from sfda_jax.metrics import registry  # noqa: E402

# NCE is left out: score_models derives its hard source labels from source
# probabilities (argmax), so the two entries do not take the same input.
# Set-level metrics need several models (their own battery:
# tests/metrics/test_etran_ncti.py).
ONE_PATH_METRICS = [m for m in registry.ALL_METRICS if m != "nce"
                    and m not in registry.SET_METRICS]


def _outcome(fn):
  """``("score", value)`` or ``("error", message)`` with the model's name
  taken out of score_models' messages ("features of model 'm'" ->
  "features", "hscore (model 'm')" -> "hscore")."""
  try:
    value = fn()
  except ValueError as e:
    msg = str(e).replace("features of model 'm'", "features")
    return "error", msg.replace(" (model 'm')", "")
  return "score", value


def _via_score_models(metric, x, y):
  spec = registry.REGISTRY[metric]
  if spec.inputs == "features":
    return sfda_jax.score_models({"m": x}, y, metrics=(metric,))[metric]["m"]
  # Source metrics: the model's features only need the right structure.
  n = np.shape(y)[0] if np.ndim(y) else 0
  return sfda_jax.score_models(
      {"m": np.zeros((n, 1), np.float32)}, y, metrics=(metric,),
      source_probs_by_model={"m": _to_probs(x)})[metric]["m"]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("metric", ONE_PATH_METRICS)
def test_single_call_and_score_models_agree(metric, case):
  make, _ = CASES[case]
  x, y = make(*_base())
  single = _outcome(lambda: score(metric, x, y))
  p = _to_probs(x)
  if registry.REGISTRY[metric].inputs != "features" and (
      np.ndim(p) != 2 or np.shape(p)[0] != np.shape(y)[0] or len(y) == 0):
    pytest.skip("score_models checks the shapes of every model's source "
                "probabilities against the labels before any cell (an "
                "all-cells error with its own message)")
  batched = _outcome(lambda: _via_score_models(metric, x, y))
  assert single[0] == batched[0], (single, batched)
  if single[0] == "error":
    assert single[1] == batched[1]
  else:
    assert batched[1] == pytest.approx(single[1], rel=1e-5, abs=1e-7)
