r"""A small, fully offline metrics demo on real data (scikit-learn's digits).

Ranks five "models" (feature extractors of very different quality) on the
1,797 8x8 handwritten digits with every feature metric, then checks each
metric's ranking against the accuracy of a logistic-regression probe trained
on the same features (a cheap stand-in for fine-tuning).

  python -m experiments.demo
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

import sfda_jax

FLAGS = flags.FLAGS
flags.DEFINE_integer("seed", 0, "Seed for the random feature extractors.")


def make_zoo(x: np.ndarray, seed: int) -> dict[str, np.ndarray]:
  """Five feature extractors on digits pixels, from good to useless."""
  rng = np.random.default_rng(seed)
  xc = (x - x.mean(0)) / (x.std(0) + 1e-6)
  zoo = {
      "pixels": xc,
      "random_relu_256": np.maximum(xc @ rng.normal(size=(64, 256)) / 8, 0),
      "pca_8": xc @ np.linalg.svd(xc, full_matrices=False)[2][:8].T,
      "pca_3": xc @ np.linalg.svd(xc, full_matrices=False)[2][:3].T,
      "noise_64": rng.normal(size=(x.shape[0], 64)),
  }
  return {k: v.astype(np.float32) for k, v in zoo.items()}


def probe_accuracy(features: np.ndarray, labels: np.ndarray, seed: int
                   ) -> float:
  """Held-out accuracy of a logistic-regression probe (scikit-learn)."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.model_selection import train_test_split
  xtr, xte, ytr, yte = train_test_split(features, labels, test_size=0.3,
                                        random_state=seed, stratify=labels)
  clf = LogisticRegression(max_iter=2000).fit(xtr, ytr)
  return float(clf.score(xte, yte))


def main(argv):
  del argv
  from sklearn.datasets import load_digits
  digits = load_digits()
  zoo = make_zoo(digits.data, FLAGS.seed)
  labels = digits.target
  accuracy = {m: probe_accuracy(f, labels, FLAGS.seed) for m, f in zoo.items()}
  start = time.perf_counter()
  table = sfda_jax.score_models(zoo, labels, seed=FLAGS.seed)
  logging.info("scored %d models x %d metrics in %.1f s", len(zoo),
               len(table), time.perf_counter() - start)
  models = sorted(zoo, key=lambda m: -accuracy[m])
  header = f"{'model':<16}{'probe acc':>10}" + "".join(
      f"{m[:12]:>13}" for m in table)
  print(header)
  for m in models:
    print(f"{m:<16}{accuracy[m]:>10.3f}" + "".join(
        f"{table[metric][m]:>13.4g}" for metric in table))
  print("\nweighted Kendall tau of each metric's ranking vs probe accuracy:")
  for metric, scores in table.items():
    agree = sfda_jax.agreement(scores, accuracy)
    print(f"  {metric:<20} {agree['weighted_tau']:+.3f}   "
          f"top-1 hit: {bool(agree['top1_hit'])}")


if __name__ == "__main__":
  app.run(main)
