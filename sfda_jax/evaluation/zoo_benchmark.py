r"""Issue 12's benchmark: every metric's and prior's agreement with each
ground truth on each target, in one table.

For every target dataset and every kind of ground truth (``finetune``: the
cut network plus a new head trained end to end; ``linear_probe``: a head on
frozen features), :func:`run` ranks the zoo with
:func:`~sfda_jax.evaluation.rank_zoo` against that ground-truth file and
:class:`BenchmarkResult` collects, per metric and prior, the weighted tau, its 5-95% interval over (score resample, fine-tune seed)
draws, and the best metric of each column. A target is scored once: its
other kinds of ground truth at the same resolution re-judge the same scores
and resamples (:func:`~sfda_jax.evaluation.rank.rejudge`).

Ground-truth files follow one naming rule, ``{target}_{kind}.json`` in one
directory (default: the package's ``ground_truth/bench/``), as written by
``python -m experiments.finetune --models=bench`` with the settings of
:func:`ground_truth_command`; a missing one is reported with the command that makes
it, and the other columns are still computed.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import itertools
import json
import math
import os
from typing import Any, Callable, Mapping, Sequence

import jax

from sfda_jax.evaluation import ground_truth as ground_truth_lib
from sfda_jax.evaluation import rank as rank_lib

__all__ = ["KINDS", "TARGETS", "BenchmarkResult", "Column",
           "GROUND_TRUTH_FLAGS", "default_ground_truth_dir",
           "BENCH_REQUIRED", "BENCH_SIZES", "choose_bench_zoo",
           "choose_zoo", "ground_truth_command", "ground_truth_path",
           "read_ground_truth", "run"]

#: The benchmark's targets and kinds of ground truth.
TARGETS = ("fashion_mnist", "digits")
KINDS = ("finetune", "linear_probe")


def default_ground_truth_dir() -> str:
  """The package's ``evaluation/ground_truth/bench`` directory."""
  return str(importlib.resources.files("sfda_jax.evaluation")
             / "ground_truth" / "bench")


def ground_truth_path(directory: str, target: str, kind: str) -> str:
  """``{directory}/{target}_{kind}.json`` (``target``'s base name, for a
  folder or features directory given as a path)."""
  name = os.path.basename(os.path.normpath(target))
  return os.path.join(directory, f"{name}_{kind}.json")


@dataclasses.dataclass(frozen=True)
class Column:
  """One (target, kind) of the benchmark.

  Attributes:
    target, kind: which column.
    ground_truth_file: the file ranked against.
    rows: ``{name: {"weighted_tau", "p5", "p95"}}`` for every metric and
      every prior (priors as ``prior <name>``; ``p5``/``p95`` NaN without
      draws).
    best_metric: the metric with the highest weighted tau among those that
      scored every model (``None`` when none did); rows carry ``models``,
      how many models the metric scored.
    models: the ranked models.
    omitted: ``{name: reason}`` for metrics and priors without agreement.
    ground_truth: the ranked models best first, each ``{"model", "mean",
      "std"}`` (mean and std of the fine-tune accuracy over training seeds;
      std ``None`` for one seed).
    pairs: :func:`~sfda_jax.evaluation.ground_truth.adjacent_pairs` of that
      order: which adjacent orders the seeds resolve.
  """
  target: str
  kind: str
  ground_truth_file: str
  rows: dict[str, dict[str, float]]
  best_metric: str | None
  models: tuple[str, ...]
  omitted: dict[str, str]
  ground_truth: tuple[dict[str, Any], ...] = ()
  pairs: tuple[dict[str, Any], ...] = ()

  def resolved(self) -> str:
    """``"k of n adjacent pairs resolved"`` (gap > 2 seed std)."""
    k = sum(p["resolved"] for p in self.pairs)
    return (f"{k} of {len(self.pairs)} adjacent pairs resolved (mean gap > "
            f"{ground_truth_lib.SEPARATION:g} x the larger seed std)")

  def ground_truth_table(self) -> str:
    """The ground truth, best first: mean +- std per model and, between
    two models, ``>`` where the seeds resolve their order, ``~`` where
    they do not."""
    lines = [f"{self.target}/{self.kind} ground truth: {self.resolved()}"]
    if not self.ground_truth:
      return lines[0]
    width = max(len(r["model"]) for r in self.ground_truth)
    for i, row in enumerate(self.ground_truth):
      std = "-" if row["std"] is None else f"{row['std']:.3f}"
      lines.append(f"  {row['model']:<{width}}  {row['mean']:.3f} +- {std}")
      if i < len(self.pairs):
        pair = self.pairs[i]
        lines.append(f"  {'>' if pair['resolved'] else '~':>{width}}  gap "
                     f"{pair['gap']:.3f}")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
  """The benchmark's columns, and the ones that could not be computed."""
  columns: tuple[Column, ...]
  missing: dict[str, str]          # "target/kind" -> why

  def table(self) -> str:
    """Rows: metrics then priors; columns: ``target/kind``; each cell
    ``wtau [p5..p95]``; last row: the best metric of each column."""
    if not self.columns:
      return "no column could be computed: " + "; ".join(
          f"{k}: {v}" for k, v in self.missing.items())
    names = list(dict.fromkeys(n for c in self.columns for n in c.rows))
    names.sort(key=lambda n: (n.startswith("prior "), 0))
    heads = [f"{c.target}/{c.kind}" for c in self.columns]
    width = max(len(n) for n in names + ["metric", "best metric"]) + 2
    cell = max(31, *(len(h) + 2 for h in heads))

    def fmt(row, column):
      if row is None:
        return "-"
      text = f"{row['weighted_tau']:.3f}"
      if not math.isnan(row["p5"]):
        text += f" [{row['p5']:.2f}..{row['p95']:.2f}]"
      if row.get("models", len(column.models)) < len(column.models):
        text += f" ({row['models']}/{len(column.models)})"
      return text

    lines = [f"{'weighted tau':<{width}}" + "".join(f"{h:>{cell}}"
                                                   for h in heads)]
    for name in names:
      lines.append(f"{name:<{width}}" + "".join(
          f"{fmt(c.rows.get(name), c):>{cell}}" for c in self.columns))
    lines.append(f"{'best metric':<{width}}" + "".join(
        f"{c.best_metric or '-':>{cell}}" for c in self.columns))
    notes = [f"{len(c.models)} models in {c.target}/{c.kind} "
             f"(ground truth {c.ground_truth_file})" for c in self.columns]
    notes += [f"{c.target}/{c.kind}: {c.resolved()}"
              for c in self.columns if c.pairs]
    notes += [f"{k}: not computed ({v})" for k, v in self.missing.items()]
    notes += [f"{c.target}/{c.kind}: {n} left out ({why})"
              for c in self.columns for n, why in c.omitted.items()]
    lines.append("[p5..p95]: 5-95% interval over (score resample, "
                 "fine-tune seed) draws; (k/n): the metric scored only k of "
                 "the n models (LEEP / NCE need a classifier head) and is "
                 "not a candidate for best metric")
    return "\n".join(lines + notes)

  def to_json(self) -> dict[str, Any]:
    return {"columns": [dataclasses.asdict(c) for c in self.columns],
            "missing": self.missing}


def column_from_rank(result: rank_lib.RankResult, target: str, kind: str
                     ) -> Column:
  """The benchmark column of one :class:`~sfda_jax.evaluation.RankResult`."""
  nan = float("nan")

  def row(stats):
    return {"weighted_tau": float(stats["weighted_tau"]),
            "p5": float(stats.get("weighted_tau_p5", nan)),
            "p95": float(stats.get("weighted_tau_p95", nan))}

  rows = {m: row(s) for m, s in result.agreement.items()}
  for m in rows:          # how many models the metric scored (LEEP / NCE:
    rows[m]["models"] = sum(v is not None  # only those with a classifier)
                            for v in result.scores[m].values())
  # The best metric ranks the whole zoo: a metric that scored a few models
  # (LEEP / NCE: the heads only) answers an easier question.
  whole = [m for m in rows if rows[m]["models"] == len(result.models)]
  best = (max(whole, key=lambda m: rows[m]["weighted_tau"]) if whole
          else None)
  rows.update({f"prior {p}": row(s)
               for p, s in result.prior_agreement.items()})
  omitted = dict(result.agreement_skipped)
  if result.priors is not None:
    omitted.update({f"prior {p}": why
                    for p, why in result.priors.omitted.items()})
  accuracies = result.ground_truth or {}
  std = (ground_truth_lib.seed_std(result.ground_truth_file, result.dataset)
         if accuracies else {})
  pairs = ground_truth_lib.adjacent_pairs(accuracies, std)
  order = sorted(accuracies, key=lambda m: -accuracies[m])
  return Column(target=target, kind=kind,
                ground_truth_file=str(result.ground_truth_file), rows=rows,
                best_metric=best, models=tuple(result.models),
                omitted=omitted,
                ground_truth=tuple({"model": m, "mean": accuracies[m],
                                    "std": std.get(m)} for m in order),
                pairs=tuple(pairs))


def read_ground_truth(path: str) -> tuple[dict[str, float],
                                          dict[str, float | None]]:
  """``(mean accuracy, seed std)`` per model of a one-dataset ground-truth
  file (as ``experiments.finetune`` writes it).

  Raises:
    ValueError: the file does not hold exactly one dataset's accuracies.
  """
  with open(path) as f:
    doc = json.load(f)
  table = doc.get("accuracies") if isinstance(doc, dict) else None
  if not isinstance(table, dict) or len(table) != 1:
    got = sorted(table) if isinstance(table, dict) else repr(table)
    raise ValueError(f"{path}: expected the accuracies of one dataset, got "
                     f"{got}.")
  (dataset, accuracies), = table.items()
  std = ground_truth_lib.seed_std(path, dataset)
  return dict(accuracies), {m: std.get(m) for m in accuracies}


#: Subsets :func:`choose_zoo` may try before refusing.
MAX_ZOO_SUBSETS = 2_000_000


def choose_zoo(columns: Sequence[tuple[Mapping[str, float],
                                       Mapping[str, float | None]]],
               required: Sequence[str], min_size: int,
               max_size: int | None = None,
               separation: float = ground_truth_lib.SEPARATION
               ) -> tuple[tuple[str, ...], list[tuple[int, int]]]:
  """The candidate zoo whose ground truths are best resolved.

  Every subset of the candidates (the models every column has a seed std
  for) that holds ``required`` and has ``min_size..max_size`` models is
  judged by its ground truths alone, never by any metric: per column, the
  fraction of adjacent pairs (in order of mean accuracy) whose gap exceeds
  ``separation`` x the larger seed std. The subset with the largest
  smallest fraction over the columns wins; ties go to the larger sum of
  fractions, then to the larger zoo, then to the first in candidate order.

  Args:
    columns: per ground truth, ``(mean accuracy, seed std)`` per model (see
      :func:`read_ground_truth`).
    required: models every subset keeps (e.g. the offline zoo).
    min_size, max_size: subset sizes (``max_size`` default: every
      candidate).
    separation: see :func:`~sfda_jax.evaluation.ground_truth.adjacent_pairs`.

  Returns:
    ``(zoo, resolved)``: the models in candidate order, and per column
    ``(resolved pairs, adjacent pairs)``.

  Raises:
    ValueError: no column, a required model that is not a candidate, sizes
      out of range, or more than :data:`MAX_ZOO_SUBSETS` subsets.
  """
  if not columns:
    raise ValueError("choose_zoo needs at least one ground truth.")
  pool = [m for m in columns[0][0]
          if all(m in acc and std.get(m) is not None for acc, std in columns)]
  missing = [m for m in required if m not in pool]
  if missing:
    raise ValueError(f"required model(s) {missing} lack an accuracy or a "
                     "seed std in some ground truth.")
  max_size = len(pool) if max_size is None else max_size
  if not len(required) <= min_size <= max_size <= len(pool) or min_size < 2:
    raise ValueError(f"zoo sizes must satisfy max(2, {len(required)} "
                     f"required) <= min_size={min_size} <= max_size="
                     f"{max_size} <= {len(pool)} candidates.")
  free = [m for m in pool if m not in required]
  count = sum(math.comb(len(free), n - len(required))
              for n in range(min_size, max_size + 1))
  if count > MAX_ZOO_SUBSETS:
    raise ValueError(f"{count} subsets to try (more than "
                     f"{MAX_ZOO_SUBSETS}); narrow the sizes.")
  # Each column's models sorted once (best first, ties in pool order);
  # a subset's order is that order filtered, as adjacent_pairs sorts it.
  orders = [[(acc[m], separation * std[m], m)
             for m in sorted(pool, key=lambda m, acc=acc: -acc[m])]
            for acc, std in columns]
  best_key, best = None, None
  for n in range(min_size, max_size + 1):
    for extra in itertools.combinations(free, n - len(required)):
      chosen = set(required).union(extra)
      resolved = []
      for order in orders:
        hits, previous = 0, None
        for row in order:
          if row[2] not in chosen:
            continue
          if previous is not None and previous[0] - row[0] > max(
              previous[1], row[1]):
            hits += 1
          previous = row
        resolved.append((hits, n - 1))
      fractions = [k / total for k, total in resolved]
      key = (min(fractions), sum(fractions), n)
      if best_key is None or key > best_key:
        best_key, best = key, (tuple(m for m in pool if m in chosen),
                               resolved)
  return best


#: What the benchmark zoo must hold whatever its ground truths say: the
#: offline zoo (the three whole networks and the random control, which the
#: default ``experiments.rank`` job ranks) and the raw-pixel baseline.
BENCH_REQUIRED = ("efficientnet_lite0", "efficientnet_lite1",
                  "efficientnet_lite2", "efficientnet_lite0@random", "pixels")
#: The benchmark zoo's size range (issue 12: at least 12 candidates; 13
#: bounds the search to ~490,000 subsets of the 27-model pool, ~10 s).
BENCH_SIZES = (12, 13)


def choose_bench_zoo(directory: str | None = None
                     ) -> tuple[tuple[str, ...], dict[str, tuple[int, int]]]:
  """:func:`choose_zoo` over the ``bench_all`` pool on every committed
  ground truth (both targets, both kinds) in ``directory`` (default: the
  package's): the rule that defines ``ZOOS["bench"]``.

  Returns:
    ``(zoo, {"target/kind": (resolved, pairs)})``.

  Raises:
    ValueError: a ground-truth file is missing or lacks a pool model.
  """
  directory = directory or default_ground_truth_dir()
  keys, columns = [], []
  pool = rank_lib.ZOOS["bench_all"]
  for target in TARGETS:
    for kind in KINDS:
      path = ground_truth_path(directory, target, kind)
      if not os.path.isfile(path):
        raise ValueError(f"no ground truth {path}; make it with: "
                         + ground_truth_command(target, kind, path))
      acc, std = read_ground_truth(path)
      lacking = [m for m in pool if m not in acc]
      if lacking:
        raise ValueError(f"{path} lacks pool model(s) {lacking}.")
      keys.append(f"{target}/{kind}")
      columns.append(({m: acc[m] for m in pool}, std))
  zoo, resolved = choose_zoo(columns, BENCH_REQUIRED, *BENCH_SIZES)
  return zoo, dict(zip(keys, resolved))


#: The committed bench ground truth's settings (every file records its own
#: command and configuration too): 32 px (Fashion-MNIST's 28 px and digits'
#: 8 px upsampled; the whole grid fits the issue's 2-hour CPU budget), 3
#: training seeds, a 2-point learning-rate grid (best per seed), a linear
#: warm-up and gradient clipping (without them lr 0.01 diverged for cut
#: networks at this resolution).
GROUND_TRUTH_FLAGS = ("--models=bench_all --seeds=0,1,2 --image_size=32 "
                      "--warmup_steps=15 --clip_norm=1 "
                      "--learning_rates=0.03,0.01")
KIND_FLAGS = {"finetune": "--mode=full --steps=150",
              "linear_probe": "--mode=linear_probe --steps=500"}
#: Train / test subsets per target (0: the whole split; digits' fixed
#: 1,258 / 539 split).
TARGET_FLAGS = {"fashion_mnist": "--num_examples=1000 --test_examples=1000",
                "digits": "--num_examples=0 --test_examples=0"}


def ground_truth_command(target: str, kind: str, path: str) -> str:
  """The ``experiments.finetune`` command that makes (or resumes) the
  ``kind`` ground truth of ``target`` at ``path`` with the benchmark's
  settings."""
  return (f"python -m experiments.finetune --dataset={target} "
          f"{TARGET_FLAGS.get(target, '')} {KIND_FLAGS[kind]} "
          f"{GROUND_TRUTH_FLAGS} --output={path}").replace("  ", " ")


def run(targets: Sequence[str] = TARGETS, kinds: Sequence[str] = KINDS,
        ground_truth_dir: str | None = None,
        config: rank_lib.RankConfig | None = None,
        num_examples: Mapping[str, int | None] | None = None,
        progress: Callable[[str], None] | None = None) -> BenchmarkResult:
  """Ranks ``config.models`` (default ``bench``) on every target against
  every kind of ground truth.

  Args:
    targets: dataset names (or folders / features directories) to rank.
    kinds: ground-truth kinds (:data:`KINDS`).
    ground_truth_dir: where ``{target}_{kind}.json`` live (default
      :func:`default_ground_truth_dir`).
    config: the ranking settings; ``dataset`` and ``ground_truth`` are set
      per column (default: ``RankConfig(models="bench", resamples=8)``).
    num_examples: per-target subset sizes overriding ``config``'s (``None``:
      the whole split); default ``{"digits": None}`` (its 1,258 training
      images: fewer than the default 2000).
    progress: called with ``"target/kind"`` before each column.

  Returns:
    The :class:`BenchmarkResult`; a column whose ground-truth file does not
    exist, or says it is incomplete (a stopped fine-tuning job), is listed
    in ``missing`` with the command that makes or resumes it.

  Raises:
    ValueError: an unknown kind, no target, or what ``rank_zoo`` raises for
      an existing file (e.g. a ground truth that misses a model).
  """
  if not targets:
    raise ValueError("no target dataset given.")
  unknown = [k for k in kinds if k not in KINDS]
  if unknown:
    raise ValueError(f"unknown ground-truth kind(s) {unknown}; kinds: "
                     f"{list(KINDS)}.")
  directory = ground_truth_dir or default_ground_truth_dir()
  base = config or rank_lib.RankConfig(models="bench", resamples=8)
  base.validate()
  sizes = {"digits": None} if num_examples is None else dict(num_examples)
  columns, missing = [], {}
  for target in targets:
    ranked = None           # (resolution, RankResult) scored for this target
    for kind in kinds:
      path = ground_truth_path(directory, target, kind)
      key = f"{target}/{kind}"
      if not os.path.isfile(path):
        missing[key] = f"no ground truth {path}; make it with " + \
            ground_truth_command(target, kind, path)
        continue
      runs = ground_truth_lib.incomplete_runs(path)
      if runs is not None:            # a fine-tuning job that stopped
        missing[key] = (f"ground truth {path} is incomplete ({runs} finished "
                        "runs); resume it with " +
                        ground_truth_command(target, kind, path))
        continue
      if progress is not None:
        progress(key)
      size = rank_lib._image_size(base.image_size, path)  # pylint: disable=protected-access
      if ranked is not None and ranked[0] == size:
        # The same features and scores: only the agreement changes.
        result = rank_lib.rejudge(ranked[1], path, base.priors)
      else:
        result = rank_lib.rank_zoo(dataclasses.replace(
            base, dataset=target, ground_truth=path,
            num_examples=sizes.get(target, base.num_examples)))
        ranked = (size, result)
      columns.append(column_from_rank(result, target, kind))
    # Another target has other shapes, so nothing compiled here is reused;
    # dropping it keeps one process under the per-process memory-mapping
    # limit that hundreds of compiled programs crossed (BUILD_NOTES, known
    # gaps).
    jax.clear_caches()
  return BenchmarkResult(columns=tuple(columns), missing=missing)
