"""The backbone interface every model family implements.

A :class:`Backbone` bundles a model's preprocessing rule (taken from the
model's own config or image processor, never guessed) with a jitted batch
function ``images [B, H, W, 3] float32 -> (features [B, D], logits [B, Z] or
None)``. Images reach the backbone already resized, centre-cropped and
normalised by the input pipeline (:mod:`sfda_jax.data`) according to
``backbone.preprocessing``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable

import jax

__all__ = ["Preprocessing", "Backbone"]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How raw RGB images become model input.

  Attributes:
    image_size: side of the square model input (H = W).
    resize_size: the shorter image side is resized to this first (keeping the
      aspect ratio), then the centre ``image_size`` square is cropped. Equal
      to ``image_size`` for a plain shorter-side resize + crop.
    mean, std: per-channel normalisation applied to pixels scaled to [0, 1]:
      ``(pixel / 255 - mean) / std``.
    interpolation: ``"bilinear"`` or ``"bicubic"`` resize.
    squash: resize both sides straight to ``image_size`` (no aspect-ratio
      preservation, no crop), as e.g. HF ViT's image processor does.
  """
  image_size: int
  resize_size: int
  mean: tuple[float, float, float]
  std: tuple[float, float, float]
  interpolation: str = "bilinear"
  squash: bool = False

  def __post_init__(self):
    if self.image_size < 1 or self.resize_size < self.image_size:
      raise ValueError(f"invalid sizes: image_size={self.image_size}, "
                       f"resize_size={self.resize_size} (need resize_size >= "
                       "image_size >= 1).")
    if self.interpolation not in ("bilinear", "bicubic"):
      raise ValueError(f"interpolation must be bilinear or bicubic, got "
                       f"{self.interpolation!r}.")
    if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
      raise ValueError(f"mean and std need 3 channels with std > 0, got "
                       f"{self.mean}, {self.std}.")

  def key(self) -> str:
    """A stable string identifying this rule (part of feature cache keys)."""
    return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A named model ready for feature extraction.

  Attributes:
    name: registry name (``efficientnet_lite0``, ``hf:microsoft/resnet-50``).
    preprocessing: the model's own input rule.
    feature_dim: ``D`` of the features.
    num_source_classes: ``Z`` of the classifier head, or ``None`` without one.
    weights_id: identity of the weights (a content hash, or
      ``random-init:<seed>`` for a control model) for cache keys.
    apply_fn: jitted ``(params, images [B, H, W, 3]) -> (features, logits)``;
      ``logits`` is ``None`` without a head.
    params: the model variables passed to ``apply_fn``.
    compute_dtype: dtype the network computes in (features are returned as
      float32 whatever it is).
    description: one line for logs and reports (family, pooling rule).
  """
  name: str
  preprocessing: Preprocessing
  feature_dim: int
  num_source_classes: int | None
  weights_id: str
  apply_fn: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array | None]]
  params: Any
  compute_dtype: str = "float32"
  description: str = ""

  def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """Features ``[B, D]`` (and logits ``[B, Z]`` or ``None``) of a batch."""
    return self.apply_fn(self.params, images)

  def cache_identity(self) -> str:
    """A short hash of everything that determines this backbone's outputs."""
    payload = json.dumps({"name": self.name, "weights": self.weights_id,
                          "preprocessing": self.preprocessing.key(),
                          "dtype": self.compute_dtype}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
