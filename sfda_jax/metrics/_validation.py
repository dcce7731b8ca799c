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


@dataclasses.dataclass(frozen=True)
class EncodedLabels:
  """Labels remapped to ``0..K-1`` in sorted order of the original ids."""
  codes: np.ndarray      # [N] int32
  classes: np.ndarray    # [K] original ids, sorted
  counts: np.ndarray     # [K] samples per class

  @property
  def num_classes(self) -> int:
    return int(self.classes.shape[0])


def compute_dtype(dtype) -> np.dtype:
  """The floating dtype a metric computes in for input of ``dtype``.

  float32 and float64 are kept (float64 only exists under ``jax_enable_x64``);
  half precision and integer inputs are promoted to JAX's default float.
  """
  dtype = np.dtype(dtype)
  if dtype == np.float32:
    return dtype
  return jnp.zeros((), dtype=float).dtype  # float32, or float64 under x64


def check_features(features: Any, name: str = "features") -> jax.Array:
  """Validates a ``[N, D]`` feature matrix and returns it as a JAX array.

  Accepts NumPy arrays, JAX arrays (sharded ones stay where they are) and
  nested sequences. Raises ValueError for non-numeric, non-2-D, empty or
  non-finite input.
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
  x = jnp.asarray(arr, dtype=compute_dtype(arr.dtype))
  if not bool(jnp.isfinite(x).all()):
    bad = int(jnp.size(x) - jnp.isfinite(x).sum())
    raise ValueError(
        f"{name} contains {bad} NaN or Inf value(s) (after conversion to "
        f"{x.dtype}); remove or impute them before scoring.")
  return x


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
                       classes=classes, counts=counts)


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
  """Validates ``[N, Z]`` source-model probabilities (each row a distribution)."""
  theta = check_features(source_probs, name="source_probs")
  if theta.shape[0] != num_samples:
    raise ValueError(
        f"length mismatch: source_probs has {theta.shape[0]} rows but labels "
        f"has {num_samples} entries.")
  if bool((theta < 0).any()):
    raise ValueError(
        "source_probs has negative entries: pass probabilities "
        "(e.g. jax.nn.softmax(source_logits)), not logits.")
  row_sums = theta.sum(axis=1)
  worst = float(jnp.max(jnp.abs(row_sums - 1.0)))
  if worst > atol:
    raise ValueError(
        f"source_probs rows must sum to 1 (worst row sums to 1 {worst:+.3g}); "
        "pass probabilities (e.g. jax.nn.softmax(source_logits)), not logits.")
  return theta


def check_finite_score(value: jax.Array, metric: str, hint: str = "") -> float:
  """Raises ValueError instead of returning a NaN/Inf score."""
  v = float(value)
  if not np.isfinite(v):
    raise ValueError(
        f"{metric} produced a non-finite score ({v}) on this input. {hint}".strip())
  return v


def score_classification(kernel, name: str, features: Any, labels: Any,
                         hint: str = "", **static: Any) -> float:
  """Validates ``(features, labels)``, runs a jitted ``kernel(x, codes,
  num_classes=K, **static)`` and returns its score as a finite float."""
  x = check_features(features)
  enc = encode_labels(labels, x.shape[0])
  score = kernel(x, jnp.asarray(enc.codes), num_classes=enc.num_classes,
                 **static)
  return check_finite_score(score, name, hint)
