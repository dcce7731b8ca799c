"""``sfda_jax.streaming``: the streaming metrics plus the pipeline's chunk
source.

The metrics (``sfda``, ``logme``, ``hscore``, ``regularized_hscore``,
``gbc``, ``transrate``) and :func:`chunks_from_npy` live in
``sfda_jax.metrics.streaming`` (metrics on statistics, no feature
extraction) and are re-exported here; :func:`chunks_from_extraction` runs a
backbone, so it belongs to the pipeline side and lives here, outside the
metrics package.
"""

from __future__ import annotations

from typing import Any

from sfda_jax import checks
from sfda_jax.metrics.streaming import (MakeChunks, chunks_from_npy, gbc,
                                        hscore, logme, regularized_hscore,
                                        sfda, transrate)

__all__ = ["MakeChunks", "sfda", "logme", "hscore", "regularized_hscore",
           "gbc", "transrate", "chunks_from_npy", "chunks_from_extraction"]


def chunks_from_extraction(backbone: Any, dataset: Any,
                           batch_size: int = 64) -> MakeChunks:
  """``make_chunks`` that extracts features batch by batch, storing none.

  Every pass runs the backbone's jitted feature function over
  ``dataset.batches(backbone.preprocessing, batch_size)`` again (as
  :func:`sfda_jax.features.extract` does, last batch padded), so a metric
  with ``P`` passes extracts ``P`` times; for a costly backbone and SFDA (3
  passes) writing the features to ``.npy`` once and using
  :func:`chunks_from_npy` may be faster.

  Args:
    backbone: from :func:`sfda_jax.backbones.get`.
    dataset: from :func:`sfda_jax.data.load` / ``data.from_arrays`` (anything
      with ``batches(preprocessing, batch_size)``).
    batch_size: images per jitted call = samples per chunk.

  Returns:
    A callable returning a fresh iterator of ``(features [n, D], labels [n])``.
  """
  checks.positive_int(batch_size, "batch_size")
  from sfda_jax import features  # pylint: disable=g-import-not-at-top

  def make_chunks():
    for f, _, y in features.feature_batches(backbone, dataset, int(batch_size)):
      yield f, y

  return make_chunks
