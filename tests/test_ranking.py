"""Agreement helpers: weighted Kendall tau (scipy), Kendall, Pearson, rel@k;
score_models recording failed (metric, model) cells."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import sfda_jax
from sfda_jax import ranking
from sfda_jax.metrics import registry

ACC = {"a": 90.0, "b": 80.0, "c": 70.0, "d": 60.0}


def test_perfect_and_reversed_rankings():
  same = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}
  rev = {m: -v for m, v in same.items()}
  assert ranking.weighted_tau(same, ACC) == pytest.approx(1.0)
  assert ranking.weighted_tau(rev, ACC) == pytest.approx(-1.0)
  agree = ranking.agreement(same, ACC)
  assert agree == pytest.approx({"weighted_tau": 1.0, "kendall_tau": 1.0,
                                 "pearson": 1.0, "rel@1": 1.0, "rel@3": 1.0,
                                 "top1_hit": 1.0})
  agree = ranking.agreement(rev, ACC)
  assert agree["rel@1"] == pytest.approx(60 / 90)
  assert agree["rel@3"] == pytest.approx(80 / 90)
  assert agree["top1_hit"] == 0.0


def test_weighted_tau_is_scipy_with_defaults():
  rng = np.random.default_rng(0)
  models = [f"m{i}" for i in range(11)]
  s, a = rng.normal(size=11), rng.uniform(60, 95, size=11)
  got = ranking.weighted_tau(dict(zip(models, s)), dict(zip(models, a)))
  assert got == pytest.approx(scipy.stats.weightedtau(s, a).statistic)
  assert ranking.kendall_tau(dict(zip(models, s)), dict(zip(models, a))) == \
      pytest.approx(scipy.stats.kendalltau(s, a).statistic)


def test_extra_accuracies_are_ignored_but_missing_ones_raise():
  scores = {"a": 1.0, "b": 0.5}
  assert ranking.top1_hit(scores, ACC)
  with pytest.raises(ValueError, match="no accuracy for model"):
    ranking.agreement({"a": 1.0, "z": 0.0}, ACC)
  with pytest.raises(ValueError, match="at least 2 models"):
    ranking.agreement({"a": 1.0}, ACC)
  with pytest.raises(ValueError, match="k must be"):
    ranking.rel_at_k(scores, ACC, 0)


def test_constant_scores_give_nan_correlations():
  const = {m: 1.0 for m in ACC}
  assert np.isnan(ranking.pearson(const, ACC))
  assert np.isnan(ranking.kendall_tau(const, ACC))


def test_ties_earn_no_credit_and_are_shown_tied():
  from sfda_jax import report
  # "a" (the best) and "d" (the worst) tie for the top score: whichever
  # name sorts first, the metric did not pick "a".
  tied = {"a": 2.0, "d": 2.0, "b": 1.0, "c": 0.0}
  assert not ranking.top1_hit(tied, ACC)
  assert ranking.rel_at_k(tied, ACC, 1) == pytest.approx(60 / 90)
  assert ranking.rel_at_k(tied, ACC, 2) == pytest.approx(1.0)
  renamed = {"z": 2.0, "d": 2.0, "b": 1.0, "c": 0.0}
  acc = {"z": 90.0, "b": 80.0, "c": 70.0, "d": 60.0}
  assert ranking.top1_hit(renamed, acc) == ranking.top1_hit(tied, ACC)
  assert ranking.top1_hit({"a": 2.0, "b": 2.0}, {"a": 90.0, "b": 90.0})
  table = report.ranking_table("m", tied, ACC)
  ranks = [line.split()[0] for line in table.splitlines()[2:]]
  assert ranks == ["1=", "1=", "3", "4"]
  # Agreement rows are never NaN without a reason.
  agreement, skipped = report.agreement_by_metric(
      {"flat": {m: 1.0 for m in ACC}, "ok": tied}, ACC)
  assert list(agreement) == ["ok"]
  assert "all 4 models scored the same (1)" in skipped["flat"]
  _, skipped = report.agreement_by_metric({"ok": tied},
                                          {m: 0.5 for m in ACC})
  assert "same fine-tune accuracy" in skipped["ok"]


# --------------------------------------------------------------------------
# score_models(on_error="record"): a failing cell never aborts the table.

def _zoo():
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(3), 20)
  good = rng.normal(size=(60, 8)) + 3 * np.eye(8)[y]
  return y, {"good": good, "noise": rng.normal(size=(60, 8)),
             "wide": rng.normal(size=(60, 5)) + 2 * np.eye(5)[y % 5]}


@pytest.mark.slow
def test_record_mode_fails_only_the_constant_model():
  y, feats = _zoo()
  metrics = ("sfda", "logme", "hscore", "nleep")
  expected = sfda_jax.score_models(feats, y, metrics=metrics)
  feats["flat"] = np.ones((60, 8))           # same shape as good and noise
  with pytest.raises(ValueError, match=r"sfda \(model 'flat'\): features are "
                     "constant"):
    sfda_jax.score_models(feats, y, metrics=metrics)
  result = sfda_jax.score_models(feats, y, metrics=metrics, on_error="record")
  assert isinstance(result, sfda_jax.ScoreResult)
  assert result.scores == expected            # the good cells, same scores
  assert result.num_scored == 12 and result.num_failed == 4
  assert set(result.failures) == set(metrics)
  for metric in metrics:
    assert list(result.failures[metric]) == ["flat"]
    assert result.failures[metric]["flat"] == (
        f"{metric} (model 'flat'): features are constant (every sample has "
        "the same feature vector, zero variance in every dimension); there "
        "is nothing to score.")
    assert result.table()[metric] == {**expected[metric], "flat": None}
    assert list(result.table()[metric]) == ["good", "noise", "wide", "flat"]


def test_record_mode_nan_features_fail_that_models_cells():
  y, feats = _zoo()
  feats["broken"] = feats["good"].copy()
  feats["broken"][3, 2] = np.nan
  result = sfda_jax.score_models(feats, y, metrics=("sfda", "gbc"),
                                 on_error="record")
  for metric in ("sfda", "gbc"):
    assert set(result.scores[metric]) == {"good", "noise", "wide"}
    assert result.failures[metric] == {"broken": (
        "features of model 'broken' contains 1 NaN or Inf value(s) (after "
        "conversion to float32); remove or impute them before scoring.")}


def test_scale_invariant_metrics_rescale_like_their_wrappers():
  y, feats = _zoo()
  big = feats["good"] * 1e30
  table = sfda_jax.score_models({"big": big}, y, metrics=("hscore", "gbc"))
  assert table["hscore"]["big"] == pytest.approx(sfda_jax.hscore(big, y),
                                                 rel=1e-6)
  result = sfda_jax.score_models({"big": big, "good": feats["good"]}, y,
                                 metrics=("sfda",), on_error="record")
  assert list(result.scores["sfda"]) == ["good"]
  assert "feature values are too large" in result.failures["sfda"]["big"]


def test_non_finite_cell_in_a_batched_group_fails_only_that_cell(
    monkeypatch, request):
  y, feats = _zoo()
  feats["marked"] = feats["noise"].copy()
  feats["marked"][0, 0] = 1000.0   # the patched core returns NaN for it
  real = sfda_jax.score_models(feats, y, metrics=("hscore",))["hscore"]
  spec = registry.REGISTRY["hscore"]

  def nan_for_marked(x, *args, **kw):
    return jnp.where(x[0, 0] == 1000.0, jnp.nan, spec.core(x, *args, **kw))

  monkeypatch.setitem(registry.REGISTRY, "hscore",
                      dataclasses.replace(spec, core=nan_for_marked))
  # Compiled batched functions are cached per metric name: drop the real
  # hscore one now and the patched one after the test.
  ranking._batched_fn.cache_clear()
  request.addfinalizer(ranking._batched_fn.cache_clear)
  with pytest.raises(ValueError, match=r"hscore \(model 'marked'\) produced "
                     r"a non-finite score \(nan\)"):
    sfda_jax.score_models(feats, y, metrics=("hscore",))
  stack_sizes = _count_stack_sizes(monkeypatch)
  result = sfda_jax.score_models(feats, y, metrics=("hscore",),
                                 on_error="record")
  assert result.failures == {"hscore": {"marked": (
      "hscore (model 'marked') produced a non-finite score (nan) on this "
      "input.")}}
  assert result.scores["hscore"] == pytest.approx(
      {m: real[m] for m in ("good", "noise", "wide")}, rel=1e-6)
  # One call for [good, noise, marked], one for wide: a non-finite score
  # does not re-run the group.
  assert stack_sizes == [3, 1]


def _count_stack_sizes(monkeypatch, reject=None):
  """Wraps ranking._batched_fn: returns the list of stack sizes it is called
  with; a stack holding a model whose [0, 0] feature is ``reject`` raises a
  ValueError (as validation inside the batched call would)."""
  batched_fn = ranking._batched_fn
  sizes = []

  def wrapped(metric, num_args, static):
    fn = batched_fn(metric, num_args, static)

    def call(stacked, *args):
      sizes.append(stacked.shape[0])
      if reject is not None and np.any(np.asarray(stacked[:, 0, 0]) == reject):
        raise ValueError("marked model\nrejected")
      return fn(stacked, *args)
    return call

  monkeypatch.setattr(ranking, "_batched_fn", wrapped)
  return sizes


def test_batched_call_that_raises_falls_back_to_one_model_at_a_time(
    monkeypatch):
  y, feats = _zoo()
  feats["marked"] = feats["noise"].copy()
  feats["marked"][0, 0] = 1000.0
  real = sfda_jax.score_models(feats, y, metrics=("sfda",))["sfda"]
  stack_sizes = _count_stack_sizes(monkeypatch, reject=1000.0)
  with pytest.raises(ValueError, match="marked model"):
    sfda_jax.score_models(feats, y, metrics=("sfda",))
  stack_sizes.clear()
  result = sfda_jax.score_models(feats, y, metrics=("sfda",),
                                 on_error="record")
  assert result.failures == {"sfda": {"marked": "marked model rejected"}}
  assert result.scores["sfda"] == pytest.approx(
      {m: real[m] for m in ("good", "noise", "wide")}, rel=1e-6)
  # [good, noise, marked] together (raises), then one at a time; wide alone.
  assert stack_sizes == [3, 1, 1, 1, 1]


def test_a_metric_name_string_is_one_metric_not_letters():
  y, feats = _zoo()
  one = sfda_jax.score_models(feats, y, metrics="sfda")
  assert list(one) == ["sfda"]
  assert one == sfda_jax.score_models(feats, y, metrics=("sfda",))
  two = sfda_jax.score_models(feats, y, metrics="sfda, hscore")
  assert list(two) == ["sfda", "hscore"]
  with pytest.raises(ValueError, match="at least one metric"):
    sfda_jax.score_models(feats, y, metrics="")
  with pytest.raises(ValueError, match="at least one metric"):
    sfda_jax.score_models(feats, y, metrics=())
  with pytest.raises(ValueError, match=r"unknown metric\(s\) \['s'\]"):
    sfda_jax.score_models(feats, y, metrics=list("s"))
  r = sfda_jax.resample_scores(feats, y, metrics="hscore", resamples=2)
  assert list(r.scores) == ["hscore"]


def test_n_at_most_d_warns_for_the_saturating_metrics(caplog):
  from sfda_jax import ranking
  text = ranking.saturation_warning({"wide": (60, 80), "tall": (60, 8)},
                                    ("sfda", "gbc"))
  assert "sfda saturate" in text and "wide (N=60, D=80)" in text
  assert "tall" not in text and "--num_examples=120" in text
  assert ranking.saturation_warning({"wide": (60, 80)}, ("gbc",)) is None
  assert ranking.saturation_warning({"tall": (60, 8)}, ("sfda",)) is None
  assert ranking.saturation_warning({"square": (8, 8)}, ("logme",))
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(3), 10)
  with caplog.at_level("WARNING"):
    sfda_jax.score_models({"wide": rng.normal(size=(30, 40))}, y,
                          metrics="hscore")
  assert "N <= D" in caplog.text and "wide (N=30, D=40)" in caplog.text


def test_record_mode_still_raises_mistakes_that_concern_every_cell(
    monkeypatch):
  y, feats = _zoo()
  record = dict(on_error="record")
  with pytest.raises(ValueError, match="unknown metric"):
    sfda_jax.score_models(feats, y, metrics=("sfdaa",), **record)
  with pytest.raises(ValueError, match="features_by_model is empty"):
    sfda_jax.score_models({}, y, **record)
  with pytest.raises(ValueError, match="length mismatch: features of model "
                     "'good' have 59 rows"):
    sfda_jax.score_models({"good": feats["good"][:59]}, y, **record)
  with pytest.raises(ValueError, match="is empty"):
    sfda_jax.score_models({"e": np.zeros((60, 0))}, y, **record)
  with pytest.raises(ValueError, match="at least 2 distinct classes"):
    sfda_jax.score_models(feats, np.zeros(60), **record)
  with pytest.raises(ValueError, match=r"source_probs of model 'good' must "
                     r"be \[60, Z\]"):
    sfda_jax.score_models(feats, y, metrics=("leep",), **record,
                          source_probs_by_model={"good": np.eye(3)[y[:50]]})
  with pytest.raises(ValueError, match="on_error must be one of"):
    sfda_jax.score_models(feats, y, on_error="ignore")

  def bug(*args):
    raise RuntimeError("a bug, not bad input")

  monkeypatch.setattr(ranking, "_batched_fn", lambda *a: bug)
  with pytest.raises(RuntimeError, match="a bug"):
    sfda_jax.score_models(feats, y, metrics=("sfda",), **record)


def test_record_mode_source_metrics_fail_per_model():
  y, feats = _zoo()
  probs = {"good": np.eye(3)[y], "noise": np.eye(3)[y] * 2.0}   # not a dist.
  result = sfda_jax.score_models(feats, y, metrics=("leep", "sfda"),
                                 source_probs_by_model=probs,
                                 on_error="record")
  assert list(result.scores["leep"]) == ["good"]
  assert "rows must sum to 1" in result.failures["leep"]["noise"]
  assert set(result.scores["sfda"]) == {"good", "noise", "wide"}
  assert result.table()["leep"] == {"good": pytest.approx(0.0, abs=1e-6),
                                    "noise": None}
