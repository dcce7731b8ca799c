"""The SFDA paper's benchmark, re-read against data-free priors.

From the shipped ground truth of the SFDA paper (group 1: 11 supervised
ImageNet models fine-tuned on 11 datasets) alone, the weighted Kendall tau of
each prior (:mod:`sfda_jax.evaluation.priors`) per dataset and its mean, next
to the paper's published weighted tau of LEEP, LogME, NLEEP, PARC and SFDA.
Given the authors' feature files (``{model}_{dataset}_feature.npy`` /
``_label.npy``), our metrics' weighted tau on those datasets is added.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping, Sequence

import numpy as np

from sfda_jax import ranking
from sfda_jax.evaluation import ground_truth, priors

__all__ = ["PaperTable", "paper_table"]

_FILE = "sfda_paper_group1.json"


@dataclasses.dataclass(frozen=True)
class PaperTable:
  """Weighted tau per row (a prior, a published metric or one of ours) and
  dataset; ``mean`` is over the datasets the row has.

  Attributes:
    datasets: the paper's datasets, in column order.
    rows: ``{row name: {dataset: weighted tau}}``.
    kinds: ``{row name: "prior" | "published" | "ours"}``.
    sources: where the numbers come from, one line each.
    published_means: the paper's own mean per published metric (the mean of
      its rounded per-dataset values can differ from it by 0.001).
  """
  datasets: tuple[str, ...]
  rows: dict[str, dict[str, float]]
  kinds: dict[str, str]
  sources: tuple[str, ...]
  published_means: dict[str, float] = dataclasses.field(default_factory=dict)

  def mean(self, row: str) -> float:
    if row in self.published_means:
      return self.published_means[row]
    return float(np.mean(list(self.rows[row].values())))

  def best(self, kind: str) -> tuple[str, float]:
    names = [r for r in self.rows if self.kinds[r] == kind]
    name = max(names, key=self.mean)
    return name, self.mean(name)

  def format(self) -> str:
    """The table (one line per row, its mean last), then what it means."""
    short = [d[:8] for d in self.datasets]
    width = max(len(r) for r in self.rows) + 11
    head = " " * width + " ".join(f"{s:>8}" for s in short) + "      mean"
    lines = ["Weighted Kendall tau with the SFDA paper's fine-tune accuracies "
             "(11 supervised ImageNet models; higher is better)", head]
    for kind, title in (("prior", "prior"), ("published", "published"),
                        ("ours", "sfda_jax")):
      for row in (r for r in self.rows if self.kinds[r] == kind):
        cells = " ".join(f"{self.rows[row][d]:8.3f}" if d in self.rows[row]
                         else f"{'-':>8}" for d in self.datasets)
        label = f"{title} {row}"
        lines.append(f"{label:<{width}}{cells}  {self.mean(row):8.3f}")
    prior, prior_tau = self.best("prior")
    metric, metric_tau = self.best("published")
    verdict = ("beats" if prior_tau > metric_tau else "does not beat")
    lines += [
        "",
        f"What this means: the best data-free prior, {prior} (mean "
        f"{prior_tau:.3f}), {verdict} the best published metric, {metric} "
        f"(mean {metric_tau:.3f}). A prior never looks at the target data: "
        f"{'on this benchmark, computing a transferability metric ranks the models worse than ranking them by what is already known about them' if prior_tau > metric_tau else 'here the metric adds information beyond what is known about the models'}."
        " A metric is worth its compute only where it beats the priors.",
        "Sources:"] + [f"  {s}" for s in self.sources]
    return "\n".join(lines)

  def to_json(self) -> dict:
    return {"datasets": list(self.datasets), "rows": self.rows,
            "kinds": self.kinds,
            "means": {r: self.mean(r) for r in self.rows},
            "sources": list(self.sources)}


def _read_group1() -> dict:
  with ground_truth.committed_path(_FILE) as path:
    with open(path) as f:
      return json.load(f)


def paper_table(features_dir: str | None = None,
                metrics: Sequence[str] | None = None) -> PaperTable:
  """Builds the table.

  Args:
    features_dir: optional folder of the authors' feature files; every
      dataset of the paper found there (by file name) gets our metrics'
      weighted tau.
    metrics: our metrics to score there (default: every feature metric).

  Raises:
    ValueError: ``features_dir`` does not exist or holds none of the paper's
      datasets, or its models are not the paper's.
  """
  doc = _read_group1()
  accuracies: Mapping[str, Mapping[str, float]] = doc["accuracies"]
  datasets = tuple(accuracies)
  rows, kinds = {}, {}
  for prior in priors.PAPER_PRIORS:
    rows[prior] = {}
    for d in datasets:
      models = list(accuracies[d])
      got = priors.prior_scores(models, [prior], accuracies, d)
      if prior in got.omitted:           # facts cover all 11 models
        raise AssertionError(got.omitted[prior])
      rows[prior][d] = ranking.weighted_tau(got.scores[prior], accuracies[d])
    kinds[prior] = "prior"
  for metric, per_dataset in doc["published_weighted_tau"].items():
    rows[metric] = {d: float(v) for d, v in per_dataset.items()}
    kinds[metric] = "published"
  published_means = {m: float(v) for m, v in
                     doc.get("published_weighted_tau_mean", {}).items()}
  sources = [doc["source"], doc.get("published_weighted_tau_source", ""),
             "Priors: published ImageNet top-1 and parameter counts "
             "(sfda_jax/evaluation/data/model_facts.json, torchvision); lodo "
             "from the other 10 datasets' fine-tune accuracies."]
  if features_dir is not None:
    ours = _score_features_dir(features_dir, accuracies, metrics)
    for metric, per_dataset in ours.items():
      rows[metric] = per_dataset
      kinds[metric] = "ours"
    sources.append(f"sfda_jax: features from {features_dir}.")
  return PaperTable(datasets=datasets, rows=rows, kinds=kinds,
                    sources=tuple(s for s in sources if s),
                    published_means=published_means)


def _score_features_dir(directory, accuracies, metrics):
  from sfda_jax import report     # pylint: disable=g-import-not-at-top
  if not os.path.isdir(directory):
    raise ValueError(f"features directory {directory} does not exist.")
  found = [d for d in accuracies
           if any(n.endswith(f"_{d}_feature.npy")
                  for n in os.listdir(directory))]
  if not found:
    raise ValueError(
        f"{directory} holds no '<model>_<dataset>_feature.npy' file for any "
        f"of the paper's datasets {sorted(accuracies)}.")
  if metrics is None:
    from sfda_jax.metrics import FEATURE_METRICS  # pylint: disable=g-import-not-at-top
    metrics = FEATURE_METRICS
  out: dict[str, dict[str, float]] = {m: {} for m in metrics}
  for d in found:
    _, feats, labels = report.load_features_dir(directory, d)
    unknown = sorted(set(feats) - set(accuracies[d]))
    if unknown:
      raise ValueError(f"{directory}: models {unknown} are not among the "
                       f"paper's {sorted(accuracies[d])} for {d}.")
    result = ranking.score_models(feats, labels, metrics=tuple(metrics),
                                  on_error="record")
    for m in metrics:
      cells = result.scores.get(m, {})
      if len(cells) >= 2 and all(np.isfinite(v) for v in cells.values()):
        out[m][d] = ranking.weighted_tau(
            cells, {k: accuracies[d][k] for k in cells})
  return {m: v for m, v in out.items() if v}
