"""Fine-tune accuracies for agreement: the committed files and their rules.

The committed ground truth ships inside the package (``ground_truth/*.json``,
read with :mod:`importlib.resources`), so ``ground_truth="auto"`` works from an
installed wheel as from the clone.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
from typing import Sequence

import numpy as np

from absl import logging

from sfda_jax import report

__all__ = ["COMMITTED", "SEPARATION", "adjacent_pairs", "committed_path",
           "incomplete_runs", "parse_seeds", "resolve", "resumable_runs",
           "run_key", "seed_std", "seeded_payload"]

#: Committed fine-tune accuracies used by ``ground_truth="auto"``: dataset ->
#: candidate files in ``sfda_jax/evaluation/ground_truth/``, in order of
#: preference; ``auto`` takes the first complete one that covers every
#: ranked model. The bench files (issue 12, 32 px, 14 models) come first:
#: they cover the offline zoo too, at a resolution that keeps the default
#: job short; the 112-px Fashion-MNIST file of the offline zoo stays
#: available by name (``--ground_truth=FILE``, ``--image_size=112``).
COMMITTED = {
    "fashion_mnist": ("bench/fashion_mnist_finetune.json",
                      "fashion_mnist_efficientnet_lite.json"),
    "digits": ("bench/digits_finetune.json",),
}


def _resource(name: str):
  node = importlib.resources.files("sfda_jax.evaluation") / "ground_truth"
  for part in name.split("/"):
    node = node / part
  return node


def committed_path(name: str) -> contextlib.AbstractContextManager:
  """A context giving a file path of the committed ground truth ``name``
  (e.g. ``"sfda_paper_group1.json"``)."""
  return importlib.resources.as_file(_resource(name))


def resolve(spec: str, dataset: str, models: Sequence[str]
            ) -> tuple[str | None, dict[str, float] | None]:
  """``(file, {model: accuracy})`` for ``spec``, or ``(None, None)`` for no
  agreement. Reads the file once, before any extraction.

  ``auto``: the committed ground truth for ``dataset`` when it covers every
  model (otherwise none, logged); ``none``: none; anything else is a file
  that must cover every model (a missing model is an error, extra ones a
  warning).

  Raises:
    ValueError: an unreadable file, an unknown dataset in it, or a model it
      has no accuracy for.
  """
  if spec == "none":
    return None, None
  if spec == "auto":
    return _auto(dataset, models)
  path = spec
  known = report.load_ground_truth(path, dataset)
  missing = sorted(set(models) - set(known))
  if missing:
    raise ValueError(f"ground truth {path} has no accuracy for {missing}; it "
                     f"has {sorted(known)}.")
  extra = sorted(set(known) - set(models))
  if extra:
    logging.warning("ground truth names models that were not ranked: %s",
                    extra)
  return path, {m: known[m] for m in models}


def incomplete_runs(path: str) -> int | None:
  """The number of finished runs of a ground-truth file that says it is not
  complete (``"complete": false``: a stopped fine-tuning job), else None."""
  with open(path) as f:
    payload = json.load(f)
  if isinstance(payload, dict) and payload.get("complete") is False:
    return len(payload.get("runs", ()))
  return None


def _auto(dataset: str, models: Sequence[str]
          ) -> tuple[str | None, dict[str, float] | None]:
  """``resolve("auto", ...)``: the first committed candidate for
  ``dataset`` that is complete and covers every model (extra models in it
  are expected: a bench file covers the offline zoo and more)."""
  names = [n for n in COMMITTED.get(dataset, ()) if _resource(n).is_file()]
  if not names:
    logging.info("no committed ground truth for %s; ranking without "
                 "agreement (pass --ground_truth=FILE).", dataset)
    return None, None
  for name in names:
    with committed_path(name) as path:
      path = str(path)
      complete = incomplete_runs(path) is None
      known = report.load_ground_truth(path, dataset)
    missing = sorted(set(models) - set(known))
    if complete and not missing:
      return path, {m: known[m] for m in models}
    logging.info("committed ground truth %s %s", path,
                 "is not complete (a fine-tuning run stopped)" if not
                 complete else f"has no accuracy for {missing}")
  logging.info("no committed ground truth for %s covers %s; ranking without "
               "agreement (pass --ground_truth=FILE).", dataset,
               sorted(models))
  return None, None


# Fine-tuning records with several training seeds (experiments.finetune).

#: Two models' order is "resolved" when their mean accuracies differ by more
#: than this many times the larger of their seed standard deviations.
SEPARATION = 2.0


def seed_std(path: str | None, dataset: str) -> dict[str, float | None]:
  """``{model: std over training seeds}`` of a ground-truth file's
  ``accuracy_std`` table for ``dataset`` (``{}`` when the file has none;
  ``None`` for a model with one seed)."""
  if path is None:
    return {}
  with open(path) as f:
    doc = json.load(f)
  table = doc.get("accuracy_std") if isinstance(doc, dict) else None
  if not isinstance(table, dict):
    return {}
  key = report.dataset_key(table, dataset)
  return dict(table.get(key) or {}) if key is not None else {}


def adjacent_pairs(accuracies: dict[str, float],
                   std: dict[str, float | None],
                   separation: float = SEPARATION) -> list[dict]:
  """The models in order of mean accuracy (best first) and, for each
  adjacent pair, whether the ground truth resolves its order.

  Returns one dict per adjacent pair: ``upper``, ``lower``, ``gap`` (mean
  difference), ``noise`` (``separation`` x the larger seed std, ``None``
  when either model lacks a std) and ``resolved`` (``gap > noise``;
  ``False`` without a std: one seed cannot resolve anything). Equal means
  keep the input order.
  """
  order = sorted(accuracies, key=lambda m: -accuracies[m])
  pairs = []
  for upper, lower in zip(order, order[1:]):
    spread = [std.get(upper), std.get(lower)]
    noise = (None if any(s is None for s in spread)
             else separation * max(spread))
    gap = accuracies[upper] - accuracies[lower]
    pairs.append({"upper": upper, "lower": lower, "gap": gap,
                  "noise": noise,
                  "resolved": noise is not None and gap > noise})
  return pairs

def parse_seeds(given, default: int) -> list[int]:
  if not given:
    return [int(default)]
  try:
    seeds = [int(s) for s in given]
  except ValueError:
    raise ValueError(f"--seeds takes integers, got {given}.") from None
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"--seeds has duplicates: {given}.")
  return seeds


def run_key(run: dict, default_seed: int) -> tuple:
  """A run's identity; files written before --seeds have no "seed" (it was
  the config's)."""
  return (run["model"], int(run.get("seed", default_seed)),
          float(run["learning_rate"]), float(run["weight_decay"]))


def resumable_runs(path: str, config: dict) -> list[dict]:
  """The finished runs of an earlier call with the same settings, or []
  when ``path`` does not exist. Different settings raise (a resume must not
  mix them)."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    old = json.load(f)
  keys = ("mode", "steps", "batch_size", "image_size", "train", "test",
          "seed", "shuffle")
  before = old.get("config", {})
  differ = [f"{k}: {before.get(k)!r} in the file, {config[k]!r} now"
            for k in keys if before.get(k) != config[k]]
  if differ:
    raise ValueError(
        f"{path} exists with different settings ({'; '.join(differ)}); "
        "rerun with the file's settings to resume, pass another --output, "
        "or delete it to start over.")
  return list(old.get("runs", []))


def seeded_payload(dataset, runs, seeds, models, config, default_seed) -> dict:
  """Per model: best accuracy over the grid per seed; mean and std over the
  seeds that finished (the models/seeds still running are left out)."""
  per_seed: dict[str, dict[int, float]] = {}
  for r in runs:
    _, seed, _, _ = run_key(r, default_seed)
    cell = per_seed.setdefault(r["model"], {})
    cell[seed] = max(cell.get(seed, 0.0), float(r["test_accuracy"]))
  order = [m for m in models if m in per_seed] + sorted(
      set(per_seed) - set(models))
  seeds_of = {m: sorted(per_seed[m]) for m in order}
  return {
      "source": "experiments.finetune (sfda_jax)",
      "accuracies": {dataset: {m: float(np.mean(list(per_seed[m].values())))
                               for m in order}},
      "accuracy_std": {dataset: {
          m: float(np.std(list(per_seed[m].values()), ddof=1))
          if len(per_seed[m]) > 1 else None for m in order}},
      "accuracy_seeds": {dataset: {
          m: {str(s): per_seed[m][s] for s in seeds_of[m]} for m in order}},
      "config": dict(config, seeds=sorted(set(seeds) | {
          s for m in order for s in seeds_of[m]})),
      "runs": runs,
  }
