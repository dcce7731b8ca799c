"""HuggingFace Flax vision models as feature-extraction backbones.

:func:`load_hf` turns a HuggingFace checkpoint (a hub id such as
``microsoft/resnet-50`` or a local directory written by ``save_pretrained``)
into a :class:`~sfda_jax.backbones.base.Backbone`. Six families are supported
(``SUPPORTED_MODEL_TYPES``, chosen by ``config.model_type``); each checkpoint
whose ``config.architectures`` names a ``...ForImageClassification`` class is
loaded with the matching Flax classifier class and also returns its source
logits ``[B, Z]`` (``Z = config.num_labels``); any other checkpoint is loaded
as the bare model and returns ``logits=None``.

Features are the representation the family's own classifier reads, i.e. the
input of the final linear layer (checked against
``transformers/models/*/modeling_flax_*.py`` of transformers 4.57; the test
suite feeds the features through the classifier weights and reproduces the
model's logits):

=============  =============================================================
family         features ``[B, D]``
=============  =============================================================
ResNet,        ``pooler_output`` (global average pool of the last stage,
RegNet         ``[B, C, 1, 1]`` flattened to ``[B, C]``): the classifier does
               ``self.classifier(pooled_output[:, :, 0, 0])``.
ViT            CLS token of the final, layer-normed hidden state
               ``last_hidden_state[:, 0]``: ``logits = self.classifier(
               hidden_states[:, 0, :])``. The bare model's tanh ``pooler`` is
               NOT used (the classifier is built with
               ``add_pooling_layer=False``).
BEiT           ``pooler_output``: with ``use_mean_pooling`` the pooler's
               ``self.layernorm(jnp.mean(patch_tokens, axis=1))`` over the
               patch tokens ``hidden_states[:, 1:, :]``, else the layer-normed
               CLS token ``hidden_states[:, 0]``; ``logits =
               self.classifier(pooled_output)``.
DINOv2         ``concat([CLS, mean(patch tokens)])`` of the layer-normed last
               hidden state, ``D = 2 * hidden_size``: ``linear_input =
               jnp.concatenate([cls_token, patch_tokens.mean(axis=1)],
               axis=-1)`` (as in the PyTorch ``Dinov2ForImageClassification``).
               Register tokens do not exist in this family.
CLIP vision    ``pooler_output`` = ``post_layernorm(last_hidden_state[:, 0,
               :])``, before ``visual_projection`` (``hidden_size`` wide, not
               ``projection_dim``). A full CLIP checkpoint loads only its
               vision tower.
=============  =============================================================

Preprocessing comes from the checkpoint's own image processor
(``preprocessor_config.json`` read by ``AutoImageProcessor``), see
:func:`preprocessing_from_image_processor`; without one, the model config's
``image_size`` with ImageNet mean/std is used and a warning is logged.

The HF wrapper classes take ``pixel_values`` NCHW and transpose them to NHWC
before calling their Flax module; :func:`load_hf` calls the Flax module
directly (``module.apply(..., method=...)``), so the pipeline's NHWC images go
in unchanged, and features and logits come from one forward pass.

Weights: Flax ``flax_model.msgpack`` loads without a random init
(``_do_init=False``); PyTorch-format ``model.safetensors`` (e.g. the DINOv2
hub checkpoints) is converted by transformers' own renaming code without
torch and without a random init; PyTorch ``pytorch_model.bin`` needs torch
(``from_pt=True``), else :class:`PyTorchWeightsError` says how to convert.

``weights_id`` is ``"sha256:<32 hex>"``: SHA-256 over the model config
(minus paths, versions and label names) and every loaded variable (sorted
path, dtype, shape, raw bytes) as loaded, before any bfloat16 cast. It is
computed for local directories and hub ids alike (the resolved hub commit,
when known, is only reported in ``description``), so two copies of one
checkpoint, or its Flax and PyTorch files, share cache entries while changed
weights never do. Cost: 0.09 s for ResNet-50 (25.6 M parameters, 102 MB) on
one CPU core. ``random_init=True`` gives ``"random-init:<seed>"``: the
model's own ``init_weights`` under ``jax.jit`` with the (backend-independent)
threefry ``PRNGKey(seed)``; compiling it is the slow part on CPU (about 40 s
for ResNet-50 on a busy 2-core machine), paid once per architecture and
process, as jitted functions are shared between backbones of one
architecture and dtype.

Offline use: a hub id is first looked up in the local HF cache
(``local_files_only=True``); on a miss the hub is probed (``HF_HUB_OFFLINE``
or a 3 s TCP connect to the endpoint) and, when unreachable, a
:class:`HubUnreachableError` says how to provide the weights as a directory.

Example:
  A tiny ViT saved with ``save_pretrained`` stands in for a real checkpoint
  directory or hub id (e.g. ``"google/vit-base-patch16-224"``):

  >>> import tempfile, transformers
  >>> config = transformers.ViTConfig(
  ...     hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
  ...     intermediate_size=32, image_size=32, patch_size=8, num_labels=5)
  >>> path = tempfile.mkdtemp()
  >>> transformers.FlaxViTForImageClassification(config).save_pretrained(path)
  >>> _ = transformers.ViTImageProcessor(
  ...     size={"height": 32, "width": 32}).save_pretrained(path)
  >>> backbone = load_hf(path)
  >>> p = backbone.preprocessing
  >>> p.image_size, p.squash, p.mean, p.std
  (32, True, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
  >>> features, logits = backbone(np.zeros((2, 32, 32, 3), np.float32))
  >>> features.shape, logits.shape
  ((2, 16), (2, 5))
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import time
import types
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax.core import unfreeze
from huggingface_hub import constants as hub_constants
from flax.traverse_util import flatten_dict
from flax.traverse_util import unflatten_dict

from sfda_jax import network
from sfda_jax.backbones.base import Backbone
from sfda_jax.data.preprocessing import Preprocessing

__all__ = [
    "HubUnreachableError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PyTorchWeightsError",
    "SUPPORTED_MODEL_TYPES",
    "load_hf",
    "preprocessing_from_image_processor",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROBE_TIMEOUT_S = network.PROBE_TIMEOUT_S
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# PIL resampling codes: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box,
# 5 hamming. Only bilinear and bicubic exist in the input pipeline.
_RESAMPLE = {2: "bilinear", 3: "bicubic"}
_RESAMPLE_APPROX = {0: "bilinear", 1: "bicubic", 4: "bilinear",
                    5: "bilinear"}
# Config keys that do not change a model's outputs.
_VOLATILE_CONFIG_KEYS = frozenset({
    "transformers_version", "torch_dtype", "dtype", "architectures",
    "id2label", "label2id"})


class HubUnreachableError(OSError):
  """A hub id was given, it is not cached locally and the hub is unreachable."""


class PyTorchWeightsError(OSError):
  """The checkpoint holds only PyTorch ``.bin`` weights and torch is absent."""


def _pool_spatial(outputs: Any) -> jax.Array:
  """ResNet/RegNet: ``pooler_output [B, C, 1, 1]`` -> ``[B, C]``."""
  pooled = outputs.pooler_output
  return pooled.reshape(pooled.shape[0], -1)


def _pool_cls(outputs: Any) -> jax.Array:
  """ViT: CLS token of the layer-normed last hidden state, ``[B, D]``."""
  return outputs.last_hidden_state[:, 0]


def _pool_pooler(outputs: Any) -> jax.Array:
  """BEiT / CLIP vision: the module's own ``pooler_output [B, D]``."""
  return outputs.pooler_output


def _pool_cls_and_mean(outputs: Any) -> jax.Array:
  """DINOv2: ``concat([CLS, mean of patch tokens])``, ``[B, 2 D]``."""
  hidden = outputs.last_hidden_state
  return jnp.concatenate([hidden[:, 0], hidden[:, 1:].mean(axis=1)], axis=-1)


@dataclasses.dataclass(frozen=True)
class _Family:
  """How one model family is loaded and pooled.

  Attributes:
    label: display name.
    base_class: ``transformers`` Flax class of the bare model.
    head_class: Flax ``...ForImageClassification`` class, or ``None``.
    prefix: attribute of the backbone submodule inside the head module.
    pool: base-module outputs -> features ``[B, D]``.
    pooling: one-line description of ``pool``.
    fixed_size: position embeddings tied to ``config.image_size``.
  """
  label: str
  base_class: str
  head_class: str | None
  prefix: str
  pool: Callable[[Any], jax.Array]
  pooling: str
  fixed_size: bool


_FAMILIES: dict[str, _Family] = {
    "resnet": _Family(
        "ResNet", "FlaxResNetModel", "FlaxResNetForImageClassification",
        "resnet", _pool_spatial, "global average pool of the last stage",
        fixed_size=False),
    "regnet": _Family(
        "RegNet", "FlaxRegNetModel", "FlaxRegNetForImageClassification",
        "regnet", _pool_spatial, "global average pool of the last stage",
        fixed_size=False),
    "vit": _Family(
        "ViT", "FlaxViTModel", "FlaxViTForImageClassification", "vit",
        _pool_cls, "CLS token of the final layer-normed hidden state",
        fixed_size=True),
    "beit": _Family(
        "BEiT", "FlaxBeitModel", "FlaxBeitForImageClassification", "beit",
        _pool_pooler, "", fixed_size=True),  # pooling set per config.
    "dinov2": _Family(
        "DINOv2", "FlaxDinov2Model", "FlaxDinov2ForImageClassification",
        "dinov2", _pool_cls_and_mean,
        "concat(CLS, mean of patch tokens) of the final layer-normed hidden "
        "state", fixed_size=False),
    "clip": _Family(
        "CLIP vision", "FlaxCLIPVisionModel", None, "vision_model",
        _pool_pooler, "pooler_output = post-layernorm CLS token, before "
        "visual_projection", fixed_size=True),
    "clip_vision_model": _Family(
        "CLIP vision", "FlaxCLIPVisionModel", None, "vision_model",
        _pool_pooler, "pooler_output = post-layernorm CLS token, before "
        "visual_projection", fixed_size=True),
}

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(_FAMILIES))


def _pooling_description(model_type: str, config: Any) -> str:
  if model_type == "beit":
    if getattr(config, "use_mean_pooling", True):
      return "layernorm(mean of patch tokens) (BEiT pooler, use_mean_pooling)"
    return "CLS token of the final layer-normed hidden state"
  return _FAMILIES[model_type].pooling


# -----------------------------------------------------------------------------
# Preprocessing
# -----------------------------------------------------------------------------


def _resample_name(resample: Any) -> str:
  code = int(getattr(resample, "value", resample) if resample is not None
             else 2)
  if code in _RESAMPLE:
    return _RESAMPLE[code]
  approx = _RESAMPLE_APPROX.get(code, "bilinear")
  logging.warning("Image processor resample=%d (PIL code) has no equivalent "
                  "in the input pipeline; using %s.", code, approx)
  return approx


def _square(size: Mapping[str, int], what: str) -> int:
  height, width = int(size["height"]), int(size["width"])
  if height != width:
    raise ValueError(f"non-square {what} {height}x{width} is not supported: "
                     "backbones take square inputs.")
  return height


def preprocessing_from_image_processor(processor: Any,
                                       config: Any) -> Preprocessing:
  """Reads a HuggingFace image processor's resize/crop/normalise rule.

  Rules (those of the slow processors in transformers 4.57):
    * ``size={"height": h, "width": h}`` without centre crop: squash-resize to
      ``h`` (ViT, BEiT checkpoints). With a centre crop to ``c < h`` (the BEiT
      class default) the squash-then-crop is approximated by a shorter-side
      resize to ``h`` + centre crop ``c`` (identical on square images); a
      warning says so.
    * ``size={"shortest_edge": s}`` with ``crop_pct`` (ConvNeXt processor,
      used by ResNet/RegNet): ``s < 384`` -> resize shorter side to
      ``int(s / crop_pct)`` then crop ``s``; ``s >= 384`` -> squash to ``s``.
    * ``size={"shortest_edge": s}`` + centre crop ``c`` (CLIP, BiT/DINOv2):
      resize shorter side to ``s``, crop ``c``.
    * ``image_mean/std`` (0/1 without ``do_normalize``), rescaled so that
      ``(pixel / 255 - mean) / std`` equals the processor's
      ``(pixel * rescale_factor - image_mean) / image_std``.
    * ``resample``: 2 -> bilinear, 3 -> bicubic (others approximated).

  Args:
    processor: an image processor instance (e.g. from
      ``AutoImageProcessor.from_pretrained``).
    config: the vision model config (for ``image_size`` when the processor
      does not resize).

  Returns:
    The :class:`Preprocessing` rule.

  Raises:
    ValueError: a non-square target size or an unknown ``size`` layout.
  """
  size = dict(getattr(processor, "size", None) or {})
  do_resize = bool(getattr(processor, "do_resize", True))
  do_crop = bool(getattr(processor, "do_center_crop", False))
  crop = dict(getattr(processor, "crop_size", None) or {})
  crop_pct = getattr(processor, "crop_pct", None)
  crop_side = _square(crop, "crop_size") if do_crop and crop else None
  squash = False

  if not do_resize:
    image_size = crop_side or int(getattr(config, "image_size", 224))
    resize_size = image_size
    logging.warning("Image processor does not resize; assuming inputs of "
                    "%d px (shorter-side resize + centre crop).", image_size)
  elif "height" in size and "width" in size:
    side = _square(size, "resize size")
    if crop_side is not None and crop_side < side:
      image_size, resize_size = crop_side, side
      logging.warning(
          "Image processor squash-resizes to %dx%d then centre-crops %d; "
          "approximated by a shorter-side resize to %d + centre crop "
          "(identical on square images).", side, side, crop_side, side)
    else:
      image_size = resize_size = side
      squash = True
  elif "shortest_edge" in size:
    edge = int(size["shortest_edge"])
    if crop_pct is not None and not do_crop:
      # ConvNextImageProcessor.resize.
      if edge < 384:
        image_size, resize_size = edge, int(edge / crop_pct)
      else:
        image_size = resize_size = edge
        squash = True
    else:
      image_size = crop_side if crop_side is not None else edge
      resize_size = max(edge, image_size)
      if crop_side is None:
        logging.warning("Image processor resizes the shorter side to %d "
                        "without cropping; a centre square crop is used.",
                        edge)
      elif crop_side > edge:
        logging.warning("Crop %d exceeds the resized shorter side %d (the "
                        "processor pads); resizing to %d instead.", crop_side,
                        edge, crop_side)
    if "longest_edge" in size:
      logging.warning("Image processor size %s: longest_edge is ignored.",
                      size)
  else:
    raise ValueError(f"unsupported image processor size {size!r}: expected "
                     "height/width or shortest_edge.")

  if getattr(processor, "do_normalize", True):
    mean = tuple(float(m) for m in processor.image_mean)
    std = tuple(float(s) for s in processor.image_std)
  else:
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
  factor = (float(getattr(processor, "rescale_factor", 1 / 255))
            if getattr(processor, "do_rescale", True) else 1.0)
  scale = 255.0 * factor  # pixel * factor = (pixel / 255) * scale.
  if not np.isclose(scale, 1.0, rtol=1e-6):
    mean = tuple(m / scale for m in mean)
    std = tuple(s / scale for s in std)
  if len(mean) == 1:
    mean, std = mean * 3, std * 3
  return Preprocessing(
      image_size=image_size, resize_size=resize_size, mean=mean, std=std,
      interpolation=_resample_name(getattr(processor, "resample", 2)),
      squash=squash)


def _fallback_preprocessing(config: Any, where: str) -> Preprocessing:
  image_size = int(getattr(config, "image_size", None) or 224)
  logging.warning(
      "%s has no image processor config (preprocessor_config.json); falling "
      "back to the model config's image_size=%d with ImageNet mean/std and a "
      "bilinear shorter-side resize + centre crop. Save the model's image "
      "processor next to it to use its own rule.", where, image_size)
  return Preprocessing(image_size=image_size, resize_size=image_size,
                       mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _fit_to_config(preprocessing: Preprocessing, config: Any,
                   family: _Family) -> Preprocessing:
  """Families with fixed position embeddings need ``config.image_size``."""
  want = getattr(config, "image_size", None)
  if not family.fixed_size or want is None or preprocessing.image_size == want:
    return preprocessing
  want = int(want)
  ratio = preprocessing.resize_size / preprocessing.image_size
  logging.warning("Image processor crops %d px but the %s model's position "
                  "embeddings need image_size=%d; using %d.",
                  preprocessing.image_size, family.label, want, want)
  return dataclasses.replace(preprocessing, image_size=want,
                             resize_size=max(want, int(round(want * ratio))))


# -----------------------------------------------------------------------------
# Hub access
# -----------------------------------------------------------------------------


def _looks_like_path(name: str) -> bool:
  return (name.startswith(("/", "./", "../", "~")) or os.sep + os.sep in name
          or name.count("/") > 1 or (os.sep != "/" and os.sep in name))


def _probe_hub(timeout: float = PROBE_TIMEOUT_S) -> str | None:
  """Returns ``None`` when the hub answers a TCP connect
  (:func:`sfda_jax.network.reachable`), else the reason."""
  from transformers.utils import is_offline_mode

  if hub_constants.HF_HUB_OFFLINE or is_offline_mode():
    return "HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set"
  endpoint = urllib.parse.urlparse(hub_constants.ENDPOINT)
  host = endpoint.hostname or "huggingface.co"
  port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
  ok, detail = network.reachable([(host, port)], timeout)
  return None if ok else detail


def _unreachable_message(name: str, reason: str) -> str:
  return (
      f"Cannot load HuggingFace model '{name}': the HuggingFace hub is "
      f"unreachable ({reason}), the model is not in the local HF cache "
      f"({hub_constants.HF_HUB_CACHE}) and no local directory '{name}' "
      "exists. Provide the weights locally: on a "
      f"machine with network run `huggingface-cli download {name} "
      f"--local-dir DIR` (or `FlaxAutoModel...from_pretrained('{name}')"
      ".save_pretrained(DIR)` and `AutoImageProcessor.from_pretrained("
      f"'{name}').save_pretrained(DIR)`), copy DIR to this machine and pass "
      "its path instead of the hub id (or fill the HF cache there and set "
      "HF_HOME).")


# -----------------------------------------------------------------------------
# Weights
# -----------------------------------------------------------------------------


def _strip_config(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _strip_config(v) for k, v in value.items()
            if not k.startswith("_") and k not in _VOLATILE_CONFIG_KEYS}
  return value


def _content_hash(variables: Mapping[str, Any], config: Any) -> str:
  """SHA-256 of the config and every variable (path, dtype, shape, bytes)."""
  start = time.perf_counter()
  digest = hashlib.sha256()
  digest.update(json.dumps(_strip_config(config.to_dict()), sort_keys=True,
                           default=str).encode())
  flat = flatten_dict(unfreeze(variables), sep="/")
  num_bytes = 0
  for path in sorted(flat):
    array = np.ascontiguousarray(np.asarray(flat[path]))
    digest.update(f"|{path}|{array.dtype.str}|{array.shape}|".encode())
    digest.update(array.reshape(-1).view(np.uint8))
    num_bytes += array.nbytes
  logging.info("Hashed %.1f MB of weights in %.2f s.", num_bytes / 1e6,
               time.perf_counter() - start)
  return "sha256:" + digest.hexdigest()[:32]


def _torch_available() -> bool:
  return importlib.util.find_spec("torch") is not None


def _from_pretrained(cls: Any, path: str, config: Any, compute_dtype: Any,
                     input_shape: tuple[int, ...],
                     hub_kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
  """``cls.from_pretrained`` returning ``(model, variables)``.

  Flax weights load without a random init (``_do_init=False``). PyTorch
  safetensors are converted by transformers without torch, but only into an
  initialised model; PyTorch ``.bin`` files need torch (``from_pt=True``).
  """
  kwargs = dict(config=config, dtype=compute_dtype, input_shape=input_shape,
                **hub_kwargs)
  try:
    return cls.from_pretrained(path, _do_init=False, **kwargs)
  except ValueError as err:
    if "_do_init" not in str(err):
      raise
    # transformers converts PyTorch safetensors only into an initialised
    # model (an eager random init first); convert them without one.
    logging.info("%s holds PyTorch safetensors; converting them to Flax.",
                 path)
    try:
      return _convert_pt_safetensors(cls, path, config, compute_dtype,
                                     input_shape, hub_kwargs)
    except (OSError, ValueError, KeyError) as convert_err:
      logging.warning("Direct conversion of %s failed (%s); using "
                      "transformers' own (slower) conversion.", path,
                      convert_err)
    model = cls.from_pretrained(path, **kwargs)
    return model, model.params
  except OSError as err:
    if "from_pt=True" not in str(err):
      raise
    if not _torch_available():
      raise PyTorchWeightsError(
          f"{path} has only PyTorch weights (pytorch_model.bin), and "
          "converting them to Flax needs torch, which is not installed. "
          "Either `pip install torch`, or convert once on a machine with "
          f"torch: `{cls.__name__}.from_pretrained(PATH, from_pt=True)"
          ".save_pretrained(DIR)` (writes flax_model.msgpack) and pass DIR."
      ) from err
    logging.info("%s has only PyTorch weights; converting with from_pt=True.",
                 path)
    model = cls.from_pretrained(path, from_pt=True, **kwargs)
    return model, model.params


def _convert_pt_safetensors(cls: Any, path: str, config: Any,
                            compute_dtype: Any, input_shape: tuple[int, ...],
                            hub_kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
  """PyTorch ``model.safetensors`` -> Flax variables, without a random init.

  transformers' converter reads only the shapes of ``flax_model.params`` (to
  rename and check weights), so the abstract ``params_shape_tree`` of an
  uninitialised model stands in for them. Needs no torch.
  """
  from safetensors import safe_open
  from transformers import modeling_flax_pytorch_utils as pt_utils
  from transformers.utils import SAFE_WEIGHTS_NAME
  from transformers.utils import cached_file

  if os.path.isdir(path):
    filename = os.path.join(path, SAFE_WEIGHTS_NAME)
  else:
    filename = cached_file(path, SAFE_WEIGHTS_NAME, **hub_kwargs)
  model = cls(config, input_shape=input_shape, dtype=compute_dtype,
              _do_init=False)
  with safe_open(filename, framework="numpy") as reader:
    state = {key: reader.get_tensor(key) for key in reader.keys()}
  shapes = unfreeze(model.params_shape_tree)
  stand_in = types.SimpleNamespace(params=shapes,
                                   base_model_prefix=cls.base_model_prefix)
  flat = flatten_dict(
      pt_utils.convert_pytorch_state_dict_to_flax(state, stand_in))
  required = set(flatten_dict(shapes))
  unused = sorted("/".join(k) for k in set(flat) - required)
  if unused:
    logging.info("Ignoring %d checkpoint weights the model does not use: %s",
                 len(unused), unused[:8])
  return model, unflatten_dict({k: v for k, v in flat.items()
                                if k in required})


def _complete(model: Any, variables: Any, family_key: str) -> dict[str, Any]:
  """Fills variables the checkpoint lacks but the features do not use."""
  variables = unfreeze(variables)
  flat = flatten_dict(variables)
  required = set(flatten_dict(unfreeze(model.params_shape_tree)))
  missing = required - set(flat)
  if not missing:
    return variables

  def harmless(key: tuple[str, ...]) -> bool:
    return "mask_token" in key or (family_key == "vit" and "pooler" in key)

  vital = sorted("/".join(k) for k in missing if not harmless(k))
  if vital:
    raise ValueError(f"the checkpoint lacks weights the features depend on: "
                     f"{vital[:8]}{' ...' if len(vital) > 8 else ''}")
  logging.info("Randomly initialising unused weights missing from the "
               "checkpoint: %s", sorted("/".join(k) for k in missing))
  fresh = flatten_dict(unfreeze(_random_variables(model, seed=0)))
  for key in missing:
    flat[key] = fresh[key]
  return unflatten_dict(flat)


def _random_variables(model: Any, seed: int) -> Any:
  init = _memo(("init", _architecture_key(model)),
               lambda: jax.jit(model.init_weights, static_argnums=1))
  return init(jax.random.PRNGKey(seed), tuple(model.input_shape))


def _as_variables(params: Mapping[str, Any]) -> dict[str, Any]:
  """HF keeps BatchNorm models as {params, batch_stats}, others bare."""
  params = unfreeze(params)
  if "params" in params and "batch_stats" in params:
    return params
  return {"params": params}


def _cast_params(variables: dict[str, Any], dtype: Any) -> dict[str, Any]:
  """Casts floating ``params`` to dtype; BatchNorm statistics to float32."""

  def cast(tree: Any, to: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x: x.astype(to) if (jnp.issubdtype(x.dtype, jnp.floating)
                                   and x.dtype != to) else x, tree)

  return {name: cast(tree, dtype if name == "params" else jnp.float32)
          for name, tree in variables.items()}


# -----------------------------------------------------------------------------
# Forward pass
# -----------------------------------------------------------------------------

# Jitted functions per architecture, so that reloading a model or building its
# random-init control reuses compiled code (Flax modules holding a HF config
# are not hashable, so they cannot be static jit arguments).
_MEMO: dict[tuple[Any, ...], Callable[..., Any]] = {}
_MEMO_SIZE = 64


def _architecture_key(model: Any) -> tuple[Any, ...]:
  """What fixes a HF Flax model's computation: class, config, dtype."""
  config = {k: v for k, v in model.config.to_dict().items()
            if k not in ("_name_or_path", "_commit_hash",
                         "transformers_version")}
  return (type(model).__name__, jnp.dtype(model.dtype).name,
          tuple(model.input_shape),
          json.dumps(config, sort_keys=True, default=str))


def _memo(key: tuple[Any, ...],
          build: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
  if key not in _MEMO:
    if len(_MEMO) >= _MEMO_SIZE:
      _MEMO.clear()
    _MEMO[key] = build()
  return _MEMO[key]



def _make_apply_fn(module: Any, family: _Family, has_head: bool) -> Callable:
  """The jitted ``(variables, images [B, H, W, 3]) -> (features, logits)``."""

  def forward(mod: Any, pixel_values: jax.Array) -> tuple[Any, Any]:
    if has_head:
      outputs = getattr(mod, family.prefix)(pixel_values, deterministic=True,
                                            return_dict=True)
      features = family.pool(outputs)
      return features, mod.classifier(features)
    outputs = mod(pixel_values, deterministic=True, return_dict=True)
    return family.pool(outputs), None

  @jax.jit
  def apply_fn(variables: Any,
               images: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images must be [B, H, W, 3] (NHWC), got shape "
                       f"{images.shape}.")
    # The Flax modules are NHWC (the HF wrappers transpose NCHW input to NHWC
    # before calling them), so the pipeline's images go in as they are.
    features, logits = module.apply(variables, images.astype(jnp.float32),
                                    method=forward)
    features = features.astype(jnp.float32)
    return features, (None if logits is None else logits.astype(jnp.float32))

  return apply_fn


# -----------------------------------------------------------------------------
# Public entry point
# -----------------------------------------------------------------------------


def _build(path: str, name: str, compute_dtype: Any, random_init: bool,
           seed: int, hub_kwargs: Mapping[str, Any],
           processor_required: bool) -> Backbone:
  """Loads config, image processor and weights from ``path``."""
  import transformers

  full_config = transformers.AutoConfig.from_pretrained(path, **hub_kwargs)
  model_type = full_config.model_type
  if model_type not in _FAMILIES:
    raise ValueError(f"{name}: model_type {model_type!r} is not supported; "
                     f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}.")
  family = _FAMILIES[model_type]
  config = (full_config.vision_config if model_type == "clip"
            else full_config)
  architectures = tuple(full_config.architectures or ())
  has_head = (family.head_class is not None
              and any(a.endswith("ForImageClassification")
                      for a in architectures)
              and getattr(config, "num_labels", 0) > 0)

  try:
    processor = transformers.AutoImageProcessor.from_pretrained(
        path, use_fast=False, **hub_kwargs)
  except (OSError, ValueError) as err:
    if processor_required:
      raise OSError(f"no image processor for {name}: {err}") from err
    logging.info("No image processor for %s: %s", name, err)
    preprocessing = _fallback_preprocessing(config, name)
  else:
    preprocessing = preprocessing_from_image_processor(processor, config)
  preprocessing = _fit_to_config(preprocessing, config, family)

  cls = getattr(transformers,
                family.head_class if has_head else family.base_class)
  side = (int(config.image_size) if family.fixed_size
          else preprocessing.image_size)
  input_shape = (1, side, side, 3)
  if random_init:
    model = cls(config, input_shape=input_shape, seed=seed,
                dtype=compute_dtype, _do_init=False)
    variables = _as_variables(_random_variables(model, seed))
    weights_id = f"random-init:{seed}"
  else:
    model, params = _from_pretrained(cls, path, config, compute_dtype,
                                     input_shape, hub_kwargs)
    # Hash what the checkpoint holds, not the unused fillers added next.
    weights_id = _content_hash(_as_variables(params), config)
    variables = _as_variables(_complete(model, params, model_type))
  device = jax.local_devices()[0]
  variables = jax.device_put(variables, device)
  # Weights stay float32 (even from a half-precision checkpoint) unless
  # bfloat16 is requested.
  variables = _cast_params(variables, compute_dtype)

  apply_fn = _memo(
      ("apply", model_type, has_head, _architecture_key(model)),
      lambda: _make_apply_fn(model.module, family, has_head))
  shapes = jax.eval_shape(apply_fn, variables,
                          jax.ShapeDtypeStruct(input_shape, jnp.float32))
  feature_dim = int(shapes[0].shape[-1])
  num_classes = None if shapes[1] is None else int(shapes[1].shape[-1])
  commit = getattr(full_config, "_commit_hash", None)
  description = (
      f"HF {family.label} {cls.__name__}: features [B, {feature_dim}] = "
      f"{_pooling_description(model_type, config)}; "
      + (f"source logits [B, {num_classes}]" if num_classes else
         "no classifier head")
      + f"; weights {weights_id}" + (f" (hub commit {commit})" if commit
                                     and not random_init else ""))
  logging.info("Loaded %s: %s", name, description)
  return Backbone(
      name=f"hf:{name}", preprocessing=preprocessing, feature_dim=feature_dim,
      num_source_classes=num_classes, weights_id=weights_id,
      apply_fn=apply_fn, params=variables,
      compute_dtype=str(jnp.dtype(compute_dtype)), description=description)


def load_hf(name_or_path: str, dtype: str = "float32",
            random_init: bool = False, seed: int = 0,
            revision: str | None = None) -> Backbone:
  """Loads a HuggingFace Flax vision model as a :class:`Backbone`.

  Args:
    name_or_path: a local directory written by ``save_pretrained`` (config,
      weights, ideally ``preprocessor_config.json``) or a hub id such as
      ``google/vit-base-patch16-224``. ``config.model_type`` must be one of
      ``SUPPORTED_MODEL_TYPES``.
    dtype: ``"float32"`` or ``"bfloat16"``: the compute dtype of the Flax
      module. With ``"bfloat16"`` the weights (not BatchNorm statistics) are
      also stored in bfloat16; features and logits are float32 either way.
    random_init: same architecture (from the config) with fresh weights drawn
      from ``jax.random.PRNGKey(seed)``: a control model. Weights are not
      read (only config and image processor).
    seed: seed of ``random_init``.
    revision: hub branch, tag or commit (ignored for a local directory).

  Returns:
    A :class:`Backbone` whose ``apply_fn(params, images [B, H, W, 3])``
    returns ``(features [B, D], logits [B, Z] or None)``; see the module
    docstring for ``D`` per family.

  Raises:
    HubUnreachableError: a hub id that is not cached while the hub cannot be
      reached (raised within about 4 s).
    PyTorchWeightsError: only PyTorch ``.bin`` weights and no torch.
    FileNotFoundError: a path-like name that does not exist.
    ValueError: bad ``dtype``, unsupported model type, or a checkpoint that
      lacks weights the features need.
  """
  if dtype not in _DTYPES:
    raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
  compute_dtype = _DTYPES[dtype]
  name = os.path.expanduser(str(name_or_path))
  if os.path.isdir(name):
    return _build(name, name, compute_dtype, random_init, seed, {},
                  processor_required=False)
  if os.path.exists(name):
    raise ValueError(f"{name} is a file; pass the checkpoint directory.")
  if _looks_like_path(name):
    raise FileNotFoundError(f"no such model directory: {name}")

  cached = {"local_files_only": True, "revision": revision}
  try:
    return _build(name, name, compute_dtype, random_init, seed, cached,
                  processor_required=True)
  except OSError as cache_miss:
    if isinstance(cache_miss, PyTorchWeightsError):
      raise
    logging.info("%s is not (fully) in the local HF cache: %s", name,
                 cache_miss)
    reason = _probe_hub()
    if reason is not None:
      try:  # Cached config and weights without an image processor.
        return _build(name, name, compute_dtype, random_init, seed, cached,
                      processor_required=False)
      except OSError:
        pass
      raise HubUnreachableError(_unreachable_message(name, reason)) from None
  return _build(name, name, compute_dtype, random_init, seed,
                {"revision": revision}, processor_required=False)
