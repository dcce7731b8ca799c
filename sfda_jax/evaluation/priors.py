"""Data-free priors: rankings that never look at the target data.

A transferability metric is only worth its compute when it beats what a user
would pick without it. Three priors (METRICS.md, "Data-free priors"):

- ``imagenet_top1``: the model's published ImageNet-1k top-1 accuracy;
- ``num_params``: the parameter count of its classification network (of the
  network up to the cut, for a cut backbone such as
  ``efficientnet_lite1:stage6``; 0 for ``pixels``);
- ``depth``: its number of weight layers (convolutions and dense layers) on
  the path to the features, the classifier included for an uncut network;
  counted from the architecture, so known for the offline zoo, its cuts and
  ``pixels`` (0), not for the SFDA paper's models;
- ``lodo`` (leave-one-dataset-out): given fine-tune accuracies on other
  datasets, ``prior_m = mean over datasets d != t that contain m of
  (acc_dm - min acc_d) / (max acc_d - min acc_d)``.

``imagenet_top1`` and ``num_params`` read ``data/model_facts.json`` (package
data; every value names its source); a cut or ``pixels`` (no ImageNet
classifier: no top-1) and ``depth`` are counted from the offline
architectures' variable shapes (``backbones.architecture_facts``). A prior that has no value for some ranked model is left out of
the report with a logged reason (a prior that covers only some models cannot
rank them all); asking for ``lodo`` without a second dataset is an error.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
from typing import Mapping, Sequence

import numpy as np

__all__ = ["PRIORS", "PAPER_PRIORS", "PriorScores", "fact", "lodo", "model_facts",
           "prior_scores"]

#: The priors, in report order.
PRIORS = ("imagenet_top1", "num_params", "depth", "lodo")
#: The priors the SFDA paper's table reports (its models have no ``depth``).
PAPER_PRIORS = ("imagenet_top1", "num_params", "lodo")
_FACT_PRIORS = ("imagenet_top1", "num_params", "depth")
_RANDOM = "@random"
_CHANCE_TOP1 = 100.0 / 1000      # % top-1 of an untrained 1000-way classifier


@functools.lru_cache(maxsize=1)
def model_facts() -> dict[str, dict]:
  """``{model: {"imagenet_top1": %, "num_params": int, "source": str}}``
  from the shipped ``data/model_facts.json``."""
  resource = (importlib.resources.files("sfda_jax.evaluation") / "data"
              / "model_facts.json")
  return json.loads(resource.read_text())["models"]


def fact(model: str, name: str) -> float | None:
  """The value of fact ``name`` (``imagenet_top1`` / ``num_params`` /
  ``depth``) for ``model``, or ``None`` when the project knows none.

  ``<arch>@random`` (a randomly initialised ``<arch>``) has the
  architecture's parameter count and depth and chance-level top-1 (0.1 %).
  """
  if name not in _FACT_PRIORS:
    raise ValueError(f"unknown model fact {name!r}; facts: {_FACT_PRIORS}.")
  base, _, suffix = model.partition("@")
  if suffix and "@" + suffix != _RANDOM:
    return None
  entry = model_facts().get(base)
  if name == "imagenet_top1":
    if entry is None:
      return None                 # also a cut: no ImageNet classifier
    return _CHANCE_TOP1 if suffix else float(entry[name])
  if name == "num_params" and entry is not None:
    return float(entry["num_params"])
  counted = _architecture_facts(base)
  return None if counted is None else float(counted[name])


def _architecture_facts(name: str) -> dict[str, int] | None:
  try:
    from sfda_jax import backbones  # pylint: disable=g-import-not-at-top
  except ImportError:             # the core install has no flax
    return None
  try:
    return backbones.architecture_facts(name)
  except ValueError:              # not a valid cut
    return None


def lodo(accuracies: Mapping[str, Mapping[str, float]], target: str,
         models: Sequence[str] | None = None) -> dict[str, float]:
  """The leave-one-dataset-out prior for ``target``.

  Args:
    accuracies: ``{dataset: {model: fine-tune accuracy}}``; the target's own
      row (if present) is never read.
    target: the dataset being ranked.
    models: the models to score (default: those of ``accuracies[target]``).

  Returns:
    ``{model: prior}`` for every model that some other dataset contains (a
    model no other dataset has is absent from the result).

  Raises:
    ValueError: no dataset other than ``target``, no models, or another
      dataset whose accuracies are all equal (its min-max is undefined).

  Example:
    >>> acc = {"a": {"m1": 90, "m2": 80}, "b": {"m1": 70, "m2": 60},
    ...        "t": {"m1": 1, "m2": 2}}
    >>> lodo(acc, "t")
    {'m1': 1.0, 'm2': 0.0}
  """
  others = {d: row for d, row in accuracies.items() if d != target}
  if not others:
    raise ValueError(
        f"the lodo prior needs fine-tune accuracies on at least one dataset "
        f"other than {target!r}; the ground truth has only "
        f"{sorted(accuracies)}.")
  if models is None:
    if target not in accuracies:
      raise ValueError(f"no models given and {target!r} is not in the "
                       f"ground truth ({sorted(accuracies)}).")
    models = list(accuracies[target])
  if not models:
    raise ValueError("lodo needs at least one model.")
  normalised = {}
  for d, row in others.items():
    values = np.asarray(list(row.values()), np.float64)
    lo, hi = values.min(), values.max()
    if not hi > lo:
      raise ValueError(f"dataset {d!r} of the ground truth has equal "
                       "accuracies for every model; lodo's min-max "
                       "normalisation is undefined.")
    normalised[d] = {m: (float(a) - lo) / (hi - lo) for m, a in row.items()}
  out = {}
  for m in models:
    seen = [row[m] for row in normalised.values() if m in row]
    if seen:
      out[m] = float(np.mean(seen))
  return out


@dataclasses.dataclass(frozen=True)
class PriorScores:
  """Prior scores for one ranking.

  Attributes:
    scores: ``{prior: {model: value}}`` for every prior that covers every
      model (higher = predicted better).
    omitted: ``{prior: reason}`` for the requested priors left out.
  """
  scores: dict[str, dict[str, float]]
  omitted: dict[str, str]


def prior_scores(models: Sequence[str], priors: Sequence[str] = PRIORS,
                 accuracies: Mapping[str, Mapping[str, float]] | None = None,
                 target: str | None = None) -> PriorScores:
  """Scores the data-free priors for ``models``.

  Args:
    models: the ranked models.
    priors: which priors (subset of :data:`PRIORS`).
    accuracies: ``{dataset: {model: accuracy}}`` for ``lodo``; ``None``:
      ``lodo`` is omitted (no table).
    target: the ranked dataset (required with ``accuracies``).

  Returns:
    :class:`PriorScores`. A prior lacking a value for some model is omitted
    with the reason naming the models.

  Raises:
    ValueError: an unknown prior, or ``lodo`` given a table without a second
      dataset (see :func:`lodo`).
  """
  unknown = [p for p in priors if p not in PRIORS]
  if unknown:
    raise ValueError(f"unknown prior(s) {unknown}; priors: {list(PRIORS)}.")
  models = list(models)
  scores, omitted = {}, {}
  for prior in priors:
    if prior == "lodo":
      if accuracies is None or target is None:
        omitted[prior] = ("no fine-tune accuracies on other datasets for "
                          "these models")
        continue
      values = lodo(accuracies, target, models)
    else:
      values = {m: v for m in models
                if (v := fact(m, prior)) is not None}
    missing = [m for m in models if m not in values]
    if missing:
      omitted[prior] = f"no {prior} value for {missing}"
      continue
    scores[prior] = {m: values[m] for m in models}
  return PriorScores(scores=scores, omitted=omitted)
