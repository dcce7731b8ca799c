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

# The input pipeline owns the preprocessing rule; re-exported here.
from sfda_jax.data.preprocessing import Preprocessing

__all__ = ["Preprocessing", "Backbone"]


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
