r"""Benchmark sfda_jax against the PyTorch and NumPy ways of computing the metrics.

Metrics suite. For every metric and every (N, D, C) of the grid, in one run
on one machine (so every ratio is measured under the same load):
  * ``sfda_jax``: the public jitted function on device-resident float32
    features, warm (median of ``--repeats``); the compile time is the first
    call minus that median.
  * ``torch``: ``sfda_jax.baselines.torch_reference`` (the published SFDA /
    LogME code ported to PyTorch) on ``--torch_device`` in ``--torch_dtype``,
    inputs already on that device.
  * ``numpy`` (``sklearn`` for NLEEP): the float64 reference of
    ``sfda_jax.baselines.numpy_reference`` (NLEEP: scikit-learn PCA +
    GaussianMixture, which is also the torch baseline's NLEEP).
  * ``roofline`` (SFDA only): the two ``[D, N] x [N, D]`` products SFDA cannot
    avoid (within-class scatter of the original and of the mixed features),
    as plain ``jnp.matmul`` at HIGHEST precision in the same dtype; sfda_jax's
    time is reported as a multiple of it.
With ``--models_at_once=M > 1`` SFDA and LogME are also timed on M models of
the same shape: sfda_jax vmapped (``sfda_jax.score_models``, one compiled
call) and as M separate calls, torch as M separate calls.

A reference whose estimated time (extrapolated from its last measured grid
point by a cost model, or M x its single-model time) exceeds
``--max_reference_seconds`` is skipped and recorded as skipped in the JSON.

Extraction suite: images/s of an offline-zoo backbone in Flax float32 and
bfloat16 against the PyTorch implementation the weights were published for.

Resample suite: ``sfda_jax.resample_scores`` with ``--resamples=B`` (0.8 N
each, plus its full-data score) against B x one warm full-data score of the
same metric, in the same run; the ratio's target is <= 1.2.

Finetune suite: one full fine-tuning step (new 10-class head, frozen
batch-norm statistics, SGD Nesterov with weight decay) of each
``--extract_models`` backbone at ``--finetune_image_size`` px and
``--batch_size``, ``sfda_jax.finetune.training_step`` against PyTorch
(efficientnet_lite_pytorch, same weights, ``eval()`` batch norm, same
optimizer), warm medians over ``--finetune_steps``; also the first step of a
second run with another learning rate (compiled once: no recompilation).

  python -m experiments.benchmark --suite=finetune

  python -m experiments.benchmark --suite=metrics
  python -m experiments.benchmark --suite=metrics --quick
  python -m experiments.benchmark --suite=resample --metrics=sfda,logme \
      --n=5000 --d=512 --c=50 --resamples=32
  python -m experiments.benchmark --metrics=sfda --n=10000 --d=2048 --c=100 \
      --models_at_once=3 --output=/tmp/bench.json

Output: a table on stdout and, with ``--output``, JSON
``{"device", "versions", "config", "complete", "results": [{"suite", "name",
"impl", "N", "D", "C", "M", "seconds", "compile_seconds", ...}]}`` written
atomically, after every metrics grid point (``complete`` false) and at the
end (``complete`` true).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import json
import os
import statistics
import time
from typing import Any, Callable, Sequence

# JAX would otherwise take 75% of GPU memory at start-up and leave the torch
# baseline in the same process none (an entry point may set this, a library
# may not).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from experiments import _cli  # pylint: disable=g-import-not-at-top,wrong-import-position
import sfda_jax
from sfda_jax import atomic
from sfda_jax import environment
from sfda_jax import ranking
from sfda_jax.baselines import numpy_reference
from sfda_jax.baselines import numpy_reference_knn
from sfda_jax.baselines import numpy_reference_lda
from sfda_jax.baselines import numpy_reference_ped
from sfda_jax.baselines import torch_reference
from sfda_jax.metrics import registry

FLAGS = flags.FLAGS
flags.DEFINE_enum("suite", "metrics", ["metrics", "extract", "resample",
                                       "finetune", "all"],
                  "metrics: metric kernels vs the torch and NumPy baselines; "
                  "extract: images/s of Flax vs PyTorch for the same weights; "
                  "resample: resample_scores vs B x one score; finetune: one "
                  "full fine-tuning step, Flax vs PyTorch.")
flags.DEFINE_integer("finetune_image_size", 112, "Input side (px) of the "
                     "finetune suite.")
flags.DEFINE_integer("finetune_steps", 5, "Timed steps per implementation "
                     "(finetune suite; median).")
flags.DEFINE_list("extract_models", ["efficientnet_lite0"],
                  "Offline-zoo backbones for the extraction suite.")
flags.DEFINE_integer("batch_size", 32, "Images per batch (extraction).")
flags.DEFINE_integer("extract_batches", 5, "Timed batches per implementation.")
flags.DEFINE_list("metrics", ["sfda", "logme", "nleep"],
                  "Metrics to time (any per-model metric, variant or set-level part of the "
                  "registry, or 'all' for every one of them; the torch "
                  "baseline and the roofline exist for sfda/logme and sfda).")
flags.DEFINE_list("skip_metrics", [], "Metrics left out of --metrics (useful "
                  "with --metrics=all).")
flags.DEFINE_list("impls", ["sfda_jax", "torch", "numpy", "roofline"],
                  "Implementations to time; 'numpy' is the NumPy/scikit-learn "
                  "reference.")
flags.DEFINE_list("n", ["5000", "10000"], "Grid of samples N (SFDA, LogME and "
                  "the other non-NLEEP metrics). N <= D makes the within-class "
                  "scatter singular: SFDA's degenerate regime (scores ~1).")
flags.DEFINE_list("d", ["2048"], "Grid of feature dimensions D.")
flags.DEFINE_list("c", ["100"], "Grid of class counts C.")
flags.DEFINE_list("nleep_n", ["2000"], "Grid of N for NLEEP (an EM fit of "
                  "5 C full-covariance components is by far the slowest).")
flags.DEFINE_list("nleep_d", ["256"], "Grid of D for NLEEP.")
flags.DEFINE_list("nleep_c", ["10"], "Grid of C for NLEEP.")
flags.DEFINE_integer("z", 1000, "Source classes for LEEP / NCE.")
flags.DEFINE_integer("models_at_once", None, "M models of equal shape scored "
                     "at once (SFDA, LogME); default 11 on an accelerator, 3 "
                     "on CPU; 1 turns it off.")
flags.DEFINE_integer("repeats", 3, "Timed warm sfda_jax runs (median).")
flags.DEFINE_integer("nleep_repeats", 1, "Timed sfda_jax NLEEP runs.")
flags.DEFINE_integer("ref_repeats", 1, "Timed torch / NumPy runs (median).")
flags.DEFINE_float("max_reference_seconds", 300.0, "Skip (and record as "
                   "skipped) a torch/NumPy run estimated to take longer; a run "
                   "that took longer is not repeated. 0: no limit.")
flags.DEFINE_enum("torch_dtype", "float32", ["float32", "float64"],
                  "dtype of the torch baseline.")
flags.DEFINE_string("torch_device", None, "torch device (default: cuda if "
                    "torch sees one, else cpu).")
flags.DEFINE_bool("x64_check", True, "Also run sfda_jax in float64 (M=1) and "
                  "report its score difference from the reference.")
flags.DEFINE_bool("quick", False, "Small sizes for a smoke run (CI): one "
                  "grid point, M=2, one repeat.")
flags.DEFINE_integer("seed", 0, "Data seed.")
flags.DEFINE_integer("resamples", 32, "B of the resample suite.")
flags.DEFINE_string("output", None, "Write the results as JSON here.")

IMPLS = ("sfda_jax", "torch", "numpy", "roofline")
TORCH_METRICS = ("sfda", "logme")


def _models_at_once_applies(metric: str) -> bool:
  """Whether the M-models-at-once rows exist for ``metric``: every per-model
  feature metric but NLEEP (``score_models`` loops NLEEP's EM model by
  model: M x its single row)."""
  return (metric != "nleep"
          and registry.REGISTRY[metric].inputs == "features")


# ---------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True)
class Config:
  """Validated benchmark settings (see the flags for their meaning)."""
  suite: str
  metrics: tuple[str, ...]
  impls: tuple[str, ...]
  grid: tuple[tuple[int, int, int], ...]
  nleep_grid: tuple[tuple[int, int, int], ...]
  models_at_once: int
  repeats: int
  nleep_repeats: int
  ref_repeats: int
  max_reference_seconds: float
  torch_dtype: str
  torch_device: str | None
  x64_check: bool
  z: int
  seed: int
  extract_models: tuple[str, ...]
  batch_size: int
  extract_batches: int
  resamples: int = 32


def _ints(name: str, values: Sequence[str], minimum: int) -> list[int]:
  out = []
  for v in values:
    try:
      i = int(v)
    except ValueError:
      raise ValueError(f"--{name} takes integers, got {v!r}.") from None
    if i < minimum:
      raise ValueError(f"--{name} values must be >= {minimum}, got {i}.")
    out.append(i)
  if not out:
    raise ValueError(f"--{name} is empty.")
  return out


def _grid(prefix: str, n, d, c, min_per_class: int):
  grid = []
  for nn, dd, cc in itertools.product(_ints(prefix + "n", n, 2),
                                      _ints(prefix + "d", d, 1),
                                      _ints(prefix + "c", c, 2)):
    if nn < min_per_class * cc:
      raise ValueError(f"--{prefix}n={nn} is too small for --{prefix}c={cc}: "
                       f"need at least {min_per_class} samples per class.")
    grid.append((nn, dd, cc))
  # Ascending cost, so a reference's time can be extrapolated upwards.
  return tuple(sorted(set(grid), key=lambda s: (s[0] * s[1] ** 2, s)))


def config_from_flags(flag_values=FLAGS) -> Config:
  """Builds a :class:`Config` from the flags; ValueError on bad values."""
  f = flag_values
  timed = [m for m in registry.KNOWN_METRICS if m in registry.REGISTRY]
  requested = timed if list(f.metrics) == ["all"] else list(f.metrics)
  unknown = [m for m in [*requested, *f.skip_metrics] if m not in timed]
  if unknown:
    extra = (" (set-level metrics are timed by their parts: "
             f"{list(registry.expand(unknown))})"
             if set(unknown) & set(registry.SET_METRICS) else "")
    raise ValueError(f"unknown metric {unknown[0]!r}; valid: {timed}{extra}")
  requested = [m for m in requested if m not in f.skip_metrics]
  if not requested:
    raise ValueError("--metrics is empty" + (" after --skip_metrics."
                                             if f.skip_metrics else "."))
  bad = [i for i in f.impls if i not in IMPLS]
  if bad or not f.impls:
    raise ValueError(f"unknown impl {bad[0] if bad else ''!r}; valid: "
                     f"{list(IMPLS)}")
  if f.resamples < 2:
    raise ValueError(f"--resamples must be >= 2, got {f.resamples}.")
  for name in ("repeats", "nleep_repeats", "ref_repeats", "batch_size",
               "extract_batches", "z"):
    if getattr(f, name) < 1:
      raise ValueError(f"--{name} must be >= 1, got {getattr(f, name)}.")
  if f.models_at_once is not None and f.models_at_once < 1:
    raise ValueError(f"--models_at_once must be >= 1, got {f.models_at_once}.")
  if f.max_reference_seconds < 0:
    raise ValueError("--max_reference_seconds must be >= 0 (0: no limit).")
  models_at_once = f.models_at_once
  if models_at_once is None:
    models_at_once = 11 if jax.default_backend() != "cpu" else 3
  if f.quick:
    grid, nleep_grid = ((600, 64, 10),), ((400, 32, 4),)
    if f.models_at_once is None:
      models_at_once = 2
    repeats = ref_repeats = 1
  else:
    grid = _grid("", f.n, f.d, f.c, 2)
    # NLEEP fits 5 C mixture components: at least that many samples.
    nleep_grid = _grid("nleep_", f.nleep_n, f.nleep_d, f.nleep_c, 5)
    repeats, ref_repeats = f.repeats, f.ref_repeats
  return Config(
      suite=f.suite, metrics=tuple(dict.fromkeys(requested)),
      impls=tuple(dict.fromkeys(f.impls)), grid=grid, nleep_grid=nleep_grid,
      models_at_once=models_at_once, repeats=repeats,
      nleep_repeats=1 if f.quick else f.nleep_repeats,
      ref_repeats=ref_repeats, max_reference_seconds=f.max_reference_seconds,
      torch_dtype=f.torch_dtype, torch_device=f.torch_device,
      x64_check=f.x64_check, z=f.z, seed=f.seed,
      extract_models=tuple(f.extract_models),
      batch_size=4 if f.quick else f.batch_size,
      extract_batches=1 if f.quick else f.extract_batches,
      resamples=4 if f.quick else f.resamples)


# ---------------------------------------------------------------------------
# Data and timing


def make_data(n: int, d: int, c: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
  """Class-conditional features with a decaying spectrum, float32 ``[N, D]``."""
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(n) % c)
  rank = min(d, 256)
  mixing = rng.normal(size=(rank, d)).astype(np.float32) / np.sqrt(rank)
  spectrum = (1.0 / np.sqrt(1.0 + np.arange(rank))).astype(np.float32)
  means = rng.normal(size=(c, rank)).astype(np.float32) * spectrum * 0.3
  latent = means[labels] + rng.normal(size=(n, rank)).astype(np.float32) \
      * spectrum
  x = latent @ mixing + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
  return np.maximum(x + 0.5, 0.0).astype(np.float32), labels


def model_variants(x: np.ndarray, m: int, seed: int) -> list[np.ndarray]:
  """``m`` feature matrices of ``x``'s shape standing for ``m`` models.

  Model 0 is ``x``; the others permute and rescale its columns (same cost,
  different scores).
  """
  rng = np.random.default_rng(seed + 7)
  out = [x]
  for _ in range(1, m):
    perm = rng.permutation(x.shape[1])
    scale = rng.uniform(0.5, 1.5, size=x.shape[1]).astype(np.float32)
    out.append(np.ascontiguousarray(x[:, perm] * scale))
  return out


@dataclasses.dataclass
class Timing:
  seconds: float
  first_call_seconds: float | None
  repeats: int
  out: Any


def time_calls(fn: Callable[[], Any], repeats: int, warmup: bool,
               budget: float = 0.0) -> Timing:
  """Median wall time of ``repeats`` calls of ``fn`` (which must block).

  Args:
    fn: the call; returns a host value (so device work has finished).
    repeats: timed calls.
    warmup: make one untimed first call (compilation, library start-up) and
      report its time.
    budget: stop repeating once a call took longer than this (0: never).
  """
  first = None
  if warmup:
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
  times, out = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - start)
    if budget and times[-1] > budget:
      break
  return Timing(statistics.median(times), first, len(times), out)


def time_reference(fn: Callable[[], Any], repeats: int, warmup: bool,
                   budget: float) -> tuple[Timing | None, str | None]:
  """:func:`time_calls` for a baseline; a baseline that raises (e.g. a
  float32 Cholesky of a numerically singular scatter) gives ``(None, why)``:
  a result to record, not a reason to stop the benchmark."""
  try:
    return time_calls(fn, repeats, warmup, budget), None
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("baseline failed: %s", e)
    return None, f"failed: {type(e).__name__}: {str(e)[:300]}"


def _cost(metric: str, n: int, d: int, c: int) -> float:
  """Rough operation count, used only to extrapolate a reference's time."""
  if metric == "nleep":
    return float(n) * d * d * c
  if metric == "parc":
    return float(n) * n * np.log2(max(n, 2)) + n * d * d
  return float(n) * d * d + float(d) ** 3 + float(n) * d * c


class ReferenceBudget:
  """Decides whether a torch / NumPy run fits ``--max_reference_seconds``."""

  def __init__(self, limit: float):
    self.limit = limit
    self._last: dict[tuple[str, str], tuple[float, float]] = {}

  def estimate(self, metric: str, impl: str, n: int, d: int, c: int,
               m: int) -> float | None:
    last = self._last.get((metric, impl))
    if last is None:
      return None
    cost, seconds = last
    return seconds * _cost(metric, n, d, c) / cost * m

  def skip_reason(self, metric, impl, n, d, c, m) -> str | None:
    est = self.estimate(metric, impl, n, d, c, m)
    if self.limit and est is not None and est > self.limit:
      return (f"estimated {est:.0f} s > --max_reference_seconds="
              f"{self.limit:g}")
    return None

  def record(self, metric, impl, n, d, c, seconds):
    self._last[metric, impl] = (_cost(metric, n, d, c), seconds)


def _roofline_fn(batched: bool):
  def two_grams(a, b):
    hi = lax.Precision.HIGHEST
    return (jnp.matmul(a.T, a, precision=hi), jnp.matmul(b.T, b, precision=hi))
  return jax.jit(jax.vmap(two_grams) if batched else two_grams)


def _one_score(metric: str, seed: int) -> Callable[[Any, Any], float]:
  """``fn(features, labels)``: the registry's public function of a
  per-model feature metric (variants and set-level parts included) with
  ``score_models``' options."""
  spec = registry.REGISTRY[metric]
  options = ranking.metric_options({metric: spec}, seed)[metric]
  return lambda x, y: spec.fn(x, y, **options)


def _ours(metric: str, x, y, theta, z, seed):
  spec = registry.REGISTRY[metric]
  inputs = {"features": x, "source_probs": theta, "source_labels": z}[
      spec.inputs]
  options = dict(ranking.metric_options({metric: spec}, seed)[metric])
  if metric == "parc":   # same work as the reference: no subsampling
    options["max_samples"] = x.shape[0]
  return lambda: spec.fn(inputs, y, **options)


def _numpy(metric: str, x, y, theta, z, seed):
  if metric == "leep":
    return lambda: numpy_reference.leep(theta, y)
  if metric == "nce":
    return lambda: numpy_reference.nce(z, y)
  if metric == "nleep":
    return lambda: numpy_reference.nleep_sklearn(x, y, seed=seed)
  spec = registry.REGISTRY[metric]
  if spec.variant_of:           # the reference with the preset's options
    base = registry.REGISTRY[spec.variant_of]
    options = {k: v for k, v in spec.defaults.items()
               if v != base.defaults[k]}
    ref = (numpy_reference.sfda_score if spec.variant_of == "sfda"
           else getattr(numpy_reference, spec.variant_of))
    return lambda: ref(x, y, **options)
  if metric in _POST_SFDA_REFERENCES:
    ref = _POST_SFDA_REFERENCES[metric]
  else:
    ref = numpy_reference.sfda_score if metric == "sfda" else getattr(
        numpy_reference, metric)
  return functools.partial(ref, x, y, **_shared_defaults(metric, ref))


def _shared_defaults(metric: str, ref: Callable[..., Any]) -> dict:
  """The library's option defaults that ``ref`` also takes, so both sides
  compute the same quantity (GBC's reference defaults to no PCA, the
  library to 64 components)."""
  try:
    accepted = inspect.signature(ref).parameters
  except (TypeError, ValueError):      # a lambda over *args: nothing to pass
    return {}
  return {k: v for k, v in registry.REGISTRY[metric].defaults.items()
          if k in accepted}


#: The NumPy formulations of the metrics published since SFDA (the float64
#: references of ``sfda_jax.baselines``, written from the official code; k-NN
#: and INT in their official code's vectorised form, since their plain
#: references are per-sample Python loops).
_POST_SFDA_REFERENCES = {
    "knn": numpy_reference_knn.knn_vectorised,
    "inter_class_distance": numpy_reference_knn.inter_class_distance_cdist,
    "ped": numpy_reference_ped.ped,
    "etran_energy": numpy_reference_lda.etran_energy,
    "etran_lda": numpy_reference_lda.etran_lda,
    "ncti_seli": lambda x, y: numpy_reference_lda.ncti_parts(x, y)["seli"],
    "ncti_ncc": lambda x, y: numpy_reference_lda.ncti_parts(x, y)["ncc"],
    "ncti_vc": lambda x, y: numpy_reference_lda.ncti_parts(x, y)["vc"],
}


def _torch_fn(metric: str, xt, y, device, dtype):
  fn = torch_reference.sfda_score if metric == "sfda" else torch_reference.logme
  return lambda: fn(xt, y, device=device, dtype=dtype)


# ---------------------------------------------------------------------------
# Metrics suite


def _warm_up_references(cfg: Config, torch_ok: bool,
                        torch_device: str | None) -> None:
  """One tiny call of each reference: one-off start-up costs (lazy imports,
  library and device initialisation) stay out of every timed call."""
  # Just large enough for every reference (ETran's N >= 200, NCTI's 64
  # principal components).
  x, y = make_data(256, 72, 4, cfg.seed)
  if torch_ok:
    for metric in TORCH_METRICS:
      if metric in cfg.metrics:
        _torch_fn(metric, x, y, torch_device, cfg.torch_dtype)()
  if "numpy" in cfg.impls:
    for metric in cfg.metrics:
      if metric not in ("leep", "nce"):
        _numpy(metric, x, y, None, None, cfg.seed)()


def run_metrics_suite(cfg: Config,
                      on_progress: Callable[[list[dict]], None] | None = None
                      ) -> list[dict]:
  """Times every requested (metric, size, impl); returns the JSON rows.

  ``on_progress(rows_so_far)`` is called after each grid point (the entry
  point rewrites its JSON, so a run cut short keeps what it measured).
  """
  budget = ReferenceBudget(cfg.max_reference_seconds)
  torch_ok = "torch" in cfg.impls and torch_reference.available()
  if "torch" in cfg.impls and not torch_ok:
    logging.warning("torch is not installed: no torch rows (pip install -e "
                    "'.[baseline]').")
  torch_device = None
  if torch_ok:
    torch_device = cfg.torch_device or torch_reference.default_device()
  _warm_up_references(cfg, torch_ok, torch_device)
  results = []
  for metric in cfg.metrics:
    grid = cfg.nleep_grid if metric == "nleep" else cfg.grid
    for n, d, c in grid:
      results += _run_point(cfg, metric, n, d, c, budget, torch_ok,
                            torch_device)
      if on_progress is not None:
        on_progress(results)
  return results


def _run_point(cfg: Config, metric: str, n: int, d: int, c: int,
               budget: ReferenceBudget, torch_ok: bool,
               torch_device: str | None) -> list[dict]:
  x, y = make_data(n, d, c, cfg.seed)
  rng = np.random.default_rng(cfg.seed + 1)
  theta = z = None
  if metric in ("leep", "nce"):
    theta = rng.dirichlet(np.full(cfg.z, 0.1), size=n).astype(np.float32)
    z = rng.integers(0, cfg.z, size=n)
  base = {"suite": "metrics", "name": metric, "N": n, "D": d, "C": c}
  rows = []
  ref_impl = "sklearn" if metric == "nleep" else "numpy"
  logging.info("%s N=%d D=%d C=%d", metric, n, d, c)

  def add(impl, m, timing=None, **extra):
    row = dict(base, impl=impl, M=m, seconds=None, compile_seconds=None,
               first_call_seconds=None, repeats=0, score=None, skipped=None)
    if timing is not None:
      row.update(seconds=timing.seconds, repeats=timing.repeats,
                 first_call_seconds=timing.first_call_seconds)
    row.update(extra)
    rows.append(row)
    if row["skipped"]:
      logging.info("  %s M=%d: skipped (%s)", impl, m, row["skipped"])
    elif row["seconds"] is not None:
      logging.info("  %s M=%d %s: %.3f s", impl, m, row.get("batching"),
                   row["seconds"])
    return row

  # sfda_jax, one model, device-resident float32 features.
  xj = jax.block_until_ready(jnp.asarray(x))
  repeats = cfg.nleep_repeats if metric == "nleep" else cfg.repeats
  if "sfda_jax" in cfg.impls:
    t = time_calls(_ours(metric, xj, y, theta, z, cfg.seed), repeats, True)
    add("sfda_jax", 1, t, compile_seconds=max(t.first_call_seconds
                                              - t.seconds, 0.0),
        score=float(t.out), dtype="float32", batching="single")
    # NLEEP is stochastic (float32 and float64 draw different seedings): its
    # agreement with scikit-learn is statistical, not a difference.
    if cfg.x64_check and metric != "nleep":
      jax.config.update("jax_enable_x64", True)
      try:
        score64 = _ours(metric, x.astype(np.float64), y,
                        None if theta is None else theta.astype(np.float64),
                        z, cfg.seed)()
      finally:
        jax.config.update("jax_enable_x64", False)
      add("sfda_jax_x64", 1, None, score=float(score64), dtype="float64",
          batching="single")

  if "roofline" in cfg.impls and metric == "sfda":
    fn = _roofline_fn(False)
    xb = jax.block_until_ready(xj * 0.5 + 1.0)     # a second, distinct input
    t = time_calls(lambda: jax.block_until_ready(fn(xj, xb)), cfg.repeats,
                   True)
    add("roofline", 1, t, compile_seconds=max(t.first_call_seconds
                                              - t.seconds, 0.0),
        dtype="float32", batching="single",
        gflops_per_second=4.0 * n * d * d / t.seconds / 1e9)
    del xb

  xt = None
  if torch_ok and metric in TORCH_METRICS:
    import torch  # pylint: disable=g-import-not-at-top
    xt = torch.as_tensor(x, device=torch_device,
                         dtype=getattr(torch, cfg.torch_dtype))
    reason = budget.skip_reason(metric, "torch", n, d, c, 1)
    if reason:
      add("torch", 1, None, skipped=reason, dtype=cfg.torch_dtype,
          device=torch_device, batching="single")
    else:
      t, error = time_reference(
          _torch_fn(metric, xt, y, torch_device, cfg.torch_dtype),
          cfg.ref_repeats, torch_device != "cpu", cfg.max_reference_seconds)
      if t is None:
        add("torch", 1, None, skipped=error, dtype=cfg.torch_dtype,
            device=torch_device, batching="single")
      else:
        budget.record(metric, "torch", n, d, c, t.seconds)
        add("torch", 1, t, score=float(t.out), dtype=cfg.torch_dtype,
            device=torch_device, batching="single")
  elif "torch" in cfg.impls and torch_reference.available():
    add("torch", 1, None, batching="single", skipped=(
        "torch_reference.nleep is the scikit-learn path: see impl 'sklearn'"
        if metric == "nleep" else f"no torch baseline for {metric}"))

  if "numpy" in cfg.impls:
    reason = budget.skip_reason(metric, ref_impl, n, d, c, 1)
    if reason:
      add(ref_impl, 1, None, skipped=reason, dtype="float64",
          batching="single")
    else:
      t, error = time_reference(_numpy(metric, x, y, theta, z, cfg.seed),
                                cfg.ref_repeats, False,
                                cfg.max_reference_seconds)
      if t is None:
        add(ref_impl, 1, None, skipped=error, dtype="float64",
            batching="single")
      else:
        budget.record(metric, ref_impl, n, d, c, t.seconds)
        add(ref_impl, 1, t, score=float(t.out), dtype="float64",
            batching="single")

  m = cfg.models_at_once
  if m > 1 and _models_at_once_applies(metric):
    rows += _run_models_at_once(cfg, metric, x, y, m, base, budget, rows,
                                torch_ok, torch_device)
  _add_ratios(rows)
  return rows


def _run_models_at_once(cfg, metric, x, y, m, base, budget, single_rows,
                        torch_ok, torch_device) -> list[dict]:
  """M models of one shape: sfda_jax vmapped and looped, torch looped."""
  n, d = base["N"], base["D"]
  rows = []
  xs = model_variants(x, m, cfg.seed)

  def add(impl, batching, timing=None, **extra):
    row = dict(base, impl=impl, M=m, seconds=None, compile_seconds=None,
               first_call_seconds=None, repeats=0, score=None, skipped=None,
               batching=batching)
    if timing is not None:
      row.update(seconds=timing.seconds, repeats=timing.repeats,
                 first_call_seconds=timing.first_call_seconds)
    row.update(extra)
    rows.append(row)
    logging.info("  %s M=%d %s: %s", impl, m, batching,
                 row["skipped"] or f"{row['seconds']:.3f} s")

  if "sfda_jax" in cfg.impls:
    xjs = {f"model{i}": jax.block_until_ready(jnp.asarray(v))
           for i, v in enumerate(xs)}
    t = time_calls(lambda: sfda_jax.score_models(
        xjs, y, metrics=(metric,), seed=cfg.seed)[metric], cfg.repeats, True)
    add("sfda_jax", "vmap", t, compile_seconds=max(
        t.first_call_seconds - t.seconds, 0.0), score=t.out["model0"],
        scores=[t.out[k] for k in xjs], dtype="float32")
    # The single-model function with score_models' options (PARC keeps its
    # default subsample here, unlike the single row's no-subsample run).
    fn = _one_score(metric, cfg.seed)
    t = time_calls(lambda: [fn(v, y) for v in xjs.values()], cfg.repeats,
                   True)
    add("sfda_jax", "loop", t, compile_seconds=max(
        t.first_call_seconds - t.seconds, 0.0), score=t.out[0],
        scores=list(t.out), dtype="float32")
    del xjs

  if "roofline" in cfg.impls and metric == "sfda":
    a = jax.block_until_ready(jnp.stack([jnp.asarray(v) for v in xs]))
    b = jax.block_until_ready(a * 0.5 + 1.0)
    fn = _roofline_fn(True)
    t = time_calls(lambda: jax.block_until_ready(fn(a, b)), cfg.repeats, True)
    add("roofline", "vmap", t, compile_seconds=max(
        t.first_call_seconds - t.seconds, 0.0), dtype="float32",
        gflops_per_second=4.0 * m * n * d * d / t.seconds / 1e9)
    del a, b

  if torch_ok and metric in TORCH_METRICS:
    single = next((r for r in single_rows if r["impl"] == "torch"), None)
    reason = None
    if single is None or single["seconds"] is None:
      reason = "the single-model torch run was skipped"
    elif (cfg.max_reference_seconds
          and single["seconds"] * m > cfg.max_reference_seconds):
      reason = (f"estimated {single['seconds'] * m:.0f} s (M x the single "
                f"model) > --max_reference_seconds="
                f"{cfg.max_reference_seconds:g}")
    if reason:
      add("torch", "loop", None, skipped=reason, dtype=cfg.torch_dtype,
          device=torch_device)
    else:
      import torch  # pylint: disable=g-import-not-at-top
      tdtype = getattr(torch, cfg.torch_dtype)
      xts = [torch.as_tensor(v, device=torch_device, dtype=tdtype) for v in xs]
      fn = torch_reference.sfda_score if metric == "sfda" else \
          torch_reference.logme
      t, error = time_reference(
          lambda: [fn(v, y, device=torch_device, dtype=cfg.torch_dtype)
                   for v in xts], cfg.ref_repeats, False,
          cfg.max_reference_seconds)
      if t is None:
        add("torch", "loop", None, skipped=error, dtype=cfg.torch_dtype,
            device=torch_device)
      else:
        add("torch", "loop", t, score=t.out[0], scores=list(t.out),
            dtype=cfg.torch_dtype, device=torch_device)
      del xts

  if "numpy" in cfg.impls:
    add("numpy", "loop", None, dtype="float64", skipped=(
        "not run: M separate calls of the single-model NumPy reference "
        "(M x its M=1 row)"))
  return rows


def _add_ratios(rows: list[dict]) -> None:
  """Adds speed-ups (baseline / sfda_jax) and the roofline multiple
  (sfda_jax / roofline) to the sfda_jax rows of one grid point."""
  for m in sorted({r["M"] for r in rows}):
    at_m = [r for r in rows if r["M"] == m and r["seconds"]]
    ours = [r for r in at_m if r["impl"] == "sfda_jax"]
    # With M models the vmapped call is sfda_jax's answer; loop is reported.
    for r in ours:
      for other in at_m:
        if other["impl"] in ("torch", "numpy", "sklearn"):
          r[f"speedup_vs_{other['impl']}"] = other["seconds"] / r["seconds"]
        elif other["impl"] == "roofline":
          r["roofline_multiple"] = r["seconds"] / other["seconds"]
      loop = [o for o in ours if o.get("batching") == "loop"]
      if r.get("batching") == "vmap" and loop:
        r["speedup_vs_loop"] = loop[0]["seconds"] / r["seconds"]


def _fmt(value, spec: str, width: int) -> str:
  if value is None:
    return f"{'-':>{width}}"
  return f"{value:>{width}{spec}}"


def print_metrics_table(results: list[dict]) -> None:
  """One line per (metric, N, D, C, M): times, ratios and score errors."""
  keys = []
  for r in results:
    k = (r["name"], r["N"], r["D"], r["C"], r["M"])
    if k not in keys:
      keys.append(k)
  print(f"{'metric':<20}{'N':>7}{'D':>6}{'C':>5}{'M':>4} {'jax':<6}"
        f"{'sfda_jax s':>11}{'compile s':>10}{'torch s':>10}{'ref s':>10}"
        f"{'roof s':>9}{'x torch':>9}{'x ref':>8}{'x roof':>8}"
        f"{'|f32-ref|':>11}{'|x64-ref|':>11}{'|torch-ref|':>12}")
  for k in keys:
    rows = [r for r in results if (r["name"], r["N"], r["D"], r["C"],
                                   r["M"]) == k]
    by = {}
    for r in rows:
      by.setdefault(r["impl"], []).append(r)
    ref_rows = by.get("numpy", []) + by.get("sklearn", [])
    ref = next((r for r in ref_rows if r["seconds"]), None)
    if ref is None and k[4] > 1:   # M > 1: errors against the M=1 reference
      ref = next((r for r in results if r["impl"] in ("numpy", "sklearn")
                  and r["M"] == 1 and (r["name"], r["N"], r["D"], r["C"])
                  == k[:4] and r["seconds"]), None)

    def rel(row):
      if (row is None or ref is None or row.get("score") is None
          or ref["score"] is None or k[0] == "nleep"):
        return None
      return abs(row["score"] - ref["score"]) / max(abs(ref["score"]), 1e-12)

    torch_row = next(iter(by.get("torch", [])), None)
    roof = next(iter(by.get("roofline", [])), None)
    x64 = next(iter(by.get("sfda_jax_x64", [])), None)
    for ours in by.get("sfda_jax", []) or [None]:
      o = ours or {}
      ref_s = ref["seconds"] if ref and ref["M"] == k[4] else None
      print(f"{k[0]:<20}{k[1]:>7}{k[2]:>6}{k[3]:>5}{k[4]:>4} "
            f"{o.get('batching') or '-':<6}"
            f"{_fmt(o.get('seconds'), '.3f', 11)}"
            f"{_fmt(o.get('compile_seconds'), '.2f', 10)}"
            f"{_fmt(torch_row and torch_row['seconds'], '.3f', 10)}"
            f"{_fmt(ref_s, '.3f', 10)}"
            f"{_fmt(roof and roof['seconds'], '.3f', 9)}"
            f"{_fmt(o.get('speedup_vs_torch'), '.1f', 8)}x"
            f"{_fmt(o.get('speedup_vs_numpy', o.get('speedup_vs_sklearn')), '.1f', 7)}x"
            f"{_fmt(o.get('roofline_multiple'), '.2f', 7)}x"
            f"{_fmt(rel(ours), '.1e', 11)}{_fmt(rel(x64), '.1e', 11)}"
            f"{_fmt(rel(torch_row), '.1e', 12)}")
  skipped = [r for r in results if r["skipped"]]
  looped = [r for r in skipped if r["impl"] == "numpy" and r["M"] > 1]
  if looped:
    print(f"  numpy at M > 1: not run for {len(looped)} metric(s) (M x "
          "the M=1 row)")
  for r in skipped:
    if r in looped:
      continue
    print(f"  skipped: {r['name']} {r['impl']} N={r['N']} D={r['D']} "
          f"C={r['C']} M={r['M']}: {r['skipped']}")


# ---------------------------------------------------------------------------
# Extraction suite


def _torch_efficientnet(name: str, device: str):
  """The PyTorch baseline: efficientnet_lite_pytorch with the same .pth."""
  import torch  # pylint: disable=g-import-not-at-top
  from efficientnet_lite_pytorch import EfficientNet  # pylint: disable=g-import-not-at-top
  from sfda_jax.backbones import efficientnet_lite  # pylint: disable=g-import-not-at-top
  model = EfficientNet.from_pretrained(
      name.replace("_", "-"), weights_path=efficientnet_lite.weights_path(name))
  model.eval().to(device)

  def run(images_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
      x = torch.from_numpy(np.ascontiguousarray(
          images_nhwc.transpose(0, 3, 1, 2))).to(device)
      feats = model.extract_features(x).mean(dim=(2, 3))
      return feats.cpu().numpy(), model._fc(feats).cpu().numpy()  # pylint: disable=protected-access
  return run


def run_extract_suite(cfg: Config) -> list[dict]:
  """Images/s of one backbone in Flax (float32, bfloat16) and PyTorch."""
  from sfda_jax import backbones  # pylint: disable=g-import-not-at-top
  results = []
  for name in cfg.extract_models:
    rng = np.random.default_rng(cfg.seed)
    res = backbones.get(name, dtype="float32").preprocessing.image_size
    images = rng.normal(size=(cfg.batch_size, res, res, 3)).astype(np.float32)
    impls = {}
    for dtype, impl in (("float32", "flax"), ("bfloat16", "flax_bf16")):
      bb = backbones.get(name, dtype=dtype)
      impls[impl] = (lambda bb=bb: jax.block_until_ready(
          bb(jnp.asarray(images))), None)
    torch_device = None
    try:
      torch_device = cfg.torch_device or torch_reference.default_device()
      torch_run = _torch_efficientnet(name, torch_device)
      impls["torch"] = (lambda: torch_run(images), torch_device)
    except ImportError as e:
      logging.warning("PyTorch baseline unavailable (%s): install the "
                      "'baseline' extra.", e)
    reference_features = None
    for impl, (fn, device) in impls.items():
      t = time_calls(fn, cfg.extract_batches, True)
      feats = np.asarray(t.out[0], np.float32)
      if impl == "flax":
        reference_features = feats
      diff = float(np.max(np.abs(feats - reference_features)))
      logging.info("%s %s: %.1f img/s (max |features - flax f32| %.2e)",
                   name, impl, cfg.batch_size / t.seconds, diff)
      is_jax = impl.startswith("flax")
      results.append({
          "suite": "extract", "name": name, "impl": impl,
          "N": cfg.batch_size, "D": int(feats.shape[1]), "C": 0, "M": 1,
          "seconds": t.seconds, "repeats": t.repeats,
          "compile_seconds": (max(t.first_call_seconds - t.seconds, 0.0)
                              if is_jax else None),
          "first_call_seconds": t.first_call_seconds, "skipped": None,
          "images_per_second": cfg.batch_size / t.seconds,
          "max_abs_diff_vs_flax": diff, "resolution": res,
          "device": device or str(jax.devices()[0].platform)})
  return results


def print_extract_table(results: list[dict]) -> None:
  print(f"{'model':<22}{'impl':<11}{'px':>5}{'batch':>7}{'img/s':>9}"
        f"{'vs torch':>10}{'first call s':>14}{'max|dF|':>10}")
  torch_rate = {r["name"]: r["images_per_second"] for r in results
                if r["impl"] == "torch"}
  for r in results:
    ratio = (r["images_per_second"] / torch_rate[r["name"]]
             if r["name"] in torch_rate else float("nan"))
    print(f"{r['name']:<22}{r['impl']:<11}{r['resolution']:>5}{r['N']:>7}"
          f"{r['images_per_second']:>9.1f}{ratio:>9.2f}x"
          f"{r['first_call_seconds']:>14.2f}"
          f"{r['max_abs_diff_vs_flax']:>10.1e}")


# ---------------------------------------------------------------------------
# Finetune suite


def _torch_finetune_step(name: str, device: str, num_classes: int,
                         lr: float, wd: float):
  """One PyTorch training step of the same network: BN in eval mode
  (frozen statistics, affine parameters trained), a new head, SGD
  Nesterov momentum 0.9 with weight decay (L2 added to the gradient, as
  optax's add_decayed_weights before sgd)."""
  import torch  # pylint: disable=g-import-not-at-top
  from efficientnet_lite_pytorch import EfficientNet  # pylint: disable=g-import-not-at-top
  from sfda_jax.backbones import efficientnet_lite  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count() or 1)
  model = EfficientNet.from_pretrained(
      name.replace("_", "-"), weights_path=efficientnet_lite.weights_path(name))
  model.eval().to(device)
  head = torch.nn.Linear(model._fc.in_features, num_classes).to(device)  # pylint: disable=protected-access
  params = list(model.parameters()) + list(head.parameters())
  opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                        weight_decay=wd)

  def step(images_nhwc: np.ndarray, labels: np.ndarray) -> float:
    x = torch.from_numpy(np.ascontiguousarray(
        images_nhwc.transpose(0, 3, 1, 2))).to(device)
    y = torch.from_numpy(labels).to(device)
    opt.zero_grad(set_to_none=True)
    feats = model.extract_features(x).mean(dim=(2, 3))
    loss = torch.nn.functional.cross_entropy(head(feats), y)
    loss.backward()
    opt.step()
    return float(loss.detach().cpu())
  return step


def run_finetune_suite(cfg: Config) -> list[dict]:
  """Seconds per full fine-tuning step, Flax vs PyTorch, same weights."""
  from sfda_jax import backbones, finetune  # pylint: disable=g-import-not-at-top
  results = []
  size, bs, k = FLAGS.finetune_image_size, cfg.batch_size, 10
  for flag in ("finetune_image_size", "finetune_steps"):
    if getattr(FLAGS, flag) < 1:
      raise ValueError(f"--{flag} must be >= 1, got {getattr(FLAGS, flag)}.")
  for name in cfg.extract_models:
    rng = np.random.default_rng(cfg.seed)
    images = rng.normal(size=(bs, size, size, 3)).astype(np.float32)
    labels = (np.arange(bs) % k).astype(np.int64)
    bb = backbones.resized(backbones.get(name, dtype="float32"), size)
    rows = {}
    config = finetune.FinetuneConfig(steps=1000, batch_size=bs)
    step, _, state = finetune.training_step(bb, k, config)
    box = [state]

    def flax_step():
      box[0], loss = step(box[0], images, labels)
      return float(loss)
    t = time_calls(flax_step, FLAGS.finetune_steps, True)
    # A second run (another learning rate) reuses the compiled step.
    step2, _, state2 = finetune.training_step(
        bb, k, dataclasses.replace(config, learning_rate=0.003))
    start = time.perf_counter()
    float(step2(state2, images, labels)[1])
    rows["flax"] = (t, time.perf_counter() - start)
    try:
      device = cfg.torch_device or torch_reference.default_device()
      torch_step = _torch_finetune_step(name, device, k, config.learning_rate,
                                        config.weight_decay)
      rows["torch"] = (time_calls(lambda: torch_step(images, labels),
                                  FLAGS.finetune_steps, True), None)
    except ImportError as e:
      logging.warning("PyTorch baseline unavailable (%s): install the "
                      "'baseline' extra.", e)
    for impl, (timing, second_run_first_step) in rows.items():
      results.append({
          "suite": "finetune", "name": name, "impl": impl, "N": bs,
          "D": bb.feature_dim, "C": k, "M": 1, "resolution": size,
          "seconds": timing.seconds, "repeats": timing.repeats,
          "first_call_seconds": timing.first_call_seconds,
          "compile_seconds": (max(timing.first_call_seconds - timing.seconds,
                                  0.0) if impl == "flax" else None),
          "second_run_first_step_seconds": second_run_first_step})
      logging.info("finetune %s %s: %.3f s/step", name, impl, timing.seconds)
  return results


def print_finetune_table(results: list[dict]) -> None:
  print(f"{'model':<22}{'impl':<7}{'px':>5}{'batch':>7}{'s/step':>9}"
        f"{'torch / this':>14}{'first step s':>14}{'2nd run 1st':>13}")
  torch_s = {r["name"]: r["seconds"] for r in results if r["impl"] == "torch"}
  for r in results:
    ratio = torch_s.get(r["name"], float("nan")) / r["seconds"]
    second = r["second_run_first_step_seconds"]
    print(f"{r['name']:<22}{r['impl']:<7}{r['resolution']:>5}{r['N']:>7}"
          f"{r['seconds']:>9.3f}{ratio:>13.2f}x"
          f"{r['first_call_seconds']:>14.2f}"
          + (f"{second:>13.2f}" if second is not None else f"{'':>13}"))


# ---------------------------------------------------------------------------
# Entry point


# ---------------------------------------------------------------------------
# Resample suite


def run_resample_suite(cfg: Config,
                       on_progress: Callable[[list[dict]], None] | None = None
                       ) -> list[dict]:
  """``sfda_jax.resample_scores`` (B resamples of 0.8 N, plus the full-data
  score it also computes) against B x one full-data score, both warm, in
  the same run, for every per-model feature metric of ``--metrics``
  (variants and set-level parts included; LEEP/NCE take no features).
  Issue 8's target: ratio <= 1.2. ``on_progress(rows_so_far)`` after each
  metric and size."""
  rows = []
  skipped = [m for m in cfg.metrics
             if registry.REGISTRY[m].inputs != "features"]
  if skipped:
    logging.info("resample suite: %s take no features, not resampled",
                 skipped)
  metrics = [m for m in cfg.metrics if m not in skipped]
  for metric in metrics:
    for n, d, c in (cfg.nleep_grid if metric == "nleep" else cfg.grid):
      x, y = make_data(n, d, c, cfg.seed)
      fn = _one_score(metric, cfg.seed)
      one = time_calls(lambda: fn(x, y), cfg.repeats, warmup=True)
      res = time_calls(lambda: sfda_jax.resample_scores(
          {"m": x}, y, metrics=(metric,), resamples=cfg.resamples,
          seed=cfg.seed), cfg.repeats, warmup=True)
      ratio = res.seconds / (cfg.resamples * one.seconds)
      rows.append({"suite": "resample", "name": metric, "impl": "sfda_jax",
                   "N": n, "D": d, "C": c, "B": cfg.resamples,
                   "fraction": 0.8, "seconds": res.seconds,
                   "compile_seconds": res.first_call_seconds - res.seconds,
                   "one_score_seconds": one.seconds,
                   "ratio_to_B_scores": ratio})
      logging.info("resample %s N=%d D=%d C=%d: %.3f s vs B x %.4f s "
                   "(ratio %.2f)", metric, n, d, c, res.seconds,
                   one.seconds, ratio)
      if on_progress is not None:
        on_progress(rows)
  return rows


def print_resample_table(results: list[dict]) -> None:
  print(f"{'metric':<20}{'N':>7}{'D':>6}{'C':>5}{'B':>4}{'one score s':>13}"
        f"{'resampled s':>13}{'/ (B x one)':>13}")
  for r in results:
    print(f"{r['name']:<20}{r['N']:>7}{r['D']:>6}{r['C']:>5}{r['B']:>4}"
          f"{r['one_score_seconds']:>13.4f}{r['seconds']:>13.3f}"
          f"{r['ratio_to_B_scores']:>13.2f}")


def versions() -> dict[str, object]:
  """:func:`sfda_jax.environment.record` with the baselines' packages."""
  out = environment.record(("flax", "sklearn", "torch"))
  if "torch" in out:
    import torch  # pylint: disable=g-import-not-at-top
    out["torch_cuda"] = torch.version.cuda
  return out


def device_description() -> str:
  dev = jax.devices()[0]
  return (f"{dev.device_kind} ({jax.default_backend()}), {os.cpu_count()} "
          f"CPUs, {environment.cpu_model()}")


def main(argv):
  del argv
  cfg = config_from_flags()
  if FLAGS.output:   # fail before the long work, not after
    atomic.check_writable_dir(os.path.dirname(os.path.abspath(FLAGS.output)),
                              "--output directory")
  device = device_description()
  logging.info("config: %s", cfg)
  print(f"device: {device}")
  header = {"device": device, "versions": versions(),
            "config": dataclasses.asdict(cfg)}

  def write(rows: list[dict], complete: bool) -> None:
    if FLAGS.output:
      atomic.write_bytes(FLAGS.output, json.dumps(
          dict(header, complete=complete, results=rows), indent=1).encode())

  results = []
  if cfg.suite in ("metrics", "all"):
    metric_rows = run_metrics_suite(cfg, lambda rows: write(rows, False))
    print_metrics_table(metric_rows)
    results += metric_rows
  if cfg.suite in ("extract", "all"):
    extract_rows = run_extract_suite(cfg)
    print_extract_table(extract_rows)
    results += extract_rows
  if cfg.suite in ("resample", "all"):
    resample_rows = run_resample_suite(
        cfg, lambda rows: write(results + rows, False))
    print_resample_table(resample_rows)
    results += resample_rows
  if cfg.suite in ("finetune", "all"):
    finetune_rows = run_finetune_suite(cfg)
    print_finetune_table(finetune_rows)
    results += finetune_rows
  write(results, True)


if __name__ == "__main__":
  _cli.run(main)
