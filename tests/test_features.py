"""Feature extraction: padding without recompiling, cache hit/miss,
interruption and resume, corrupt and stale entries."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sfda_jax import features
from sfda_jax.backbones.base import Backbone, Preprocessing

PRE = Preprocessing(image_size=4, resize_size=4, mean=(0.5,) * 3,
                    std=(0.5,) * 3)


class FakeDataset:
  """Minimal dataset protocol: deterministic images, counts batches served."""

  def __init__(self, n=23, fail_after=None, name="fake"):
    rng = np.random.default_rng(0)
    self.images = rng.uniform(size=(n, 4, 4, 3)).astype(np.float32)
    self.labels = np.arange(n) % 3
    self.num_examples = n
    self.fingerprint = f"{name}:{n}"
    self.fail_after = fail_after
    self.served = 0

  def batches(self, preprocessing, batch_size):
    assert preprocessing == PRE
    for start in range(0, self.num_examples, batch_size):
      if self.fail_after is not None and self.served >= self.fail_after:
        raise RuntimeError("simulated interruption")
      self.served += 1
      yield (self.images[start:start + batch_size],
             self.labels[start:start + batch_size])


def make_backbone(traces, with_head=True):
  w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5)), jnp.float32)

  def apply(params, images):
    traces.append(images.shape)                 # runs at trace time only
    f = images.mean(axis=(1, 2)) @ params
    return f, (f[:, :2] if with_head else None)

  return Backbone(name="toy/model", preprocessing=PRE, feature_dim=5,
                  num_source_classes=2 if with_head else None,
                  weights_id="toy", apply_fn=jax.jit(apply), params=w)


def expected(ds, backbone):
  return ds.images.mean(axis=(1, 2)) @ np.asarray(backbone.params)


def test_extract_pads_last_batch_without_recompiling(tmp_path):
  traces = []
  bb = make_backbone(traces)
  ds = FakeDataset(n=23)
  res = features.extract(bb, ds, batch_size=8, cache_dir=str(tmp_path),
                         progress=False)
  assert traces == [(8, 4, 4, 3)]               # one compile for 3 batches
  np.testing.assert_allclose(res.features, expected(ds, bb), rtol=1e-5)
  np.testing.assert_array_equal(res.labels, ds.labels)
  assert res.source_logits.shape == (23, 2)
  np.testing.assert_allclose(res.source_probs.sum(1), 1.0, rtol=1e-5)
  assert not res.from_cache


def test_cache_hit_miss_and_no_head(tmp_path):
  traces = []
  bb = make_backbone(traces, with_head=False)
  ds = FakeDataset(n=10)
  first = features.extract(bb, ds, batch_size=4, cache_dir=str(tmp_path),
                           progress=False)
  assert first.source_logits is None and first.source_probs is None
  served = ds.served
  again = features.extract(bb, ds, batch_size=4, cache_dir=str(tmp_path),
                           progress=False)
  assert again.from_cache and ds.served == served
  np.testing.assert_array_equal(again.features, first.features)
  assert again.source_logits is None
  # Another dataset fingerprint is a miss.
  other = features.extract(bb, FakeDataset(n=10, name="other"), batch_size=4,
                           cache_dir=str(tmp_path), progress=False)
  assert not other.from_cache
  # No leftovers: one entry per (model, dataset), no temp or partial files.
  files = sorted(os.listdir(tmp_path / "toy_model"))
  assert len(files) == 2 and all(f.endswith(".npz") for f in files)


def test_interrupted_run_resumes(tmp_path):
  traces = []
  bb = make_backbone(traces)
  ds = FakeDataset(n=40, fail_after=5)
  with pytest.raises(RuntimeError, match="simulated"):
    features.extract(bb, ds, batch_size=4, cache_dir=str(tmp_path),
                     checkpoint_every=8, progress=False)
  key = features.cache_key(bb, ds)
  parts = os.listdir(tmp_path / "toy_model" / (key + ".partial"))
  assert sorted(parts) == ["part-000000.npz", "part-000001.npz"]
  calls = []
  counting = Backbone(**{**bb.__dict__, "apply_fn": lambda p, x: (
      calls.append(1), bb.apply_fn(p, x))[1]})
  ds.fail_after = None
  res = features.extract(counting, ds, batch_size=4, cache_dir=str(tmp_path),
                         checkpoint_every=8, progress=False)
  assert len(calls) == 6                      # 4 of 10 batches were saved
  np.testing.assert_allclose(res.features, expected(ds, bb), rtol=1e-5)
  np.testing.assert_array_equal(res.labels, ds.labels)
  assert not (tmp_path / "toy_model" / (key + ".partial")).exists()


def test_ctrl_c_says_how_far_it_got_and_a_rerun_resumes(tmp_path):
  bb = make_backbone([])
  ds = FakeDataset(n=40)
  real = ds.batches

  def interrupted(preprocessing, batch_size):
    for i, batch in enumerate(real(preprocessing, batch_size)):
      if i == 5 and not ds.done:
        raise KeyboardInterrupt
      yield batch
  ds.done = False
  ds.batches = interrupted
  with pytest.raises(features.ExtractionInterrupted,
                     match=r"interrupted at 20/40 images of toy/model; 16 "
                     "are checkpointed, rerun the same command to resume"):
    features.extract(bb, ds, batch_size=4, cache_dir=str(tmp_path),
                     checkpoint_every=8, progress=False)
  assert issubclass(features.ExtractionInterrupted, KeyboardInterrupt)
  ds.done = True
  res = features.extract(bb, ds, batch_size=4, cache_dir=str(tmp_path),
                         checkpoint_every=8, progress=False)
  np.testing.assert_allclose(res.features, expected(ds, bb), rtol=1e-5)
  with pytest.raises(features.ExtractionInterrupted, match="no cache"):
    ds.done = False
    features.extract(bb, ds, batch_size=4, use_cache=False, progress=False)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "stale"])
def test_corrupt_or_stale_entry_is_recomputed(tmp_path, damage):
  traces = []
  bb = make_backbone(traces)
  ds = FakeDataset(n=12)
  first = features.extract(bb, ds, batch_size=4, cache_dir=str(tmp_path),
                           progress=False)
  path = tmp_path / "toy_model" / (features.cache_key(bb, ds) + ".npz")
  if damage == "garbage":
    path.write_bytes(b"not a zip file")
  elif damage == "truncated":
    path.write_bytes(path.read_bytes()[:200])
  else:
    features._atomic_savez(str(path), key=np.array("other-key"),
                           features=first.features * 0, labels=first.labels,
                           source_logits=first.source_logits)
  again = features.extract(bb, ds, batch_size=4, cache_dir=str(tmp_path),
                           progress=False)
  assert not again.from_cache
  np.testing.assert_allclose(again.features, first.features)
  assert features.extract(bb, ds, batch_size=4, cache_dir=str(tmp_path),
                          progress=False).from_cache


def test_bad_arguments(tmp_path):
  bb = make_backbone([])
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="cache directory"):
    features.extract(bb, FakeDataset(), cache_dir=str(blocker / "sub"),
                     progress=False)
  with pytest.raises(ValueError, match="batch_size"):
    features.extract(bb, FakeDataset(), batch_size=0, progress=False)


@pytest.mark.slow
def test_offline_zoo_extracts_real_fashion_mnist(fmnist_dir, tmp_path):
  """The real offline zoo end to end: Debian Fashion-MNIST through TFDS,
  EfficientNet-Lite0 at its native 224 px, ImageNet head logits."""
  from sfda_jax import backbones, data
  ds = data.load("fashion_mnist", split="test", num_examples=20,
                 data_dir=fmnist_dir)
  bb = backbones.get("efficientnet_lite0", dtype="float32")
  res = features.extract(bb, ds, batch_size=8, cache_dir=str(tmp_path),
                         progress=False)
  assert res.features.shape == (20, 1280)
  assert res.source_logits.shape == (20, 1000)
  assert np.all(np.isfinite(res.features)) and res.features.std() > 0
  np.testing.assert_array_equal(res.labels, ds.labels)
  assert np.bincount(res.labels).tolist() == [2] * 10
  # The same images through the model's own NumPy preprocessing agree.
  images, _ = next(ds.batches(bb.preprocessing, 4))
  direct, _ = bb(jnp.asarray(images))
  np.testing.assert_allclose(res.features[:4], np.asarray(direct), rtol=1e-4,
                             atol=1e-4)
  control = backbones.get("efficientnet_lite0", random_init=True)
  res_c = features.extract(control, ds, batch_size=8, cache_dir=str(tmp_path),
                           progress=False)
  assert res_c.source_logits is None
  assert not np.allclose(res_c.features, res.features)
