"""Fine-tuning ground truth: the optax loop learns, masks BN statistics, and
the entry point writes its JSON."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sfda_jax import finetune
from sfda_jax.backbones.base import Backbone, Preprocessing
from conftest import REPO_ROOT, run_entry_point

PRE = Preprocessing(image_size=4, resize_size=4, mean=(0.5,) * 3,
                    std=(0.5,) * 3)


def toy_backbone():
  rng = np.random.default_rng(0)
  params = {"params": {"w": jnp.asarray(rng.normal(size=(48, 8)) * 0.1,
                                        jnp.float32)},
            "batch_stats": {"mean": jnp.zeros((8,))}}

  @jax.jit
  def apply(p, images):
    f = images.reshape(images.shape[0], -1) @ p["params"]["w"]
    return f - p["batch_stats"]["mean"], None

  return Backbone(name="toy", preprocessing=PRE, feature_dim=8,
                  num_source_classes=None, weights_id="toy", apply_fn=apply,
                  params=params)


def toy_data(n=96, seed=0):
  rng = np.random.default_rng(seed)
  y = np.arange(n) % 3
  x = rng.normal(size=(n, 4, 4, 3)).astype(np.float32) * 0.3
  x[np.arange(n), y, 0, 0] += 4.0
  return x, y


def batches(x, y, bs=16):
  return lambda: ((x[i:i + bs], y[i:i + bs]) for i in range(0, len(y), bs))


@pytest.mark.parametrize("mode", ["full", "linear_probe"])
def test_training_learns_and_leaves_bn_statistics(mode):
  bb = toy_backbone()
  x, y = toy_data()
  xt, yt = toy_data(seed=1)
  if mode == "linear_probe":
    feats = lambda a: np.asarray(bb(jnp.asarray(a))[0])
    train, test = batches(feats(x), y), batches(feats(xt), yt)
  else:
    train, test = batches(x, y), batches(xt, yt)
  config = finetune.FinetuneConfig(mode=mode, steps=60, learning_rate=0.1)
  result = finetune.train_and_evaluate(bb, train, test, 3, config,
                                       progress=False)
  assert result["test_accuracy"] > 0.9
  assert np.all(np.asarray(bb.params["batch_stats"]["mean"]) == 0)


def test_masked_optimizer_freezes_batch_stats():
  params = {"w": jnp.ones(3), "batch_stats": {"mean": jnp.zeros(3)}}
  mask = finetune._trainable_mask(params)
  assert mask == {"w": True, "batch_stats": {"mean": False}}
  tx = finetune.masked_optimizer(finetune.FinetuneConfig(), mask)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert np.all(np.asarray(updates["batch_stats"]["mean"]) == 0)
  assert np.all(np.asarray(updates["w"]) < 0)


def _reference_loss(bb, x, y, config, num_classes=3, bs=16):
  """The pre-compile-once loop: an optimizer with the config's constants,
  a step jitted for this run only; returns the final training loss."""
  key = jax.random.PRNGKey(config.seed)
  trainable = {"head": {"w": jax.random.normal(key, (bb.feature_dim,
                                                     num_classes)) * 0.01,
                        "b": jnp.zeros((num_classes,))},
               "backbone": bb.params}
  mask = {"head": {"w": True, "b": True},
          "backbone": finetune._trainable_mask(bb.params)}
  tx = finetune.masked_optimizer(config, mask)
  state = tx.init(trainable)

  def loss_fn(v, a, b):
    f = bb.apply_fn(v["backbone"], a)[0]
    logits = f @ v["head"]["w"] + v["head"]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, b).mean()

  @jax.jit
  def step(v, st, a, b):
    loss, g = jax.value_and_grad(loss_fn)(v, a, b)
    u, st = tx.update(g, st, v)
    return optax.apply_updates(v, u), st, loss

  stream = finetune._cycle(batches(x, y, bs))
  for _ in range(config.steps):
    a, b = next(stream)
    trainable, state, loss = step(trainable, state, jnp.asarray(a),
                                  jnp.asarray(b))
  return float(loss)


def test_one_compilation_serves_the_whole_grid():
  bb = toy_backbone()
  x, y = toy_data()
  finetune._compiled.cache_clear()
  results = {}
  for lr in (0.1, 0.01):
    for wd in (1e-4, 1e-2):
      for seed in (0, 1):
        config = finetune.FinetuneConfig(steps=12, learning_rate=lr,
                                         weight_decay=wd, seed=seed)
        results[lr, wd, seed] = finetune.train_and_evaluate(
            bb, batches(x, y), batches(x, y), 3, config, progress=False)
  info = finetune._compiled.cache_info()
  assert (info.misses, info.hits) == (1, 7)
  leaves, tree = jax.tree_util.tree_flatten(
      {"head": {"b": True, "w": True},
       "backbone": finetune._trainable_mask(bb.params)})
  step, _ = finetune._compiled(bb.apply_fn, True, 12, tuple(leaves), tree,
                               0, 0.0)   # no warm-up, no clipping
  assert finetune._compiled.cache_info().misses == 1     # the same entry
  assert step._cache_size() == 1          # one batch shape: one executable
  # The traced hyper-parameters are the ones used: the same numbers as a
  # loop with the constants baked in, and different numbers per grid point.
  for (lr, wd, seed), result in list(results.items())[::3]:
    config = finetune.FinetuneConfig(steps=12, learning_rate=lr,
                                     weight_decay=wd, seed=seed)
    np.testing.assert_allclose(result["final_train_loss"],
                               _reference_loss(bb, x, y, config), rtol=1e-5)
  losses = [r["final_train_loss"] for r in results.values()]
  assert len(set(np.round(losses, 7))) == len(losses)


def test_config_is_validated():
  with pytest.raises(ValueError, match="mode"):
    finetune.FinetuneConfig(mode="partial")
  with pytest.raises(ValueError, match="invalid"):
    finetune.FinetuneConfig(steps=0)
  with pytest.raises(ValueError, match="warmup_steps"):
    finetune.FinetuneConfig(steps=10, warmup_steps=10)
  with pytest.raises(ValueError, match="warmup_steps"):
    finetune.FinetuneConfig(steps=10, warmup_steps=-1)
  with pytest.raises(ValueError, match="clip_norm"):
    finetune.FinetuneConfig(clip_norm=-1.0)
  with pytest.raises(ValueError, match="clip_norm"):
    finetune.FinetuneConfig(clip_norm=float("nan"))


def _step_sizes(config, lr, grad):
  """The update sizes the optimizer applies to a 1-parameter model whose
  gradient is always ``grad`` (no weight decay), over config.steps steps."""
  tx = finetune.optimizer(config, jnp.float32(lr), jnp.float32(0.0))
  params = jnp.zeros(1)
  state, sizes = tx.init(params), []
  for _ in range(config.steps):
    updates, state = tx.update(jnp.full(1, grad), state, params)
    sizes.append(float(updates[0]))
  return np.asarray(sizes)


def test_warmup_ramps_linearly_then_follows_the_cosine():
  steps, warm, lr = 20, 5, 0.1
  config = finetune.FinetuneConfig(steps=steps, warmup_steps=warm)
  count = np.arange(steps)
  frac = np.clip((count - warm) / (steps - warm), 0, 1)
  expected = np.where(count < warm, lr * count / warm,
                      lr * 0.5 * (1 + np.cos(np.pi * frac)))
  sizes = _step_sizes(config, lr, 1.0)
  # Nesterov momentum 0.9 with a constant gradient g: direction
  # d_t = g + 0.9 * m_t with m_t = sum_{i<=t} 0.9^(t-i) g.
  m = np.array([sum(0.9 ** (t - i) for i in range(t + 1)) for t in count])
  np.testing.assert_allclose(-sizes, expected * (1 + 0.9 * m), rtol=1e-5)
  assert sizes[0] == 0.0 and np.all(np.diff(expected[:warm]) > 0)
  # Without warm-up the schedule is optax's plain cosine, as before.
  plain = _step_sizes(finetune.FinetuneConfig(steps=steps), lr, 1.0)
  cosine = np.asarray([optax.cosine_decay_schedule(lr, steps)(t)
                       for t in count])
  np.testing.assert_allclose(-plain, cosine * (1 + 0.9 * m), rtol=1e-5)


def test_clip_norm_bounds_the_gradient_before_the_step():
  config = finetune.FinetuneConfig(steps=4, clip_norm=0.5)
  clipped = _step_sizes(config, 0.1, 100.0)
  same_as = _step_sizes(finetune.FinetuneConfig(steps=4), 0.1, 0.5)
  np.testing.assert_allclose(clipped, same_as, rtol=1e-6)
  free = _step_sizes(finetune.FinetuneConfig(steps=4), 0.1, 100.0)
  assert abs(free[1]) > 100 * abs(clipped[1])


def test_warmup_and_clipping_share_one_compilation_per_schedule():
  bb = toy_backbone()
  x, y = toy_data()
  finetune._compiled.cache_clear()
  for lr in (0.3, 0.1):
    config = finetune.FinetuneConfig(steps=30, learning_rate=lr,
                                     warmup_steps=5, clip_norm=1.0)
    result = finetune.train_and_evaluate(bb, batches(x, y), batches(x, y),
                                         3, config, progress=False)
    np.testing.assert_allclose(result["final_train_loss"],
                               _reference_loss(bb, x, y, config), rtol=1e-5)
    assert result["test_accuracy"] > 0.9
  assert finetune._compiled.cache_info().misses == 1
  finetune.train_and_evaluate(bb, batches(x, y), batches(x, y), 3,
                              finetune.FinetuneConfig(steps=30),
                              progress=False)
  assert finetune._compiled.cache_info().misses == 2   # another schedule


def _image_folder(root, counts):
  """An image folder: ``{class: n}`` distinct 16x16 RGB images."""
  from PIL import Image
  rng = np.random.default_rng(0)
  for name, n in counts.items():
    (root / name).mkdir(parents=True)
    for i in range(n):
      Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(
          root / name / f"{i}.png")
  return root


@pytest.mark.slow
def test_finetune_entry_point_on_a_folder_records_its_split(tmp_path):
  folder = _image_folder(tmp_path / "pets", {"cat": 8, "dog": 6, "emu": 4})
  out = tmp_path / "gt.json"
  command = ["experiments.finetune", "--mode=linear_probe",
             "--models=efficientnet_lite0,efficientnet_lite0@random",
             "--image_size=32", "--steps=5", f"--dataset={folder}",
             "--num_examples=0", "--test_examples=0", "--test_fraction=0.25",
             "--seed=1", "--seeds=0,1", f"--cache_dir={tmp_path / 'cache'}",
             "--warmup_steps=1", "--clip_norm=1", f"--output={out}"]
  proc = run_entry_point(command, cwd=REPO_ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  payload = json.loads(out.read_text())
  assert payload["complete"] is True
  seeds = payload["accuracy_seeds"][str(folder)]
  assert all(set(per) == {"0", "1"} for per in seeds.values())
  for model, per in seeds.items():
    assert payload["accuracies"][str(folder)][model] == pytest.approx(
        np.mean(list(per.values())))
  # How much is left, before and after each run.
  assert "8 run(s) to do: 2 model(s) x 2 seed(s) x 2 grid point(s)" in (
      proc.stdout)
  assert proc.stdout.count(" left, about ") == 7
  # The same command again resumes: every run is kept, none redone.
  again = run_entry_point(command, cwd=REPO_ROOT)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "8 finished run(s) kept" in again.stdout
  assert "0 run(s) to do" in again.stdout
  # ... and a model whose runs are all kept is not prepared again (no
  # feature extraction, no image preloading).
  assert "img/s" in proc.stderr and "img/s" not in again.stderr
  assert json.loads(out.read_text())["runs"] == payload["runs"]
  accs = payload["accuracies"][str(folder)]
  assert set(accs) == {"efficientnet_lite0", "efficientnet_lite0@random"}
  assert all(0.0 <= a <= 1.0 for a in accs.values())
  assert payload["config"]["mode"] == "linear_probe"
  assert payload["config"]["warmup_steps"] == 1
  assert payload["config"]["clip_norm"] == 1.0
  assert payload["config"]["shuffle"].startswith("features in memory")
  # Seeds shuffle the features' epoch order too, not only the head's init.
  assert len({r["final_train_loss"] for r in payload["runs"]}) == 8
  assert {"command", "environment", "runs"} <= set(payload)
  assert {"python", "device", "jax", "optax"} <= set(payload["environment"])
  # How the test set was made: one folder, a seeded disjoint holdout of
  # round_half_up(0.25 c_k) per class (cat 2 of 8, dog 2 (1.5) of 6, emu 1).
  split = payload["config"]["split"]
  assert split["method"] == "holdout" and split["shared_images"] == 0
  assert split["seed"] == 1 and split["test_fraction"] == 0.25
  assert "one image folder" in split["description"]
  train, test = split["train"], split["test"]
  assert train["source"] == test["source"] and str(folder) in train["source"]
  assert test["per_class"] == {"cat": 2, "dog": 2, "emu": 1}
  assert train["per_class"] == {"cat": 6, "dog": 4, "emu": 3}
  assert train["num_examples"] + test["num_examples"] == 18
  assert train["holdout"]["part"] == "train" and test["holdout"]["part"] == (
      "test")
  assert payload["config"]["test"] == test["fingerprint"] != train[
      "fingerprint"]


@pytest.mark.slow
def test_finetune_refuses_a_test_set_of_training_images(tmp_path):
  folder = _image_folder(tmp_path / "pets", {"cat": 3, "dog": 3})
  out = tmp_path / "gt.json"
  for extra, count in [([f"--test_dataset={folder}/"], "6 of 6"),
                       (["--test_split=train"], "4 of 4")]:
    proc = run_entry_point(
        ["experiments.finetune", "--models=efficientnet_lite0",
         f"--dataset={folder}", "--num_examples=0", "--test_examples=0",
         f"--output={out}", *extra], cwd=REPO_ROOT)
    assert proc.returncode != 0
    assert (f"error: train and test splits overlap: {count} test images are "
            "training images") in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not out.exists()
  # A bad @suffix is refused before any data is read (it was ignored).
  proc = run_entry_point(
      ["experiments.finetune", "--models=efficientnet_lite0@rnd",
       f"--dataset={folder}", f"--output={out}"], cwd=REPO_ROOT)
  assert proc.returncode != 0 and not out.exists()
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: unknown model suffix @rnd in 'efficientnet_lite0@rnd'; use "
      "@random for a randomly initialised control.")


def test_seeded_ground_truth_payload_and_resume_rules(tmp_path):
  from sfda_jax.evaluation import ground_truth as entry
  runs = [{"model": "a", "seed": s, "learning_rate": lr, "weight_decay": 0.0,
           "test_accuracy": acc}
          for s, lr, acc in ((0, 0.1, 0.5), (0, 0.01, 0.7), (1, 0.1, 0.9),
                             (1, 0.01, 0.6))]
  runs.append({"model": "b", "learning_rate": 0.1, "weight_decay": 0.0,
               "test_accuracy": 0.4})           # pre --seeds: config seed
  p = entry.seeded_payload("ds", runs, [0, 1], ["a", "b"], {"seed": 0}, 0)
  assert p["accuracy_seeds"]["ds"] == {"a": {"0": 0.7, "1": 0.9},
                                       "b": {"0": 0.4}}
  assert p["accuracies"]["ds"] == {"a": pytest.approx(0.8), "b": 0.4}
  assert p["accuracy_std"]["ds"]["a"] == pytest.approx(np.std([0.7, 0.9],
                                                              ddof=1))
  assert p["accuracy_std"]["ds"]["b"] is None
  assert entry.parse_seeds(None, 3) == [3] and entry.parse_seeds(["0", "2"], 3) == [0, 2]
  with pytest.raises(ValueError, match="integers"):
    entry.parse_seeds(["x"], 0)
  with pytest.raises(ValueError, match="duplicates"):
    entry.parse_seeds(["1", "1"], 0)
  config = {"mode": "full", "steps": 5, "batch_size": 2, "image_size": 32,
            "train": "t", "test": "u", "seed": 0, "shuffle": "per epoch"}
  path = tmp_path / "gt.json"
  assert entry.resumable_runs(str(path), config) == []
  path.write_text(json.dumps({"config": config, "runs": runs}))
  assert entry.resumable_runs(str(path), config) == runs
  with pytest.raises(ValueError, match="different settings .*steps: 5 in "
                                       "the file, 6 now"):
    entry.resumable_runs(str(path), dict(config, steps=6))


def test_training_seed_shuffles_the_epoch_order():
  class _Tiny:
    def batches(self, preprocessing, batch_size):
      del preprocessing
      x = np.arange(10, dtype=np.float32)[:, None]
      return ((x[i:i + batch_size], np.arange(10)[i:i + batch_size])
              for i in range(0, 10, batch_size))

    def __len__(self):
      return 10

  pre = Preprocessing(image_size=1, resize_size=1, mean=(0.0,) * 3,
                      std=(1.0,) * 3)

  def order(seed, epochs=2):
    stream = finetune.replayable_batches(_Tiny(), pre, 4, shuffle_seed=seed)
    return [np.concatenate([y for _, y in stream()]).tolist()
            for _ in range(epochs)]

  assert order(None)[0] == list(range(10))
  a, b = order(0), order(1)
  assert a == order(0)                        # seeded: reproducible
  assert a[0] != a[1]                         # a new order every epoch
  assert a != b and sorted(a[0]) == list(range(10))
