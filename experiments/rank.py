r"""Rank a model zoo for a dataset with every transferability metric.

  python -m experiments.rank                              # offline default
  python -m experiments.rank --dataset=cifar10            # HF zoo (network)
  python -m experiments.rank --dataset=/path/to/features \
      --ground_truth=sfda_jax/evaluation/ground_truth/sfda_paper_group1.json

Flags -> :class:`sfda_jax.RankConfig` -> :func:`sfda_jax.rank_zoo` (which
extracts or reuses cached features, scores every applicable metric and
compares with fine-tune accuracies) -> tables on stdout and results.json,
results.csv and ranking.png in --output_dir. A (metric, model) cell that
cannot be scored is recorded as failed with its reason and the rest still
runs; the exit status is non-zero only when no cell scored. ``--dataset``
may also be a directory of precomputed ``{model}_{dataset}_feature.npy`` /
``_label.npy`` pairs (the SFDA authors' layout).
"""

from __future__ import annotations

from absl import flags

from experiments import _cli
from sfda_jax import backbones
from sfda_jax import evaluation
from sfda_jax import ranking
from sfda_jax.metrics import registry

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "fashion_mnist", "TFDS name, image folder, or "
                    "a directory of precomputed *_feature.npy/_label.npy.")
flags.DEFINE_string(
    "models", "auto", "Comma-separated backbone names: offline "
    f"{', '.join(backbones.available())} (append @random for a randomly "
    "initialised control, :stage1..:stage7 to cut after a stage), 'pixels' "
    "(the raw-pixel baseline), hf:<hub id or saved directory> (HuggingFace "
    "Flax); or a named zoo, alone or in the list: "
    + "; ".join(f"{zoo} ({len(names)}: {', '.join(names)})"
                for zoo, names in evaluation.ZOOS.items())
    + ". 'auto': offline for fashion_mnist, digits and folders, online "
    "otherwise.")
flags.DEFINE_list("metrics", [], "Metrics (default: all that apply): "
                  f"{', '.join(ranking.ALL_METRICS)}; also the variants "
                  f"{', '.join(registry.VARIANT_METRICS)}.")
flags.DEFINE_string("split", "train", "Dataset split.")
flags.DEFINE_integer("num_examples", 2000, "Class-stratified subset size "
                     "(0 = the whole split); >= 1.5 x the feature dimension "
                     "keeps SFDA and H-score from saturating.",
                     lower_bound=0)
flags.DEFINE_integer("batch_size", 32, "Extraction batch size.",
                     lower_bound=1)
flags.DEFINE_string("data_dir", None, "TFDS data_dir.")
flags.DEFINE_string("cache_dir", None, "Feature cache (default "
                    "~/.cache/sfda_jax).")
flags.DEFINE_string("output_dir", "outputs/rank", "Where results go.")
flags.DEFINE_string("ground_truth", "auto", "JSON of fine-tune accuracies. "
                    "'auto': the committed ground truth for the dataset "
                    "when one covers every ranked model (fashion_mnist with "
                    "the offline zoo), else none; 'none': no agreement.")
flags.DEFINE_string("features_dataset", None, "Dataset part of precomputed "
                    "feature file names (inferred when unambiguous).")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "Backbone compute "
                  "dtype (default: bfloat16 on accelerators, float32 on CPU).")
flags.DEFINE_integer("image_size", None, "Input resolution in px (0: each "
                     "model's native; default: the ground truth's fine-tune "
                     "resolution when its file states one, else native).",
                     lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed for subsampling, NLEEP and the "
                     "resamples.",
                     lower_bound=0)
flags.DEFINE_integer("resamples", 4, "Paired resamples (80% of the samples "
                     "each) for each score's +- std and the P(above next) "
                     "column; 0: off.",
                     lower_bound=0)
flags.DEFINE_integer("ensemble", 0, "Also choose this many models for an "
                     "ensemble by SFDA's selection (score + complementarity "
                     "in the Fisher space); 0: off.", lower_bound=0)
_cli.define_skip_unreadable()
flags.DEFINE_bool("priors", True, "Report the data-free priors "
                  "(imagenet_top1, num_params, lodo) beside the metrics.")


def config_from_flags() -> evaluation.RankConfig:
  return evaluation.RankConfig(
      dataset=FLAGS.dataset, models=FLAGS.models, metrics=tuple(FLAGS.metrics),
      split=FLAGS.split, num_examples=FLAGS.num_examples,
      batch_size=FLAGS.batch_size, data_dir=FLAGS.data_dir,
      cache_dir=FLAGS.cache_dir, ground_truth=FLAGS.ground_truth,
      features_dataset=FLAGS.features_dataset, dtype=FLAGS.dtype,
      image_size=FLAGS.image_size, seed=FLAGS.seed,
      resamples=FLAGS.resamples, priors=FLAGS.priors,
      ensemble=FLAGS.ensemble, skip_unreadable=FLAGS.skip_unreadable)


def main(argv):
  del argv
  result = evaluation.rank_zoo(config_from_flags(), FLAGS.output_dir)
  print(result.tables())
  for path in result.paths:
    print(f"wrote {path}")
  result.check()          # logs failed cells; raises when none scored


if __name__ == "__main__":
  _cli.run(main)
