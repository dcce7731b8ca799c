"""Layers point one way: the light modules load no heavy dependency."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

_HEAVY = ("flax", "tensorflow", "tensorflow_datasets", "transformers", "PIL",
          "matplotlib", "optax", "torch")


def _loaded_after(statement, names):
  code = (f"import sys\n{statement}\n"
          f"print(','.join(n for n in {tuple(names)!r} if n in sys.modules))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT,
                        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("module", ["sfda_jax", "sfda_jax.metrics"])
def test_core_imports_no_pipeline(module):
  assert _loaded_after(f"import {module}", _HEAVY) == ""


@pytest.mark.slow
def test_data_imports_no_model_code():
  assert _loaded_after("import sfda_jax.data",
                       ("sfda_jax.backbones", *_HEAVY)) == ""
  # The old import path still works (a re-export of the same class).
  assert _loaded_after(
      "from sfda_jax.backbones.base import Preprocessing as P\n"
      "from sfda_jax.data import Preprocessing as Q\nassert P is Q", ()) == ""
