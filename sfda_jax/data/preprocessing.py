"""How raw RGB images become model input: the :class:`Preprocessing` rule.

Part of the input pipeline (:mod:`sfda_jax.data` implements it in tf.data);
each backbone states its own rule (``Backbone.preprocessing``), taken from
the model's config or image processor. No model code is imported here.
"""

from __future__ import annotations

import dataclasses
import json

__all__ = ["Preprocessing"]


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
