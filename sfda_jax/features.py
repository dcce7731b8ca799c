"""Feature extraction: backbone x dataset -> features, labels, source logits.

``extract(backbone, dataset)`` runs the backbone's jitted batch function over
the dataset's preprocessed batches with a tqdm progress bar (images/s),
padding the last batch to the batch size so nothing recompiles, and caches the
result on disk.

Cache: ``<cache_dir>/<model>/<key>.npz`` with ``key`` a hash of the backbone's
identity (name, weights, preprocessing, compute dtype), the dataset's
fingerprint (name, split, examples, seed, version) and the cache format
version. Every write goes to a temporary file in the same directory and is
then renamed, so a crash never leaves a half-written entry. Long runs save
their progress every ``checkpoint_every`` images into ``<key>.partial/``
(also atomically); an interrupted extraction resumes from there. An entry
that cannot be read, whose stored key differs, or whose arrays are
inconsistent is logged, deleted and recomputed.

Data parallelism: when this process sees more than one device, each batch is
padded to a multiple of the device count and placed with a ``NamedSharding``
over its batch axis (the parameters replicated), so the jitted backbone runs
SPMD, each device on its slice of the batch. Features are the same as on one
device.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import itertools
import json
import os
import re
import shutil
import time
import zipfile
from typing import Any, Iterator

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jax.sharding import NamedSharding, PartitionSpec as P

from sfda_jax import atomic
from sfda_jax import checks
from sfda_jax.metrics import placement
from sfda_jax.backbones.base import Backbone

__all__ = ["FeatureResult", "extract", "feature_batches", "default_cache_dir",
           "cache_key"]

CACHE_FORMAT = 1


@dataclasses.dataclass
class FeatureResult:
  """Extracted features of one backbone on one dataset.

  Attributes:
    features: ``[N, D]`` float32.
    labels: ``[N]`` int64 target labels, in the dataset's order.
    source_logits: ``[N, Z]`` float32, or ``None`` for a backbone without a
      classifier head.
    model: backbone name.
    dataset: dataset fingerprint.
    seconds: wall time of the extraction (0 when served from the cache).
    from_cache: whether the result was read from the cache.
  """
  features: np.ndarray
  labels: np.ndarray
  source_logits: np.ndarray | None
  model: str
  dataset: str
  seconds: float = 0.0
  from_cache: bool = False

  @property
  def source_probs(self) -> np.ndarray | None:
    """Softmax of the source logits ``[N, Z]`` (for LEEP), or ``None``."""
    if self.source_logits is None:
      return None
    return np.asarray(jax.nn.softmax(jnp.asarray(self.source_logits), axis=1))


def default_cache_dir() -> str:
  """``$SFDA_JAX_CACHE`` or ``~/.cache/sfda_jax``."""
  return os.environ.get("SFDA_JAX_CACHE",
                        os.path.join(os.path.expanduser("~"), ".cache",
                                     "sfda_jax"))


def cache_key(backbone: Backbone, dataset: Any) -> str:
  """The hash naming a (backbone, dataset) cache entry."""
  payload = json.dumps({"format": CACHE_FORMAT,
                        "backbone": backbone.cache_identity(),
                        "dataset": dataset.fingerprint}, sort_keys=True)
  return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _safe_name(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.@-]+", "_", name).strip("_") or "model"


def _atomic_savez(path: str, **arrays: Any) -> None:
  """``np.savez`` written atomically (see :mod:`sfda_jax.atomic`)."""
  atomic.write_with(path, lambda f: np.savez(f, **arrays))


def _read_entry(path: str, key: str) -> dict[str, np.ndarray] | None:
  """Reads a cache file; ``None`` (and the file removed) if it is unusable."""
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
  except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
    logging.warning("feature cache entry %s is corrupt (%s); recomputing.",
                    path, e)
    os.unlink(path)
    return None
  stored = str(arrays.get("key", ""))
  problem = None
  if stored != key:
    problem = f"stale (key {stored!r} != {key!r})"
  elif "features" not in arrays or "labels" not in arrays:
    problem = "incomplete"
  elif arrays["features"].shape[0] != arrays["labels"].shape[0]:
    problem = "inconsistent row counts"
  elif not np.all(np.isfinite(arrays["features"])):
    problem = "non-finite features"
  if problem:
    logging.warning("feature cache entry %s is %s; recomputing.", path,
                    problem)
    os.unlink(path)
    return None
  return arrays


def _result(arrays, backbone, dataset, seconds, from_cache) -> FeatureResult:
  logits = arrays.get("source_logits")
  return FeatureResult(
      features=arrays["features"], labels=arrays["labels"],
      source_logits=None if logits is None or logits.size == 0 else logits,
      model=backbone.name, dataset=dataset.fingerprint, seconds=seconds,
      from_cache=from_cache)


def _padded(batches: Iterator, batch_size: int) -> Iterator:
  """Pads each batch's images to ``batch_size`` rows; yields (images, labels, n)."""
  for images, labels in batches:
    n = images.shape[0]
    if n < batch_size:
      pad = np.zeros((batch_size - n,) + images.shape[1:], images.dtype)
      images = np.concatenate([images, pad])
    yield images, labels, n


def _runner(backbone: Backbone, batch_size: int, data_parallel: bool):
  """``(run(images) -> (features, logits), padded batch size)``.

  With several local devices (and ``data_parallel``), the batch is padded to
  a multiple of the device count and sharded over the 1-D sample mesh (axis ``placement.SAMPLE_AXIS``); the
  parameters are replicated once.
  """
  devices = jax.local_devices()
  if not data_parallel or len(devices) <= 1:
    return (lambda images: backbone(jnp.asarray(images))), batch_size
  mesh = placement.sample_mesh(devices)
  padded = -(-batch_size // len(devices)) * len(devices)
  params = jax.device_put(backbone.params, NamedSharding(mesh, P()))
  in_sharding = NamedSharding(mesh, P(placement.SAMPLE_AXIS))

  def run(images):
    return backbone.apply_fn(params, jax.device_put(images, in_sharding))

  logging.info("extracting data-parallel over %d devices, batch %d",
               len(devices), padded)
  return run, padded


def feature_batches(backbone: Backbone, dataset: Any, batch_size: int,
                    start_batch: int = 0, data_parallel: bool = True
                    ) -> Iterator[tuple[np.ndarray, np.ndarray | None,
                                        np.ndarray]]:
  """Runs the backbone over the dataset's batches, one batch at a time.

  Every batch is zero-padded to ``batch_size`` rows (rounded up to a
  multiple of the device count when several local devices share the batch,
  see ``data_parallel``) before the jitted call (one compilation), and the
  padding is cut off the outputs.

  Args:
    backbone: from :func:`sfda_jax.backbones.get`.
    dataset: anything with ``batches(preprocessing, batch_size)``.
    batch_size: images per jitted call.
    start_batch: skip this many batches (resuming).
    data_parallel: with several local devices, shard each batch over them.

  Yields:
    ``(features [n, D], source logits [n, Z] or None, labels [n])`` as host
    arrays, ``n <= batch_size``.
  """
  batches = itertools.islice(
      dataset.batches(backbone.preprocessing, batch_size), start_batch, None)
  run, run_batch = _runner(backbone, batch_size, data_parallel)
  for images, y, n in _padded(batches, run_batch):
    f, z = run(images)
    yield (np.asarray(f)[:n], None if z is None else np.asarray(z)[:n],
           np.asarray(y))


class ExtractionInterrupted(KeyboardInterrupt):
  """Ctrl-C during :func:`extract`; the message says how far it got and
  how much a rerun keeps."""


def extract(backbone: Backbone, dataset: Any, batch_size: int = 64,
            cache_dir: str | None = None, use_cache: bool = True,
            checkpoint_every: int = 512, progress: bool = True,
            data_parallel: bool = True) -> FeatureResult:
  """Features (and source logits) of ``backbone`` on every example of ``dataset``.

  Args:
    backbone: from :func:`sfda_jax.backbones.get`.
    dataset: from :func:`sfda_jax.data.load` (or anything with ``fingerprint``,
      ``num_examples``, ``labels`` and ``batches(preprocessing, batch_size)``).
    batch_size: images per jitted call; the last batch is zero-padded to it.
    cache_dir: cache root (default :func:`default_cache_dir`).
    use_cache: read and write the cache.
    checkpoint_every: save progress about every this many images, so an
      interrupted run resumes (only when caching); Ctrl-C raises
      :class:`ExtractionInterrupted` saying how far it got.
    progress: show a tqdm bar with images/s.
    data_parallel: with several local devices, shard each batch (padded to a
      multiple of the device count) over them.

  Returns:
    A :class:`FeatureResult`.
  """
  checks.positive_int(batch_size, "batch_size")
  key = cache_key(backbone, dataset)
  cache_dir = cache_dir or default_cache_dir()
  entry = os.path.join(cache_dir, _safe_name(backbone.name), key + ".npz")
  partial_dir = entry[:-len(".npz")] + ".partial"
  if use_cache:
    atomic.check_writable_dir(os.path.dirname(entry),
                              "feature cache directory",
                              "; pass another cache_dir.")
    if os.path.exists(entry):
      arrays = _read_entry(entry, key)
      if arrays is not None:
        logging.info("features of %s on %s: cache hit %s", backbone.name,
                     dataset.fingerprint, entry)
        return _result(arrays, backbone, dataset, 0.0, True)

  total = int(dataset.num_examples)
  chunk_batches = max(1, checkpoint_every // batch_size)
  done_parts = _load_parts(partial_dir, key) if use_cache else []
  start_batch = sum(p["batches"] for p in done_parts)
  feats = [p["features"] for p in done_parts]
  logits = [p["source_logits"] for p in done_parts]
  labels = [p["labels"] for p in done_parts]
  done = sum(f.shape[0] for f in feats)
  if done:
    logging.info("resuming %s on %s at %d/%d images", backbone.name,
                 dataset.fingerprint, done, total)

  start = time.perf_counter()
  bar = tqdm.tqdm(total=total, initial=done, unit="img", disable=not progress,
                  desc=f"{backbone.name}", dynamic_ncols=True)
  chunk_f, chunk_l, chunk_y, chunk_n = [], [], [], 0
  try:
    for f, z, y in feature_batches(backbone, dataset, batch_size,
                                     start_batch, data_parallel):
      chunk_f.append(f)
      chunk_l.append(z)
      chunk_y.append(y)
      chunk_n += 1
      bar.update(f.shape[0])
      if chunk_n == chunk_batches:
        _flush(chunk_f, chunk_l, chunk_y, chunk_n, feats, logits, labels,
               partial_dir if use_cache else None, key)
        chunk_f, chunk_l, chunk_y, chunk_n = [], [], [], 0
    if chunk_n:
      _flush(chunk_f, chunk_l, chunk_y, chunk_n, feats, logits, labels, None,
             key)
  except KeyboardInterrupt:
    seen = sum(f.shape[0] for f in feats) + sum(f.shape[0] for f in chunk_f)
    kept = sum(f.shape[0] for f in feats) if use_cache else 0
    raise ExtractionInterrupted(
        f"interrupted at {seen}/{total} images of {backbone.name}; {kept} "
        "are checkpointed, rerun the same command to resume"
        if use_cache else f"interrupted at {seen}/{total} images of "
        f"{backbone.name} (no cache: a rerun starts again)") from None
  finally:
    bar.close()
  seconds = time.perf_counter() - start
  arrays = {
      "features": np.concatenate(feats).astype(np.float32),
      "labels": np.concatenate(labels).astype(np.int64),
      "source_logits": (np.zeros((0,), np.float32) if logits[0] is None else
                        np.concatenate(logits).astype(np.float32)),
  }
  if arrays["features"].shape[0] != total:
    raise RuntimeError(
        f"{backbone.name} on {dataset.fingerprint}: got "
        f"{arrays['features'].shape[0]} feature rows for {total} examples.")
  if not np.all(np.isfinite(arrays["features"])):
    raise ValueError(f"{backbone.name} produced NaN/Inf features on "
                     f"{dataset.fingerprint}.")
  logging.info("extracted %s on %s: %d images in %.1f s (%.1f img/s)",
               backbone.name, dataset.fingerprint, total - done, seconds,
               (total - done) / max(seconds, 1e-9))
  if use_cache:
    _atomic_savez(entry, key=np.array(key), **arrays)
    shutil.rmtree(partial_dir, ignore_errors=True)
  return _result(arrays, backbone, dataset, seconds, False)


def _flush(chunk_f, chunk_l, chunk_y, chunk_n, feats, logits, labels,
           partial_dir, key) -> None:
  """Appends a chunk to the in-memory result and, if asked, checkpoints it."""
  f = np.concatenate(chunk_f)
  z = None if chunk_l[0] is None else np.concatenate(chunk_l)
  y = np.concatenate(chunk_y)
  feats.append(f)
  logits.append(z)
  labels.append(y)
  if partial_dir is not None:
    index = len(feats) - 1
    _atomic_savez(os.path.join(partial_dir, f"part-{index:06d}.npz"),
                  key=np.array(key), batches=np.array(chunk_n), features=f,
                  labels=y, source_logits=(np.zeros((0,), np.float32)
                                           if z is None else z))


def _load_parts(partial_dir: str, key: str) -> list[dict[str, Any]]:
  """Completed checkpoint parts, in order; stops at the first bad one."""
  parts = []
  for i, path in enumerate(sorted(glob.glob(os.path.join(partial_dir,
                                                         "part-*.npz")))):
    if os.path.basename(path) != f"part-{i:06d}.npz":
      break
    arrays = _read_entry(path, key)
    if arrays is None:
      break
    logits = arrays["source_logits"]
    parts.append({"batches": int(arrays["batches"]),
                  "features": arrays["features"], "labels": arrays["labels"],
                  "source_logits": None if logits.size == 0 else logits})
  # Anything after a gap or a bad part is recomputed: drop it.
  for path in sorted(glob.glob(os.path.join(partial_dir, "part-*.npz")))[
      len(parts):]:
    os.unlink(path)
  return parts
