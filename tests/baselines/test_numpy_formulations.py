"""The benchmark's vectorised NumPy formulations equal the plain references."""

import numpy as np
import pytest

from sfda_jax.baselines import numpy_reference_knn as ref


def _data(n, d, k, seed):
  rng = np.random.default_rng(seed)
  y = rng.permutation(np.arange(n) % k) * 3 + 7        # non-contiguous ids
  x = rng.normal(size=(n, d)) + 1.5 * np.eye(k, d)[(y - 7) // 3]
  return x, y


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("n,d,k,neighbours,chunk", [
    (90, 12, 3, 5, 1024), (150, 8, 5, 20, 32), (61, 70, 2, 60, 7)])
def test_knn_vectorised_equals_the_loop(n, d, k, neighbours, chunk, soft):
  x, y = _data(n, d, k, n)
  got = ref.knn_vectorised(x, y, k=neighbours, soft=soft, chunk=chunk)
  assert got == pytest.approx(ref.knn(x, y, k=neighbours, soft=soft),
                              rel=1e-12, abs=1e-12)


def test_knn_vectorised_rejects_k_out_of_range():
  x, y = _data(20, 4, 2, 0)
  with pytest.raises(ValueError, match=r"k must be in \[1, N - 1\]"):
    ref.knn_vectorised(x, y, k=20)


@pytest.mark.parametrize("normalize", [None, "l2"])
@pytest.mark.parametrize("n,d,k", [(40, 6, 2), (75, 30, 5)])
def test_inter_class_distance_cdist_equals_the_loop(n, d, k, normalize):
  x, y = _data(n, d, k, d)
  got = ref.inter_class_distance_cdist(x, y, normalize=normalize)
  assert got == pytest.approx(
      ref.inter_class_distance(x, y, normalize=normalize), rel=1e-12)
