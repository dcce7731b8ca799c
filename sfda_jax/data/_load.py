"""`load`: a TFDS name or an image folder -> `ImageDataset`."""

from __future__ import annotations

import os

from sfda_jax.data._dataset import ImageDataset

__all__ = ["load", "prepare_fashion_mnist"]

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


def load(name: str, split: str = "train", num_examples: int | None = None,
         data_dir: str | None = None, seed: int = 0) -> ImageDataset:
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
      ``fashion_mnist``, ``name/config:version``...), or the path of an image
      folder with one sub-folder per class (sorted names = classes).
    split: TFDS split (``train``, ``test``, slices like ``train[:10%]``); for
      a folder only a name.
    num_examples: size ``n`` of a class-stratified random subset (each class
      gets its proportional share; remainders go to the largest fractional
      shares), selected as a streaming filter over the records and kept in
      stored order. ``None``: the whole split.
    data_dir: TFDS data directory.
    seed: seed of the subset: the same seed gives the same examples in the
      same order.

  Returns:
    The dataset. Its ``batches(preprocessing, batch_size)`` streams
    ``(images [B, S, S, 3] float32, labels [B] int64)``.

  Raises:
    ValueError: unknown dataset (close TFDS names suggested), unknown split
      (available ones listed), empty folder or class folder, ``num_examples``
      larger than the split.
    FileNotFoundError: the folder does not exist.
    DatasetNotPreparedError: (a FileNotFoundError) the TFDS dataset is not
      prepared and there is no network to download it.

  Example:
    >>> ds = load("fashion_mnist", split="test", num_examples=200, seed=0)
    >>> len(ds), np.bincount(ds.labels)
    (200, array([20, 20, 20, 20, 20, 20, 20, 20, 20, 20]))
  """
  if not isinstance(name, str) or not name.strip():
    raise ValueError(f"name must be a TFDS dataset name or a folder path, got "
                     f"{name!r}.")
  if not isinstance(split, str) or not split:
    raise ValueError(f"split must be a non-empty string, got {split!r}.")
  if _is_folder(name):
    # pylint: disable-next=g-import-not-at-top
    from sfda_jax.data._folder import FolderSource
    source = FolderSource(name, split)
  else:
    # pylint: disable-next=g-import-not-at-top
    from sfda_jax.data._tfds import TfdsSource
    source = TfdsSource(name, split, data_dir)
  return ImageDataset(source, num_examples, seed)


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
