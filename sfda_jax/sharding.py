"""``sfda_jax.sharding``: re-exports :mod:`sfda_jax.metrics.placement` (the
one placement module: sample mesh, sample sharding, the ``"data"`` axis)."""

from sfda_jax.metrics.placement import (SAMPLE_AXIS, gather_if_sharded,
                                        place_like_samples, sample_mesh,
                                        sample_sharding, shard_samples)

__all__ = ["SAMPLE_AXIS", "gather_if_sharded", "place_like_samples",
           "sample_mesh", "sample_sharding", "shard_samples"]
