"""Run twice by tests/metrics/test_determinism.py, each time in a fresh process:
prints every metric's score on fixed inputs as exact float bits (hex)."""

import json
import os
import sys

import numpy as np

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _TESTS)                     # conftest
sys.path.insert(0, os.path.dirname(_TESTS))    # the repository root

import sfda_jax  # noqa: E402
from conftest import make_features  # noqa: E402


def main():
  x, y = make_features(300, 12, 4, seed=11, separation=1.0)
  x = x.astype(np.float32)
  theta = np.random.default_rng(3).dirichlet(np.ones(6), size=300)
  scores = {
      "sfda": sfda_jax.sfda(x, y),
      "logme": sfda_jax.logme(x, y),
      "nleep": sfda_jax.nleep(x, y, seed=5),
      "hscore": sfda_jax.hscore(x, y),
      "regularized_hscore": sfda_jax.regularized_hscore(x, y),
      "gbc": sfda_jax.gbc(x, y),
      "transrate": sfda_jax.transrate(x, y),
      # max_samples below N: the seeded stratified subsample is exercised.
      "parc": sfda_jax.parc(x, y, max_samples=200, seed=5),
      "leep": sfda_jax.leep(theta, y),
      "nce": sfda_jax.nce(theta.argmax(1), y),
  }
  print("RESULT " + json.dumps({k: float(v).hex() for k, v in
                                scores.items()}))


if __name__ == "__main__":
  main()
