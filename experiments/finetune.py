r"""Ground truth by fine-tuning each backbone on a target dataset (optax).

  python -m experiments.finetune --dataset=fashion_mnist --models=bench_all \
      --mode=full --steps=150 --image_size=32 --seeds=0,1,2 \
      --warmup_steps=15 --clip_norm=1 --learning_rates=0.03,0.01 \
      --output=sfda_jax/evaluation/ground_truth/bench/fashion_mnist_finetune.json
  python -m experiments.finetune --mode=linear_probe

The first is the committed bench ground truth's command (the file that
``--ground_truth=auto`` of ``experiments.rank`` reads for Fashion-MNIST; the
exact commands: ``sfda_jax.evaluation.zoo_benchmark.ground_truth_command``);
it takes ~1 hour on a 2-core CPU (27 models). The defaults (4 models, native
resolution, 150 steps) take far longer on a CPU: pass --image_size. After
every run the command prints how many runs are left and an estimate of the
time they take.

Each model gets a new linear head; full mode also trains the backbone (BN
statistics frozen). SGD + Nesterov 0.9, cosine schedule, weight decay, a grid
over --learning_rates x --weight_decays; the best test accuracy per model is
its ground truth. With --seeds=0,1,2 every run repeats per training seed and
a model's ground truth is the mean over seeds of its best accuracy, with
"accuracy_std" and "accuracy_seeds" beside it. Writes {"accuracies":
{dataset: {model: acc}}, "accuracy_std", "accuracy_seeds", "config", "runs",
"environment", "command", "complete"} atomically to --output after every run;
a rerun with the same settings resumes (finished runs are kept, not redone);
config["split"] says how the test set was made
(sfda_jax.data.load_train_test).

Test set: a TFDS dataset's --test_split; for an image folder (one split) a
seeded, class-stratified holdout of --test_fraction (default 0.2) of each
class, disjoint from the training part; or --test_dataset (a TFDS name or
folder). Train and test sets sharing any image are refused before training.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import flags

from experiments import _cli
from sfda_jax import atomic
from sfda_jax import backbones
from sfda_jax import data
from sfda_jax import environment
from sfda_jax import features
from sfda_jax import finetune
from sfda_jax import report
from sfda_jax.evaluation import ground_truth
from sfda_jax.evaluation import rank as rank_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "fashion_mnist", "TFDS name or image folder.")
flags.DEFINE_list("models", ["efficientnet_lite0", "efficientnet_lite1",
                             "efficientnet_lite2", "efficientnet_lite0@random"],
                  "Backbones (@random: randomly initialised control; "
                  ":stageK: cut after stage K), or a zoo name (offline, "
                  "bench, bench_all).")
flags.DEFINE_enum("mode", "full", ["full", "linear_probe"], "What trains.")
flags.DEFINE_integer("steps", 150, "Optimizer steps per run.",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Batch size.",
                     lower_bound=1)
flags.DEFINE_integer("image_size", 0, "Input size override (0: the model's "
                     "own); smaller is cheaper on a CPU.",
                     lower_bound=0)
flags.DEFINE_integer("num_examples", 1000, "Training subset (stratified).",
                     lower_bound=0)
flags.DEFINE_integer("test_examples", 1000, "Test subset (stratified).",
                     lower_bound=0)
flags.DEFINE_string("train_split", "train", "Training split (an image "
                    "folder's holdout: the part, 'train').")
flags.DEFINE_string("test_split", "test", "Evaluation split (an image "
                    "folder's holdout: the part, 'test').")
flags.DEFINE_string("test_dataset", None, "A separate TFDS name or image "
                    "folder to evaluate on (its --test_split); default: "
                    "--dataset.")
flags.DEFINE_float("test_fraction", None, "Image folder without "
                   "--test_dataset: share of each class held out for test "
                   "(seeded by --seed, class-stratified, disjoint from "
                   "training); default 0.2.")
flags.DEFINE_list("learning_rates", ["0.01", "0.003"], "Grid.")
flags.DEFINE_list("weight_decays", ["1e-4"], "Grid.")
flags.DEFINE_integer("warmup_steps", 0, "Linear learning-rate warm-up "
                     "steps before the cosine decay (0: none).",
                     lower_bound=0)
flags.DEFINE_float("clip_norm", 0.0, "Clip each gradient's global norm to "
                   "this (0: no clipping).")
flags.DEFINE_string("data_dir", None, "TFDS data_dir.")
_cli.define_skip_unreadable()
flags.DEFINE_string("cache_dir", None, "Feature cache (linear probe).")
flags.DEFINE_string("output", "outputs/finetune/ground_truth.json",
                    "Ground-truth JSON to write.")
flags.DEFINE_integer("seed", 0, "Seed of the train/test subsets (and of "
                     "training when --seeds is not given).",
                     lower_bound=0)
flags.DEFINE_list("seeds", None, "Training seeds (head initialisation, batch "
                  "order); the ground truth is each model's mean over them, "
                  "with its std and per-seed accuracies. Default: --seed.")


def main(argv):
  del argv
  lrs = [float(v) for v in FLAGS.learning_rates]
  wds = [float(v) for v in FLAGS.weight_decays]
  seeds = ground_truth.parse_seeds(FLAGS.seeds, FLAGS.seed)
  out_dir = os.path.dirname(os.path.abspath(FLAGS.output))
  report.check_output_dir(out_dir)
  data.check_name(FLAGS.dataset)        # a typo, before choosing models
  if FLAGS.test_dataset:
    data.check_name(FLAGS.test_dataset)
  names = rank_lib.model_names(",".join(FLAGS.models), FLAGS.dataset)  # zoos
  for name in names:                    # a bad @suffix fails before loading
    backbones.parse_name(name)
  train, test, split = data.load_train_test(    # refuses overlapping sets
      FLAGS.dataset, test_dataset=FLAGS.test_dataset,
      train_split=FLAGS.train_split, test_split=FLAGS.test_split,
      test_fraction=FLAGS.test_fraction,
      num_examples=FLAGS.num_examples or None,
      test_examples=FLAGS.test_examples or None,
      data_dir=FLAGS.data_dir, seed=FLAGS.seed,
      skip_unreadable=FLAGS.skip_unreadable)
  print(f"train {len(train)} / test {len(test)} images: "
        f"{split['description']}", flush=True)
  num_classes = int(max(train.labels.max(), test.labels.max())) + 1
  models = {name: backbones.resized(backbones.get(name, dtype="float32",
                                       seed=FLAGS.seed), FLAGS.image_size)
            for name in names}
  config_record = {"mode": FLAGS.mode, "steps": FLAGS.steps,
                   "batch_size": FLAGS.batch_size,
                   "image_size": FLAGS.image_size or "native",
                   "train": train.fingerprint, "test": test.fingerprint,
                   "split": split,
                   "learning_rates": lrs, "weight_decays": wds,
                   "optimizer": "SGD nesterov momentum 0.9, cosine schedule, "
                                "decoupled weight decay; BN statistics "
                                "frozen",
                   "seed": FLAGS.seed,
                   "shuffle": "full mode, in memory: a per-epoch permutation "
                              "seeded by (training seed, epoch)"}
  if FLAGS.mode == "linear_probe":
    config_record["shuffle"] = ("features in memory: a per-epoch "
                                "permutation seeded by (training seed, "
                                "epoch)")
  # Recorded only when used, so files written before these flags existed
  # keep resuming under their own command.
  if FLAGS.warmup_steps:
    config_record["warmup_steps"] = FLAGS.warmup_steps
  if FLAGS.clip_norm:
    config_record["clip_norm"] = FLAGS.clip_norm
  runs = ground_truth.resumable_runs(FLAGS.output, config_record)
  done = {ground_truth.run_key(r, FLAGS.seed) for r in runs}
  if done:
    print(f"resuming {FLAGS.output}: {len(done)} finished run(s) kept",
          flush=True)
  start = time.perf_counter()

  def write(complete):
    payload = ground_truth.seeded_payload(FLAGS.dataset, runs, seeds, list(models),
                       config_record, FLAGS.seed)
    payload.update(
        command="python -m experiments.finetune " + " ".join(sys.argv[1:]),
        environment=environment.record(("flax", "optax")),
        seconds=time.perf_counter() - start,
        date=time.strftime("%Y-%m-%d", time.gmtime()), complete=complete)
    atomic.write_bytes(FLAGS.output, (json.dumps(payload, indent=1)
                                      + "\n").encode())

  todo = sum(1 for name in models for seed in seeds for lr in lrs
             for wd in wds if (name, seed, lr, wd) not in done)
  print(f"{todo} run(s) to do: {len(models)} model(s) x {len(seeds)} "
        f"seed(s) x {len(lrs) * len(wds)} grid point(s)"
        + (f", {len(done)} already finished" if done else ""), flush=True)
  finished_now, spent = 0, 0.0
  for name, bb in models.items():
    if all((name, seed, lr, wd) in done for seed in seeds for lr in lrs
           for wd in wds):
      continue              # resumed: no features or images to prepare
    if FLAGS.mode == "linear_probe":
      tr = features.extract(bb, train, cache_dir=FLAGS.cache_dir)
      te = features.extract(bb, test, cache_dir=FLAGS.cache_dir)
      test_batches = finetune.replayable_batches(
          None, None, 1024, preloaded=(te.features, te.labels))
    else:
      test_batches = finetune.replayable_batches(test, bb.preprocessing,
                                                  FLAGS.batch_size)
      train_data = finetune.preload(train, bb.preprocessing,
                                    FLAGS.batch_size)   # once per model
    for seed in seeds:
      for lr in lrs:
        for wd in wds:
          if (name, seed, lr, wd) in done:
            continue
          # a fresh epoch order per run
          train_batches = finetune.replayable_batches(
              train, bb.preprocessing, FLAGS.batch_size, shuffle_seed=seed,
              preloaded=(tr.features, tr.labels)
              if FLAGS.mode == "linear_probe" else train_data)
          config = finetune.FinetuneConfig(
              mode=FLAGS.mode, steps=FLAGS.steps,
              batch_size=FLAGS.batch_size, learning_rate=lr,
              weight_decay=wd, seed=seed, warmup_steps=FLAGS.warmup_steps,
              clip_norm=FLAGS.clip_norm)
          result = finetune.train_and_evaluate(bb, train_batches,
                                               test_batches, num_classes,
                                               config)
          runs.append({"model": name, "seed": seed, "learning_rate": lr,
                       "weight_decay": wd, **result})
          finished_now += 1
          spent += result["seconds"]
          left = todo - finished_now
          rest = left * spent / finished_now          # training time only
          eta = (f"; {left} left, about " + (f"{rest / 60:.0f} min" if rest
                                             >= 120 else f"{rest:.0f} s")
                 if left else "")
          print(f"{name:<28} seed={seed} lr={lr:<8g} wd={wd:<8g} "
                f"test acc {result['test_accuracy']:.4f} "
                f"({result['seconds']:.0f} s{eta})", flush=True)
          write(complete=False)
  write(complete=True)
  print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  _cli.run(main)
