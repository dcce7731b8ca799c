"""Every metric, declared once: ``REGISTRY`` of :class:`MetricSpec`.

Each metric module (``_<name>.py``) ends with ``SPEC = MetricSpec(...)`` (or
``SPECS``); this module collects them, so adding a metric touches its own
file, its NumPy reference and its tests. ``ALL_METRICS``, ``FEATURE_METRICS``
and ``SOURCE_METRICS`` derive from it, as do ``score_models``, streaming's
list of counterparts and the benchmark.

Set-level metrics (``SET_SPEC = SetMetricSpec(...)``: ETran, NCTI) are in
``SET_REGISTRY``; their per-model parts are ordinary entries of ``REGISTRY``
(``spec.part_of`` set) that the default lists leave out, as are named
option presets (``spec.variant_of`` set: ``sfda_lw``, ``logme_corrected``...). ``ALL_METRICS`` and
``FEATURE_METRICS`` hold the set-level names, not their parts;
:func:`expand` turns a list of names into the per-model metrics to score.

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
                                    Prepared, SetMetricSpec)

__all__ = ["MetricSpec", "SetMetricSpec", "Prepared", "INPUT_KINDS",
           "PLACEMENTS", "REGISTRY", "SET_REGISTRY", "ALL_METRICS",
           "FEATURE_METRICS", "SOURCE_METRICS", "SET_METRICS", "PART_METRICS",
           "VARIANT_METRICS", "KNOWN_METRICS",
           "STREAMING_METRICS", "get", "expand"]

_NOT_METRICS = ("_spec", "_runner", "_validation")


def _collect() -> tuple[dict[str, MetricSpec], dict[str, SetMetricSpec]]:
  import sfda_jax.metrics as package   # pylint: disable=import-outside-toplevel
  specs, set_specs = [], []
  for info in pkgutil.iter_modules(package.__path__):
    if not info.name.startswith("_") or info.name in _NOT_METRICS:
      continue
    module = importlib.import_module(f"{package.__name__}.{info.name}")
    found = getattr(module, "SPECS", None) or (
        (module.SPEC,) if hasattr(module, "SPEC") else ())
    specs.extend(found)
    if hasattr(module, "SET_SPEC"):
      set_specs.append(module.SET_SPEC)
  specs.sort(key=lambda s: (s.order, s.name))
  set_specs.sort(key=lambda s: (s.order, s.name))
  names = [s.name for s in specs + set_specs]
  if len(set(names)) != len(names):
    raise RuntimeError(f"duplicate metric names in the registry: {names}")
  by_name = {s.name: s for s in specs}
  for ss in set_specs:
    wrong = [p for p in ss.parts
             if p not in by_name or by_name[p].part_of != ss.name]
    if wrong:
      raise RuntimeError(f"set-level metric {ss.name!r}: parts {wrong} are "
                         f"not registered with part_of={ss.name!r}.")
  return by_name, {s.name: s for s in set_specs}


#: ``{name: MetricSpec}`` of every per-model metric (set-level parts
#: included), in the documented order.
#: ``{name: SetMetricSpec}`` of the set-level metrics.
REGISTRY, SET_REGISTRY = _collect()
_LISTED = sorted(
    [s for s in REGISTRY.values() if s.part_of is None and s.variant_of is None]
    + list(SET_REGISTRY.values()), key=lambda s: (s.order, s.name))
#: Every metric ``score_models`` scores by default: per-model metrics and
#: set-level ones (not the set-level metrics' parts).
ALL_METRICS = tuple(s.name for s in _LISTED)
#: Metrics computed from features and target labels.
FEATURE_METRICS = tuple(s.name for s in _LISTED if s.inputs == "features")
#: Metrics that need the source model's classifier outputs.
SOURCE_METRICS = tuple(s.name for s in _LISTED if s.inputs != "features")
#: Set-level metrics (a min-max over the candidate models).
SET_METRICS = tuple(SET_REGISTRY)
#: The per-model parts of the set-level metrics (scored when named).
PART_METRICS = tuple(n for n, s in REGISTRY.items() if s.part_of)
#: Named option presets of other metrics (``sfda_lw``...; scored when named).
VARIANT_METRICS = tuple(n for n, s in REGISTRY.items() if s.variant_of)
#: Every name ``score_models`` accepts.
KNOWN_METRICS = ALL_METRICS + PART_METRICS + VARIANT_METRICS
#: Metrics with a ``sfda_jax.streaming`` counterpart.
STREAMING_METRICS = tuple(n for n, s in REGISTRY.items() if s.streaming)


def get(name: str) -> MetricSpec | SetMetricSpec:
  """The spec of metric ``name`` (a part or a set-level metric included);
  ValueError naming the valid ones."""
  if name in REGISTRY:
    return REGISTRY[name]
  if name in SET_REGISTRY:
    return SET_REGISTRY[name]
  raise ValueError(f"unknown metric {name!r}; {valid_names()}.")


def valid_names() -> str:
  """"valid: [...]" naming every accepted metric name, by kind."""
  text = f"valid: {list(ALL_METRICS)}"
  if VARIANT_METRICS:
    text += f", the variants {list(VARIANT_METRICS)}"
  if PART_METRICS:
    text += f" and the set-level parts {list(PART_METRICS)}"
  return text


def expand(names) -> tuple[str, ...]:
  """The per-model metrics to score for ``names``: each set-level name
  replaced by its parts, duplicates dropped, order kept."""
  out: list[str] = []
  for name in names:
    for m in (SET_REGISTRY[name].parts if name in SET_REGISTRY else (name,)):
      if m not in out:
        out.append(m)
  return tuple(out)
