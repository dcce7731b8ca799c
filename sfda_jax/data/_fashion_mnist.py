"""Fashion-MNIST as a real TFDS dataset, prepared offline from Debian's files.

Debian's ``dataset-fashion-mnist`` package installs the original gzipped IDX
files (``apt-get install dataset-fashion-mnist``)::

  /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz  [60000, 28, 28]
  /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz  [60000]
  /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz   [10000, 28, 28]
  /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz   [10000]

:func:`prepare_fashion_mnist` runs TFDS's own ``fashion_mnist`` builder (same
name, version, features, class names, split sizes and record keys, hence the
same record order) with only its download step replaced by reading those
files, so ``tfds.builder("fashion_mnist", data_dir=...)`` loads the result
like the dataset ``tfds build fashion_mnist`` writes with a network: same
pixels and labels in the same order (only the PNG compression of each image
differs). It is generated in a temporary folder inside ``data_dir`` and
renamed into place, so an interrupted run never leaves a half-written dataset
behind. Preparing takes about 10 s on one idle CPU core.
"""

from __future__ import annotations

import contextlib
import gzip
import inspect
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib

from absl import logging
from etils import epath
import numpy as np

from sfda_jax.data._tf import tfds

__all__ = ["DEBIAN_DIR", "prepare_fashion_mnist", "read_idx",
           "debian_files_present"]

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_SPLIT_SIZES = {"train": 60_000, "test": 10_000}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
  """Reads a (gzipped) IDX file, the MNIST family's array format.

  The header is big-endian: two zero bytes, a type code (0x08 = uint8), the
  number of dimensions ``d``, then ``d`` uint32 sizes; the data follow in C
  order.

  Args:
    path: an ``.idx*`` file, gzipped when the name ends in ``.gz``.

  Returns:
    The array, e.g. images ``[N, 28, 28]`` uint8 or labels ``[N]`` uint8.

  Raises:
    ValueError: the file is not a valid IDX file (bad magic, truncated).
  """
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise ValueError(f"{path} is not an IDX file (bad magic number). "
                     "Reinstall it: apt-get install --reinstall "
                     "dataset-fashion-mnist")
  type_code, ndim = data[2], data[3]
  if type_code not in _IDX_DTYPES:
    raise ValueError(f"{path}: unknown IDX type code 0x{type_code:02x}.")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"{path}: IDX header is truncated.")
  shape = tuple(int(s) for s in np.frombuffer(data[4:header], ">u4"))
  dtype = np.dtype(_IDX_DTYPES[type_code])
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(data) - header != expected:
    raise ValueError(f"{path}: IDX header says shape {shape} ({expected} "
                     f"bytes) but the file holds {len(data) - header} bytes "
                     "of data; the file is truncated or corrupt.")
  return np.frombuffer(data, dtype, offset=header).reshape(shape)


def debian_files_present(source_dir: str = DEBIAN_DIR) -> bool:
  """Whether all four Fashion-MNIST IDX files exist in ``source_dir``."""
  return all(os.path.isfile(os.path.join(source_dir, f))
             for pair in _FILES.values() for f in pair)


class _LocalFashionMNIST(tfds.image_classification.FashionMNIST,
                         skip_registration=True):
  """TFDS's ``fashion_mnist`` builder reading local IDX files, no download."""

  name = "fashion_mnist"

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # The parent's source file, so checksum and metadata look-ups stay those
    # of TFDS's own builder. (TFDS 4.9.10's default resolution imports
    # `importlib_resources`, which it does not install on Python >= 3.9.)
    return epath.Path(inspect.getfile(tfds.image_classification.FashionMNIST))

  def __init__(self, *, source_dir: str, **kwargs):
    self._source_dir = source_dir
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return [
        tfds.core.SplitGenerator(
            name=split,
            gen_kwargs=dict(
                num_examples=_SPLIT_SIZES[split],
                data_path=os.path.join(self._source_dir, images),
                label_path=os.path.join(self._source_dir, labels)))
        for split, (images, labels) in _FILES.items()
    ]

  def _generate_examples(self, num_examples, data_path, label_path):
    images = read_idx(data_path)
    labels = read_idx(label_path)
    if images.shape != (num_examples, 28, 28) or labels.shape != (
        num_examples,):
      raise ValueError(
          f"Fashion-MNIST files {data_path} / {label_path} hold images "
          f"{images.shape} and labels {labels.shape}; expected "
          f"({num_examples}, 28, 28) and ({num_examples},). Reinstall them: "
          "apt-get install --reinstall dataset-fashion-mnist")
    labels = labels.astype(np.int64)
    # PNG-encoded here (much faster than TFDS's per-image TensorFlow call);
    # the decoded pixels are the same. Same keys as TFDS's own builder, hence
    # the same record order.
    for index in range(num_examples):
      yield index, {"image": _encode_png(images[index]),
                    "label": labels[index]}


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
  return (struct.pack(">I", len(payload)) + kind + payload
          + struct.pack(">I", zlib.crc32(kind + payload)))


def _encode_png(image: np.ndarray) -> bytes:
  """PNG bytes of one grayscale image ``[H, W]`` uint8 (8-bit, no filter)."""
  height, width = image.shape
  rows = np.zeros((height, width + 1), np.uint8)  # Filter byte 0 per row.
  rows[:, 1:] = image
  return b"".join((
      b"\x89PNG\r\n\x1a\n",
      _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0,
                                      0)),
      _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)),
      _png_chunk(b"IEND", b""),
  ))


def _default_data_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR",
                        os.path.join("~", "tensorflow_datasets"))


_TMP_PREFIX = ".fashion_mnist-incomplete-"
_STALE_AFTER_S = 6 * 3600


def _remove_stale_temporaries(data_dir: str) -> None:
  """Deletes temporary folders that killed runs left (older than 6 h)."""
  now = time.time()
  for entry in os.scandir(data_dir):
    if entry.name.startswith(_TMP_PREFIX) and entry.is_dir():
      try:
        if now - entry.stat().st_mtime > _STALE_AFTER_S:
          logging.info("Removing stale %s.", entry.path)
          shutil.rmtree(entry.path, ignore_errors=True)
      except OSError:
        pass


def prepare_fashion_mnist(data_dir: str | None = None,
                          source_dir: str = DEBIAN_DIR) -> str:
  """Writes the TFDS ``fashion_mnist`` dataset from local IDX files.

  Does nothing when the dataset is already prepared in ``data_dir``. Safe to
  run concurrently: each run writes its own temporary folder and the first
  rename wins.

  Args:
    data_dir: TFDS data directory; defaults to ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``. A local path.
    source_dir: folder holding the four ``*-ubyte.gz`` files.

  Returns:
    The prepared dataset's folder, ``data_dir/fashion_mnist/<version>``.

  Raises:
    FileNotFoundError: the IDX files are missing.
    FileExistsError: an incomplete dataset folder is in the way.
    ValueError: the IDX files are corrupt.
  """
  data_dir = os.path.abspath(os.path.expanduser(data_dir
                                                or _default_data_dir()))
  if not debian_files_present(source_dir):
    raise FileNotFoundError(
        f"Fashion-MNIST files not found in {source_dir} (need "
        f"{', '.join(f for pair in _FILES.values() for f in pair)}). Install "
        "them with: apt-get install -y dataset-fashion-mnist")
  version = str(_LocalFashionMNIST.VERSION)
  final = os.path.join(data_dir, "fashion_mnist", version)
  if os.path.isfile(os.path.join(final, "dataset_info.json")):
    return final
  if os.path.exists(final):
    raise FileExistsError(
        f"{final} exists but holds no dataset_info.json (left by an "
        "interrupted TFDS run?); delete that folder and retry.")
  os.makedirs(data_dir, exist_ok=True)
  _remove_stale_temporaries(data_dir)
  start = time.perf_counter()
  logging.info("Preparing TFDS fashion_mnist %s in %s from %s.", version,
               data_dir, source_dir)
  tmp_root = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=data_dir)
  try:
    builder = _LocalFashionMNIST(source_dir=source_dir, data_dir=tmp_root)
    # TFDS prints "Downloading and preparing dataset ..." to stdout; a
    # library keeps stdout for its caller (a report, a doctest), so its
    # messages go to stderr with the progress bars.
    with contextlib.redirect_stdout(sys.stderr):
      builder.download_and_prepare(
          download_dir=os.path.join(tmp_root, "downloads"),
          download_config=tfds.download.DownloadConfig(
              compute_stats=tfds.download.ComputeStatsMode.SKIP))
    os.makedirs(os.path.dirname(final), exist_ok=True)
    try:
      os.rename(os.path.join(tmp_root, "fashion_mnist", version), final)
    except OSError:
      if not os.path.isfile(os.path.join(final, "dataset_info.json")):
        raise
      logging.info("fashion_mnist was prepared concurrently in %s.", final)
  finally:
    shutil.rmtree(tmp_root, ignore_errors=True)
  logging.info("Prepared fashion_mnist in %s (%.1f s).", final,
               time.perf_counter() - start)
  return final
