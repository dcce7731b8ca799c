"""SFDA's ensemble selection (sfda_jax.select_ensemble): the Fisher blocks,
T_com's identities, the greedy and exhaustive rules, bad input."""

import itertools

import numpy as np
import pytest

import sfda_jax
from sfda_jax import ensemble
from sfda_jax.baselines import numpy_reference as reference
from sfda_jax.metrics import _spec


def _zoo(seed=0, n=200, k=4):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(k), n // k)
  a = rng.normal(size=(n, 6)) + 2 * np.eye(6)[y]
  return y, {"a": a, "a_copy": a + 0.01 * rng.normal(size=a.shape),
             "b": rng.normal(size=(n, 6)) + 2 * np.eye(6)[(y + 1) % k],
             "noise": rng.normal(size=(n, 6)),
             "wide": rng.normal(size=(n, 12)) + 1.5 * np.eye(12)[y]}


def test_blocks_are_the_reference_fisher_projection(x64):
  y, feats = _zoo()
  blocks = ensemble.fisher_blocks(feats, y, block_norm=None)
  for name, x in feats.items():
    z = reference.sfda_transform(reference.sfda_fit(x, y), x)
    z = z - z.mean(0)
    assert blocks[name].shape == (200, 3)
    signs = np.sign(np.sum(z * blocks[name], axis=0))
    np.testing.assert_allclose(blocks[name] * signs, z, rtol=1e-6, atol=1e-8)


def test_complementarity_identities():
  y, feats = _zoo()
  bl = ensemble.fisher_blocks(feats, y)
  names = list(bl)
  grams = [[bl[p].T @ bl[q] for q in names] for p in names]
  for idx in ([0], [0, 2], [1, 2, 4], [0, 1, 2, 3, 4]):
    assert ensemble.complementarity(grams=grams, index=idx) == pytest.approx(
        ensemble.complementarity([bl[names[i]] for i in idx]), rel=1e-9)
  z = bl["a"]
  assert ensemble.complementarity([z, z]) == pytest.approx(
      np.sqrt(2) * ensemble.complementarity([z]), rel=1e-9)
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(200, 6)))
  za, zb = q[:, :3], q[:, 3:]           # orthogonal column spaces add
  assert ensemble.complementarity([za, zb]) == pytest.approx(
      ensemble.complementarity([za]) + ensemble.complementarity([zb]))


def test_greedy_skips_the_duplicate_and_follows_the_rule():
  y, feats = _zoo()
  r = sfda_jax.select_ensemble(feats, y, k=3)
  assert r.models[0] == max(r.sfda, key=r.sfda.get)
  assert "a" not in r.models[:2] or "a_copy" not in r.models[:2]
  assert r.step_scores[0] == 1.0 and all(0 <= s <= 1 for s in r.step_scores)
  assert list(r.complementarity) == sorted(r.complementarity)
  # Step 2 by hand: min-max of SFDA and T_com over the candidates.
  bl = ensemble.fisher_blocks(feats, y)
  names = list(feats)
  first = names.index(r.models[0])
  cand = [i for i in range(len(names)) if i != first]
  t = np.array([r.sfda[names[i]] for i in cand])
  com = np.array([ensemble.complementarity([bl[names[first]], bl[names[i]]])
                  for i in cand])
  crit = 0.5 * _spec.min_max(t) + 0.5 * _spec.min_max(com)
  assert r.models[1] == names[cand[int(np.argmax(crit))]]


def test_r_one_is_top_k_by_sfda():
  y, feats = _zoo()
  r = sfda_jax.select_ensemble(feats, y, k=3, r=1.0)
  assert list(r.models) == sorted(r.sfda, key=r.sfda.get, reverse=True)[:3]


def test_exhaustive_maximises_the_subset_criterion():
  y, feats = _zoo()
  r = sfda_jax.select_ensemble(feats, y, k=2, exhaustive=True)
  bl = ensemble.fisher_blocks(feats, y)
  names = list(feats)
  t_mm = _spec.min_max(np.array([r.sfda[n] for n in names]))
  subsets = list(itertools.combinations(range(len(names)), 2))
  com = _spec.min_max([ensemble.complementarity([bl[names[i]] for i in s])
                       for s in subsets])
  crit = [0.5 * t_mm[list(s)].mean() + 0.5 * c for s, c in zip(subsets, com)]
  best = subsets[int(np.argmax(crit))]
  assert set(r.models) == {names[i] for i in best}


def test_proba_space_and_literal_norm_run():
  y, feats = _zoo()
  for kwargs in ({"space": "proba"}, {"block_norm": None}):
    r = sfda_jax.select_ensemble(feats, y, k=2, **kwargs)
    assert len(r.models) == 2 and len(set(r.models)) == 2


@pytest.mark.parametrize("change,message", [
    (lambda f: {"a": f["a"]}, "at least 2 models"),
    (lambda f: [f["a"], f["b"]], "pass features_by_model as"),
    (lambda f: {**f, "short": f["a"][:50]}, "length mismatch"),
    (lambda f: {**f, "nan": np.full_like(f["a"], np.nan)}, "NaN or Inf"),
])
def test_bad_features(change, message):
  y, feats = _zoo()
  with pytest.raises(ValueError, match=message):
    sfda_jax.select_ensemble(change(feats), y, k=2)


@pytest.mark.parametrize("kwargs,message", [
    ({"k": 1}, "k must be an int in"), ({"k": 6}, "k must be an int in"),
    ({"k": 2, "r": 1.5}, "r must be"), ({"k": 2, "space": "x"}, "space"),
    ({"k": 2, "block_norm": "l2"}, "block_norm")])
def test_bad_settings(kwargs, message):
  y, feats = _zoo()
  with pytest.raises(ValueError, match=message):
    sfda_jax.select_ensemble(feats, y, **kwargs)
