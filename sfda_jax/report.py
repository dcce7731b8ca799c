"""Ranking reports: ground truth, precomputed feature directories, outputs.

Library side of ``experiments.rank``: reading fine-tune accuracies, reading
the SFDA authors' ``{model}_{dataset}_feature.npy`` / ``_label.npy`` layout,
formatting ranking and agreement tables, and writing ``results.json``,
``results.csv`` and ``ranking.png`` atomically (temp file + rename).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from typing import Any, Mapping

import numpy as np

from sfda_jax import atomic
from sfda_jax import ranking

__all__ = ["dataset_key", "load_ground_truth", "load_features_dir",
           "ranking_table",
           "agreement_by_metric", "agreement_table", "failure_summary",
           "check_output_dir", "write_results"]


def dataset_key(keys, dataset: str | None) -> str | None:
  """The key of ``keys`` naming ``dataset``: the same string, else, for a
  folder path, the key naming the same folder (a trailing slash, a relative
  or ``~`` path, a symlink); None when none does."""
  keys = list(keys)
  if dataset in keys:
    return dataset
  if not isinstance(dataset, str) or not dataset:
    return None

  def norm(name):
    return os.path.realpath(os.path.expanduser(name))

  target = norm(dataset)
  for key in keys:
    if isinstance(key, str) and key and (os.sep in key or os.sep in dataset
                                         or os.path.exists(key)) and (
                                             norm(key) == target):
      return key
  return None


def load_ground_truth(path: str, dataset: str | None = None
                      ) -> dict[str, float]:
  """Fine-tune accuracies ``{model: accuracy}`` from a JSON file.

  Accepted forms: ``{model: acc}``; ``{"accuracies": {model: acc}, ...}``; or
  ``{"accuracies": {dataset: {model: acc}}, ...}`` (then ``dataset`` picks
  one; e.g. the shipped SFDA paper tables).

  Raises:
    ValueError: unreadable file, wrong structure, unknown dataset (listing
      the available ones) or non-numeric accuracies.
  """
  try:
    with open(path, encoding="utf-8") as f:
      payload = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"cannot read ground truth {path}: {e}") from e
  table = payload.get("accuracies", payload) if isinstance(payload,
                                                           dict) else None
  if not isinstance(table, dict) or not table:
    raise ValueError(f"ground truth {path} must map models to accuracies "
                     "(optionally under 'accuracies', keyed by dataset).")
  if all(isinstance(v, dict) for v in table.values()):
    key = dataset_key(table, dataset)
    if key is None:
      raise ValueError(f"ground truth {path} has no dataset {dataset!r}; it "
                       f"has {sorted(table)}.")
    table = table[key]
  try:
    return {str(m): float(a) for m, a in table.items()}
  except (TypeError, ValueError) as e:
    raise ValueError(f"ground truth {path}: accuracies must be numbers "
                     f"({e}).") from e


_FEATURE_RE = re.compile(r"^(?P<stem>.+)_feature\.npy$")


def load_features_dir(directory: str, dataset: str | None = None
                      ) -> tuple[str, dict[str, np.ndarray], np.ndarray]:
  """Reads ``{model}_{dataset}_feature.npy`` + ``..._label.npy`` pairs.

  Args:
    directory: the folder (the layout the SFDA authors' code writes).
    dataset: the dataset part of the names; inferred when every file shares
      one (the longest common ``_``-separated suffix of the stems).

  Returns:
    ``(dataset, {model: features [N, D]}, labels [N])``; all models must
    share the same labels.

  Raises:
    ValueError: no pairs, a missing label file, ambiguous dataset name,
      differing labels, or arrays of the wrong rank.
  """
  if not os.path.isdir(directory):
    raise ValueError(f"features directory {directory} does not exist.")
  stems = sorted(m.group("stem") for name in os.listdir(directory)
                 if (m := _FEATURE_RE.match(name)))
  if not stems:
    raise ValueError(f"{directory} holds no '<model>_<dataset>_feature.npy' "
                     "files.")
  if dataset is None:
    parts = [s.split("_") for s in stems]
    common = []
    for tokens in zip(*(p[::-1] for p in parts)):
      if len(set(tokens)) != 1:
        break
      common.append(tokens[0])
    if not common or any(len(p) <= len(common) for p in parts):
      raise ValueError(
          f"cannot infer the dataset name from {stems[:3]}...; pass it "
          "explicitly (--features_dataset).")
    dataset = "_".join(reversed(common))
  models, labels = {}, None
  for stem in stems:
    if not stem.endswith("_" + dataset):
      continue
    model = stem[:-len(dataset) - 1]
    label_path = os.path.join(directory, f"{stem}_label.npy")
    if not os.path.exists(label_path):
      raise ValueError(f"{stem}_feature.npy has no {stem}_label.npy beside it.")
    feats = np.load(os.path.join(directory, f"{stem}_feature.npy"),
                    mmap_mode="r")
    y = np.load(label_path)
    if feats.ndim != 2 or y.ndim != 1 or feats.shape[0] != y.shape[0]:
      raise ValueError(f"{stem}: features {feats.shape} and labels {y.shape} "
                       "must be [N, D] and [N].")
    if labels is not None and not np.array_equal(labels, y):
      raise ValueError(f"{stem}_label.npy differs from the other models' "
                       "labels: every model must be scored on the same data.")
    labels = y
    models[model] = np.asarray(feats)
  if not models:
    raise ValueError(f"no feature files for dataset {dataset!r} in "
                     f"{directory}.")
  return dataset, models, labels


def _format_std(value: float) -> str:
  return f"+-{value:.2g}"


def _format_score(value: float) -> str:
  """6 significant digits; exact zeros without a sign (GBC's -0.0)."""
  return "0" if value == 0 else f"{value:.6g}"


def _split_cells(scores: Mapping[str, float | None],
                 failures: Mapping[str, str] | None
                 ) -> tuple[list[str], dict[str, str]]:
  """``(models that scored, best first; {failed model: reason})``.

  A cell fails when its score is ``None`` or it is in ``failures``; its
  reason is ``failures[model]``, or ``"no reason recorded"``.
  """
  failures = dict(failures or {})
  failed = {m: failures.get(m, "no reason recorded")
            for m, v in scores.items() if v is None or m in failures}
  failed.update({m: r for m, r in failures.items() if m not in failed})
  scored = sorted((m for m in scores if m not in failed),
                  key=lambda m: -scores[m])
  return scored, failed


def ranking_table(metric: str, scores: Mapping[str, float | None],
                  accuracies: Mapping[str, float] | None = None,
                  failures: Mapping[str, str] | None = None,
                  std: Mapping[str, float] | None = None,
                  p_above: Mapping[str, Mapping[str, float]] | None = None
                  ) -> str:
  """One metric's ranking as text: rank, model, score (and accuracy).

  With resampling, ``std`` ``{model: std}`` adds ``+- std`` and ``p_above``
  ``{a: {b: P(a above b)}}`` adds P(above the next model), marked
  ``unresolved`` when it is between 0.1 and 0.9. Models with equal scores
  share a rank marked ``=`` (``1=``). Failed cells (a ``None`` score, or a
  model in ``failures`` ``{model: reason}``) come last, unranked (rank
  ``-``), as ``failed: <reason>``.
  """
  order, failed = _split_cells(scores, failures)
  width = max(len(m) for m in ["model", *order, *failed]) + 2
  head = f"{metric}\n  {'rank':<6}{'model':<{width}}{'score':>14}"
  if std is not None:
    head += f"{'+- std':>12}"
  if accuracies:
    head += f"{'fine-tune acc':>15}"
  if p_above is not None:
    head += f"{'P>next':>9}"
  lines = [head]
  # Tied scores share a rank, marked "=" (e.g. "1=", "1="; the next is 3).
  first = {}
  for i, m in enumerate(order, 1):
    first.setdefault(scores[m], i)
  tied = {v for v in first if sum(scores[m] == v for m in order) > 1}
  for i, m in enumerate(order, 1):
    rank = f"{first[scores[m]]}=" if scores[m] in tied else str(i)
    line = f"  {rank:<6}{m:<{width}}{_format_score(scores[m]):>14}"
    if std is not None:
      line += (f"{_format_std(std[m]):>12}" if m in std else f"{'-':>12}")
    if accuracies:
      line += f"{accuracies.get(m, float('nan')):>15.4g}"
    if p_above is not None and i < len(order):
      p = p_above.get(m, {}).get(order[i])
      if p is not None:
        line += f"{p:>9.2f}" + ("  unresolved" if 0.1 <= p <= 0.9 else "")
    lines.append(line)
  for m, reason in failed.items():
    lines.append(f"  {'-':<6}{m:<{width}}failed: {reason}")
  return "\n".join(lines)


def agreement_by_metric(scores: Mapping[str, Mapping[str, float | None]],
                        accuracies: Mapping[str, float]
                        ) -> tuple[dict[str, dict[str, float]],
                                   dict[str, str]]:
  """:func:`sfda_jax.agreement` of each metric over the models it scored.

  Args:
    scores: ``{metric: {model: score or None}}`` (``None``: a failed cell,
      left out).
    accuracies: ``{model: fine-tune accuracy}``.

  Returns:
    ``(agreement {metric: statistics}, skipped {metric: reason})``: a metric
    with fewer than 2 scored models, or whose scores (or the models'
    accuracies) are all equal, has no ranking to compare and is skipped
    with why, instead of a row of NaN.
  """
  agreement, skipped = {}, {}
  for metric, per_model in scores.items():
    scored = {m: v for m, v in per_model.items() if v is not None}
    if len(scored) < 2:
      skipped[metric] = (f"only {len(scored)} model(s) scored; agreement "
                         "needs at least 2")
    elif len(set(scored.values())) == 1:
      skipped[metric] = (f"all {len(scored)} models scored the same "
                         f"({next(iter(scored.values())):.6g}): the metric "
                         "does not rank them, so no correlation is defined")
    elif len({accuracies[m] for m in scored if m in accuracies}) == 1:
      skipped[metric] = ("every scored model has the same fine-tune "
                         "accuracy: the ground truth does not rank them")
    else:
      agreement[metric] = ranking.agreement(scored, accuracies)
  return agreement, skipped


def agreement_table(agreement: Mapping[str, Mapping[str, float]],
                    skipped: Mapping[str, str] | None = None,
                    priors: Mapping[str, Mapping[str, float]] | None = None
                    ) -> str:
  """Agreement of every metric with the ground truth, as text; metrics in
  ``skipped`` ``{metric: reason}`` follow as ``skipped: <reason>``.

  With resampling (``weighted_tau_p5``/``_p95`` in a row) a ``wtau 5-95%``
  column shows the interval over resamples; with ``priors`` ``{prior:
  statistics}`` the priors follow as ``prior <name>`` rows and each metric
  shows its weighted-tau margin over the best prior (``vs prior``).
  """
  cols = ["weighted_tau", "kendall_tau", "pearson", "rel@1", "rel@3",
          "top1_hit"]
  rows = [*agreement.values(), *(priors or {}).values()]
  if rows:       # a column no row has (e.g. a trivial rel@k) is not shown
    cols = [c for c in cols if any(c in row for row in rows)]
  skipped = dict(skipped or {})
  priors = dict(priors or {})
  interval = any("weighted_tau_p5" in row for row in agreement.values())
  margin = any("margin_over_best_prior" in row for row in agreement.values())
  names = ["metric", *agreement, *skipped, *(f"prior {p}" for p in priors)]
  width = max(len(m) for m in names) + 2
  head = f"{'metric':<{width}}" + "".join(f"{c:>14}" for c in cols)
  if interval:
    head += f"{'wtau 5-95%':>16}"
  if margin:
    head += f"{'vs prior':>10}"
  lines = [head]

  def row_text(name, row):
    text = f"{name:<{width}}" + "".join(
        f"{row.get(c, float('nan')):>14.3f}" for c in cols)
    if interval:
      text += (f"{row['weighted_tau_p5']:>9.2f}..{row['weighted_tau_p95']:<5.2f}"
               if "weighted_tau_p5" in row else f"{'':>16}")
    if margin and "margin_over_best_prior" in row:
      text += f"{row['margin_over_best_prior']:>+10.3f}"
    return text.rstrip()

  for metric, row in agreement.items():
    lines.append(row_text(metric, row))
  for metric, reason in skipped.items():
    lines.append(f"{metric:<{width}}skipped: {reason}")
  for prior, row in priors.items():
    lines.append(row_text(f"prior {prior}", row))
  return "\n".join(lines)


def failure_summary(failures: Mapping[str, Mapping[str, str]],
                    num_scored: int) -> str:
  """The failed cells ``{metric: {model: reason}}`` as a warning text."""
  num_failed = sum(len(v) for v in failures.values())
  lines = [f"{num_failed} of {num_failed + num_scored} (metric, model) "
           "cell(s) failed and are not ranked:"]
  for metric, per_model in failures.items():
    for model, reason in per_model.items():
      lines.append(f"  {metric} / {model}: {reason}")
  return "\n".join(lines)


def check_output_dir(path: str) -> None:
  """Creates ``path`` and checks it is writable, before any heavy work
  (:func:`sfda_jax.atomic.check_writable_dir`)."""
  atomic.check_writable_dir(path, "output directory")


def _colours(models):
  import matplotlib  # pylint: disable=g-import-not-at-top
  cmap = matplotlib.colormaps["tab10" if len(models) <= 10 else "tab20"]
  return {m: cmap(i % cmap.N) for i, m in enumerate(sorted(models))}


def _ranks(values: Mapping[str, float]) -> dict[str, float]:
  """1 = best (highest); ties share the mean rank."""
  names = list(values)
  order = np.argsort(-np.asarray([values[m] for m in names]), kind="stable")
  ranks = np.empty(len(names))
  ranks[order] = np.arange(1, len(names) + 1)
  vals = np.asarray([values[m] for m in names])
  for v in np.unique(vals):
    tie = vals == v
    ranks[tie] = ranks[tie].mean()
  return dict(zip(names, ranks))


def _plot(payload: Mapping[str, Any]) -> bytes:
  """ranking.png: per metric, score rank vs fine-tune rank (rank axes, so a
  far-off control does not squash the others; error bars: the 5-95% range
  of the model's rank over the resamples), plus a summary panel of weighted
  tau per metric with its resample interval and the priors as reference
  lines. Without ground truth: each metric's scores as dots in rank order
  (best on top, higher is better) with +- std."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  scores = payload["scores"]
  failures = payload.get("failures") or {}
  accuracies = payload.get("ground_truth") or None
  resampling = payload.get("resampling") or {}
  values = resampling.get("values") or {}
  stds = resampling.get("std") or {}
  agreement = payload.get("agreement") or {}
  prior_agreement = (payload.get("priors") or {}).get("agreement") or {}
  metrics = list(scores)
  colours = _colours({m for per in scores.values() for m in per})
  panels = len(metrics) + (1 if accuracies and agreement else 0)
  cols = min(4, max(panels, 1))
  rows = -(-panels // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows),
                           squeeze=False)
  flat = list(axes.flat)
  for ax, metric in zip(flat, metrics):
    models, failed = _split_cells(scores[metric], failures.get(metric))
    title = metric + (f", {len(failed)} failed" if failed else "")
    ax.tick_params(labelsize=7)
    if not models:
      ax.text(0.5, 0.5, "no model scored", ha="center", va="center",
              fontsize=9, transform=ax.transAxes)
      ax.set_title(title, fontsize=9)
      continue
    s = {m: scores[metric][m] for m in models}
    if not accuracies:
      # Dots in rank order (best on top), not bars from 0: a bar's length
      # means nothing for a metric whose scores are negative or offset.
      order = sorted(models, key=lambda m: s[m])
      ax.errorbar([s[m] for m in order], range(len(order)),
                  xerr=[stds.get(metric, {}).get(m, 0.0) for m in order],
                  fmt="none", ecolor="0.5", elinewidth=1)
      ax.scatter([s[m] for m in order], range(len(order)),
                 c=[colours[m] for m in order], zorder=3)
      ax.set_yticks(range(len(order)), order, fontsize=7)
      ax.set_title(title + " (higher is better)", fontsize=9)
      ax.set_xlabel("score (+- std over resamples)", fontsize=8)
      continue
    x = _ranks(s)
    y = _ranks({m: accuracies[m] for m in models})
    lo, hi = dict(x), dict(x)
    per = values.get(metric, {})
    if per and all(m in per for m in models):
      b = len(per[models[0]])
      r = np.array([[_ranks({m: per[m][i] for m in models})[m]
                     for m in models] for i in range(b)])      # [B, M]
      lo = dict(zip(models, np.percentile(r, 5, axis=0)))
      hi = dict(zip(models, np.percentile(r, 95, axis=0)))
    n = len(models)
    ax.plot([1, n], [1, n], color="0.8", lw=1, zorder=0)
    for m in models:      # the full-data rank can lie outside its interval
      ax.hlines(y[m], lo[m], hi[m], color=colours[m], lw=2, alpha=0.6)
      ax.plot(x[m], y[m], "o", color=colours[m], ms=6, label=m)
    tau = agreement.get(metric, {}).get("weighted_tau", float("nan"))
    ax.set_title(f"{title}: weighted tau {tau:+.2f}", fontsize=9)
    ax.set_xlabel("score rank (1 = best; bars: 5-95% over resamples)",
                  fontsize=7)
    ax.set_ylabel("fine-tune rank", fontsize=8)
    ax.set_xlim(n + 0.6, 0.4)
    ax.set_ylim(n + 0.6, 0.4)
    ax.set_xticks(range(1, n + 1))
    ax.set_yticks(range(1, n + 1))
  used = len(metrics)
  if accuracies and agreement:
    ax = flat[used]
    used += 1
    names = [m for m in metrics if m in agreement]
    tau = [agreement[m]["weighted_tau"] for m in names]
    lo = [agreement[m].get("weighted_tau_p5", t) for m, t in zip(names, tau)]
    hi = [agreement[m].get("weighted_tau_p95", t) for m, t in zip(names, tau)]
    ys = np.arange(len(names))
    ax.hlines(ys, lo, hi, color="k", lw=2, alpha=0.5)
    ax.plot(tau, ys, "o", color="k")
    for i, (prior, row) in enumerate(prior_agreement.items()):
      ax.axvline(row["weighted_tau"], ls="--", lw=1,
                 color=f"C{i + 1}", label=f"prior {prior}")
    ax.set_yticks(ys)
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("weighted tau (bars: 5-95% over resamples)", fontsize=7)
    ax.set_title("agreement with fine-tuning", fontsize=9)
    ax.tick_params(labelsize=7)
    if prior_agreement:
      ax.legend(fontsize=6, loc="lower left")
  for ax in flat[used:]:
    ax.axis("off")
  handles = [plt.Line2D([], [], marker="o", ls="", color=colours[m], label=m)
             for m in sorted(colours)]
  fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6),
             fontsize=7, frameon=False)
  fig.tight_layout(rect=(0, 0.06 if rows == 1 else 0.03, 1, 1))
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110)
  plt.close(fig)
  return buf.getvalue()


def write_results(output_dir: str, payload: dict[str, Any]) -> list[str]:
  """Writes results.json, results.csv and ranking.png; returns the paths.

  ``payload`` holds at least ``scores`` ({metric: {model: score or None}},
  ``None`` for a failed cell) and may hold ``failures`` ({metric: {model:
  reason}}), ``ground_truth`` ({model: accuracy}) and ``agreement``; it is
  written as results.json. results.csv has one row per cell: ``metric,
  model, score, rank, fine_tune_accuracy, failure``; a failed cell has an
  empty score and rank and its reason under ``failure``. Each file is
  written atomically.
  """
  scores = payload["scores"]
  failures = payload.get("failures") or {}
  acc = payload.get("ground_truth") or None
  paths = [os.path.join(output_dir, n)
           for n in ("results.json", "results.csv", "ranking.png")]
  atomic.write_bytes(paths[0], json.dumps(payload, indent=1,
                                     default=float).encode())
  buf = io.StringIO()
  writer = csv.writer(buf)
  writer.writerow(["metric", "model", "score", "rank", "fine_tune_accuracy",
                   "failure"])
  for metric, per_model in scores.items():
    order, failed = _split_cells(per_model, failures.get(metric))
    rows = [(m, repr(per_model[m]), rank, "")
            for rank, m in enumerate(order, 1)]
    rows += [(m, "", "", reason) for m, reason in failed.items()]
    for model, score, rank, reason in rows:
      writer.writerow([metric, model, score, rank,
                       "" if acc is None else acc.get(model, ""), reason])
  atomic.write_bytes(paths[1], buf.getvalue().encode())
  atomic.write_bytes(paths[2], _plot(payload))
  return paths
