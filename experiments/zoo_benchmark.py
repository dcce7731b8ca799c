r"""Issue 12's benchmark table: every metric and prior vs each ground truth.

  python -m experiments.zoo_benchmark                     # bench zoo, both targets
  python -m experiments.zoo_benchmark --targets=digits --kinds=linear_probe
  python -m experiments.zoo_benchmark --metrics=sfda,sfda_cv5,logme,logme_corrected
  python -m experiments.zoo_benchmark --choose_zoo        # how bench was chosen

For each target (``fashion_mnist``, ``digits``) and each ground truth
(``finetune``, ``linear_probe``) found as ``{target}_{kind}.json`` in
``--ground_truth_dir`` (default: the package's ``ground_truth/bench/``),
ranks ``--models`` (default the ``bench`` zoo) with every metric and
``--resamples`` paired resamples, and prints one table: weighted tau with
its 5-95% interval per metric and prior, and each column's best metric.
Features are cached (``--cache_dir``), so a second run only scores. A missing
ground-truth file is reported with the command that makes it; ``--output``
writes the table's JSON atomically.
"""

from __future__ import annotations

import json
import os

from absl import flags

from experiments import _cli
from sfda_jax import atomic
from sfda_jax.evaluation import rank as rank_lib
from sfda_jax.evaluation import zoo_benchmark

FLAGS = flags.FLAGS
flags.DEFINE_list("targets", list(zoo_benchmark.TARGETS), "Target datasets.")
flags.DEFINE_list("kinds", list(zoo_benchmark.KINDS), "Ground-truth kinds.")
flags.DEFINE_string("ground_truth_dir", None, "Directory of "
                    "{target}_{kind}.json (default: the package's "
                    "ground_truth/bench).")
flags.DEFINE_string("models", "bench", "Zoo or comma-separated models.")
flags.DEFINE_integer("num_examples", 2000, "Scoring subset per target "
                     "(digits always uses its whole 1,258-image train split).",
                     lower_bound=0)
flags.DEFINE_integer("resamples", 8, "Paired resamples per ranking (>= 2).",
                     lower_bound=0)
flags.DEFINE_integer("image_size", None, "Input px (default: the ground "
                     "truth's fine-tuning resolution).",
                     lower_bound=0)
flags.DEFINE_string("cache_dir", None, "Feature cache.")
flags.DEFINE_integer("seed", 0, "Subset, control and resampling seed.",
                     lower_bound=0)
flags.DEFINE_list("metrics", [], "Metrics to judge (default: every metric "
                  "that applies); add variants such as sfda_cv5 or "
                  "logme_corrected by name.")
flags.DEFINE_string("output", None, "Write the table as JSON here.")
flags.DEFINE_bool("choose_zoo", False, "Only print the subset of the "
                  "bench_all pool whose ground truths resolve the most "
                  "adjacent pairs (the rule behind the bench zoo) and exit.")


def main(argv):
  del argv
  if FLAGS.choose_zoo:
    zoo, resolved = zoo_benchmark.choose_bench_zoo(FLAGS.ground_truth_dir)
    print(f"{len(zoo)} models: {','.join(zoo)}")
    for key, (k, n) in resolved.items():
      print(f"  {key}: {k} of {n} adjacent pairs resolved")
    same = zoo == rank_lib.ZOOS["bench"]
    print("= the bench zoo" if same else "differs from the bench zoo: "
          + ",".join(rank_lib.ZOOS["bench"]))
    return
  if FLAGS.output:
    atomic.check_writable_dir(os.path.dirname(os.path.abspath(FLAGS.output)),
                              "--output directory")
  config = rank_lib.RankConfig(models=FLAGS.models,
                               metrics=tuple(FLAGS.metrics),
                               num_examples=FLAGS.num_examples,
                               resamples=FLAGS.resamples,
                               image_size=FLAGS.image_size,
                               cache_dir=FLAGS.cache_dir, seed=FLAGS.seed)
  result = zoo_benchmark.run(FLAGS.targets, FLAGS.kinds,
                             FLAGS.ground_truth_dir, config,
                             progress=lambda key: print(f"ranking {key} ...",
                                                        flush=True))
  for column in result.columns:
    print(column.ground_truth_table() + "\n")
  print(result.table())
  if FLAGS.output:
    atomic.write_bytes(FLAGS.output, (json.dumps(result.to_json(), indent=1)
                                      + "\n").encode())
    print(f"wrote {FLAGS.output}")
  if not result.columns:
    raise ValueError("no benchmark column could be computed (no ground "
                     "truth found); see the lines above.")


if __name__ == "__main__":
  _cli.run(main)
