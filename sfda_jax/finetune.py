"""Ground truth by fine-tuning: full fine-tuning or a linear probe with optax.

The SFDA paper's protocol scaled to a budget: a new linear head on the
backbone's features, SGD with Nesterov momentum 0.9, a cosine learning-rate
schedule, decoupled weight decay, a grid over learning rate and weight decay,
and the best test accuracy per model. ``mode="full"`` trains the backbone's
parameters too (batch-norm statistics stay frozen: inference-mode BN, the
usual choice for small fine-tuning batches); ``mode="linear_probe"`` trains
only the head on cached features.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Iterator

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from sfda_jax.backbones.base import Backbone

__all__ = ["FinetuneConfig", "preload", "replayable_batches",
           "train_and_evaluate", "training_step", "optimizer",
           "masked_optimizer"]


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
  """One fine-tuning run."""
  mode: str = "full"              # "full" or "linear_probe"
  steps: int = 200
  batch_size: int = 32
  learning_rate: float = 0.01
  weight_decay: float = 1e-4
  seed: int = 0
  warmup_steps: int = 0           # linear warm-up from 0 before the cosine
  clip_norm: float = 0.0          # clip the gradient's global norm (0: off)

  def __post_init__(self):
    if self.mode not in ("full", "linear_probe"):
      raise ValueError(f"mode must be 'full' or 'linear_probe', got "
                       f"{self.mode!r}.")
    if self.steps < 1 or self.batch_size < 1 or self.learning_rate <= 0 \
        or self.weight_decay < 0:
      raise ValueError(f"invalid fine-tuning config {self}.")
    if not 0 <= self.warmup_steps < self.steps:
      raise ValueError(f"warmup_steps must be in [0, steps={self.steps}), "
                       f"got {self.warmup_steps}.")
    if not self.clip_norm >= 0:
      raise ValueError(f"clip_norm must be >= 0 (0: no clipping), got "
                       f"{self.clip_norm}.")


def optimizer(config: FinetuneConfig, learning_rate: Any = None,
              weight_decay: Any = None) -> optax.GradientTransformation:
  """SGD, Nesterov momentum 0.9, cosine schedule (after ``warmup_steps`` of
  linear warm-up from 0, if any), decoupled weight decay; the gradient's
  global norm clipped to ``clip_norm`` first when it is > 0.

  ``learning_rate`` / ``weight_decay`` (default: the config's) may be traced
  scalars: the state's structure does not depend on their values, so one
  compiled training step serves a whole grid (see
  :func:`train_and_evaluate`).
  """
  lr = config.learning_rate if learning_rate is None else learning_rate
  wd = config.weight_decay if weight_decay is None else weight_decay
  if config.warmup_steps:
    warm, decay = config.warmup_steps, config.steps - config.warmup_steps

    def schedule(count):             # optax's warm-up schedule cannot take
      frac = jnp.clip((count - warm) / decay, 0.0, 1.0)  # a traced peak
      return lr * jnp.where(count < warm, count / warm,
                            0.5 * (1.0 + jnp.cos(jnp.pi * frac)))
  else:
    schedule = optax.cosine_decay_schedule(lr, config.steps)
  clip = ([optax.clip_by_global_norm(config.clip_norm)]
          if config.clip_norm > 0 else [])
  return optax.chain(*clip, optax.add_decayed_weights(wd),
                     optax.sgd(schedule, momentum=0.9, nesterov=True))


def masked_optimizer(config: FinetuneConfig, mask: Any,
                     learning_rate: Any = None, weight_decay: Any = None
                     ) -> optax.GradientTransformation:
  """:func:`optimizer` on the leaves where ``mask`` is True; the others are
  frozen by optax itself (``set_to_zero``: zero updates, no state)."""
  return optax.multi_transform(
      {"train": optimizer(config, learning_rate, weight_decay),
       "freeze": optax.set_to_zero()},
      jax.tree_util.tree_map(lambda m: "train" if m else "freeze", mask))


@functools.lru_cache(maxsize=16)
def _compiled(apply_fn: Any, full: bool, steps: int, mask_leaves: tuple,
              mask_tree: Any, warmup_steps: int = 0, clip_norm: float = 0.0
              ) -> tuple[Any, Any]:
  """``(step, predict)`` jitted once per backbone function, mode, schedule
  (length, warm-up, clipping) and trainable mask; the learning rate and
  weight decay are arguments, so every seed and grid point of a model reuses
  one compilation (per batch shape)."""
  mask = jax.tree_util.tree_unflatten(mask_tree, mask_leaves)
  config = FinetuneConfig(mode="full" if full else "linear_probe",
                          steps=steps, warmup_steps=warmup_steps,
                          clip_norm=clip_norm)

  def logits_fn(variables, inputs):
    feats = apply_fn(variables["backbone"], inputs)[0] if full else inputs
    h = variables["head"]
    return feats @ h["w"] + h["b"]

  def loss_fn(variables, inputs, labels):
    logits = logits_fn(variables, inputs)
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, labels).mean()

  @jax.jit
  def step(variables, opt_state, inputs, labels, lr, wd):
    tx = masked_optimizer(config, mask, lr, wd)
    loss, grads = jax.value_and_grad(loss_fn)(variables, inputs, labels)
    updates, opt_state = tx.update(grads, opt_state, variables)
    return optax.apply_updates(variables, updates), opt_state, loss

  predict = jax.jit(lambda v, x: jnp.argmax(logits_fn(v, x), axis=1))
  return step, predict


def _trainable_mask(params: Any) -> Any:
  """True for float leaves outside batch-norm statistics."""
  def keep(path, leaf):
    names = {getattr(p, "key", getattr(p, "name", None)) for p in path}
    return (jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating)
            and "batch_stats" not in names)
  return jax.tree_util.tree_map_with_path(keep, params)


def _cycle(make_batches) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Endless epochs over a deterministic batch stream (no reshuffle)."""
  while True:
    yielded = False
    for batch in make_batches():
      yielded = True
      yield batch
    if not yielded:
      raise ValueError("the training dataset yielded no batches.")


_IN_MEMORY_BYTES = 2 << 30


def preload(ds: Any, preprocessing: Any, batch_size: int
            ) -> tuple[np.ndarray, np.ndarray] | None:
  """``ds`` preprocessed into memory as ``(images, labels)`` when it fits in
  2 GiB, else ``None`` (see :func:`replayable_batches`)."""
  size = preprocessing.image_size
  if len(ds) * size * size * 3 * 4 > _IN_MEMORY_BYTES:
    return None
  images, labels = zip(*ds.batches(preprocessing, batch_size))
  return np.concatenate(images), np.concatenate(labels)


def replayable_batches(ds: Any, preprocessing: Any, batch_size: int,
                       shuffle_seed: int | None = None,
                       preloaded: Any = False):
  """Zero-argument batch stream over ``ds`` (anything with ``__len__`` and
  ``batches(preprocessing, batch_size)``, e.g. ``sfda_jax.data.load(...)``)
  for :func:`train_and_evaluate`.

  The preprocessed images are kept in memory when they fit in 2 GiB, so each
  epoch after the first costs no decoding (a TFDS subset otherwise re-reads
  the whole split per epoch); larger sets are streamed again every epoch, in
  record order. In memory, ``shuffle_seed`` permutes the samples every epoch
  (``default_rng([shuffle_seed, epoch])``): a training seed then varies the
  batch order as well as the head's initialisation. ``preloaded``: the
  result of :func:`preload` for the same arguments, so several runs share
  one decoding pass (default: preload here).
  """
  if preloaded is False:
    preloaded = preload(ds, preprocessing, batch_size)
  if preloaded is None:
    return lambda: ds.batches(preprocessing, batch_size)
  images, labels = preloaded
  epoch = [0]

  def batches():
    order = np.arange(len(labels))
    if shuffle_seed is not None:
      order = np.random.default_rng([shuffle_seed, epoch[0]]).permutation(
          order)
    epoch[0] += 1
    return ((images[order[i:i + batch_size]], labels[order[i:i + batch_size]])
            for i in range(0, len(labels), batch_size))

  return batches



def training_step(backbone: Backbone, num_classes: int,
                  config: FinetuneConfig) -> tuple[Any, Any, Any]:
  """The pieces of one run: ``(step, predict, state)``.

  ``state`` holds the trainable variables (a new head initialised from
  ``config.seed``, plus the backbone's parameters in full mode) and the
  optimizer state; ``step(state, inputs, labels) -> (state, loss)`` is one
  SGD step on a batch, ``predict(state, inputs) -> class ids``. The compiled
  functions behind them are shared by every run of the same backbone, mode,
  schedule length and trainable mask (:func:`_compiled`).
  """
  full = config.mode == "full"
  key = jax.random.PRNGKey(config.seed)
  head = {"w": jax.random.normal(key, (backbone.feature_dim, num_classes))
          * 0.01, "b": jnp.zeros((num_classes,))}
  trainable = {"head": head,
               "backbone": backbone.params if full else None}
  mask = {"head": jax.tree_util.tree_map(lambda _: True, head),
          "backbone": _trainable_mask(backbone.params) if full else None}
  opt_state = masked_optimizer(config, mask).init(trainable)
  mask_leaves, mask_tree = jax.tree_util.tree_flatten(mask)
  compiled_step, compiled_predict = _compiled(
      backbone.apply_fn, full, config.steps, tuple(mask_leaves), mask_tree,
      config.warmup_steps, config.clip_norm)
  lr = jnp.asarray(config.learning_rate, jnp.float32)
  wd = jnp.asarray(config.weight_decay, jnp.float32)

  def step(state, inputs, labels):
    variables, opt = state
    variables, opt, loss = compiled_step(variables, opt, jnp.asarray(inputs),
                                         jnp.asarray(labels), lr, wd)
    return (variables, opt), loss

  def predict(state, inputs):
    return compiled_predict(state[0], inputs)

  return step, predict, (trainable, opt_state)


def train_and_evaluate(backbone: Backbone, train_batches, test_batches,
                       num_classes: int, config: FinetuneConfig,
                       progress: bool = True) -> dict[str, float]:
  """Trains a new head (and, in full mode, the backbone); returns metrics.

  Args:
    backbone: the model (``params`` are not modified in place).
    train_batches: zero-argument callable returning an iterator of
      ``(inputs, labels)``: images ``[B, H, W, 3]`` in full mode, features
      ``[B, D]`` in linear-probe mode. Re-called for every epoch.
    test_batches: the same for the evaluation set (one pass).
    num_classes: target classes (labels are ``0..K-1``).
    config: the run's hyper-parameters.

  Returns:
    ``{"test_accuracy", "final_train_loss", "seconds"}``.
  """
  step, predict, state = training_step(backbone, num_classes, config)
  start = time.perf_counter()
  loss = float("nan")
  stream = _cycle(train_batches)
  for _ in tqdm.trange(config.steps, disable=not progress,
                       desc=f"{backbone.name} {config.mode} "
                            f"lr={config.learning_rate:g} "
                            f"wd={config.weight_decay:g}"):
    inputs, labels = next(stream)
    state, loss = step(state, inputs, labels)
  correct = total = 0
  for inputs, labels in test_batches():
    pred = np.asarray(predict(state, jnp.asarray(inputs)))
    correct += int((pred == np.asarray(labels)).sum())
    total += len(labels)
  if total == 0:
    raise ValueError("the test dataset yielded no batches.")
  result = {"test_accuracy": correct / total, "final_train_loss": float(loss),
            "seconds": time.perf_counter() - start}
  logging.info("%s %s: %s", backbone.name, config, result)
  return result
