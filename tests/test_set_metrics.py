"""Set-level metrics (ETran, NCTI) through score_models and resample_scores:
parts scored per model, min-max combined over the models whose every part
scored; failures named; resampled values combined per resample."""

import numpy as np
import pytest

import sfda_jax
from sfda_jax.metrics import registry
from conftest import make_features


def _zoo():
  x, y = make_features(300, 70, 4, seed=0, separation=3.0)
  rng = np.random.default_rng(1)
  return {"good": x, "noisy": x + 2.0 * rng.normal(size=x.shape),
          "noise": rng.normal(size=x.shape)}, y


def test_score_models_equals_the_set_level_functions():
  feats, y = _zoo()
  table = sfda_jax.score_models(feats, y, metrics=("etran", "ncti", "sfda"))
  assert list(table) == ["etran", "ncti", "sfda"]
  for name in ("etran", "ncti"):
    direct = getattr(sfda_jax, name)(feats, y)
    assert set(table[name]) == set(feats)
    for m in feats:
      assert table[name][m] == pytest.approx(direct[m], rel=1e-5, abs=1e-6)
  assert table["etran"]["good"] > table["etran"]["noise"]


def test_parts_are_returned_apart_unless_named():
  feats, y = _zoo()
  r = sfda_jax.score_models(feats, y, metrics=("etran",), on_error="record")
  assert set(r.scores) == {"etran"}
  assert set(r.parts) == {"etran_energy", "etran_lda"}
  named = sfda_jax.score_models(feats, y, metrics=("etran", "etran_lda"))
  assert set(named) == {"etran", "etran_lda"}
  assert named["etran_lda"]["good"] == pytest.approx(
      sfda_jax.etran_parts(feats["good"], y)["lda"], rel=1e-5)


def test_a_failed_part_fails_only_that_model():
  feats, y = _zoo()
  feats["flat"] = np.ones_like(feats["good"])
  r = sfda_jax.score_models(feats, y, metrics=("etran",), on_error="record")
  assert set(r.scores["etran"]) == {"good", "noisy", "noise"}
  assert r.failures["etran"]["flat"].startswith("part etran_")
  assert "constant" in r.failures["etran"]["flat"]
  without = sfda_jax.etran({m: feats[m] for m in ("good", "noisy", "noise")},
                           y)
  for m, v in without.items():
    assert r.scores["etran"][m] == pytest.approx(v, rel=1e-5, abs=1e-6)


def test_one_scorable_model_is_a_failure_not_a_score():
  feats, y = _zoo()
  r = sfda_jax.score_models({"good": feats["good"],
                             "flat": np.ones_like(feats["good"])}, y,
                            metrics=("ncti",), on_error="record")
  assert r.scores["ncti"] == {}
  assert "at least 2 scored models" in r.failures["ncti"]["good"]
  with pytest.raises(ValueError, match="at least 2"):
    sfda_jax.score_models({"good": feats["good"]}, y, metrics=("etran",))


def test_resampled_set_metric_is_combined_per_resample():
  feats, y = _zoo()
  r = sfda_jax.resample_scores(feats, y, metrics=("etran", "sfda"),
                               resamples=4)
  assert set(r.values) == {"etran", "sfda"}
  stacked = np.stack([r.values["etran"][m] for m in feats])      # [M, B]
  assert stacked.shape == (3, 4)
  assert np.all(stacked >= 0) and np.all(stacked <= 1)
  assert r.top1_stability["etran"] == 1.0
  # The same resamples of the parts, combined by hand.
  parts = sfda_jax.resample_scores(feats, y, metrics=("etran_energy",
                                                      "etran_lda"),
                                   resamples=4)

  def mm(name):
    v = np.stack([parts.values[name][m] for m in feats])
    return (v - v.min(0)) / (v.max(0) - v.min(0))
  np.testing.assert_allclose(
      stacked, 0.15 * mm("etran_energy") + 0.85 * mm("etran_lda"),
      rtol=1e-6)


def test_registry_names_are_known_to_score_models():
  with pytest.raises(ValueError, match="the set-level parts"):
    sfda_jax.score_models({"a": np.ones((4, 2))}, [0, 0, 1, 1],
                          metrics=("etran_energyy",))
  assert set(registry.expand(("ncti",))) == {"ncti_seli", "ncti_ncc",
                                             "ncti_vc"}
