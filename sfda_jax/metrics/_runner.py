"""The one validate -> prepare -> jit -> finite-check path of every score.

``score(spec, inputs, labels, **options)`` is what each public wrapper
(``sfda_jax.hscore(...)``, ...) runs; ``sfda_jax.score_models`` runs the same
steps cell by cell (:func:`check_cell`, :func:`compute`, :func:`finish`), so
one input gets one score or one error message through either entry.

  1. options: the spec's defaults updated with the caller's, checked;
  2. inputs: structure and finite values (``check_features`` /
     ``check_source_probs`` / source labels), labels encoded to codes;
  3. the metric's own input check (``spec.check_input``), then the value
     range (constant features, magnitudes; scale-invariant metrics rescale);
  4. labels prepared as the core takes them (``spec.prepare``), the jitted
     core called (or ``spec.compute`` for a multi-step metric);
  5. a non-finite score raises ValueError instead of being returned.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sfda_jax.metrics import _validation
from sfda_jax.metrics._spec import MetricSpec

__all__ = ["score", "score_parts", "score_set", "validated_features",
           "check_cell", "compute", "call_core", "finish", "jitted"]


@functools.lru_cache(maxsize=None)
def jitted(core, static_names: tuple[str, ...]):
  """``jax.jit(core)`` with ``static_names`` static, compiled once per core."""
  return jax.jit(core, static_argnames=static_names)


def prepared_args(prepared, x: jax.Array) -> list[jax.Array]:
  """``prepared.args`` as device arrays, the per-sample ones laid out like
  ``x``'s sample axis (see ``_validation.place_like_samples``)."""
  return [_validation.place_like_samples(a, x) if per_sample
          else jnp.asarray(a)
          for a, per_sample in zip(prepared.args, prepared.per_sample)]


def call_core(spec: MetricSpec, x: jax.Array, enc, **options) -> jax.Array:
  """``spec.core`` on validated ``x`` and the prepared labels (jitted)."""
  p = spec.prepare(enc, **options)
  if p.rows is not None and p.rows.shape[0] != x.shape[0]:
    x = x[jnp.asarray(p.rows)]
  fn = jitted(spec.core, tuple(sorted(p.static)))
  return fn(x, *prepared_args(p, x), **p.static)


def compute(spec: MetricSpec, x: Any, enc, **options) -> jax.Array:
  """The score (a device scalar) of validated inputs."""
  if spec.compute is not None:
    return spec.compute(x, enc, **options)
  return call_core(spec, x, enc, **options)


def check_cell(spec: MetricSpec, x: jax.Array, enc, summary, options,
               model: str | None = None) -> float:
  """The per-metric checks of validated features ``x``: ``spec.check_input``
  then the value range from ``summary`` (``feature_value_summary(x)``).

  Returns:
    The power of two to multiply ``x`` by (see ``feature_value_scale``).
  """
  label = spec.name if model is None else f"{spec.name} (model {model!r})"
  if spec.check_input is not None:
    spec.check_input(x, enc, **options)
  return _validation.feature_value_scale(summary, x.dtype, x.shape[1], label,
                                         spec.scale_invariant)


def finish(spec: MetricSpec, value: jax.Array, model: str | None = None
           ) -> float:
  """The score as a finite float, or ValueError."""
  label = spec.name if model is None else f"{spec.name} (model {model!r})"
  return _validation.check_finite_score(value, label, spec.hint)


def validate_source(spec: MetricSpec, inputs: Any, enc):
  """Source probabilities ``[N, Z]`` or encoded source labels ``[N]``."""
  n = enc.codes.shape[0]
  if spec.inputs == "source_probs":
    return _validation.check_source_probs(inputs, n)
  return _validation.encode_labels(inputs, n, name="source_labels",
                                   min_per_class=1, min_classes=1)


def score(spec: MetricSpec, inputs: Any, labels: Any, **given: Any) -> float:
  """Validates, prepares, runs and checks one metric: the public wrappers.

  Args:
    spec: the metric's declaration.
    inputs: features ``[N, D]``, source probabilities ``[N, Z]`` or source
      labels ``[N]`` (``spec.inputs``).
    labels: ``[N]`` target class ids (any; remapped).
    **given: options (``spec.defaults`` fills the rest).
  """
  options = spec.options(**given)
  if spec.inputs != "features":
    enc = _validation.encode_labels(labels)
    return finish(spec, compute(spec, validate_source(spec, inputs, enc), enc,
                                **options))
  x, enc = validated_features(spec, inputs, labels, options)
  return finish(spec, compute(spec, x, enc, **options))


def validated_features(spec: MetricSpec, inputs: Any, labels: Any,
                       options: dict) -> tuple[jax.Array, Any]:
  """Steps 2-3 for a feature metric: ``(x, encoded labels)``, ``x``
  rescaled by a power of two where the metric is scale invariant and the
  values are out of range. For wrappers that run their own step 4 (e.g. to
  return solver diagnostics)."""
  x = _validation.check_features(inputs)
  enc = _validation.encode_labels(labels, x.shape[0])
  scale = check_cell(spec, x, enc, _validation.feature_value_summary(x),
                     options)
  if scale != 1.0:
    x = x * jnp.asarray(scale, x.dtype)
  return x, enc


def part_options(part: MetricSpec, options: dict) -> dict:
  """The set-level ``options`` that ``part`` declares (its ``defaults``)."""
  return {k: v for k, v in options.items() if k in part.defaults}


def _checked_parts(specs, features: Any, labels: Any, options: dict
                   ) -> list[tuple[MetricSpec, jax.Array, Any, dict]]:
  """One model's inputs checked once (structure, finite values, labels, one
  value summary), then each part's own checks (``check_cell``): ``[(spec, x
  scaled for that part, encoded labels, the part's options)]``."""
  x = _validation.check_features(features)
  enc = _validation.encode_labels(labels, x.shape[0])
  summary = _validation.feature_value_summary(x)
  out = []
  for spec in specs:
    opts = spec.options(**part_options(spec, options))
    scale = check_cell(spec, x, enc, summary, opts)
    out.append((spec, x if scale == 1.0 else x * jnp.asarray(scale, x.dtype),
                enc, opts))
  return out


def score_parts(specs, features: Any, labels: Any, options: dict
                ) -> dict[str, float]:
  """``{part: value}`` of one model: every part's checks first, then the
  computations (a set-level metric's ``*_parts`` function)."""
  return {spec.name: finish(spec, compute(spec, x, enc, **opts))
          for spec, x, enc, opts in _checked_parts(specs, features, labels,
                                                   options)}


def score_set(set_spec, features_by_model: Any, labels: Any, **given: Any
              ) -> dict[str, float]:
  """The set-level score ``{model: score}`` (``sfda_jax.etran`` ...).

  Every model's features and the labels are checked (structure, values, the
  parts' own input checks) before any part is computed: at least 2 models,
  each a non-empty 2-D array with one row per label.
  """
  from sfda_jax.metrics import registry  # pylint: disable=import-outside-toplevel
  options = set_spec.options(**given)
  if not hasattr(features_by_model, "items"):
    raise ValueError(f"{set_spec.name} scores a set of models: pass "
                     "features_by_model as {model: features [N, D]}, got "
                     f"{type(features_by_model).__name__}.")
  if len(features_by_model) < 2:
    raise ValueError(f"{set_spec.name} is a set-level metric (a min-max over "
                     "the candidate models) and needs at least 2 models, got "
                     f"{list(features_by_model)}.")
  n = _validation.label_array(labels).shape[0]
  rows = {m: (getattr(f, "shape", None) or np.shape(f)) for m, f in
          features_by_model.items()}
  wrong = {m: tuple(r) for m, r in rows.items() if len(r) != 2 or r[0] != n}
  if wrong:
    raise ValueError(f"{set_spec.name}: every model's features must be "
                     f"[N, D] with N = {n} rows (one per label, the same "
                     f"samples in the same order), got {wrong}.")
  specs = [registry.REGISTRY[p] for p in set_spec.parts]
  checked = {}
  for model, f in features_by_model.items():
    try:
      checked[model] = _checked_parts(specs, f, labels, options)
    except ValueError as e:
      raise ValueError(f"{set_spec.name}, model {model!r}: {e}") from e
  parts = {p: {} for p in set_spec.parts}
  for model, cells in checked.items():
    for spec, x, enc, opts in cells:
      parts[spec.name][model] = finish(spec, compute(spec, x, enc, **opts),
                                       model)
  return set_spec.combine(parts)
