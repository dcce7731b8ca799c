"""SFDA's multi-model ensemble selection (Shao et al., ECCV 2022, Eq. 8-9).

The paper picks ``k`` models for an ensemble by trading each model's SFDA
score ``T_sfda`` against the complementarity ``T_com`` of the chosen set in
the shared Fisher space, ``T_ens = r T_sfda + (1 - r) T_com`` with
``r = 0.5``. The published code (TencentARC/SFDA@3b7edf7) has no ensemble
code, so the steps below are this library's reading of Eq. 8-9, each a
documented choice (METRICS.md, "SFDA multi-model ensemble selection"):

1. ``t_m`` = the SFDA score of model ``m`` (the contract's score).
2. ``Z_m = X_m V[:, :D'_m]``, the stage-1 Fisher projection (adaptive
   shrinkage, ``V^T Sw_s V = I``, ``D'_m = min(K - 1, D_m)``): every model's
   space has unit within-class covariance and ``K - 1`` columns, which makes
   models of different widths comparable. ``space="proba"``: the stage-2
   class probabilities of the self-challenged features instead (``N x K``).
3. Columns centred; each block divided by its Frobenius norm
   (``block_norm="frobenius"``, our choice: without it ``T_com`` counts
   discriminability a second time, as ``Cov(Z) = I + diag(eigenvalues)``);
   ``block_norm=None`` is the literal form.
4. ``T_com(S) = || [Zh_j for j in S] ||_*`` (nuclear norm of the blocks side by
   side): a duplicate model adds only a factor ``sqrt(2)``, blocks with
   orthogonal column spaces add their norms.
5. Greedy: start from ``argmax t``; then, among the models not chosen, min-max
   normalise ``t_m`` and ``T_com(S + [m])`` over the candidates and add the
   argmax of ``r a + (1 - r) b`` (ties: the earlier model in input order).
   ``exhaustive=True`` instead maximises ``r mean_{j in S} mm(t)_j + (1 - r)
   mm(T_com(S))`` over every ``k``-subset (``mm`` over all subsets).

When ``N <~ D`` stage 1's shrinkage hits its floor and the training points
collapse onto their class means, so ``T_com`` then mostly reflects the label
structure; pair selection with one of SFDA's remedies (``sfda(...,
pca_dim=...)``) there.

Cost: ``M`` SFDA scores and fits, the pairwise block Grams ``Zh_a^T Zh_b``
once (``O(M^2 N K^2)``), then one ``(|S| K)^2`` eigen-solve per candidate and
step.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sfda_jax import ranking
from sfda_jax.metrics import _sfda
from sfda_jax.metrics import _spec
from sfda_jax.metrics import _validation
from sfda_jax.metrics import stats

__all__ = ["EnsembleResult", "SPACES", "BLOCK_NORMS", "fisher_blocks",
           "complementarity", "select_ensemble"]

#: ``select_ensemble(space=...)`` values.
SPACES = ("fisher", "proba")
#: ``select_ensemble(block_norm=...)`` values.
BLOCK_NORMS = ("frobenius", None)


@dataclasses.dataclass(frozen=True)
class EnsembleResult:
  """What :func:`select_ensemble` returns.

  Attributes:
    models: the chosen models, in the order they were added.
    step_scores: per step, the criterion value of the model added (greedy:
      ``r mm(t) + (1 - r) mm(T_com)`` over that step's candidates, so in
      ``[0, 1]``; the first model's is ``mm(t) = 1``); exhaustive: one entry
      per model, all the chosen subset's criterion.
    complementarity: ``T_com`` of the chosen prefix after each step.
    sfda: ``{model: SFDA score}`` of every candidate.
    r: the weight of the SFDA score.
  """
  models: tuple[str, ...]
  step_scores: tuple[float, ...]
  complementarity: tuple[float, ...]
  sfda: dict[str, float]
  r: float


def _fisher_block(x: jax.Array, labels: jax.Array, num_classes: int,
                  space: str) -> jax.Array:
  """One model's block ``Z`` (before centring and normalisation)."""
  x = stats.center(x)
  if space == "proba":
    first = _sfda.sfda_fit_core(x, labels, num_classes)
    mixed = _sfda.self_challenge(first, x, labels)
    second = _sfda.sfda_fit_core(mixed, labels, num_classes,
                                 shrinkage=first.shrinkage)
    return jax.nn.softmax(stats.matmul(mixed - second.center, second.coef.T)
                          + second.intercept, axis=1)
  state = _sfda.sfda_fit_core(x, labels, num_classes, eigen=True)
  k, d = state.means.shape
  return stats.matmul(x, state.scalings[:, :min(k - 1, d)])


_block_jit = jax.jit(_fisher_block, static_argnames=("num_classes", "space"))


def fisher_blocks(features_by_model: Mapping[str, Any], labels: Any,
                  space: str = "fisher", block_norm: str | None = "frobenius"
                  ) -> dict[str, np.ndarray]:
  """``{model: Zh [N, D'_m]}``: each model's centred (and normalised)
  block of step 2-3 (float64 NumPy)."""
  feats, enc = ranking.checked_features(features_by_model, labels)
  out = {}
  for name, x in feats.items():
    _validation.check_finite_features(x, f"features of model {name!r}")
    x = _validation.check_feature_values(x, "select_ensemble",
                                         scale_invariant=False)
    z = np.asarray(_block_jit(x, _validation.place_like_samples(enc.codes, x),
                              num_classes=enc.num_classes, space=space),
                   np.float64)
    if not np.all(np.isfinite(z)):
      raise ValueError(f"select_ensemble: the Fisher projection of model "
                       f"{name!r} is not finite (singular within-class "
                       "scatter); try jax_enable_x64.")
    z = z - z.mean(axis=0)
    if block_norm == "frobenius":
      norm = np.linalg.norm(z)
      z = z / norm if norm > 0 else z
    out[name] = z
  return out


def complementarity(blocks: Sequence[np.ndarray] | None = None, *,
                    grams: np.ndarray | None = None,
                    index: Sequence[int] | None = None) -> float:
  """``T_com``: the nuclear norm of the blocks side by side.

  Either ``blocks`` (``[N, D'_j]`` arrays; a direct SVD), or the pairwise
  block Grams ``grams[a][b] = Zh_a^T Zh_b`` with the chosen ``index``:
  ``sum sqrt(eig([G_ab]))``, the same number from ``(|S| K)^2`` numbers.
  """
  if blocks is not None:
    return float(np.linalg.svd(np.concatenate(list(blocks), axis=1),
                               compute_uv=False).sum())
  g = np.block([[grams[a][b] for b in index] for a in index])
  w = np.linalg.eigvalsh(0.5 * (g + g.T))
  return float(np.sqrt(np.maximum(w, 0.0)).sum())


def _check(features_by_model, k, r, space, block_norm) -> list[str]:
  if not hasattr(features_by_model, "items"):
    raise ValueError("select_ensemble: pass features_by_model as {model: "
                     f"features [N, D]}}, got "
                     f"{type(features_by_model).__name__}.")
  names = list(features_by_model)
  if len(names) < 2:
    raise ValueError(f"select_ensemble needs at least 2 models, got {names}.")
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or \
      not 2 <= k <= len(names):
    raise ValueError(f"k must be an int in [2, {len(names)}] (the number of "
                     f"models), got {k!r}.")
  if not (isinstance(r, (int, float, np.floating)) and 0.0 <= r <= 1.0):
    raise ValueError(f"r must be a number in [0, 1], got {r!r}.")
  if space not in SPACES:
    raise ValueError(f"space must be one of {list(SPACES)}, got {space!r}.")
  if block_norm not in BLOCK_NORMS:
    raise ValueError(f"block_norm must be one of {list(BLOCK_NORMS)}, got "
                     f"{block_norm!r}.")
  return names


def select_ensemble(features_by_model: Mapping[str, Any], labels: Any, k: int,
                    r: float = 0.5, space: str = "fisher",
                    block_norm: str | None = "frobenius",
                    exhaustive: bool = False) -> EnsembleResult:
  """Chooses ``k`` complementary models by SFDA's ensemble criterion.

  Args:
    features_by_model: ``{model: features [N, D_m]}``, the SAME samples in
      the same order for every model.
    labels: ``[N]`` target class ids (any; remapped).
    k: ensemble size, ``2 <= k <= M``.
    r: weight of the SFDA score (the paper's 0.5); ``1 - r`` weighs
      complementarity.
    space: ``"fisher"`` (stage-1 Fisher projection) or ``"proba"``.
    block_norm: ``"frobenius"`` or ``None`` (see the module docstring).
    exhaustive: search every ``k``-subset instead of the greedy steps
      (``C(M, k)`` eigen-solves).

  Returns:
    An :class:`EnsembleResult`.

  Raises:
    ValueError: fewer than 2 models, ``k`` or ``r`` out of range, unknown
      options, models with different sample counts, invalid labels or
      features (before any fit); a model whose SFDA score or projection
      cannot be computed.

  Example:
    >>> import numpy as np, sfda_jax
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), 50)
    >>> a = rng.normal(size=(200, 6)) + 2 * np.eye(6)[y]
    >>> feats = {"a": a, "a_copy": a + 0.01 * rng.normal(size=a.shape),
    ...          "b": rng.normal(size=(200, 6)) + 2 * np.eye(6)[(y + 1) % 4],
    ...          "noise": rng.normal(size=(200, 6))}
    >>> sfda_jax.select_ensemble(feats, y, k=2).models   # not the copy
    ('a_copy', 'b')
  """
  names = _check(features_by_model, k, r, space, block_norm)
  # score_models checks shapes and labels (ranking.checked_features) first.
  t = ranking.score_models(features_by_model, labels, metrics=("sfda",))
  t = t["sfda"]
  blocks = fisher_blocks(features_by_model, labels, space, block_norm)
  m = len(names)
  grams = [[blocks[names[a]].T @ blocks[names[b]] for b in range(m)]
           for a in range(m)]
  tv = np.array([t[n] for n in names])
  if exhaustive:
    subsets = list(itertools.combinations(range(m), k))
    t_mm = _spec.min_max(tv)
    com = np.array([complementarity(grams=grams, index=s) for s in subsets])
    crit = r * np.array([t_mm[list(s)].mean() for s in subsets]) + \
        (1 - r) * _spec.min_max(com)
    best = subsets[int(np.argmax(crit))]
    order = sorted(best, key=lambda i: -tv[i])          # best SFDA first
    prefix = [complementarity(grams=grams, index=order[:j + 1])
              for j in range(k)]
    return EnsembleResult(tuple(names[i] for i in order),
                          tuple(float(crit.max()) for _ in order),
                          tuple(prefix), dict(t), float(r))
  chosen = [int(np.argmax(tv))]
  steps = [1.0]
  prefix = [complementarity(grams=grams, index=chosen)]
  while len(chosen) < k:
    cand = [i for i in range(m) if i not in chosen]
    com = np.array([complementarity(grams=grams, index=chosen + [i])
                    for i in cand])
    crit = r * _spec.min_max(tv[cand]) + (1 - r) * _spec.min_max(com)
    j = int(np.argmax(crit))                      # first max: input order
    chosen.append(cand[j])
    steps.append(float(crit[j]))
    prefix.append(float(com[j]))
  return EnsembleResult(tuple(names[i] for i in chosen), tuple(steps),
                        tuple(prefix), dict(t), float(r))
