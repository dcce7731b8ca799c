"""experiments.rank and experiments.finetune on messy image folders (issue
15): an unreadable file is one `error:` line naming it, `--skip_unreadable`
leaves it out (logged), in the real entry points."""

import io
import json

import numpy as np
from PIL import Image
import pytest

from conftest import REPO_ROOT, run_entry_point


def _png(pixels):
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, "PNG")
  return out.getvalue()


def _folder(root, counts, extra):
  rng = np.random.default_rng(0)
  for name, n in counts.items():
    (root / name).mkdir(parents=True)
    for i in range(n):
      (root / name / f"{i:02d}.png").write_bytes(
          _png(rng.integers(0, 256, (16, 16, 3), np.uint8)))
  for rel, content in extra.items():
    (root / rel).write_bytes(content)
  return root


def _truncated():
  return _png(np.random.default_rng(1).integers(0, 256, (64, 64, 3),
                                                 np.uint8))[:100]


def _corrupt_pixels():
  damaged = bytearray(_png(np.full((16, 16, 3), 9, np.uint8)))
  damaged[damaged.index(b"IDAT") + 10] ^= 0xFF
  return bytes(damaged)


def _errors(proc):
  return [l for l in proc.stderr.splitlines() if l.startswith("error:")]


@pytest.mark.slow
def test_rank_names_an_unreadable_file_or_skips_it(tmp_path):
  folder = _folder(tmp_path / "pets", {"cat": 6, "dog": 6},
                   {"cat/bad.png": _truncated()})
  cache, out = tmp_path / "cache", tmp_path / "out"
  command = ["experiments.rank", f"--dataset={folder}", "--models=pixels",
             "--metrics=sfda,logme", "--num_examples=0", "--resamples=0",
             "--nopriors", "--ground_truth=none", f"--cache_dir={cache}",
             f"--output_dir={out}"]
  proc = run_entry_point(command, cwd=REPO_ROOT)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert len(_errors(proc)) == 1 and _errors(proc)[0].startswith(
      "error: cat/bad.png: truncated PNG: the file ends inside its IDAT "
      "chunk (100 bytes"), proc.stderr[-3000:]
  assert (f"In image folder {folder}: delete or replace it, or leave "
          "unreadable files out with skip_unreadable=True (on the command "
          "line: --skip_unreadable).") in proc.stderr
  assert "Traceback" not in proc.stderr and not cache.exists()
  proc = run_entry_point(command + ["--skip_unreadable"], cwd=REPO_ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "skipped cat/bad.png: truncated PNG" in proc.stderr
  assert ("skipped 1 unreadable file (skip_unreadable); using the other 12 "
          "images") in proc.stderr
  assert json.loads((out / "results.json").read_text())["num_examples"] == 12
  # Damage only decoding finds: named mid-extraction, the same one line,
  # and no cache entry for the failed run.
  entries = sorted(cache.rglob("*.npz"))
  (folder / "cat" / "bad.png").unlink()
  (folder / "dog" / "03.png").write_bytes(_corrupt_pixels())
  proc = run_entry_point(command, cwd=REPO_ROOT)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert len(_errors(proc)) == 1 and _errors(proc)[0].startswith(
      "error: dog/03.png: cannot be decoded (Invalid PNG data, size ")
  assert "Traceback" not in proc.stderr
  assert sorted(cache.rglob("*.npz")) == entries


@pytest.mark.slow
def test_finetune_skip_unreadable_reaches_the_folder_load(tmp_path):
  folder = _folder(tmp_path / "pets", {"cat": 5, "dog": 5},
                   {"dog/bad.png": _truncated()})
  out = tmp_path / "gt.json"
  command = ["experiments.finetune", "--mode=linear_probe",
             "--models=efficientnet_lite0", "--image_size=32", "--steps=2",
             f"--dataset={folder}", "--num_examples=0", "--test_examples=0",
             "--test_fraction=0.2", "--learning_rates=0.01",
             f"--cache_dir={tmp_path / 'cache'}", f"--output={out}"]
  proc = run_entry_point(command, cwd=REPO_ROOT)
  assert proc.returncode == 1 and not out.exists()
  assert _errors(proc)[0].startswith("error: dog/bad.png: truncated PNG")
  proc = run_entry_point(command + ["--skip_unreadable"], cwd=REPO_ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stderr.count("skipped dog/bad.png: truncated PNG") == 1
  split = json.loads(out.read_text())["config"]["split"]
  assert split["train"]["num_examples"] + split["test"]["num_examples"] == 10
