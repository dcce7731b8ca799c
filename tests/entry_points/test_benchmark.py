"""The benchmark's small setting runs end to end and writes its JSON."""

import json
import math
import os

from absl import flags
from absl.testing import flagsaver
import pytest

from conftest import REPO_ROOT, run_entry_point
from experiments import benchmark
from sfda_jax.baselines import torch_reference

ROW_KEYS = {"suite", "name", "impl", "N", "D", "C", "M", "seconds",
            "compile_seconds", "skipped"}


def _finite_positive(v):
  return isinstance(v, float) and math.isfinite(v) and v > 0


@pytest.mark.slow
def test_quick_metrics_benchmark_writes_json(tmp_path):
  out = tmp_path / "bench.json"
  proc = run_entry_point(
      ["experiments.benchmark", "--quick", "--suite=metrics",
       "--metrics=sfda,logme,nleep,leep", f"--output={out}"], REPO_ROOT,
      timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "x torch" in proc.stdout and "sfda" in proc.stdout
  payload = json.loads(out.read_text())
  assert {"device", "versions", "results"} <= set(payload)
  assert payload["complete"] is True
  rows = payload["results"]
  for row in rows:
    assert ROW_KEYS <= set(row), row
    assert row["suite"] == "metrics"
    assert row["skipped"] or row["impl"] == "sfda_jax_x64" or \
        _finite_positive(row["seconds"]), row
    if row["skipped"]:
      assert row["seconds"] is None
  impls = {(r["name"], r["impl"], r["M"]) for r in rows if not r["skipped"]}
  expected = {("sfda", "sfda_jax", 1), ("sfda", "numpy", 1),
              ("sfda", "roofline", 1), ("sfda", "sfda_jax", 2),
              ("sfda", "roofline", 2), ("logme", "sfda_jax", 1),
              ("logme", "numpy", 1), ("logme", "sfda_jax", 2),
              ("nleep", "sfda_jax", 1), ("nleep", "sklearn", 1),
              ("leep", "sfda_jax", 1), ("leep", "numpy", 1)}
  if torch_reference.available():
    expected |= {("sfda", "torch", 1), ("logme", "torch", 1),
                 ("sfda", "torch", 2), ("logme", "torch", 2)}
  assert expected <= impls, expected - impls
  # The M-model NumPy loop is not run, and says so.
  assert any(r["impl"] == "numpy" and r["M"] == 2 and r["skipped"]
             for r in rows)

  ours = {(r["name"], r["M"], r["batching"]): r for r in rows
          if r["impl"] == "sfda_jax"}
  for name in ("sfda", "logme"):
    single = ours[name, 1, "single"]
    assert _finite_positive(single["speedup_vs_numpy"])
    assert single["compile_seconds"] >= 0
    vmapped = ours[name, 2, "vmap"]
    assert _finite_positive(vmapped["speedup_vs_loop"])
    # vmapped, looped and single scores agree; model 0 is the single model
    assert abs(vmapped["scores"][0] - single["score"]) <= 1e-4
    assert vmapped["scores"] == pytest.approx(
        ours[name, 2, "loop"]["scores"], rel=1e-4)
    if torch_reference.available():
      assert _finite_positive(single["speedup_vs_torch"])
      torch_row = next(r for r in rows if r["impl"] == "torch"
                       and r["name"] == name and r["M"] == 1)
      assert torch_row["score"] == pytest.approx(single["score"], rel=1e-4)
  assert _finite_positive(ours["sfda", 1, "single"]["roofline_multiple"])
  assert _finite_positive(ours["sfda", 2, "vmap"]["roofline_multiple"])
  assert _finite_positive(ours["nleep", 1, "single"]["speedup_vs_sklearn"])
  sfda = {r["impl"]: r["score"] for r in rows
          if r["name"] == "sfda" and r["M"] == 1}
  assert abs(sfda["sfda_jax_x64"] - sfda["numpy"]) <= 1e-6 * abs(sfda["numpy"])
  # atomic write: nothing but the result (no temp file) in the directory
  assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]


@pytest.mark.slow
def test_quick_extract_benchmark_folds_into_json(tmp_path):
  out = tmp_path / "bench.json"
  proc = run_entry_point(
      ["experiments.benchmark", "--quick", "--suite=extract",
       f"--output={out}"], REPO_ROOT, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = json.loads(out.read_text())["results"]
  impls = {r["impl"] for r in rows}
  assert {"flax", "flax_bf16"} <= impls
  if torch_reference.available():
    assert "torch" in impls
  for row in rows:
    assert ROW_KEYS <= set(row)
    assert row["suite"] == "extract" and row["name"] == "efficientnet_lite0"
    assert _finite_positive(row["images_per_second"])
    assert row["max_abs_diff_vs_flax"] < (0.5 if row["impl"] == "flax_bf16"
                                          else 1e-3)


@pytest.mark.slow
def test_unknown_metric_is_an_error(tmp_path):
  proc = run_entry_point(
      ["experiments.benchmark", "--quick", "--metrics=nope"], REPO_ROOT)
  assert proc.returncode != 0
  assert "unknown metric 'nope'" in proc.stderr


@pytest.fixture
def parsed_flags():
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(["benchmark"])
  with flagsaver.flagsaver():
    yield


@pytest.mark.parametrize("overrides,message", [
    ({"n": ["abc"]}, "--n takes integers"),
    ({"n": ["10"], "c": ["10"]}, "too small"),
    ({"nleep_n": ["20"], "nleep_c": ["10"]}, "too small"),
    ({"d": ["0"]}, "--d values must be >= 1"),
    ({"models_at_once": 0}, "--models_at_once"),
    ({"repeats": 0}, "--repeats"),
    ({"impls": ["jax"]}, "unknown impl 'jax'"),
    ({"max_reference_seconds": -1.0}, "max_reference_seconds"),
    ({"skip_metrics": ["nope"]}, "unknown metric 'nope'"),
    ({"metrics": ["sfda"], "skip_metrics": ["sfda"]},
     "empty after --skip_metrics"),
])
def test_bad_flags_raise_value_error(parsed_flags, overrides, message):
  del parsed_flags
  for name, value in overrides.items():
    setattr(flags.FLAGS, name, value)
  with pytest.raises(ValueError, match=message):
    benchmark.config_from_flags()


def test_metrics_all_is_every_registry_metric_less_the_skipped(parsed_flags):
  del parsed_flags
  from sfda_jax.metrics import registry  # pylint: disable=g-import-not-at-top
  flags.FLAGS.metrics = ["all"]
  flags.FLAGS.skip_metrics = ["nleep", "leep"]
  cfg = benchmark.config_from_flags()
  assert set(cfg.metrics) == set(registry.REGISTRY) - {"nleep", "leep"}
  assert cfg.metrics[:2] == ("sfda", "logme")      # the registry's order


def test_references_get_the_library_option_defaults():
  """GBC's reference defaults to no PCA; the benchmark passes the library's
  64 components, so both sides compute the same number."""
  from sfda_jax.baselines import numpy_reference  # pylint: disable=g-import-not-at-top
  x, y = benchmark.make_data(400, 96, 4, 0)
  ours = float(benchmark._ours("gbc", x, y, None, None, 0)())  # pylint: disable=protected-access
  ref = benchmark._numpy("gbc", x, y, None, None, 0)()  # pylint: disable=protected-access
  assert ref == pytest.approx(ours, rel=1e-4)
  assert numpy_reference.gbc(x, y) != pytest.approx(ours, rel=1e-2)


def test_grid_is_a_sorted_product(parsed_flags):
  del parsed_flags
  flags.FLAGS.n = ["5000", "1000"]
  flags.FLAGS.d = ["64", "2048"]
  flags.FLAGS.c = ["10"]
  flags.FLAGS.models_at_once = 4
  cfg = benchmark.config_from_flags()
  assert cfg.grid == ((1000, 64, 10), (5000, 64, 10), (1000, 2048, 10),
                      (5000, 2048, 10))
  assert cfg.models_at_once == 4


def test_a_failing_baseline_is_recorded_not_fatal():
  def boom():
    raise RuntimeError("linalg.cholesky: not positive-definite")
  timing, why = benchmark.time_reference(boom, 1, False, 0.0)
  assert timing is None and "not positive-definite" in why
  timing, why = benchmark.time_reference(lambda: 1.5, 2, True, 0.0)
  assert why is None and timing.out == 1.5 and timing.repeats == 2


def test_reference_budget_extrapolates_and_skips():
  budget = benchmark.ReferenceBudget(limit=10.0)
  assert budget.skip_reason("sfda", "numpy", 1000, 64, 10, 1) is None
  budget.record("sfda", "numpy", 1000, 512, 10, seconds=2.0)
  assert budget.skip_reason("sfda", "numpy", 2000, 512, 10, 1) is None
  reason = budget.skip_reason("sfda", "numpy", 10000, 2048, 10, 1)
  assert reason and "max_reference_seconds" in reason
  assert benchmark.ReferenceBudget(0.0).skip_reason(
      "sfda", "numpy", 10 ** 6, 4096, 10, 1) is None


def test_resample_suite_measures_the_ratio(parsed_flags):
  del parsed_flags
  flags.FLAGS.quick = True
  flags.FLAGS.metrics = ["sfda"]
  cfg = benchmark.config_from_flags()
  assert cfg.resamples == 4
  (row,) = benchmark.run_resample_suite(cfg)
  assert row["suite"] == "resample" and row["B"] == 4
  assert _finite_positive(row["seconds"]) and _finite_positive(
      row["one_score_seconds"])
  assert row["ratio_to_B_scores"] == pytest.approx(
      row["seconds"] / (4 * row["one_score_seconds"]))
  flags.FLAGS.resamples = 1
  flags.FLAGS.quick = False
  with pytest.raises(ValueError, match="--resamples must be >= 2"):
    benchmark.config_from_flags()


@pytest.mark.slow
def test_finetune_suite_times_flax_against_torch(parsed_flags):
  del parsed_flags
  flags.FLAGS.finetune_image_size = 32
  flags.FLAGS.finetune_steps = 1
  flags.FLAGS.batch_size = 4
  cfg = benchmark.config_from_flags()
  rows = benchmark.run_finetune_suite(cfg)
  impls = {r["impl"]: r for r in rows}
  assert "flax" in impls
  if torch_reference.available():
    assert "torch" in impls
  flax = impls["flax"]
  assert flax["suite"] == "finetune" and flax["resolution"] == 32
  assert _finite_positive(flax["seconds"])
  # The second run's first step reuses the compilation of the first run.
  assert flax["second_run_first_step_seconds"] < flax["first_call_seconds"]
  benchmark.print_finetune_table(rows)
  flags.FLAGS.finetune_steps = 0
  with pytest.raises(ValueError, match="--finetune_steps must be >= 1"):
    benchmark.run_finetune_suite(cfg)


@pytest.mark.slow
def test_gpu_check_quick_runs_every_part_end_to_end(tmp_path):
  """``GPU_CHECK_QUICK=1 experiments/gpu_check.sh`` on the CPU: every part
  completes, every registry metric has a row, one merged JSON is left."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from sfda_jax.metrics import registry  # pylint: disable=g-import-not-at-top
  out = tmp_path / "gpu_check.json"
  env = dict(os.environ, GPU_CHECK_QUICK="1", PATH=os.pathsep.join(
      [os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
  env.pop("OUT", None)
  proc = subprocess.run(["bash", "experiments/gpu_check.sh", str(out)],
                        cwd=REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
  payload = json.loads(out.read_text())
  assert set(payload["parts"]) == {"metrics", "others", "nleep", "extract",
                                   "resample"}
  for name, part in payload["parts"].items():
    assert part == dict(part, complete=True, failed=False, written=True), name
  rows = payload["results"]
  timed = {r["name"] for r in rows
           if r["suite"] == "metrics" and r["impl"] == "sfda_jax"}
  assert timed == set(registry.REGISTRY)
  # 11 (here 2) models at once for every per-model feature metric but NLEEP
  at_once = {r["name"] for r in rows if r["suite"] == "metrics"
             and r["impl"] == "sfda_jax" and r["M"] > 1}
  assert at_once == {m for m, s in registry.REGISTRY.items()
                     if s.inputs == "features" and m != "nleep"}
  assert {r["impl"] for r in rows if r["suite"] == "extract"} >= {
      "flax", "flax_bf16"}
  resampled = {r["name"]: r for r in rows if r["suite"] == "resample"}
  assert set(resampled) == {"sfda", "logme", "hscore"}
  assert all(_finite_positive(r["ratio_to_B_scores"])
             for r in resampled.values())
  assert payload["device"] and payload["versions"]["jax"]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.json"]
