"""Data-parallel metrics and feature extraction over 8 (fake) CPU devices.

``XLA_FLAGS=--xla_force_host_platform_device_count=8`` only works before JAX
initialises, so ``tests/sharded_check.py`` runs once in a fresh process and
reports what it measured (float64): scores on features sharded over samples
against the same call on host arrays, the sharding of the inputs afterwards,
the collectives in each compiled kernel, which metrics gathered what, and the
extraction of a tiny backbone with batches sharded over the devices.
Multi-host (``jax.distributed``) cannot be tested here.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

HERE = os.path.dirname(os.path.abspath(__file__))

# Every test reads the report of one subprocess with 8 fake CPU devices (see
# BUILD_NOTES.md "Tests" for why it is not in-process).
pytestmark = pytest.mark.slow
DATA_PARALLEL = ["sfda", "logme", "hscore", "regularized_hscore", "gbc",
                 "transrate", "leep"]
GLOBAL = ["nleep", "parc"]     # data-parallel PCA, then a gathered global step
ALL = DATA_PARALLEL + GLOBAL + ["nce"]


@pytest.fixture(scope="module")
def report():
  env = dict(os.environ,
             XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu",
             PYTHONPATH=REPO_ROOT + os.pathsep
             + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, os.path.join(HERE,
                                                      "sharded_check.py")],
                        env=env, capture_output=True, text=True, timeout=400)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
  result = json.loads(line[-1][len("RESULT "):])
  assert result["devices"] == 8
  return result


@pytest.mark.parametrize("metric", ALL)
def test_sharded_score_equals_single_device(report, metric):
  entry = report["metrics"][metric]
  assert entry["rel"] <= 1e-6, entry
  assert abs(entry["single"]) > 1e-3, entry      # a meaningful comparison


@pytest.mark.parametrize("metric", DATA_PARALLEL)
def test_kernel_runs_data_parallel_without_gathering_samples(report, metric):
  entry = report["metrics"][metric]
  assert entry["input_devices"] == 8 and entry["input_spec"] == (
      "P('data', None)"), entry
  assert entry["sample_all_gathers"] == [], entry
  assert entry["all_reduces"] >= 1, entry     # statistics reduced over devices
  assert entry["gathered_shapes"] == [], entry
  if metric != "transrate":                   # transrate: a class index table
    assert entry["label_devices"] == 8, entry


def test_detector_sees_a_gather_of_the_samples(report):
  controls = report["control_sample_all_gathers"]
  assert controls["replicate"] and controls["sort"], controls


@pytest.mark.parametrize("metric", GLOBAL)
def test_global_metrics_gather_only_the_reduced_matrix(report, metric):
  shapes = report["metrics"][metric]["gathered_shapes"]
  assert len(shapes) == 1, shapes
  n, d = shapes[0]
  assert n == 800 and d < 64, shapes           # [N, k] after PCA, not [N, D]


def test_inputs_stay_sharded(report):
  assert report["shardings_unchanged"]
  assert report["input_shard_rows"] == [500]   # 4000 rows / 8 devices
  assert report["float32_rel"] < 1e-5


def test_uneven_sample_count_is_a_clear_error(report):
  message = report["uneven_error"]
  assert message and "evenly over 8 devices" in message and "3993" in message


def test_extraction_shards_batches_and_matches_one_device(report):
  ext = report["extract"]
  # batch 6 padded to 8 (a multiple of the 8 devices), placed on all 8
  assert ext["batches_seen"][0] == [[8, 4, 4, 3], 8]
  assert ext["single_seen"][0] == [[6, 4, 4, 3], 1]
  assert ext["rows"] == 29 and ext["labels_equal"]
  assert ext["max_diff_vs_single"] <= 1e-6
  assert ext["max_diff_logits"] <= 1e-6
  assert ext["max_diff_vs_numpy"] <= 1e-5
