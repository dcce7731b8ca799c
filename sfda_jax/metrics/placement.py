"""Placement: features sharded over the sample axis (the one mesh axis,
:data:`SAMPLE_AXIS`), and where each metric's work runs.

Every metric accepts a ``jax.Array`` sharded over samples (a
``NamedSharding(mesh, P('data', None))`` on axis 0) in place of a host array:
validation runs as on-device reductions, the array stays on its devices, and
the jitted kernels run SPMD with their statistics (class sums, scatter
matrices) reduced across devices by the compiler. NLEEP and PARC run their
principal-component step data-parallel, then gather the *reduced* matrix onto
one device for their inherently global step (mixture fit; ``N x N`` pairs).

Example (on one host with several devices; on CPU, simulate 8 with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before JAX starts):

  >>> import numpy as np, sfda_jax
  >>> from sfda_jax.metrics import placement
  >>> rng = np.random.default_rng(0)
  >>> y = np.repeat(np.arange(4), 32)
  >>> x = placement.shard_samples(rng.normal(size=(128, 16)) + np.eye(16)[y])
  >>> 0.0 < sfda_jax.sfda(x, y) <= 1.0
  True

Multi-host: after ``jax.distributed.initialize()``, build the mesh from
``jax.devices()`` (all processes' devices) and make the global array with
``jax.make_array_from_process_local_data(NamedSharding(mesh, P('data')),
local_rows)``; each process then calls the same metric with the same labels
(every process needs all ``N`` labels) and gets the same score. This path is
not tested here (one host only).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["SAMPLE_AXIS", "sample_mesh", "sample_sharding", "shard_samples",
           "place_like_samples", "gather_if_sharded"]

#: The name of the mesh axis samples are split over, everywhere (metrics,
#: feature extraction).
SAMPLE_AXIS = "data"


def sample_mesh(devices: Sequence[jax.Device] | None = None,
                axis_name: str = SAMPLE_AXIS) -> Mesh:
  """A 1-D mesh over ``devices`` (default: all of ``jax.devices()``)."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("sample_mesh needs at least one device.")
  return Mesh(np.array(devices), (axis_name,))


def sample_sharding(mesh: Mesh | None = None, axis_name: str = SAMPLE_AXIS,
                    ndim: int = 2) -> NamedSharding:
  """``NamedSharding(mesh, P(axis_name, None, ...))``: axis 0 split over the
  mesh axis, the others replicated."""
  mesh = sample_mesh(axis_name=axis_name) if mesh is None else mesh
  if axis_name not in mesh.axis_names:
    raise ValueError(f"mesh has no axis {axis_name!r} (axes: "
                     f"{mesh.axis_names}).")
  return NamedSharding(mesh, P(axis_name, *([None] * (ndim - 1))))


def shard_samples(x: Any, mesh: Mesh | None = None,
                  axis_name: str = SAMPLE_AXIS) -> jax.Array:
  """Places ``x [N, ...]`` on ``mesh`` split over its samples (axis 0).

  Args:
    x: a host or device array with the sample axis first.
    mesh: default :func:`sample_mesh` over all devices.
    axis_name: the mesh axis the samples are split over.

  Returns:
    A ``jax.Array`` with :func:`sample_sharding`.

  Raises:
    ValueError: ``N`` is not a multiple of the mesh axis size. JAX shards
      evenly only, and padding rows would change every metric's statistics, so
      drop the remainder (e.g. a stratified subsample of a multiple of the
      device count) or use a mesh whose size divides ``N``.
  """
  arr = x if isinstance(x, jax.Array) else np.asarray(x)
  if arr.ndim < 1:
    raise ValueError("shard_samples needs an array with a sample axis.")
  sharding = sample_sharding(mesh, axis_name, arr.ndim)
  size = sharding.mesh.shape[axis_name]
  n = arr.shape[0]
  if n % size:
    raise ValueError(
        f"cannot shard {n} samples evenly over {size} devices (mesh axis "
        f"{axis_name!r}): {n} % {size} = {n % size}. Drop {n % size} "
        f"sample(s) (e.g. a stratified subsample of {n - n % size}) or use a "
        f"mesh whose {axis_name!r} size divides {n}; padding is not offered "
        "because padded rows would change the metrics' statistics.")
  return jax.device_put(arr, sharding)


def place_like_samples(values: Any, x: jax.Array) -> jax.Array:
  """``values`` (``[N, ...]``, e.g. label codes) as a device array laid out
  like ``x``'s sample axis.

  When ``x`` is sharded over samples by a ``NamedSharding``, ``values`` gets
  the same partitioning of its first axis (the rest replicated), so a jitted
  kernel sees both sharded alike and stays data-parallel; otherwise it is a
  plain ``jnp.asarray``.
  """
  sharding = getattr(x, "sharding", None)
  if (isinstance(sharding, jax.sharding.NamedSharding)
      and len(sharding.spec) > 0 and sharding.spec[0] is not None):
    arr = np.asarray(values)
    spec = jax.sharding.PartitionSpec(sharding.spec[0],
                                      *([None] * (arr.ndim - 1)))
    return jax.device_put(arr, jax.sharding.NamedSharding(sharding.mesh, spec))
  return jnp.asarray(values)


def gather_if_sharded(x: jax.Array) -> jax.Array:
  """``x`` on one device when it is spread over several.

  For the metrics whose algorithm is inherently global (NLEEP's mixture fit,
  PARC's ``N x N`` comparison), run after their data-parallel reduction step.
  In a single process the array moves device to device onto the lowest-id
  device holding a shard (never through the host); with several processes
  (``jax.distributed``) it is replicated over its mesh instead, so every
  process computes the same global step.
  """
  sharding = getattr(x, "sharding", None)
  if sharding is None or len(sharding.device_set) <= 1:
    return x
  if jax.process_count() == 1:
    return jax.device_put(x, min(sharding.device_set, key=lambda d: d.id))
  if not isinstance(sharding, jax.sharding.NamedSharding):
    raise ValueError("multi-process input must be sharded with a "
                     "jax.sharding.NamedSharding.")
  replicated = jax.sharding.NamedSharding(sharding.mesh,
                                          jax.sharding.PartitionSpec())
  return jax.jit(lambda a: a, out_shardings=replicated)(x)
