"""The metric registry: every metric declared once, and what derives from it."""

import subprocess
import sys

import numpy as np
import pytest

import sfda_jax
from sfda_jax.metrics import registry
from sfda_jax.metrics import streaming as metrics_streaming
from conftest import make_features


def test_public_lists_derive_from_the_registry():
  listed = [n for n, s in registry.REGISTRY.items()
            if s.part_of is None and s.variant_of is None]
  assert set(sfda_jax.ALL_METRICS) == set(listed) | set(registry.SET_METRICS)
  assert set(sfda_jax.FEATURE_METRICS) | set(sfda_jax.SOURCE_METRICS) == \
      set(sfda_jax.ALL_METRICS)
  assert sfda_jax.SOURCE_METRICS == ("leep", "nce")
  assert registry.SET_METRICS == ("etran", "ncti")
  for name, spec in registry.REGISTRY.items():
    assert spec.name == name
    if name in listed:
      assert getattr(sfda_jax, name) is spec.fn
  for name, spec in registry.SET_REGISTRY.items():
    assert getattr(sfda_jax, name) is spec.fn
    assert all(registry.REGISTRY[p].part_of == name for p in spec.parts)
  for name in registry.VARIANT_METRICS:
    spec = registry.REGISTRY[name]
    base = registry.REGISTRY[spec.variant_of]
    assert spec.core is base.core and spec.streaming is None
    assert set(spec.defaults) == set(base.defaults) != {}


def test_variants_are_their_base_metric_with_options():
  x, y = make_features(200, 10, 4, seed=3)
  r = sfda_jax.score_models({"m": x}, y, metrics=(
      "sfda_lw", "sfda_pca32", "sfda_cv5", "logme_corrected"))
  assert r["sfda_lw"]["m"] == pytest.approx(sfda_jax.sfda(x, y,
                                                          shrinkage="lw"))
  assert r["sfda_pca32"]["m"] == pytest.approx(sfda_jax.sfda(x, y,
                                                             pca_dim=32))
  assert r["sfda_cv5"]["m"] == pytest.approx(sfda_jax.sfda(x, y, folds=5))
  assert r["logme_corrected"]["m"] == pytest.approx(
      sfda_jax.logme(x, y, corrected=True))
  assert registry.get("sfda_oas").fn(x, y) == pytest.approx(
      sfda_jax.sfda(x, y, shrinkage="oas"))


def test_expand_replaces_set_metrics_by_their_parts():
  assert registry.expand(("sfda", "etran", "etran_lda", "ncti")) == (
      "sfda", "etran_energy", "etran_lda", "ncti_ncc", "ncti_seli",
      "ncti_vc")


def test_unknown_option_and_unknown_metric():
  with pytest.raises(TypeError, match="unexpected option"):
    registry.REGISTRY["hscore"].options(pca_dim=3)
  with pytest.raises(ValueError, match="unknown metric 'nope'"):
    registry.get("nope")


@pytest.mark.parametrize("metric", registry.STREAMING_METRICS)
def test_streaming_counterpart_matches_the_in_memory_metric(metric):
  x, y = make_features(120, 6, 3, seed=4)
  spec = registry.REGISTRY[metric]
  stream = getattr(metrics_streaming, spec.streaming)
  got = stream(lambda: ((x[i:i + 50], y[i:i + 50]) for i in range(0, 120, 50)))
  assert got == pytest.approx(spec.fn(x, y), rel=1e-4, abs=1e-6)
  # sfda_jax.streaming re-exports the same function.
  assert getattr(sfda_jax.streaming, spec.streaming) is stream


def test_metrics_package_loads_no_pipeline_libraries():
  code = ("import sys, sfda_jax.metrics, sfda_jax.metrics.streaming; "
          "print([m for m in ('flax', 'tensorflow', 'transformers', 'PIL', "
          "'sfda_jax.features', 'sfda_jax.backbones') if m in sys.modules])")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True)
  assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_one_sample_axis_name():
  from sfda_jax import sharding
  from sfda_jax.metrics import placement
  assert sharding.sample_mesh is placement.sample_mesh
  assert placement.sample_mesh().axis_names == (placement.SAMPLE_AXIS,)
  x = placement.shard_samples(np.zeros((len(placement.sample_mesh().devices),
                                        3)))
  assert x.sharding.spec[0] == placement.SAMPLE_AXIS
