"""Image-folder datasets: one sub-folder per class.

::

  root/
    cat/  001.jpg  a/002.png ...
    dog/  x.jpeg ...

The sorted sub-folder names are the classes (label = position); each class's
images (``.jpg .jpeg .png .bmp .gif``, any case, searched recursively) are
ordered by relative path. Hidden entries (a leading ``.``) and other files are
ignored.

A folder is ONE split: ``split`` only names it, unless ``load(folder,
split=..., test_fraction=f)`` partitions it into disjoint, seeded,
class-stratified ``"train"`` and ``"test"`` parts (see
:func:`sfda_jax.data.stratified_split`).
"""

from __future__ import annotations

import hashlib
import os

from absl import logging
import numpy as np

from sfda_jax.data._dataset import Source

__all__ = ["FolderSource", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def _image_files(class_dir: str) -> list[str]:
  """Sorted relative paths of the images under ``class_dir``."""
  found = []
  for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    for filename in filenames:
      if (not filename.startswith(".")
          and filename.lower().endswith(IMAGE_EXTENSIONS)):
        found.append(os.path.relpath(os.path.join(dirpath, filename),
                                     class_dir))
  return sorted(found)


class FolderSource(Source):
  """The images of a class-per-sub-folder directory."""

  single_split = True

  def __init__(self, path: str, split: str = "train"):
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(root):
      raise FileNotFoundError(
          f"Image folder {root} does not exist. Pass a TFDS dataset name or "
          "a folder holding one sub-folder of images per class.")
    if not os.path.isdir(root):
      raise ValueError(f"{root} is a file, not a folder of class sub-folders.")
    classes = sorted(e.name for e in os.scandir(root)
                     if e.is_dir() and not e.name.startswith("."))
    if not classes:
      raise ValueError(
          f"Image folder {root} has no class sub-folders; put each class's "
          f"images ({', '.join(IMAGE_EXTENSIONS)}) in its own sub-folder.")
    paths, labels, digest = [], [], hashlib.sha256()
    for label, name in enumerate(classes):
      class_dir = os.path.join(root, name)
      files = _image_files(class_dir)
      if not files:
        raise ValueError(
            f"Class folder {class_dir} holds no images (looked for "
            f"{', '.join(IMAGE_EXTENSIONS)}); add images or remove it.")
      for rel in files:
        full = os.path.join(class_dir, rel)
        stat = os.stat(full)
        digest.update(f"{name}/{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                      .encode())
        paths.append(full)
        labels.append(label)
    logging.info("Image folder %s: %d images in %d classes.", root,
                 len(paths), len(classes))
    self._paths = paths
    self._ids: np.ndarray | None = None
    self._labels = np.asarray(labels, np.int64)
    self._labels.setflags(write=False)
    self.root = root
    self.name = os.path.basename(root.rstrip(os.sep)) or root
    self.split = split
    self.class_names = classes
    self.num_classes = len(classes)
    # Paths, sizes and modification times: any added, removed or rewritten
    # image changes the fingerprint.
    self.identity = f"folder:{root}:sha256={digest.hexdigest()[:16]}"

  def num_records(self) -> int:
    return len(self._paths)

  def all_labels(self) -> np.ndarray:
    return self._labels

  def record_ids(self) -> np.ndarray:
    # Real paths: the same file reached through a symlink, a relative path
    # or a trailing slash is the same image.
    if self._ids is None:
      self._ids = np.asarray([os.path.realpath(p) for p in self._paths])
    return self._ids

  def records(self):
    from sfda_jax.data._tf import tf  # pylint: disable=g-import-not-at-top
    return tf.data.Dataset.from_tensor_slices((self._paths, self._labels))

  def decode(self, raw):
    from sfda_jax.data._tf import tf  # pylint: disable=g-import-not-at-top
    # channels=3: grayscale is repeated to RGB, alpha dropped; GIF: 1st frame.
    return tf.io.decode_image(tf.io.read_file(raw), channels=3,
                              expand_animations=False)
