"""TFDS datasets as `Source`s: builder look-up, offline-aware preparation.

Loading never hangs without a network: when a dataset is not prepared in
``data_dir`` the network is probed first (a ~3 s TCP connect), and an
unreachable network fails at once with instructions. ``fashion_mnist`` is
prepared offline from Debian's ``dataset-fashion-mnist`` files when present.

Single-label rules:
  * datasets whose supervised label (or ``label`` feature) is a scalar
    ``ClassLabel``: that label (cifar10/100, dtd, oxford_flowers102,
    oxford_iiit_pet, food101, caltech101, cars196, sun397, fashion_mnist, ...);
  * ``voc`` (``voc2007`` = ``voc/2007``, ``voc2012`` = ``voc/2012``): the label
    of the image's largest object by bounding-box area (the first listed on a
    tie), difficult objects included.
Datasets with no single class label (multi-label, detection-only,
regression) raise ValueError.
"""

from __future__ import annotations

import difflib
import os
import urllib.parse
from typing import Any, Callable

from absl import logging
import numpy as np

from sfda_jax import network
from sfda_jax.data import _fashion_mnist
from sfda_jax.data._dataset import (DatasetNotPreparedError, Source,
                                    UnreadableImageError)
from sfda_jax.data._tf import tf, tfds

__all__ = ["ALIASES", "DatasetNotPreparedError", "TfdsSource",
           "network_available"]

# Conventional names from the transferability literature -> TFDS names.
ALIASES = {"voc2007": "voc/2007", "voc2012": "voc/2012"}

_PROBE_HOSTS = (("storage.googleapis.com", 443),)
_LABEL_BATCH = 8192
# Labels already read in this process: (dataset folder, identity, split) ->
# labels [N]. Not used under mocked TFDS, whose records vary per context.
_LABEL_CACHE: dict[tuple[str, str, str], np.ndarray] = {}


def network_available(extra_hosts: tuple[str, ...] = (),
                      timeout: float = network.PROBE_TIMEOUT_S
                      ) -> tuple[bool, str]:
  """Probes for a network in at most ``timeout`` seconds
  (:func:`sfda_jax.network.reachable`): Google Cloud Storage (TFDS's mirror)
  and ``extra_hosts`` (port 443), e.g. the dataset's homepage host.

  Returns:
    ``(reachable, detail)``; ``detail`` names what was tried.
  """
  return network.reachable(
      list(_PROBE_HOSTS) + [(h, 443) for h in extra_hosts if h], timeout)


def _download_is_patched() -> bool:
  """Whether `download_and_prepare` was replaced (tfds.testing.mock_data)."""
  method = tfds.core.DatasetBuilder.download_and_prepare
  module = getattr(method, "__module__", "") or ""
  return not module.startswith("tensorflow_datasets.core")


def _close_matches(name: str) -> list[str]:
  names = tfds.list_builders(with_community_datasets=False)
  base = name.split(":")[0].split("/")[0].lower()
  return difflib.get_close_matches(base, names, n=5, cutoff=0.6)


def make_builder(name: str, data_dir: str | None):
  """``tfds.builder(name, data_dir=...)`` with an actionable unknown-name error.

  Raises:
    ValueError: no such dataset (with close matches) or config.
  """
  spec = ALIASES.get(name, name)
  try:
    return tfds.builder(spec, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise unknown_dataset_error(name, spec) from e


def unknown_dataset_error(name: str, spec: str | None = None) -> ValueError:
  """The error for a dataset name that is neither a TFDS dataset nor an
  existing folder, with close TFDS matches."""
  matches = _close_matches(spec or name)
  if name != "digits" and difflib.get_close_matches(name, ["digits"],
                                                    cutoff=0.6):
    matches = ["digits"] + matches
  hint = (f" Did you mean {', '.join(repr(m) for m in matches)}?"
          if matches else "")
  return ValueError(
      f"Unknown dataset {name!r}: it is neither a TFDS dataset nor an "
      f"existing folder.{hint} See tfds.list_builders() for TFDS names, or "
      "pass the path of an image folder (one sub-folder per class).")


def _data_dir_root(builder) -> str:
  root = getattr(builder, "_data_dir_root", None)
  return os.fspath(root) if root else os.path.dirname(
      os.path.dirname(os.fspath(builder.data_dir)))


def _prepare_hint(builder, spec: str) -> str:
  manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
  text = (
      f"On a machine with network run `tfds build {spec} --data_dir=DIR` (or "
      f"tfds.builder({spec!r}, data_dir=DIR).download_and_prepare()), copy "
      "DIR here and pass data_dir=DIR (--data_dir=DIR).")
  if manual:
    text += (" This dataset also needs files downloaded by hand: "
             + " ".join(str(manual).split()))
  return text


def ensure_prepared(builder, name: str):
  """Makes sure ``builder``'s dataset is on disk; returns a usable builder.

  Raises:
    DatasetNotPreparedError: not prepared, and no network to download it.
    FileNotFoundError: (fashion_mnist) no Debian files and no network.
  """
  if builder.is_prepared():
    return builder
  if _download_is_patched():  # e.g. under tfds.testing.mock_data.
    builder.download_and_prepare()
    return builder
  spec = ALIASES.get(name, name)
  root = _data_dir_root(builder)
  if builder.name == "fashion_mnist" and _fashion_mnist.debian_files_present():
    _fashion_mnist.prepare_fashion_mnist(root)
    return tfds.builder(spec, data_dir=root)
  homepage = urllib.parse.urlsplit(builder.info.homepage or "").hostname
  reachable, detail = network_available((homepage,) if homepage else ())
  if not reachable:
    extra = ""
    if builder.name == "fashion_mnist":
      extra = (" Or install the Fashion-MNIST files offline with `apt-get "
               "install -y dataset-fashion-mnist` (from "
               f"{_fashion_mnist.DEBIAN_DIR}); they are then prepared "
               "automatically.")
    raise DatasetNotPreparedError(
        f"TFDS dataset {spec!r} ({builder.info.full_name}) is not prepared "
        f"in data_dir {root!r} (no {os.fspath(builder.data_dir)}"
        f"/dataset_info.json) and cannot be downloaded: {detail}. "
        + _prepare_hint(builder, spec) + extra)
  logging.info("Downloading and preparing TFDS %s into %s (%s).",
               builder.info.full_name, root, detail)
  try:
    builder.download_and_prepare()
  except ModuleNotFoundError as e:
    if "importlib_resources" in str(e):
      raise RuntimeError(
          "tensorflow-datasets needs the `importlib_resources` package to "
          "download datasets but does not install it on Python >= 3.9: run "
          "`pip install importlib_resources` and retry.") from e
    raise
  return builder


def _scalar_class_label(features, key: str | None):
  if key and key in features and isinstance(features[key],
                                            tfds.features.ClassLabel):
    feature = features[key]
    if not feature.shape:
      return feature
  return None


def _largest_object_label(example: dict[str, Any]) -> tf.Tensor:
  """VOC rule: label of the object with the largest box (first on ties)."""
  boxes = example["objects"]["bbox"]  # [n, 4]: ymin, xmin, ymax, xmax.
  labels = example["objects"]["label"]
  tf.debugging.assert_positive(tf.shape(labels)[0],
                               message="VOC image without objects")
  areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  first = tf.where(tf.equal(areas, tf.reduce_max(areas)))[0, 0]
  return tf.cast(tf.gather(labels, first), tf.int64)


class TfdsSource(Source):
  """One split of a prepared TFDS dataset, read in its stored order."""

  def __init__(self, name: str, split: str = "train",
               data_dir: str | None = None):
    """Finds, prepares if needed, and validates ``name``/``split``.

    Raises:
      ValueError: unknown dataset or split; no image or single class label.
      DatasetNotPreparedError: not prepared and no network.
    """
    if data_dir is not None:
      data_dir = os.path.expanduser(data_dir)
    builder = ensure_prepared(make_builder(name, data_dir), name)
    info = builder.info
    features = info.features
    self._builder = builder
    self.name = name
    self.split = split
    # Image feature.
    keys = info.supervised_keys if isinstance(info.supervised_keys,
                                              tuple) else None
    candidates = ([keys[0]] if keys and isinstance(keys[0], str) else []) + [
        "image"] + [k for k, f in features.items()
                    if isinstance(f, tfds.features.Image)]
    self._image_key = next(
        (k for k in candidates if k in features
         and isinstance(features[k], tfds.features.Image)), None)
    if self._image_key is None:
      raise ValueError(f"TFDS dataset {name!r} has no image feature "
                       f"(features: {sorted(features.keys())}).")
    # Label rule.
    label_keys = ([keys[1]] if keys and isinstance(keys[1], str) else []) + [
        "label"]
    label_key = next((k for k in label_keys
                      if _scalar_class_label(features, k) is not None), None)
    if label_key is not None:
      label_feature = features[label_key]
      self._label_fn: Callable[[Any], tf.Tensor] = (
          lambda ex: tf.cast(ex[label_key], tf.int64))
      rule = label_key
    elif builder.name == "voc":
      label_feature = features["objects"].feature["label"]
      self._label_fn = _largest_object_label
      rule = "largest_object"
    else:
      raise ValueError(
          f"TFDS dataset {name!r} has no single class label per image "
          f"(features: {sorted(features.keys())}); only single-label "
          "classification datasets (and voc, by its largest object) are "
          "supported.")
    self.class_names = list(label_feature.names)
    self.num_classes = int(label_feature.num_classes)
    self.identity = f"tfds:{info.full_name}:label={rule}"
    # Split.
    self._num_records: int | None = None
    if len(info.splits):
      try:
        self._num_records = int(info.splits[split].num_examples)
      except (KeyError, ValueError, TypeError) as e:
        raise ValueError(
            f"TFDS dataset {name!r} has no split {split!r}; available splits:"
            f" {sorted(info.splits.keys())} (TFDS slices such as "
            "'train[:10%]' or 'train+test' work too).") from e
    # Otherwise the split sizes are unknown (e.g. under mock_data): counted
    # from the labels.
    self._labels: np.ndarray | None = None

  def _raw_records(self):
    return self._builder.as_dataset(
        split=self.split, shuffle_files=False,
        decoders={self._image_key: tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(interleave_cycle_length=1,
                                    try_autocache=False))

  def records(self):
    image_key, label_fn = self._image_key, self._label_fn
    return self._raw_records().map(
        lambda ex: (ex[image_key], label_fn(ex)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def all_labels(self) -> np.ndarray:
    cache_key = (os.fspath(self._builder.data_dir), self.identity, self.split)
    if self._labels is None and not _download_is_patched():
      self._labels = _LABEL_CACHE.get(cache_key)
    if self._labels is None:
      label_fn = self._label_fn
      ds = self._raw_records().map(label_fn, num_parallel_calls=
                                   tf.data.AUTOTUNE, deterministic=True)
      chunks = list(ds.batch(_LABEL_BATCH).as_numpy_iterator())
      labels = (np.concatenate(chunks) if chunks
                else np.zeros((0,), np.int64)).astype(np.int64)
      if self._num_records is not None and len(labels) != self._num_records:
        raise ValueError(
            f"TFDS dataset {self.name!r} split {self.split!r} yielded "
            f"{len(labels)} records but its dataset_info.json says "
            f"{self._num_records}; the prepared files are incomplete: "
            "delete them and prepare the dataset again.")
      labels.setflags(write=False)
      self._labels = labels
      if not _download_is_patched():
        _LABEL_CACHE[cache_key] = labels
    return self._labels

  def record_ids(self) -> np.ndarray:
    # The shard file and index of each record: TFDS resolves slices and
    # unions ('train[:10%]', 'train+test') to file instructions, read in
    # order here (shuffle_files=False, one file at a time), so a slice of a
    # split shares ids with the split. Without split metadata (mock_data):
    # the split string and position.
    name = self._builder.info.full_name
    try:
      instructions = self._builder.info.splits[self.split].file_instructions
    except (KeyError, ValueError, TypeError, AttributeError):
      instructions = None
    ids = []
    for fi in instructions or ():
      shard = os.path.basename(os.fspath(fi.filename))
      take = fi.take if fi.take >= 0 else fi.examples_in_shard - fi.skip
      ids.extend(f"tfds:{name}/{shard}#{j}"
                 for j in range(fi.skip, fi.skip + take))
    if len(ids) != self.num_records():
      ids = [f"tfds:{name}|split={self.split}#{i}"
             for i in range(self.num_records())]
    return np.asarray(ids)

  def num_records(self) -> int:
    if self._num_records is None:
      self._num_records = len(self.all_labels())
    return self._num_records

  def decode(self, raw):
    # pylint: disable-next=g-import-not-at-top
    from sfda_jax.data._pipeline import decode_image
    return decode_image(raw)

  def unreadable_error(self, problems):
    names = [f"TFDS dataset {self.name!r} split {self.split!r}, record {i}"
             for i, _ in problems]
    folder = os.fspath(self._builder.data_dir)
    return UnreadableImageError(
        f"{names[0]}: its image cannot be decoded ({problems[0][1]}). TFDS "
        f"wrote these records itself, so the prepared files in {folder} are "
        "damaged: delete that folder and prepare the dataset again (`tfds "
        f"build {ALIASES.get(self.name, self.name)}`).", names)
