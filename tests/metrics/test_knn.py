"""The k-NN estimator and INT (sfda_jax/metrics/_knn.py).

(a) float64 parity (``jax_enable_x64``, 1e-6 relative) with the plain NumPy
references of sfda_jax/baselines/numpy_reference_knn.py (written from
METRICS.md) over N > D and N < D, 2 to 100 classes, unbalanced classes,
negative and gapped label ids, chunk sizes that do and do not divide N, hard
and soft k-NN with k in {1, 5, 20}, INT raw and L2-normalised; ties broken
as the contract says (duplicated rows); (b) properties; (c) bad options and
inputs; (d) float32 accuracy on ReLU'd / offset features; (e) the hardening
battery and the score_models path; memory ``O(chunk_size * N)``.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax
import ml_dtypes
import numpy as np
import pytest

import sfda_jax
from sfda_jax.baselines import numpy_reference_knn as reference
from sfda_jax.metrics import _knn, _runner, registry
from conftest import fast_subset, make_features

knn = _knn.knn
inter_class_distance = _knn.inter_class_distance
RTOL = 1e-6

# ---------------------------------------------------------------------------
# (a) float64 parity with the NumPy references.

# id -> (N, D, K, separation, label ids or None for make_features' random
# gapped ids). Separations keep the k-NN accuracy away from 0 and 1.
SETS = {
    "N>D-K5": (240, 24, 5, 1.5, None),
    "N<D-K3": (60, 120, 3, 0.6, None),
    "binary-neg-ids": (150, 8, 2, 1.0, [-40, -3]),
    "K100": (400, 16, 100, 3.0, None),
    "N<D-K10-gapped": (90, 200, 10, 1.5, [-1000, -7, 0, 3, 8, 99, 100, 512,
                                          513, 10 ** 6]),
}


@functools.lru_cache(maxsize=None)
def _set(name):
  n, d, k, sep, ids = SETS[name]
  return make_features(n, d, k, seed=n + d + k, separation=sep,
                       label_ids=ids)


def _chunk(n, how):
  """A chunk size: ``None`` (the default, one chunk), one dividing ``n``
  into >= 3 chunks, or one leaving a ragged last chunk."""
  if how == "one":
    return None
  if how == "divides":
    c = max(c for c in range(2, n // 3 + 1) if n % c == 0)
  else:
    c = n // 3 + 1
  assert (n % c == 0) == (how == "divides") and n // c >= 2, (n, c)
  return c


def _with_chunk(kwargs, n, how):
  c = _chunk(n, how)
  return kwargs if c is None else {**kwargs, "chunk_size": c}


@functools.lru_cache(maxsize=None)
def _knn_ref(name, k, soft):
  x, y = _set(name)
  return reference.knn(x, y, k=k, soft=soft)


@functools.lru_cache(maxsize=None)
def _int_ref(name, normalize):
  x, y = _set(name)
  return reference.inter_class_distance(x, y, normalize=normalize)


KNN_GRID = fast_subset(
    [pytest.param(name, k, soft, how,
                  id=f"{name}-k{k}-{'soft' if soft else 'hard'}-{how}")
     for name in SETS for k in (1, 5, 20) for soft in (False, True)
     for how in ("one", "divides", "ragged")],
    {"N>D-K5-k20-hard-ragged", "N>D-K5-k5-soft-divides",
     "N<D-K3-k1-hard-one"})

INT_GRID = fast_subset(
    [pytest.param(name, normalize, how, id=f"{name}-{normalize or 'raw'}-{how}")
     for name in SETS for normalize in (None, "l2")
     for how in ("one", "divides", "ragged")],
    {"N>D-K5-raw-ragged", "N<D-K3-l2-divides", "K100-raw-one"})


@pytest.mark.parametrize("name,k,soft,how", KNN_GRID)
def test_knn_parity(x64, name, k, soft, how):
  x, y = _set(name)
  want = _knn_ref(name, k, soft)
  assert 0.0 < want < 1.0, want            # a meaningful comparison
  got = knn(x, y, **_with_chunk({"k": k, "soft": soft}, len(y), how))
  np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("name,normalize,how", INT_GRID)
def test_inter_class_distance_parity(x64, name, normalize, how):
  x, y = _set(name)
  got = inter_class_distance(
      x, y, **_with_chunk({"normalize": normalize}, len(y), how))
  np.testing.assert_allclose(got, _int_ref(name, normalize), rtol=RTOL,
                             atol=1e-12)


def test_ties_go_to_the_lower_index_and_the_smaller_class_id():
  """Duplicated rows make exact similarity ties: the neighbour with the
  lower index wins, and a tied class vote goes to the smallest class id.

  Rows 0-2 are one point, rows 3-4 another (orthogonal); ids -3 < 8.
    k=1: sample 0's tied neighbours are 1, 2 (both id 8): miss; sample 1
      takes 0 over 2 (id -3, a miss; "higher index" would take 2: a hit);
      sample 2 takes 0 (miss); 3 and 4 take each other (hits): 2/5.
    k=2: samples 1 and 2 each get one vote for -3 and one equal vote for 8:
      the tie goes to -3 (a miss; "largest id" would hit): 2/5 again.
  """
  x = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 2)
  y = np.array([-3, 8, 8, -3, -3])
  for k, chunk_size in ((1, 2), (1, 5), (2, 1)):
    assert knn(x, y, k=k, chunk_size=chunk_size) == pytest.approx(0.4)
    assert reference.knn(x, y, k=k) == pytest.approx(0.4)


@pytest.mark.parametrize("offset,k", fast_subset(
    [pytest.param(o, k, id=f"offset{o:g}-k{k}") for o in (0.0, 3.0)
     for k in (1, 2, 3, 5, 20)], {"offset3-k20"}))
def test_duplicated_rows_match_the_reference(offset, k):
  """Continuous data with every row repeated 2-3 times (many exact ties
  among the neighbours), labels random: float32 equals the float64
  reference (ties resolved identically). D = 5 is a shape where XLA:CPU
  rounds identical rows' sums differently at different positions (the
  offset-3, k=20 case fails without ``_first_copies``)."""
  rng = np.random.default_rng(1)
  base = rng.normal(size=(20, 5)) + offset
  x = np.concatenate([base, base, base[:10]])[rng.permutation(50)]
  y = rng.integers(0, 3, size=50) * 5 - 4
  for soft in (False, True):
    got = knn(x.astype(np.float32), y, k=k, soft=soft, chunk_size=7)
    want = reference.knn(x, y, k=k, soft=soft)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6), soft


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_large_copy_groups_across_blocks(chunk_size):
  """Fewer distinct rows than k, groups larger than k and spread over many
  blocks of the symmetric product: a chosen first copy stands for all its
  members in index order (the sample itself skipped), as the reference's
  stable sort ranks them."""
  rng = np.random.default_rng(3)
  base = rng.normal(size=(4, 6)) + 2.0
  x = base[rng.choice(4, size=60, p=[0.5, 0.3, 0.15, 0.05])]
  y = rng.integers(0, 4, size=60)
  for k, soft in ((3, False), (20, False), (45, True)):
    got = knn(x.astype(np.float32), y, k=k, soft=soft,
              chunk_size=chunk_size)
    want = reference.knn(x, y, k=k, soft=soft)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6), (k, soft)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_first_copies(x64_scope, dtype):
  """Each row's first bitwise-identical row (the column its similarities
  are read from), float32 and float64 (two 32-bit words per value)."""
  rng = np.random.default_rng(2)
  base = rng.normal(size=(30, 5))
  src = rng.integers(0, 30, size=90)
  x = base[src]
  x[7] = base[src[7]] + 1e-7                        # near, not equal
  want = np.array([np.flatnonzero((x == x[j]).all(axis=1))[0]
                   for j in range(len(x))])
  assert (want != np.arange(len(x))).sum() > 30      # many duplicates
  with x64_scope():
    got = jax.jit(_knn._first_copies)(jnp.asarray(x.astype(dtype)))
    np.testing.assert_array_equal(np.asarray(got), want)


# ---------------------------------------------------------------------------
# (b) properties.

def _blobs(n=300, d=16, k=4, separation=20.0, seed=0):
  return make_features(n, d, k, seed=seed, separation=separation,
                       unbalanced=False)


def test_well_separated_features_score_high():
  x, y = _blobs()
  assert knn(x, y) >= 0.98
  assert knn(x, y, soft=True) >= 0.95
  rng = np.random.default_rng(0)
  shuffled = rng.permutation(y)
  # Shuffled, a quarter of the pairs are within-class: at most 4/3 apart.
  assert inter_class_distance(x, y) > 1.25 * inter_class_distance(x, shuffled)


def test_shuffled_labels_score_near_chance():
  x, y = _blobs(n=400, k=4)
  y = np.random.default_rng(3).permutation(y)
  assert abs(knn(x, y) - 0.25) < 0.08            # chance: 1 / K
  assert abs(knn(x, y, soft=True) - 0.25) < 0.08


def test_label_renaming_changes_nothing():
  x, y = make_features(200, 12, 5, seed=4, separation=1.5)
  codes = np.unique(y, return_inverse=True)[1]
  renamings = [codes, 1000 - 3 * codes,
               np.array([f"class-{c}" for c in codes])]
  for fn in (knn, functools.partial(knn, soft=True, k=7),
             inter_class_distance):
    base = fn(x, y)
    for labels in renamings:
      assert fn(x, labels) == pytest.approx(base, rel=1e-6), fn


@pytest.mark.parametrize("scale", [3.7, 1e-3, 2.0 ** 40, 1e30, 1e-30])
def test_knn_is_invariant_to_positive_rescaling(scale):
  x, y = make_features(200, 12, 5, seed=5, separation=1.5,
                       dtype=np.float32)
  xs = (x.astype(np.float64) * scale).astype(np.float32)
  for soft in (False, True):
    assert knn(xs, y, soft=soft) == pytest.approx(knn(x, y, soft=soft),
                                                  rel=1e-5)


def test_inter_class_distance_scales_linearly_and_ignores_translation(x64):
  x, y = make_features(200, 12, 5, seed=6)
  base = inter_class_distance(x, y)
  assert inter_class_distance(3.5 * x, y) == pytest.approx(3.5 * base,
                                                           rel=1e-12)
  shift = np.random.default_rng(0).normal(size=12) * 100.0
  assert inter_class_distance(x + shift, y) == pytest.approx(base, rel=1e-9)
  # normalize="l2": scale invariant instead.
  l2 = inter_class_distance(x, y, normalize="l2")
  assert inter_class_distance(7.0 * x, y, normalize="l2") == pytest.approx(
      l2, rel=1e-12)
  assert l2 != pytest.approx(base, rel=1e-3)


def test_inter_class_distance_float32_translation_invariance():
  """A large common offset (as on ReLU features) does not cost float32
  accuracy: the features are centred before the distances."""
  x, y = make_features(300, 16, 4, seed=7, dtype=np.float32)
  base = reference.inter_class_distance(x, y)
  assert inter_class_distance(x + np.float32(1000.0), y) == pytest.approx(
      base, rel=1e-4)


def test_worked_examples():
  x = np.array([[0.0], [0.0], [3.0], [4.0]])
  assert inter_class_distance(x, [0, 0, 1, 1]) == 3.5
  # Three classes on a line: pairs (0,1): 1, (0,2): 3, (1,2): 2 -> mean 2.
  x = np.array([[0.0], [0.0], [1.0], [1.0], [3.0], [3.0]])
  assert inter_class_distance(x, [5, 5, 6, 6, 7, 7]) == pytest.approx(2.0)
  x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
  assert knn(x, [0, 0, 1, 1], k=1) == 1.0
  assert knn(x, [0, 1, 0, 1], k=1) == 0.0
  # soft, k=2: sample 0's neighbours are 1 (same class, s=0.9939) and 3
  # (s=0.1104): share exp(s1/T) / (exp(s1/T) + exp(s3/T)).
  s1, s3 = 0.9 / np.hypot(0.9, 0.1), 0.1 / np.hypot(0.9, 0.1)
  share = 1.0 / (1.0 + np.exp((s3 - s1) / 0.07))
  assert knn(x, [0, 0, 1, 1], k=2, soft=True) == pytest.approx(share,
                                                               rel=1e-5)


def test_registered_and_core_is_jittable_and_vmappable():
  spec_knn = registry.REGISTRY["knn"]
  spec_int = registry.REGISTRY["inter_class_distance"]
  assert spec_knn.fn is knn and spec_int.fn is inter_class_distance
  assert (spec_knn.order, spec_int.order) == (110, 120)
  assert spec_knn.scale_invariant and not spec_int.scale_invariant
  assert spec_knn.defaults == {"k": 20, "temperature": 0.07, "soft": False,
                               "chunk_size": 1024}
  assert spec_int.defaults == {"normalize": None, "chunk_size": 1024}
  x, y = make_features(120, 8, 3, seed=8, dtype=np.float32)
  codes = jnp.asarray(np.unique(y, return_inverse=True)[1], jnp.int32)
  stack = jnp.stack([jnp.asarray(x), 2.0 * jnp.asarray(x) + 1.0])
  for core, static, fn in [
      (_knn.knn_core, {"k": 5, "soft": True, "chunk_size": 50},
       functools.partial(knn, k=5, soft=True)),
      (_knn.inter_class_distance_core, {"chunk_size": 50},
       inter_class_distance)]:
    batched = jax.jit(jax.vmap(functools.partial(core, num_classes=3,
                                                 **static),
                               in_axes=(0, None)))(stack, codes)
    for i in range(2):
      assert float(batched[i]) == pytest.approx(fn(np.asarray(stack[i]), y),
                                                rel=1e-5)


@pytest.mark.parametrize("core,static", [
    (_knn.knn_core, {"k": 20, "temperature": 0.07, "soft": False}),
    (_knn.inter_class_distance_core, {"normalize": None})],
    ids=["knn", "inter_class_distance"])
def test_memory_is_linear_in_n(core, static):
  """Chunked: the compiled kernel never holds an N x N buffer (the control,
  one chunk of all N rows, does)."""
  n = 2048
  x = jax.ShapeDtypeStruct((n, 16), jnp.float32)
  y = jax.ShapeDtypeStruct((n,), jnp.int32)

  def temp_bytes(chunk_size):
    fn = functools.partial(core, num_classes=4, chunk_size=chunk_size,
                           **static)
    return jax.jit(fn).lower(x, y).compile().memory_analysis(
    ).temp_size_in_bytes

  assert temp_bytes(128) < n * n * 4 / 4
  assert temp_bytes(n) >= n * n * 4


# ---------------------------------------------------------------------------
# (c) bad options and inputs.

_X, _Y = make_features(40, 6, 4, seed=0, separation=3.0, dtype=np.float32)


def test_k_must_be_below_n():
  assert np.isfinite(knn(_X, _Y, k=39))
  for k in (40, 41, 1000):
    with pytest.raises(ValueError, match=rf"k={k} must be at most N - 1 = 39 "
                       r"for N=40"):
      knn(_X, _Y, k=k)


def test_k_check_runs_before_any_kernel(monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError("the kernel ran")
  monkeypatch.setattr(_runner, "call_core", fail)
  with pytest.raises(ValueError, match="k=40"):
    knn(_X, _Y, k=40)
  with pytest.raises(AssertionError, match="the kernel ran"):
    knn(_X, _Y, k=39)                        # the spy does catch a kernel


@pytest.mark.parametrize("kwargs,match", [
    ({"k": 0}, "k must be a positive int"),
    ({"k": -3}, "k must be a positive int"),
    ({"k": 2.5}, "k must be a positive int"),
    ({"k": True}, "k must be a positive int"),
    ({"temperature": 0.0}, "temperature must be a finite number > 0"),
    ({"temperature": -0.07}, "temperature must be a finite number > 0"),
    ({"temperature": float("nan")}, "temperature must be a finite number"),
    ({"temperature": float("inf")}, "temperature must be a finite number"),
    ({"temperature": "0.07"}, "temperature must be a finite number"),
    ({"soft": "yes"}, "soft must be True or False"),
    ({"chunk_size": 0}, "chunk_size must be a positive int"),
])
def test_knn_bad_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    knn(_X, _Y, **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    ({"normalize": "l1"}, "normalize must be one of"),
    ({"normalize": "L2"}, "normalize must be one of"),
    ({"normalize": True}, "normalize must be one of"),
    ({"chunk_size": -1}, "chunk_size must be a positive int"),
])
def test_inter_class_distance_bad_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    inter_class_distance(_X, _Y, **kwargs)


@pytest.mark.parametrize("fn", [knn, inter_class_distance],
                         ids=["knn", "inter_class_distance"])
def test_bad_inputs(fn):
  with pytest.raises(ValueError, match="at least 2 distinct classes"):
    fn(_X, np.zeros(40, int))
  bad = _X.copy()
  bad[3, 2] = np.nan
  with pytest.raises(ValueError, match="NaN or Inf"):
    fn(bad, _Y)
  with pytest.raises(TypeError, match="unexpected"):
    fn(_X, _Y, **{"kk": 3})


# ---------------------------------------------------------------------------
# (d) float32 accuracy: ReLU'd, offset, ill-conditioned features.

def relu_features(n, d, k, cond, offset, separation, seed):
  """As tests/metrics/test_float32_accuracy.py's ``realistic_features``:
  class-structured latent Gaussians through a random map and a ReLU,
  columns scaled over ``[1, 1/sqrt(cond)]``, plus a common ``offset``."""
  rng = np.random.default_rng(seed)
  y = np.concatenate([np.arange(k), np.arange(k),
                      rng.integers(0, k, size=n - 2 * k)])
  rng.shuffle(y)
  r = min(d, 32)
  z = rng.normal(size=(k, r))[y] * separation + rng.normal(size=(n, r))
  h = np.maximum(z @ rng.normal(size=(r, d)) / np.sqrt(r)
                 + 0.3 * rng.normal(size=(n, d)), 0.0)
  scales = rng.permutation(np.logspace(0, -0.5 * np.log10(cond), d))
  return (h * scales + offset).astype(np.float32), y


F32_SETS = {
    "relu-n300-d64-cond1e6": (300, 64, 10, 1e6, 0.0, 1.5, 1),
    "relu-n200-d512-cond1e8": (200, 512, 10, 1e8, 0.0, 1.0, 2),
    # All cosines within ~1e-9 of 1: a plain float32 x_i . x_j is 46% off.
    "relu-offset1000-n500-d128-cond1e4": (500, 128, 10, 1e4, 1000.0, 0.5, 0),
    "relu-offset100-n1000-d128-cond1e4": (1000, 128, 10, 1e4, 100.0, 0.5, 0),
}
F32_PARAMS = fast_subset([pytest.param(s, id=s) for s in F32_SETS],
                         {"relu-offset1000-n500-d128-cond1e4"})
F32_METRICS = {
    "knn": (knn, reference.knn),
    "knn_soft": (functools.partial(knn, soft=True),
                 functools.partial(reference.knn, soft=True)),
    "int": (inter_class_distance, reference.inter_class_distance),
    "int_l2": (functools.partial(inter_class_distance, normalize="l2"),
               functools.partial(reference.inter_class_distance,
                                 normalize="l2")),
}


@functools.lru_cache(maxsize=None)
def _f32_set(name):
  return relu_features(*F32_SETS[name])


def float32_error(metric, name):
  """``(ours float32, reference float64, relative error)``."""
  ours_fn, ref_fn = F32_METRICS[metric]
  x, y = _f32_set(name)
  ours = ours_fn(x, y)
  want = ref_fn(x.astype(np.float64), y)
  return ours, want, abs(ours - want) / abs(want)


@pytest.mark.parametrize("name", F32_PARAMS)
@pytest.mark.parametrize("metric", sorted(F32_METRICS))
def test_float32_within_two_percent(metric, name):
  assert not jax.config.jax_enable_x64
  ours, want, rel = float32_error(metric, name)
  assert np.isfinite(ours) and rel <= 0.02, (ours, want, rel)


def _plain_float32_knn(x, y, k=20, temperature=0.07):
  """The textbook kernel (normalise, one float32 matmul, argmax of the
  summed exp(s / T)): the negative control of the offset set."""
  x = jnp.asarray(x, jnp.float32)
  xh = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  s = jnp.where(jnp.eye(len(y), dtype=bool), -jnp.inf,
                jnp.matmul(xh, xh.T, precision=lax.Precision.HIGHEST))
  top, idx = lax.top_k(s, k)
  codes = np.unique(y, return_inverse=True)[1]
  votes = jnp.einsum("nk,nkc->nc", jnp.exp((top - top[:, :1]) / temperature),
                     jax.nn.one_hot(jnp.asarray(codes)[idx], codes.max() + 1))
  return float(jnp.mean(jnp.argmax(votes, axis=1) == codes))


def test_offset_set_defeats_a_plain_float32_cosine():
  """The offset set is hard: the plain kernel is > 2% off there (so the
  float32 test above can fail), while it is fine on a ReLU'd set."""
  for name, hard in [("relu-offset1000-n500-d128-cond1e4", True),
                     ("relu-n300-d64-cond1e6", False)]:
    x, y = _f32_set(name)
    want = reference.knn(x.astype(np.float64), y)
    rel = abs(_plain_float32_knn(x, y) - want) / want
    assert (rel > 0.02) == hard, (name, rel)


# ---------------------------------------------------------------------------
# (e) the hardening battery: same kinds of errors as every other metric, and
# the same outcome through score_models.

METRICS = ["knn", "inter_class_distance"]
_rng = np.random.default_rng(7)


def _nan(x, y):
  x = x.copy()
  x[3, 2] = np.nan
  return x, y


def _inf(x, y):
  x = x.copy()
  x[5, 1] = np.inf
  return x, y


# case -> (make(x, y) -> (x, y), expectation): a regex of the ValueError,
# "finite", "base" (the base score, rel 1e-5) or "close" (half precision);
# a dict maps metric -> expectation with "*" as the default.
CASES = {
    "nan": (_nan, "NaN or Inf"),
    "inf": (_inf, "NaN or Inf"),
    "constant_features": (lambda x, y: (np.full_like(x, 2.5), y),
                          "features are constant"),
    "all_zero_features": (lambda x, y: (np.zeros_like(x), y),
                          "features are constant"),
    "one_dimension": (lambda x, y: (x[:, :1], y), "finite"),
    "fewer_samples_than_dims": (
        lambda x, y: (_rng.normal(size=(12, 30)).astype(np.float32),
                      np.repeat([0, 1, 2], 4)),
        {"*": "finite", "knn": r"k=20 must be at most N - 1 = 11"}),
    "one_sample_per_class": (lambda x, y: (x[:4], np.arange(4)),
                             "at least 2 samples"),
    "a_single_sample_class": (
        lambda x, y: (x, np.where(np.arange(len(y)) == 0, 12345, y)),
        "at least 2 samples"),
    "two_classes": (lambda x, y: (x, (y == y[0]).astype(int)), "finite"),
    "thousand_classes": (
        lambda x, y: (_rng.normal(size=(2000, 8)).astype(np.float32),
                      np.repeat(np.arange(1000), 2)), "finite"),
    "huge_magnitude": (lambda x, y: (x * np.float32(1e30), y),
                       {"*": "too large", "knn": "base"}),
    "tiny_magnitude": (lambda x, y: (x * np.float32(1e-30), y),
                       {"*": "too small", "knn": "base"}),
    "float16": (lambda x, y: (x.astype(np.float16), y), "close"),
    "bfloat16": (lambda x, y: (jnp.asarray(x, jnp.bfloat16), y), "close"),
    "integer_features": (lambda x, y: (np.round(x * 4).astype(np.int32), y),
                         "finite"),
    "bool_features": (lambda x, y: (x > np.median(x, axis=0), y), "finite"),
    "non_contiguous": (
        lambda x, y: (np.asfortranarray(np.repeat(x, 2, axis=1))[:, ::2],
                      y), "base"),
    "negative_noncontiguous_label_ids": (
        lambda x, y: (x, np.array([-1000, -3, 7, 500])[
            np.unique(y, return_inverse=True)[1]]), "base"),
    "order_reversing_renaming": (lambda x, y: (x, -7 * y + 3), "base"),
    "string_labels": (lambda x, y: (x, np.array([f"c{v:+d}" for v in y])),
                      "base"),
    "nan_label": (lambda x, y: (x, np.where(np.arange(len(y)) == 2, np.nan,
                                            y.astype(float))), "NaN or Inf"),
    "length_mismatch": (lambda x, y: (x, y[:-1]), "length mismatch"),
    "empty": (lambda x, y: (x[:0], y[:0]), "empty"),
    "three_dimensional": (lambda x, y: (x.reshape(40, 3, 2), y), "2-D"),
    "complex_features": (lambda x, y: (x.astype(np.complex64), y),
                         "real-valued"),
    "string_features": (lambda x, y: (x.astype(str), y), "numeric"),
}
#: Hardening cases in the fast subset; the rest are slow.
FAST_CASES = {"nan", "inf", "constant_features", "one_sample_per_class",
              "a_single_sample_class", "fewer_samples_than_dims",
              "huge_magnitude", "tiny_magnitude", "float16", "bool_features",
              "order_reversing_renaming", "string_features"}
CASE_PARAMS = fast_subset([pytest.param(c, id=c) for c in CASES], FAST_CASES)


def _score(metric, x, y):
  return getattr(_knn, metric)(x, y)


_BASE = {}


def _base_score(metric):
  if metric not in _BASE:
    _BASE[metric] = _score(metric, _X, _Y)
  return _BASE[metric]


def _expectation(metric, case):
  expect = CASES[case][1]
  return expect.get(metric, expect["*"]) if isinstance(expect, dict) \
      else expect


@pytest.mark.parametrize("case", CASE_PARAMS)
@pytest.mark.parametrize("metric", METRICS)
def test_edge_input(metric, case):
  expect = _expectation(metric, case)
  x, y = CASES[case][0](_X, _Y)
  if expect in ("finite", "base", "close"):
    value = _score(metric, x, y)
    assert isinstance(value, float) and np.isfinite(value), value
    if metric == "knn":
      assert 0.0 <= value <= 1.0
    if expect == "base":
      assert value == pytest.approx(_base_score(metric), rel=1e-5, abs=1e-7)
    elif expect == "close":
      # Half precision rounds the features: INT moves by ~1e-3 relative, a
      # k-NN accuracy on 40 samples by at most a flipped sample or two.
      tol = {"knn": 2.0 / 40, "inter_class_distance": 2e-2}[metric]
      assert value == pytest.approx(_base_score(metric), rel=tol, abs=tol)
  else:
    with pytest.raises(ValueError, match=expect):
      _score(metric, x, y)


def _outcome(fn):
  try:
    value = fn()
  except ValueError as e:
    msg = str(e).replace("features of model 'm'", "features")
    return "error", msg.replace(" (model 'm')", "")
  return "score", value


@pytest.mark.parametrize("case", CASE_PARAMS)
@pytest.mark.parametrize("metric", METRICS)
def test_single_call_and_score_models_agree(metric, case):
  x, y = CASES[case][0](_X, _Y)
  single = _outcome(lambda: _score(metric, x, y))
  batched = _outcome(lambda: sfda_jax.score_models(
      {"m": x}, y, metrics=(metric,))[metric]["m"])
  assert single[0] == batched[0], (single, batched)
  if single[0] == "error":
    assert single[1] == batched[1]
  else:
    assert batched[1] == pytest.approx(single[1], rel=1e-5, abs=1e-7)


def test_bfloat16_input_is_accepted():
  """bfloat16 (an ml_dtypes array, not only a jax one) is promoted."""
  x = _X.astype(ml_dtypes.bfloat16)
  assert np.isfinite(knn(x, _Y)) and np.isfinite(inter_class_distance(x, _Y))
