"""The tf.data preprocessing pipeline: records -> model-ready batches.

Per example: decode to ``[h, w, 3]`` pixels in ``[0, 255]`` (grayscale
repeated to three channels, alpha dropped; :func:`decode_image`), resize,
centre-crop, normalise::

  squash=False: shorter side -> resize_size, longer side -> floor(resize_size
                * long / short) (torchvision's rule), then the centre
                image_size x image_size crop (offset floor((size - S) / 2))
  squash=True:  both sides straight to image_size x image_size
  then          (pixel / 255 - mean) / std

Resizing is antialiased (like PIL, which the models' own image processors
use) and clipped to [0, 255]; an image already at the target size is left
untouched. Examples are then batched (the last batch possibly smaller) and
prefetched; the order is deterministic and nothing beyond a few batches is
held in memory: each image is decoded and resized on its own, so memory
grows with the images in flight (about one per CPU core), not with their
number.

A record that fails to decode stops tf.data with a TensorFlow error naming
no record; :func:`decode_problems` finds which records fail and why.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator

import numpy as np

from sfda_jax import checks
from sfda_jax.data import _image_files
from sfda_jax.data.preprocessing import Preprocessing
from sfda_jax.data._tf import tf

__all__ = ["apply_orientation", "batch_iterator", "decode_image",
           "decode_problems", "preprocess_image", "select_records",
           "tf_error_message"]

_METHODS = {"bilinear": tf.image.ResizeMethod.BILINEAR,
            "bicubic": tf.image.ResizeMethod.BICUBIC}


def _head(contents: tf.Tensor, offset: int, length: int) -> tf.Tensor:
  """``contents[offset:offset + length]``, zero-padded past the end."""
  end = offset + length
  padded = tf.strings.join([tf.strings.substr(contents, 0, end), b"\0" * end])
  return tf.strings.substr(padded, offset, length)


def _starts_with(contents: tf.Tensor, offset: int, magic: bytes) -> tf.Tensor:
  """Whether ``contents[offset:offset + len(magic)] == magic``; any length."""
  return tf.equal(_head(contents, offset, len(magic)), magic)


def _any_channels_to_rgb(image: tf.Tensor) -> tf.Tensor:
  """``[h, w, C]`` with any C in 1..4 (not known statically) -> RGB."""
  channels = tf.shape(image)[-1]
  image = tf.cond(channels < 3, lambda: tf.repeat(image[..., :1], 3, axis=-1),
                  lambda: image[..., :3])
  return tf.ensure_shape(image, [None, None, 3])


def decode_image(contents: tf.Tensor) -> tf.Tensor:
  """Encoded image bytes -> ``[h, w, 3]`` uint8 RGB.

  JPEG, PNG, GIF, BMP, WebP and JPEG XL, recognised by content: grayscale is
  repeated to RGB, alpha dropped, the first frame of an animation kept,
  16-bit PNGs scaled to 8 bits. ``tf.io.decode_image(..., channels=3)``
  decodes JPEG, PNG, GIF and BMP; WebP goes through ``tf.io.decode_webp``
  and JPEG XL through ``decode_image(channels=0)``, whose channels must
  match the file's (TF 2.21 refuses ``channels=3`` for an RGBA WebP or a
  grayscale JPEG XL). An animated WebP fails here with an
  InvalidArgumentError before TensorFlow decodes it: TF 2.21 corrupts the
  heap decoding one in a tf.data pipeline (the process aborts).
  """
  is_webp = tf.logical_and(_starts_with(contents, 0, b"RIFF"),
                           _starts_with(contents, 8, b"WEBP"))
  is_jxl = tf.logical_or(_starts_with(contents, 0, b"\xff\x0a"),
                         _starts_with(contents, 4, b"JXL \r\n\x87\n"))

  def webp():
    flags = tf.io.decode_raw(_head(contents, 20, 1), tf.uint8)[0]
    animated = tf.logical_and(_starts_with(contents, 12, b"VP8X"),
                              tf.not_equal(tf.bitwise.bitwise_and(
                                  flags, tf.constant(2, tf.uint8)), 0))
    check = tf.debugging.Assert(tf.logical_not(animated),
                                [_image_files.ANIMATED_WEBP])
    with tf.control_dependencies([check]):
      return _any_channels_to_rgb(tf.io.decode_webp(contents)[0])

  def jxl():
    return _any_channels_to_rgb(tf.io.decode_image(
        contents, channels=0, expand_animations=False))

  def other():
    return tf.ensure_shape(tf.io.decode_image(
        contents, channels=3, expand_animations=False), [None, None, 3])

  return tf.cond(is_webp, webp, lambda: tf.cond(is_jxl, jxl, other))


def apply_orientation(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
  """Turns ``[h, w, C]`` upright by its EXIF orientation (1-8).

  The same transposition as PIL's ``ImageOps.exif_transpose``: 2 mirrors
  left-right, 3 turns 180 degrees, 4 mirrors top-bottom, 5 transposes, 6
  turns 90 degrees clockwise, 7 transverses, 8 turns 90 degrees
  anticlockwise; 1 (and anything else) leaves the image as it is.
  """
  def transpose(x):
    return tf.transpose(x, [1, 0, 2])

  branches = [
      lambda: image,
      lambda: tf.image.flip_left_right(image),
      lambda: tf.image.rot90(image, 2),
      lambda: tf.image.flip_up_down(image),
      lambda: transpose(image),
      lambda: tf.image.rot90(image, 3),
      lambda: tf.image.rot90(transpose(image), 2),
      lambda: tf.image.rot90(image, 1),
  ]
  index = tf.cast(orientation, tf.int32) - 1
  index = tf.where((index >= 0) & (index < 8), index, 0)
  return tf.switch_case(index, branches)


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


def tf_error_message(error: Exception) -> str:
  """A TensorFlow op error's own words, without graph and device noise."""
  text = getattr(error, "message", None) or str(error)
  said = re.search(r"Summarized data: b?([\"'])(.*?)\1", text, re.S)
  if said:                        # a tf.debugging.Assert: its own message
    return said.group(2)
  text = re.sub(r"\{\{function_node [^}]*\}\}", "", text)
  text = re.sub(r"\[\[\{\{node [^]]*\]\]|\[Op:[^]]*\]", "", text)
  return " ".join(text.split()).rstrip(" .;") or type(error).__name__


def decode_problems(records: tf.data.Dataset,
                    decode: Callable[[Any], tf.Tensor], num_records: int,
                    indices: np.ndarray | None = None
                    ) -> list[tuple[int, str]]:
  """Which records fail to decode, and TensorFlow's reason for each.

  Every record (or those at ``indices``) is decoded once, in parallel, and
  dropped (nothing is resized or kept); the ones that failed are decoded
  once more, one at a time, for their error messages.

  Args:
    records: ``(raw, label)`` pairs in their fixed order.
    decode: ``raw -> pixels``, as given to :func:`batch_iterator`.
    num_records: how many records ``records`` yields.
    indices: sorted record indices to check, or ``None`` for all.

  Returns:
    ``[(record index, message)]`` in record order; empty when all decode.
  """
  indices = (np.arange(num_records, dtype=np.int64) if indices is None
             else np.asarray(indices, np.int64))

  def picked(which):
    return tf.data.Dataset.zip((tf.data.Dataset.from_tensor_slices(which),
                                select_records(records, which, num_records)))

  decoded = picked(indices).map(
      lambda index, record: (index, tf.shape(decode(record[0]))[0]),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  good = {int(index) for index, _ in decoded.ignore_errors()
          .as_numpy_iterator()}
  bad = np.asarray([i for i in indices.tolist() if i not in good], np.int64)
  problems = []
  for index, (raw, _) in (picked(bad) if len(bad) else ()):
    try:
      decode(raw)
      reason = "failed to decode in the pipeline but not on its own"
    except (tf.errors.OpError, ValueError) as e:
      reason = tf_error_message(e)
    problems.append((int(index), reason))
  return problems


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
