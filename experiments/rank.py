r"""Rank a model zoo for a dataset with every transferability metric.

  python -m experiments.rank                              # offline default
  python -m experiments.rank --dataset=cifar10            # HF zoo (network)
  python -m experiments.rank --dataset=/path/to/features \
      --ground_truth=experiments/ground_truth/sfda_paper_group1.json

Extracts (or reuses cached) features of each model on the dataset, scores
them with every applicable metric (LEEP/NCE only for models with a classifier
head), prints one ranking per metric and, given fine-tune accuracies, how well
each metric's ranking agrees with them; writes results.json, results.csv and
ranking.png to --output_dir. A (metric, model) cell that cannot be scored (a
ValueError: constant features, a non-finite score, ...) is recorded as failed
with its reason and the rest still runs; the exit status is non-zero only
when no cell scored. ``--dataset`` may also be a directory of
precomputed ``{model}_{dataset}_feature.npy`` / ``_label.npy`` pairs (the
SFDA authors' layout).
"""

from __future__ import annotations

import os
import platform
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from experiments import _cli
import sfda_jax
from sfda_jax import backbones
from sfda_jax import report

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "fashion_mnist", "TFDS name, image folder, or "
                    "a directory of precomputed *_feature.npy/_label.npy.")
flags.DEFINE_string("models", "auto", "Comma-separated backbone names "
                    "(append @random for a randomly initialised control), or "
                    "a named zoo: offline, online. 'auto': offline for "
                    "fashion_mnist and folders, online otherwise.")
flags.DEFINE_list("metrics", [], "Metrics (default: all that apply).")
flags.DEFINE_string("split", "train", "Dataset split.")
flags.DEFINE_integer("num_examples", 1000, "Class-stratified subset size "
                     "(0 = the whole split).")
flags.DEFINE_integer("batch_size", 32, "Extraction batch size.")
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
flags.DEFINE_integer("seed", 0, "Seed for subsampling and NLEEP.")

_GROUND_TRUTH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                 "ground_truth")
#: Committed fine-tune accuracies used by --ground_truth=auto, per dataset.
DEFAULT_GROUND_TRUTH = {
    "fashion_mnist": os.path.join(_GROUND_TRUTH_DIR,
                                  "fashion_mnist_efficientnet_lite.json"),
}

ZOOS = {
    "offline": ["efficientnet_lite0", "efficientnet_lite1",
                "efficientnet_lite2", "efficientnet_lite0@random"],
    "online": ["hf:microsoft/resnet-50", "hf:google/vit-base-patch16-224",
               "hf:openai/clip-vit-base-patch32",
               "hf:facebook/dinov2-small"],
}


def model_names(spec: str, dataset: str) -> list[str]:
  if spec == "auto":
    spec = "offline" if dataset == "fashion_mnist" or os.path.isdir(
        dataset) else "online"
  names = ZOOS.get(spec) or [m.strip() for m in spec.split(",") if m.strip()]
  if not names:
    raise app.UsageError("--models is empty.")
  return names


def build_backbone(name: str):
  base, _, control = name.partition("@")
  if control and control != "random":
    raise ValueError(f"unknown model suffix @{control} in {name!r}; use "
                     "@random for a randomly initialised control.")
  return backbones.get(base, dtype=FLAGS.dtype,
                                random_init=bool(control), seed=FLAGS.seed)


def resolve_ground_truth(spec: str, dataset: str, models
                         ) -> tuple[str | None, dict[str, float] | None]:
  """``(file, {model: accuracy})`` for ``--ground_truth=spec``, or ``(None,
  None)`` for no agreement. Reads the file once, before any extraction.

  ``auto``: the committed ground truth for ``dataset`` when it covers every
  model (otherwise none, logged); ``none``: none; anything else is a file
  that must cover every model (a missing model is an error, extra ones a
  warning).

  Raises:
    ValueError: an unreadable file, an unknown dataset in it, or a model it
      has no accuracy for.
  """
  if spec == "none":
    return None, None
  if spec == "auto":
    path = DEFAULT_GROUND_TRUTH.get(dataset)
    if path is None or not os.path.exists(path):
      logging.info("no committed ground truth for %s; ranking without "
                   "agreement (pass --ground_truth=FILE).", dataset)
      return None, None
  else:
    path = spec
  known = report.load_ground_truth(path, dataset)
  missing = sorted(set(models) - set(known))
  if missing and spec == "auto":
    logging.info("committed ground truth %s has no accuracy for %s; ranking "
                 "without agreement (pass --ground_truth=FILE).", path,
                 missing)
    return None, None
  if missing:
    raise ValueError(f"ground truth {path} has no accuracy for {missing}; it "
                     f"has {sorted(known)}.")
  extra = sorted(set(known) - set(models))
  if extra:
    logging.warning("ground truth names models that were not ranked: %s",
                    extra)
  return path, {m: known[m] for m in models}


def main(argv):
  del argv
  unknown = [m for m in FLAGS.metrics if m not in sfda_jax.ALL_METRICS]
  if unknown:
    raise app.UsageError(f"unknown metric(s) {unknown}; valid: "
                         f"{', '.join(sfda_jax.ALL_METRICS)}")
  report.check_output_dir(FLAGS.output_dir)        # before any extraction
  timings: dict[str, float] = {}
  source_probs = {}
  start = time.perf_counter()
  is_features_dir = os.path.isdir(FLAGS.dataset) and any(
      f.endswith("_feature.npy") for f in os.listdir(FLAGS.dataset))
  if is_features_dir:
    dataset_name, feats, labels = report.load_features_dir(
        FLAGS.dataset, FLAGS.features_dataset)
    split, num_examples = "precomputed", int(labels.shape[0])
    ground_truth, accuracies = resolve_ground_truth(
        FLAGS.ground_truth, dataset_name, feats)
  else:
    from sfda_jax import data, features
    names = model_names(FLAGS.models, FLAGS.dataset)
    ground_truth, accuracies = resolve_ground_truth(     # before extraction
        FLAGS.ground_truth, FLAGS.dataset, names)
    bbs = {name: build_backbone(name) for name in names}   # fail fast
    ds = data.load(FLAGS.dataset, split=FLAGS.split,
                   num_examples=FLAGS.num_examples or None,
                   data_dir=FLAGS.data_dir, seed=FLAGS.seed)
    dataset_name, split, num_examples = FLAGS.dataset, FLAGS.split, len(ds)
    feats, labels = {}, None
    for name, bb in bbs.items():
      res = features.extract(bb, ds, batch_size=FLAGS.batch_size,
                             cache_dir=FLAGS.cache_dir)
      feats[name], labels = res.features, res.labels
      if res.source_logits is not None:
        source_probs[name] = res.source_probs
      timings[f"extract/{name}"] = res.seconds
  metrics = FLAGS.metrics or [m for m in sfda_jax.ALL_METRICS
                              if m in sfda_jax.FEATURE_METRICS or source_probs]
  if any(m in sfda_jax.SOURCE_METRICS for m in metrics) and not source_probs:
    raise app.UsageError("leep/nce need models with a classifier head; none "
                         f"of {sorted(feats)} has one.")
  t0 = time.perf_counter()
  result = sfda_jax.score_models(feats, labels, metrics=metrics,
                                 source_probs_by_model=source_probs,
                                 seed=FLAGS.seed, on_error="record")
  timings["scoring"] = time.perf_counter() - t0
  scores = result.table()                       # None for a failed cell
  for metric, per_model in scores.items():
    print(report.ranking_table(metric, per_model, accuracies,
                               result.failures.get(metric)) + "\n")
  agreement, skipped = (report.agreement_by_metric(scores, accuracies)
                        if accuracies else ({}, {}))
  if agreement or skipped:
    print("agreement with fine-tune accuracy\n"
          + report.agreement_table(agreement, skipped) + "\n")
  timings["total"] = time.perf_counter() - start
  import flax
  import jax
  payload = {
      "dataset": dataset_name, "split": split, "num_examples": num_examples,
      "models": sorted(feats), "metrics": list(scores), "scores": scores,
      "failures": result.failures,
      "ground_truth": accuracies, "ground_truth_file": ground_truth,
      "agreement": agreement or None, "agreement_skipped": skipped,
      "timings": timings,
      "versions": {"sfda_jax": sfda_jax.__version__, "jax": jax.__version__,
                   "flax": flax.__version__, "numpy": np.__version__,
                   "python": platform.python_version(),
                   "device": str(jax.devices()[0].device_kind)},
  }
  paths = report.write_results(FLAGS.output_dir, payload)
  for path in paths:
    print(f"wrote {path}")
  if result.failures:
    logging.warning(report.failure_summary(result.failures,
                                           result.num_scored))
  if not result.num_scored:
    raise ValueError(f"no (metric, model) cell could be scored "
                     f"({result.num_failed} failed; reasons in {paths[0]}).")


if __name__ == "__main__":
  _cli.run(main)
