"""`ImageDataset`: a fixed, ordered set of labelled images that streams batches.

A dataset is a *source* (a TFDS split, an image folder, in-memory arrays: a
fixed sequence of ``(raw record, label)`` pairs) plus an optional
class-stratified selection of record indices. An image folder or in-memory
arrays are ONE split; ``test_fraction`` carves them into a seeded,
class-stratified, disjoint train/test partition (:func:`stratified_split`) and
``split="train"`` / ``"test"`` picks a part. TensorFlow is imported only when
records are actually read.
"""

from __future__ import annotations

import abc
import hashlib
from typing import Any, Iterator

from absl import logging
import numpy as np

from sfda_jax import checks
from sfda_jax.metrics import sampling
from sfda_jax.data.preprocessing import Preprocessing

__all__ = ["ArraySource", "DatasetNotPreparedError", "HOLDOUT_PARTS",
           "ImageDataset", "Source", "UnreadableImageError", "check_disjoint",
           "from_arrays", "stratified_indices", "stratified_split"]

# The split names that pick a part of a `test_fraction` holdout.
HOLDOUT_PARTS = ("train", "test")


class DatasetNotPreparedError(FileNotFoundError):
  """A TFDS dataset is not prepared in ``data_dir`` and cannot be downloaded.

  Its message names the dataset, the data_dir, and how to prepare it.
  """


class UnreadableImageError(ValueError):
  """An image file or record cannot be read or decoded.

  One line: it starts with the file (path relative to the image folder) or
  the record (TFDS dataset, split and index), then says what is wrong and
  what to do.

  Attributes:
    records: the files or records named, in order.
  """

  def __init__(self, message: str, records: list[str]):
    super().__init__(message)
    self.records = list(records)


class Source(abc.ABC):
  """A fixed, ordered sequence of labelled image records.

  Attributes:
    name: dataset name for reports.
    split: split name.
    class_names: names of the classes, or ``None``.
    num_classes: size of the label space.
    identity: stable string naming exactly this record sequence (dataset,
      version or content hash); the split is appended by `ImageDataset`.
    single_split: whether the records are one undivided pool (an image
      folder, arrays) whose ``split`` is only a name; only such a source can
      be partitioned with ``test_fraction``.
  """
  name: str
  split: str
  class_names: list[str] | None
  num_classes: int
  identity: str
  single_split: bool = False

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

  def unreadable_error(self, problems: list[tuple[int, str]]
                       ) -> UnreadableImageError:
    """The error for records that failed to decode: ``[(index, reason)]``."""
    names = [f"{self.name!r} split {self.split!r}, record {i}"
             for i, _ in problems]
    return UnreadableImageError(
        f"{names[0]}: cannot be decoded ({problems[0][1]})"
        + (f"; {len(names) - 1} more such records" if len(names) > 1 else "")
        + ".", names)

  @abc.abstractmethod
  def record_ids(self) -> np.ndarray:
    """``[num_records]`` strings naming each record's underlying image.

    Two records with the same id are the same image (same file, same TFDS
    record, same row of the same arrays), whichever dataset, split or path
    spelling they were reached through; `check_disjoint` compares them.
    """


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
  _, inverse = np.unique(np.asarray(labels), return_inverse=True)
  return sampling.stratified_indices(inverse.reshape(-1), num_examples, seed)


def _check_test_fraction(test_fraction: float | None,
                         split: str | None = None) -> float | None:
  """Validates ``test_fraction`` and, when given, the part name ``split``.

  ``split=None``: ``test_fraction`` is required (not ``None``).
  """
  if test_fraction is None and split is not None:
    return None
  if (isinstance(test_fraction, bool)
      or not isinstance(test_fraction, (int, float, np.floating))
      or not 0.0 < float(test_fraction) < 1.0):
    raise ValueError("test_fraction must be a number strictly between 0 and "
                     f"1 (the share of each class held out for testing), "
                     f"got {test_fraction!r}.")
  if split is not None and split not in HOLDOUT_PARTS:
    raise ValueError(
        f"with test_fraction={test_fraction}, split names the part of the "
        f"train/test partition and must be one of {list(HOLDOUT_PARTS)}, "
        f"got {split!r}.")
  return float(test_fraction)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int,
                     class_names: list[str] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
  """A seeded, class-stratified, disjoint train/test partition of records.

  Rounding rule, per class: class ``k`` with ``c_k >= 2`` records puts
  ``t_k = min(c_k - 1, max(1, floor(test_fraction * c_k + 1/2)))`` of them in
  the test part (the proportional share rounded half up, but at least one
  and leaving at least one) and the other ``c_k - t_k`` in the train part, so
  every class is in both parts. The test records of each class are drawn
  without replacement with ``numpy.random.default_rng(seed)`` (the same draw
  as `stratified_indices`). Together the parts are all ``N`` records.

  Args:
    labels: ``[N]`` integer labels of all records.
    test_fraction: share of each class held out, in ``(0, 1)``.
    seed: the random seed.
    class_names: names of the label values (``class_names[label]``), used in
      error messages; ``None``: the label values are named.

  Returns:
    ``(train [N - T], test [T])`` sorted record indices (int64), disjoint.

  Raises:
    ValueError: ``test_fraction`` outside ``(0, 1)``; a class has a single
      record (it cannot be in both parts), naming the class(es).

  Example:
    >>> train, test = stratified_split(np.repeat([0, 1], [10, 3]), 0.2, 0)
    >>> len(train), len(test)   # class 0: 2 of 10 held out; class 1: 1 of 3
    (10, 3)
  """
  test_fraction = _check_test_fraction(test_fraction)
  labels = np.asarray(labels)
  values, inverse, counts = np.unique(labels, return_inverse=True,
                                      return_counts=True)
  inverse = inverse.reshape(-1)
  single = values[counts < 2]
  if single.size:
    named = [repr(class_names[int(v)]) if class_names is not None
             else repr(int(v)) for v in single]
    shown = ", ".join(named[:10]) + (f" and {len(named) - 10} more"
                                     if len(named) > 10 else "")
    which = (f"class {shown} has only 1 image" if len(named) == 1 else
             f"classes {shown} have only 1 image each")
    raise ValueError(
        f"{which}, but a class-stratified train/test split puts at least one "
        "image of every class in each part, so each class needs at least 2: "
        "add images, remove the class, or use a separate test set.")
  # The 1e-9 keeps exact halves from rounding down through binary
  # representation error (0.29 * 50 = 14.499999999999998, not 14.5).
  quotas = np.floor(test_fraction * counts + 0.5 + 1e-9).astype(np.int64)
  quotas = np.clip(quotas, 1, counts - 1)
  test = sampling.draw_per_class(inverse, quotas, np.random.default_rng(seed))
  train = np.setdiff1d(np.arange(labels.shape[0], dtype=np.int64), test)
  return train, test


class ImageDataset:
  """A fixed, ordered set of labelled images, streamed as model-ready batches.

  Made by :func:`sfda_jax.data.load` or :func:`sfda_jax.data.from_arrays`.

  Attributes:
    name: dataset name (TFDS name, folder name, or the name given).
    split: split name (for a ``test_fraction`` holdout: the part, ``"train"``
      or ``"test"``).
    num_examples: ``N``, the number of examples it yields.
    num_classes: size of the label space (TFDS ``ClassLabel`` size, number of
      class folders; for arrays, the number of distinct labels). A small
      subsample may miss some classes.
    class_names: class names or ``None``.
    seed: seed of the stratified subsample and of the holdout partition.
    test_fraction: the holdout's test share, or ``None`` (no partition).
    pool_size: how many records the examples were drawn from: the whole
      split, or the holdout part.
    fingerprint: stable string identifying exactly which examples, in which
      order: source (TFDS name, config and version / folder / content hash),
      split, ``holdout=<test_fraction>,seed=<seed>`` for a holdout part, and
      ``n=<N>|seed=<seed>`` for a subsample or ``all``.

  Example:
    >>> ds = from_arrays(np.zeros((200, 28, 28), np.uint8), np.arange(200) % 10)
    >>> preprocessing = Preprocessing(32, 32, (0.5,) * 3, (0.5,) * 3)
    >>> for images, labels in ds.batches(preprocessing, 64):
    ...   print(images.shape, images.dtype, labels.shape)  # the last holds 8
    (64, 32, 32, 3) float32 (64,)
    (64, 32, 32, 3) float32 (64,)
    (64, 32, 32, 3) float32 (64,)
    (8, 32, 32, 3) float32 (8,)
  """

  def __init__(self, source: Source, num_examples: int | None = None,
               seed: int = 0, test_fraction: float | None = None):
    """Selects ``num_examples`` records of ``source`` (``None``: all).

    With ``test_fraction`` (single-split sources only), the records are first
    partitioned by :func:`stratified_split` with ``seed`` and ``source.split``
    (``"train"`` or ``"test"``) picks the part the examples come from.

    Raises:
      ValueError: ``num_examples`` is not a positive int or exceeds the
        records available; bad ``test_fraction``, part name, or a source
        with its own splits; a class too small to split.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
      raise ValueError(f"seed must be an int, got {seed!r}.")
    test_fraction = _check_test_fraction(test_fraction, source.split)
    if test_fraction is not None and not source.single_split:
      raise ValueError(
          f"test_fraction partitions a single-split source (an image folder "
          f"or arrays); {source.name!r} has its own splits, which are "
          "already disjoint: pick them by name or slice ('test', "
          "'train[80%:]').")
    self._source = source
    self.name = source.name
    self.split = source.split
    self.class_names = source.class_names
    self.num_classes = int(source.num_classes)
    self.seed = int(seed)
    self.test_fraction = test_fraction
    self._labels: np.ndarray | None = None
    total = int(source.num_records())
    self._total = total
    if test_fraction is None:
      pool = None
      where, holdout_key = f"split {self.split!r}", ""
    else:
      parts = stratified_split(source.all_labels(), test_fraction, self.seed,
                               source.class_names)
      pool = parts[HOLDOUT_PARTS.index(self.split)]
      where = (f"{self.split} part of the test_fraction={test_fraction} "
               "holdout")
      holdout_key = f"holdout={test_fraction},seed={self.seed}|"
    self._pool = pool
    self.pool_size = total if pool is None else len(pool)
    if checks.positive_int(num_examples, "num_examples",
                           none_means="the whole split") is not None:
      if num_examples > self.pool_size and getattr(source, "single_split",
                                                   False):
        # An image folder (or arrays) is what the user has: use all of it.
        logging.warning("%r %s has %d examples, fewer than num_examples=%d "
                        "(--num_examples); using all %d.", self.name, where,
                        self.pool_size, num_examples, self.pool_size)
        num_examples = None
      elif num_examples > self.pool_size:
        raise ValueError(
            f"num_examples={num_examples} but {self.name!r} {where} has "
            f"only {self.pool_size} examples; ask for at most "
            f"{self.pool_size}, or for the whole split num_examples=None "
            "(on the command line --num_examples=0, or --test_examples=0 for "
            "experiments.finetune's test set).")
    if num_examples is None or num_examples == self.pool_size:
      self._selection = pool
      self.num_examples = self.pool_size
      selection_key = "all"
    else:
      labels = source.all_labels()
      if pool is None:
        self._selection = stratified_indices(labels, int(num_examples),
                                             self.seed)
      else:
        self._selection = pool[stratified_indices(labels[pool],
                                                  int(num_examples),
                                                  self.seed)]
      self.num_examples = int(num_examples)
      selection_key = f"n={self.num_examples}|seed={self.seed}"
    self.fingerprint = (f"{source.identity}|split={self.split}|"
                        f"{holdout_key}{selection_key}")

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

  @property
  def image_ids(self) -> np.ndarray:
    """``[N]`` strings naming each example's underlying image, in order.

    A file's real path for a folder, the TFDS shard file and record index
    (TFDS slices and unions resolved) for TFDS, the content hash of the
    arrays and the row for arrays. Used by :func:`check_disjoint`.
    """
    ids = np.asarray(self._source.record_ids())
    return ids if self._selection is None else ids[self._selection]

  @property
  def pool_ids(self) -> np.ndarray:
    """Like `image_ids`, for the records the examples were drawn from.

    The whole split, or the holdout part; equal to `image_ids` (as a set)
    unless ``num_examples`` took a subsample.
    """
    ids = np.asarray(self._source.record_ids())
    return ids if self._pool is None else ids[self._pool]

  def describe(self) -> dict[str, Any]:
    """How the examples were chosen, JSON-ready (for result files).

    Returns:
      ``{"source", "name", "split", "holdout", "pool_size",
      "num_examples", "seed", "per_class", "fingerprint"}``: ``source`` is
      the source identity (folder path, TFDS name and version, arrays hash),
      ``holdout`` is ``None`` or ``{"test_fraction", "seed", "part"}``,
      ``per_class`` maps class names (label ids when unnamed) to counts;
      plus ``"skipped_unreadable"`` (the files left out, relative to the
      folder) when ``skip_unreadable`` left any out.
    """
    if self.class_names is not None:
      counts = np.bincount(self.labels, minlength=len(self.class_names))
      per_class = dict(zip(self.class_names, counts.tolist()))
    else:   # arrays: the distinct label values of the whole source
      per_class = {str(int(v)): int((self.labels == v).sum())
                   for v in np.unique(self._source.all_labels())}
    described = {
        "source": self._source.identity,
        "name": self.name,
        "split": self.split,
        "holdout": (None if self.test_fraction is None else
                    {"test_fraction": self.test_fraction, "seed": self.seed,
                     "part": self.split}),
        "pool_size": self.pool_size,
        "num_examples": self.num_examples,
        "seed": self.seed,
        "per_class": per_class,
        "fingerprint": self.fingerprint,
    }
    skipped = list(getattr(self._source, "skipped", []))
    if skipped:
      described["skipped_unreadable"] = skipped
    return described

  def __len__(self) -> int:
    return self.num_examples

  def __repr__(self) -> str:
    holdout = ("" if self.test_fraction is None
               else f", test_fraction={self.test_fraction}")
    return (f"ImageDataset(name={self.name!r}, split={self.split!r}, "
            f"num_examples={self.num_examples}, "
            f"num_classes={self.num_classes}, seed={self.seed}{holdout})")

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
      ValueError: bad ``preprocessing`` or ``batch_size`` (at once).
      UnreadableImageError: (a ValueError, when the batch is reached) an
        image that fails to decode, named (file or record) with the
        decoder's reason.
    """
    from sfda_jax.data import _pipeline  # pylint: disable=g-import-not-at-top
    records = _pipeline.select_records(self._source.records(),
                                       self._selection, self._total)
    return self._name_failures(_pipeline.batch_iterator(
        records, self._source.decode, preprocessing, batch_size), batch_size)

  def _name_failures(self, batches: Iterator[tuple[np.ndarray, np.ndarray]],
                     batch_size: int
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Passes ``batches`` on; a TensorFlow error becomes an
    :class:`UnreadableImageError` naming the record that failed.

    tf.data's error names no record, but the order is fixed: the failing
    record is in the batch being read, whose records are decoded again to
    find it. An error no record of that batch explains is raised as is.
    """
    from sfda_jax.data import _pipeline  # pylint: disable=g-import-not-at-top
    done = 0
    while True:
      try:
        images, labels = next(batches)
      except StopIteration:
        return
      except _pipeline.tf.errors.OpError:
        positions = np.arange(done, min(done + batch_size,
                                        self.num_examples))
        records = (positions if self._selection is None
                   else np.asarray(self._selection)[positions])
        problems = _pipeline.decode_problems(
            self._source.records(), self._source.decode, self._total,
            records)
        if not problems:
          raise
        raise self._source.unreadable_error(problems[:1]) from None
      done += labels.shape[0]
      yield images, labels


def check_disjoint(train: ImageDataset, test: ImageDataset,
                   hint: str = "") -> None:
  """Raises unless ``test`` and ``train`` are drawn from disjoint images.

  Images are compared by :attr:`ImageDataset.image_ids` (real file paths,
  resolved TFDS records, array rows), so the same folder reached by two
  spellings, a TFDS split and a slice of it, or the same holdout part twice
  are all caught. Two subsamples of one split are refused too even when the
  draw happens to share no image (their pools, :attr:`~ImageDataset.pool_ids`,
  overlap): that they are disjoint would be luck, not a held-out test set.

  Args:
    train: the training set.
    test: the evaluation set.
    hint: appended to the error (what to do in the caller's terms).

  Raises:
    ValueError: ``train and test splits overlap: N of M test images are
      training images; ...``.
  """
  shared = int(np.isin(test.image_ids, train.image_ids).sum())
  if shared:
    how = f"{shared} of {len(test)} test images are training images"
  else:
    test_pool = test.pool_ids
    pooled = int(np.isin(test_pool, train.pool_ids).sum())
    how = (f"0 of {len(test)} test images are training images only by "
           f"chance: {pooled} of the {len(test_pool)} images the test set is "
           "sampled from are in the pool the training set is sampled from"
           ) if pooled else ""
  if how:
    raise ValueError(
        f"train and test splits overlap: {how} (train {train.fingerprint}, "
        f"test {test.fingerprint}); use disjoint data: a TFDS dataset's "
        "train and test splits, a test_fraction holdout of one folder or "
        "arrays (split='train' and split='test'), or a separate test set."
        + (f" {hint}" if hint else ""))


def _as_array(values: Any, name: str) -> np.ndarray:
  """``np.asarray(values)``; a ragged sequence is a ValueError naming it."""
  try:
    return np.asarray(values)
  except ValueError as e:
    raise ValueError(
        f"{name} cannot be one array ({e}); pass a numeric array"
        + (" [N, H, W(, C)] of equally sized images: resize them to one "
           "size first." if name == "images" else " [N].")) from None


class ArraySource(Source):
  """In-memory images; the raw uint8 (or float) arrays stay on the host."""

  _CHUNK = 1024
  single_split = True

  def __init__(self, images: np.ndarray, labels: np.ndarray, name: str,
               split: str = "all"):
    images = _as_array(images, "images")
    labels = _as_array(labels, "labels")
    if images.dtype == object:
      raise ValueError(
          "images is an object array (images of different sizes, or not "
          "numbers); pass one numeric array [N, H, W(, C)]: resize the images "
          "to one size first.")
    if images.ndim not in (3, 4) or (images.ndim == 4
                                     and images.shape[-1] not in (1, 3, 4)):
      raise ValueError("images must be [N, H, W], [N, H, W, 1], [N, H, W, 3] "
                       f"or [N, H, W, 4], got shape {images.shape}"
                       + (" (channels first? use images.transpose(0, 2, 3, "
                          "1))" if images.ndim == 4 and images.shape[-1] > 4
                          and images.shape[1] in (1, 3, 4) else "") + ".")
    if images.shape[0] == 0:
      raise ValueError("images is empty (N = 0).")
    if 0 in images.shape[1:3]:
      raise ValueError(f"images have no pixels: shape {images.shape} "
                       "(H and W must be at least 1).")
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
      finite = np.isfinite(images)
      if not finite.all():
        rows = np.flatnonzero(~finite.reshape(len(images), -1).all(axis=1))
        raise ValueError(
            f"images contain NaN or infinite values ({len(rows)} of "
            f"{len(images)} images, first at index {rows[0]}).")
      low, high = float(images.min()), float(images.max())
      if low < 0.0 or high > 1.0:
        raise ValueError(
            f"float images must lie in [0, 1], got values in [{low:.4g}, "
            f"{high:.4g}]; divide 0-255 pixels by 255 or pass uint8.")
      images = images.astype(np.float32) * np.float32(255.0)
    elif np.issubdtype(images.dtype, np.integer) and images.size:
      low, high = int(images.min()), int(images.max())
      raise ValueError(
          f"images must be uint8 (0-255) or float in [0, 1], got dtype "
          f"{images.dtype} with values in [{low}, {high}]; "
          + ("convert with images.astype(np.uint8)." if 0 <= low <= high <= 255
             else "scale them to 0-255 and convert to uint8."))
    else:
      raise ValueError("images must be uint8 (0-255) or float in [0, 1], got "
                       f"dtype {images.dtype}; e.g. images.astype(np.uint8).")
    self._images = np.ascontiguousarray(images)
    self._labels = labels.astype(np.int64)
    self._labels.setflags(write=False)
    self.name = name
    self.split = split
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

  def record_ids(self) -> np.ndarray:
    # Rows of the same pixels + labels (the content hash in `identity`).
    return np.asarray([f"{self.identity}#{i}"
                       for i in range(self.num_records())])

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
                name: str = "arrays", split: str = "all",
                test_fraction: float | None = None,
                seed: int = 0) -> ImageDataset:
  """A dataset of in-memory images (one split, or one part of a holdout).

  Args:
    images: ``[N, H, W]``, ``[N, H, W, 1]`` (grayscale, repeated to RGB),
      ``[N, H, W, 3]`` or ``[N, H, W, 4]`` (alpha dropped); uint8 in 0-255 or
      float in [0, 1] (no NaN or infinity). Kept by reference
      (float images as a float32 copy): do not modify them while the dataset
      is in use.
    labels: ``[N]`` integer class ids.
    name: dataset name for reports and the fingerprint.
    split: the split's name (default ``"all"``); with ``test_fraction``,
      ``"train"`` or ``"test"``: which part of the partition.
    test_fraction: hold out this share of each class: the arrays are split
      by :func:`stratified_split` (seeded, class-stratified, disjoint; per
      class ``t_k = min(c_k - 1, max(1, round_half_up(test_fraction c_k)))``
      test images) and ``split`` picks a part. Two calls with the same
      arrays, fraction and seed give complementary parts. ``None``: all.
    seed: seed of the partition.

  Returns:
    An :class:`ImageDataset` of all ``N`` examples (or of the chosen part)
    in the given order; its fingerprint hashes the pixels and labels.

  Raises:
    ValueError: bad shapes (not one of the above, ``H`` or ``W`` zero, a
      ragged list of images, labels not ``[N]``), dtypes (object, other
      integers than uint8, non-integer labels) or values (float outside
      [0, 1], NaN); bad ``test_fraction`` or ``split``; a class with a single
      image when splitting (named). Each message names the problem.

  Example:
    >>> ds = from_arrays(np.zeros((4, 28, 28), np.uint8), np.arange(4))
    >>> len(ds), ds.num_classes
    (4, 4)
    >>> x, y = np.zeros((10, 8, 8), np.uint8), np.arange(10) % 2
    >>> train = from_arrays(x, y, split="train", test_fraction=0.2)
    >>> test = from_arrays(x, y, split="test", test_fraction=0.2)
    >>> len(train), len(test)   # 1 of each class's 5 images held out
    (8, 2)
  """
  if not isinstance(split, str) or not split:
    raise ValueError(f"split must be a non-empty string, got {split!r}.")
  _check_test_fraction(test_fraction, split)     # before hashing the pixels
  return ImageDataset(ArraySource(images, labels, name, split), seed=seed,
                      test_fraction=test_fraction)
