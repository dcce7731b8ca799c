"""PED: potential-energy descent, a feature remap before a base metric.

Li, Hu, Ge, Shan, Duan. "Exploring Model Transferability through the Lens of
Potential Energy." ICCV 2023, arXiv 2308.15074 (code: lixiaotong97/PED@e5af6e7,
``metrics.py``: ``compute_per_class_mean_variance_num``, ``One_Step_PED``,
``PED_Score``; defaults from ``evaluate_metric_cpu.py``).

Each target class is a charged ball: its centre ``mu_k`` and radius ``R_k =
sqrt(sum_d v_k[d])`` (biased per-dimension variance ``v_k``) in features
standardised by ``sigma = max(sigma_src, eps)``, where ``sigma_src`` is the
per-dimension biased std of the SAME model's ImageNet-val features. Every
overlapping pair repels along the line joining the centres with
``step_ab = min(c dt^2 F_ab / 2, F_ab)``, ``F_ab = max(nsigma (R_a + R_b) -
d_ab, 0)``; each class moves rigidly by ``delta_a = sum_b step_ab (mu_a -
mu_b) / d_ab``, i.e. ``X <- X + delta_{y_i} * sigma``. Steps repeat (at most
``max_steps``) while the total motion ``P_t = sum |delta|`` stays above
``exit_ratio * P_0``; the step that fails the test is discarded. The base
metric (SFDA by default, LogME or NLEEP) then scores the remapped features
with its own semantics (METRICS.md, "PED").

Implementation. A rigid move of each class leaves every per-class variance
unchanged and moves each class mean by exactly ``delta_a``, so the radii are
computed once and the loop runs on the ``[K, D]`` means alone
(``lax.while_loop``; identical, in exact arithmetic, to recomputing the
statistics from the moved ``X`` each step, as the reference does); the
features are moved once at the end by the accepted total. Pairwise distances
are direct differences (``lax.map`` over row blocks, so a zero distance is
exactly zero) and ``delta = (w 1) * M - w M`` with ``w_ab = step_ab /
d_ab``: ``O(K^2 + KD)`` memory, never the reference's ``K x K x D`` tensor.
The means are centred first (``delta`` is translation invariant), which
keeps that difference of products accurate.

Source statistics. ``sfda_jax`` ships no ImageNet-val statistics: the offline
zoo has no ImageNet-val images (``OFFLINE.md`` lists Fashion-MNIST, sklearn's
digits and two unlabelled sample photos as the only real images; the
EfficientNet-Lite checkpoints are ImageNet-trained but come without
ImageNet data), so sfda_jax ships no source statistics; ped() on it uses
standardize='self'. Callers who have the model's ImageNet-val features pass
``source_std = features.std(axis=0)``.

DEVIATIONS (METRICS.md):
  * a pair with ``d_ab = 0`` (coincident class means) contributes 0; the
    reference divides by zero and returns NaN everywhere. "Zero" here means
    at the rounding level of the computed means (``d_ab <= 32 eps sqrt(D)
    max|z|``, ``z`` the centred standardised features): duplicated classes
    summed in another order differ by ``~eps``, and such a pair would
    otherwise take a full-size step in a direction made of rounding noise;
  * ``standardize="self"`` (the default when ``source_std`` is None):
    ``sigma_src`` is the biased std over the target features themselves,
    computed once before step 0 and held fixed. Not the published method
    (it may rank models differently); a warning is logged once per process.
"""

from __future__ import annotations

from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from sfda_jax.metrics import _logme
from sfda_jax.metrics import _nleep
from sfda_jax.metrics import _runner
from sfda_jax.metrics import _sfda
from sfda_jax.metrics import _spec
from sfda_jax.metrics import _validation
from sfda_jax.metrics import stats

__all__ = ["BASES", "STANDARDIZE", "ped", "ped_remap", "ped_core",
           "ped_remap_core", "ped_step", "self_std"]

#: Base metrics PED's remap can precede (the reference's 'SFDA', 'LOGME',
#: 'NLEEP').
BASES = ("sfda", "logme", "nleep")
#: ``standardize`` values: ``None`` (auto: "source" when ``source_std`` is
#: given, else "self"), "source" (the published method), "self" (DEVIATION).
STANDARDIZE = (None, "self", "source")

#: Two class means closer than ``_COINCIDENT * eps * sqrt(D) * max|z|``
#: (``z`` the centred standardised features) coincide up to the rounding of
#: their computation (the same samples summed in another order differ by
#: ``~eps``), so their pair takes the ``d_ab = 0`` DEVIATION instead of a
#: full-size step in a direction made of rounding noise.
_COINCIDENT = 32.0
#: Size of one ``lax.map`` block of ``[rows, K, D]`` differences.
_TARGET_BYTES = 64 * 2 ** 20

_SELF_WARNING = (
    "ped: no source_std given, so the features are standardised by their own "
    "per-dimension std (standardize='self', a DEVIATION). The published PED "
    "standardises by the same model's ImageNet-val feature std; pass "
    "source_std=<that std, shape [D]> to reproduce it. Rankings may differ.")
_self_warned = False


def _warn_self_standardize() -> None:
  """Logs :data:`_SELF_WARNING` (absl, WARNING) once per process."""
  global _self_warned
  if not _self_warned:
    _self_warned = True
    logging.warning(_SELF_WARNING)


# ---------------------------------------------------------------------------
# The remap kernel (pure, jittable, vmappable over x).


def _pairwise_distances(means: jax.Array) -> jax.Array:
  """``||mu_a - mu_b||`` for means ``[K, D]`` -> ``[K, K]``, from direct
  differences (exact zeros stay zero), a block of rows at a time."""
  k, d = means.shape
  rows = int(max(1, min(k, _TARGET_BYTES // max(1, k * d
                                                * means.dtype.itemsize))))
  return lax.map(lambda m: jnp.sqrt(jnp.sum(jnp.square(m - means), axis=1)),
                 means, batch_size=rows)


def ped_step(means: jax.Array, radius: jax.Array, nsigma: float, dt: float,
             c: float, coincident: jax.Array | float = 0.0
             ) -> tuple[jax.Array, jax.Array]:
  """One PED step on standardised class statistics (pure, jittable).

  Args:
    means: class means ``[K, D]`` in standardised units.
    radius: class radii ``R_k = sqrt(sum_d v_k[d])``, ``[K]``.
    nsigma, dt, c: PED's radius multiplier, time step and force constant.
    coincident: distances at or below this count as ``d_ab = 0`` (the
      rounding level of the means; 0: only exact zeros).

  Returns:
    ``(delta [K, D], P)``: each class's move ``delta_a = sum_{b != a}
    step_ab (mu_a - mu_b) / d_ab`` (a pair with ``d_ab = 0`` contributes 0:
    DEVIATION) and the total motion ``P = sum |delta|``.
  """
  means = means - means.mean(axis=0)            # delta is translation invariant
  dist = _pairwise_distances(means)
  force = jnp.maximum(nsigma * (radius[:, None] + radius[None, :]) - dist,
                      0.0)
  step = jnp.minimum(0.5 * c * dt * dt * force, force)
  apart = dist > coincident                     # also drops b == a
  w = jnp.where(apart, step / jnp.where(apart, dist, 1.0), 0.0)
  delta = w.sum(axis=1)[:, None] * means - stats.matmul(w, means)
  return delta, jnp.sum(jnp.abs(delta))


def self_std(x: jax.Array) -> jax.Array:
  """Biased per-dimension std of ``x [N, D]`` (``standardize="self"``)."""
  xc = stats.center(x)
  return jnp.sqrt(jnp.mean(xc * xc, axis=0))


def ped_remap_core(x: jax.Array, codes: jax.Array, sigma_src: jax.Array,
                   num_classes: int, dt: float = 0.1, nsigma: float = 0.6,
                   c: float = 1.0, exit_ratio: float = 0.5, eps: float = 1e-3,
                   max_steps: int = 6) -> tuple[jax.Array, jax.Array]:
  """PED's remap of validated features (pure, jittable, vmappable over x).

  Args:
    x: features ``[N, D]``.
    codes: integer labels ``[N]`` in ``[0, K)``.
    sigma_src: the per-dimension std ``[D]`` to standardise by (floored at
      ``eps``).
    num_classes: ``K`` (static).
    dt, nsigma, c, exit_ratio, eps, max_steps: PED's options (see
      :func:`ped`).

  Returns:
    ``(x_new [N, D], steps)``: the remapped features (``x`` itself when no
    step is accepted) and the number of accepted steps (int32, ``0..
    max_steps``).
  """
  sigma = jnp.maximum(jnp.asarray(sigma_src, x.dtype), eps)
  # Everything below is translation invariant: statistics of the centred
  # features are accurate (small numbers) and so is the rounding level.
  z = stats.center(x) / sigma
  means, _ = stats.class_means(z, codes, num_classes)
  var, _ = stats.class_means(jnp.square(z - means[codes]), codes, num_classes)
  radius = jnp.sqrt(var.sum(axis=1))
  coincident = (_COINCIDENT * jnp.finfo(x.dtype).eps
                * np.sqrt(x.shape[1]) * jnp.max(jnp.abs(z)))

  def body(carry):
    steps, m, shift, p0, _ = carry
    delta, p = ped_step(m, radius, nsigma, dt, c, coincident)
    p0 = jnp.where(steps == 0, p, p0)
    accept = p / p0 > exit_ratio                # P_0 = 0: NaN, not accepted
    return (steps + accept.astype(steps.dtype),
            jnp.where(accept, m + delta, m),
            jnp.where(accept, shift + delta, shift), p0, accept)

  def cond(carry):
    steps, _, _, _, going = carry
    return going & (steps < max_steps)

  init = (jnp.zeros((), jnp.int32), means, jnp.zeros_like(means),
          jnp.zeros((), x.dtype), jnp.ones((), bool))
  steps, _, shift, _, _ = lax.while_loop(cond, body, init)
  return x + (shift * sigma)[codes], steps


def _score_sfda(x, codes, num_classes):
  return _sfda.sfda_core(x, codes, num_classes)


def _score_logme(x, codes, num_classes):
  return _logme.logme_core(x, stats.one_hot(codes, num_classes, x.dtype))


#: The bases with a jittable core (NLEEP runs through its own path).
_BASE_CORES = {"sfda": _score_sfda, "logme": _score_logme}
_BASE_SPECS = {"sfda": _sfda.SPEC, "logme": _logme.SPEC, "nleep": _nleep.SPEC}


def _remap_only(x: jax.Array, codes: jax.Array, *source_std: jax.Array,
                num_classes: int, dt: float, nsigma: float, c: float,
                exit_ratio: float, eps: float, max_steps: int):
  """:func:`ped_remap_core` with ``sigma_src`` = ``source_std[0]`` when
  given, else :func:`self_std` of ``x``."""
  sigma_src = source_std[0] if source_std else self_std(x)
  return ped_remap_core(x, codes, sigma_src, num_classes, dt=dt,
                        nsigma=nsigma, c=c, exit_ratio=exit_ratio, eps=eps,
                        max_steps=max_steps)


def ped_core(x: jax.Array, codes: jax.Array, *source_std: jax.Array,
             num_classes: int, base: str = "sfda", dt: float = 0.1,
             nsigma: float = 0.6, c: float = 1.0, exit_ratio: float = 0.5,
             eps: float = 1e-3, max_steps: int = 6) -> jax.Array:
  """The PED score on validated inputs (pure, jittable, vmappable over x).

  Args:
    x: features ``[N, D]``.
    codes: integer labels ``[N]`` in ``[0, K)``.
    *source_std: optionally the ImageNet-val std ``[D]``; without it the
      std of ``x`` itself (``standardize="self"``, DEVIATION).
    num_classes: ``K`` (static).
    base: "sfda" or "logme" (static; NLEEP has no jittable core).
    dt, nsigma, c, exit_ratio, eps, max_steps: as :func:`ped` (static).
  """
  if base not in _BASE_CORES:
    raise ValueError(f"ped_core has no jittable path for base {base!r}; "
                     f"valid: {sorted(_BASE_CORES)} (NLEEP runs via ped()).")
  x_new, _ = _remap_only(x, codes, *source_std, num_classes=num_classes,
                         dt=dt, nsigma=nsigma, c=c, exit_ratio=exit_ratio,
                         eps=eps, max_steps=max_steps)
  return _BASE_CORES[base](x_new, codes, num_classes)


# ---------------------------------------------------------------------------
# Options, checks and the registry's hooks.

_REMAP_OPTIONS = ("dt", "nsigma", "c", "exit_ratio", "eps", "max_steps")


def _positive_float(value: Any, name: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float,
                                                       np.integer,
                                                       np.floating)):
    raise ValueError(f"ped: {name} must be a positive finite number, got "
                     f"{value!r}.")
  if not (np.isfinite(value) and value > 0):
    raise ValueError(f"ped: {name} must be a positive finite number, got "
                     f"{value!r}.")
  return float(value)


def _check_source_std_values(source_std: Any) -> None:
  try:
    s = np.asarray(source_std, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"ped: source_std must be a numeric array of shape [D] "
                     f"(the per-dimension std of ImageNet-val features): {e}"
                     ) from e
  if s.ndim != 1 or s.shape[0] == 0:
    raise ValueError(f"ped: source_std must have shape [D] (one biased std "
                     f"per feature dimension), got shape {s.shape}.")
  if not np.all(np.isfinite(s)):
    raise ValueError(f"ped: source_std contains "
                     f"{int(np.sum(~np.isfinite(s)))} NaN or Inf value(s).")
  if np.any(s < 0):
    raise ValueError(f"ped: source_std must be non-negative (a std), got "
                     f"{int(np.sum(s < 0))} negative value(s), e.g. "
                     f"{float(s[s < 0][0])}.")


def _check_options(base, standardize, source_std, dt, nsigma, c, exit_ratio,
                   eps, max_steps, seed):
  if base not in BASES:
    raise ValueError(f"ped: unknown base metric {base!r}; valid: "
                     f"{list(BASES)}.")
  if standardize not in STANDARDIZE:
    raise ValueError(f"ped: standardize must be one of {list(STANDARDIZE)}, "
                     f"got {standardize!r}.")
  if source_std is None and standardize == "source":
    raise ValueError(
        "ped: standardize='source' needs source_std (the same model's "
        "per-dimension std of its ImageNet-val features, shape [D]).")
  if source_std is not None and standardize == "self":
    raise ValueError(
        "ped: standardize='self' would ignore the given source_std; pass "
        "one or the other.")
  if source_std is not None:
    _check_source_std_values(source_std)
  for name, value in (("dt", dt), ("nsigma", nsigma), ("c", c),
                      ("eps", eps)):
    _positive_float(value, name)
  er = _positive_float(exit_ratio, "exit_ratio")
  if er > 1.0:
    raise ValueError(f"ped: exit_ratio must be in (0, 1], got {exit_ratio!r}.")
  _validation.positive_int(max_steps, "ped: max_steps")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise ValueError(f"ped: seed must be an int, got {seed!r}.")


def _base_options(base: str, seed: int) -> dict:
  spec = _BASE_SPECS[base]
  return spec.options(**({spec.seeded_option: seed}
                         if spec.seeded_option else {}))


def _check_input(x, enc, base, source_std, seed, **_):
  if source_std is not None:
    shape = tuple(np.shape(source_std))
    if shape != (x.shape[1],):
      raise ValueError(
          f"ped: source_std must have shape [D] = [{x.shape[1]}] (one std "
          f"per feature dimension of the features), got shape {shape}.")
  spec = _BASE_SPECS[base]
  if spec.check_input is not None:
    spec.check_input(x, enc, **_base_options(base, seed))


def _source_args(standardize, source_std) -> tuple:
  """``()`` for self-standardisation (logging the warning), else
  ``(source_std,)``."""
  if source_std is None:
    _warn_self_standardize()
    return ()
  return (np.asarray(source_std),)


def _prepare(enc, base, standardize, source_std, dt, nsigma, c, exit_ratio,
             eps, max_steps, seed) -> _spec.Prepared:
  del seed
  if base not in _BASE_CORES:
    raise ValueError(f"ped with base={base!r} has no batched core; it is "
                     "scored through the spec's compute (ped(...)).")
  extra = _source_args(standardize, source_std)
  static = dict(num_classes=enc.num_classes, base=base, dt=float(dt),
                nsigma=float(nsigma), c=float(c),
                exit_ratio=float(exit_ratio), eps=float(eps),
                max_steps=int(max_steps))
  return _spec.Prepared(None, (enc.codes, *extra), static,
                        (True,) + (False,) * len(extra))


def _remap(x, enc, options) -> tuple[jax.Array, jax.Array]:
  """The jitted remap of validated ``x`` under ``options``."""
  extra = _source_args(options["standardize"], options["source_std"])
  static = {k: options[k] for k in _REMAP_OPTIONS}
  fn = _runner.jitted(_remap_only, tuple(sorted(static)) + ("num_classes",))
  codes = _validation.place_like_samples(enc.codes, x)
  return fn(x, codes, *(jnp.asarray(a) for a in extra),
            num_classes=enc.num_classes,
            **{k: (int(v) if k == "max_steps" else float(v))
               for k, v in static.items()})


def _compute(x, enc, **options) -> jax.Array:
  """SFDA / LogME: one jitted :func:`ped_core` call; NLEEP: the jitted remap,
  then NLEEP's own path on the remapped features (seeded by ``seed``)."""
  if options["base"] in _BASE_CORES:
    return _runner.call_core(SPEC, x, enc, **options)
  x_new, _ = _remap(x, enc, options)
  base = _BASE_SPECS[options["base"]]
  return _runner.compute(base, x_new, enc,
                         **_base_options(options["base"], options["seed"]))


# ---------------------------------------------------------------------------
# Public wrappers.


def ped(features: Any, labels: Any, source_std: Any = None,
        base: str = "sfda", standardize: str | None = None, dt: float = 0.1,
        nsigma: float = 0.6, c: float = 1.0, exit_ratio: float = 0.5,
        eps: float = 1e-3, max_steps: int = 6, seed: int = 0) -> float:
  """PED transferability score (Li et al., ICCV 2023): the base metric of the
  features after potential-energy descent.

  Args:
    features: ``[N, D]`` target-set features from the candidate model.
    labels: ``[N]`` class ids (any integers or strings; remapped).
    source_std: ``[D]``, the per-dimension biased std of the SAME model's
      features on ImageNet val (``imagenet_features.std(axis=0)``), finite
      and non-negative. ``None``: ``standardize="self"`` (DEVIATION, logged).
    base: the metric scoring the remapped features: "sfda" (the published
      default), "logme" or "nleep", each with its own semantics and range.
    standardize: ``None`` (auto: "source" when ``source_std`` is given,
      else "self"), "source" (requires ``source_std``) or "self" (DEVIATION:
      the std of ``features`` themselves, computed once before the first
      step and held fixed; the published method needs ImageNet-val
      statistics and may rank models differently).
    dt: time step (> 0); ``step_ab = min(c dt^2 F_ab / 2, F_ab)``.
    nsigma: radius multiplier (> 0): a pair overlaps while ``d_ab <
      nsigma (R_a + R_b)``.
    c: force constant (> 0).
    exit_ratio: in ``(0, 1]``; a step is accepted while ``P_t / P_0 >
      exit_ratio``, else the loop stops and that step is discarded.
    eps: floor (> 0) of ``sigma = max(sigma_src, eps)``.
    max_steps: at most this many steps (the reference hard-codes 6).
    seed: NLEEP's mixture initialisation (base "nleep" only).

  Returns:
    The base metric's score of the remapped features (SFDA: in ``(0, 1]``,
    higher is better). When no pair of classes overlaps (``P_0 = 0``) the
    features are unchanged and this is the base metric's score.

  DEVIATIONS: coincident class means (``d_ab = 0``) contribute 0 (the
  reference returns NaN); ``standardize="self"`` as above.

  Example:
    >>> import numpy as np
    >>> from sfda_jax.metrics._ped import ped
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 20)
    >>> x = rng.normal(size=(60, 8)) + 1.5 * np.eye(8)[y]
    >>> imagenet_std = np.full(8, 1.2)  # the model's ImageNet-val std
    >>> 0.5 < ped(x, y, source_std=imagenet_std) <= 1.0
    True
  """
  return _runner.score(SPEC, features, labels, source_std=source_std,
                       base=base, standardize=standardize, dt=dt,
                       nsigma=nsigma, c=c, exit_ratio=exit_ratio, eps=eps,
                       max_steps=max_steps, seed=seed)


def ped_remap(features: Any, labels: Any, source_std: Any = None,
              standardize: str | None = None, dt: float = 0.1,
              nsigma: float = 0.6, c: float = 1.0, exit_ratio: float = 0.5,
              eps: float = 1e-3, max_steps: int = 6
              ) -> tuple[jax.Array, int]:
  """PED's remapped features (the input of :func:`ped`'s base metric).

  Args:
    features, labels, source_std, standardize, dt, nsigma, c, exit_ratio,
    eps, max_steps: as :func:`ped` (validated the same way).

  Returns:
    ``(features_new [N, D], steps)``: the remapped features in the input's
    row order and working dtype, and the number of accepted steps
    (``0..max_steps``; 0 means unchanged).
  """
  options = SPEC.options(source_std=source_std, standardize=standardize,
                         dt=dt, nsigma=nsigma, c=c, exit_ratio=exit_ratio,
                         eps=eps, max_steps=max_steps)
  x, enc = _runner.validated_features(SPEC, features, labels, options)
  x_new, steps = _remap(x, enc, options)
  if not _validation.fetch(jnp.all(jnp.isfinite(x_new))):
    raise ValueError("ped_remap: the remapped features are not finite.")
  return x_new, int(_validation.fetch(steps))


SPEC = _spec.MetricSpec(
    name="ped", order=130, fn=ped, inputs="features", core=ped_core,
    prepare=_prepare, compute=_compute, check_options=_check_options,
    check_input=_check_input,
    # source_std is None here: score_models scores many models with one
    # option set, and each model has its own ImageNet statistics, so the
    # batched path self-standardises (warned); ped(source_std=...) passes it.
    defaults={"base": "sfda", "standardize": None, "source_std": None,
              "dt": 0.1, "nsigma": 0.6, "c": 1.0, "exit_ratio": 0.5,
              "eps": 1e-3, "max_steps": 6, "seed": 0},
    seeded_option="seed",
    hint="With base='sfda' the within-class scatter of the remapped "
    "features may be numerically singular; try "
    "jax.config.update('jax_enable_x64', True).")
