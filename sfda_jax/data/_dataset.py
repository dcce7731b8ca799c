"""`ImageDataset`: a fixed, ordered set of labelled images that streams batches.

A dataset is a *source* (a TFDS split, an image folder, in-memory arrays: a
fixed sequence of ``(raw record, label)`` pairs) plus an optional
class-stratified selection of record indices. TensorFlow is imported only when
records are actually read.
"""

from __future__ import annotations

import abc
import hashlib
from typing import Any, Iterator

import numpy as np

from sfda_jax.backbones.base import Preprocessing

__all__ = ["ArraySource", "DatasetNotPreparedError", "ImageDataset", "Source",
           "from_arrays", "stratified_indices"]


class DatasetNotPreparedError(FileNotFoundError):
  """A TFDS dataset is not prepared in ``data_dir`` and cannot be downloaded.

  Its message names the dataset, the data_dir, and how to prepare it.
  """


class Source(abc.ABC):
  """A fixed, ordered sequence of labelled image records.

  Attributes:
    name: dataset name for reports.
    split: split name.
    class_names: names of the classes, or ``None``.
    num_classes: size of the label space.
    identity: stable string naming exactly this record sequence (dataset,
      version or content hash); the split is appended by `ImageDataset`.
  """
  name: str
  split: str
  class_names: list[str] | None
  num_classes: int
  identity: str

  @abc.abstractmethod
  def num_records(self) -> int:
    """How many records the sequence holds."""

  @abc.abstractmethod
  def all_labels(self) -> np.ndarray:
    """Labels ``[num_records]`` int64 in record order, decoding no image."""

  @abc.abstractmethod
  def records(self) -> Any:
    """A ``tf.data.Dataset`` of ``(raw, label)`` in record order."""

  @abc.abstractmethod
  def decode(self, raw: Any) -> Any:
    """TF graph function: ``raw -> [h, w, C]`` pixels in ``[0, 255]``."""


def stratified_indices(labels: np.ndarray, num_examples: int,
                       seed: int) -> np.ndarray:
  """A class-stratified random subset of record indices.

  Class ``k`` with ``c_k`` of the ``N`` records gets ``floor(n c_k / N)``
  examples; the ``n - sum(floor)`` left over go one each to the classes with
  the largest remainders ``n c_k mod N`` (ties broken by a seeded random
  order). The examples of each class are drawn without replacement with
  ``numpy.random.default_rng(seed)``.

  Args:
    labels: ``[N]`` integer labels of all records.
    num_examples: ``n``, at most ``N``.
    seed: the random seed.

  Returns:
    ``[n]`` sorted record indices (int64).
  """
  labels = np.asarray(labels)
  total = labels.shape[0]
  _, inverse, counts = np.unique(labels, return_inverse=True,
                                 return_counts=True)
  inverse = inverse.reshape(-1)
  rng = np.random.default_rng(seed)
  numerators = num_examples * counts.astype(np.int64)
  quotas = numerators // total
  remainders = numerators % total
  leftover = num_examples - int(quotas.sum())
  ties = rng.random(len(counts))
  order = np.lexsort((ties, -remainders))
  quotas[order[:leftover]] += 1
  chosen = [rng.choice(np.flatnonzero(inverse == k), size=int(q),
                       replace=False)
            for k, q in enumerate(quotas) if q > 0]
  return np.sort(np.concatenate(chosen)).astype(np.int64)


class ImageDataset:
  """A fixed, ordered set of labelled images, streamed as model-ready batches.

  Made by :func:`sfda_jax.data.load` or :func:`sfda_jax.data.from_arrays`.

  Attributes:
    name: dataset name (TFDS name, folder name, or the name given).
    split: split name.
    num_examples: ``N``, the number of examples it yields.
    num_classes: size of the label space (TFDS ``ClassLabel`` size, number of
      class folders; for arrays, the number of distinct labels). A small
      subsample may miss some classes.
    class_names: class names or ``None``.
    seed: seed of the stratified subsample (irrelevant for a whole split).
    fingerprint: stable string identifying exactly which examples, in which
      order: source (TFDS name, config and version / folder / content hash),
      split, and ``n=<N>|seed=<seed>`` for a subsample or ``all``.

  Example:
    >>> ds = sfda_jax.data.load("fashion_mnist", num_examples=200)
    >>> for images, labels in ds.batches(backbone.preprocessing, 64):
    ...   images.shape  # (64, S, S, 3) float32; the last batch holds 8
  """

  def __init__(self, source: Source, num_examples: int | None = None,
               seed: int = 0):
    """Selects ``num_examples`` records of ``source`` (``None``: all).

    Raises:
      ValueError: ``num_examples`` is not a positive int or exceeds the
        records available.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
      raise ValueError(f"seed must be an int, got {seed!r}.")
    self._source = source
    self.name = source.name
    self.split = source.split
    self.class_names = source.class_names
    self.num_classes = int(source.num_classes)
    self.seed = int(seed)
    self._labels: np.ndarray | None = None
    total = int(source.num_records())
    self._total = total
    if num_examples is not None:
      if isinstance(num_examples, bool) or not isinstance(
          num_examples, (int, np.integer)) or num_examples < 1:
        raise ValueError("num_examples must be a positive int or None (the "
                         f"whole split), got {num_examples!r}.")
      if num_examples > total:
        raise ValueError(
            f"num_examples={num_examples} but {self.name!r} split "
            f"{self.split!r} has only {total} examples; ask for at most "
            f"{total}, or pass num_examples=None for the whole split.")
    if num_examples is None or num_examples == total:
      self._selection = None
      self.num_examples = total
      selection_key = "all"
    else:
      self._selection = stratified_indices(source.all_labels(),
                                           int(num_examples), self.seed)
      self.num_examples = int(num_examples)
      selection_key = f"n={self.num_examples}|seed={self.seed}"
    self.fingerprint = f"{source.identity}|split={self.split}|{selection_key}"

  @property
  def labels(self) -> np.ndarray:
    """Labels ``[N]`` int64 in iteration order (read without decoding)."""
    if self._labels is None:
      labels = np.asarray(self._source.all_labels(), np.int64)
      if self._selection is not None:
        labels = labels[self._selection]
      labels.setflags(write=False)
      self._labels = labels
    return self._labels

  def __len__(self) -> int:
    return self.num_examples

  def __repr__(self) -> str:
    return (f"ImageDataset(name={self.name!r}, split={self.split!r}, "
            f"num_examples={self.num_examples}, "
            f"num_classes={self.num_classes}, seed={self.seed})")

  def batches(self, preprocessing: Preprocessing,
              batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Streams the examples, preprocessed for a model, in a fixed order.

    Args:
      preprocessing: the model's input rule (``backbone.preprocessing``).
      batch_size: examples per batch.

    Yields:
      ``(images [B, S, S, 3] float32, labels [B] int64)``, ``S =
      preprocessing.image_size``; ``B = batch_size`` except possibly for the
      last batch.

    Raises:
      ValueError: bad ``preprocessing`` or ``batch_size``.
    """
    from sfda_jax.data import _pipeline  # pylint: disable=g-import-not-at-top
    records = _pipeline.select_records(self._source.records(),
                                       self._selection, self._total)
    return _pipeline.batch_iterator(records, self._source.decode,
                                    preprocessing, batch_size)


class ArraySource(Source):
  """In-memory images; the raw uint8 (or float) arrays stay on the host."""

  _CHUNK = 1024

  def __init__(self, images: np.ndarray, labels: np.ndarray, name: str):
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim not in (3, 4) or (images.ndim == 4
                                     and images.shape[-1] not in (1, 3)):
      raise ValueError("images must be [N, H, W], [N, H, W, 1] or [N, H, W, "
                       f"3], got shape {images.shape}.")
    if images.shape[0] == 0:
      raise ValueError("images is empty (N = 0).")
    if labels.shape != (images.shape[0],):
      raise ValueError(f"labels must be [N] = [{images.shape[0]}] to match "
                       f"images, got shape {labels.shape}.")
    if not (np.issubdtype(labels.dtype, np.integer)
            and labels.dtype != np.bool_):
      raise ValueError("labels must be integers (class ids), got dtype "
                       f"{labels.dtype}; map class names to ids first.")
    if images.dtype == np.uint8:
      pass
    elif np.issubdtype(images.dtype, np.floating):
      if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or infinite values.")
      low, high = float(images.min()), float(images.max())
      if low < 0.0 or high > 1.0:
        raise ValueError(
            f"float images must lie in [0, 1], got values in [{low:.4g}, "
            f"{high:.4g}]; divide 0-255 pixels by 255 or pass uint8.")
      images = images.astype(np.float32) * np.float32(255.0)
    else:
      raise ValueError("images must be uint8 (0-255) or float in [0, 1], got "
                       f"dtype {images.dtype}; e.g. images.astype(np.uint8).")
    self._images = np.ascontiguousarray(images)
    self._labels = labels.astype(np.int64)
    self._labels.setflags(write=False)
    self.name = name
    self.split = "all"
    self.class_names = None
    self.num_classes = int(np.unique(self._labels).size)
    digest = hashlib.sha256()
    digest.update(repr((self._images.shape, str(self._images.dtype))).encode())
    digest.update(self._images.tobytes())
    digest.update(self._labels.tobytes())
    self.identity = f"arrays:{name}:sha256={digest.hexdigest()[:16]}"

  def num_records(self) -> int:
    return int(self._images.shape[0])

  def all_labels(self) -> np.ndarray:
    return self._labels

  def records(self):
    from sfda_jax.data._tf import tf  # pylint: disable=g-import-not-at-top
    images, labels, chunk = self._images, self._labels, self._CHUNK

    def chunks():
      for start in range(0, images.shape[0], chunk):
        yield images[start:start + chunk], labels[start:start + chunk]

    return tf.data.Dataset.from_generator(
        chunks, output_signature=(
            tf.TensorSpec((None,) + images.shape[1:],
                          tf.as_dtype(images.dtype)),
            tf.TensorSpec((None,), tf.int64))).unbatch()

  def decode(self, raw):
    return raw


def from_arrays(images: np.ndarray, labels: np.ndarray,
                name: str = "arrays") -> ImageDataset:
  """A dataset of in-memory images.

  Args:
    images: ``[N, H, W]``, ``[N, H, W, 1]`` (grayscale, repeated to RGB) or
      ``[N, H, W, 3]``; uint8 in 0-255 or float in [0, 1]. Kept by reference
      (float images as a float32 copy): do not modify them while the dataset
      is in use.
    labels: ``[N]`` integer class ids.
    name: dataset name for reports and the fingerprint.

  Returns:
    An :class:`ImageDataset` of all ``N`` examples in the given order, split
    ``"all"``; its fingerprint hashes the pixels and labels.

  Raises:
    ValueError: bad shapes, dtypes or value ranges.

  Example:
    >>> ds = from_arrays(np.zeros((4, 28, 28), np.uint8), np.arange(4))
    >>> len(ds), ds.num_classes
    (4, 4)
  """
  return ImageDataset(ArraySource(images, labels, name))
