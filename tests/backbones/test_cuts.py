"""Cut EfficientNet-Lite backbones (``name:stage{k}``), the raw-pixel
baseline (``pixels``) and the benchmark zoo (issue 12)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sfda_jax import backbones, finetune
from sfda_jax.backbones import efficientnet_lite as enl
from sfda_jax.evaluation import rank as rank_lib


def _images(n=2, size=64, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(n, size, size,
                                                              3)), jnp.float32)


def _pooled_block_outputs(module, variables, x):
  """Every MBConv block's output of the whole network, mean-pooled."""
  _, state = module.apply(variables, x, capture_intermediates=True,
                          mutable=["intermediates"])
  inter = state["intermediates"]
  return {i: np.asarray(jnp.mean(inter[f"blocks_{i}"]["__call__"][0],
                                 axis=(1, 2)))
          for i in range(len(enl.block_specs(module.width, module.depth)))}


def _close(features, reference):
  """float32 agreement up to operation order (jit fusion differs)."""
  reference = np.asarray(reference)
  np.testing.assert_allclose(np.asarray(features), reference, rtol=1e-4,
                             atol=1e-5 * float(np.abs(reference).max()))


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_stage_bookkeeping(name):
  config = enl.CONFIGS[name]
  ends = enl.stage_ends(config.width, config.depth)
  assert len(ends) == enl.NUM_STAGES
  assert ends[-1] == len(enl.block_specs(config.width, config.depth))
  specs = enl.block_specs(config.width, config.depth)
  # A stage's last block outputs the stage's channels; the next one changes
  # them (every stage boundary changes the width in EfficientNet-Lite).
  channels = enl.stage_channels(config.width)
  for stage, end in enumerate(ends):
    assert specs[end - 1][1] == channels[stage]
    if end < len(specs):
      assert specs[end][0] == channels[stage]


@pytest.mark.parametrize("stage", [1, 4, 6, 7])
def test_cut_features_are_the_stage_activations_of_the_whole_network(stage):
  """Random weights: the cut's features equal the pooled output of the last
  block of that stage in the uncut network (with the same variables)."""
  module = enl.EfficientNetLite.from_name("efficientnet_lite1")
  variables = enl.random_init(module, seed=3)
  x = _images()
  pooled = _pooled_block_outputs(module, variables, x)
  cut = module.clone(stop_after_stage=stage)
  cut_vars = enl.truncate_variables(variables, cut)
  features, logits = jax.jit(cut.apply)(cut_vars, x)
  assert logits is None
  end = enl.stage_ends(module.width, module.depth)[stage - 1]
  _close(features, pooled[end - 1])
  kept = set(cut_vars["params"])
  assert f"blocks_{end - 1}" in kept and f"blocks_{end}" not in kept
  assert "conv_head" not in kept and "fc" not in kept


@pytest.mark.slow
def test_named_cut_uses_the_pretrained_weights():
  full = backbones.get("efficientnet_lite0", dtype="float32")
  cut = backbones.get("efficientnet_lite0:stage6", dtype="float32")
  assert cut.name == "efficientnet_lite0:stage6"
  assert cut.feature_dim == enl.stage_channels(1.0)[5] == 192
  assert cut.num_source_classes is None
  assert cut.cache_identity() != full.cache_identity()
  assert cut.weights_id == full.weights_id
  x = _images(size=96)
  module = enl.EfficientNetLite.from_name("efficientnet_lite0")
  pooled = _pooled_block_outputs(module, full.params, x)
  end = enl.stage_ends(1.0, 1.0)[5]
  features, logits = cut(x)
  assert logits is None and features.shape == (2, 192)
  _close(features, pooled[end - 1])


def test_random_cut_control():
  bb = backbones.get("efficientnet_lite0:stage5@random", seed=1)
  assert bb.name == "efficientnet_lite0:stage5@random"   # as written
  assert bb.weights_id == "random-init:1" and "seed 1" in bb.description
  other = backbones.get("efficientnet_lite0:stage5@random", seed=2)
  assert other.name == bb.name and other.weights_id != bb.weights_id
  assert bb.feature_dim == 112 and bb.num_source_classes is None
  features, logits = bb(_images(size=32))
  assert features.shape == (2, 112) and logits is None
  assert np.all(np.isfinite(np.asarray(features)))


@pytest.mark.parametrize("bad", ["efficientnet_lite0:stage0",
                                 "efficientnet_lite0:stage8",
                                 "efficientnet_lite1:head",
                                 "efficientnet_lite1:"])
def test_unknown_cut_lists_the_valid_ones(bad):
  with pytest.raises(ValueError, match=r"unknown cut .*stage1, stage2, .*"
                                       r"stage7"):
    backbones.get(bad)


def test_cut_of_an_unknown_backbone_is_an_unknown_backbone():
  with pytest.raises(ValueError, match="unknown backbone 'resnet:stage6'"):
    backbones.get("resnet:stage6")


def test_stop_after_stage_is_checked():
  module = enl.EfficientNetLite.from_name("efficientnet_lite0",
                                          stop_after_stage=9)
  with pytest.raises(ValueError, match="stop_after_stage must be None or "
                                       "1..7"):
    module.init(jax.random.PRNGKey(0), _images(size=32))


def _cell_means(images, grid):
  b, h, w, c = images.shape
  return images.reshape(b, grid, h // grid, grid, w // grid, c).mean(
      axis=(2, 4)).reshape(b, -1)


@pytest.mark.parametrize("size", [32, 112])
def test_pixels_are_cell_averages(size):
  bb = backbones.get("pixels")
  assert bb.feature_dim == 16 * 16 * 3 and bb.num_source_classes is None
  x = np.asarray(_images(size=size))
  features, logits = bb(jnp.asarray(x))
  assert logits is None
  np.testing.assert_allclose(np.asarray(features), _cell_means(x, 16),
                             rtol=1e-5, atol=1e-6)


def test_pixels_any_size_and_resized():
  bb = backbones.resized(backbones.get("pixels"), 28)
  assert bb.preprocessing.image_size == 28
  features, _ = bb(_images(size=28))
  assert features.shape == (2, 768)
  constant = jnp.full((1, 28, 28, 3), 0.25)
  np.testing.assert_allclose(np.asarray(bb(constant)[0]), 0.25, atol=1e-6)


def test_pixels_has_no_random_control():
  with pytest.raises(ValueError, match="no weights to randomise"):
    backbones.get("pixels@random")


def test_bench_zoo_names():
  pool = rank_lib.model_names("bench_all", "digits")
  names = rank_lib.model_names("bench", "digits")
  assert len(names) >= 12 and len(set(names)) == len(names)
  assert len(set(pool)) == len(pool) and set(names) <= set(pool)
  assert "pixels" in names and "efficientnet_lite1:stage6" in pool
  assert any(":stage" in n for n in names)
  for name in pool:
    base, _ = backbones.parse_name(name)
    if base != "pixels":
      arch, _ = backbones.split_cut(base)
      assert arch in backbones.OFFLINE_ZOO
  assert rank_lib.model_names("auto", "digits") == list(
      rank_lib.ZOOS["offline"])


@pytest.mark.parametrize("name", ["efficientnet_lite0:stage2@random",
                                  "pixels"])
def test_a_cut_and_the_pixel_baseline_fine_tune(name):
  bb = backbones.get(name, dtype="float32")
  bb = backbones.resized(bb, 32)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(16, 32, 32, 3)).astype(np.float32)
  y = np.arange(16) % 2
  batches = lambda: iter([(x[:8], y[:8]), (x[8:], y[8:])])
  config = finetune.FinetuneConfig(mode="full", steps=3, batch_size=8,
                                   learning_rate=0.01, weight_decay=1e-4)
  result = finetune.train_and_evaluate(bb, batches, batches, 2, config,
                                       progress=False)
  assert 0.0 <= result["test_accuracy"] <= 1.0
  assert np.isfinite(result["final_train_loss"])
