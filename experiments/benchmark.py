r"""Benchmark sfda_jax's metric kernels against the float64 NumPy reference.

Times every metric on synthetic class-conditional features in one run on one
machine, so the printed ratios are measured against a baseline under the same
load. sfda_jax is timed jitted and warm (median of ``--repeats``; the first,
compiling call is reported separately); the reference is the float64 NumPy
code of ``sfda_jax.baselines.numpy_reference`` (the published algorithms:
per-class covariance loop and generalized eigen-solve for SFDA, scikit-learn
PCA + GaussianMixture for NLEEP). With ``--x64_check`` sfda_jax is also run
in float64 and its score difference from the reference is printed.

  python -m experiments.benchmark --suite=metrics
  python -m experiments.benchmark --suite=metrics --quick
  python -m experiments.benchmark --metrics=sfda,logme --n=10000 --d=2048 \
      --c=100 --output=/tmp/bench.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import Callable

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

import sfda_jax
from sfda_jax import atomic
from sfda_jax.baselines import numpy_reference

FLAGS = flags.FLAGS
flags.DEFINE_enum("suite", "metrics", ["metrics", "extract", "all"],
                  "metrics: metric kernels vs the NumPy reference; extract: "
                  "images/s of Flax vs PyTorch for the same weights.")
flags.DEFINE_list("extract_models", ["efficientnet_lite0"],
                  "Offline-zoo backbones for the extraction suite.")
flags.DEFINE_integer("batch_size", 32, "Images per batch (extraction).")
flags.DEFINE_integer("extract_batches", 5, "Timed batches per implementation.")
flags.DEFINE_list("metrics", ["sfda", "logme", "nleep", "hscore",
                              "regularized_hscore", "gbc", "transrate", "parc",
                              "leep", "nce"], "Metrics to time.")
flags.DEFINE_integer("n", 10000, "Samples N.")
flags.DEFINE_integer("d", 2048, "Feature dimension D.")
flags.DEFINE_integer("c", 100, "Classes C.")
flags.DEFINE_integer("nleep_c", 10, "Classes for NLEEP (5 C mixture "
                     "components make it the slowest metric).")
flags.DEFINE_integer("z", 1000, "Source classes for LEEP / NCE.")
flags.DEFINE_integer("repeats", 3, "Timed sfda_jax runs (median).")
flags.DEFINE_integer("nleep_repeats", 1, "Timed sfda_jax NLEEP runs (each "
                     "is a full PCA + k-means + EM fit; minutes at full size).")
flags.DEFINE_integer("ref_repeats", 1, "Timed reference runs (median).")
flags.DEFINE_bool("x64_check", True, "Also run sfda_jax in float64 and "
                  "print |score - reference|.")
flags.DEFINE_bool("quick", False, "Small sizes for a smoke run (CI).")
flags.DEFINE_integer("seed", 0, "Data seed.")
flags.DEFINE_string("output", None, "Write the results as JSON here.")


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


def _median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
  times, out = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), out


def _calls(metric: str, x, y, theta, z, seed):
  """(sfda_jax call, reference call) for one metric."""
  if metric == "leep":
    return (lambda: sfda_jax.leep(theta, y),
            lambda: numpy_reference.leep(theta, y))
  if metric == "nce":
    return (lambda: sfda_jax.nce(z, y), lambda: numpy_reference.nce(z, y))
  if metric == "nleep":
    return (lambda: sfda_jax.nleep(x, y, seed=seed),
            lambda: numpy_reference.nleep_sklearn(x, y, seed=seed))
  if metric == "parc":   # same work on both sides: no subsampling
    return (lambda: sfda_jax.parc(x, y, max_samples=x.shape[0]),
            lambda: numpy_reference.parc(x, y))
  ref = numpy_reference.sfda_score if metric == "sfda" else getattr(
      numpy_reference, metric)
  return (lambda: getattr(sfda_jax, metric)(x, y), lambda: ref(x, y))


def run_metrics_suite() -> list[dict]:
  n, d, c = (FLAGS.n, FLAGS.d, FLAGS.c)
  nleep_c = FLAGS.nleep_c
  if FLAGS.quick:
    n, d, c, nleep_c = 600, 64, 10, 4
  rng = np.random.default_rng(FLAGS.seed + 1)
  results = []
  for metric in FLAGS.metrics:
    mc = nleep_c if metric == "nleep" else c
    x, y = make_data(n, d, mc, FLAGS.seed)
    theta = rng.dirichlet(np.full(FLAGS.z, 0.1), size=n).astype(np.float32)
    z = rng.integers(0, FLAGS.z, size=n)
    ours, ref = _calls(metric, x, y, theta, z, FLAGS.seed)
    start = time.perf_counter()
    ours()
    first = time.perf_counter() - start
    repeats = FLAGS.nleep_repeats if metric == "nleep" else FLAGS.repeats
    t_ours, score = _median_time(ours, repeats)
    logging.info("%s: sfda_jax %.3f s (first call %.2f s)", metric, t_ours,
                 first)
    t_ref, ref_score = _median_time(ref, FLAGS.ref_repeats)
    logging.info("%s: reference %.3f s", metric, t_ref)
    row = {"suite": "metrics", "name": metric, "N": n, "D": d, "C": mc, "M": 1}
    results.append(dict(row, impl="sfda_jax", seconds=t_ours,
                        compile_seconds=max(first - t_ours, 0.0),
                        score=float(score), dtype="float32"))
    results.append(dict(row, impl="numpy", seconds=t_ref,
                        compile_seconds=0.0, score=float(ref_score),
                        dtype="float64"))
    # NLEEP is stochastic (float32 and float64 draw different seedings): its
    # agreement with scikit-learn is a statistical test, not a difference.
    if FLAGS.x64_check and metric != "nleep":
      jax.config.update("jax_enable_x64", True)
      try:
        x64 = x.astype(np.float64)
        ours64, _ = _calls(metric, x64, y, theta.astype(np.float64), z,
                           FLAGS.seed)
        score64 = ours64()
      finally:
        jax.config.update("jax_enable_x64", False)
      results.append(dict(row, impl="sfda_jax_x64", seconds=None,
                          compile_seconds=None, score=float(score64),
                          dtype="float64"))
  return results


def _torch_efficientnet(name: str):
  """The PyTorch baseline: efficientnet_lite_pytorch with the same .pth."""
  import torch
  from efficientnet_lite_pytorch import EfficientNet
  from sfda_jax.backbones import efficientnet_lite
  model = EfficientNet.from_pretrained(
      name.replace("_", "-"), weights_path=efficientnet_lite.weights_path(name))
  model.eval()

  def run(images_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
      x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1,
                                                                      2)))
      feats = model.extract_features(x).mean(dim=(2, 3))
      return feats.numpy(), model._fc(feats).numpy()
  return run


def run_extract_suite() -> list[dict]:
  """Images/s of one backbone in Flax (float32, bfloat16) and PyTorch."""
  from sfda_jax import backbones
  results = []
  batches = 1 if FLAGS.quick else FLAGS.extract_batches
  batch_size = 4 if FLAGS.quick else FLAGS.batch_size
  for name in FLAGS.extract_models:
    rng = np.random.default_rng(FLAGS.seed)
    res = backbones.get(name, dtype="float32").preprocessing.image_size
    images = rng.normal(size=(batch_size, res, res, 3)).astype(np.float32)
    impls = {}
    for dtype, impl in (("float32", "flax"), ("bfloat16", "flax_bf16")):
      bb = backbones.get(name, dtype=dtype)
      impls[impl] = (lambda bb=bb: jax.block_until_ready(
          bb(jax.numpy.asarray(images))), bb)
    try:
      torch_run = _torch_efficientnet(name)
      impls["torch"] = (lambda: torch_run(images), None)
    except ImportError as e:
      logging.warning("PyTorch baseline unavailable (%s): install the "
                      "'baseline' extra.", e)
    reference_features = None
    for impl, (fn, _) in impls.items():
      start = time.perf_counter()
      out = fn()
      first = time.perf_counter() - start
      seconds, out = _median_time(fn, batches)
      feats = np.asarray(out[0], np.float32)
      if impl == "flax":
        reference_features = feats
      diff = float(np.max(np.abs(feats - reference_features)))
      logging.info("%s %s: %.1f img/s (max |features - flax f32| %.2e)",
                   name, impl, batch_size / seconds, diff)
      results.append({"suite": "extract", "name": name, "impl": impl,
                      "N": batch_size, "D": int(feats.shape[1]), "C": 0,
                      "M": 1, "seconds": seconds,
                      "compile_seconds": max(first - seconds, 0.0),
                      "images_per_second": batch_size / seconds,
                      "max_abs_diff_vs_flax": diff, "resolution": res})
  return results


def print_extract_table(results: list[dict]) -> None:
  print(f"{'model':<22}{'impl':<11}{'px':>5}{'batch':>7}{'img/s':>9}"
        f"{'vs torch':>10}{'compile s':>11}{'max|dF|':>10}")
  torch_rate = {r["name"]: r["images_per_second"] for r in results
                if r["impl"] == "torch"}
  for r in results:
    ratio = (r["images_per_second"] / torch_rate[r["name"]]
             if r["name"] in torch_rate else float("nan"))
    print(f"{r['name']:<22}{r['impl']:<11}{r['resolution']:>5}{r['N']:>7}"
          f"{r['images_per_second']:>9.1f}{ratio:>9.2f}x"
          f"{r['compile_seconds']:>11.2f}{r['max_abs_diff_vs_flax']:>10.1e}")


def print_table(results: list[dict]) -> None:
  by_metric: dict[str, dict[str, dict]] = {}
  for r in results:
    by_metric.setdefault(r["name"], {})[r["impl"]] = r
  print(f"{'metric':<20}{'N':>7}{'D':>6}{'C':>5}{'sfda_jax s':>12}"
        f"{'compile s':>11}{'numpy f64 s':>13}{'speed-up':>10}"
        f"{'|f32-ref| rel':>15}{'|x64-ref| rel':>15}")
  for name, rows in by_metric.items():
    ours, ref = rows["sfda_jax"], rows["numpy"]
    scale = max(abs(ref["score"]), 1e-12)
    err32 = abs(ours["score"] - ref["score"]) / scale
    err64 = (abs(rows["sfda_jax_x64"]["score"] - ref["score"]) / scale
             if "sfda_jax_x64" in rows else float("nan"))
    print(f"{name:<20}{ours['N']:>7}{ours['D']:>6}{ours['C']:>5}"
          f"{ours['seconds']:>12.3f}{ours['compile_seconds']:>11.2f}"
          f"{ref['seconds']:>13.3f}{ref['seconds'] / ours['seconds']:>9.1f}x"
          f"{err32:>15.2e}{err64:>15.2e}")


def versions() -> dict[str, str]:
  import flax
  import scipy
  return {"python": platform.python_version(), "jax": jax.__version__,
          "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__")
          else jax.__version__, "flax": flax.__version__,
          "numpy": np.__version__, "scipy": scipy.__version__,
          "sfda_jax": sfda_jax.__version__}


def main(argv):
  del argv
  unknown = [m for m in FLAGS.metrics if m not in sfda_jax.ALL_METRICS]
  if unknown:
    raise app.UsageError(f"unknown metric {unknown[0]!r}; valid: "
                         f"{list(sfda_jax.ALL_METRICS)}")
  if FLAGS.output:   # fail before the long work, not after
    directory = os.path.dirname(os.path.abspath(FLAGS.output))
    os.makedirs(directory, exist_ok=True)
    if not os.access(directory, os.W_OK):
      raise app.UsageError(f"--output directory {directory} is not writable")
  device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}), " \
           f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
  results = []
  print(f"device: {device}")
  if FLAGS.suite in ("metrics", "all"):
    metric_rows = run_metrics_suite()
    print_table(metric_rows)
    results += metric_rows
  if FLAGS.suite in ("extract", "all"):
    extract_rows = run_extract_suite()
    print_extract_table(extract_rows)
    results += extract_rows
  if FLAGS.output:
    atomic.write_bytes(FLAGS.output, json.dumps(
        {"device": device, "versions": versions(), "results": results},
        indent=1).encode())


if __name__ == "__main__":
  app.run(main)
