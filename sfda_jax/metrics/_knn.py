"""k-NN estimator and INT: two pairwise transferability metrics.

k-NN estimator: Sorkhei et al., arXiv 2503.18528 (TMLR 2025). The paper
scores a model by the k-NN evaluation of self-supervised learning; its
repository (MoeinSorkhei/Transferability) holds a README only, so the
protocol is DINO's ``eval_knn.py`` (Caron et al., ICCV 2021,
``knn_classifier``: L2-normalised features, cosine similarity, ``k = 20``,
votes ``exp(s / T)`` with ``T = 0.07``), scored leave-one-out on the target
set (METRICS.md, "k-NN estimator"):

  1. ``xh_i = x_i / max(||x_i||, 1e-12)``, ``s_ij = xh_i . xh_j``;
  2. ``NN_k(i)``: the ``k`` largest ``s_ij`` over ``j != i`` (ties: lower
     ``j``), ``k <= N - 1``;
  3. ``c_i(l) = sum_{j in NN_k(i), y_j = l} exp(s_ij / T)``,
     ``pred_i = argmax_l c_i(l)`` (ties: the smallest class id);
  4. score ``= mean_i [pred_i == y_i]`` in ``[0, 1]``; ``soft=True`` (ours):
     ``mean_i c_i(y_i) / sum_l c_i(l)``.

INT: Singh, Hess & Vanschoren, arXiv 2502.06925 (the official code is
``ft_int_gpu`` in prabhant/surgical_phase_transferability_estimation, the
formula of pymfe's ``MFEClustering.ft_int``)::

  INT = 2/(K(K-1)) sum_{a<b} (1/(n_a n_b)) sum_{y_i=a, y_j=b} ||x_i - x_j||

plain (not squared) Euclidean distance on the raw features, no intra-class
term. It grows with the features' scale; ``normalize="l2"`` (an opt-in of
this library, not the paper's) L2-normalises the rows first.

Memory and time: both cost ``O(N^2 D)`` time and never hold an ``N x N``
buffer. INT runs in query chunks of ``chunk_size`` rows (a ``lax.map`` over
the zero-padded chunks inside jit; memory ``O(chunk_size * N)``). k-NN uses
the symmetry of the distances: the rows are cut into blocks of
``chunk_size``, each unordered pair of blocks is multiplied once and offered
to both blocks' rows, and a running ``top_k`` keeps each row's ``k`` best
(memory ``O(chunk_size^2 + N k)``; ``(m + 1) / 2m`` of the product for ``m``
blocks: 0.55 at N = 10000).

Float32 accuracy:
  * INT is translation invariant, so the features are centred first
    (``stats.center``, two passes) and ``||x_i - x_j||^2 = |x_i|^2 + |x_j|^2
    - 2 x_i . x_j`` is formed from the centred rows (clamped at 0 before the
    square root): the rounding is relative to the data's spread, not to its
    offset (ReLU features are all positive).
  * k-NN's cosine is not translation invariant, and on offset features all
    similarities are ``1 - tiny``: a float32 ``xh_i . xh_j`` resolves them
    to ``~1e-7`` only, which reorders the neighbours (features ``+100``:
    2.4% off the float64 accuracy; ``+1000``: 46%). The kernel ranks by
    ``d_ij = ||xh_i - xh_j||^2 = 2 - 2 s_ij``, formed from the split
    ``x_i = c + v_i`` (``c`` the column mean, ``v_i = x_i - c`` exact):
    ``xh_i - xh_j = (a_i - a_j) c + (w_i - w_j)`` with ``a = 1/||x||``,
    ``w_i = a_i v_i`` and ``a_i - a_j = (e_j - e_i) / (n_i n_j (n_i +
    n_j))``, ``e = 2 c.v + |v|^2 = n^2 - |c|^2``: every term is a small,
    accurately formed number. The votes are ``exp(-(d_ij - d_i,min) / 2T)``,
    the contract's ``exp(s_ij / T)`` times a per-sample constant (prediction
    and soft score unchanged, nothing overflows), kept as a neighbour count
    plus ``expm1`` residuals so that classes with equal counts are told
    apart at full precision when every vote is ~1. Both changes together:
    float32 within 1e-7 of float64 up to offsets of 1000 (measured).

Ties: ``lax.top_k`` puts the lower index first among equal values, and
``argmax`` the smallest class. Exact duplicate rows must tie exactly, but a
backend may round the same arithmetic differently at different row
positions, so only each group's first bitwise-identical copy
(:func:`_first_copies`) is a neighbour candidate, and a chosen first copy
stands for its whole group at one distance, members in index order
(:func:`_expand_copies`). Ties between distinct vectors at exactly equal
cosine (measure zero on real features) are broken by whatever rounding the
arithmetic gives.

Not implemented: METRICS.md's optional stratified holdout split (neighbours
from a train part only); leave-one-out, the documented default, is the only
split. The shared label validation asks every class for 2 samples, INT's
included (the contract allows singleton classes there).

Sharded input: every query needs every sample, so a features array spread
over devices is gathered onto one device first (placement ``"gather"``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _spec
from sfda_jax.metrics import _validation
from sfda_jax.metrics import stats

__all__ = ["knn", "knn_core", "inter_class_distance",
           "inter_class_distance_core", "DEFAULT_CHUNK_SIZE"]

#: Query rows per chunk: memory is ``O(chunk_size * N)``.
DEFAULT_CHUNK_SIZE = 1024
_NORM_FLOOR = 1e-12
_NORMALIZE = (None, "l2")


def _map_chunks(fn: Callable[..., jax.Array], n: int, chunk_size: int,
                *rows: jax.Array) -> jax.Array:
  """``sum_c fn(start_c + arange(B), *chunk_c)`` over the query chunks of
  ``B = min(chunk_size, n)`` rows of the ``[n, ...]`` arrays ``rows``.

  The arrays are zero-padded to a whole number of chunks; ``fn`` gets the
  global row indices of its chunk (``>= n`` for a padding row) and must make
  padding rows contribute nothing.
  """
  b = min(chunk_size, n)
  num = -(-n // b)
  pad = num * b - n
  chunks = [jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(
      (num, b) + a.shape[1:]) for a in rows]
  index = jnp.arange(num * b, dtype=jnp.int32).reshape(num, b)
  out = lax.map(lambda args: fn(*args), (index, *chunks))
  return jnp.sum(out, axis=0)


def _l2_normalise(x: jax.Array) -> jax.Array:
  norm = jnp.sqrt(jnp.sum(x * x, axis=1, keepdims=True))
  return x / jnp.maximum(norm, _NORM_FLOOR)


def _cosine_distance_terms(x: jax.Array):
  """Per-sample terms of ``d_ij = ||xh_i - xh_j||^2`` (module docstring).

  ``xh_i = alpha_i c + w_i`` with ``c`` the column mean (one pass),
  ``v_i = x_i - c``, ``n_i = ||x_i||``,
  ``alpha_i = 1/n_i`` and ``w_i = v_i / n_i``; a row whose norm is below
  the 1e-12 floor has ``xh_i = x_i / 1e-12`` exactly, written ``alpha_i =
  0``, ``w_i = x_i / 1e-12`` (the expansion of ``d_ij`` below holds for any
  such split, and this one avoids ``1e12``-sized terms that cancel).

  Returns:
    ``(w [N, D], |w|^2 [N], c.w [N], n [N], e [N], alpha [N], normal [N],
    |c|^2)``; ``normal``: the norm is above the floor; ``e_i = 2 c.v_i +
    |v_i|^2 = n_i^2 - |c|^2``: small, accurate numbers whose differences
    give ``alpha_i - alpha_j``.
  """
  # Any c works (the split is exact algebra), but x_i = c + v_i must hold to
  # the last bit: with an offset each x - c is exact (Sterbenz), whereas a
  # second centring pass (stats.center) would round c + correction.
  c = jnp.mean(x, axis=0)
  v = x - c
  n = jnp.sqrt(jnp.sum(x * x, axis=1))
  floored = n < _NORM_FLOOR
  safe_n = jnp.where(floored, 1.0, n)
  alpha = jnp.where(floored, 0.0, 1.0 / safe_n)
  w = jnp.where(floored[:, None], x / _NORM_FLOOR, v / safe_n[:, None])
  e = 2.0 * stats.matmul(v, c) + jnp.sum(v * v, axis=1)
  return (w, jnp.sum(w * w, axis=1), stats.matmul(w, c), n, e, alpha,
          ~floored, jnp.sum(c * c))


def _cosine_distances(q_terms, terms) -> jax.Array:
  """``d_ij = ||xh_i - xh_j||^2 = 2 - 2 s_ij`` for a chunk of queries ``i``
  against every sample ``j``, ``[B, N]``, clamped at 0::

    d_ij = |c|^2 da^2 + 2 da (c.w_i - c.w_j) + |w_i|^2 + |w_j|^2 - 2 w_i.w_j

  with ``da = alpha_i - alpha_j = (e_j - e_i) / (n_i n_j (n_i + n_j))``
  (directly ``alpha_i - alpha_j`` when a norm is floored, or for a
  zero-padded query row, whose ``normal`` is False).
  """
  wq, wwq, cwq, nq, eq, alq, okq, cc = q_terms
  w, ww, cw, n, e, al, ok, _ = terms
  direct = ~(okq[:, None] & ok[None, :])
  denom = nq[:, None] * n[None, :] * (nq[:, None] + n[None, :])
  da = jnp.where(direct, alq[:, None] - al[None, :],
                 (e[None, :] - eq[:, None]) / jnp.where(direct, 1.0, denom))
  d = (cc * da * da + 2.0 * da * (cwq[:, None] - cw[None, :])
       + wwq[:, None] + ww[None, :] - 2.0 * stats.matmul(wq, w.T))
  return jnp.maximum(d, 0.0)


def _first_copies(x: jax.Array) -> jax.Array:
  """``first[j]``: the smallest index ``i`` whose row is bitwise equal to row
  ``j`` (``j`` itself for a row without an earlier duplicate), ``[N]``.

  Exact duplicates must tie exactly, but the backend may round the same
  arithmetic differently at different row positions (XLA:CPU's row sums of
  a ``[N, 5]`` array do), so each sample's similarities are read from the
  column of its first copy. Rows are grouped by two integer hashes of their
  bit patterns (integer sums are exact in any order), sorted with the index
  as the last key, and a row joins its predecessor's group only when every
  bit agrees: a hash collision can only cost a tie-break, never merge
  different rows.
  """
  n = x.shape[0]
  bits = lax.bitcast_convert_type(x, jnp.uint32).reshape(n, -1)
  col = jnp.arange(bits.shape[1], dtype=jnp.uint32)
  mult1 = (col * jnp.uint32(0x9E3779B1) + jnp.uint32(0x7F4A7C15)) | 1
  mult2 = ((col ^ jnp.uint32(0x85EBCA6B)) * jnp.uint32(0xC2B2AE35)) | 1
  h1 = jnp.sum(bits * mult1, axis=1, dtype=jnp.uint32)
  h2 = jnp.sum((bits ^ (bits >> 15)) * mult2, axis=1, dtype=jnp.uint32)
  h1, h2, order = lax.sort((h1, h2, jnp.arange(n, dtype=jnp.int32)),
                           num_keys=3)
  rows = bits[order]
  same = ((h1[1:] == h1[:-1]) & (h2[1:] == h2[:-1])
          & jnp.all(rows[1:] == rows[:-1], axis=1))
  starts = jnp.concatenate([jnp.ones((1,), bool), ~same])
  head = lax.cummax(jnp.where(starts, jnp.arange(n), 0))
  return jnp.zeros((n,), jnp.int32).at[order].set(order[head])


def _class_votes(residuals: jax.Array, neighbour_labels: jax.Array,
                 num_classes: int) -> tuple[jax.Array, jax.Array]:
  """Each class's neighbours and their summed vote residuals, ``[B, K]``.

  A vote is ``w = 1 + residual`` (``residual = expm1(.)`` in ``(-1, 0]``):
  ``counts[b, l]`` (exact integers) and ``res[b, l] = sum residual`` over
  the neighbours of class ``l``, accumulated one neighbour rank at a time
  (memory ``O(B K)``, not ``O(B k K)``). The class vote is ``counts + res``;
  keeping the two apart lets :func:`_vote_winner` compare votes that differ
  by far less than float32's resolution of their sum.
  """
  classes = jnp.arange(num_classes, dtype=neighbour_labels.dtype)

  def add(m, carry):
    counts, res = carry
    r = lax.dynamic_index_in_dim(residuals, m, axis=1)          # [B, 1]
    hit = lax.dynamic_index_in_dim(neighbour_labels, m, axis=1) == classes
    return counts + hit, res + jnp.where(hit, r, 0.0)

  zeros = jnp.zeros((residuals.shape[0], num_classes), residuals.dtype)
  return lax.fori_loop(0, residuals.shape[1], add, (zeros, zeros))


def _vote_winner(counts: jax.Array, res: jax.Array) -> jax.Array:
  """``argmax_l (counts + res)`` per row, ties to the smallest class id.

  Compared relative to a provisional winner ``r``: ``(counts - counts_r) +
  (res - res_r)`` is exact in its integer part and accurate in the residual
  part, so classes with equal neighbour counts (the usual contest when the
  similarities are all close to 1 and every vote is ~1) are ranked by their
  residuals at full relative precision.
  """
  r = jnp.argmax(counts + res, axis=1)[:, None]
  rel = ((counts - jnp.take_along_axis(counts, r, axis=1))
         + (res - jnp.take_along_axis(res, r, axis=1)))
  return jnp.argmax(rel, axis=1)


def _copy_groups(first: jax.Array):
  """Groups of bitwise-identical rows from :func:`_first_copies`.

  Returns:
    ``(size [N], order [N], pos [N])``: ``size[f]`` the number of rows
    whose first copy is ``f`` (0 for a row that is not a first copy),
    ``order`` the rows sorted by (first copy, index), so each group is a
    contiguous run that starts with its first copy, and ``pos`` its inverse
    (``pos[f]`` is where ``f``'s group starts).
  """
  n = first.shape[0]
  rows = jnp.arange(n, dtype=jnp.int32)
  size = jnp.zeros((n,), jnp.int32).at[first].add(1)
  _, order = lax.sort((first, rows), num_keys=2)
  pos = jnp.zeros((n,), jnp.int32).at[order].set(rows)
  return size, order, pos


def _nearest_first_copies(terms, first, size, k: int, block: int):
  """Each row's ``k`` nearest first copies, from the upper block triangle.

  The rows are cut into ``m`` blocks of ``block`` (zero-padded); for every
  pair of blocks ``I <= J`` one ``[block, block]`` distance block is formed
  and offered to the rows of ``I`` (as is) and of ``J`` (transposed), so the
  ``N x N x D`` product is formed once per unordered pair (``(m + 1) / 2m``
  of the full product). Pairs run with ``J`` outer and ``I`` inner, so each
  row is offered the column blocks in increasing order and a running
  ``top_k`` over ``[kept, new]`` keeps the lower index first among equal
  values, as one ``top_k`` over the whole row would.

  Only first copies are candidates (a group of identical rows is one
  candidate that stands for all its members, expanded by
  :func:`_expand_copies`); a row is not its own candidate unless others
  share it.

  Returns:
    ``(values [m, block, k], first_copies [m, block, k])`` by row block:
    ``-d`` of the candidates, best first (``-inf`` where there are fewer
    than ``k``).
  """
  n = first.shape[0]
  m = -(-n // block)
  padded = m * block
  cc = terms[7]
  blocks = [jnp.pad(t, [(0, padded - n)] + [(0, 0)] * (t.ndim - 1)).reshape(
      (m, block) + t.shape[1:]) for t in terms[:7]]
  index = jnp.arange(padded, dtype=jnp.int32)
  first_p = jnp.pad(first, (0, padded - n), constant_values=-1)
  size_p = jnp.pad(size, (0, padded - n))
  candidate = (index < n) & (first_p == index)
  alone = size_p == 1
  lo, hi = np.triu_indices(m)
  order = np.lexsort((lo, hi))               # J outer, I inner
  pairs = jnp.asarray(np.stack([lo[order], hi[order]], axis=1), jnp.int32)

  def masked(r, c, dist):
    """``-dist`` where column ``j`` of block ``c`` may be a neighbour of row
    ``i`` of block ``r``, else ``-inf``."""
    rows = lax.dynamic_slice_in_dim(index, r * block, block)
    cols = lax.dynamic_slice_in_dim(index, c * block, block)
    ok = (lax.dynamic_slice_in_dim(candidate, c * block, block)[None, :]
          & ~((rows[:, None] == cols[None, :])
              & lax.dynamic_slice_in_dim(alone, r * block, block)[:, None]))
    return jnp.where(ok, -dist, -jnp.inf)

  def offer(kept, r, c, neg):
    """Merges the candidates ``neg`` of column block ``c`` into row block
    ``r``."""
    values, ids = kept
    cols = lax.dynamic_slice_in_dim(index, c * block, block)
    v = jnp.concatenate([values[r], neg], axis=1)
    i = jnp.concatenate([ids[r], jnp.broadcast_to(cols, neg.shape)], axis=1)
    # The barrier keeps XLA:CPU from fusing top_k into its consumers: fused,
    # a 1024-row top_k took 2.0 s instead of 0.24 s at N=10000, D=2048
    # (BUILD_NOTES, issue 14).
    top, at = lax.optimization_barrier(lax.top_k(v, k))
    return (values.at[r].set(top),
            ids.at[r].set(jnp.take_along_axis(i, at, axis=1)))

  def step(kept, pair):
    r, c = pair[0], pair[1]
    dist = _cosine_distances(
        (*[lax.dynamic_index_in_dim(b, r, keepdims=False) for b in blocks],
         cc),
        (*[lax.dynamic_index_in_dim(b, c, keepdims=False) for b in blocks],
         cc))
    kept = offer(kept, r, c, masked(r, c, dist))
    kept = lax.cond(r != c, lambda kp: offer(kp, c, r, masked(c, r, dist.T)),
                    lambda kp: kp, kept)
    return kept, None

  init = (jnp.full((m, block, k), -jnp.inf, terms[0].dtype),
          jnp.zeros((m, block, k), jnp.int32))
  (values, ids), _ = lax.scan(step, init, pairs)
  return values, ids


def _expand_copies(values, ids, rows, first, size, order, pos):
  """The ``k`` nearest neighbours of each row from its nearest first copies.

  A candidate first copy ``f`` stands for every member of its group at the
  same distance, in index order (lower index nearer among equal values);
  the row itself is skipped in its own group.

  Returns:
    ``(values [R, k], neighbours [R, k])``.
  """
  k = values.shape[1]
  n = first.shape[0]
  own = first[jnp.minimum(rows, n - 1)]
  ids = jnp.clip(ids, 0, n - 1)
  in_own = ids == own[:, None]
  offered = jnp.where(values > -jnp.inf, size[ids] - in_own, 0)
  end = jnp.cumsum(offered, axis=1)
  slot = jnp.arange(k, dtype=jnp.int32)
  t = jnp.minimum(jnp.sum(end[:, None, :] <= slot[None, :, None], axis=2),
                  k - 1)                                   # [R, k]
  offset = slot[None, :] - jnp.take_along_axis(end - offered, t, axis=1)
  f = jnp.take_along_axis(ids, t, axis=1)
  rank = pos[jnp.minimum(rows, n - 1)] - pos[own]          # row's place
  offset = offset + (jnp.take_along_axis(in_own, t, axis=1)
                     & (offset >= rank[:, None]))
  member = order[jnp.clip(pos[f] + offset, 0, n - 1)]
  return jnp.take_along_axis(values, t, axis=1), member


def knn_core(x: jax.Array, labels: jax.Array, num_classes: int, k: int = 20,
             temperature: float = 0.07, soft: bool = False,
             chunk_size: int = DEFAULT_CHUNK_SIZE) -> jax.Array:
  """Leave-one-out k-NN accuracy (or soft score) on validated inputs (pure,
  jittable, vmappable over ``x``).

  Args:
    x: features ``[N, D]``.
    labels: codes ``[N]`` in ``[0, K)``.
    num_classes: ``K`` (static).
    k: neighbours, ``1 <= k <= N - 1`` (static).
    temperature: ``T`` of the votes ``exp(s / T)`` (static).
    soft: the mean vote share of the true class instead of the accuracy
      (static).
    chunk_size: rows per block of the distance matrix (static; memory
      ``O(chunk_size^2 + N k)``).
  """
  n = x.shape[0]
  block = -(-n // -(-n // chunk_size))   # <= chunk_size, least padding
  terms = _cosine_distance_terms(x)
  first = _first_copies(x)
  size, order, pos = _copy_groups(first)
  values, ids = _nearest_first_copies(terms, first, size, k, block)
  rows = jnp.arange(values.shape[0] * block, dtype=jnp.int32).reshape(
      values.shape[0], block)

  def score_rows(args):
    """The summed per-sample scores of one row block (memory O(block K))."""
    q, v, i = args
    neg, idx = _expand_copies(v, i, q, first, size, order, pos)
    # exp(s / T) up to the per-query factor exp(s_max / T) (s = 1 - d / 2),
    # as 1 + expm1(.): see _class_votes.
    counts, res = _class_votes(
        jnp.expm1((neg - neg[:, :1]) / (2.0 * temperature)), labels[idx],
        num_classes)
    q_labels = labels[jnp.minimum(q, n - 1)]
    if soft:
      own = jnp.take_along_axis(counts + res, q_labels[:, None], axis=1)
      per = own[:, 0] / (k + jnp.sum(res, axis=1))
    else:
      per = (_vote_winner(counts, res) == q_labels).astype(x.dtype)
    return jnp.sum(jnp.where(q < n, per, 0.0))

  return jnp.sum(lax.map(score_rows, (rows, values, ids))) / n


def inter_class_distance_core(x: jax.Array, labels: jax.Array,
                              num_classes: int, normalize: str | None = None,
                              chunk_size: int = DEFAULT_CHUNK_SIZE
                              ) -> jax.Array:
  """INT on validated inputs (pure, jittable, vmappable over ``x``).

  Args:
    x: features ``[N, D]``.
    labels: codes ``[N]`` in ``[0, K)``.
    num_classes: ``K`` (static).
    normalize: ``None`` (the paper) or ``"l2"`` (rows L2-normalised first;
      static).
    chunk_size: query rows per chunk (static).
  """
  if normalize == "l2":
    x = _l2_normalise(x)
  xc = stats.center(x)
  sq = jnp.sum(xc * xc, axis=1)
  y = stats.one_hot(labels, num_classes, x.dtype)               # [N, K]

  def chunk(rows, q, q_sq, q_onehot):
    del rows                       # a padding row has a zero one-hot row
    d2 = q_sq[:, None] + sq[None, :] - 2.0 * stats.matmul(q, xc.T)
    dist = jnp.sqrt(jnp.maximum(d2, 0.0))                       # [B, N]
    return stats.matmul(q_onehot.T, stats.matmul(dist, y))      # [K, K]

  sums = _map_chunks(chunk, x.shape[0], chunk_size, xc, sq, y)
  counts = jnp.sum(y, axis=0)
  means = 0.5 * (sums + sums.T) / (counts[:, None] * counts[None, :])
  upper = jnp.triu(jnp.ones((num_classes, num_classes), bool), k=1)
  return (2.0 / (num_classes * (num_classes - 1))
          * jnp.sum(jnp.where(upper, means, 0.0)))


def knn(features: Any, labels: Any, k: int = 20, temperature: float = 0.07,
        soft: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE) -> float:
  """k-NN estimator: leave-one-out weighted k-NN accuracy (higher is better).

  Sorkhei et al., arXiv 2503.18528 (TMLR 2025), with the k-NN evaluation of
  DINO's ``eval_knn.py`` (Caron et al., ICCV 2021): cosine similarity of
  L2-normalised features, the ``k`` most similar other samples vote
  ``exp(s / T)`` for their class, and the score is the fraction of samples
  whose vote winner is their own class (METRICS.md, "k-NN estimator").
  Leave-one-out over the scoring set is this library's deterministic split
  (DINO uses separate train and val sets). Equal similarities: the sample
  with the lower index is the nearer neighbour. Scale invariant; a class
  with one sample could never be hit (every class needs at least 2
  samples).

  Args:
    features: ``[N, D]``.
    labels: ``[N]`` class ids (any; remapped, ties in the vote go to the
      smallest id).
    k: neighbours per sample (DINO's default 20; it reports 10/20/100/200);
      at most ``N - 1``.
    temperature: ``T`` of the votes (DINO: 0.07).
    soft: return ``mean_i c_i(y_i) / sum_l c_i(l)``, the mean vote share of
      the true class, instead of the accuracy (an option of this library).
    chunk_size: rows per block of the distance matrix; memory is
      ``O(chunk_size^2 + N k)``.

  Returns:
    A float in ``[0, 1]``.

  Example:
    >>> import numpy as np
    >>> from sfda_jax.metrics._knn import knn
    >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> knn(x, [0, 0, 1, 1], k=1)
    1.0
    >>> knn(x, [0, 1, 0, 1], k=1)
    0.0
  """
  return _runner.score(SPECS[0], features, labels, k=k,
                       temperature=temperature, soft=soft,
                       chunk_size=chunk_size)


def inter_class_distance(features: Any, labels: Any,
                         normalize: str | None = None,
                         chunk_size: int = DEFAULT_CHUNK_SIZE) -> float:
  """INT: mean Euclidean distance between samples of different classes,
  averaged over class pairs (higher is better).

  Singh, Hess & Vanschoren, arXiv 2502.06925 (``ft_int_gpu``; pymfe's
  ``ft_int``): ``2/(K(K-1)) sum_{a<b} mean_{y_i=a, y_j=b} ||x_i - x_j||_2``
  on the raw features, no intra-class term (METRICS.md, "INT"). The score
  is in the features' units: it doubles when they are doubled, so models
  whose features have larger norms score higher.

  Args:
    features: ``[N, D]``.
    labels: ``[N]`` class ids (any; remapped).
    normalize: ``None`` (default, the paper's metric) or ``"l2"``: OPT-IN,
      not in the paper: every row is divided by its L2 norm (floored at
      1e-12) first, which makes the score scale invariant and comparable
      across architectures (the magnitude check still treats INT as scale
      dependent: values out of range for the dtype raise either way).
    chunk_size: query rows per chunk; memory is ``O(chunk_size * N)``.

  Returns:
    A float ``>= 0``.

  Example:
    >>> import numpy as np
    >>> from sfda_jax.metrics._knn import inter_class_distance
    >>> x = np.array([[0.0], [0.0], [3.0], [4.0]])
    >>> inter_class_distance(x, [0, 0, 1, 1])     # mean of 3, 4, 3, 4
    3.5
  """
  return _runner.score(SPECS[1], features, labels, normalize=normalize,
                       chunk_size=chunk_size)


def _check_chunk_size(chunk_size):
  _validation.positive_int(chunk_size, "chunk_size")


def _check_knn_options(k, temperature, soft, chunk_size):
  _validation.positive_int(k, "k")
  if (isinstance(temperature, (bool, np.bool_))
      or not isinstance(temperature, (int, float, np.integer, np.floating))
      or not np.isfinite(temperature) or temperature <= 0):
    raise ValueError(
        f"temperature must be a finite number > 0, got {temperature!r}.")
  if not isinstance(soft, (bool, np.bool_)):
    raise ValueError(f"soft must be True or False, got {soft!r}.")
  _check_chunk_size(chunk_size)


def _check_knn_input(x, enc, k, **_):
  del enc
  n = x.shape[0]
  if k >= n:
    raise ValueError(
        f"knn: k={k} must be at most N - 1 = {n - 1} for N={n} samples "
        "(leave-one-out: each sample's neighbours are the other N - 1); "
        f"pass k <= {n - 1}.")


def _prepare_knn(enc, k, temperature, soft, chunk_size):
  p = _spec.codes(enc)
  return p._replace(static={**p.static, "k": int(k),
                            "temperature": float(temperature),
                            "soft": bool(soft), "chunk_size": int(chunk_size)})


def _check_int_options(normalize, chunk_size):
  if not (normalize is None or (isinstance(normalize, str)
                                and normalize in _NORMALIZE)):
    raise ValueError(f"normalize must be one of {_NORMALIZE}, got "
                     f"{normalize!r}.")
  _check_chunk_size(chunk_size)


def _prepare_int(enc, normalize, chunk_size):
  p = _spec.codes(enc)
  return p._replace(static={**p.static, "normalize": normalize,
                            "chunk_size": int(chunk_size)})


def _gathered(index: int):
  """``compute``: the core on one device (a sharded input is gathered)."""
  def compute(x, enc, **options):
    return _runner.call_core(SPECS[index], _validation.gather_if_sharded(x),
                             enc, **options)
  return compute


SPECS = (
    _spec.MetricSpec(
        name="knn", order=110, fn=knn, inputs="features", core=knn_core,
        prepare=_prepare_knn, compute=_gathered(0),
        check_options=_check_knn_options, check_input=_check_knn_input,
        scale_invariant=True, placement="gather",
        defaults={"k": 20, "temperature": 0.07, "soft": False,
                  "chunk_size": DEFAULT_CHUNK_SIZE}),
    _spec.MetricSpec(
        name="inter_class_distance", order=120, fn=inter_class_distance,
        inputs="features", core=inter_class_distance_core,
        prepare=_prepare_int, compute=_gathered(1),
        check_options=_check_int_options, placement="gather",
        defaults={"normalize": None, "chunk_size": DEFAULT_CHUNK_SIZE},
        hint="INT averages Euclidean distances in the features' units: "
             "rescale the features, pass normalize='l2', or enable "
             "jax.config.update('jax_enable_x64', True)."),
)
