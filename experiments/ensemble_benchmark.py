r"""Issue 13, item 6: SFDA's ensemble selection vs top-k and random sets.

  python -m experiments.ensemble_benchmark                # both targets, k=2,3
  python -m experiments.ensemble_benchmark --targets=digits --ks=2

For each target, extracts the bench zoo's features (32 px, cached) on the
bench linear probe's train and test splits, chooses k models by
``sfda_jax.select_ensemble``, by the top-k SFDA scores and at random
(``--random_sets``), and judges each set by a linear probe on the
concatenated features (3 seeds, the bench probe's recipe). Results go to
``--output_dir/{target}.json`` (atomic, resumable); the summary table is
printed.
"""

from __future__ import annotations

import os

from absl import flags

from experiments import _cli
from sfda_jax import atomic
from sfda_jax.evaluation import ensemble_benchmark
from sfda_jax.evaluation import rank as rank_lib

FLAGS = flags.FLAGS
flags.DEFINE_list("targets", list(ensemble_benchmark.TARGET_DATA),
                  "Target datasets.")
flags.DEFINE_list("ks", ["2", "3"], "Ensemble sizes.")
flags.DEFINE_integer("random_sets", 10, "Random k-subsets per k.",
                     lower_bound=1)
flags.DEFINE_string("models", "bench", "Zoo or comma-separated models.")
flags.DEFINE_integer("image_size", 32, "Input px (the bench's).",
                     lower_bound=1)
flags.DEFINE_string("cache_dir", None, "Feature cache.")
flags.DEFINE_integer("seed", 0, "Subset and random-set seed.", lower_bound=0)
flags.DEFINE_string("output_dir", "outputs/ensemble_benchmark",
                    "Where {target}.json go.")


def main(argv):
  del argv
  # pylint: disable-next=g-import-not-at-top
  from sfda_jax import backbones, data, features
  try:
    ks = [int(k) for k in FLAGS.ks]
  except ValueError as e:
    raise ValueError(f"--ks must be integers, got {FLAGS.ks}.") from e
  unknown = [t for t in FLAGS.targets
             if t not in ensemble_benchmark.TARGET_DATA]
  if unknown:
    raise ValueError(f"--targets: no bench split for {unknown}; known: "
                     f"{list(ensemble_benchmark.TARGET_DATA)}.")
  names = rank_lib.model_names(FLAGS.models, FLAGS.targets[0])
  ensemble_benchmark.check_ks(ks, len(names))
  atomic.check_writable_dir(FLAGS.output_dir, "--output_dir")
  bbs = {n: backbones.resized(backbones.get(n, seed=FLAGS.seed),
                              FLAGS.image_size) for n in names}
  docs = []
  for target in FLAGS.targets:
    n_train, n_test = ensemble_benchmark.TARGET_DATA[target]
    train, test, _ = data.load_train_test(target, num_examples=n_train,
                                          test_examples=n_test,
                                          seed=FLAGS.seed)
    ftr, fte = {}, {}
    for name, bb in bbs.items():
      tr = features.extract(bb, train, cache_dir=FLAGS.cache_dir)
      te = features.extract(bb, test, cache_dir=FLAGS.cache_dir)
      ftr[name], fte[name] = tr.features, te.features
      ytr, yte = tr.labels, te.labels
    docs.append(ensemble_benchmark.run(
        target, ftr, ytr, fte, yte, ks=ks, random_sets=FLAGS.random_sets,
        output=os.path.join(FLAGS.output_dir, f"{target}.json"),
        seed=FLAGS.seed, progress=lambda s: print(s, flush=True)))
  print(ensemble_benchmark.summary_table(docs))


if __name__ == "__main__":
  _cli.run(main)
