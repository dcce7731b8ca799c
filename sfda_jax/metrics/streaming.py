"""Streaming metrics: scores from statistics accumulated over chunks.

When the features of a target set do not fit in memory, or need never be
stored, each metric here reads the samples as a stream of ``(features [n, D],
labels [n])`` chunks and keeps only sufficient statistics (counts, class means,
scatter matrices). The scores equal the in-memory ``sfda_jax.<metric>`` (to
1e-6 relative under ``jax_enable_x64``, tested) because both paths call the
same statistics-level function: ``_sfda.sfda_fit_from_stats``,
``_logme.logme_from_stats``, ``_hscore.hscore_from_stats`` /
``regularized_hscore_from_stats``, ``_gbc.gbc_from_stats`` and
``_transrate.coding_rate_from_gram``.

Input: ``make_chunks()`` returns a *fresh* iterator over the same chunks each
time it is called, because some metrics read the stream several times (see
:func:`chunks_from_npy`, and ``sfda_jax.streaming.chunks_from_extraction``
on the pipeline side, which extracts features batch by batch). Pass 1 discovers
the classes (sorted unique ids, exactly as the in-memory ``encode_labels``)
while it accumulates; later passes check that they see the same samples.

Memory besides one chunk (``K`` classes, ``D`` dims; ``G`` =
``classes_per_pass``, default ``K``):

==================  =======================  ==========================
metric              passes                   memory
==================  =======================  ==========================
hscore, logme       1                        O(D^2 + K D)
regularized_hscore  2                        O(D^2 + K D)
gbc                 1 (2 with ``pca_dim``)   O(D^2 + K D)
sfda                3                        O(D^2 + K D)
transrate           1 + ceil(K / G)          O(G D^2 + K D)
==================  =======================  ==========================

Only one chunk is alive at a time: each chunk's device work finishes before
the next chunk is requested (no prefetching), and no reference to it is kept.

Numerics (a decision). Per chunk, :func:`stats.class_moments` computes class
counts, class means and the class-centred scatter; :func:`stats.merge_class_moments`
merges them into the running totals with Chan, Golub and LeVeque's pairwise
update. The totals live on the device in the compute dtype (float32 unless
x64) instead of raw sums accumulated in float64 on the host, because (1) every
merged term is centred, so float32 keeps the accuracy of the in-memory centred
scatter (no ``X^T X - n mu mu^T`` cancellation; tested with features offset
by 1e3 x their spread); (2) the per-chunk Gram products stay on the
accelerator at float32 speed, where float64 is slow or absent and a host path
would copy every chunk back and run a NumPy Gram on the CPU; (3) streamed and
in-memory scores then run in the same dtype. Derived statistics add positive
semi-definite terms, never subtract them: ``Cov(X) = Sw + Sb`` and, for LogME,
``F^T F = scatter + sum_k n_k mu_k mu_k^T``. Later passes that know the means
(TransRate's class scatters, the Ledoit-Wolf fourth moment) centre exactly.

Per metric:
  - SFDA: pass 1 class moments -> first fit (adaptive shrinkage). Pass 2 mixes
    each chunk (ConfMix with the first fit) and merges the *mixed chunk's*
    class moments, so the mixed features are never stored -> second fit with
    the same shrinkage. Pass 3 mixes each chunk again and averages the second
    fit's true-class probability.
  - LogME: ``F^T F`` and per-class sums; the eigenbasis of ``F^T F`` for any
    ``N`` (in memory, ``N <= D`` takes an SVD of ``F``; keeping the top
    ``min(N, D)`` eigenvalues gives the same spectrum).
  - H-score: ``Cov(X)``, class means, priors. Regularized H-score adds a second
    pass for ``sum_i |x_i - mu|^4`` (the Ledoit-Wolf intensity).
  - GBC: class means and per-class diagonal variances; with ``pca_dim`` the
    basis comes from pass 1's ``Cov(X)`` and pass 2 accumulates the moments
    of the projected chunks.
  - TransRate: ``R(X)`` from ``Cov(X)``; each ``R(X_k)`` needs the class's
    ``[D, D]`` scatter about the global mean. ``classes_per_pass=G`` holds
    ``G`` of them at a time, one extra pass per group: ``O(K D^2)`` memory in
    one extra pass by default, ``O(D^2)`` with ``G = 1`` and ``K`` passes.

Compilation: a chunk shorter than the longest seen so far is zero-padded to
its length (padding rows carry the code -1 and are ignored), so a stream of
equal chunks plus a shorter last one compiles each per-chunk kernel once.

Example:
  >>> import numpy as np, sfda_jax
  >>> rng = np.random.default_rng(0)
  >>> y = np.repeat(np.arange(3), 40)
  >>> x = rng.normal(size=(120, 8)) + 3 * np.eye(8)[y]
  >>> def make_chunks():
  ...   return ((x[i:i + 50], y[i:i + 50]) for i in range(0, 120, 50))
  >>> bool(np.isclose(sfda_jax.streaming.hscore(make_chunks),
  ...                 sfda_jax.hscore(x, y), rtol=1e-4))
  True
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from sfda_jax.metrics import _gbc
from sfda_jax.metrics import _hscore
from sfda_jax.metrics import _logme
from sfda_jax.metrics import _sfda
from sfda_jax.metrics import _transrate
from sfda_jax.metrics import _validation
from sfda_jax.metrics import stats

__all__ = ["MakeChunks", "sfda", "logme", "hscore", "regularized_hscore",
           "gbc", "transrate", "chunks_from_npy"]

MakeChunks = Callable[[], Iterable[tuple[Any, Any]]]

_INITIAL_CAPACITY = 8     # class slots before the first pass has seen labels


# --------------------------------------------------------------------------
# Jitted per-chunk kernels.

def _identity(params, x, codes):
  del params, codes
  return x


def _project(params, x, codes):
  """``(x - center) @ basis`` (GBC's PCA)."""
  del codes
  center, basis = params
  return stats.matmul(x - center, basis)


@functools.partial(jax.jit, static_argnames=("num_classes", "transform"))
def _merge_chunk(acc, params, x, codes, num_classes, transform=_identity):
  """``acc`` merged with the class moments of ``transform(params, x, codes)``."""
  z = transform(params, x, codes)
  return stats.merge_class_moments(
      acc, stats.class_moments(z, codes, num_classes))


@jax.jit
def _fourth_moment(center, x, codes):
  """``sum_i |x_i - center|^4`` over one chunk's real (``codes >= 0``) rows."""
  xc = x - center
  r = jnp.sum(xc * xc, axis=1)
  return jnp.sum(jnp.where(codes >= 0, r * r, 0.0))


@functools.partial(jax.jit, donate_argnums=0)
def _class_scatter_update(acc, x, center, index, valid):
  """``acc[g] += sum_{j valid} z_j z_j^T`` over each class ``g``'s rows
  ``index[g]`` of ``z = x - center``; ``acc``: ``[G, D, D]``."""
  z = x - center

  def body(g, acc):
    zk = jnp.where(valid[g][:, None], z[index[g]], 0.0)
    return acc.at[g].add(stats.gram(zk))

  return lax.fori_loop(0, index.shape[0], body, acc)


@functools.partial(jax.jit, static_argnames="eps")
def _class_coding_rates(scatters, counts, eps):
  return lax.map(
      lambda a: _transrate.coding_rate_from_gram(a[0], a[1], eps),
      (scatters, counts))


@jax.jit
def _summary(m: stats.ClassMoments):
  """``(N, priors [K], Sw [D, D], Cov(X) [D, D])`` of the class moments."""
  n = m.counts.sum()
  priors = m.counts / n
  sw = m.scatter / n
  return n, priors, sw, sw + stats.between_scatter(m.means, priors)


def _empty_moments(k: int, d: int, dtype) -> stats.ClassMoments:
  return stats.ClassMoments(counts=jnp.zeros((k,), dtype),
                            means=jnp.zeros((k, d), dtype),
                            scatter=jnp.zeros((d, d), dtype),
                            sq_dev=jnp.zeros((k, d), dtype))


def _pad_classes(m: stats.ClassMoments, k: int) -> stats.ClassMoments:
  def pad(a):
    return jnp.concatenate(
        [a, jnp.zeros((k - a.shape[0],) + a.shape[1:], a.dtype)])
  return m._replace(counts=pad(m.counts), means=pad(m.means),
                    sq_dev=pad(m.sq_dev))


# --------------------------------------------------------------------------
# The validated stream.

class _Stream:
  """Validated passes over the chunks of ``make_chunks()``."""

  def __init__(self, make_chunks: MakeChunks, metric: str,
               num_classes: int | None):
    if not callable(make_chunks):
      raise ValueError(
          f"{metric}: make_chunks must be a callable that returns a fresh "
          "iterator of (features [n, D], labels [n]) chunks, got "
          f"{type(make_chunks).__name__}.")
    if num_classes is not None and (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer)) or num_classes < 2):
      raise ValueError(f"{metric}: num_classes must be an int >= 2 or None, "
                       f"got {num_classes!r}.")
    self._make = make_chunks
    self.metric = metric
    self.num_classes = None if num_classes is None else int(num_classes)
    self.dim: int | None = None
    self.dtype = None
    self._label_kind = None
    self.passes = 0
    self._rows = 0                             # longest chunk so far
    self.classes: np.ndarray | None = None     # [K], after pass 1
    self.counts: np.ndarray | None = None      # [K] int64, after pass 1

  @property
  def n(self) -> int:
    return int(self.counts.sum())

  def _chunks(self) -> Iterator[tuple[jax.Array, np.ndarray]]:
    """One pass: yields validated ``(x [r, D] jax, labels [n] numpy)``.

    ``x`` is zero-padded to ``r`` rows, the longest chunk seen so far (rows
    ``n..r-1`` are padding: see :meth:`_codes`).
    """
    self.passes += 1
    p = self.passes
    it = self._make()
    try:
      it = iter(it)
    except TypeError:
      raise ValueError(
          f"{self.metric}: make_chunks() must return an iterable of "
          f"(features, labels) pairs, got {type(it).__name__}.") from None
    # No enumerate(): its cached result tuple would keep the previous chunk
    # alive while the next one is produced.
    i = -1
    for chunk in it:
      i += 1
      where = f"{self.metric}: pass {p}, chunk {i}"
      if not isinstance(chunk, (tuple, list)) or len(chunk) != 2:
        raise ValueError(f"{where}: expected a (features, labels) pair, got "
                         f"{type(chunk).__name__}.")
      f, y = chunk
      del chunk
      x = _validation.check_features(f, name=f"{where}: features")
      del f
      if self.dim is None:
        self.dim, self.dtype = x.shape[1], x.dtype
      elif x.shape[1] != self.dim:
        raise ValueError(f"{where}: features have {x.shape[1]} dims but "
                         f"earlier chunks have {self.dim}.")
      elif x.dtype != self.dtype:
        raise ValueError(f"{where}: features compute as {x.dtype} but earlier "
                         f"chunks as {self.dtype}; give every chunk one dtype.")
      y = _validation.label_array(y, x.shape[0], name=f"{where}: labels")
      kind = "i" if y.dtype.kind in "iu" else y.dtype.kind
      if self._label_kind is None:
        self._label_kind = kind
      elif kind != self._label_kind:
        raise ValueError(f"{where}: labels of dtype {y.dtype} after labels of "
                         "another kind (integers, booleans and strings cannot "
                         "be mixed).")
      self._rows = max(self._rows, x.shape[0])
      if x.shape[0] < self._rows:
        x = jnp.concatenate(
            [x, jnp.zeros((self._rows - x.shape[0], self.dim), x.dtype)])
      yield x, y
      del x, y

  def first_pass(self) -> stats.ClassMoments:
    """Pass 1: discovers the classes and accumulates their moments.

    Returns:
      :class:`stats.ClassMoments` with classes in sorted id order; sets
      ``self.classes`` and ``self.counts``.
    """
    cap = self.num_classes or _INITIAL_CAPACITY
    slot: dict[Any, int] = {}                 # class id -> accumulator row
    counts = np.zeros(cap, np.int64)
    acc = None
    for x, y in self._chunks():
      ids, inverse = np.unique(y, return_inverse=True)
      slots = np.array([slot.setdefault(v, len(slot)) for v in ids.tolist()],
                       np.int32)
      codes = slots[inverse.reshape(-1)]
      if len(slot) > cap:
        if self.num_classes is not None:
          raise ValueError(
              f"{self.metric}: the stream has more than num_classes="
              f"{self.num_classes} classes (pass 1 found {len(slot)}).")
        new_cap = max(2 * cap, len(slot))
        counts = np.concatenate([counts, np.zeros(new_cap - cap, np.int64)])
        acc = None if acc is None else _pad_classes(acc, new_cap)
        cap = new_cap
      if acc is None:
        acc = _empty_moments(cap, self.dim, self.dtype)
      acc = _merge_chunk(acc, None, x, jnp.asarray(self._codes(codes, x)),
                         num_classes=cap)
      counts += np.bincount(codes, minlength=cap)
      del x, y
      jax.block_until_ready(acc)
    if acc is None:
      raise ValueError(f"{self.metric}: make_chunks() yielded no chunks "
                       "(empty stream).")
    k = len(slot)
    ids = np.array(list(slot))
    order = np.argsort(ids, kind="stable")
    self.classes, self.counts = ids[order], counts[:k][order]
    _validation.check_class_counts(self.classes, self.counts,
                                   name=f"{self.metric}: the stream's labels")
    if self.num_classes is not None and k != self.num_classes:
      raise ValueError(f"{self.metric}: num_classes={self.num_classes} but "
                       f"the stream has {k} classes.")
    idx = jnp.asarray(order)
    return acc._replace(counts=acc.counts[idx], means=acc.means[idx],
                        sq_dev=acc.sq_dev[idx])

  def coded_chunks(self) -> Iterator[tuple[jax.Array, np.ndarray]]:
    """A later pass: yields ``(x [r, D], codes [r] int32)``.

    Codes are in ``0..K-1`` (sorted class ids), ``-1`` on padding rows.

    Raises ValueError when the pass does not reproduce pass 1's samples.
    """
    k = self.classes.shape[0]
    seen = np.zeros(k, np.int64)
    p = self.passes + 1
    for x, y in self._chunks():
      pos = np.minimum(np.searchsorted(self.classes, y), k - 1)
      bad = self.classes[pos] != y
      if np.any(bad):
        raise ValueError(
            f"{self.metric}: pass {p} has label {y[bad][0].tolist()!r}, which pass 1 "
            "did not see: make_chunks() must return the same data each call.")
      seen += np.bincount(pos, minlength=k)
      yield x, self._codes(pos, x)
      del x, y
    if not np.array_equal(seen, self.counts):
      raise ValueError(
          f"{self.metric}: pass {p} yielded {int(seen.sum())} samples but pass "
          f"1 yielded {self.n} (or other class counts): make_chunks() must "
          "return a fresh iterator over the same data on every call.")

  @staticmethod
  def _codes(codes: np.ndarray, x: jax.Array) -> np.ndarray:
    """``codes [n]`` as int32, padded with -1 to the rows of ``x``."""
    out = np.full(x.shape[0], -1, np.int32)
    out[:codes.shape[0]] = codes
    return out

  def moments(self, transform, params, dim: int) -> stats.ClassMoments:
    """A later pass: class moments of ``transform(params, x, codes)`` [n, dim]."""
    k = self.classes.shape[0]
    acc = _empty_moments(k, dim, self.dtype)
    for x, codes in self.coded_chunks():
      acc = _merge_chunk(acc, params, x, jnp.asarray(codes), num_classes=k,
                         transform=transform)
      del x
      jax.block_until_ready(acc)
    return acc


def _score(value, metric: str, hint: str = "") -> float:
  return _validation.check_finite_score(value, f"streaming.{metric}", hint)


# --------------------------------------------------------------------------
# Metrics.

@jax.jit
def _sfda_fit(m: stats.ClassMoments, shrinkage):
  n, _, sw, _ = _summary(m)
  del n
  return _sfda.sfda_fit_from_stats(m.means, m.counts, sw, shrinkage)


@jax.jit
def _sfda_prob_sum(first, second, x, codes):
  mixed = _sfda.self_challenge(first, x, codes)
  p = _sfda.true_class_probability(second, mixed, codes)
  return jnp.sum(jnp.where(codes >= 0, p, 0.0))


def sfda(make_chunks: MakeChunks, num_classes: int | None = None) -> float:
  """SFDA score of a chunked stream; equals :func:`sfda_jax.sfda` (3 passes).

  Pass 1 fits the Fisher discriminant from ``(n_k, mu_k, Sw)``; pass 2 mixes
  each chunk ``x_i <- q_i x_i + (1 - q_i) mubar_{y_i}`` and merges the mixed
  chunk's class moments (the mixed features are never stored); pass 3 mixes
  again and averages the refit's ``p(y_i | mixed x_i)``. Memory
  ``O(D^2 + K D)`` plus one chunk.

  Args:
    make_chunks: returns a fresh iterator of ``(features [n, D], labels [n])``.
    num_classes: the number of classes if known (checked); ``None`` discovers
      it.

  Returns:
    The mean probability of the true class after the self-challenging refit.
  """
  stream = _Stream(make_chunks, "sfda", num_classes)
  first = _sfda_fit(stream.first_pass(), None)
  mixed = stream.moments(_sfda.self_challenge, first, stream.dim)
  second = _sfda_fit(mixed, first.shrinkage)
  total = 0.0
  for x, codes in stream.coded_chunks():
    total += float(_sfda_prob_sum(first, second, x, jnp.asarray(codes)))
    del x
  return _score(total / stream.n, "sfda",
                hint="The within-class scatter may be numerically singular; "
                "try jax.config.update('jax_enable_x64', True).")


@functools.partial(jax.jit, static_argnames="n")
def _logme_from_moments(m: stats.ClassMoments, n: int):
  center = m.counts @ m.means / m.counts.sum()
  dev = m.means - center                                            # [K, D]
  weighted = dev * m.counts[:, None]                     # (F - center)^T T
  gram_c = m.scatter + stats.matmul(weighted.T, dev)
  return _logme.logme_from_stats(center, 0.5 * (gram_c + gram_c.T),
                                 weighted.sum(axis=0), weighted.T, m.counts,
                                 m.counts, n)


def logme(make_chunks: MakeChunks, num_classes: int | None = None) -> float:
  """LogME of a chunked stream; equals :func:`sfda_jax.logme` (1 pass).

  Uses the statistics centred at the mean: ``(F - m)^T (F - m) = scatter +
  sum_k n_k (mu_k - m)(mu_k - m)^T``, ``(F - m)^T T`` = per-class sums of
  ``F - m`` and ``|t_k|^2 = n_k`` (:func:`_logme.logme_from_stats`). Memory ``O(D^2 + K D)`` plus one chunk.

  Args:
    make_chunks: returns a fresh iterator of ``(features [n, D], labels [n])``.
    num_classes: the number of classes if known (checked).
  """
  stream = _Stream(make_chunks, "logme", num_classes)
  m = stream.first_pass()
  return _score(_logme_from_moments(m, n=stream.n), "logme")


@jax.jit
def _hscore_from_moments(m: stats.ClassMoments):
  _, priors, _, cov = _summary(m)
  return _hscore.hscore_from_stats(cov, m.means, priors)


def hscore(make_chunks: MakeChunks, num_classes: int | None = None) -> float:
  """H-score of a chunked stream; equals :func:`sfda_jax.hscore` (1 pass).

  ``tr(pinv(Cov X) Sb)`` with ``Cov X = Sw + Sb``. Memory ``O(D^2 + K D)``
  plus one chunk.

  Args:
    make_chunks: returns a fresh iterator of ``(features [n, D], labels [n])``.
    num_classes: the number of classes if known (checked).
  """
  stream = _Stream(make_chunks, "hscore", num_classes)
  return _score(_hscore_from_moments(stream.first_pass()), "hscore")


@jax.jit
def _reg_hscore_from_moments(m: stats.ClassMoments, fourth):
  n, priors, _, cov = _summary(m)
  a = stats.ledoit_wolf_shrinkage_from_moments(cov, fourth, n)
  return _hscore.regularized_hscore_from_stats(cov, a, m.means, priors)


def regularized_hscore(make_chunks: MakeChunks,
                       num_classes: int | None = None) -> float:
  """Regularized (Ledoit-Wolf) H-score of a chunked stream (2 passes).

  Equals :func:`sfda_jax.regularized_hscore`. Pass 2 accumulates the
  Ledoit-Wolf fourth moment ``sum_i |x_i - mu|^4`` about the global mean
  found by pass 1. Memory ``O(D^2 + K D)`` plus one chunk.

  Args:
    make_chunks: returns a fresh iterator of ``(features [n, D], labels [n])``.
    num_classes: the number of classes if known (checked).
  """
  stream = _Stream(make_chunks, "regularized_hscore", num_classes)
  m = stream.first_pass()
  center = m.counts @ m.means / stream.n
  fourth = 0.0
  for x, codes in stream.coded_chunks():
    fourth += float(_fourth_moment(center, x, jnp.asarray(codes)))
    del x
  return _score(_reg_hscore_from_moments(m, jnp.asarray(fourth, stream.dtype)),
                "regularized_hscore")


@functools.partial(jax.jit, static_argnames=("gaussian_type", "reg"))
def _gbc_from_moments(m: stats.ClassMoments, gaussian_type: str, reg: float):
  _, _, _, cov = _summary(m)
  return _gbc.gbc_from_stats(m.means, m.sq_dev / m.counts[:, None],
                             jnp.diagonal(cov), gaussian_type, reg)


@functools.partial(jax.jit, static_argnames="pca_dim")
def _pca_params(m: stats.ClassMoments, pca_dim: int):
  n, priors, _, cov = _summary(m)
  del n
  _, basis = stats.principal_basis(cov, top=pca_dim)
  return priors @ m.means, basis


def gbc(make_chunks: MakeChunks, num_classes: int | None = None,
        gaussian_type: str = "diagonal",
        pca_dim: int | None = _gbc.DEFAULT_PCA_DIM,
        reg: float = 1e-6) -> float:
  """GBC of a chunked stream; equals :func:`sfda_jax.gbc`.

  One pass (class means and per-class diagonal variances); with ``pca_dim``
  the principal basis of pass 1's ``Cov(X)`` projects every chunk in a second
  pass. Memory ``O(D^2 + K D)`` plus one chunk.

  Args:
    make_chunks: returns a fresh iterator of ``(features [n, D], labels [n])``.
    num_classes: the number of classes if known (checked).
    gaussian_type: ``"diagonal"`` or ``"spherical"`` class covariances.
    pca_dim: reduce to this many principal components first (default 64, as
      ``sfda_jax.gbc``); ``None`` keeps
      all dimensions.
    reg: relative variance floor (see :mod:`sfda_jax.metrics._gbc`).
  """
  _gbc.check_options(gaussian_type, pca_dim, reg)
  stream = _Stream(make_chunks, "gbc", num_classes)
  m = stream.first_pass()
  if pca_dim is not None and pca_dim < stream.dim:
    m = stream.moments(_project, _pca_params(m, pca_dim=pca_dim), pca_dim)
  return _score(_gbc_from_moments(m, gaussian_type=gaussian_type,
                                  reg=float(reg)), "gbc")


def _group_index(codes: np.ndarray, lo: int, hi: int):
  """Padded row-index table of classes ``lo..hi-1`` in one chunk, or None.

  Returns ``(index [hi - lo, b] int32, valid [hi - lo, b] bool)`` with ``b``
  the largest per-class count rounded up to a power of two (few compiles).
  """
  rows = np.nonzero((codes >= lo) & (codes < hi))[0]
  if rows.size == 0:
    return None
  index, valid = _transrate.class_index_table(codes[rows] - lo, hi - lo)
  width = 1 << int(np.ceil(np.log2(index.shape[1])))
  pad = ((0, 0), (0, width - index.shape[1]))
  return (np.pad(rows[index], pad).astype(np.int32),
          np.pad(valid, pad, constant_values=False))


def transrate(make_chunks: MakeChunks, num_classes: int | None = None,
              eps: float = 1e-4, classes_per_pass: int | None = None
              ) -> float:
  """TransRate of a chunked stream; equals :func:`sfda_jax.transrate`.

  ``R(X)`` comes from pass 1's ``Cov(X)``; each class's ``R(X_k)`` needs its
  ``[D, D]`` scatter about the global mean, accumulated exactly (the mean is
  known) in later passes, ``classes_per_pass`` classes at a time.

  Memory: ``O(G D^2 + K D)`` plus one chunk, ``G = classes_per_pass``
  (default ``K``: all class scatters in one extra pass, ``O(K D^2)``; e.g.
  ``G = 1`` keeps ``O(D^2)`` at the price of ``K`` extra passes).

  Args:
    make_chunks: returns a fresh iterator of ``(features [n, D], labels [n])``.
    num_classes: the number of classes if known (checked).
    eps: coding-rate distortion (``1e-4`` as the reference implementation).
    classes_per_pass: class scatters held per pass (``None``: all).
  """
  if not eps > 0:
    raise ValueError(f"eps must be > 0, got {eps}.")
  _validation.positive_int(classes_per_pass, "classes_per_pass",
                           none_means="all classes in one pass")
  stream = _Stream(make_chunks, "transrate", num_classes)
  m = stream.first_pass()
  n, priors, _, cov = _summary(m)
  center = priors @ m.means
  total = _transrate.coding_rate_from_gram(n * cov, n, float(eps))
  k, d = m.means.shape
  group = k if classes_per_pass is None else min(int(classes_per_pass), k)
  rates = []
  for lo in range(0, k, group):
    hi = min(lo + group, k)
    acc = jnp.zeros((hi - lo, d, d), stream.dtype)
    for x, codes in stream.coded_chunks():
      table = _group_index(codes, lo, hi)
      if table is not None:
        acc = _class_scatter_update(acc, x, center, jnp.asarray(table[0]),
                                    jnp.asarray(table[1]))
        jax.block_until_ready(acc)
      del x
    rates.append(_class_coding_rates(acc, m.counts[lo:hi], eps=float(eps)))
    del acc
  return _score(total - jnp.mean(jnp.concatenate(rates)), "transrate")


# --------------------------------------------------------------------------
# Chunk sources.

def chunks_from_npy(features_path: str | os.PathLike,
                    labels_path: str | os.PathLike,
                    chunk_size: int) -> MakeChunks:
  """``make_chunks`` over a ``.npy`` pair, memory-mapped (``mmap_mode='r'``).

  Each call opens the files afresh and copies one ``chunk_size``-row slice at
  a time into memory, so the arrays are never loaded whole.

  Args:
    features_path: ``.npy`` of ``[N, D]`` features.
    labels_path: ``.npy`` of ``[N]`` class ids.
    chunk_size: rows per chunk (the last chunk may be shorter).

  Returns:
    A callable returning a fresh iterator of ``(features, labels)`` chunks.

  Raises:
    ValueError: bad ``chunk_size``, shapes, or a row-count mismatch (checked
      here, before any metric runs). Missing files raise ``FileNotFoundError``.
  """
  _validation.positive_int(chunk_size, "chunk_size")
  features_path, labels_path = os.fspath(features_path), os.fspath(labels_path)
  f = np.load(features_path, mmap_mode="r")
  y = np.load(labels_path, mmap_mode="r")
  if f.ndim != 2:
    raise ValueError(f"{features_path} must hold a 2-D [N, D] array, got "
                     f"shape {f.shape}.")
  if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
    raise ValueError(f"{labels_path} must hold a 1-D [N] array, got shape "
                     f"{y.shape}.")
  if f.shape[0] != y.shape[0]:
    raise ValueError(f"length mismatch: {features_path} has {f.shape[0]} rows "
                     f"but {labels_path} has {y.shape[0]}.")
  del f, y
  chunk_size = int(chunk_size)

  def make_chunks():
    feats = np.load(features_path, mmap_mode="r")
    labels = np.load(labels_path, mmap_mode="r")
    for start in range(0, feats.shape[0], chunk_size):
      yield (np.array(feats[start:start + chunk_size]),
             np.array(labels[start:start + chunk_size]))

  return make_chunks
