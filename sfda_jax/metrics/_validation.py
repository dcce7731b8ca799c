"""Input validation shared by every public metric wrapper.

Runs once, outside jit, before any heavy work: shapes, dtypes, non-finite
values, label encoding and class counts. Raises ``ValueError`` with a message
that names the problem. Never modifies the caller's arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Placement helpers, re-exported for the metric modules that use them here.
from sfda_jax.metrics.placement import gather_if_sharded, place_like_samples  # noqa: F401


@dataclasses.dataclass(frozen=True)
class EncodedLabels:
  """Labels remapped to ``0..K-1`` in sorted order of the original ids."""
  codes: np.ndarray      # [N] int32
  classes: np.ndarray    # [K] original ids, sorted

  @property
  def num_classes(self) -> int:
    return int(self.classes.shape[0])


def positive_int(value: Any, name: str, *, none_means: str | None = None
                 ) -> int | None:
  """``value`` as an int when it is a positive integer (not a bool).

  Args:
    value: the argument.
    name: its name, for the message.
    none_means: when given, ``None`` is accepted and the message says what it
      means (e.g. ``"the whole split"``).

  Raises:
    ValueError: ``"<name> must be a positive int[ or None (<none_means>)],
      got <value!r>."``
  """
  if value is None and none_means is not None:
    return None
  if isinstance(value, bool) or not isinstance(
      value, (int, np.integer)) or value < 1:
    alt = f" or None ({none_means})" if none_means is not None else ""
    raise ValueError(f"{name} must be a positive int{alt}, got {value!r}.")
  return int(value)


def compute_dtype(dtype) -> np.dtype:
  """The floating dtype a metric computes in for input of ``dtype``.

  float32 and float64 are kept (float64 only exists under ``jax_enable_x64``);
  half precision and integer inputs are promoted to JAX's default float.
  """
  dtype = np.dtype(dtype)
  if dtype == np.float32:
    return dtype
  return jnp.zeros((), dtype=float).dtype  # float32, or float64 under x64


def check_features(features: Any, name: str = "features",
                   check_values: bool = True) -> jax.Array:
  """Validates a ``[N, D]`` feature matrix and returns it as a JAX array.

  Accepts NumPy arrays, JAX arrays (sharded ones stay where they are) and
  nested sequences. Raises ValueError for non-numeric, non-2-D, empty or
  (with ``check_values``, the default) non-finite input. With
  ``check_values=False`` only the structure is checked (no device
  reduction); :func:`check_finite_features` checks the values later.
  """
  if isinstance(features, jax.Array):
    arr = features
  else:
    arr = np.asarray(features)
    if arr.dtype == object or not (jnp.issubdtype(arr.dtype, jnp.number)
                                   or arr.dtype == np.bool_):
      raise ValueError(
          f"{name} must be a numeric array, got dtype {arr.dtype}.")
  if arr.ndim != 2:
    raise ValueError(
        f"{name} must be 2-D [num_samples, feature_dim], got shape "
        f"{tuple(arr.shape)}.")
  if arr.shape[0] == 0 or arr.shape[1] == 0:
    raise ValueError(f"{name} is empty (shape {tuple(arr.shape)}).")
  if np.issubdtype(np.dtype(arr.dtype), np.complexfloating):
    raise ValueError(f"{name} must be real-valued, got dtype {arr.dtype}.")
  # A jax.Array (sharded or not) is converted and checked where it lives:
  # only scalars come back to the host, never the [N, D] matrix.
  x = jnp.asarray(arr, dtype=compute_dtype(arr.dtype))
  if check_values:
    check_finite_features(x, name)
  return x


def check_finite_features(x: jax.Array, name: str = "features") -> None:
  """Raises ValueError when the converted features ``x`` hold NaN or Inf."""
  if not fetch(jnp.isfinite(x).all()):
    bad = int(fetch(jnp.size(x) - jnp.isfinite(x).sum()))
    raise ValueError(
        f"{name} contains {bad} NaN or Inf value(s) (after conversion to "
        f"{x.dtype}); remove or impute them before scoring.")


def encode_labels(labels: Any, num_samples: int | None = None,
                  name: str = "labels", min_per_class: int = 2,
                  min_classes: int = 2) -> EncodedLabels:
  """Validates class labels and remaps them to ``0..K-1``.

  Args:
    labels: ``[N]`` class ids: integers, integral floats (``2.0``), booleans or
      strings. Any ids work; they are remapped in sorted order.
    num_samples: expected ``N`` (the number of feature rows), if known.
    name: argument name used in error messages.
    min_per_class: every class needs at least this many samples.
    min_classes: at least this many distinct classes.

  Raises:
    ValueError: wrong shape or length, empty, non-integral or non-finite float
      ids, too few classes, or a class with too few samples.
  """
  y = label_array(labels, num_samples, name)
  classes, codes, counts = np.unique(y, return_inverse=True,
                                     return_counts=True)
  check_class_counts(classes, counts, name, min_per_class, min_classes)
  return EncodedLabels(codes=codes.astype(np.int32).reshape(-1),
                       classes=classes)


def label_array(labels: Any, num_samples: int | None = None,
                name: str = "labels") -> np.ndarray:
  """Validates ``[N]`` class ids and returns them as a 1-D NumPy array.

  Integral floats become int64 and object arrays strings, so that sorting
  and ``np.unique`` order them as :func:`encode_labels` does.

  Raises:
    ValueError: wrong shape or length, empty, non-integral or non-finite float
      ids, or an unsupported dtype.
  """
  y = np.asarray(labels)
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  if y.ndim != 1:
    raise ValueError(f"{name} must be 1-D [num_samples], got shape {y.shape}.")
  if y.shape[0] == 0:
    raise ValueError(f"{name} is empty.")
  if num_samples is not None and y.shape[0] != num_samples:
    raise ValueError(
        f"length mismatch: features have {num_samples} rows but {name} has "
        f"{y.shape[0]} entries.")
  if np.issubdtype(y.dtype, np.floating):
    if not np.all(np.isfinite(y)):
      raise ValueError(f"{name} contains NaN or Inf.")
    if not np.all(y == np.round(y)):
      bad = y[y != np.round(y)][:3]
      raise ValueError(
          f"{name} must be integer class ids for a classification metric; got "
          f"non-integral values such as {bad.tolist()}. (For regression "
          "targets use logme(..., regression=True).)")
    y = y.astype(np.int64)
  elif y.dtype == object:
    try:
      y = y.astype(str)
    except (TypeError, ValueError) as e:
      raise ValueError(f"{name} must hold integers or strings: {e}") from e
  elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_
            or np.issubdtype(y.dtype, np.str_)):
    raise ValueError(f"{name} has unsupported dtype {y.dtype}.")
  return y


def check_class_counts(classes: np.ndarray, counts: np.ndarray,
                       name: str = "labels", min_per_class: int = 2,
                       min_classes: int = 2) -> None:
  """Raises ValueError for fewer than ``min_classes`` distinct ``classes
  [K]`` or a class with fewer than ``min_per_class`` samples (``counts [K]``).
  """
  if classes.shape[0] < min_classes:
    raise ValueError(
        f"{name} must contain at least {min_classes} distinct classes, got "
        f"{classes.shape[0]} ({classes[:5].tolist()}).")
  small = counts < min_per_class
  if np.any(small):
    which = classes[small][:5].tolist()
    raise ValueError(
        f"every class needs at least {min_per_class} samples; "
        f"{int(small.sum())} class(es) have fewer, e.g. {which} with counts "
        f"{counts[small][:5].tolist()}.")


def check_source_probs(source_probs: Any, num_samples: int,
                       atol: float = 1e-3) -> jax.Array:
  """Validates ``[N, Z]`` source-model probabilities (each row a distribution).

  Rows must sum to 1 within ``atol``, widened to twice the machine epsilon
  of a half-precision input (a bfloat16 row's rounding alone is ~4e-3).
  """
  in_dtype = getattr(source_probs, "dtype", None)
  theta = check_features(source_probs, name="source_probs")
  if in_dtype is not None and jnp.issubdtype(in_dtype, jnp.floating):
    atol = max(atol, 2.0 * float(jnp.finfo(in_dtype).eps))
  if theta.shape[0] != num_samples:
    raise ValueError(
        f"length mismatch: source_probs has {theta.shape[0]} rows but labels "
        f"has {num_samples} entries.")
  if fetch((theta < 0).any()):
    raise ValueError(
        "source_probs has negative entries: pass probabilities "
        "(e.g. jax.nn.softmax(source_logits)), not logits.")
  row_sums = theta.sum(axis=1)
  worst = float(fetch(jnp.max(jnp.abs(row_sums - 1.0))))
  if worst > atol:
    raise ValueError(
        f"source_probs rows must sum to 1 (worst row sums to 1 {worst:+.3g}); "
        "pass probabilities (e.g. jax.nn.softmax(source_logits)), not logits.")
  return theta


def fetch(value: Any) -> Any:
  """Explicit device-to-host copy of a small result (a scalar or a short
  vector) as NumPy; the only way validation reads device data back."""
  return np.asarray(jax.device_get(value))


@jax.jit
def _value_summary(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(max |x|, max over columns of (max - min))``: two on-device reductions
  (data-parallel on a sharded ``x``)."""
  amax = jnp.max(jnp.abs(x))
  spread = jnp.max(jnp.max(x, axis=0) - jnp.min(x, axis=0))
  return amax, spread


def magnitude_range(dtype, feature_dim: int) -> tuple[float, float]:
  """``(lo, hi)``: the magnitudes of feature values whose fourth powers (times
  ``D^2``, as in a power iteration on a scatter matrix) stay finite and
  normal in ``dtype``, with a factor 4 of margin on each side."""
  info = jnp.finfo(dtype)
  root_d = float(np.sqrt(feature_dim))
  return (4.0 * float(info.tiny) ** 0.25,
          float(info.max) ** 0.25 / (4.0 * root_d))


def feature_value_summary(x: jax.Array) -> tuple[float, float]:
  """``(max |x|, largest per-dimension range)`` of features ``[N, D]``, as
  host floats; the input of :func:`feature_value_scale`."""
  amax, spread = (float(v) for v in fetch(_value_summary(x)))
  return amax, spread


def feature_value_scale(summary: tuple[float, float], dtype, feature_dim: int,
                        metric: str, scale_invariant: bool) -> float:
  """The power of two :func:`check_feature_values` multiplies features by.

  Host arithmetic on :func:`feature_value_summary`'s ``(amax, spread)`` of
  features of ``dtype`` with ``feature_dim`` columns (no device work), so a
  caller scoring many metrics summarises each matrix once.

  Returns:
    ``1.0`` when the values are in range, else (scale-invariant metrics
    only) ``2**k`` bringing the largest magnitude into ``[0.5, 1)``.

  Raises:
    ValueError: as :func:`check_feature_values`.
  """
  amax, spread = summary
  if spread == 0.0:
    raise ValueError(
        f"{metric}: features are constant (every sample has the same feature "
        "vector, zero variance in every dimension); there is nothing to "
        "score.")
  lo, hi = magnitude_range(dtype, feature_dim)
  if lo <= spread and amax <= hi:
    return 1.0
  if scale_invariant:
    scaled_spread = spread / amax
    if scaled_spread >= lo:
      return 2.0 ** -int(np.floor(np.log2(amax)))
  problem = ("too large" if amax > hi else "too small")
  raise ValueError(
      f"{metric}: feature values are {problem} for {np.dtype(dtype).name} "
      f"(largest magnitude {amax:.3g}, largest per-dimension range "
      f"{spread:.3g}; supported about [{lo:.2g}, {hi:.2g}]): second- and "
      "fourth-order statistics would overflow or underflow. Rescale the "
      "features (e.g. standardise them) or enable "
      "jax.config.update('jax_enable_x64', True).")


def check_feature_values(x: jax.Array, metric: str,
                         scale_invariant: bool) -> jax.Array:
  """Rejects constant features and magnitudes the computation cannot hold.

  Args:
    x: validated features ``[N, D]`` (from :func:`check_features`).
    metric: the metric's name, for messages.
    scale_invariant: whether the metric's score is unchanged when ``x`` is
      multiplied by a positive constant (H-score, regularized H-score, GBC,
      PARC). Such a metric gets ``x`` rescaled by an exact power of two when
      its magnitude is out of range (same score, no overflow); any other
      metric raises instead.

  Returns:
    ``x``, or ``x * 2**k`` (scale-invariant metrics with out-of-range values).

  Raises:
    ValueError: every row is identical (no variance: nothing to score), or
      the values are too large or too small for ``x.dtype`` and the metric is
      not scale invariant.
  """
  scale = feature_value_scale(feature_value_summary(x), x.dtype, x.shape[1],
                              metric, scale_invariant)
  return x if scale == 1.0 else x * jnp.asarray(scale, x.dtype)


def check_finite_score(value: jax.Array, metric: str, hint: str = "") -> float:
  """Raises ValueError instead of returning a NaN/Inf score."""
  v = float(fetch(value))
  if not np.isfinite(v):
    raise ValueError(
        f"{metric} produced a non-finite score ({v}) on this input. {hint}".strip())
  return v


def score_classification(kernel, name: str, features: Any, labels: Any,
                         hint: str = "", scale_invariant: bool = False,
                         **static: Any) -> float:
  """Validates ``(features, labels)``, runs a jitted ``kernel(x, codes,
  num_classes=K, **static)`` and returns its score as a finite float.

  Features given as a ``jax.Array`` stay on their devices (a sharded array
  stays sharded; the codes are laid out like its sample axis), so the kernel
  runs data-parallel. ``scale_invariant`` is passed to
  :func:`check_feature_values`.
  """
  x = check_features(features)
  enc = encode_labels(labels, x.shape[0])
  x = check_feature_values(x, name, scale_invariant)
  score = kernel(x, place_like_samples(enc.codes, x),
                 num_classes=enc.num_classes, **static)
  return check_finite_score(score, name, hint)
