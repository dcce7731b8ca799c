"""ETran: energy-based transferability estimation (a set-level metric).

Gholami et al. "ETran: Energy-Based Transferability Estimation." ICCV 2023.
Semantics follow METRICS.md ("ETran - energy + LDA"), specified from the
official code (mgholamikn/ETran@d4551ed: metrics.py ``Energy_Score``,
``LDA_Score``; evaluate_metric.py; tw.py).

Inputs are the penultimate features ``X [N, D]`` (the input of the source
model's final fc layer, not its logits) and the target labels. Two raw parts
per model, higher is better for both:

* energy ``E``: ``e_i = logsumexp_d X[i, d]`` (temperature 1, over the ``D``
  feature coordinates); ``E`` is the mean of the ``n_sel = floor(5 N / 1000)``
  smallest ``e_i`` (the reference's ``Energy_Score(X, 0.5, 'bot')``: the
  lowest 0.5 %). Real, unbounded.
* LDA score ``L`` in ``(0, 1]``. The reference fits SFDA's stage-1 model and
  then calls ``np.linalg.eigh(inv(Sw_s) @ Sb)`` on a matrix that is not
  symmetric; ``eigh`` reads its lower triangle only and returns an orthogonal
  ``V``, so ``coef = M V V^T = M`` and the shrinkage, ``Sw`` and ``Sb`` drop
  out. What the reference computes is exactly
  ``L = mean_i softmax_k(-1/2 ||x_i - mu_k||^2 + log pi_k)[y_i]``
  (``lda="reference"``, the default: one softmax, no ``D x D`` solve).

Set level (tw.py): ``ETran_m = 0.15 mm(E)_m + 0.85 mm(L)_m`` with ``mm`` the
min-max over the candidate models of one target set; in ``[0, 1]``, higher is
better. The paper and README also list an SVD-regression part; the released
classification code blends only LDA and energy (its ``_solve_eigen2`` helper
reads an attribute that is never set), and so does this module.

DEVIATIONs from the reference (METRICS.md):

* ``mm = 0`` for every model when the part is equal for all of them (tw.py
  divides by zero: ZeroDivisionError); at least 2 models are needed.
* ``N < 200`` raises ValueError: ``n_sel = 0`` and the reference returns NaN
  (the mean of an empty array).
* ``lda="fisher"`` (opt-in, the paper's intent): ``coef = M Sw_s^-1``, i.e.
  the mean true-class probability of SFDA's stage-1 fit with SFDA's adaptive
  shrinkage (``sfda_jax.metrics._sfda``).
* Precision: the reference runs the energy in float32 (torch on the saved
  float32 features); this module computes in the features' dtype (float64
  under ``jax_enable_x64``).

Cost: ``O(ND)`` for the energy, ``O(NDK)`` for ``lda="reference"`` (the
reference spends ``O(ND^2 + D^3)``), an SFDA stage-1 fit (``O(ND^2 + D^3)``)
for ``lda="fisher"``; the set-level combination is ``O(M)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from sfda_jax.metrics import _runner
from sfda_jax.metrics import _sfda
from sfda_jax.metrics import _spec
from sfda_jax.metrics import stats

__all__ = ["etran", "etran_parts", "etran_energy", "etran_lda",
           "etran_energy_core", "etran_lda_core", "energy_tail_size",
           "LDA_OPTIONS", "MIN_SAMPLES"]

#: ``lda`` options: the reference's actual computation (the closed form) and
#: the opt-in Fisher discriminant (SFDA stage 1).
LDA_OPTIONS = ("reference", "fisher")
#: The energy part needs ``floor(5 N / 1000) >= 1`` samples in its tail.
MIN_SAMPLES = 200
#: tw.py's blend of min-max(energy) and min-max(LDA).
WEIGHTS = (0.15, 0.85)


def energy_tail_size(num_samples: int) -> int:
  """``n_sel = floor(int(10 * percent) * N / 1000)`` with ``percent = 0.5``:
  the number of lowest energies averaged (``floor(5 N / 1000)``)."""
  return (5 * int(num_samples)) // 1000


def etran_energy_core(x: jax.Array) -> jax.Array:
  """ETran's energy part on validated features (pure, jittable, vmappable).

  ``e_i = logsumexp_d x[i, d]``; the mean of the ``energy_tail_size(N)``
  smallest ``e_i`` (NaN when that is 0, i.e. ``N < 200``: the public
  functions reject such input first).

  Args:
    x: features ``[N, D]`` (raw: the energy is not translation invariant).
  """
  energy = jax.nn.logsumexp(x, axis=1)
  n_sel = energy_tail_size(x.shape[0])
  return jnp.mean(jnp.sort(energy)[:n_sel])


def etran_lda_core(x: jax.Array, labels: jax.Array, num_classes: int,
                   lda: str = "reference") -> jax.Array:
  """ETran's LDA part on validated inputs (pure, jittable, vmappable).

  ``lda="reference"``: ``mean_i softmax_k(-1/2 ||x_i - mu_k||^2 +
  log pi_k)[y_i]`` (what the reference's ``LDA_Score`` computes).
  ``lda="fisher"`` (DEVIATION): the mean true-class probability of SFDA's
  stage-1 fit, ``coef = M Sw_s^-1`` with the adaptive shrinkage.

  Both are translation invariant, so ``x`` is centred (two passes) first:
  class means and distances then come from accurate, small numbers.

  Args:
    x: features ``[N, D]``.
    labels: integer codes ``[N]`` in ``[0, K)``.
    num_classes: ``K`` (static).
    lda: one of :data:`LDA_OPTIONS` (static).
  """
  x = stats.center(x)
  if lda == "fisher":
    state = _sfda.sfda_fit_core(x, labels, num_classes)
    return jnp.mean(_sfda.true_class_probability(state, x, labels))
  if lda != "reference":
    raise ValueError(f"lda must be one of {LDA_OPTIONS}, got {lda!r}.")
  means, counts = stats.class_means(x, labels, num_classes)
  # -1/2 ||x - mu_k||^2 + log pi_k, less the per-sample -1/2 ||x||^2 that
  # softmax ignores.
  logits = (stats.matmul(x, means.T) - 0.5 * jnp.sum(means * means, axis=1)
            + jnp.log(counts / x.shape[0]))
  logp = jax.nn.log_softmax(logits, axis=1)
  return jnp.mean(jnp.exp(jnp.take_along_axis(logp, labels[:, None],
                                              axis=1)[:, 0]))


def _check_lda(lda):
  if not isinstance(lda, str) or lda not in LDA_OPTIONS:
    raise ValueError(f"etran: lda must be one of {list(LDA_OPTIONS)}, got "
                     f"{lda!r}.")


def _check_energy_input(x, enc, **_):
  del enc
  n = x.shape[0]
  if energy_tail_size(n) < 1:
    raise ValueError(
        f"etran_energy needs at least {MIN_SAMPLES} samples, got N = {n}: "
        "the energy part averages the lowest floor(5 N / 1000) = "
        f"{energy_tail_size(n)} per-sample energies (the reference returns "
        "NaN, the mean of an empty array).")


def _prepare_energy(enc, **_):
  del enc
  return _spec.Prepared(None, (), {}, ())


def _prepare_lda(enc, lda):
  p = _spec.codes(enc)
  return p._replace(static={**p.static, "lda": lda})


def etran_energy(features: Any, labels: Any) -> float:
  """ETran's raw energy part ``E`` of one model (higher is better).

  The mean of the lowest 0.5 % of ``logsumexp_d X[i, d]``; needs
  ``N >= 200``. ``labels`` are validated like every metric's (the part does
  not use them). See the module docstring and :func:`etran`.
  """
  return _runner.score(SPECS[0], features, labels)


def etran_lda(features: Any, labels: Any, lda: str = "reference") -> float:
  """ETran's raw LDA part ``L`` of one model, in ``(0, 1]`` (higher is
  better). ``lda``: ``"reference"`` (default) or ``"fisher"`` (DEVIATION);
  see :func:`etran_lda_core`."""
  return _runner.score(SPECS[1], features, labels, lda=lda)


def etran_parts(features: Any, labels: Any, lda: str = "reference"
                ) -> dict[str, float]:
  """ETran's raw per-model parts, before the set-level min-max.

  Args:
    features: ``[N, D]`` penultimate features of one model (``N >= 200``).
    labels: ``[N]`` class ids (any; remapped).
    lda: ``"reference"`` (the reference's actual computation, the closed
      form) or ``"fisher"`` (DEVIATION: SFDA's stage-1 Fisher discriminant).

  Returns:
    ``{"energy": E, "lda": L}``: ``E`` real, ``L`` in ``(0, 1]``, higher is
    better for both. Every check runs before either part is computed.

  Example:
    >>> import numpy as np
    >>> from sfda_jax.metrics._etran import etran_parts
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), 60)
    >>> x = rng.normal(size=(240, 16)) + 3 * np.eye(16)[y]
    >>> parts = etran_parts(x, y)
    >>> sorted(parts), 0.5 < parts["lda"] <= 1.0
    (['energy', 'lda'], True)
  """
  values = _runner.score_parts(SPECS, features, labels, {"lda": lda})
  return {"energy": values["etran_energy"], "lda": values["etran_lda"]}


def etran(features_by_model: Any, labels: Any, lda: str = "reference"
          ) -> dict[str, float]:
  """ETran set-level score of every candidate model (higher is better).

  ``ETran_m = 0.15 mm(E)_m + 0.85 mm(L)_m``, ``mm`` the min-max over the
  models (0 for every model when a part is equal for all: DEVIATION).

  Args:
    features_by_model: ``{model: features [N, D_model]}``, at least 2
      models, the same ``N >= 200`` samples in the same order.
    labels: ``[N]`` class ids (any; remapped).
    lda: ``"reference"`` or ``"fisher"`` (see :func:`etran_parts`).

  Returns:
    ``{model: score}`` with scores in ``[0, 1]``. Every model's input is
    checked before any part is computed.

  Example:
    >>> import numpy as np
    >>> from sfda_jax.metrics._etran import etran
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), 60)
    >>> noise = rng.normal(size=(240, 16))
    >>> scores = etran({"good": noise + 4 * np.eye(16)[y],
    ...                 "bad": noise + 0.5 * np.eye(16)[y]}, y)
    >>> scores["good"] > scores["bad"], min(scores.values()) == 0.0
    (True, True)
  """
  return _runner.score_set(SET_SPEC, features_by_model, labels, lda=lda)


SPECS = (
    _spec.MetricSpec(
        name="etran_energy", order=140, fn=etran_energy, inputs="features",
        core=etran_energy_core, prepare=_prepare_energy,
        check_input=_check_energy_input, placement="gather",
        part_of="etran",
        hint="Energies are logsumexp of the raw features; check their "
        "magnitude."),
    _spec.MetricSpec(
        name="etran_lda", order=141, fn=etran_lda, inputs="features",
        core=etran_lda_core, prepare=_prepare_lda, check_options=_check_lda,
        defaults={"lda": "reference"}, part_of="etran",
        hint="With lda='fisher' the within-class scatter may be numerically "
        "singular; try jax.config.update('jax_enable_x64', True)."),
)

SET_SPEC = _spec.SetMetricSpec(
    name="etran", order=140, fn=etran, parts=("etran_energy", "etran_lda"),
    weights=WEIGHTS, defaults={"lda": "reference"},
    hint="ETran is a min-max over the candidate models of one target set.")
