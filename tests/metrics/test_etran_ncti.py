"""ETran and NCTI, the set-level metrics (METRICS.md, "Metrics after SFDA").

(a) Float64 parity (``jax_enable_x64``, <= 1e-6 relative) of every raw part
and of the set-level scores with the NumPy references
(sfda_jax/baselines/numpy_reference_lda.py): N < D and N > D, 2 to 100
classes, unbalanced counts, non-contiguous label ids. The literal ETran
reference (SFDA stage 1 + ``eigh(inv(Sw_s) @ Sb)``) equals the closed form,
and NCTI agrees with scikit-learn's PCA + LinearDiscriminantAnalysis in both
branches (solver 'svd' with ``within="biased"``, solver 'eigen' with
shrinkage ``s``).
(b) Properties: label renaming, separation order, min-max ties, ranges.
(c) Bad input: ValueError naming the problem before any part is computed.
(d) Float32: default-dtype parts within 2% of float64 on ReLU'd, offset,
ill-conditioned features.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

import sfda_jax
from sfda_jax.baselines import numpy_reference_lda as reference
from sfda_jax.metrics import _etran, _ncti, _runner, _validation, registry
from conftest import fast_subset, make_features
from test_float32_accuracy import CASES as FLOAT32_CASES, realistic_features

RTOL = 1e-6
#: scikit-learn agreement: METRICS.md verified the formula to 8e-16 (eigen)
#: and 5e-15 (svd) in float64; this leaves room for the PCA's rounding.
SKLEARN_RTOL = 1e-9


def _close(actual, expected, rtol=RTOL):
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-12)


# ---------------------------------------------------------------------------
# (a) parity

# (N, D, K): N > D, N < D, binary, K = 100, N < D with K = 10. ETran needs
# N >= 200.
ETRAN_CASES = [
    pytest.param(300, 80, 5, id="N>D-K5"),
    pytest.param(400, 24, 7, id="N>D-K7"),
    pytest.param(240, 300, 3, id="N<D-K3"),
    pytest.param(250, 8, 2, id="binary"),
    pytest.param(1000, 40, 100, id="K100"),
    pytest.param(300, 500, 10, id="N<D-K10"),
]
FAST_ETRAN = fast_subset(ETRAN_CASES, {"N>D-K5", "N<D-K3"})

# (N, D, K, scale, branch). NCTI needs min(N, D) >= 64. A small scale makes
# sum_{j<32} lambda_j < ln 1e10, so s > 1e-10 and the eigen branch runs.
NCTI_CASES = [
    pytest.param(300, 80, 5, 1.0, "svd", id="N>D-K5-svd"),
    pytest.param(400, 120, 8, 1.0, "svd", id="N>D-K8-svd"),
    pytest.param(200, 300, 3, 1.0, "svd", id="N<D-K3-svd"),
    pytest.param(300, 64, 2, 1.0, "svd", id="binary-D64-svd"),
    pytest.param(1000, 100, 100, 1.0, "svd", id="K100-svd"),       # r = 64
    pytest.param(100, 70, 40, 1.0, "svd", id="N-K<64-truncated"),
    pytest.param(300, 80, 5, 0.05, "eigen", id="N>D-K5-eigen"),
    pytest.param(150, 200, 10, 0.03, "eigen", id="N<D-K10-eigen"),
    pytest.param(1000, 100, 100, 0.02, "eigen", id="K100-eigen"),
]
FAST_NCTI = fast_subset(NCTI_CASES, {"N>D-K5-svd", "N>D-K5-eigen"})


def _ncti_data(n, d, k, scale, branch, separation=0.7):
  x, y = make_features(n, d, k, seed=n + d + k, separation=separation)
  x = x * scale
  assert reference.ncti_lda_branch(x, y)[0] == branch   # the case is honest
  return x, y


@pytest.mark.parametrize("lda", ["reference", "fisher"])
@pytest.mark.parametrize("n,d,k", FAST_ETRAN)
def test_etran_parts_parity(x64, n, d, k, lda):
  x, y = make_features(n, d, k, seed=n + d + k, separation=1.0)
  parts = _etran.etran_parts(x, y, lda=lda)
  _close(parts["energy"], reference.etran_energy(x, y))
  _close(parts["lda"], reference.etran_lda(x, y, lda=lda))


@pytest.mark.parametrize("n,d,k", ETRAN_CASES)
def test_literal_etran_reference_is_the_closed_form(n, d, k):
  """``eigh`` of the non-symmetric ``inv(Sw_s) @ Sb`` returns an orthogonal
  ``V``: ``coef = M V V^T = M``; the SFDA fit drops out (METRICS.md)."""
  x, y = make_features(n, d, k, seed=3 * n + d, separation=1.0)
  literal = reference.etran_lda_literal(x, y)
  assert literal == pytest.approx(reference.etran_lda(x, y), rel=1e-10)
  if n > d:  # ... and not the Fisher discriminant (which saturates at N < D)
    assert abs(literal - reference.etran_lda(x, y, lda="fisher")) > 1e-3


@pytest.mark.parametrize("within", ["unbiased", "biased"])
@pytest.mark.parametrize("n,d,k,scale,branch", FAST_NCTI)
def test_ncti_parts_parity(x64, n, d, k, scale, branch, within):
  x, y = _ncti_data(n, d, k, scale, branch)
  parts = _ncti.ncti_parts(x, y, within=within)
  want = reference.ncti_parts(x, y, within=within)
  assert sorted(parts) == ["ncc", "seli", "vc"]
  for name in want:
    _close(parts[name], want[name])


def _sklearn_ncti(x, y):
  """NCTI's steps as the official NCTI_Score runs them, with an exact PCA
  (``svd_solver="full"``) and scikit-learn's LDA (1.9.1: c = 1)."""
  _, y = np.unique(y, return_inverse=True)
  k = y.max() + 1
  pca = PCA(n_components=64, svd_solver="full")
  xp = pca.fit_transform(x)
  s = max(np.exp(-pca.explained_variance_[:32].sum()), 1e-10)
  clf = (LinearDiscriminantAnalysis(solver="svd") if s == 1e-10 else
         LinearDiscriminantAnalysis(solver="eigen", shrinkage=float(s)))
  z = clf.fit_transform(xp, y)
  p = clf.predict_proba(xp)
  return {"seli": np.linalg.norm(z - z.mean(axis=0), ord="nuc"),
          "ncc": p[np.arange(len(y)), y].mean(),
          "vc": np.log(sum(np.linalg.norm(p[y == c], ord="nuc")
                           for c in range(k)))}


@pytest.mark.parametrize("n,d,k,scale,branch", FAST_NCTI)
def test_ncti_matches_sklearn(x64, n, d, k, scale, branch):
  """svd branch: ours with ``within="biased"`` is scikit-learn 1.9.1's svd
  solver (truncation included); eigen branch: solver 'eigen' with shrinkage
  ``s``, for either ``within`` (it only touches the svd branch)."""
  x, y = _ncti_data(n, d, k, scale, branch)
  want = _sklearn_ncti(x, y)
  assert want["ncc"] < 1.0 or branch == "svd" and n - k < 64
  for within in (["biased"] if branch == "svd" else ["biased", "unbiased"]):
    got = _ncti.ncti_parts(x, y, within=within)
    for name in want:
      _close(got[name], want[name], rtol=SKLEARN_RTOL)


@pytest.mark.parametrize("n,d,k,scale,branch",
                         [p for p in FAST_NCTI if p.values[4] == "svd"
                          and "truncated" not in p.id])
def test_ncti_within_scales_seli_exactly(x64, n, d, k, scale, branch):
  """svd branch: ``c = N/(N-K)`` scales seli by exactly sqrt((N-K)/N) (no
  truncation here) and moves ncc and vc."""
  x, y = _ncti_data(n, d, k, scale, branch)
  unbiased = _ncti.ncti_parts(x, y)                       # the default
  biased = _ncti.ncti_parts(x, y, within="biased")
  assert unbiased["seli"] / biased["seli"] == pytest.approx(
      np.sqrt((n - k) / n), rel=1e-10)
  if biased["ncc"] < 0.999:                       # (not saturated at 1)
    assert abs(unbiased["ncc"] - biased["ncc"]) > 1e-6


def test_ncti_singleton_class_rule(x64):
  """A class with one sample adds ||p_i||_2 to vc (the public functions
  require 2 samples per class, so this runs the jitted core directly)."""
  x, y = make_features(300, 80, 5, seed=5, separation=0.7)
  y = np.where(np.arange(300) == 17, 1000, y)            # a singleton class
  enc = _validation.encode_labels(y, min_per_class=1)
  assert enc.num_classes == 6
  fn = jax.jit(_ncti.ncti_parts_core,
               static_argnames=("num_classes", "max_class_size", "within"))
  got = np.asarray(fn(jnp.asarray(x), jnp.asarray(enc.codes),
                      num_classes=enc.num_classes,
                      max_class_size=_ncti.max_class_size(enc.codes)))
  want = reference.ncti_parts(x, y)
  _close(got, [want["seli"], want["ncc"], want["vc"]])


def test_ncti_parts_core_equals_the_part_cores(x64):
  x, y = make_features(300, 80, 5, seed=9, separation=0.7)
  enc = _validation.encode_labels(y)
  xj, codes = jnp.asarray(x), jnp.asarray(enc.codes)
  kw = {"num_classes": enc.num_classes, "within": "biased"}
  width = _ncti.max_class_size(enc.codes)
  combined = np.asarray(_ncti.ncti_parts_core(xj, codes,
                                              max_class_size=width, **kw))
  separate = [_ncti.ncti_seli_core(xj, codes, **kw),
              _ncti.ncti_ncc_core(xj, codes, **kw),
              _ncti.ncti_vc_core(xj, codes, max_class_size=None, **kw)]
  _close(combined, np.asarray(separate), rtol=1e-12)
  # A block narrower than the largest class: NaN, not a truncated class.
  assert np.isnan(_ncti.ncti_vc_core(xj, codes, max_class_size=width - 2,
                                     **kw))


def _models(n, d_list, k, separations, seed=0):
  """Features of several models on the same samples (shared labels)."""
  _, y = make_features(n, 4, k, seed=seed)
  rng = np.random.default_rng(seed + 1)
  codes = np.unique(y, return_inverse=True)[1]
  feats = {}
  for i, (d, sep) in enumerate(zip(d_list, separations)):
    means = rng.normal(size=(k, d)) * sep / np.sqrt(min(d, k) + 1.0)
    feats[f"m{i}"] = (means[codes] + rng.normal(size=(n, d))
                      * rng.uniform(0.5, 1.5, size=d)) * 0.7 + 0.5
  return feats, y


@pytest.mark.parametrize("lda", ["reference", "fisher"])
def test_etran_set_level_parity(x64, lda):
  feats, y = _models(300, (80, 80, 64), 5, (0.5, 1.5, 3.0))
  got = _etran.etran(feats, y, lda=lda)
  want = reference.etran(feats, y, lda=lda)
  assert list(got) == list(feats)
  for m in feats:
    _close(got[m], want[m])


@pytest.mark.parametrize("within", ["unbiased", "biased"])
def test_ncti_set_level_parity(x64, within):
  feats, y = _models(300, (80, 80, 64), 5, (0.3, 0.7, 1.5))
  got = _ncti.ncti(feats, y, within=within)
  want = reference.ncti(feats, y, within=within)
  assert list(got) == list(feats)
  for m in feats:
    _close(got[m], want[m])


def test_score_models_runs_the_set_level_metrics(x64):
  """score_models batches the parts (equal shapes in one call) and combines
  them: the same numbers as the set-level functions."""
  feats, y = _models(300, (80, 80, 64), 5, (0.3, 0.7, 1.5))
  table = sfda_jax.score_models(feats, y, metrics=("etran", "ncti"))
  for name, fn in (("etran", _etran.etran), ("ncti", _ncti.ncti)):
    direct = fn(feats, y)
    for m in feats:
      _close(table[name][m], direct[m])


# ---------------------------------------------------------------------------
# (b) properties


def _renamed(y, seed=0):
  """The same partition under other ids (new order, gaps, negatives)."""
  ids = np.unique(y)
  new = np.random.default_rng(seed).permutation(len(ids)) * 7 - 30
  return new[np.searchsorted(ids, y)]


def test_label_renaming_changes_nothing(x64):
  x, y = make_features(300, 80, 5, seed=2, separation=0.7)
  y2 = _renamed(y)
  assert not np.array_equal(np.unique(y2, return_inverse=True)[1],
                            np.unique(y, return_inverse=True)[1])
  for lda in ("reference", "fisher"):
    a, b = _etran.etran_parts(x, y, lda=lda), _etran.etran_parts(x, y2,
                                                                lda=lda)
    for name in a:
      _close(b[name], a[name], rtol=1e-9)
  a, b = _ncti.ncti_parts(x, y), _ncti.ncti_parts(x, y2)
  for name in a:
    _close(b[name], a[name], rtol=1e-9)


def test_better_separated_features_score_higher(x64):
  """Raw parts: L, ncc, seli higher and vc lower for the
  better-separated model; the set level gives it the higher score."""
  feats, y = _models(300, (80, 80), 5, (0.3, 2.0), seed=4)
  bad, good = feats["m0"], feats["m1"]
  for lda in ("reference", "fisher"):
    assert (_etran.etran_parts(good, y, lda=lda)["lda"]
            > _etran.etran_parts(bad, y, lda=lda)["lda"])
  g, b = _ncti.ncti_parts(good, y), _ncti.ncti_parts(bad, y)
  assert g["ncc"] > b["ncc"] and g["seli"] > b["seli"] and g["vc"] < b["vc"]
  et = _etran.etran({"bad": bad, "good": good}, y)
  assert et["good"] >= 0.85 and et["bad"] <= 0.15
  assert _ncti.ncti({"bad": bad, "good": good}, y) == {"bad": -1.0,
                                                        "good": 2.0}


def test_min_max_ties_give_zero(x64):
  """Equal parts for every model: mm = 0 (the reference divides by zero)."""
  x, y = make_features(300, 80, 5, seed=3)
  same = {"a": x, "b": x.copy(), "c": x.copy()}
  assert _etran.etran(same, y) == {"a": 0.0, "b": 0.0, "c": 0.0}
  assert _ncti.ncti(same, y) == {"a": 0.0, "b": 0.0, "c": 0.0}
  assert reference.etran(same, y) == {"a": 0.0, "b": 0.0, "c": 0.0}


def test_set_level_ranges(x64):
  feats, y = _models(300, (80, 80, 64, 80, 64), 5,
                     (0.2, 0.5, 1.0, 2.0, 0.8), seed=6)
  et = _etran.etran(feats, y)
  nc = _ncti.ncti(feats, y)
  assert all(0.0 <= v <= 1.0 for v in et.values()), et
  assert all(-1.0 <= v <= 2.0 for v in nc.values()), nc
  assert len(set(et.values())) == 5 and len(set(nc.values())) == 5


# ---------------------------------------------------------------------------
# (c) bad input: ValueError naming the problem, before any part is computed


def _good(n=256, d=72, k=4, seed=0):
  return make_features(n, d, k, seed=seed)


def _nan_last():
  x, y = _good()
  bad = x.copy()
  bad[3, 5] = np.nan
  return {"a": x, "b": x + 1.0, "c": bad}, y


BAD_SET_INPUT = {
    "one-model": (lambda: ({"a": _good()[0]}, _good()[1]), {},
                  "at least 2 models"),
    "sample-counts": (lambda: ({"a": _good()[0], "b": _good(n=300)[0]},
                               _good()[1]), {}, "N = 256 rows"),
    "nan-features": (_nan_last, {}, "NaN"),
    "not-a-dict": (lambda: ([_good()[0], _good()[0]], _good()[1]), {},
                   "features_by_model as {model"),
}


@pytest.fixture
def computations(monkeypatch):
  """Counts the part computations the runner starts."""
  calls = []
  original = _runner.compute

  def spy(spec, *args, **kwargs):
    calls.append(spec.name)
    return original(spec, *args, **kwargs)

  monkeypatch.setattr(_runner, "compute", spy)
  return calls


@pytest.mark.parametrize("metric", ["etran", "ncti"])
@pytest.mark.parametrize("case", list(BAD_SET_INPUT))
def test_bad_set_input(metric, case, computations):
  make, kwargs, message = BAD_SET_INPUT[case]
  feats, y = make()
  fn = {"etran": _etran.etran, "ncti": _ncti.ncti}[metric]
  with pytest.raises(ValueError, match=message.replace("(", r"\(")
                     .replace("{", r"\{")) as info:
    fn(feats, y, **kwargs)
  assert metric in str(info.value)
  assert computations == []


@pytest.mark.parametrize("case", [
    pytest.param(("etran", 199, 32), id="etran-N199"),
    pytest.param(("ncti", 63, 100), id="ncti-N63"),
    pytest.param(("ncti", 256, 32), id="ncti-D32"),
])
def test_too_few_samples_or_dims(case, computations):
  """The data-dependent checks, in the set-level functions (no model is
  computed, even where another model's input is fine) and in the per-model
  ``*_parts`` functions."""
  metric, n, d = case
  x, y = make_features(n, d, 3, seed=1)
  ok = make_features(n, 128, 3, seed=2)[0]
  if metric == "etran":
    fn, parts, message = _etran.etran, _etran.etran_parts, "at least 200"
  else:
    fn, parts, message = _ncti.ncti, _ncti.ncti_parts, r"min\(N, D\) >= 64"
  with pytest.raises(ValueError, match=message):
    fn({"ok": ok, "small": x}, y)
  with pytest.raises(ValueError, match=message):
    parts(x, y)
  assert computations == []


@pytest.mark.parametrize("fn,option", [
    (_etran.etran, {"lda": "ridge"}), (_etran.etran_parts, {"lda": 3}),
    (_ncti.ncti, {"within": "pooled"}), (_ncti.ncti_parts, {"within": None}),
])
def test_unknown_option(fn, option, computations):
  x, y = _good()
  arg = {"a": x, "b": x + 1.0} if fn in (_etran.etran, _ncti.ncti) else x
  name = next(iter(option))
  with pytest.raises(ValueError, match=f"{name} must be one of"):
    fn(arg, y, **option)
  assert computations == []


def test_registry_declares_the_parts():
  etran = registry.SET_REGISTRY["etran"]
  ncti = registry.SET_REGISTRY["ncti"]
  assert etran.parts == ("etran_energy", "etran_lda")
  assert etran.weights == (0.15, 0.85) and etran.order == 140
  assert ncti.weights == (1.0, 1.0, -1.0) and ncti.order == 150
  assert {p: registry.REGISTRY[p].order for p in etran.parts + ncti.parts} \
      == {"etran_energy": 140, "etran_lda": 141, "ncti_ncc": 151,
          "ncti_seli": 150, "ncti_vc": 152}
  assert registry.REGISTRY["etran_lda"].defaults == {"lda": "reference"}
  assert registry.REGISTRY["etran_energy"].defaults == {}
  for p in ncti.parts:
    assert registry.REGISTRY[p].defaults == {"within": "unbiased"}
    assert registry.REGISTRY[p].part_of == "ncti"
  assert all(registry.REGISTRY[p].batched for p in etran.parts + ncti.parts)


# ---------------------------------------------------------------------------
# (d) float32: default-dtype parts within 2% of float64

FLOAT32_RTOL = 0.02
FLOAT32_SETS = fast_subset(
    [pytest.param(name, id=name) for name in (
        "relu-n300-d64-cond1e+08", "relu-n200-d512-cond1e+06",
        "relu-n1500-d256-cond1e+08", "offset-n1000-d128-cond1e4",
        "lowrank-n600-d256-cond1e6")],
    {"relu-n300-d64-cond1e+08", "relu-n200-d512-cond1e+06"})


@pytest.mark.parametrize("name", FLOAT32_SETS)
def test_float32_parts_within_two_percent(name):
  assert not jax.config.jax_enable_x64
  x, y = realistic_features(*FLOAT32_CASES[name])
  assert x.dtype == np.float32
  x64_ = x.astype(np.float64)
  got = {}
  for lda in ("reference", "fisher"):
    parts = _etran.etran_parts(x, y, lda=lda)
    got["energy"] = (parts["energy"], reference.etran_energy(x64_, y))
    got[f"lda-{lda}"] = (parts["lda"], reference.etran_lda(x64_, y, lda=lda))
  want = reference.ncti_parts(x64_, y)
  for name_, value in _ncti.ncti_parts(x, y).items():
    got[f"ncti-{name_}"] = (value, want[name_])
  for part, (ours, ref) in got.items():
    assert np.isfinite(ours), part
    assert abs(ours - ref) <= FLOAT32_RTOL * abs(ref), (part, ours, ref)
