"""experiments._cli: one-line errors and quiet defaults for every entry
point."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

_MAIN = """
import sys
from experiments import _cli
from absl import app, logging

def main(argv):
  logging.info("an info line")
  logging.warning("a warning line")
  if sys.argv[-1] == "usage":
    raise app.UsageError("bad usage")
  if sys.argv[-1] == "ctrl-c":
    raise KeyboardInterrupt("interrupted at 3/9 images of m; 2 are kept")
  raise ValueError("bad value")

_cli.run(main)
"""


def _run(*args):
  return subprocess.run([sys.executable, "-c", _MAIN, *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind", ["usage", "value"])
def test_user_errors_are_one_line_and_info_is_off_by_default(kind):
  proc = _run(kind)
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert lines[-1] == f"error: bad {kind}"
  assert "an info line" not in proc.stderr
  assert "a warning line" in proc.stderr
  assert "Traceback" not in proc.stderr and "USAGE" not in proc.stderr


def test_ctrl_c_is_one_message_and_exit_130():
  proc = _run("ctrl-c")
  assert proc.returncode == 130
  assert proc.stderr.strip().splitlines()[-1] == (
      "interrupted at 3/9 images of m; 2 are kept")
  assert "Traceback" not in proc.stderr


def test_verbosity_flag_turns_info_back_on():
  proc = _run("--verbosity=0", "value")
  assert "an info line" in proc.stderr
  assert re.search(r"^I\d{4} .*<string>:\d+\] an info line$", proc.stderr,
                   re.M)


def test_piped_progress_bars_redraw_rarely():
  proc = subprocess.run(
      [sys.executable, "-c", "from experiments import _cli; import os; "
       "print(os.environ['TQDM_MININTERVAL'], "
       "os.environ['TF_CPP_MIN_LOG_LEVEL'], "
       "os.environ['TF_ENABLE_ONEDNN_OPTS'])"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
  assert proc.stdout.split() == ["30", "1", "0"]


_PIXELS = """
import hashlib
from experiments import _cli
from sfda_jax import data
from sfda_jax.data.preprocessing import Preprocessing
h = hashlib.sha256()
ds = data.load("digits", num_examples=200)
for p in [Preprocessing(64, 72, (0.5,) * 3, (0.5,) * 3, "bicubic"),
          Preprocessing(32, 32, (0.5,) * 3, (0.25,) * 3, "bilinear", True)]:
  for x, y in ds.batches(p, 64):
    h.update(x.tobytes())
print(h.hexdigest())
"""


def test_tensorflow_is_silent_and_onednn_off_changes_no_pixel():
  """Importing TensorFlow through an entry point prints nothing (its oneDNN
  notice ignores TF_CPP_MIN_LOG_LEVEL, so the entry points turn oneDNN off),
  and the pixels the models see are the same bits with oneDNN on."""
  out = {}
  for value in ("0", "1"):
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": value}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run([sys.executable, "-c", _PIXELS], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=180,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    out[value] = (proc.stdout.strip(), proc.stderr)
  assert out["0"][0] == out["1"][0]
  assert "oneDNN" not in out["0"][1] and "I0000" not in out["0"][1], out["0"][1]
  assert "oneDNN" in out["1"][1]       # the notice this default removes


@pytest.mark.parametrize("module,flag", [
    ("experiments.rank", "--seed=-1"), ("experiments.rank", "--batch_size=0"),
    ("experiments.finetune", "--steps=0"),
    ("experiments.zoo_benchmark", "--resamples=-2")])
def test_bad_numeric_flags_fail_at_parse_time_naming_the_flag(module, flag):
  proc = subprocess.run([sys.executable, "-m", module, flag], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert f"flag {flag}:" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_rank_help_lists_backbones_zoos_and_metrics():
  proc = subprocess.run([sys.executable, "-m", "experiments.rank",
                         "--helpshort"], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=120)
  text = " ".join((proc.stdout + proc.stderr).split())
  assert "offline efficientnet_lite0, efficientnet_lite1" in text
  assert "bench (12: efficientnet_lite0," in text and "pixels" in text
  assert "bench_all (27: efficientnet_lite0," in text
  assert "regularized_hscore, gbc, transrate, parc, leep, nce" in text
