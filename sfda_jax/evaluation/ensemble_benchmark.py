"""Does SFDA's complementarity pick better ensembles? (issue 13, item 6)

For each target of the benchmark (:mod:`zoo_benchmark`) and ensemble size
``k``, three ways of choosing ``k`` of the zoo's models are compared:

* ``selection``: :func:`sfda_jax.select_ensemble` (SFDA score +
  complementarity in the Fisher space, ``r = 0.5``);
* ``top_k``: the ``k`` best SFDA scores (selection with ``r = 1``);
* ``random``: ``random_sets`` uniformly drawn ``k``-subsets (seeded).

Each chosen set is judged by its ensemble ground truth: a linear probe on the
concatenated frozen features of its models, with the bench linear probe's
recipe (:data:`PROBE`: the same steps, batch, learning-rate grid, warm-up,
clipping and 3 seeds; per seed the best grid point, then mean and std over
the seeds, as ``experiments.finetune`` aggregates). The models are chosen on
the probe's training features (what a user has before fine-tuning) and
judged on its held-out test split.

:func:`run` appends every finished set to its JSON atomically and resumes
from it (same settings only), so a stopped run loses nothing.
"""

from __future__ import annotations

import json
import os
import time
import types
from typing import Any, Callable, Sequence

import numpy as np

from sfda_jax import atomic
from sfda_jax import ensemble as ensemble_lib
from sfda_jax import environment
from sfda_jax import finetune

__all__ = ["PROBE", "TARGET_DATA", "probe_accuracy", "choose_sets", "run",
           "summary_table", "check_ks"]

#: The bench linear probe's recipe (``zoo_benchmark``'s ground-truth flags).
PROBE = {"steps": 500, "batch_size": 32, "learning_rates": (0.03, 0.01),
         "weight_decay": 1e-4, "warmup_steps": 15, "clip_norm": 1.0,
         "seeds": (0, 1, 2)}
#: Train / test subsets per target, as the bench linear-probe ground truth
#: (``None``: the whole split).
TARGET_DATA = {"fashion_mnist": (1000, 1000), "digits": (None, None)}


def probe_accuracy(train: tuple[np.ndarray, np.ndarray],
                   test: tuple[np.ndarray, np.ndarray], num_classes: int,
                   probe: dict | None = None) -> dict[str, Any]:
  """Linear-probe test accuracy of features: ``{"mean", "std", "seeds"}``.

  Args:
    train, test: ``(features [N, D], labels [N] in 0..K-1)``.
    num_classes: ``K``.
    probe: the recipe (default :data:`PROBE`).
  """
  probe = {**PROBE, **(probe or {})}
  x, y = train
  head = types.SimpleNamespace(name="ensemble", feature_dim=x.shape[1],
                               params=None, apply_fn=None)
  test_batches = finetune.replayable_batches(None, None, 1024,
                                             preloaded=test)
  per_seed = {}
  for seed in probe["seeds"]:
    best = 0.0
    for lr in probe["learning_rates"]:
      config = finetune.FinetuneConfig(
          mode="linear_probe", steps=probe["steps"],
          batch_size=probe["batch_size"], learning_rate=lr,
          weight_decay=probe["weight_decay"], seed=seed,
          warmup_steps=probe["warmup_steps"], clip_norm=probe["clip_norm"])
      batches = finetune.replayable_batches(
          None, None, probe["batch_size"], shuffle_seed=seed,
          preloaded=(x, y))
      result = finetune.train_and_evaluate(head, batches, test_batches,
                                           num_classes, config,
                                           progress=False)
      best = max(best, result["test_accuracy"])
    per_seed[str(seed)] = best
  values = list(per_seed.values())
  return {"mean": float(np.mean(values)),
          "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
          "seeds": per_seed}


def choose_sets(features: dict[str, np.ndarray], labels: np.ndarray, k: int,
                random_sets: int, seed: int = 0
                ) -> tuple[dict[str, tuple[str, ...]], dict[str, float]]:
  """``({name: models}, sfda scores)``: ``selection``, ``top_k`` and
  ``random_{j}`` sets of ``k`` models (each sorted for the probe)."""
  chosen = ensemble_lib.select_ensemble(features, labels, k)
  t = chosen.sfda
  names = sorted(features)
  sets = {"selection": tuple(chosen.models),
          "top_k": tuple(sorted(t, key=lambda m: (-t[m], m))[:k])}
  rng = np.random.default_rng([seed, k])
  for j in range(random_sets):
    sets[f"random_{j}"] = tuple(
        names[i] for i in sorted(rng.choice(len(names), k, replace=False)))
  return sets, t


def _key(models: Sequence[str]) -> str:
  return "+".join(sorted(models))


def run(target: str, features_train: dict[str, np.ndarray],
        labels_train: np.ndarray, features_test: dict[str, np.ndarray],
        labels_test: np.ndarray, ks: Sequence[int] = (2, 3),
        random_sets: int = 10, output: str | None = None, seed: int = 0,
        probe: dict | None = None,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
  """Chooses and probes the ensembles of one target; returns the JSON.

  ``output`` (if given) is rewritten atomically after every probed set and
  read back to resume: a set already probed under the same settings is not
  probed again; other settings raise ValueError.
  """
  probe = {**PROBE, **(probe or {})}
  classes = np.unique(labels_train)
  if not np.array_equal(classes, np.unique(labels_test)):
    raise ValueError("train and test labels name different classes.")
  ytr = np.searchsorted(classes, labels_train)
  yte = np.searchsorted(classes, labels_test)
  settings = {"target": target, "ks": list(ks), "random_sets": random_sets,
              "seed": seed, "probe": {k: list(v) if isinstance(v, tuple)
                                      else v for k, v in probe.items()},
              "models": sorted(features_train),
              "num_train": int(len(ytr)), "num_test": int(len(yte))}
  doc = {"settings": settings, "probed": {}, "sets": {}}
  if output and os.path.exists(output):
    with open(output) as f:
      old = json.load(f)
    if old.get("settings") != settings:
      raise ValueError(f"{output} was written with other settings "
                       f"({old.get('settings')} vs {settings}); pass "
                       "another --output or delete it.")
    doc["probed"] = old.get("probed", {})
  start = time.perf_counter()

  def save():
    doc.update(environment=environment.record(("flax", "optax")),
               date=time.strftime("%Y-%m-%d", time.gmtime()),
               seconds=time.perf_counter() - start)
    if output:
      atomic.write_bytes(output, (json.dumps(doc, indent=1) + "\n").encode())

  def accuracy(models):
    key = _key(models)
    if key not in doc["probed"]:
      x = np.concatenate([features_train[m] for m in sorted(models)], axis=1)
      xt = np.concatenate([features_test[m] for m in sorted(models)], axis=1)
      doc["probed"][key] = probe_accuracy((x, ytr), (xt, yte), len(classes),
                                          probe)
      save()
    return doc["probed"][key]

  for m in sorted(features_train):            # the single models, once
    if progress:
      progress(f"{target}: probing {m}")
    accuracy([m])
  for k in ks:
    sets, t = choose_sets(features_train, labels_train, k, random_sets, seed)
    doc["sfda"] = t
    doc["sets"][str(k)] = {}
    for name, models in sets.items():
      if progress:
        progress(f"{target} k={k}: {name} {'+'.join(models)}")
      doc["sets"][str(k)][name] = {"models": list(models),
                                   **accuracy(models)}
    save()
  save()
  return doc


def summary_table(docs: Sequence[dict]) -> str:
  """One line per (target, k): the ensemble accuracy of each way of
  choosing, the random sets' mean and 5-95% range, where the selection
  falls among the random sets, and the best single model's probe."""
  lines = [f"{'target':<14} {'k':>2} {'selection':>10} {'top-k':>8} "
           f"{'random mean [5-95%]':>24} {'sel. > random':>13} "
           f"{'best single':>11}",]
  for doc in docs:
    target = doc["settings"]["target"]
    single = max(v["mean"] for key, v in doc["probed"].items()
                 if "+" not in key)
    for k, sets in doc["sets"].items():
      rand = np.array([v["mean"] for n, v in sets.items()
                       if n.startswith("random_")])
      sel = sets["selection"]["mean"]
      lines.append(
          f"{target:<14} {k:>2} {sel:>10.4f} {sets['top_k']['mean']:>8.4f} "
          f"{rand.mean():>9.4f} [{np.percentile(rand, 5):.4f}-"
          f"{np.percentile(rand, 95):.4f}] {np.mean(sel > rand):>13.0%} "
          f"{single:>11.4f}")
  return "\n".join(lines)


def check_ks(ks: Sequence[int], num_models: int) -> None:
  """ValueError unless every ``k`` is in ``[2, num_models]``."""
  bad = [k for k in ks if not 2 <= k <= num_models]
  if bad:
    raise ValueError(f"ensemble sizes {bad} are outside [2, {num_models}] "
                     "(the number of models).")

