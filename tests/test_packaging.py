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
               "sfda_paper_group1.json", "sfda_paper_group2.json",
               "bench/fashion_mnist_linear_probe.json",
               "bench/digits_linear_probe.json",
               "bench/fashion_mnist_finetune.json",
               "bench/digits_finetune.json"):
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
  from sfda_jax.evaluation import rank as rank_lib
  # The offline zoo and the bench zoo both resolve to the bench file (the
  # first complete candidate covering every model), digits too.
  for dataset in ("fashion_mnist", "digits"):
    for zoo in ("offline", "bench"):
      models = rank_lib.model_names(zoo, dataset)
      path, acc = ground_truth.resolve("auto", dataset, models)
      assert path.endswith(os.path.join(
          "sfda_jax", "evaluation", "ground_truth", "bench",
          f"{dataset}_finetune.json")), (dataset, zoo, path)
      assert set(acc) == set(models)
  assert ground_truth.resolve("auto", "cifar10", ["a"]) == (None, None)
  assert ground_truth.resolve("auto", "fashion_mnist", ["x"]) == (None, None)


def test_auto_takes_the_first_complete_candidate_covering_the_models(
    tmp_path, monkeypatch):
  import contextlib
  import json
  from sfda_jax.evaluation import ground_truth

  def write(name, accuracies, complete):
    (tmp_path / name).write_text(json.dumps(
        {"accuracies": {"d": accuracies}, "complete": complete}))

  write("partial.json", {"a": 0.5, "b": 0.6}, False)
  write("small.json", {"a": 0.1}, True)
  write("full.json", {"a": 0.7, "b": 0.8, "c": 0.9}, True)
  monkeypatch.setattr(ground_truth, "_resource", lambda n: tmp_path / n)
  monkeypatch.setattr(ground_truth, "committed_path",
                      lambda n: contextlib.nullcontext(tmp_path / n))
  monkeypatch.setattr(ground_truth, "COMMITTED", {"d": (
      "missing.json", "partial.json", "small.json", "full.json")})
  path, acc = ground_truth.resolve("auto", "d", ["a", "b"])
  assert path == str(tmp_path / "full.json") and acc == {"a": 0.7, "b": 0.8}
  path, acc = ground_truth.resolve("auto", "d", ["a"])
  assert path == str(tmp_path / "small.json") and acc == {"a": 0.1}
  assert ground_truth.resolve("auto", "d", ["z"]) == (None, None)
