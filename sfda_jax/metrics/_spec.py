"""``MetricSpec``: how one metric is declared (see ``registry.py``).

Each metric module ends with ``SPEC = MetricSpec(...)`` (or ``SPECS = (...)``
when it defines several); ``registry.py`` collects them. Everything that runs
a metric by name (the public wrapper, ``score_models``, streaming, the
benchmark, the tests) reads this one declaration.

A set-level metric (ETran, NCTI) also declares ``SET_SPEC = SetMetricSpec(
...)``: a weighted sum of min-max normalised per-model *parts*, each part an
ordinary ``MetricSpec`` with ``part_of`` set. The min-max runs over the
candidate models of one target set, so a set-level score depends on the whole
candidate set; the parts do not.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, NamedTuple

import jax
import numpy as np

#: What a metric scores: target-set features ``[N, D]``, the source model's
#: class probabilities ``[N, Z]`` or its hard labels ``[N]``.
INPUT_KINDS = ("features", "source_probs", "source_labels")
#: ``"data_parallel"``: a features array sharded over samples stays sharded
#: and the kernel runs SPMD; ``"gather"``: a data-parallel reduction, then the
#: reduced matrix is gathered onto one device for an inherently global step.
PLACEMENTS = ("data_parallel", "gather")


class Prepared(NamedTuple):
  """What ``MetricSpec.prepare`` returns for a core call ``core(x, *args,
  **static)``.

  Attributes:
    rows: host indices of the samples to keep (``None``: all of them).
    args: arrays passed after the features (labels in the form the core
      takes: codes, one-hot, an index table, ...), as NumPy.
    static: the core's static keyword arguments.
    per_sample: for each entry of ``args``, whether its first axis is the
      sample axis (it is then laid out like a sharded ``x``).
  """
  rows: np.ndarray | None
  args: tuple
  static: dict
  per_sample: tuple


def codes(enc, **_) -> Prepared:
  """Label codes ``[N]`` and ``num_classes``: the usual core convention."""
  return Prepared(None, (enc.codes,), {"num_classes": enc.num_classes},
                  (True,))


def one_hot(enc, **_) -> Prepared:
  """One-hot labels ``[N, K]`` (float, cast to the features' dtype by the
  core), formed on the device."""
  return Prepared(None, (jax.nn.one_hot(enc.codes, enc.num_classes),), {},
                  (True,))


@dataclasses.dataclass(frozen=True)
class MetricSpec:
  """The one declaration of a metric.

  Attributes:
    name: the public name (``sfda_jax.<name>``, ``score_models`` metric).
    order: position in :data:`registry.ALL_METRICS` (the documented order).
    fn: the public, validating wrapper.
    core: the pure kernel ``core(x, *prepared.args, **prepared.static)``
      (vmappable over ``x``); ``None`` when the metric has no such kernel.
    inputs: one of :data:`INPUT_KINDS`.
    prepare: ``prepare(enc, **options) -> Prepared``: the labels in the
      form ``core`` takes, from the encoded labels and the options (defaults
      merged with the caller's). ``None``: the metric is not batched by
      ``score_models`` (it runs ``compute`` per model).
    compute: ``compute(x, enc, **options) -> score array`` for a metric
      whose scoring is more than one core call (host steps, a gather);
      default: the prepared core call.
    check_options: raises ValueError for invalid options (before any data
      is looked at).
    check_input: ``check_input(x, enc, **options)`` raises ValueError for
      input this metric cannot score (after the generic checks, before the
      value checks).
    scale_invariant: the score is unchanged when the features are
      multiplied by a positive constant (out-of-range magnitudes are then
      rescaled by a power of two instead of rejected).
    placement: one of :data:`PLACEMENTS`.
    defaults: the wrapper's option defaults (what ``score_models`` uses).
    seeded_option: the option ``score_models(seed=...)`` sets, if any.
    streaming: the name of its ``sfda_jax.streaming`` counterpart, if any.
    hint: appended to the non-finite-score message.
    part_of: the set-level metric this is a raw part of (then it is not in
      the default metric lists; ``score_models`` scores it when asked by
      name or for its set-level metric).
    variant_of: the metric this is a named option preset of (``sfda_lw`` is
      ``sfda`` with ``shrinkage="lw"``); like parts, variants are scored
      when named and left out of the default lists.
  """
  name: str
  order: int
  fn: Callable[..., float]
  inputs: str
  core: Callable[..., jax.Array] | None = None
  prepare: Callable[..., Prepared] | None = None
  compute: Callable[..., jax.Array] | None = None
  check_options: Callable[..., None] | None = None
  check_input: Callable[..., None] | None = None
  scale_invariant: bool = False
  placement: str = "data_parallel"
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  seeded_option: str | None = None
  streaming: str | None = None
  hint: str = ""
  part_of: str | None = None
  variant_of: str | None = None

  def __post_init__(self):
    if self.inputs not in INPUT_KINDS:
      raise ValueError(f"{self.name}: inputs must be one of {INPUT_KINDS}.")
    if self.placement not in PLACEMENTS:
      raise ValueError(f"{self.name}: placement must be one of {PLACEMENTS}.")

  def variant(self, name: str, order: int, **options: Any) -> "MetricSpec":
    """A named preset of this metric: the same kernel, ``options`` as its
    defaults, no streaming counterpart."""
    unknown = sorted(set(options) - set(self.defaults))
    if unknown:
      raise ValueError(f"{self.name} has no option(s) {unknown}.")
    fn = functools.partial(self.fn, **options)
    functools.update_wrapper(fn, self.fn)
    return dataclasses.replace(self, name=name, order=order, fn=fn,
                               defaults={**self.defaults, **options},
                               streaming=None, variant_of=self.name)

  @property
  def batched(self) -> bool:
    """Whether ``score_models`` scores models of one shape in one call."""
    return self.prepare is not None and self.core is not None

  def options(self, **given: Any) -> dict:
    """The defaults updated with ``given``, checked by ``check_options``."""
    unknown = sorted(set(given) - set(self.defaults))
    if unknown:
      raise TypeError(f"{self.name}() got unexpected option(s) {unknown}.")
    opts = {**self.defaults, **given}
    if self.check_options is not None:
      self.check_options(**opts)
    return opts


def min_max(values: Any, axis: int = 0) -> np.ndarray:
  """``(v - min v) / (max v - min v)`` along ``axis`` (the candidate models),
  and 0 for every model where ``max == min``.

  The references divide by zero there (ETran's tw.py raises
  ZeroDivisionError; NCTI's NumPy code gives NaN/inf); 0 is this library's
  documented choice (METRICS.md, "Metrics after SFDA": DEVIATION).
  """
  v = np.asarray(values, dtype=np.float64)
  lo = v.min(axis=axis, keepdims=True)
  span = v.max(axis=axis, keepdims=True) - lo
  return np.where(span > 0, (v - lo) / np.where(span > 0, span, 1.0), 0.0)


@dataclasses.dataclass(frozen=True)
class SetMetricSpec:
  """A set-level metric: ``score_m = sum_j weights[j] * min_max(part_j)_m``
  over the candidate models ``m`` of one target set.

  Attributes:
    name: the public name (``sfda_jax.<name>(features_by_model, labels)``,
      a ``score_models`` metric).
    order: position in :data:`registry.ALL_METRICS`.
    fn: the public set-level function.
    parts: registry names of the per-model parts (each a ``MetricSpec`` with
      ``part_of == name``).
    weights: one weight per part (a negative weight: lower is better).
    defaults: the set-level options, each passed to the parts that declare
      it in their own ``defaults``.
    hint: appended to failure messages.
  """
  name: str
  order: int
  fn: Callable[..., dict]
  parts: tuple[str, ...]
  weights: tuple[float, ...]
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  hint: str = ""

  def __post_init__(self):
    if len(self.parts) != len(self.weights) or not self.parts:
      raise ValueError(f"{self.name}: one weight per part is needed.")

  @property
  def inputs(self) -> str:
    """Set-level metrics score features (see ``MetricSpec.inputs``)."""
    return "features"

  def options(self, **given: Any) -> dict:
    """The defaults updated with ``given`` (unknown names: TypeError)."""
    unknown = sorted(set(given) - set(self.defaults))
    if unknown:
      raise TypeError(f"{self.name}() got unexpected option(s) {unknown}.")
    return {**self.defaults, **given}

  def combine(self, parts: Mapping[str, Mapping[str, Any]]) -> dict:
    """``{model: score}`` from ``{part: {model: value}}``.

    Every part must hold the same models (at least 2). A value may be a
    scalar or an array (e.g. ``[B]`` resampled values): the min-max runs
    over the models, element by element.
    """
    models = list(parts[self.parts[0]])
    for part in self.parts:
      if sorted(parts[part]) != sorted(models):
        raise ValueError(f"{self.name}: part {part!r} has models "
                         f"{sorted(parts[part])}, expected {sorted(models)}.")
    if len(models) < 2:
      raise ValueError(
          f"{self.name} is a set-level metric (a min-max over the candidate "
          f"models) and needs at least 2 models, got {models}.")
    total = sum(w * min_max(np.stack([np.asarray(parts[p][m], np.float64)
                                      for m in models]))
                for p, w in zip(self.parts, self.weights))
    return {m: (float(total[i]) if np.ndim(total[i]) == 0 else total[i])
            for i, m in enumerate(models)}
