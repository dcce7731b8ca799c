"""The benchmark's small setting runs end to end and writes its JSON."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_metrics_benchmark_writes_json(tmp_path):
  out = tmp_path / "bench.json"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--quick",
       "--suite=metrics", "--metrics=sfda,logme,leep", "--repeats=1",
       f"--output={out}"], cwd=ROOT, capture_output=True, text=True,
      timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "speed-up" in proc.stdout and "sfda" in proc.stdout
  payload = json.loads(out.read_text())
  assert {"device", "versions", "results"} <= set(payload)
  impls = {(r["name"], r["impl"]) for r in payload["results"]}
  assert ("sfda", "sfda_jax") in impls and ("sfda", "numpy") in impls
  for row in payload["results"]:
    assert row["suite"] == "metrics"
    assert {"N", "D", "C", "M", "seconds", "compile_seconds"} <= set(row)
  sfda = {r["impl"]: r["score"] for r in payload["results"]
          if r["name"] == "sfda"}
  assert abs(sfda["sfda_jax_x64"] - sfda["numpy"]) <= 1e-6 * abs(sfda["numpy"])
  # atomic write: nothing but the result (no temp file) in the directory
  assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]


def test_unknown_metric_is_a_usage_error(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--quick",
       "--metrics=nope"], cwd=ROOT, capture_output=True, text=True,
      timeout=300)
  assert proc.returncode != 0
  assert "unknown metric 'nope'" in proc.stderr
