r"""The SFDA paper's benchmark next to data-free priors.

  python -m experiments.paper_table
  python -m experiments.paper_table --features_dir=/path/to/sfda/features

From the shipped SFDA-paper ground truth alone: per dataset and on average,
the weighted Kendall tau of the priors (imagenet_top1, num_params, lodo)
beside the paper's published metric numbers, and what they mean. With
--features_dir (the authors' ``{model}_{dataset}_feature.npy`` /
``_label.npy`` files), our metrics' weighted tau on those datasets too.
--output writes the table as JSON (atomically).
"""

from __future__ import annotations

import json

from absl import flags

from experiments import _cli
from sfda_jax import atomic
from sfda_jax.evaluation import paper_table

FLAGS = flags.FLAGS
flags.DEFINE_string("features_dir", None, "Folder of the SFDA authors' "
                    "feature files, to add our metrics' weighted tau.")
flags.DEFINE_list("metrics", None, "Our metrics to score on --features_dir "
                  "(default: every feature metric).")
flags.DEFINE_string("output", None, "Also write the table as JSON here.")


def main(argv):
  del argv
  table = paper_table.paper_table(FLAGS.features_dir, FLAGS.metrics)
  print(table.format())
  if FLAGS.output:
    atomic.write_bytes(FLAGS.output,
                       json.dumps(table.to_json(), indent=1).encode() + b"\n")
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  _cli.run(main)
