"""Class-stratified sampling: the one rounding rule of the package.

Host-side NumPy (no jax). Used by PARC's pairwise-sample cap and by the input
pipeline's subsets and train/test holdouts (``sfda_jax.data``), so a
"stratified subset of n" means the same thing everywhere.

The rule (largest remainder): class ``k`` with ``c_k`` of ``N`` samples gets
``floor(n c_k / N)``; the ``n - sum(floor)`` left over go one each to the
classes with the largest remainders ``n c_k mod N``, ties broken by a seeded
random order. An optional per-class ``minimum`` then tops small classes up to
``min(minimum, c_k)`` (so the total can exceed ``n`` by those top-ups).
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_per_class", "fold_assignment", "stratified_indices",
           "stratified_quotas"]


def stratified_quotas(counts: np.ndarray, num_samples: int,
                      rng: np.random.Generator, minimum: int = 0
                      ) -> np.ndarray:
  """Per-class sample counts ``[K]`` (int64) by the largest-remainder rule.

  Args:
    counts: ``[K]`` class sizes ``c_k`` (positive integers).
    num_samples: ``n``, at most ``sum(counts)``.
    rng: draws the tie-break order (one ``rng.random(K)`` call).
    minimum: each class gets at least ``min(minimum, c_k)``.
  """
  counts = np.asarray(counts, np.int64)
  total = int(counts.sum())
  if not 0 <= num_samples <= total:
    raise ValueError(f"num_samples must be in [0, {total}], got "
                     f"{num_samples}.")
  numerators = num_samples * counts
  quotas = numerators // total
  remainders = numerators % total
  leftover = num_samples - int(quotas.sum())
  ties = rng.random(len(counts))
  order = np.lexsort((ties, -remainders))
  quotas[order[:leftover]] += 1
  return np.maximum(quotas, np.minimum(minimum, counts))


def draw_per_class(codes: np.ndarray, quotas: np.ndarray,
                   rng: np.random.Generator, replace: bool = False
                   ) -> np.ndarray:
  """``quotas[k]`` random indices of each class ``k``, without replacement
  (or with it: a stratified bootstrap).

  ``codes`` holds each sample's class code ``0..K-1``; returns the chosen
  indices sorted (int64).
  """
  chosen = [rng.choice(np.flatnonzero(codes == k), size=int(q),
                       replace=replace)
            for k, q in enumerate(quotas) if q > 0]
  if not chosen:
    return np.zeros((0,), np.int64)
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def stratified_indices(codes: np.ndarray, num_samples: int, seed: int,
                       minimum: int = 0) -> np.ndarray:
  """Sorted indices (int64) of a seeded class-stratified subset.

  Args:
    codes: ``[N]`` class codes ``0..K-1`` (every code present).
    num_samples: ``n``, at most ``N``.
    seed: seeds ``numpy.random.default_rng``; the same seed gives the same
      subset.
    minimum: per-class floor, see `stratified_quotas`.

  Example:
    >>> import numpy as np
    >>> codes = np.repeat([0, 1, 2], [12, 6, 2])
    >>> idx = stratified_indices(codes, 7, seed=0)
    >>> np.bincount(codes[idx]).tolist()     # 4.2, 2.1, 0.7 -> 4, 2, 1
    [4, 2, 1]
    >>> np.bincount(codes[stratified_indices(codes, 3, seed=0,
    ...                                      minimum=2)]).tolist()
    [2, 2, 2]
  """
  codes = np.asarray(codes).reshape(-1)
  rng = np.random.default_rng(seed)
  quotas = stratified_quotas(np.bincount(codes), num_samples, rng, minimum)
  return draw_per_class(codes, quotas, rng)


def fold_assignment(codes: np.ndarray, folds: int, seed: int) -> np.ndarray:
  """Stratified fold ids ``[N]`` in ``[0, folds)`` (SFDA's cross-fitting).

  For each class in ascending code, its indices are permuted with one
  ``numpy.random.default_rng(seed)`` (shared across classes, drawn in class
  order) and the ``j``-th permuted index goes to fold ``j mod folds``, so
  every fold holds ``floor`` or ``ceil`` of ``n_k / folds`` of each class.
  """
  codes = np.asarray(codes)
  rng = np.random.default_rng(seed)
  out = np.empty(codes.shape[0], np.int32)
  for k in np.unique(codes):
    idx = rng.permutation(np.flatnonzero(codes == k))
    out[idx] = np.arange(idx.shape[0]) % folds
  return out
