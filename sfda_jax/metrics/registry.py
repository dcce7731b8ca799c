"""Every metric, declared once: ``REGISTRY`` of :class:`MetricSpec`.

Each metric module (``_<name>.py``) ends with ``SPEC = MetricSpec(...)`` (or
``SPECS``); this module collects them, so adding a metric touches its own
file, its NumPy reference and its tests. ``ALL_METRICS``, ``FEATURE_METRICS``
and ``SOURCE_METRICS`` derive from it, as do ``score_models``, streaming's
list of counterparts and the benchmark.

Example:
  >>> from sfda_jax.metrics import registry
  >>> registry.REGISTRY["gbc"].defaults["pca_dim"]
  64
  >>> registry.SOURCE_METRICS
  ('leep', 'nce')
"""

from __future__ import annotations

import importlib
import pkgutil

from sfda_jax.metrics._spec import (INPUT_KINDS, PLACEMENTS, MetricSpec,
                                    Prepared)

__all__ = ["MetricSpec", "Prepared", "INPUT_KINDS", "PLACEMENTS", "REGISTRY",
           "ALL_METRICS", "FEATURE_METRICS", "SOURCE_METRICS",
           "STREAMING_METRICS", "get"]


def _collect() -> dict[str, MetricSpec]:
  import sfda_jax.metrics as package   # pylint: disable=import-outside-toplevel
  specs = []
  for info in pkgutil.iter_modules(package.__path__):
    if not info.name.startswith("_") or info.name in ("_spec", "_runner",
                                                      "_validation"):
      continue
    module = importlib.import_module(f"{package.__name__}.{info.name}")
    found = getattr(module, "SPECS", None) or (
        (module.SPEC,) if hasattr(module, "SPEC") else ())
    specs.extend(found)
  specs.sort(key=lambda s: (s.order, s.name))
  names = [s.name for s in specs]
  if len(set(names)) != len(names):
    raise RuntimeError(f"duplicate metric names in the registry: {names}")
  return {s.name: s for s in specs}


#: ``{name: MetricSpec}`` in the documented order.
REGISTRY: dict[str, MetricSpec] = _collect()
#: Every metric ``score_models`` knows.
ALL_METRICS = tuple(REGISTRY)
#: Metrics computed from features and target labels.
FEATURE_METRICS = tuple(n for n, s in REGISTRY.items()
                        if s.inputs == "features")
#: Metrics that need the source model's classifier outputs.
SOURCE_METRICS = tuple(n for n, s in REGISTRY.items()
                       if s.inputs != "features")
#: Metrics with a ``sfda_jax.streaming`` counterpart.
STREAMING_METRICS = tuple(n for n, s in REGISTRY.items() if s.streaming)


def get(name: str) -> MetricSpec:
  """The spec of metric ``name``; ValueError naming the valid ones."""
  if name not in REGISTRY:
    raise ValueError(f"unknown metric {name!r}; valid: {list(ALL_METRICS)}.")
  return REGISTRY[name]
