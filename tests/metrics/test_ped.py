"""PED (potential-energy descent before a base metric; METRICS.md "PED").

(a) float64 parity of the remapped features and of the score with the NumPy
reference (sfda_jax/baselines/numpy_reference_ped.py), for the SFDA and LogME
bases, N > D and N < D, 2..100 classes, unbalanced and non-contiguous labels,
with an ImageNet-style ``source_std`` and with ``standardize="self"``; 0, some
and all 6 steps accepted; the NLEEP base against ``nleep`` of the remapped
features. (b) properties. (c) bad input and the self-standardisation warning.
"""

import logging

import numpy as np
import pytest

from sfda_jax import ranking
from sfda_jax.baselines import numpy_reference
from sfda_jax.baselines import numpy_reference_ped as reference
from sfda_jax.metrics import _logme
from sfda_jax.metrics import _nleep
from sfda_jax.metrics import _ped
from sfda_jax.metrics import _runner
from sfda_jax.metrics import _sfda
from conftest import fast_subset, make_features

RTOL = 1e-6


def _close(actual, expected, rtol=RTOL):
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-12)


def _source_std(d, seed):
  """An ImageNet-style std: positive, uneven, one dimension at 0 (floored at
  eps) and one below eps."""
  s = np.random.default_rng(seed).uniform(0.5, 1.5, size=d)
  s[0] = 0.0
  s[-1] = 1e-4
  return s


def _check_remap(x, y, sigma, got, steps, **kwargs):
  """The JAX remap ``(got, steps)`` equals the reference's: same accepted
  steps, displacements to 1e-6 relative. Returns the reference's steps."""
  want, want_steps = reference.ped_remap(x, y, sigma, **kwargs)
  assert steps == want_steps
  moved = want - x
  np.testing.assert_allclose(np.asarray(got) - x, moved, rtol=RTOL,
                             atol=1e-9 * max(np.abs(moved).max(), 1e-300))
  return want_steps


# (N, D, K): N > D, N < D, binary, many classes (K = 100), K > D.
CASES = [
    pytest.param(400, 24, 5, id="N>D-K5"),
    pytest.param(60, 120, 3, id="N<D-K3"),
    pytest.param(150, 8, 2, id="binary"),
    pytest.param(1000, 40, 100, id="K100"),
    pytest.param(90, 200, 10, id="N<D-K10"),
]
GRID = [pytest.param(n, d, k, base, std, id=f"{case.id}-{base}-{std}")
        for case in CASES for (n, d, k) in [case.values]
        for base in ("sfda", "logme") for std in ("source", "self")]
FAST_GRID = fast_subset(GRID, {"N>D-K5-sfda-source", "N<D-K3-logme-self"})


@pytest.mark.parametrize("n,d,k,base,std", FAST_GRID)
def test_parity(x64, n, d, k, base, std):
  x, y = make_features(n, d, k, seed=n + d + k)
  source = _source_std(d, seed=k) if std == "source" else None
  sigma = x.std(axis=0) if source is None else source
  opts = dict(nsigma=1.0)            # every grid point overlaps: steps taken
  got, steps = _ped.ped_remap(x, y, source_std=source, **opts)
  assert _check_remap(x, y, sigma, got, steps, **opts) >= 1
  _close(_ped.ped(x, y, source_std=source, base=base, **opts),
         reference.ped(x, y, source, base=base, **opts))


def _two_classes(separation, n=120, d=6, seed=0):
  """Two Gaussian classes ``separation`` apart along a random direction,
  labels with gaps."""
  rng = np.random.default_rng(seed)
  y = rng.permutation(np.repeat([-3, 7], [n // 3, n - n // 3]))
  u = rng.normal(size=d)
  x = rng.normal(size=(n, d)) + separation * (y == 7)[:, None] * u / \
      np.linalg.norm(u)
  return 2.0 + x, y


# (data separation, options, accepted steps). Two classes: each step moves
# each centre by step = min(c dt^2 F / 2, F) along their line, so F shrinks
# by the factor (1 - c dt^2) while positive: with the defaults P_t / P_0 =
# 0.99^t (all 6 accepted); exit_ratio 0.97 stops at t = 4 (0.99^4 < 0.97);
# dt = 1 closes the overlap in one step (P_1 = 0); exit_ratio 1 accepts
# nothing; far-apart classes have P_0 = 0.
REGIMES = [
    pytest.param(0.5, {}, 6, id="all-6"),
    pytest.param(60.0, {}, 0, id="none-P0=0"),
    pytest.param(0.5, {"exit_ratio": 0.97}, 4, id="some-exit"),
    pytest.param(0.5, {"dt": 1.0}, 1, id="some-dt"),
    pytest.param(0.5, {"exit_ratio": 1.0}, 0, id="exit-ratio-1"),
]


@pytest.mark.parametrize("separation,opts,expected,std", fast_subset(
    [pytest.param(*p.values, std, id=f"{p.id}-{std}") for p in REGIMES
     for std in ("source", "self")],
    {"all-6-source", "none-P0=0-self", "some-exit-self"}))
def test_accepted_steps(x64, separation, opts, expected, std):
  x, y = _two_classes(separation)
  source = _source_std(x.shape[1], seed=1) if std == "source" else None
  sigma = x.std(axis=0) if source is None else source
  got, steps = _ped.ped_remap(x, y, source_std=source, **opts)
  assert steps == expected
  _check_remap(x, y, sigma, got, steps, **opts)
  if expected == 0:                           # unchanged, bit for bit
    np.testing.assert_array_equal(np.asarray(got), x)
  score = _ped.ped(x, y, source_std=source, **opts)
  _close(score, reference.ped(x, y, source, **opts))
  if expected == 0:                           # the base metric's own score
    _close(score, _sfda.sfda(x, y), rtol=1e-12)


@pytest.mark.slow
def test_far_apart_classes_score_as_the_base_metric(x64):
  x, y = make_features(300, 10, 6, seed=5, separation=80.0)
  got, steps = _ped.ped_remap(x, y)
  assert steps == 0
  np.testing.assert_array_equal(np.asarray(got), x)
  _close(_ped.ped(x, y, base="logme"), _logme.logme(x, y), rtol=1e-12)


def test_many_classes_partial_steps(x64):
  # 100 crowded classes: the motion falls below half of P_0 after 2 steps.
  x, y = make_features(1000, 40, 100, seed=1140)
  got, steps = _ped.ped_remap(x, y)
  assert 1 <= _check_remap(x, y, x.std(axis=0), got, steps) < 6


def test_nleep_base_is_nleep_of_the_remapped_features(x64):
  x, y = make_features(150, 6, 3, seed=3, separation=1.0)
  remapped, steps = _ped.ped_remap(x, y)
  assert steps == 6
  for seed in (0, 4):
    assert _ped.ped(x, y, base="nleep", seed=seed) == pytest.approx(
        _nleep.nleep(remapped, y, seed=seed), rel=1e-9)


@pytest.mark.slow
def test_nleep_base_agrees_with_sklearn_in_distribution(x64):
  pytest.importorskip("sklearn")
  x, y = make_features(200, 6, 3, seed=8, separation=1.5)
  ours = [_ped.ped(x, y, base="nleep", seed=s) for s in range(8)]
  theirs = [reference.ped(x, y, base="nleep", seed=s) for s in range(8)]
  assert abs(np.median(ours) - np.median(theirs)) < 0.05


def test_coincident_class_means_contribute_nothing(x64):
  # Classes 0 and 2 hold the same rows in the same order: their means are
  # bitwise equal (d = 0) in the reference; class 1 overlaps both.
  rng = np.random.default_rng(2)
  a = rng.normal(size=(30, 5))
  b = rng.normal(size=(30, 5)) + 0.5
  x = np.stack([a, b, a], axis=1).reshape(90, 5)
  y = np.tile([0, 1, 2], 30)
  got, steps = _ped.ped_remap(x, y)
  assert steps == 6 and np.all(np.isfinite(np.asarray(got)))
  _check_remap(x, y, x.std(axis=0), got, steps)
  # Class 2's rows in another order: its mean now differs from class 0's by
  # rounding only (~1e-17), which must still count as coincident (not a
  # full-size step in a direction of rounding noise): same moves per class.
  rows = np.flatnonzero(y == 2)
  shuffled = x.copy()
  shuffled[rows] = x[np.random.default_rng(3).permutation(rows)]
  got2, steps2 = _ped.ped_remap(shuffled, y)
  assert steps2 == 6
  for k in range(3):
    np.testing.assert_allclose((np.asarray(got2) - shuffled)[y == k][0],
                               (np.asarray(got) - x)[y == k][0], rtol=1e-9)
  # The pure step: the coincident pair adds nothing to either class.
  means = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
  delta, p = _ped.ped_step(means, np.ones(3), nsigma=1.0, dt=0.1, c=1.0)
  step = 0.005 * (2.0 - 1.0)                  # F = nsigma (R + R) - d
  np.testing.assert_allclose(np.asarray(delta), [[-step, 0.0], [-step, 0.0],
                                                 [2 * step, 0.0]], atol=1e-15)
  assert float(p) == pytest.approx(4 * step)


# ---------------------------------------------------------------------------
# (b) properties


def test_label_renaming_changes_nothing(x64):
  x, y = make_features(150, 8, 5, seed=9, separation=1.0)
  names = np.array(["kiwi", "apple", "mango", "fig", "date"])
  renamed = names[np.searchsorted(np.unique(y), y)]    # another class order
  a, sa = _ped.ped_remap(x, y)
  b, sb = _ped.ped_remap(x, renamed)
  assert sa == sb == 6
  moved = np.asarray(a) - x
  np.testing.assert_allclose(np.asarray(b) - x, moved, rtol=1e-9,
                             atol=1e-12 * np.abs(moved).max())
  _close(_ped.ped(x, renamed), _ped.ped(x, y), rtol=1e-9)


def _standardised_means(x, y, sigma):
  z = x / np.maximum(sigma, 1e-3)
  return np.stack([z[y == k].mean(axis=0) for k in np.unique(y)])


def _distances(m):
  return np.linalg.norm(m[:, None] - m[None], axis=2)


def test_two_overlapping_classes_move_apart_by_the_accepted_steps(x64):
  x, y = _two_classes(0.5)
  sigma = x.std(axis=0)
  z = x / sigma
  radii = [np.sqrt(z[y == k].var(axis=0).sum()) for k in (-3, 7)]
  d0 = _distances(_standardised_means(x, y, sigma))[0, 1]
  force = 0.6 * sum(radii) - d0
  assert force > 0
  got, steps = _ped.ped_remap(x, y)
  d6 = _distances(_standardised_means(np.asarray(got), y, sigma))[0, 1]
  # Each step moves both centres by 0.005 F_t apart; F_t = F_0 0.99^t.
  grown = 2 * 0.005 * force * sum(0.99 ** t for t in range(steps))
  assert steps == 6 and d6 == pytest.approx(d0 + grown, rel=1e-9)


def test_symmetric_classes_all_move_apart(x64):
  # Four classes on a regular simplex with the same noise: every pair
  # overlaps equally and every pairwise distance grows.
  rng = np.random.default_rng(4)
  noise = rng.normal(size=(40, 6))
  vertices = 1.2 * np.eye(6)[:4]
  x = np.concatenate([noise + v for v in vertices])
  y = np.repeat([10, 20, 30, 40], 40)
  sigma = x.std(axis=0)
  before = _distances(_standardised_means(x, y, sigma))
  got, steps = _ped.ped_remap(x, y)
  after = _distances(_standardised_means(np.asarray(got), y, sigma))
  off = ~np.eye(4, dtype=bool)
  assert steps == 6 and np.all(after[off] > before[off] + 1e-6)


def _energy(x, y, sigma, nsigma=0.6):
  z = x / np.maximum(sigma, 1e-3)
  classes = np.unique(y)
  m = np.stack([z[y == k].mean(axis=0) for k in classes])
  r = np.array([np.sqrt(z[y == k].var(axis=0).sum()) for k in classes])
  f = np.maximum(nsigma * (r[:, None] + r[None]) - _distances(m), 0.0)
  return np.sum(np.triu(f, 1) ** 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_remap_descends_the_potential_energy(x64, seed):
  # delta_a = -(c dt^2 / 2) grad_a E with E = 1/2 sum_{a<b} F_ab^2.
  x, y = make_features(200, 8, 6, seed=seed, separation=1.5)
  sigma = _source_std(8, seed)
  got, steps = _ped.ped_remap(x, y, source_std=sigma)
  assert steps >= 1
  assert _energy(np.asarray(got), y, sigma) < _energy(x, y, sigma)


def test_perfect_features_score_high_shuffled_low(x64):
  rng = np.random.default_rng(6)
  y = np.repeat(np.arange(5), 30)
  x = 4.0 * np.eye(8)[y] + 0.3 * rng.normal(size=(150, 8))
  shuffled = rng.permutation(y)
  good, bad = _ped.ped(x, y), _ped.ped(x, shuffled)
  assert good > 0.95 and bad < 0.5 and good > bad


def test_score_models_runs_the_batched_core(x64):
  x, y = make_features(150, 8, 5, seed=9, separation=1.0)
  x2 = x + 0.3 * np.random.default_rng(0).normal(size=x.shape)
  scores = ranking.score_models({"a": x, "b": x2}, y, metrics=["ped"])
  _close(scores["ped"]["a"], _ped.ped(x, y), rtol=1e-9)
  _close(scores["ped"]["b"], _ped.ped(x2, y), rtol=1e-9)


# ---------------------------------------------------------------------------
# (c) bad input and the warning


_X, _Y = make_features(40, 6, 3, seed=0)
BAD = [
    pytest.param({"base": "knn"}, "unknown base metric 'knn'", id="base"),
    pytest.param({"standardize": "imagenet"}, "standardize must be one of",
                 id="standardize"),
    pytest.param({"standardize": "source"}, "needs source_std",
                 id="source-without-std"),
    pytest.param({"standardize": "self", "source_std": np.ones(6)},
                 "ignore the given source_std", id="self-with-std"),
    pytest.param({"source_std": np.ones(5)},
                 r"shape \[D\] = \[6\].*got shape \(5,\)", id="std-shape"),
    pytest.param({"source_std": np.ones((1, 6))},
                 r"shape \[D\].*got shape \(1, 6\)", id="std-2d"),
    pytest.param({"source_std": -np.ones(6)}, "non-negative", id="std-neg"),
    pytest.param({"source_std": np.r_[np.nan, np.ones(5)]}, "NaN or Inf",
                 id="std-nan"),
    pytest.param({"source_std": ["a"] * 6}, "numeric array", id="std-str"),
    pytest.param({"dt": 0.0}, "dt must be a positive", id="dt-0"),
    pytest.param({"dt": -0.1}, "dt must be a positive", id="dt-neg"),
    pytest.param({"nsigma": float("nan")}, "nsigma must be a positive",
                 id="nsigma-nan"),
    pytest.param({"eps": 0.0}, "eps must be a positive", id="eps-0"),
    pytest.param({"c": -1.0}, "c must be a positive", id="c-neg"),
    pytest.param({"max_steps": 0}, "max_steps must be a positive int",
                 id="steps-0"),
    pytest.param({"max_steps": 2.5}, "max_steps must be a positive int",
                 id="steps-float"),
    pytest.param({"exit_ratio": 0.0}, "exit_ratio must be a positive",
                 id="er-0"),
    pytest.param({"exit_ratio": 1.5}, r"exit_ratio must be in \(0, 1\]",
                 id="er-1.5"),
    pytest.param({"seed": 0.5}, "seed must be an int", id="seed"),
    pytest.param({"base": "nleep", "_n": 12}, "mixture components",
                 id="nleep-too-few-samples"),
    pytest.param({"_nan": True}, "NaN or Inf", id="nan-features"),
]


@pytest.fixture
def no_heavy_work(monkeypatch):
  """Fails a test that reaches a metric computation."""
  def boom(*args, **kwargs):
    raise AssertionError("the computation ran before the input was rejected")
  monkeypatch.setattr(_runner, "compute", boom)
  monkeypatch.setattr(_ped, "_remap", boom)


@pytest.mark.parametrize("kwargs,match", BAD)
def test_bad_input_is_rejected_before_heavy_work(no_heavy_work, kwargs,
                                                 match):
  kwargs = dict(kwargs)
  x, y = _X.copy(), _Y
  n = kwargs.pop("_n", None)
  if n is not None:
    x, y = make_features(n, 6, 3, seed=0)
  if kwargs.pop("_nan", False):
    x[2, 3] = np.nan
  with pytest.raises(ValueError, match=match):
    _ped.ped(x, y, **kwargs)
  if "base" not in kwargs and "seed" not in kwargs:   # ped_remap's options
    with pytest.raises(ValueError, match=match):
      _ped.ped_remap(x, y, **kwargs)


def test_ped_core_has_no_nleep_path():
  with pytest.raises(ValueError, match="no jittable path for base 'nleep'"):
    _ped.ped_core(np.zeros((4, 2)), np.array([0, 0, 1, 1]), num_classes=2,
                  base="nleep")


def test_self_standardisation_warns_once(x64, monkeypatch, caplog):
  x, y = make_features(150, 8, 5, seed=1)
  monkeypatch.setattr(_ped, "_self_warned", False)
  with caplog.at_level(logging.WARNING):
    _ped.ped_remap(x, y, source_std=x.std(axis=0))
    assert "ImageNet-val" not in caplog.text      # the published method
    _ped.ped_remap(x, y)
    assert "ImageNet-val" in caplog.text and "standardize='self'" in \
        caplog.text
    caplog.clear()
    _ped.ped_remap(x, y, standardize="self")
    assert "ImageNet-val" not in caplog.text      # once per process


def test_self_standardisation_is_the_reference_with_the_targets_std(x64):
  # standardize="self" == standardize="source" with the target's own std.
  x, y = make_features(150, 8, 5, seed=9, separation=1.0)
  a, _ = _ped.ped_remap(x, y, standardize="self")
  b, _ = _ped.ped_remap(x, y, source_std=x.std(axis=0), standardize="source")
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


def test_reference_ped_takes_a_base_callable():
  x, y = make_features(100, 5, 3, seed=2)
  seen = []
  assert reference.ped(x, y, base=lambda f, _: seen.append(f) or 0.25) == 0.25
  np.testing.assert_array_equal(seen[0],
                                reference.ped_remap(x, y, x.std(axis=0))[0])
  assert reference.ped(x, y, base=numpy_reference.sfda_score) == \
      reference.ped(x, y, base="sfda")
