"""The tf.data preprocessing pipeline: records -> model-ready batches.

Per example: decode to ``[h, w, 3]`` pixels in ``[0, 255]`` (grayscale
repeated to three channels, alpha dropped), resize, centre-crop, normalise::

  squash=False: shorter side -> resize_size, longer side -> floor(resize_size
                * long / short) (torchvision's rule), then the centre
                image_size x image_size crop (offset floor((size - S) / 2))
  squash=True:  both sides straight to image_size x image_size
  then          (pixel / 255 - mean) / std

Resizing is antialiased (like PIL, which the models' own image processors
use) and clipped to [0, 255]; an image already at the target size is left
untouched. Examples are then batched (the last batch possibly smaller) and
prefetched; the order is deterministic and nothing beyond a few batches is
held in memory.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from sfda_jax import checks
from sfda_jax.data.preprocessing import Preprocessing
from sfda_jax.data._tf import tf

__all__ = ["preprocess_image", "batch_iterator", "select_records"]

_METHODS = {"bilinear": tf.image.ResizeMethod.BILINEAR,
            "bicubic": tf.image.ResizeMethod.BICUBIC}


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
  """``[h, w]`` / ``[h, w, 1|3|4]`` -> ``[h, w, 3]`` (static channel count)."""
  if image.shape.rank == 2:
    image = image[..., None]
  channels = image.shape[-1]
  if channels == 1:
    return tf.repeat(image, 3, axis=-1)
  if channels == 3:
    return image
  if channels == 4:
    return image[..., :3]
  raise ValueError(f"images need 1, 3 or 4 channels, got shape {image.shape}.")


def _resize(image: tf.Tensor, height: tf.Tensor, width: tf.Tensor,
            method: str) -> tf.Tensor:
  """Antialiased resize of ``[h, w, 3]`` float32, a no-op at the same size."""
  shape = tf.shape(image)
  same = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))

  def resized():
    out = tf.image.resize(image, tf.stack([height, width]),
                          method=_METHODS[method], antialias=True)
    return tf.clip_by_value(out, 0.0, 255.0)

  return tf.cond(same, lambda: image, resized)


def preprocess_image(image: tf.Tensor,
                     preprocessing: Preprocessing) -> tf.Tensor:
  """One decoded image -> normalised model input.

  Args:
    image: pixels in ``[0, 255]``, ``[h, w]`` or ``[h, w, C]`` with C in
      {1, 3, 4}, any real dtype (uint8 or float32).
    preprocessing: the model's input rule.

  Returns:
    ``[S, S, 3]`` float32 with ``S = preprocessing.image_size``.
  """
  size = preprocessing.image_size
  image = tf.cast(_to_rgb(image), tf.float32)
  if preprocessing.squash:
    image = _resize(image, tf.constant(size), tf.constant(size),
                    preprocessing.interpolation)
  else:
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    short = tf.minimum(height, width)
    target = preprocessing.resize_size
    # Integer arithmetic in int64: no float rounding, no int32 overflow.
    new_h = tf.cast(target * tf.cast(height, tf.int64)
                    // tf.cast(short, tf.int64), tf.int32)
    new_w = tf.cast(target * tf.cast(width, tf.int64)
                    // tf.cast(short, tf.int64), tf.int32)
    image = _resize(image, new_h, new_w, preprocessing.interpolation)
    top = (new_h - size) // 2
    left = (new_w - size) // 2
    image = image[top:top + size, left:left + size, :]
  image = tf.ensure_shape(image, [size, size, 3])
  mean = tf.constant(preprocessing.mean, tf.float32)
  std = tf.constant(preprocessing.std, tf.float32)
  return (image / 255.0 - mean) / std


def select_records(records: tf.data.Dataset,
                   selection: np.ndarray | None,
                   num_records: int) -> tf.data.Dataset:
  """Keeps the records at the sorted indices ``selection`` (a stream filter).

  Args:
    records: the full split, in its fixed order.
    selection: sorted record indices ``[M]``, or ``None`` for all records.
    num_records: how many records ``records`` yields.

  Returns:
    The selected records in their original order; reading stops after the
    last selected one.
  """
  if selection is None:
    return records
  mask = np.zeros(num_records, bool)
  mask[selection] = True
  mask = tf.constant(mask)
  last = int(selection[-1]) + 1 if len(selection) else 0
  return (records.take(last).enumerate()
          .filter(lambda index, record: tf.gather(mask, index))
          .map(lambda index, record: record))


def batch_iterator(records: tf.data.Dataset,
                   decode: Callable[[tf.Tensor], tf.Tensor],
                   preprocessing: Preprocessing,
                   batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Decodes, preprocesses and batches ``(raw, label)`` records.

  Args:
    records: ``(raw, label)`` pairs: ``raw`` is whatever ``decode`` takes
      (encoded bytes, a file path, a pixel array).
    decode: ``raw -> [h, w, C]`` pixels in ``[0, 255]``.
    preprocessing: the model's input rule.
    batch_size: examples per batch.

  Returns:
    An iterator of ``(images [B, S, S, 3] float32, labels [B] int64)``;
    ``B = batch_size`` except possibly for the last batch.

  Raises:
    ValueError: bad ``preprocessing`` or ``batch_size`` (raised at once, not
      at the first ``next``).
  """
  if not isinstance(preprocessing, Preprocessing):
    raise ValueError("preprocessing must be a sfda_jax.data.Preprocessing"
                     f", got {type(preprocessing).__name__}.")
  checks.positive_int(batch_size, "batch_size")

  def prepare(raw, label):
    return preprocess_image(decode(raw), preprocessing), tf.cast(label,
                                                                  tf.int64)

  ds = records.map(prepare, num_parallel_calls=tf.data.AUTOTUNE,
                   deterministic=True)
  ds = ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).as_numpy_iterator()
