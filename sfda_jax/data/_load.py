"""`load`: a TFDS name or an image folder -> `ImageDataset`."""

from __future__ import annotations

import os
from typing import Any

from sfda_jax.data._dataset import (HOLDOUT_PARTS, ImageDataset,
                                    _check_test_fraction, check_disjoint)

__all__ = ["DEFAULT_TEST_FRACTION", "check_name", "load", "load_train_test",
           "prepare_fashion_mnist"]

# The holdout share `load_train_test` uses for a folder without a test set.
DEFAULT_TEST_FRACTION = 0.2

_PATH_PREFIXES = ("/", "~", "./", "../", "." + os.sep, ".." + os.sep)


def _is_tfds_name(name: str) -> bool:
  # pylint: disable-next=g-import-not-at-top
  from sfda_jax.data._tfds import ALIASES, tfds
  base = name.split(":")[0].split("/")[0]
  return name in ALIASES or base in tfds.list_builders(
      with_community_datasets=False)


def _is_folder(name: str) -> bool:
  """Whether ``name`` means an image folder rather than a TFDS name.

  Explicit paths (absolute, ``~``, ``./``, ``../``) always do; other names
  with a separator do when they exist (``voc/2007`` is a TFDS config); a bare
  name is a TFDS name when TFDS knows it, else a folder when one exists.
  """
  if name in (".", "..") or name.startswith(_PATH_PREFIXES):
    return True
  if os.sep in name or (os.altsep and os.altsep in name):
    return os.path.exists(name) or not _is_tfds_name(name)
  return os.path.isdir(name) and not _is_tfds_name(name)


def check_name(name: str) -> None:
  """Raises a ValueError (with close matches) for a dataset name that is
  neither ``digits``, an image folder nor a TFDS name; reads no data. Lets
  callers refuse a typo before choosing models or loading weights."""
  if not isinstance(name, str) or not name.strip():
    raise ValueError(f"name must be a TFDS dataset name or a folder path, got "
                     f"{name!r}.")
  if name == "digits" or _is_folder(name) or _is_tfds_name(name):
    return
  # pylint: disable-next=g-import-not-at-top
  from sfda_jax.data._tfds import unknown_dataset_error
  raise unknown_dataset_error(name)


def load(name: str, split: str = "train", num_examples: int | None = None,
         data_dir: str | None = None, seed: int = 0,
         test_fraction: float | None = None,
         skip_unreadable: bool = False) -> ImageDataset:
  """Loads a TFDS dataset or an image folder as an :class:`ImageDataset`.

  TFDS datasets are read from ``data_dir`` (default ``$TFDS_DATA_DIR`` or
  ``~/tensorflow_datasets``) through ``tfds.builder(name, data_dir=...)``.
  When not prepared there, they are downloaded and prepared if a network is
  reachable (probed in ~3 s); otherwise loading fails at once with
  instructions. ``fashion_mnist`` is prepared offline from Debian's
  ``dataset-fashion-mnist`` files when they are installed.

  Single-label rule: the dataset's scalar class label; ``voc2007`` /
  ``voc2012`` (TFDS ``voc/2007`` / ``voc/2012``) use the label of each image's
  largest object (by box area, first on ties).

  Args:
    name: a TFDS name (``cifar10``, ``oxford_flowers102``, ``voc2007``,
      ``fashion_mnist``, ``name/config:version``...), ``digits``
      (scikit-learn's 1,797 8 x 8 handwritten digits, offline; fixed
      stratified ``train`` / ``test`` splits of 1,258 / 539 images, see
      ``sfda_jax/data/_digits.py``), or the path of an image folder with one
      sub-folder per class (sorted names = classes; a folder called
      ``digits`` is reached as ``./digits``).
    split: TFDS split (``train``, ``test``, slices like ``train[:10%]``); for
      a folder only a name (the whole folder is one split), unless
      ``test_fraction`` is given: then ``"train"`` or ``"test"``, the part.
    num_examples: size ``n`` of a class-stratified random subset (each class
      gets its proportional share; remainders go to the largest fractional
      shares), selected as a streaming filter over the records and kept in
      stored order. ``None``: the whole split (or part).
    data_dir: TFDS data directory.
    seed: seed of the subset and of the holdout: the same seed gives the
      same examples in the same order.
    test_fraction: image folders only: partition the folder into disjoint
      ``"train"`` and ``"test"`` parts, holding out this share of each class
      for test (seeded, class-stratified; per class ``t_k = min(c_k - 1,
      max(1, round_half_up(test_fraction c_k)))`` of its ``c_k`` images, see
      :func:`~sfda_jax.data.stratified_split`). ``load(f, "train",
      test_fraction=x, seed=s)`` and ``load(f, "test", test_fraction=x,
      seed=s)`` never share an image; ``num_examples`` then subsamples the
      part. ``None`` (default): no partition.
    skip_unreadable: image folders only. ``False`` (default): an image the
      decoder would refuse (unreadable, empty, truncated, not an image,
      too large; found by a header check of every file when loading) is an
      :class:`UnreadableImageError` naming it. ``True``: such files are
      left out, and every other image is decoded once up front so that any
      the decoder refuses is left out too; each is logged with its reason,
      then the count, and the fingerprint covers only the images used (as
      if the skipped files were deleted). See ``sfda_jax/data/_folder.py``.

  Returns:
    The dataset. Its ``batches(preprocessing, batch_size)`` streams
    ``(images [B, S, S, 3] float32, labels [B] int64)``; an image that fails
    to decode there raises :class:`UnreadableImageError` naming it.

  Raises:
    ValueError: unknown dataset (close TFDS names suggested), unknown split
      (available ones listed), empty folder or class folder, ``num_examples``
      larger than the split; ``test_fraction`` outside (0, 1), given for a
      TFDS dataset, or with a split other than ``train`` / ``test``; a class
      with a single image when partitioning (named); ``skip_unreadable``
      for a dataset that is not an image folder.
    UnreadableImageError: (a ValueError) an image file the decoder would
      refuse, named relative to the folder with the reason.
    FileNotFoundError: the folder does not exist.
    DatasetNotPreparedError: (a FileNotFoundError) the TFDS dataset is not
      prepared and there is no network to download it.

  Example:
    >>> import numpy as np
    >>> ds = load("fashion_mnist", split="test", num_examples=200, seed=0)
    >>> len(ds), np.bincount(ds.labels)
    (200, array([20, 20, 20, 20, 20, 20, 20, 20, 20, 20]))
  """
  if not isinstance(name, str) or not name.strip():
    raise ValueError(f"name must be a TFDS dataset name or a folder path, got "
                     f"{name!r}.")
  if not isinstance(split, str) or not split:
    raise ValueError(f"split must be a non-empty string, got {split!r}.")
  _check_test_fraction(test_fraction, split)
  folder = name != "digits" and _is_folder(name)
  if skip_unreadable and not folder:
    raise ValueError(
        f"skip_unreadable leaves unreadable files of an image folder out; "
        f"{name!r} is not one (TFDS and 'digits' records are written by "
        "their builders: one that fails to decode means damaged prepared "
        "files, to be prepared again).")
  if name == "digits":
    if test_fraction is not None:
      raise ValueError("test_fraction partitions an image folder; 'digits' "
                       "has fixed 'train' and 'test' splits already.")
    # pylint: disable-next=g-import-not-at-top
    from sfda_jax.data._digits import DigitsSource
    return ImageDataset(DigitsSource(split), num_examples, seed, None)
  if folder:
    # pylint: disable-next=g-import-not-at-top
    from sfda_jax.data._folder import FolderSource
    source = FolderSource(name, split, skip_unreadable)
  else:
    if test_fraction is not None:
      raise ValueError(
          f"test_fraction partitions an image folder; {name!r} is a TFDS "
          "dataset, whose splits are already disjoint: use split='train' and "
          "split='test', or slices such as 'train[:80%]' / 'train[80%:]'.")
    # pylint: disable-next=g-import-not-at-top
    from sfda_jax.data._tfds import TfdsSource
    source = TfdsSource(name, split, data_dir)
  return ImageDataset(source, num_examples, seed, test_fraction)


def load_train_test(dataset: str, test_dataset: str | None = None,
                    train_split: str = "train", test_split: str = "test",
                    test_fraction: float | None = None,
                    num_examples: int | None = None,
                    test_examples: int | None = None,
                    data_dir: str | None = None, seed: int = 0,
                    skip_unreadable: bool = False
                    ) -> tuple[ImageDataset, ImageDataset, dict[str, Any]]:
  """A training set and a test set that share no image, and how they were made.

  One of three methods, by the arguments:

  * ``"holdout"``: ``dataset`` is an image folder (one split) and no
    ``test_dataset``: the folder is partitioned by ``load(...,
    test_fraction=test_fraction)`` (default 0.2) with ``seed``;
    ``train_split`` / ``test_split`` name the parts (``"train"`` /
    ``"test"``).
  * ``"named_splits"``: ``dataset`` is a TFDS dataset and no
    ``test_dataset``: its ``train_split`` and ``test_split``, as TFDS defines
    them (already disjoint).
  * ``"test_dataset"``: the test set is ``load(test_dataset, test_split)``
    (a folder: the whole folder), the training set ``load(dataset,
    train_split)``.

  Either set is then a stratified subset of ``num_examples`` /
  ``test_examples`` (``None``: all). Before returning, the sets are checked
  to share no image (:func:`check_disjoint`: same folder and split, same
  files, same TFDS records) and, when both name their classes, to name them
  alike.

  Args:
    dataset: TFDS name or image folder to train on.
    test_dataset: a separate TFDS name or folder to test on, or ``None``.
    train_split: split (or holdout part) to train on.
    test_split: split (or holdout part) to test on.
    test_fraction: the holdout's test share; only for the ``"holdout"``
      method (``None``: :data:`DEFAULT_TEST_FRACTION`).
    num_examples: training subset size, ``None`` for all.
    test_examples: test subset size, ``None`` for all.
    data_dir: TFDS data directory.
    seed: seed of the holdout and of both subsets.
    skip_unreadable: leave unreadable images out of the image folders among
      ``dataset`` and ``test_dataset`` (see :func:`load`); ignored for a
      TFDS dataset.

  Returns:
    ``(train, test, split)``; ``split`` is a JSON-ready record: ``method``,
    ``description`` (one sentence), ``seed``, ``test_fraction`` (``None``
    unless held out), ``train`` and ``test`` (each
    :meth:`ImageDataset.describe`: source, split, holdout, pool size, count,
    per-class counts, fingerprint) and ``shared_images`` (0).

  Raises:
    ValueError: the sets overlap ("train and test splits overlap: N of M
      test images are training images; ..."), their class names differ,
      ``test_fraction`` given where nothing is held out, or anything
      :func:`load` raises.

  Example:
    A folder of 40 cat and 60 dog images (any folder of class sub-folders):

    >>> import os, tempfile, numpy as np
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp()
    >>> for offset, (name, count) in enumerate((("cat", 40), ("dog", 60))):
    ...   os.makedirs(os.path.join(root, name))
    ...   for i in range(count):
    ...     pixels = np.full((8, 8, 3), 100 * offset + i, np.uint8)
    ...     Image.fromarray(pixels).save(os.path.join(root, name, f"{i}.png"))
    >>> train, test, split = load_train_test(root, test_fraction=0.25)
    >>> len(train), len(test)
    (75, 25)
    >>> split["method"], split["train"]["per_class"]
    ('holdout', {'cat': 30, 'dog': 45})
  """
  holdout = test_dataset is None and _is_folder(dataset)
  if test_fraction is not None and not holdout:
    raise ValueError(
        "test_fraction holds out part of an image folder, but "
        + (f"the test set is test_dataset={test_dataset!r}"
           if test_dataset is not None else
           f"{dataset!r} is a TFDS dataset with its own splits")
        + "; drop test_fraction.")
  if holdout:
    method = "holdout"
    fraction = (DEFAULT_TEST_FRACTION if test_fraction is None
                else test_fraction)
    for split in (train_split, test_split):
      _check_test_fraction(fraction, split)
    train = load(dataset, train_split, num_examples, data_dir, seed, fraction,
                 skip_unreadable)
    test = load(dataset, test_split, test_examples, data_dir, seed, fraction,
                skip_unreadable)
    description = (
        f"one image folder partitioned into disjoint parts: per class, "
        f"round_half_up({fraction} x images) (at least 1, leaving at least 1)"
        f" held out for test, seed {seed}; the {train_split!r} part trains "
        f"and the {test_split!r} part tests")
  else:
    fraction = None
    method = "named_splits" if test_dataset is None else "test_dataset"
    test_name = dataset if test_dataset is None else test_dataset
    train = load(dataset, train_split, num_examples, data_dir, seed,
                 skip_unreadable=skip_unreadable and _is_folder(dataset))
    test = load(test_name, test_split, test_examples, data_dir, seed,
                skip_unreadable=skip_unreadable and _is_folder(test_name))
    description = (
        f"the {train_split!r} and {test_split!r} splits of {dataset!r}"
        if test_dataset is None else
        f"split {train_split!r} of {dataset!r} trains, split {test_split!r} "
        f"of the separate test dataset {test_dataset!r} tests")
  if (train.class_names is not None and test.class_names is not None
      and list(train.class_names) != list(test.class_names)):
    raise ValueError(
        f"the test set's classes {test.class_names} differ from the "
        f"training set's {train.class_names}; labels would not match: give "
        "the test set the same classes (same names, same order).")
  check_disjoint(train, test, hint=(
      "An image folder given without test_dataset is partitioned for you "
      f"(test_fraction; parts {' and '.join(map(repr, HOLDOUT_PARTS))}); "
      "otherwise pass a different test_dataset or test_split "
      "(experiments.finetune: --test_dataset, --test_split, "
      "--test_fraction)."))
  return train, test, {
      "method": method,
      "description": description,
      "seed": seed,
      "test_fraction": fraction,
      "train": train.describe(),
      "test": test.describe(),
      "shared_images": 0,
  }


def prepare_fashion_mnist(data_dir: str | None = None) -> str:
  """Prepares TFDS ``fashion_mnist`` offline from Debian's IDX files.

  ``load("fashion_mnist")`` calls this when needed; call it directly to
  prepare ahead of time. See
  :func:`sfda_jax.data._fashion_mnist.prepare_fashion_mnist`.

  Args:
    data_dir: TFDS data directory (default ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``).

  Returns:
    The dataset folder, ``data_dir/fashion_mnist/<version>``.

  Raises:
    FileNotFoundError: the files are missing (``apt-get install -y
      dataset-fashion-mnist``).
  """
  # pylint: disable-next=g-import-not-at-top
  from sfda_jax.data import _fashion_mnist
  return _fashion_mnist.prepare_fashion_mnist(data_dir)
