"""Run by tests/metrics/test_placement.py in a fresh process with 8 fake CPU
devices.

``XLA_FLAGS=--xla_force_host_platform_device_count=8`` must be set before JAX
initialises, hence a subprocess. Prints one JSON line ``RESULT {...}`` that
the test inspects; every number in it is measured here.
"""

import json
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

jax.config.update("jax_enable_x64", True)

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _TESTS)                     # conftest
sys.path.insert(0, os.path.dirname(_TESTS))    # the repository root

import sfda_jax  # noqa: E402
from sfda_jax import features as features_lib  # noqa: E402
from sfda_jax import sharding  # noqa: E402
from sfda_jax.backbones.base import Backbone, Preprocessing  # noqa: E402
from sfda_jax.metrics import _runner, _validation, registry  # noqa: E402
from conftest import make_features  # noqa: E402

N, D, C = 4000, 64, 10
# NLEEP (k-means + EM) and PARC (N x N) are global after their PCA: a smaller
# set keeps the single-device reference runs short.
N_GLOBAL, C_GLOBAL = 800, 4

# Data-parallel metrics (from the registry): each public wrapper calls its
# jitted core through metrics/_runner.py (``_runner.jitted``).
# Variants share their base metric's kernel and are left out.
KERNELS = [name for name, spec in registry.REGISTRY.items()
           if spec.placement == "data_parallel" and spec.prepare is not None
           and spec.variant_of is None]


def collectives(hlo_text):
  """``[(op, shape string)]`` of the cross-device collectives in HLO text."""
  # One instruction per line: "%name = <shape> <op>(operands), ...". A tuple
  # shape may hold "/*index=5*/" comments, so match lazily within the line.
  return re.findall(
      r"^\s*(?:ROOT )?%\S+ = (.*?) (all-gather|all-reduce|all-to-all|"
      r"collective-permute|reduce-scatter)(?:-start)?\(", hlo_text,
      flags=re.MULTILINE)


def gathers_samples(hlo_text, n):
  """Collectives that move the sample axis: all-gathers whose result has an
  axis of length ``n`` (the samples), and any all-to-all (a resharding)."""
  return [f"{op} {shape}" for shape, op in collectives(hlo_text)
          if op == "all-to-all"
          or (op == "all-gather" and re.search(rf"[\[,]{n}[\],]", shape))]


def spy_jitted(calls):
  """Records every jitted core call the runner makes (the compiled function,
  its arguments)."""
  original = _runner.jitted

  def jitted(core, static_names):
    fn = original(core, static_names)

    def call(*args, **kwargs):
      calls.append((fn, args, kwargs))
      return fn(*args, **kwargs)

    return call

  _runner.jitted = jitted
  return original


def metric_checks(out):
  mesh = sharding.sample_mesh()
  x, y = make_features(N, D, C, seed=0)
  rng = np.random.default_rng(1)
  theta = rng.dirichlet(np.ones(7), size=N)
  xg, yg = make_features(N_GLOBAL, D, C_GLOBAL, seed=2, separation=0.7)
  xs = sharding.shard_samples(x, mesh)
  thetas = sharding.shard_samples(theta, mesh)
  xgs = sharding.shard_samples(xg, mesh)
  before = {"x": xs.sharding, "theta": thetas.sharding, "xg": xgs.sharding}

  calls = []
  original_jitted = spy_jitted(calls)
  gathered = []
  original_gather = _validation.gather_if_sharded

  def gather_spy(a):
    gathered.append(list(a.shape))
    return original_gather(a)

  _validation.gather_if_sharded = gather_spy

  inputs = {m: (x, xs, y) for m in KERNELS}
  inputs["leep"] = (theta, thetas, y)
  inputs["nleep"] = (xg, xgs, yg)
  inputs["parc"] = (xg, xgs, yg)
  results = {}
  for metric, (host, sharded, labels) in inputs.items():
    fn = registry.get(metric).fn
    single = fn(host, labels)
    calls.clear()
    gathered.clear()
    # No implicit device -> host copy (np.asarray, float() of a device array)
    # may happen on sharded input; validation fetches scalars explicitly.
    with jax.transfer_guard_device_to_host("disallow"):
      multi = fn(sharded, labels)
    entry = {"single": single, "sharded": multi,
             "rel": abs(multi - single) / max(abs(single), 1e-300),
             "gathered_shapes": list(gathered)}
    if calls:
      kernel, args, kwargs = calls[0]
      compiled = kernel.lower(*args, **kwargs).compile()
      text = compiled.as_text()
      entry["input_devices"] = len(compiled.input_shardings[0][0].device_set)
      entry["input_spec"] = str(getattr(compiled.input_shardings[0][0],
                                        "spec", ""))
      entry["label_devices"] = len(args[1].sharding.device_set)
      entry["sample_all_gathers"] = gathers_samples(text, N)
      entry["all_reduces"] = len([1 for _, op in collectives(text)
                                  if op == "all-reduce"])
    results[metric] = entry
  _validation.gather_if_sharded = original_gather
  _runner.jitted = original_jitted
  # NCE takes labels only: a sharded array of source labels is read back to
  # the host like any label array (labels are [N] ids, not the features).
  z = theta.argmax(1)
  single = sfda_jax.nce(z, y)
  multi = sfda_jax.nce(sharding.shard_samples(z, mesh), y)
  results["nce"] = {"single": single, "sharded": multi,
                    "rel": abs(multi - single) / abs(single),
                    "gathered_shapes": []}
  out["metrics"] = results
  out["shardings_unchanged"] = (
      xs.sharding == before["x"] and thetas.sharding == before["theta"]
      and xgs.sharding == before["xg"] and not xs.is_deleted())
  out["input_shard_rows"] = sorted({s.data.shape[0]
                                    for s in xs.addressable_shards})
  # Negative controls: the same detector sees kernels that need every sample
  # on every device (the matrix replicated; a sort along the samples).
  replicated = NamedSharding(mesh, P())
  controls = {
      "replicate": lambda a: jax.lax.with_sharding_constraint(
          a, replicated).sum(axis=0),
      "sort": lambda a: jnp.sort(a, axis=0)[N // 2],
  }
  out["control_sample_all_gathers"] = {
      name: gathers_samples(jax.jit(f).lower(xs).compile().as_text(), N)
      for name, f in controls.items()}
  # Uneven N: an explicit error naming the problem.
  try:
    sharding.shard_samples(x[:N + 1 - 8], mesh)
    out["uneven_error"] = None
  except ValueError as e:
    out["uneven_error"] = str(e)
  # score on a sharded float32 array too (the default dtype).
  out["float32_rel"] = abs(
      sfda_jax.hscore(jnp.asarray(xs, jnp.float32), y)
      - sfda_jax.hscore(x.astype(np.float32), y)) / abs(
          sfda_jax.hscore(x.astype(np.float32), y))


def extraction_checks(out):
  pre = Preprocessing(image_size=4, resize_size=4, mean=(0.5,) * 3,
                      std=(0.5,) * 3)

  class Dataset:
    def __init__(self, n):
      rng = np.random.default_rng(0)
      self.images = rng.uniform(size=(n, 4, 4, 3)).astype(np.float32)
      self.labels = np.arange(n) % 3
      self.num_examples = n
      self.fingerprint = f"fake:{n}"

    def batches(self, preprocessing, batch_size):
      for start in range(0, self.num_examples, batch_size):
        yield (self.images[start:start + batch_size],
               self.labels[start:start + batch_size])

  w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5)), jnp.float32)
  jitted = jax.jit(lambda p, im: ((f := jnp.tanh(im.mean(axis=(1, 2)) @ p)),
                                  f[:, :2]))
  seen = []

  def apply(params, images):
    seen.append((tuple(images.shape),
                 len(getattr(images, "sharding", None).device_set)
                 if isinstance(images, jax.Array) else 0))
    return jitted(params, images)

  bb = Backbone(name="toy/sharded", preprocessing=pre, feature_dim=5,
                num_source_classes=2, weights_id="toy", apply_fn=apply,
                params=w)
  ds = Dataset(29)
  multi = features_lib.extract(bb, ds, batch_size=6, use_cache=False,
                               progress=False)
  multi_seen = list(seen)
  seen.clear()
  single = features_lib.extract(bb, ds, batch_size=6, use_cache=False,
                                progress=False, data_parallel=False)
  want = np.tanh(ds.images.mean(axis=(1, 2)) @ np.asarray(w))
  out["extract"] = {
      "batches_seen": multi_seen[:2], "single_seen": seen[:1],
      "max_diff_vs_single": float(np.max(np.abs(multi.features
                                                - single.features))),
      "max_diff_logits": float(np.max(np.abs(multi.source_logits
                                             - single.source_logits))),
      "max_diff_vs_numpy": float(np.max(np.abs(multi.features - want))),
      "rows": int(multi.features.shape[0]),
      "labels_equal": bool(np.array_equal(multi.labels, ds.labels)),
  }


def main():
  out = {"devices": jax.device_count()}
  metric_checks(out)
  extraction_checks(out)
  print("RESULT " + json.dumps(out))


if __name__ == "__main__":
  main()
