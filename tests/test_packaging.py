"""The wheel: the ground truth ships as package data, no `experiments`."""

import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO_ROOT


@pytest.mark.slow
def test_wheel_carries_ground_truth_and_no_experiments(tmp_path):
  build = tmp_path / "src"
  # Build from a copy: setuptools writes build/ and *.egg-info next to
  # setup.py.
  import shutil
  shutil.copytree(REPO_ROOT, build, ignore=shutil.ignore_patterns(
      ".git", "build", "*.egg-info", "__pycache__", "outputs", "dist", ".jax_cache"))
  proc = subprocess.run(
      [sys.executable, "-m", "pip", "wheel", "--no-deps",
       "--no-build-isolation", "-w", str(tmp_path / "dist"), str(build)],
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  (wheel,) = (tmp_path / "dist").glob("sfda_jax-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  for name in ("fashion_mnist_efficientnet_lite.json",
               "sfda_paper_group1.json", "sfda_paper_group2.json"):
    assert f"sfda_jax/evaluation/ground_truth/{name}" in names
  assert not [n for n in names if n.startswith("experiments/")]
  assert not [n for n in names if n.startswith("tests/")]
  metadata = zipfile.ZipFile(wheel).read(next(
      n for n in names if n.endswith(".dist-info/METADATA"))).decode()
  requires = [l for l in metadata.splitlines() if l.startswith("Requires-Dist")]
  core = [l for l in requires if "extra ==" not in l]
  assert not [l for l in core if any(h in l for h in (
      "tensorflow", "flax", "transformers", "matplotlib", "torch"))], core
  for extra in ("pipeline", "hf", "zoo", "plot", "baseline", "test", "all"):
    assert f"Provides-Extra: {extra}" in metadata


def test_committed_ground_truth_resolves_from_package_data():
  from sfda_jax.evaluation import ground_truth
  path, acc = ground_truth.resolve("auto", "fashion_mnist",
                                   ["efficientnet_lite0"])
  assert path.endswith(os.path.join("sfda_jax", "evaluation", "ground_truth",
                                    "fashion_mnist_efficientnet_lite.json"))
  assert set(acc) == {"efficientnet_lite0"}
  assert ground_truth.resolve("auto", "cifar10", ["a"]) == (None, None)
