"""Fine-tune accuracies for agreement: the committed files and their rules.

The committed ground truth ships inside the package (``ground_truth/*.json``,
read with :mod:`importlib.resources`), so ``ground_truth="auto"`` works from an
installed wheel as from the clone.
"""

from __future__ import annotations

import contextlib
import importlib.resources
from typing import Sequence

from absl import logging

from sfda_jax import report

__all__ = ["COMMITTED", "committed_path", "resolve"]

#: Committed fine-tune accuracies used by ``ground_truth="auto"``: dataset ->
#: file name in ``sfda_jax/evaluation/ground_truth/``.
COMMITTED = {"fashion_mnist": "fashion_mnist_efficientnet_lite.json"}


def _resource(name: str):
  return importlib.resources.files("sfda_jax.evaluation") / "ground_truth" / name


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
    name = COMMITTED.get(dataset)
    if name is None or not _resource(name).is_file():
      logging.info("no committed ground truth for %s; ranking without "
                   "agreement (pass --ground_truth=FILE).", dataset)
      return None, None
    with committed_path(name) as path:
      path = str(path)
      known = report.load_ground_truth(path, dataset)
  else:
    path = spec
    known = report.load_ground_truth(path, dataset)
  missing = sorted(set(models) - set(known))
  if missing and spec == "auto":
    logging.info("committed ground truth %s has no accuracy for %s; ranking "
                 "without agreement (pass --ground_truth=FILE).", path,
                 missing)
    return None, None
  if missing:
    raise ValueError(f"ground truth {path} has no accuracy for {missing}; it "
                     f"has {sorted(known)}.")
  extra = sorted(set(known) - set(models))
  if extra:
    logging.warning("ground truth names models that were not ranked: %s",
                    extra)
  return path, {m: known[m] for m in models}
