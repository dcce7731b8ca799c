"""Streaming metrics (sfda_jax.streaming): parity with the in-memory metrics,
chunking edge cases, the .npy and extraction chunk sources, one chunk alive
at a time, float32 accuracy against cancellation, and bad-input errors."""

import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sfda_jax
from sfda_jax import streaming
from sfda_jax.backbones.base import Backbone, Preprocessing
from conftest import fast_subset, make_features, slow_for

RTOL = 1e-6


def chunked(x, y, size):
  """``make_chunks`` over in-memory arrays in ``size``-row chunks."""
  def make_chunks():
    return ((x[i:i + size], y[i:i + size]) for i in range(0, len(y), size))
  return make_chunks


def split_at(x, y, edges):
  """``make_chunks`` with chunk boundaries at ``edges``."""
  bounds = [0, *edges, len(y)]
  def make_chunks():
    return ((x[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
  return make_chunks


# name -> (streamed call, in-memory call)
METRICS = {
    "sfda": (streaming.sfda, sfda_jax.sfda),
    "logme": (streaming.logme, sfda_jax.logme),
    "hscore": (streaming.hscore, sfda_jax.hscore),
    "regularized_hscore": (streaming.regularized_hscore,
                           sfda_jax.regularized_hscore),
    "gbc": (streaming.gbc, sfda_jax.gbc),
    "gbc_spherical_pca5": (
        lambda mk: streaming.gbc(mk, gaussian_type="spherical", pca_dim=5),
        lambda x, y: sfda_jax.gbc(x, y, gaussian_type="spherical",
                                  pca_dim=5)),
    "transrate": (streaming.transrate, sfda_jax.transrate),
    "transrate_2_per_pass": (
        lambda mk: streaming.transrate(mk, classes_per_pass=2),
        sfda_jax.transrate),
}

# (N, D, K, chunk): N > D and N < D overall, chunks that do not divide N,
# chunks smaller than D, binary and 50 classes (K > D); make_features gives
# unbalanced classes with non-contiguous (negative, gapped) ids.
CASES = [
    pytest.param(400, 24, 5, 37, id="N>D-K5-chunk37"),
    pytest.param(60, 120, 3, 7, id="N<D-K3-chunk7"),
    pytest.param(150, 8, 2, 64, id="binary-chunk64"),
    pytest.param(700, 12, 50, 96, id="K50>D-chunk96"),
]


@pytest.mark.parametrize("n,d,k,chunk",
                         fast_subset(CASES, {"N>D-K5-chunk37"}))
@pytest.mark.parametrize("metric", list(METRICS))
def test_parity_with_in_memory_x64(x64, metric, n, d, k, chunk):
  x, y = make_features(n, d, k, seed=n + d + k)
  stream_fn, memory_fn = METRICS[metric]
  expected = memory_fn(x, y)
  np.testing.assert_allclose(stream_fn(chunked(x, y, chunk)), expected,
                             rtol=RTOL, atol=1e-12)


@pytest.mark.slow
def test_parity_n_equals_d_and_num_classes(x64):
  x, y = make_features(40, 40, 4, seed=5)
  mk = chunked(x, y, 9)
  for name in ("logme", "hscore", "sfda"):
    stream_fn, memory_fn = METRICS[name]
    np.testing.assert_allclose(stream_fn(mk), memory_fn(x, y), rtol=RTOL)
  np.testing.assert_allclose(streaming.logme(mk, num_classes=4),
                             sfda_jax.logme(x, y), rtol=RTOL)


@pytest.mark.parametrize("layout", slow_for(
    ["one_chunk", "rows_of_one", "ragged_growing", "classes_arrive_late"],
    {"one_chunk", "rows_of_one", "ragged_growing"}))
def test_chunking_edge_cases(x64, layout):
  x, y = make_features(120, 10, 20, seed=3)
  if layout == "one_chunk":
    mk = chunked(x, y, 10_000)
  elif layout == "rows_of_one":
    mk = chunked(x, y, 1)
  elif layout == "ragged_growing":        # padding target grows mid-stream
    mk = split_at(x, y, [1, 3, 10, 11, 40, 41, 100])
  else:                                   # sorted by label: class slots grow
    order = np.argsort(y, kind="stable")
    x, y = x[order], y[order]
    mk = chunked(x, y, 13)
  for name in ("sfda", "hscore", "gbc", "transrate_2_per_pass"):
    stream_fn, memory_fn = METRICS[name]
    np.testing.assert_allclose(stream_fn(mk), memory_fn(x, y), rtol=RTOL,
                               err_msg=name)


def test_string_and_float_labels(x64):
  x, y = make_features(90, 6, 3, seed=8, label_ids=[3, 10, 42])
  names = np.array(["cat", "dog", "emu"])[np.searchsorted([3, 10, 42], y)]
  np.testing.assert_allclose(streaming.sfda(chunked(x, names, 20)),
                             sfda_jax.sfda(x, y), rtol=RTOL)
  np.testing.assert_allclose(
      streaming.hscore(chunked(x, y.astype(np.float64), 20)),
      sfda_jax.hscore(x, y), rtol=RTOL)


def test_float32_accuracy_under_offset():
  """Features offset by 1e3 x their spread: X^T X - n mu mu^T in float32
  loses every digit; the Chan-merged centred statistics must not."""
  x, y = make_features(2000, 16, 4, seed=2, separation=3.0)
  x = x + 1e3
  x32 = x.astype(np.float32)
  from sfda_jax.baselines import numpy_reference as reference
  mk = chunked(x32, y, 300)
  for name, ref in [("hscore", reference.hscore(x, y)),
                    ("sfda", reference.sfda_score(x, y)),
                    ("gbc", reference.gbc(x, y))]:
    got = METRICS[name][0](mk)
    assert abs(got - ref) <= 1e-3 * abs(ref), (name, got, ref)
  # Negative control: the naive raw-moment covariance on the same float32
  # data is far off, so this data does exercise the cancellation.
  n = x32.shape[0]
  mu = x32.mean(axis=0, dtype=np.float32)
  naive = (x32.T @ x32) / np.float32(n) - np.outer(mu, mu)
  exact = np.cov(x, rowvar=False, bias=True)
  assert np.abs(naive - exact).max() > 1e-2 * np.abs(exact).max()


# ---------------------------------------------------------------- memory


@pytest.mark.slow
def test_one_chunk_alive_at_a_time():
  """Every chunk handed out is garbage by the time the next is requested,
  over every pass of every metric."""
  x, y = make_features(300, 12, 4, seed=4, dtype=np.float32)
  stats = {"calls": 0, "chunks": 0, "max_alive": 0}
  refs = []

  def make_chunks():
    stats["calls"] += 1
    for i in range(0, 300, 100):
      gc.collect()  # ~1 s with jax and TF loaded: keep the chunk count low
      alive = sum(r() is not None for r in refs)
      stats["max_alive"] = max(stats["max_alive"], alive)
      f, lab = x[i:i + 100].copy(), y[i:i + 100].copy()
      refs.append(weakref.ref(f))
      refs.append(weakref.ref(lab))
      stats["chunks"] += 1
      yield f, lab
      del f, lab

  for name, passes in [("sfda", 3), ("transrate_2_per_pass", 3)]:
    before = stats["calls"]
    METRICS[name][0](make_chunks)
    assert stats["calls"] - before == passes, name
  assert stats["chunks"] == 6 * 3
  assert stats["max_alive"] == 0, stats
  # The control: holding chunks is detected.
  kept = []
  def hoarding():
    for f, lab in make_chunks():
      kept.append(f)
      yield f, lab
  streaming.hscore(hoarding)
  assert stats["max_alive"] > 0


# ---------------------------------------------------------------- sources


@pytest.mark.slow
def test_chunks_from_npy(x64, tmp_path):
  x, y = make_features(230, 9, 6, seed=6)
  fp, lp = tmp_path / "f.npy", tmp_path / "y.npy"
  np.save(fp, x)
  np.save(lp, y)
  mk = streaming.chunks_from_npy(fp, lp, chunk_size=50)
  sizes = [f.shape[0] for f, _ in mk()]
  assert sizes == [50, 50, 50, 50, 30]
  assert [f.shape[0] for f, _ in mk()] == sizes          # fresh every call
  first_f, first_y = next(iter(mk()))
  assert not isinstance(first_f, np.memmap) and first_f.base is None
  np.testing.assert_array_equal(first_y, y[:50])
  for name in ("sfda", "logme", "transrate"):
    stream_fn, memory_fn = METRICS[name]
    np.testing.assert_allclose(stream_fn(mk), memory_fn(x, y), rtol=RTOL)


def test_chunks_from_npy_errors(tmp_path):
  x, y = make_features(20, 3, 2, seed=1)
  np.save(tmp_path / "f.npy", x)
  np.save(tmp_path / "y.npy", y)
  np.save(tmp_path / "short.npy", y[:-1])
  np.save(tmp_path / "f3.npy", x[:, :, None])
  with pytest.raises(ValueError, match="length mismatch"):
    streaming.chunks_from_npy(tmp_path / "f.npy", tmp_path / "short.npy", 5)
  with pytest.raises(ValueError, match="2-D"):
    streaming.chunks_from_npy(tmp_path / "f3.npy", tmp_path / "y.npy", 5)
  with pytest.raises(ValueError, match="chunk_size"):
    streaming.chunks_from_npy(tmp_path / "f.npy", tmp_path / "y.npy", 0)
  with pytest.raises(FileNotFoundError):
    streaming.chunks_from_npy(tmp_path / "nope.npy", tmp_path / "y.npy", 5)


@pytest.mark.slow
def test_chunks_from_extraction(tmp_path):
  from sfda_jax import data, features
  pre = Preprocessing(image_size=4, resize_size=4, mean=(0.5,) * 3,
                      std=(0.5,) * 3)
  rng = np.random.default_rng(0)
  labels = np.repeat([2, 5, 9], [20, 15, 12])
  images = rng.integers(0, 256, size=(labels.size, 4, 4, 3)).astype(np.uint8)
  images[..., 0] = np.minimum(255, images[..., 0] // 2 + 40 * (labels[:, None,
                                                                      None]))
  ds = data.from_arrays(images, labels, name="tiny")
  w = jnp.asarray(rng.normal(size=(48, 6)), jnp.float32)
  calls = []

  def apply(params, imgs):
    calls.append(imgs.shape)                   # trace time only
    f = jnp.tanh(imgs.reshape(imgs.shape[0], -1) @ params)
    return f, None

  bb = Backbone(name="tiny/linear", preprocessing=pre, feature_dim=6,
                num_source_classes=None, weights_id="tiny",
                apply_fn=jax.jit(apply), params=w)
  res = features.extract(bb, ds, batch_size=8, use_cache=False,
                         progress=False)
  mk = streaming.chunks_from_extraction(bb, ds, batch_size=8)
  chunks = list(mk())
  assert [c[0].shape for c in chunks] == [(8, 6)] * 5 + [(7, 6)]
  np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]),
                                res.labels)
  for name in ("sfda", "hscore", "logme", "gbc"):
    stream_fn, memory_fn = METRICS[name]
    np.testing.assert_allclose(stream_fn(mk),
                               memory_fn(res.features, res.labels),
                               rtol=1e-4, err_msg=name)
  assert calls == [(8, 4, 4, 3)]               # padded last batch: one compile
  with pytest.raises(ValueError, match="batch_size"):
    streaming.chunks_from_extraction(bb, ds, batch_size=0)


# ---------------------------------------------------------------- errors


def _stream(*chunks):
  return lambda: iter(chunks)


def test_bad_inputs():
  rng = np.random.default_rng(0)
  f = rng.normal(size=(10, 4))
  y = np.repeat([0, 1], 5)
  cases = [
      (_stream((f, y), (rng.normal(size=(6, 5)), y[:6])),
       "chunk 1: features have 5 dims but earlier chunks have 4"),
      (_stream((f, y[:9])), "length mismatch"),
      (_stream((f, np.r_[y[:9], 7])), "at least 2 samples"),
      (_stream((f, np.zeros(10, int))), "at least 2 distinct classes"),
      (_stream(), "empty stream"),
      (_stream((np.where(np.eye(10, 4) > 0, np.nan, f), y)), "NaN"),
      (_stream((f, y.astype(str)), (f, y)), "cannot be mixed"),
      (_stream((f, y + 0.5)), "integer class ids"),
      (_stream((f,)), r"\(features, labels\) pair"),
      (_stream((f[None], y)), "2-D"),
  ]
  for make_chunks, message in cases:
    with pytest.raises(ValueError, match=message):
      streaming.hscore(make_chunks)
  with pytest.raises(ValueError, match="callable"):
    streaming.sfda([(f, y)])
  with pytest.raises(ValueError, match="num_classes=3 but the stream has 2"):
    streaming.logme(_stream((f, y)), num_classes=3)
  with pytest.raises(ValueError, match="more than num_classes=2"):
    streaming.logme(_stream((f, np.arange(10) % 3)), num_classes=2)
  with pytest.raises(ValueError, match="num_classes"):
    streaming.logme(_stream((f, y)), num_classes=1)
  with pytest.raises(ValueError, match="classes_per_pass"):
    streaming.transrate(_stream((f, y)), classes_per_pass=0)
  with pytest.raises(ValueError, match="gaussian_type"):
    streaming.gbc(_stream((f, y)), gaussian_type="full")


def test_dtype_change_between_chunks(x64):
  f = np.random.default_rng(2).normal(size=(10, 4))
  y = np.repeat([0, 1], 5)
  with pytest.raises(ValueError, match="one dtype"):
    streaming.hscore(_stream((f.astype(np.float32), y), (f, y)))


def test_stream_must_repeat_itself():
  rng = np.random.default_rng(1)
  f = rng.normal(size=(12, 3))
  y = np.repeat([0, 1, 2], 4)
  one_shot = iter([(f, y)])
  with pytest.raises(ValueError, match="fresh iterator"):
    streaming.sfda(lambda: one_shot)            # pass 2 sees nothing
  calls = []
  def changing():
    calls.append(1)
    yield f, y if len(calls) == 1 else y + 1     # new label on pass 2
  with pytest.raises(ValueError, match="pass 2 has label 3"):
    streaming.regularized_hscore(changing)
