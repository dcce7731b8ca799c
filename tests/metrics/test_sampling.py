"""The one class-stratified rounding rule (sfda_jax.metrics.sampling)."""

import numpy as np
import pytest

from sfda_jax import data
from sfda_jax.metrics import _parc
from sfda_jax.metrics import sampling


@pytest.mark.parametrize("seed", range(5))
def test_largest_remainder_quotas(seed):
  rng = np.random.default_rng(seed)
  counts = rng.integers(1, 40, size=12)
  n = int(rng.integers(1, counts.sum()))
  q = sampling.stratified_quotas(counts, n, np.random.default_rng(seed))
  assert q.sum() == n
  exact = n * counts / counts.sum()
  assert np.all(np.abs(q - exact) < 1)          # floor or floor + 1
  assert np.all(q <= counts)


def test_minimum_tops_up_small_classes_only():
  counts = np.array([100, 3, 1])
  q = sampling.stratified_quotas(counts, 10, np.random.default_rng(0),
                                 minimum=2)
  assert q.tolist() == [10, 2, 1]              # 9.7 -> 10; 0.29 -> 2; 1 max


def test_indices_are_seeded_and_stratified():
  codes = np.repeat([0, 1, 2], [50, 30, 20])
  a = sampling.stratified_indices(codes, 10, seed=3)
  np.testing.assert_array_equal(a, sampling.stratified_indices(codes, 10, 3))
  assert np.bincount(codes[a]).tolist() == [5, 3, 2]
  assert np.all(np.diff(a) > 0)


def test_bad_size_is_a_value_error():
  with pytest.raises(ValueError, match="num_samples must be in"):
    sampling.stratified_quotas(np.array([2, 3]), 6, np.random.default_rng(0))


def test_data_and_parc_share_the_rule():
  """The pipeline's subset and PARC's pair cap pick the same rows."""
  codes = np.repeat(np.arange(7), [40, 3, 17, 9, 25, 2, 4])
  for seed in range(3):
    np.testing.assert_array_equal(
        data.stratified_indices(codes * 5 - 3, 30, seed),   # any label ids
        sampling.stratified_indices(codes, 30, seed))
    parc_rows = _parc.stratified_subsample(codes, 30, seed)
    np.testing.assert_array_equal(
        parc_rows, sampling.stratified_indices(codes, 30, seed, minimum=2))
    assert np.bincount(codes[parc_rows]).min() >= 2
