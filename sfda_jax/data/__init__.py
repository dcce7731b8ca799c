"""Datasets: TFDS names, image folders or arrays -> model-ready image batches.

:func:`load` opens a TFDS dataset (or an image folder with one sub-folder per
class), optionally as a class-stratified subset; :func:`from_arrays` wraps
in-memory images. Both return an :class:`ImageDataset`, whose ``labels`` come
without decoding any image and whose ``batches(preprocessing, batch_size)``
stream ``(images [B, S, S, 3] float32, labels [B] int64)`` through a tf.data
pipeline implementing a backbone's
:class:`~sfda_jax.backbones.base.Preprocessing` (decode, grayscale to RGB,
shorter-side resize or squash, centre crop, normalise).

TensorFlow is imported only when a dataset is first used, and is never given a
GPU or TPU (JAX owns them).

Example:
  >>> from sfda_jax import data
  >>> ds = data.load("fashion_mnist", split="test", num_examples=200)
  >>> ds.fingerprint
  'tfds:fashion_mnist/3.0.1:label=label|split=test|n=200|seed=0'
  >>> images, labels = next(ds.batches(backbone.preprocessing, 64))
"""

from sfda_jax.data._dataset import (DatasetNotPreparedError, ImageDataset,
                                    from_arrays, stratified_indices)
from sfda_jax.data._load import load, prepare_fashion_mnist

__all__ = [
    "DatasetNotPreparedError",
    "ImageDataset",
    "from_arrays",
    "load",
    "prepare_fashion_mnist",
    "stratified_indices",
]
