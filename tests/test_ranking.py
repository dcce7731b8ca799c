"""Agreement helpers: weighted Kendall tau (scipy), Kendall, Pearson, rel@k."""

import numpy as np
import pytest
import scipy.stats

from sfda_jax import ranking

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
