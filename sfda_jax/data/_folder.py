"""Image-folder datasets: one sub-folder per class.

::

  root/
    cat/  001.jpg  a/002.png ...
    dog/  x.jpeg ...

The sorted sub-folder names are the classes (label = position); each class's
images are searched recursively (nested folders, symbolic links to files and
folders followed, a link loop visited once) and ordered by relative path.
Images are the files with an extension in
:data:`~sfda_jax.data._image_files.IMAGE_EXTENSIONS` (any case: JPEG, PNG,
GIF, BMP, WebP, JPEG XL: every format the decoder reads). Hidden entries (a
leading ``.``: ``.DS_Store``, ``._x.jpg``) are ignored; any other file (a
``.tif``, a ``notes.txt``, a file beside the class folders) is ignored too,
with one warning listing them by extension.

Checked up front, when the folder is loaded: every image's header
(:func:`~sfda_jax.data._image_files.inspect`, a few hundred bytes a file,
never the pixels), which finds unreadable, empty, mislabelled, truncated and
oversized files before any model runs. One found is an
:class:`~sfda_jax.data.UnreadableImageError` (a ValueError) naming the file
relative to the folder (``cat/x.png: truncated PNG: ...``) and what to do.
``skip_unreadable=True`` leaves such files out instead and also decodes every
other image once (in parallel, once per process for an unchanged file), so
that the images used are exactly those the decoder reads; each skipped file
is logged with its reason, then the count. Damage the header check cannot see
(corrupt compressed pixels) without ``skip_unreadable`` is found when the
image is decoded during extraction, and named the same way.

JPEG EXIF orientation is applied (the image is turned upright, as PIL's
``ImageOps.exif_transpose`` does); orientation metadata in other formats
(rare) is not.

The folder's identity (part of feature-cache keys) hashes the relative path,
size and modification time of every image used: skipping a file gives the
same identity as deleting it.

A folder is ONE split: ``split`` only names it, unless ``load(folder,
split=..., test_fraction=f)`` partitions it into disjoint, seeded,
class-stratified ``"train"`` and ``"test"`` parts (see
:func:`sfda_jax.data.stratified_split`).
"""

from __future__ import annotations

import collections
import hashlib
import os

from absl import logging
import numpy as np

from sfda_jax.data._dataset import Source, UnreadableImageError
from sfda_jax.data import _image_files
from sfda_jax.data._image_files import IMAGE_EXTENSIONS

__all__ = ["FolderSource", "IMAGE_EXTENSIONS"]

# Part of the identity: bumped when the same files decode to other pixels
# (2: EXIF orientation applied, WebP and JPEG XL read).
_DECODE_VERSION = 2
# Files this process fully decoded with skip_unreadable, by (real path, size,
# mtime): the reason they failed, or None. A second load of the same folder
# (a train/test holdout) decodes nothing again.
_DECODED: dict[tuple[str, int, int], str | None] = {}
# Messages already logged, so a folder loaded twice warns once.
_LOGGED: set[str] = set()
_SHOWN = 5


def _log_once(message: str, *args) -> None:
  text = message % args
  if text not in _LOGGED:
    _LOGGED.add(text)
    logging.warning("%s", text)


def _shown(rel: str) -> str:
  """A relative path as messages print it (one line, whatever the name)."""
  return rel if rel.isprintable() else repr(rel)[1:-1]


def _scan(class_dir: str, name: str) -> tuple[list[str], list[str]]:
  """``(images, others)``: sorted paths relative to the folder root
  (``name/...``) of the images and of the other non-hidden files."""
  images, others, seen = [], [], set()
  for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
    real = os.path.realpath(dirpath)
    if real in seen:                 # a symbolic-link loop: once is enough
      dirnames[:] = []
      continue
    seen.add(real)
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    for filename in filenames:
      if filename.startswith("."):
        continue
      rel = os.path.join(name, os.path.relpath(os.path.join(dirpath, filename),
                                               class_dir)).replace(os.sep, "/")
      (images if filename.lower().endswith(IMAGE_EXTENSIONS)
       else others).append(rel)
  return sorted(images), sorted(others)


def _by_extension(rels: list[str]) -> str:
  """``.tif (2: a/x.tif, b/y.tif), (no extension) (1: c/README)``."""
  groups = collections.defaultdict(list)
  for rel in rels:
    groups[os.path.splitext(rel)[1].lower() or "(no extension)"].append(rel)
  return ", ".join(
      f"{ext} ({len(files)}: {', '.join(map(_shown, files[:3]))}"
      f"{', ...' if len(files) > 3 else ''})"
      for ext, files in sorted(groups.items()))


def unreadable_error(root: str, problems: list[tuple[str, str]]
                     ) -> UnreadableImageError:
  """The one-line error for unreadable files: ``[(relative path, reason)]``."""
  (first, reason), rest = problems[0], problems[1:]
  more = ""
  if rest:
    listed = "; ".join(f"{_shown(r)} ({why})" for r, why in rest[:_SHOWN])
    more = (f"; {len(rest)} more unreadable file{'s' if len(rest) > 1 else ''}"
            f": {listed}{'; ...' if len(rest) > _SHOWN else ''}")
  them = "them" if rest else "it"
  return UnreadableImageError(
      f"{_shown(first)}: {reason}{more}. In image folder {root}: delete or "
      f"replace {them}, or leave unreadable files out with "
      "skip_unreadable=True (on the command line: --skip_unreadable).",
      [r for r, _ in problems])


class FolderSource(Source):
  """The images of a class-per-sub-folder directory."""

  single_split = True

  def __init__(self, path: str, split: str = "train",
               skip_unreadable: bool = False):
    """Lists and checks the folder (headers only; see the module doc).

    Raises:
      FileNotFoundError: no such folder.
      ValueError: a file, not a folder; no class sub-folders; a class
        without (readable) images, named.
      UnreadableImageError: (a ValueError) an image the decoder would
        refuse, named, unless ``skip_unreadable``.
    """
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(root):
      raise FileNotFoundError(
          f"Image folder {root} does not exist. Pass a TFDS dataset name or "
          "a folder holding one sub-folder of images per class.")
    if not os.path.isdir(root):
      raise ValueError(f"{root} is a file, not a folder of class sub-folders.")
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    classes = [e.name for e in entries
               if e.is_dir() and not e.name.startswith(".")]
    if not classes:
      raise ValueError(
          f"Image folder {root} has no class sub-folders; put each class's "
          f"images ({', '.join(IMAGE_EXTENSIONS)}) in its own sub-folder.")
    self.root = root
    stray = [e.name for e in entries
             if not e.is_dir() and not e.name.startswith(".")]
    if stray:
      _log_once("Image folder %s: ignored %d file%s outside the class "
                "sub-folders: %s.", root, len(stray),
                "s" if len(stray) > 1 else "", _by_extension(stray))
    scans = {name: _scan(os.path.join(root, name), name) for name in classes}
    others = [rel for _, found in scans.values() for rel in found]
    if others:
      _log_once("Image folder %s: ignored %d file%s with unsupported "
                "extensions: %s. Images are read from %s files (any case); "
                "convert the others to use them.", root, len(others),
                "s" if len(others) > 1 else "", _by_extension(others),
                ", ".join(IMAGE_EXTENSIONS))
    images, problems = [], []
    for name in classes:
      for rel in scans[name][0]:
        try:
          info = _image_files.inspect(os.path.join(root, rel))
        except _image_files.BadImageFile as e:
          problems.append((rel, str(e)))
        else:
          images.append((rel, info.orientation))
    if problems and not skip_unreadable:
      raise unreadable_error(root, problems)
    if skip_unreadable:
      images, failed = self._decodable(images)
      problems = sorted(problems + failed)
      for rel, reason in problems:
        _log_once("Image folder %s: skipped %s: %s.", root, _shown(rel),
                  reason)
      if problems:
        _log_once("Image folder %s: skipped %d unreadable file%s "
                  "(skip_unreadable); using the other %d images.", root,
                  len(problems), "s" if len(problems) > 1 else "",
                  len(images))
    self._check_classes(classes, images, scans, problems)
    paths, labels, orientations = [], [], []
    digest = hashlib.sha256(f"decode={_DECODE_VERSION}\n".encode())
    label_of = {name: label for label, name in enumerate(classes)}
    for rel, orientation in images:
      full = os.path.join(root, rel)
      stat = os.stat(full)
      digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                    .encode("utf-8", "surrogateescape"))
      paths.append(full)
      labels.append(label_of[rel.split("/", 1)[0]])
      orientations.append(orientation)
    logging.info("Image folder %s: %d images in %d classes.", root,
                 len(paths), len(classes))
    self._paths = paths
    self._rels = [rel for rel, _ in images]
    self._orientations = np.asarray(orientations, np.int32)
    self._ids: np.ndarray | None = None
    self._labels = np.asarray(labels, np.int64)
    self._labels.setflags(write=False)
    self.name = os.path.basename(root.rstrip(os.sep)) or root
    self.split = split
    self.class_names = classes
    self.num_classes = len(classes)
    self.skipped = [rel for rel, _ in problems] if skip_unreadable else []
    # Paths, sizes and modification times: any added, removed or rewritten
    # image changes the fingerprint.
    self.identity = f"folder:{root}:sha256={digest.hexdigest()[:16]}"

  def _check_classes(self, classes, images, scans, skipped) -> None:
    """Every class keeps at least one image; else a ValueError naming it."""
    kept = collections.Counter(rel.split("/", 1)[0] for rel, _ in images)
    for name in classes:
      if kept[name]:
        continue
      found, others = scans[name]
      lost = [rel for rel, _ in skipped if rel.split("/", 1)[0] == name]
      if lost:
        what = (f"its {len(lost)} image file{'s' if len(lost) > 1 else ''} "
                f"could not be read and {'were' if len(lost) > 1 else 'was'} "
                f"skipped ({', '.join(map(_shown, lost[:3]))}"
                f"{', ...' if len(lost) > 3 else ''})")
      elif others:
        what = (f"it holds only files with unsupported extensions: "
                f"{_by_extension(others)}")
      else:
        what = "it is empty" if not found else "it holds no images"
      raise ValueError(
          f"Class folder {name!r} ({os.path.join(self.root, name)}) holds no "
          f"usable images: {what}. Add images ({', '.join(IMAGE_EXTENSIONS)})"
          " or remove the folder.")

  def _decodable(self, images: list[tuple[str, int]]
                 ) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """Decodes every image not decoded before in this process: ``(those
    that decode, [(relative path, reason)] of those that do not)``."""
    from sfda_jax.data import _pipeline  # pylint: disable=g-import-not-at-top
    keys = []
    for rel, _ in images:
      stat = os.stat(os.path.join(self.root, rel))
      keys.append((os.path.realpath(os.path.join(self.root, rel)),
                   stat.st_size, stat.st_mtime_ns))
    todo = [i for i, key in enumerate(keys) if key not in _DECODED]
    if todo:
      logging.info("Image folder %s: decoding %d images to find unreadable "
                   "ones (skip_unreadable).", self.root, len(todo))
      records = self._records([os.path.join(self.root, images[i][0])
                               for i in todo],
                              [images[i][1] for i in todo],
                              np.zeros(len(todo), np.int64))
      reasons = dict(_pipeline.decode_problems(records, self.decode,
                                               len(todo)))
      for j, i in enumerate(todo):
        reason = reasons.get(j)
        _DECODED[keys[i]] = (None if reason is None
                             else f"cannot be decoded ({reason})")
    good = [image for image, key in zip(images, keys) if _DECODED[key] is None]
    failed = [(rel, _DECODED[key]) for (rel, _), key in zip(images, keys)
              if _DECODED[key] is not None]
    return good, failed

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

  @staticmethod
  def _records(paths, orientations, labels):
    from sfda_jax.data._tf import tf  # pylint: disable=g-import-not-at-top
    # Paths as bytes: any file name the OS allows, UTF-8 or not.
    encoded = np.asarray([os.fsencode(p) for p in paths], dtype=object)
    return tf.data.Dataset.from_tensor_slices(
        ((tf.constant(encoded, tf.string),
          tf.constant(np.asarray(orientations, np.int32))),
         tf.constant(np.asarray(labels, np.int64))))

  def records(self):
    return self._records(self._paths, self._orientations, self._labels)

  def decode(self, raw):
    from sfda_jax.data import _pipeline  # pylint: disable=g-import-not-at-top
    tf = _pipeline.tf
    path, orientation = raw
    # float32 (as preprocessing casts it anyway): TF's oneDNN build has no
    # uint8 transpose and logs an error line for it.
    image = tf.cast(_pipeline.decode_image(tf.io.read_file(path)), tf.float32)
    return _pipeline.apply_orientation(image, orientation)

  def unreadable_error(self, problems):
    return unreadable_error(self.root, [
        (self._rels[i], f"cannot be decoded ({reason})")
        for i, reason in problems])
