"""Tests for sfda_jax.data: TFDS (mocked and real Fashion-MNIST), folders,
arrays, the preprocessing pipeline and every error path."""

import gzip
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from sfda_jax import data
from sfda_jax.data.preprocessing import Preprocessing

from conftest import FMNIST_DIR
needs_fmnist = pytest.mark.skipif(
    not os.path.isdir(FMNIST_DIR),
    reason=f"{FMNIST_DIR} absent: apt-get install -y dataset-fashion-mnist")

SMALL = Preprocessing(image_size=32, resize_size=32, mean=(0.5,) * 3,
                      std=(0.5,) * 3)
NATIVE = Preprocessing(image_size=28, resize_size=28, mean=(0.5,) * 3,
                       std=(0.5,) * 3)


def _collect(ds, preprocessing, batch_size):
  batches = list(ds.batches(preprocessing, batch_size))
  return (np.concatenate([b[0] for b in batches]),
          np.concatenate([b[1] for b in batches]), batches)


# Lazy imports (no TF, flax or model code): tests/test_layers.py.


# ---------------------------------------------------------------- stratified


def test_stratified_indices_shares_and_remainders():
  labels = np.repeat([0, 1, 2], [50, 30, 20])
  for seed in range(5):
    idx = data.stratified_indices(labels, 11, seed)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    # Shares 5.5 / 3.3 / 2.2: floors 5, 3, 2; the one left goes to class 0.
    np.testing.assert_array_equal(np.bincount(labels[idx]), [6, 3, 2])
  # Tied remainders (5.5 / 5.5 / 0): the extra example's class depends on
  # the seed, deterministically.
  labels = np.repeat([0, 1], 50)
  counts = {tuple(np.bincount(labels[data.stratified_indices(labels, 11, s)],
                              minlength=2)) for s in range(20)}
  assert counts == {(6, 5), (5, 6)}
  np.testing.assert_array_equal(data.stratified_indices(labels, 11, 3),
                                data.stratified_indices(labels, 11, 3))


def test_stratified_split_rule_disjoint_and_seeded():
  labels = np.repeat([3, 1, 7, 5], [10, 5, 3, 2])   # ids need not be 0..K-1
  everything = np.arange(len(labels))
  for fraction, expected in [
      # round_half_up(f c_k), at least 1 and leaving 1 (class sizes 10/5/3/2)
      (0.2, {3: 2, 1: 1, 7: 1, 5: 1}),   # 2.0, 1.0, 0.6 -> 1, 0.4 -> 0 -> 1
      (0.5, {3: 5, 1: 3, 7: 2, 5: 1}),   # 5, 2.5 -> 3 (half up), 1.5 -> 2, 1
      (0.1, {3: 1, 1: 1, 7: 1, 5: 1}),   # 0.5 -> 1
      (0.9, {3: 9, 1: 4, 7: 2, 5: 1}),   # 4.5 -> 5 -> 4, 2.7 -> 3 -> 2
  ]:
    for seed in range(3):
      train, test = data.stratified_split(labels, fraction, seed)
      assert train.dtype == test.dtype == np.int64
      assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
      assert np.intersect1d(train, test).size == 0
      np.testing.assert_array_equal(np.union1d(train, test), everything)
      got = dict(zip(*np.unique(labels[test], return_counts=True)))
      assert got == expected, (fraction, got)
      # Every class is in both parts.
      assert set(labels[train]) == set(labels[test]) == {1, 3, 5, 7}
  # An exact half that floating point puts below it: 0.29 * 50 = 14.4999...
  _, test = data.stratified_split(np.repeat([0, 1], 50), 0.29, 0)
  assert len(test) == 30
  again = data.stratified_split(labels, 0.5, 4)
  np.testing.assert_array_equal(again[1],
                                data.stratified_split(labels, 0.5, 4)[1])
  others = {tuple(data.stratified_split(labels, 0.5, s)[1]) for s in range(5)}
  assert len(others) > 1       # another seed, another partition


def test_stratified_split_errors():
  with pytest.raises(ValueError, match=r"class 'emu' has only 1 image"):
    data.stratified_split(np.asarray([0, 0, 1, 1, 2]), 0.5, 0,
                          class_names=["cat", "dog", "emu"])
  with pytest.raises(ValueError, match=r"classes 4, 9 have only 1 image"):
    data.stratified_split(np.asarray([4, 0, 0, 9]), 0.5, 0)
  for bad in (0, 0.0, 1, 1.5, -0.2, True, "0.2", None):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
      data.stratified_split(np.asarray([0, 0, 1, 1]), bad, 0)


# ------------------------------------------------------------- fashion_mnist


def test_read_idx_rejects_corrupt_file(tmp_path):
  from sfda_jax.data import _fashion_mnist
  good = tmp_path / "ok-idx1-ubyte.gz"
  header = bytes([0, 0, 0x08, 1]) + (3).to_bytes(4, "big")
  good.write_bytes(gzip.compress(header + bytes([1, 2, 3])))
  np.testing.assert_array_equal(_fashion_mnist.read_idx(str(good)), [1, 2, 3])
  short = tmp_path / "short-idx1-ubyte.gz"
  short.write_bytes(gzip.compress(header + bytes([1, 2])))
  with pytest.raises(ValueError, match="truncated"):
    _fashion_mnist.read_idx(str(short))
  bad = tmp_path / "bad.gz"
  bad.write_bytes(gzip.compress(b"\x12\x34\x08\x01"))
  with pytest.raises(ValueError, match="magic"):
    _fashion_mnist.read_idx(str(bad))


@needs_fmnist
@pytest.mark.slow
def test_fashion_mnist_interrupted_prepare_leaves_nothing(tmp_path,
                                                          monkeypatch):
  from sfda_jax.data import _fashion_mnist

  def fail(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(_fashion_mnist, "read_idx", fail)
  with pytest.raises(KeyboardInterrupt):
    _fashion_mnist.prepare_fashion_mnist(str(tmp_path))
  assert os.listdir(tmp_path) == []


@needs_fmnist
@pytest.mark.slow
def test_fashion_mnist_prepare_writes_nothing_to_stdout(tmp_path, capsys):
  """TFDS's "Downloading and preparing" message goes to stderr: stdout
  belongs to the caller (the package doctest prepares the dataset on a
  fresh machine and must print nothing)."""
  from sfda_jax.data import _fashion_mnist
  _fashion_mnist.prepare_fashion_mnist(str(tmp_path))
  out = capsys.readouterr()
  assert out.out == ""
  assert "fashion_mnist" in out.err


def test_fashion_mnist_missing_debian_files(tmp_path):
  from sfda_jax.data import _fashion_mnist
  with pytest.raises(FileNotFoundError, match="apt-get install"):
    _fashion_mnist.prepare_fashion_mnist(str(tmp_path / "dd"),
                                         source_dir=str(tmp_path))


@needs_fmnist
@pytest.mark.slow
def test_fashion_mnist_prepared_as_real_tfds(fmnist_dir):
  import tensorflow_datasets as tfds
  builder = tfds.builder("fashion_mnist", data_dir=fmnist_dir)
  assert builder.is_prepared()
  assert builder.info.splits["train"].num_examples == 60_000
  assert builder.info.splits["test"].num_examples == 10_000
  # Written atomically: only the final folder, no temporary leftovers.
  assert sorted(os.listdir(fmnist_dir)) == ["fashion_mnist"]
  start = time.perf_counter()
  data.prepare_fashion_mnist(fmnist_dir)  # Already there: a no-op.
  assert time.perf_counter() - start < 1.0
  train = data.load("fashion_mnist", data_dir=fmnist_dir)
  test = data.load("fashion_mnist", split="test", data_dir=fmnist_dir)
  assert (len(train), len(test)) == (60_000, 10_000)
  assert train.num_classes == 10 and train.class_names[0] == "T-shirt/top"
  assert train.fingerprint == (
      "tfds:fashion_mnist/3.0.1:label=label|split=train|all")


@needs_fmnist
@pytest.mark.slow
def test_fashion_mnist_batches_and_pixels(fmnist_dir):
  from sfda_jax.data import _fashion_mnist
  ds = data.load("fashion_mnist", split="test[:100]", data_dir=fmnist_dir)
  images, labels, batches = _collect(ds, SMALL, 32)
  assert [b[0].shape for b in batches] == [(32, 32, 32, 3)] * 3 + [
      (4, 32, 32, 3)]
  assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64
  np.testing.assert_array_equal(labels, ds.labels)
  # Grayscale repeated to three identical channels, normalised to [-1, 1].
  np.testing.assert_array_equal(images[..., 0], images[..., 1])
  np.testing.assert_array_equal(images[..., 0], images[..., 2])
  assert -1.0 <= images.min() and images.max() <= 1.0
  # At the native 28 px no resize happens: (pixel / 255 - 0.5) / 0.5 exactly,
  # and every image is one of the Debian file's images with its label.
  native, _, _ = _collect(ds, NATIVE, 64)
  pixels = (native[..., 0] * 0.5 + 0.5) * 255.0
  np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
  raw = _fashion_mnist.read_idx(f"{FMNIST_DIR}/t10k-images-idx3-ubyte.gz")
  raw_labels = _fashion_mnist.read_idx(
      f"{FMNIST_DIR}/t10k-labels-idx1-ubyte.gz")
  lookup = {img.tobytes(): int(lab) for img, lab in zip(raw, raw_labels)}
  for image, label in zip(np.round(pixels).astype(np.uint8), ds.labels):
    assert lookup[image.tobytes()] == label


@needs_fmnist
@pytest.mark.slow
def test_fashion_mnist_stratified_subsample(fmnist_dir):
  def load(seed, split="test", n=200):
    return data.load("fashion_mnist", split=split, num_examples=n, seed=seed,
                     data_dir=fmnist_dir)

  a, b, c = load(0), load(0), load(1)
  np.testing.assert_array_equal(np.bincount(a.labels), [20] * 10)
  assert len(a) == 200 and a.num_examples == 200
  assert a.fingerprint == b.fingerprint != c.fingerprint
  assert a.fingerprint.endswith("|split=test|n=200|seed=0")
  np.testing.assert_array_equal(a.labels, b.labels)
  images_a, labels_a, _ = _collect(a, NATIVE, 128)  # Filters all 10000.
  np.testing.assert_array_equal(labels_a, a.labels)
  # Same seed: same images in the same order; another seed: other images.
  # (On a 1000-record slice to keep the test fast.)
  a, b, c = (load(s, "test[:1000]", 50) for s in (0, 0, 1))
  images_a, labels_a, _ = _collect(a, NATIVE, 32)
  images_b, labels_b, _ = _collect(b, NATIVE, 32)
  images_c, _, _ = _collect(c, NATIVE, 32)
  np.testing.assert_array_equal(images_a, images_b)
  np.testing.assert_array_equal(labels_a, labels_b)
  assert images_c.shape == images_a.shape == (50, 28, 28, 3)
  assert not np.array_equal(images_a, images_c)


@needs_fmnist
@pytest.mark.slow
def test_fashion_mnist_bad_split_and_size(fmnist_dir):
  with pytest.raises(ValueError, match=r"validation.*\['test', 'train'\]"):
    data.load("fashion_mnist", split="validation", data_dir=fmnist_dir)
  with pytest.raises(ValueError, match="only 10000 examples"):
    data.load("fashion_mnist", split="test", num_examples=10_001,
              data_dir=fmnist_dir)
  with pytest.raises(ValueError, match="positive int"):
    data.load("fashion_mnist", split="test", num_examples=0,
              data_dir=fmnist_dir)
  ds = data.load("fashion_mnist", split="test[:10]", data_dir=fmnist_dir)
  assert len(ds) == 10
  with pytest.raises(ValueError, match="batch_size"):
    next(ds.batches(SMALL, 0))
  with pytest.raises(ValueError, match="Preprocessing"):
    next(ds.batches((32, 32), 4))


# ------------------------------------------------------------- mocked TFDS


@pytest.mark.parametrize("name,num_classes", [
    pytest.param("cifar10", 10, marks=pytest.mark.slow),
    ("oxford_flowers102", 102)])
def test_tfds_mock(name, num_classes, tmp_path):
  import tensorflow_datasets as tfds
  prep = Preprocessing(image_size=24, resize_size=28, mean=(0.5, 0.4, 0.3),
                       std=(0.2, 0.3, 0.4), interpolation="bicubic")
  with tfds.testing.mock_data(num_examples=12):
    ds = data.load(name, data_dir=str(tmp_path))
    assert len(ds) == 12 and ds.num_classes == num_classes
    assert len(ds.class_names) == num_classes
    images, labels, batches = _collect(ds, prep, 5)
    assert [b[0].shape[0] for b in batches] == [5, 5, 2]
    assert images.shape == (12, 24, 24, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(labels, ds.labels)
    assert ds.fingerprint.startswith(f"tfds:{name}/")
    sub = data.load(name, data_dir=str(tmp_path), num_examples=6, seed=1)
    _, sub_labels, _ = _collect(sub, prep, 4)
    np.testing.assert_array_equal(sub_labels, sub.labels)
    assert len(sub_labels) == 6


def test_voc_largest_object_rule():
  import tensorflow as tf
  from sfda_jax.data import _tfds
  example = {"objects": {
      "bbox": tf.constant([[0.0, 0.0, 0.2, 0.2], [0.1, 0.1, 0.9, 0.6],
                           [0.0, 0.0, 0.7, 0.5]]),
      "label": tf.constant([3, 7, 11], tf.int64)}}
  assert int(_tfds._largest_object_label(example)) == 7
  example["objects"]["bbox"] = tf.constant([[0.0, 0.0, 0.5, 0.5]] * 3)
  assert int(_tfds._largest_object_label(example)) == 3  # First on ties.


# ------------------------------------------------------------ image folders


def _write_folder(root):
  rng = np.random.default_rng(0)
  (root / "dog").mkdir(parents=True)
  (root / "cat" / "sub").mkdir(parents=True)
  (root / "emu").mkdir()
  rgb = rng.integers(0, 256, (40, 60, 3), np.uint8)
  Image.fromarray(rgb).save(root / "cat" / "a.png")
  Image.fromarray(rng.integers(0, 256, (50, 30), np.uint8), "L").save(
      root / "cat" / "sub" / "b.PNG")
  Image.fromarray(rng.integers(0, 256, (33, 33, 4), np.uint8), "RGBA").save(
      root / "dog" / "c.png")
  Image.fromarray(rng.integers(0, 256, (20, 20, 3), np.uint8)).save(
      root / "emu" / "d.jpg", quality=95)
  (root / "dog" / "notes.txt").write_text("not an image")
  return rgb


def test_image_folder(tmp_path):
  rgb = _write_folder(tmp_path / "pets")
  prep = Preprocessing(image_size=32, resize_size=32, mean=(0.0,) * 3,
                       std=(1.0,) * 3)
  ds = data.load(str(tmp_path / "pets"))
  assert ds.name == "pets" and ds.class_names == ["cat", "dog", "emu"]
  assert len(ds) == 4 and ds.num_classes == 3
  np.testing.assert_array_equal(ds.labels, [0, 0, 1, 2])
  images, labels, _ = _collect(ds, prep, 3)
  assert images.shape == (4, 32, 32, 3)
  np.testing.assert_array_equal(labels, [0, 0, 1, 2])
  # Grayscale image (cat/sub/b.PNG) repeated to three channels.
  np.testing.assert_array_equal(images[1, ..., 0], images[1, ..., 2])
  # 40x60 -> shorter side 32: 32x48 (antialiased bilinear, as PIL), then the
  # centre 32x32 crop at column 8.
  expected = np.asarray(Image.fromarray(rgb).resize((48, 32),
                                                    Image.BILINEAR))
  expected = expected[:, 8:40].astype(np.float32) / 255.0
  assert np.abs(images[0] - expected).max() < 3 / 255
  # Squash: straight to 32x32.
  squash = Preprocessing(32, 32, (0.0,) * 3, (1.0,) * 3, squash=True)
  squashed, _, _ = _collect(ds, squash, 4)
  expected = np.asarray(Image.fromarray(rgb).resize((32, 32), Image.BILINEAR))
  assert np.abs(squashed[0] - expected / 255.0).max() < 3 / 255
  # The fingerprint follows the content.
  again = data.load(str(tmp_path / "pets"))
  assert again.fingerprint == ds.fingerprint
  Image.fromarray(rgb[:20]).save(tmp_path / "pets" / "emu" / "e.png")
  assert data.load(str(tmp_path / "pets")).fingerprint != ds.fingerprint


def test_image_folder_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.load(str(tmp_path / "missing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="no class sub-folders"):
    data.load(str(tmp_path / "empty"))
  (tmp_path / "partial" / "a").mkdir(parents=True)
  (tmp_path / "partial" / "b").mkdir()
  Image.fromarray(np.zeros((4, 4), np.uint8)).save(
      tmp_path / "partial" / "a" / "x.png")
  (tmp_path / "partial" / "b" / "readme.txt").write_text("")
  with pytest.raises(ValueError, match=r"Class folder .b. \(.*\) holds no "
                     r"usable images: it holds only files with unsupported "
                     r"extensions: \.txt \(1: b/readme\.txt\)"):
    data.load(str(tmp_path / "partial"))


def _write_counted_folder(root, counts, size=8):
  """``{class: n}`` images; image ``i`` of class ``c`` has one pixel value,
  ``10 * position(c) + i``, so a batch tells which files it holds."""
  for position, (name, n) in enumerate(counts.items()):
    (root / name).mkdir(parents=True)
    for i in range(n):
      Image.fromarray(np.full((size, size), 10 * position + i, np.uint8)
                      ).save(root / name / f"{i:02d}.png")
  return root


def _pixel_ids(ds):
  """The pixel values (see `_write_counted_folder`) of what `ds` streams."""
  prep = Preprocessing(8, 8, (0.0,) * 3, (1.0,) * 3)
  images, labels, _ = _collect(ds, prep, 5)
  np.testing.assert_array_equal(labels, ds.labels)
  return np.rint(images[:, 0, 0, 0] * 255).astype(int)


def test_image_folder_holdout_split(tmp_path, caplog):
  root = str(_write_counted_folder(tmp_path / "zoo",
                                   {"cat": 10, "dog": 5, "emu": 3}))
  whole = data.load(root)                 # no test_fraction: as before
  assert len(whole) == 18 and whole.fingerprint.endswith("|split=train|all")
  assert whole.test_fraction is None and whole.describe()["holdout"] is None
  train = data.load(root, "train", test_fraction=0.2, seed=0)
  test = data.load(root, "test", test_fraction=0.2, seed=0)
  # Disjoint, together the whole folder; per class round_half_up(0.2 c_k),
  # at least one: cat 2 of 10, dog 1 of 5, emu 1 (0.6) of 3.
  assert not set(train.image_ids) & set(test.image_ids)
  assert set(train.image_ids) | set(test.image_ids) == set(whole.image_ids)
  assert test.describe()["per_class"] == {"cat": 2, "dog": 1, "emu": 1}
  assert train.describe()["per_class"] == {"cat": 8, "dog": 4, "emu": 2}
  assert train.pool_size == len(train) == 14 and len(test) == 4
  # The streamed images are the ones named (the selection reaches the
  # pipeline), and are disjoint too.
  test_pixels, train_pixels = _pixel_ids(test), _pixel_ids(train)
  assert not set(test_pixels) & set(train_pixels)
  assert len(set(test_pixels) | set(train_pixels)) == 18
  assert {os.path.basename(os.path.dirname(p)) + str(int(
      os.path.basename(p)[:2])) for p in test.image_ids} == {
          ["cat", "dog", "emu"][v // 10] + str(v % 10) for v in test_pixels}
  # Deterministic for a seed, another seed another partition.
  again = data.load(root, "test", test_fraction=0.2, seed=0)
  np.testing.assert_array_equal(again.image_ids, test.image_ids)
  assert again.fingerprint == test.fingerprint != train.fingerprint
  assert "|split=test|holdout=0.2,seed=0|all" in test.fingerprint
  tests = {tuple(data.load(root, "test", test_fraction=0.2, seed=s)
                 .image_ids) for s in range(4)}
  assert len(tests) > 1
  # A subsample of a part stays inside the part.
  sub = data.load(root, "train", num_examples=6, test_fraction=0.2, seed=1)
  part = data.load(root, "train", test_fraction=0.2, seed=1)
  assert len(sub) == 6 and set(sub.image_ids) <= set(part.image_ids)
  assert sub.describe()["pool_size"] == 14
  # Asking for more than a folder (part) holds uses all of it, with a note.
  with caplog.at_level("WARNING"):
    whole = data.load(root, "train", num_examples=15, test_fraction=0.2,
                      seed=1)
  assert len(whole) == 14 and whole.fingerprint == part.fingerprint
  assert "has 14 examples, fewer than num_examples=15" in caplog.text


def test_image_folder_holdout_errors(tmp_path):
  root = str(_write_counted_folder(tmp_path / "zoo",
                                   {"cat": 3, "dog": 2, "emu": 1}))
  assert len(data.load(root)) == 6        # a 1-image class is fine unsplit
  with pytest.raises(ValueError, match="class 'emu' has only 1 image"):
    data.load(root, "test", test_fraction=0.3)
  with pytest.raises(ValueError, match=r"one of \['train', 'test'\]"):
    data.load(root, "validation", test_fraction=0.3)
  with pytest.raises(ValueError, match="strictly between"):
    data.load(root, "test", test_fraction=1.0)
  with pytest.raises(ValueError, match="TFDS dataset, whose splits"):
    data.load("fashion_mnist", "test", test_fraction=0.2)


# ------------------------------------------------------------------- arrays


def test_from_arrays():
  rng = np.random.default_rng(0)
  gray = rng.integers(0, 256, (10, 28, 28), np.uint8)
  labels = np.arange(10) % 3
  prep = NATIVE
  for images in (gray, gray[..., None]):
    ds = data.from_arrays(images, labels, name="digits")
    assert len(ds) == 10 and ds.num_classes == 3 and ds.class_names is None
    out, out_labels, batches = _collect(ds, prep, 4)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(out_labels, labels)
    np.testing.assert_allclose(out[..., 1], (gray / 255.0 - 0.5) / 0.5,
                               atol=1e-6)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
  rgb = rng.random((3, 28, 28, 3))
  out, _, _ = _collect(data.from_arrays(rgb, [0, 1, 1]), prep, 8)
  np.testing.assert_allclose(out, (rgb - 0.5) / 0.5, atol=1e-5)
  # Fingerprint: stable, changes with content.
  fp = data.from_arrays(gray, labels).fingerprint
  assert fp == data.from_arrays(gray.copy(), labels).fingerprint
  changed = gray.copy()
  changed[0, 0, 0] ^= 1
  assert data.from_arrays(changed, labels).fingerprint != fp


def _nan_at(index):
  images = np.zeros((3, 4, 4))
  images[index, 1, 2] = np.nan
  return images


@pytest.mark.parametrize("images,labels,match", [
    (np.zeros((2, 4, 4, 2), np.uint8), [0, 1], r"must be \[N, H, W\], .* "
     r"or \[N, H, W, 4\], got shape \(2, 4, 4, 2\)\.$"),
    (np.zeros((2, 3, 8, 8), np.uint8), [0, 1], r"got shape \(2, 3, 8, 8\) "
     r"\(channels first\? use images\.transpose\(0, 2, 3, 1\)\)"),
    (np.zeros((2, 4), np.uint8), [0, 1], r"got shape \(2, 4\)"),
    (np.zeros((2, 0, 4), np.uint8), [0, 1], r"images have no pixels: shape "
     r"\(2, 0, 4\)"),
    (np.zeros((0, 4, 4), np.uint8), [], r"images is empty \(N = 0\)"),
    (np.zeros((2, 4, 4), np.uint8), [0, 1, 2], r"labels must be \[N\] = "
     r"\[2\] to match images, got shape \(3,\)"),
    (np.zeros((2, 4, 4), np.uint8), [[0], [1]], r"labels must be \[N\]"),
    (np.full((2, 4, 4), 2.0), [0, 1], r"float images must lie in \[0, 1\], "
     r"got values in \[2, 2\]; divide 0-255 pixels by 255"),
    (np.full((2, 4, 4), 255.0), [0, 1], r"got values in \[255, 255\]"),
    (np.full((2, 4, 4), -0.5), [0, 1], r"got values in \[-0\.5, -0\.5\]"),
    (_nan_at(2), [0, 1, 1], r"images contain NaN or infinite values \(1 of "
     r"3 images, first at index 2\)"),
    (np.full((2, 4, 4), np.inf), [0, 1], r"NaN or infinite values \(2 of 2 "
     r"images, first at index 0\)"),
    (np.full((2, 4, 4), 7, np.int64), [0, 1], r"got dtype int64 with values "
     r"in \[7, 7\]; convert with images\.astype\(np\.uint8\)"),
    (np.full((2, 4, 4), 1000, np.int32), [0, 1], r"values in \[1000, 1000\];"
     r" scale them to 0-255"),
    (np.zeros((2, 4, 4), bool), [0, 1], r"got dtype bool"),
    (np.zeros((2, 4, 4), np.uint8), [0.0, 1.0], "labels must be integers"),
    (np.zeros((2, 4, 4), np.uint8), [np.nan, 1.0], "labels must be integers"),
    ([np.zeros((4, 4), np.uint8), np.zeros((5, 5), np.uint8)], [0, 1],
     r"images cannot be one array \(.*\); pass a numeric array "
     r"\[N, H, W\(, C\)\] of equally sized images: resize them"),
    (np.array([np.zeros((4, 4)), None], dtype=object), [0, 1],
     r"images is an object array \(images of different sizes, or not "
     r"numbers\)"),
], ids=["2-channels", "channels-first", "2-d", "no-pixels", "empty",
        "labels-too-long", "labels-2-d", "float-above-1", "float-0-255",
        "float-negative", "nan", "inf", "int64-in-range", "int32-too-big",
        "bool", "float-labels", "nan-labels", "ragged-list", "object-array"])
def test_from_arrays_errors(images, labels, match):
  with pytest.raises(ValueError, match=match):
    data.from_arrays(images, np.asarray(labels))


def test_from_arrays_rgba_drops_alpha():
  rgb = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 3), np.uint8)
  rgba = np.concatenate([rgb, np.full((3, 28, 28, 1), 9, np.uint8)], -1)
  out, _, _ = _collect(data.from_arrays(rgba, [0, 1, 1]), NATIVE, 8)
  np.testing.assert_allclose(out, (rgb / 255.0 - 0.5) / 0.5, atol=1e-6)


def test_from_arrays_holdout_split():
  images = np.arange(30, dtype=np.uint8).reshape(30, 1, 1).repeat(8, 1)
  images = images.repeat(8, 2)                 # image i: pixel value i
  labels = np.repeat([5, -1, 2], [20, 6, 4])
  train = data.from_arrays(images, labels, split="train", test_fraction=0.25)
  test = data.from_arrays(images, labels, split="test", test_fraction=0.25)
  # Per class round_half_up(0.25 c_k): 5 of 20, 2 (1.5) of 6, 1 of 4.
  assert test.describe()["per_class"] == {"-1": 2, "2": 1, "5": 5}
  assert train.describe()["per_class"] == {"-1": 4, "2": 3, "5": 15}
  train_px, test_px = _pixel_ids(train), _pixel_ids(test)
  assert not set(train_px) & set(test_px)
  assert set(train_px) | set(test_px) == set(range(30))
  assert not set(train.image_ids) & set(test.image_ids)
  data.check_disjoint(train, test)
  # Deterministic for the seed, not the same for every seed.
  np.testing.assert_array_equal(
      _pixel_ids(data.from_arrays(images, labels, split="test",
                                  test_fraction=0.25)), test_px)
  seeds = {tuple(data.from_arrays(images, labels, split="test",
                                  test_fraction=0.25, seed=s).image_ids)
           for s in range(4)}
  assert len(seeds) > 1
  # Without test_fraction: all rows, split "all", as before.
  whole = data.from_arrays(images, labels)
  assert len(whole) == 30 and whole.split == "all"
  with pytest.raises(ValueError, match=r"one of \['train', 'test'\]"):
    data.from_arrays(images, labels, test_fraction=0.25)
  with pytest.raises(ValueError, match="class 7 has only 1 image"):
    data.from_arrays(images[:3], np.asarray([0, 0, 7]), split="test",
                     test_fraction=0.5)


def test_check_disjoint_refuses_overlap():
  images = np.zeros((12, 4, 4), np.uint8)
  labels = np.arange(12) % 2
  train = data.from_arrays(images, labels, split="train", test_fraction=0.5)
  test = data.from_arrays(images, labels, split="test", test_fraction=0.5)
  data.check_disjoint(train, test)
  # Same arrays, same part: every test image is a training image.
  with pytest.raises(ValueError, match="train and test splits overlap: 6 of "
                     "6 test images are training images"):
    data.check_disjoint(train, train)
  # The whole array set against its test part.
  with pytest.raises(ValueError, match="6 of 6 test images"):
    data.check_disjoint(data.from_arrays(images, labels), test)
  # Other arrays (other content hash) never overlap.
  data.check_disjoint(train, data.from_arrays(images + 1, labels))


def test_check_disjoint_refuses_subsamples_of_one_split(tmp_path):
  root = str(_write_counted_folder(tmp_path / "zoo", {"cat": 10, "dog": 10}))
  train = data.load(root, num_examples=2, seed=0)
  # A seed whose 2-image subsample shares no image with `train`'s.
  test = next(t for t in (data.load(root, "test", num_examples=2, seed=s)
                          for s in range(1, 50))
              if not set(t.image_ids) & set(train.image_ids))
  with pytest.raises(ValueError, match="overlap: 0 of 2 test images are "
                     "training images only by chance: 20 of the 20 images"):
    data.check_disjoint(train, test)
  # Disjoint holdout parts, subsampled, are fine.
  data.check_disjoint(
      data.load(root, "train", num_examples=4, test_fraction=0.5),
      data.load(root, "test", num_examples=4, test_fraction=0.5))


def test_load_train_test_folder_holdout_and_refusals(tmp_path):
  root = _write_counted_folder(tmp_path / "zoo", {"cat": 10, "dog": 5})
  train, test, split = data.load_train_test(str(root), seed=3)
  assert split["method"] == "holdout" and split["seed"] == 3
  assert split["test_fraction"] == data.DEFAULT_TEST_FRACTION == 0.2
  assert split["shared_images"] == 0
  assert split["train"]["per_class"] == {"cat": 8, "dog": 4}
  assert split["test"]["per_class"] == {"cat": 2, "dog": 1}
  assert split["train"]["holdout"] == {"test_fraction": 0.2, "seed": 3,
                                       "part": "train"}
  assert split["train"]["source"] == split["test"]["source"]
  assert not set(train.image_ids) & set(test.image_ids)
  # Subsets and another fraction.
  _, test, split = data.load_train_test(str(root), test_fraction=0.4,
                                        num_examples=6, test_examples=3)
  assert split["train"]["num_examples"] == 6 and len(test) == 3
  assert split["train"]["pool_size"] == 9 and split["test"]["pool_size"] == 6
  # Same folder, same part.
  with pytest.raises(ValueError, match="overlap: 12 of 12 test images"):
    data.load_train_test(str(root), test_split="train")
  # Same folder as a separate test set, through another spelling (a
  # symlink): the same files.
  os.symlink(root, tmp_path / "alias")
  with pytest.raises(ValueError, match="overlap: 15 of 15 test images.*"
                     "--test_dataset"):
    data.load_train_test(str(root), test_dataset=str(tmp_path / "alias"))
  # A test folder sharing 2 files (symlinked) with the training folder.
  other = _write_counted_folder(tmp_path / "other", {"cat": 3, "dog": 3})
  os.remove(other / "cat" / "00.png")
  os.symlink(root / "cat" / "00.png", other / "cat" / "00.png")
  os.symlink(root / "dog" / "04.png", other / "dog" / "x.png")
  with pytest.raises(ValueError, match="overlap: 2 of 7 test images"):
    data.load_train_test(str(root), test_dataset=str(other))
  # A truly separate folder: accepted, recorded as such.
  separate = _write_counted_folder(tmp_path / "separate",
                                   {"cat": 2, "dog": 2})
  train, test, split = data.load_train_test(str(root),
                                            test_dataset=str(separate))
  assert split["method"] == "test_dataset" and split["test_fraction"] is None
  assert len(train) == 15 and len(test) == 4
  # Class names must agree; test_fraction only applies to a holdout.
  mismatch = _write_counted_folder(tmp_path / "mismatch",
                                   {"cat": 2, "fox": 2})
  with pytest.raises(ValueError, match="classes .* differ"):
    data.load_train_test(str(root), test_dataset=str(mismatch))
  with pytest.raises(ValueError, match="drop test_fraction"):
    data.load_train_test(str(root), test_dataset=str(separate),
                         test_fraction=0.2)


@pytest.mark.slow
def test_load_train_test_tfds_named_splits(fmnist_dir):
  train, test, split = data.load_train_test(
      "fashion_mnist", num_examples=40, test_examples=20, data_dir=fmnist_dir)
  assert split["method"] == "named_splits" and split["test_fraction"] is None
  assert (split["train"]["split"], split["test"]["split"]) == ("train", "test")
  assert split["train"]["pool_size"] == 60000
  assert sum(split["test"]["per_class"].values()) == len(test) == 20
  # The same TFDS name and split twice: refused (subsamples).
  with pytest.raises(ValueError, match=r"splits overlap: \d+ of 20 test"):
    data.load_train_test("fashion_mnist", test_split="train",
                         num_examples=40, test_examples=20,
                         data_dir=fmnist_dir)
  # A slice of the training split (resolved to the same TFDS records).
  with pytest.raises(ValueError, match="overlap: 100 of 100 test images"):
    data.load_train_test("fashion_mnist", test_split="train[:100]",
                         data_dir=fmnist_dir)
  with pytest.raises(ValueError, match="TFDS dataset with its own splits"):
    data.load_train_test("fashion_mnist", test_fraction=0.2,
                         data_dir=fmnist_dir)


# ------------------------------------------------------------ error paths


def test_unknown_name_suggests_close_match():
  with pytest.raises(ValueError, match="Did you mean 'cifar10'"):
    data.load("cifar_10")
  with pytest.raises(ValueError, match="Did you mean 'cifar10'"):
    data.check_name("cifar_10")          # reads nothing


def test_check_name_accepts_every_kind_of_dataset(tmp_path):
  for name in ("digits", "fashion_mnist", "voc/2007", "cifar10:3.0.2",
               str(tmp_path), "./not/yet/there"):
    data.check_name(name)
  with pytest.raises(ValueError, match="Did you mean 'digits'"):
    data.check_name("digit")
  with pytest.raises(ValueError, match="neither a TFDS dataset"):
    data.check_name("zzzqqq")
  with pytest.raises(ValueError, match="TFDS dataset name or a folder"):
    data.check_name("  ")


def test_offline_unprepared_fails_fast(tmp_path, monkeypatch):
  from sfda_jax.data import _tfds
  if _tfds.network_available()[0]:  # Never download in a test.
    monkeypatch.setattr(_tfds, "network_available",
                        lambda *a, **k: (False, "network disabled by test"))
  start = time.perf_counter()
  with pytest.raises(data.DatasetNotPreparedError) as info:
    data.load("dtd", data_dir=str(tmp_path))
  assert time.perf_counter() - start < 10.0
  message = str(info.value)
  assert "'dtd'" in message and str(tmp_path) in message
  assert "tfds build dtd" in message and "data_dir" in message
  assert isinstance(info.value, FileNotFoundError)
