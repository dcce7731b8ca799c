"""Score resampling (METRICS.md, "Score uncertainty")."""

import numpy as np
import pytest

import sfda_jax
from sfda_jax import uncertainty
from sfda_jax.metrics import registry

from conftest import make_features, slow_for


def _pair(seed=1, eps=0.003):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(4), 50)
  x = rng.normal(size=(200, 16)) + np.eye(16)[y]
  return x, x + eps * rng.normal(size=x.shape), y


def test_clearly_better_model_is_resolved():
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(3), 40)
  feats = {"good": rng.normal(size=(120, 6)) + 3 * np.eye(6)[y],
           "bad": rng.normal(size=(120, 6)) + 0.3 * np.eye(6)[y]}
  r = sfda_jax.resample_scores(feats, y, metrics=("sfda", "logme"),
                               resamples=16)
  for m in ("sfda", "logme"):
    assert r.p_above[m]["good"]["bad"] >= 0.95
    assert r.p_above[m]["bad"]["good"] <= 0.05
    assert r.top1_stability[m] == 1.0
    assert r.unresolved(m) == []


def test_near_identical_models_are_unresolved():
  a, b, y = _pair()
  r = sfda_jax.resample_scores({"a": a, "b": b}, y,
                               metrics=("sfda", "hscore"), resamples=32)
  for m in ("sfda", "hscore"):
    assert 0.2 <= r.p_above[m]["a"]["b"] <= 0.8, (m, r.p_above[m])
    assert r.unresolved(m) != []


def test_same_seed_is_bit_identical_and_resamples_are_paired():
  a, b, y = _pair()
  feats = {"a": a, "b": b, "a_copy": a.copy()}
  r1 = sfda_jax.resample_scores(feats, y, metrics=("sfda",), resamples=6,
                                seed=3)
  r2 = sfda_jax.resample_scores(feats, y, metrics=("sfda",), resamples=6,
                                seed=3)
  for m in feats:
    np.testing.assert_array_equal(r1.values["sfda"][m], r2.values["sfda"][m])
  # Paired: a model and its copy see the same rows in every resample.
  np.testing.assert_array_equal(r1.values["sfda"]["a"],
                                r1.values["sfda"]["a_copy"])
  r3 = sfda_jax.resample_scores(feats, y, metrics=("sfda",), resamples=6,
                                seed=4)
  assert not np.array_equal(r1.values["sfda"]["a"], r3.values["sfda"]["a"])


def test_resample_indices():
  codes = np.repeat(np.arange(3), [50, 30, 20])
  idx = uncertainty.resample_indices(codes, 5, 0.8, seed=2)
  assert idx.shape == (5, 80)
  for row in idx:
    assert len(set(row)) == 80                     # without replacement
    assert np.bincount(codes[row]).tolist() == [40, 24, 16]
  np.testing.assert_array_equal(
      idx[:3], uncertainty.resample_indices(codes, 3, 0.8, seed=2))
  boot = uncertainty.resample_indices(codes, 5, 1.0, seed=2, replace=True)
  assert boot.shape == (5, 100)
  assert any(len(set(row)) < 100 for row in boot)  # duplicates drawn
  assert np.bincount(codes[boot[0]]).tolist() == [50, 30, 20]


# Per-model metrics, their variants and the set-level parts (the set-level
# combination of resamples: tests/test_set_metrics.py). The parts need
# N >= 200 (ETran) and 64 principal components (NCTI): a larger set.
METRICS = [m for m in sfda_jax.FEATURE_METRICS
           if m not in registry.SET_METRICS] + list(registry.VARIANT_METRICS)
PARTS = list(registry.PART_METRICS)


@pytest.mark.parametrize("metric", slow_for(METRICS + PARTS, {
    "nleep", "parc", "gbc", "sfda_pca32", "sfda_lw", "sfda_oas",
    "logme_corrected", "ncti_seli", "ncti_vc"}))
def test_each_resample_is_the_single_call_on_its_rows(x64, metric):
  x, y = (make_features(300, 70, 3, seed=7) if metric in PARTS
          else make_features(90, 12, 3, seed=7))
  r = sfda_jax.resample_scores({"m": x}, y, metrics=(metric,), resamples=3,
                               seed=5)
  idx = uncertainty.resample_indices(
      np.unique(y, return_inverse=True)[1], 3, 0.8, seed=5)
  fn = registry.get(metric).fn
  kwargs = {"seed": 5} if metric == "nleep" else {}
  want = [fn(x[i], y[i], **kwargs) for i in idx]
  np.testing.assert_allclose(r.values[metric]["m"], want, rtol=1e-6)
  assert r.scores[metric]["m"] == pytest.approx(fn(x, y, **kwargs), rel=1e-9)


def test_summary_statistics():
  a, b, y = _pair(eps=0.3)
  r = sfda_jax.resample_scores({"a": a, "b": b}, y, metrics=("logme",),
                               resamples=10)
  v = r.values["logme"]
  assert r.mean["logme"]["a"] == pytest.approx(v["a"].mean())
  assert r.std["logme"]["a"] == pytest.approx(v["a"].std(ddof=1))
  assert r.p5["logme"]["b"] == pytest.approx(np.percentile(v["b"], 5))
  assert r.p95["logme"]["b"] == pytest.approx(np.percentile(v["b"], 95))
  assert r.p_above["logme"]["a"]["b"] == pytest.approx(
      np.mean(v["a"] > v["b"]))
  assert r.num_samples == 160 and r.resamples == 10
  assert set(r.to_json()["values"]["logme"]) == {"a", "b"}


def test_a_model_that_cannot_be_scored_is_recorded():
  a, b, y = _pair()
  r = sfda_jax.resample_scores({"a": a, "flat": np.ones_like(a)}, y,
                               metrics=("sfda",), resamples=3)
  assert "constant" in r.failures["sfda"]["flat"]
  assert list(r.values["sfda"]) == ["a"]


@pytest.mark.parametrize("kwargs,match", [
    ({"resamples": 1}, "resamples must be an int >= 2"),
    ({"resamples": 2.0}, "resamples must be an int >= 2"),
    ({"fraction": 0.0}, r"fraction must be a number in \(0, 1\]"),
    ({"fraction": 1.5}, r"fraction must be a number in \(0, 1\]"),
    ({"replace": "yes"}, "replace must be a bool"),
    ({"metrics": ("leep",)}, "feature metrics"),
    ({"fraction": 0.03}, "fewer than 2 per resample"),
])
def test_bad_input(kwargs, match):
  a, _, y = _pair()
  with pytest.raises(ValueError, match=match):
    sfda_jax.resample_scores({"a": a}, y, **{"metrics": ("sfda",), **kwargs})


def test_small_class_is_named():
  x, y = make_features(60, 5, 3, seed=0)
  y = np.where(np.arange(60) < 2, 99, y)          # class 99 has 2 samples
  with pytest.raises(ValueError, match="class 99 "):
    sfda_jax.resample_scores({"m": x}, y, metrics=("sfda",), resamples=2)


def test_precomputed_full_scores_are_reused():
  a, b, y = _pair()
  feats = {"a": a, "b": b}
  full = sfda_jax.score_models(feats, y, metrics=("sfda", "logme"),
                               on_error="record")
  r1 = sfda_jax.resample_scores(feats, y, metrics=("sfda",), resamples=3,
                                full=full)
  r2 = sfda_jax.resample_scores(feats, y, metrics=("sfda",), resamples=3)
  assert r1.scores["sfda"] == r2.scores["sfda"]
  np.testing.assert_array_equal(r1.values["sfda"]["a"], r2.values["sfda"]["a"])
  with pytest.raises(ValueError, match="same models and metrics"):
    sfda_jax.resample_scores(feats, y, metrics=("hscore",), resamples=3,
                             full=full)


def test_progress_is_called_once_per_cell():
  a, b, y = _pair()
  calls = []
  sfda_jax.resample_scores({"a": a, "b": b, "flat": np.ones_like(a)}, y,
                           metrics=("sfda", "hscore"), resamples=2,
                           progress=lambda m, n: calls.append((m, n)))
  # The constant model fails on the full data: it is never resampled.
  assert sorted(calls) == [("hscore", "a"), ("hscore", "b"), ("sfda", "a"),
                           ("sfda", "b")]
