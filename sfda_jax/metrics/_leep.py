"""LEEP and NCE: transferability from the source model's own predictions.

LEEP: Nguyen, Hassner, Seeger, Archambeau. "LEEP: A New Measure to Evaluate
Transferability of Learned Representations." ICML 2020.
NCE: Tran, Nguyen, Hassner. "Transferability and Hardness of Supervised
Classification Tasks." ICCV 2019.

With ``theta [N, Z]`` the source model's class probabilities on the target set,
``P(y, z) = (1/N) sum_{i: y_i = y} theta_i[z]`` and ``P(y|z) = P(y, z)/P(z)``,
``LEEP = mean_i log sum_z P(y_i|z) theta_i[z]`` (the paper's form, with the
log). NCE uses hard source labels ``z_i``: ``NCE = sum P(y,z) log P(y|z)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _spec
from sfda_jax.metrics import _validation
from sfda_jax.metrics import stats

__all__ = ["leep", "leep_core", "nce", "nce_core"]


def leep_core(theta: jax.Array, labels: jax.Array, num_classes: int
              ) -> jax.Array:
  """LEEP on validated inputs (pure, jittable).

  Args:
    theta: source probabilities ``[N, Z]`` (rows sum to 1).
    labels: target codes ``[N]`` in ``[0, K)``.
    num_classes: ``K`` (static).
  """
  n = theta.shape[0]
  y = stats.one_hot(labels, num_classes, theta.dtype)
  joint = stats.matmul(y.T, theta) / n                       # P(y, z) [K, Z]
  p_z = joint.sum(axis=0)
  cond = joint / jnp.where(p_z > 0, p_z, 1.0)                # P(y | z)
  eep = jnp.sum(cond[labels] * theta, axis=1)
  return jnp.mean(jnp.log(eep))


def nce_core(source_labels: jax.Array, labels: jax.Array, num_classes: int,
             num_source_classes: int, dtype=jnp.float32) -> jax.Array:
  """NCE on validated integer codes (pure, jittable)."""
  n = labels.shape[0]
  y = stats.one_hot(labels, num_classes, dtype)
  z = stats.one_hot(source_labels, num_source_classes, dtype)
  joint = stats.matmul(y.T, z) / n                           # P(y, z) [K, Z]
  p_z = joint.sum(axis=0, keepdims=True)
  ratio = joint / jnp.where(p_z > 0, p_z, 1.0)
  return jnp.sum(jnp.where(joint > 0, joint * jnp.log(jnp.where(joint > 0, ratio, 1.0)), 0.0))


_nce_jit = jax.jit(nce_core, static_argnames=("num_classes",
                                              "num_source_classes", "dtype"))


def leep(source_probs: Any, labels: Any) -> float:
  """LEEP score (higher is better; at most 0).

  Args:
    source_probs: ``[N, Z]`` probabilities of the source model's ``Z`` classes
      on each target sample (e.g. ``jax.nn.softmax(source_logits)``).
    labels: ``[N]`` target class ids (any; remapped).

  Example:
    >>> import numpy as np, sfda_jax
    >>> y = np.repeat(np.arange(3), 10)
    >>> score = sfda_jax.leep(np.eye(3)[y], y)  # source classes = target classes
    >>> abs(score) < 1e-6   # log(1) = 0, the maximum, up to float32 rounding
    True
  """
  return _runner.score(LEEP_SPEC, source_probs, labels)


def nce(source_labels: Any, labels: Any) -> float:
  """NCE score, ``-H(Y | Z)`` (higher is better; at most 0).

  Args:
    source_labels: ``[N]`` hard source-model labels (``argmax`` of its logits);
      any ids, remapped.
    labels: ``[N]`` target class ids.

  Example:
    >>> import numpy as np, sfda_jax
    >>> y = np.repeat(np.arange(3), 10)
    >>> abs(sfda_jax.nce(y + 100, y)) < 1e-6   # -H(Y | Z) = 0: Z determines Y
    True
  """
  return _runner.score(NCE_SPEC, source_labels, labels)


def _nce_compute(src, enc):
  """NCE of encoded source labels ``src`` against encoded targets ``enc``."""
  return _nce_jit(jnp.asarray(src.codes), jnp.asarray(enc.codes),
                  num_classes=enc.num_classes,
                  num_source_classes=src.num_classes,
                  dtype=_validation.compute_dtype(float))


LEEP_SPEC = _spec.MetricSpec(
    name="leep", order=80, fn=leep, inputs="source_probs", core=leep_core,
    prepare=_spec.codes)
NCE_SPEC = _spec.MetricSpec(
    name="nce", order=90, fn=nce, inputs="source_labels", core=nce_core,
    compute=_nce_compute)
SPECS = (LEEP_SPEC, NCE_SPEC)
