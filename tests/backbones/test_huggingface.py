"""Tests of :mod:`sfda_jax.backbones.huggingface` on tiny offline checkpoints.

Every family gets a tiny config whose Flax model is saved with
``save_pretrained`` (random weights drawn with NumPy, so no init has to be
compiled) next to a small image processor, then loaded back with
:func:`load_hf`. Checkpoints are built once per module.
"""

import socket
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers as tf
from flax.core import unfreeze
from flax.traverse_util import flatten_dict
from flax.traverse_util import unflatten_dict

from sfda_jax.backbones import huggingface as hf
from sfda_jax.backbones.base import Preprocessing

from conftest import slow_for

IMAGENET = dict(mean=hf.IMAGENET_MEAN, std=hf.IMAGENET_STD)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TINY_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, image_size=32, patch_size=8)


def _fake_variables(shape_tree, seed):
  """Random variables shaped like ``shape_tree`` (BatchNorm variances > 0)."""
  rng = np.random.default_rng(seed)
  flat = {}
  for path, leaf in flatten_dict(unfreeze(shape_tree)).items():
    shape = tuple(leaf.shape)
    if path[-1] == "var":
      value = rng.uniform(0.5, 1.5, shape)
    elif path[-1] == "scale":
      value = 1.0 + 0.1 * rng.normal(size=shape)
    elif len(shape) >= 2:
      value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
    else:
      value = 0.1 * rng.normal(size=shape)
    flat[path] = value.astype(leaf.dtype)
  return unflatten_dict(flat)


def _cases():
  """name -> (config, Flax class, image processor or None, expected rule,
  feature dim, number of source classes or None)."""
  return {
      "resnet": (
          tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16],
                          depths=[1, 1], num_labels=5,
                          architectures=["ResNetForImageClassification"]),
          tf.FlaxResNetForImageClassification,
          tf.ConvNextImageProcessor(size={"shortest_edge": 32},
                                    crop_pct=0.875, resample=3,
                                    image_mean=list(hf.IMAGENET_MEAN),
                                    image_std=list(hf.IMAGENET_STD)),
          Preprocessing(32, 36, interpolation="bicubic", **IMAGENET), 16, 5),
      "vit": (
          tf.ViTConfig(**TINY_VIT, num_labels=5,
                       architectures=["ViTForImageClassification"]),
          tf.FlaxViTForImageClassification,
          tf.ViTImageProcessor(size={"height": 32, "width": 32}),
          Preprocessing(32, 32, (0.5,) * 3, (0.5,) * 3, "bilinear",
                        squash=True), 32, 5),
      "beit": (
          tf.BeitConfig(**TINY_VIT, use_mean_pooling=True,
                        use_relative_position_bias=True, num_labels=4,
                        architectures=["BeitForImageClassification"]),
          tf.FlaxBeitForImageClassification,
          tf.BeitImageProcessor(size={"height": 32, "width": 32},
                                do_center_crop=False, resample=2),
          Preprocessing(32, 32, (0.5,) * 3, (0.5,) * 3, "bilinear",
                        squash=True), 32, 4),
      "regnet": (  # No image processor: fallback rule.
          tf.RegNetConfig(embedding_size=8, hidden_sizes=[8, 16],
                          depths=[1, 1], groups_width=4,
                          architectures=["RegNetModel"]),
          tf.FlaxRegNetModel, None,
          Preprocessing(224, 224, **IMAGENET), 16, None),
      "dinov2": (
          tf.Dinov2Config(hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, mlp_ratio=2, image_size=32,
                          patch_size=8, num_labels=3,
                          architectures=["Dinov2ForImageClassification"]),
          tf.FlaxDinov2ForImageClassification,
          tf.BitImageProcessor(size={"shortest_edge": 40},
                               crop_size={"height": 32, "width": 32},
                               image_mean=list(hf.IMAGENET_MEAN),
                               image_std=list(hf.IMAGENET_STD)),
          Preprocessing(32, 40, interpolation="bicubic", **IMAGENET), 64, 3),
      "clip_vision": (
          tf.CLIPVisionConfig(**TINY_VIT, architectures=["CLIPVisionModel"]),
          tf.FlaxCLIPVisionModel,
          tf.CLIPImageProcessor(size={"shortest_edge": 32},
                                crop_size={"height": 32, "width": 32}),
          Preprocessing(32, 32, CLIP_MEAN, CLIP_STD, "bicubic"), 32, None),
      "clip": (
          tf.CLIPConfig(
              text_config=dict(hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=32,
                               vocab_size=64, max_position_embeddings=16),
              vision_config=TINY_VIT, projection_dim=16,
              architectures=["CLIPModel"]),
          tf.FlaxCLIPModel,
          tf.CLIPImageProcessor(size={"shortest_edge": 32},
                                crop_size={"height": 32, "width": 32}),
          Preprocessing(32, 32, CLIP_MEAN, CLIP_STD, "bicubic"), 32, None),
  }


CASES = _cases()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """name -> (directory, HF model wrapper, saved variables)."""
  root = tmp_path_factory.mktemp("hf")
  out = {}
  for seed, (name, case) in enumerate(CASES.items()):
    config, cls, processor = case[:3]
    kwargs = {} if name == "clip" else {"input_shape": (1, 32, 32, 3)}
    model = cls(config, _do_init=False, **kwargs)
    params = _fake_variables(model.params_shape_tree, seed)
    path = root / name
    model.save_pretrained(path, params=params)
    if processor is not None:
      processor.save_pretrained(path)
    out[name] = (str(path), model, params)
  return out


@pytest.fixture(scope="module")
def loaded(checkpoints):
  return {name: hf.load_hf(path) for name, (path, _, _) in
          checkpoints.items()}


def _images(seed=0):
  return jax.random.normal(jax.random.PRNGKey(seed), (2, 32, 32, 3))


@pytest.mark.parametrize("name", slow_for(
    list(CASES), set(CASES) - {"resnet", "vit"}))
def test_family(name, checkpoints, loaded):
  _, model, params = checkpoints[name]
  rule, dim, num_classes = CASES[name][3:]
  backbone = loaded[name]
  assert backbone.preprocessing == rule
  assert backbone.feature_dim == dim
  assert backbone.num_source_classes == num_classes
  assert backbone.weights_id.startswith("sha256:")
  assert backbone.compute_dtype == "float32"
  assert backbone.name.startswith("hf:")
  features, logits = backbone(_images())
  assert features.shape == (2, dim) and features.dtype == jnp.float32
  assert np.isfinite(np.asarray(features)).all()
  assert float(np.std(np.asarray(features))) > 1e-3
  if num_classes is None:
    assert logits is None
    return
  # The HF model's own logits (NCHW input through its wrapper).
  reference = jax.jit(lambda p, x: model(
      jnp.transpose(x, (0, 3, 1, 2)), params=p).logits)(params, _images())
  assert logits.shape == (2, num_classes)
  np.testing.assert_allclose(logits, reference, atol=1e-5, rtol=1e-5)
  # Features through the classifier weights reproduce them.
  head = params["params"]["classifier"]["1"] if "batch_stats" in params \
      else params["classifier"]
  manual = (np.asarray(features, np.float64) @ np.asarray(head["kernel"],
                                                           np.float64)
            + np.asarray(head["bias"], np.float64))
  np.testing.assert_allclose(manual, reference, atol=1e-5, rtol=1e-5)


def test_clip_features_are_pre_projection(checkpoints, loaded):
  """Vision tower pooler_output: the input of CLIP's visual projection."""
  _, model, params = checkpoints["clip"]
  features, _ = loaded["clip"](_images())
  embeds = jax.jit(lambda p, x: model.get_image_features(
      jnp.transpose(x, (0, 3, 1, 2)), params=p))(params, _images())
  projected = features @ params["visual_projection"]["kernel"]
  np.testing.assert_allclose(projected, embeds, atol=1e-5, rtol=1e-5)
  # A vision-only and a full checkpoint describe the same pooling.
  assert "post-layernorm CLS" in loaded["clip"].description
  assert "post-layernorm CLS" in loaded["clip_vision"].description


def test_fallback_preprocessing_warns(checkpoints, caplog):
  with caplog.at_level("WARNING"):
    backbone = hf.load_hf(checkpoints["regnet"][0])
  assert "no image processor config" in caplog.text
  assert backbone.preprocessing == CASES["regnet"][3]


def test_bfloat16_close_to_float32(checkpoints, loaded):
  backbone = hf.load_hf(checkpoints["vit"][0], dtype="bfloat16")
  assert backbone.compute_dtype == "bfloat16"
  assert backbone.weights_id == loaded["vit"].weights_id
  leaves = jax.tree_util.tree_leaves(backbone.params)
  assert all(leaf.dtype == jnp.bfloat16 for leaf in leaves)
  features, logits = backbone(_images())
  assert features.dtype == jnp.float32 and logits.dtype == jnp.float32
  want_f, want_l = loaded["vit"](_images())
  scale = float(np.abs(np.asarray(want_f)).max())
  np.testing.assert_allclose(features, want_f, atol=0.05 * scale)
  np.testing.assert_allclose(logits, want_l,
                             atol=0.05 * float(np.abs(want_l).max()))


def test_random_init(checkpoints, loaded):
  path = checkpoints["dinov2"][0]
  first = hf.load_hf(path, random_init=True, seed=0)
  again = hf.load_hf(path, random_init=True, seed=0)
  other = hf.load_hf(path, random_init=True, seed=1)
  assert first.weights_id == "random-init:0"
  assert other.weights_id == "random-init:1"
  assert first.feature_dim == loaded["dinov2"].feature_dim
  assert first.num_source_classes == 3
  assert first.preprocessing == loaded["dinov2"].preprocessing

  def flat(backbone):
    return {k: np.asarray(v) for k, v in flatten_dict(backbone.params).items()}

  a, b, c = flat(first), flat(again), flat(other)
  assert a.keys() == b.keys() == c.keys() == flat(loaded["dinov2"]).keys()
  assert all(np.array_equal(a[k], b[k]) for k in a)
  assert not all(np.array_equal(a[k], c[k]) for k in a)
  random_features, _ = first(_images())
  features, _ = loaded["dinov2"](_images())
  assert np.isfinite(np.asarray(random_features)).all()
  assert not np.allclose(random_features, features)


def test_weights_id_stable_and_content_based(checkpoints, loaded, tmp_path):
  path, model, params = checkpoints["dinov2"]
  assert hf.load_hf(path).weights_id == loaded["dinov2"].weights_id
  # Same weights elsewhere: same id; changed weights: another id.
  model.save_pretrained(tmp_path / "copy", params=params)
  assert hf.load_hf(str(tmp_path / "copy")).weights_id == \
      loaded["dinov2"].weights_id
  changed = jax.tree_util.tree_map(lambda x: x * 1.01, params)
  model.save_pretrained(tmp_path / "changed", params=changed)
  assert hf.load_hf(str(tmp_path / "changed")).weights_id != \
      loaded["dinov2"].weights_id
  assert len({b.weights_id for b in loaded.values()}) == len(loaded)


def _pytorch_state(params):
  """Flax variables -> PyTorch-named arrays (inverse of transformers'
  renaming: Linear ``kernel.T``, Conv ``kernel`` HWIO -> OIHW, LayerNorm
  ``scale`` -> ``weight``). Non-BatchNorm models only."""
  state = {}
  for path, value in flatten_dict(unfreeze(params)).items():
    *head, last = path
    value = np.asarray(value)
    if last == "kernel":
      value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
      last = "weight"
    elif last == "scale":
      last = "weight"
    state[".".join(head + [last])] = np.ascontiguousarray(value)
  return state


def test_pytorch_safetensors_without_torch(checkpoints, loaded, tmp_path):
  """DINOv2 hub checkpoints hold only PyTorch-format model.safetensors."""
  safetensors_numpy = pytest.importorskip("safetensors.numpy")
  _, model, params = checkpoints["dinov2"]
  model.config.save_pretrained(tmp_path)
  CASES["dinov2"][2].save_pretrained(tmp_path)
  state = _pytorch_state(params)
  assert "dinov2.embeddings.patch_embeddings.projection.weight" in state
  safetensors_numpy.save_file(state, str(tmp_path / "model.safetensors"),
                              metadata={"format": "pt"})
  backbone = hf.load_hf(str(tmp_path))
  assert backbone.weights_id == loaded["dinov2"].weights_id
  features, logits = backbone(_images())
  want_features, want_logits = loaded["dinov2"](_images())
  np.testing.assert_allclose(features, want_features, atol=1e-6)
  np.testing.assert_allclose(logits, want_logits, atol=1e-6)


def _hub_reachable():
  try:
    with socket.create_connection(("huggingface.co", 443), timeout=2):
      return True
  except OSError:
    return False


def test_offline_hub_id_fails_fast_with_help():
  if _hub_reachable():
    pytest.skip("this machine reaches the HuggingFace hub")
  start = time.perf_counter()
  with pytest.raises(OSError) as info:
    hf.load_hf("google/vit-base-patch16-224")
  assert time.perf_counter() - start < 10
  assert isinstance(info.value, hf.HubUnreachableError)
  message = str(info.value)
  assert "unreachable" in message
  assert "google/vit-base-patch16-224" in message
  assert "huggingface-cli download" in message
  assert "save_pretrained" in message


def test_bad_inputs(tmp_path):
  with pytest.raises(ValueError, match="dtype"):
    hf.load_hf(str(tmp_path), dtype="float16")
  with pytest.raises(FileNotFoundError):
    hf.load_hf(str(tmp_path / "missing" / "model"))
  tf.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=8).save_pretrained(tmp_path / "bert")
  with pytest.raises(ValueError, match="not supported"):
    hf.load_hf(str(tmp_path / "bert"))


def test_pytorch_only_weights_without_torch(tmp_path):
  try:
    import torch  # noqa: F401
    pytest.skip("torch is installed")
  except ImportError:
    pass
  tf.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=8).save_pretrained(tmp_path)
  (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
  with pytest.raises(hf.PyTorchWeightsError, match="torch"):
    hf.load_hf(str(tmp_path))


def test_images_must_be_nhwc(loaded):
  with pytest.raises(ValueError, match="NHWC"):
    loaded["vit"](jnp.zeros((2, 3, 32, 32)))


@pytest.mark.parametrize("processor, config, want", [
    # BEiT class default: squash to 256, crop 224 -> shorter side + crop.
    (tf.BeitImageProcessor(), tf.BeitConfig(),
     Preprocessing(224, 256, (0.5,) * 3, (0.5,) * 3, "bicubic")),
    # ConvNeXt rule at >= 384: squash, no crop.
    (tf.ConvNextImageProcessor(size={"shortest_edge": 384}),
     tf.ResNetConfig(),
     Preprocessing(384, 384, (0.5,) * 3, (0.5,) * 3, "bilinear", True)),
    # ConvNeXt rule below 384: resize to int(224 / 0.875) = 256, crop 224.
    (tf.ConvNextImageProcessor(size={"shortest_edge": 224}, resample=3),
     tf.ResNetConfig(),
     Preprocessing(224, 256, (0.5,) * 3, (0.5,) * 3, "bicubic")),
    # No normalisation, no rescale: raw 0..255 pixels.
    (tf.ViTImageProcessor(do_normalize=False, do_rescale=False),
     tf.ViTConfig(),
     Preprocessing(224, 224, (0.0,) * 3, (1 / 255,) * 3, "bilinear", True)),
])
def test_preprocessing_rules(processor, config, want):
  got = hf.preprocessing_from_image_processor(processor, config)
  assert got.image_size == want.image_size
  assert got.resize_size == want.resize_size
  assert got.squash == want.squash
  assert got.interpolation == want.interpolation
  np.testing.assert_allclose(got.mean, want.mean)
  np.testing.assert_allclose(got.std, want.std)
