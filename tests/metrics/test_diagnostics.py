"""Iterative solvers report convergence; cores agree with and without jit."""

import functools

from absl.testing import parameterized
import chex
import jax.numpy as jnp
import numpy as np
import pytest

import sfda_jax
from sfda_jax.metrics import _logme, _validation, registry
from conftest import make_features


def test_logme_reports_convergence():
  x, y = make_features(100, 16, 4, seed=0, separation=4.0)
  score, diag = sfda_jax.logme(x, y, return_diagnostics=True)
  assert score == sfda_jax.logme(x, y)
  assert diag.converged and 1 <= diag.iterations < _logme.MAX_ITERATIONS


def test_logme_reports_the_iteration_cap():
  # Pure noise with N < D: alpha / beta keeps moving past the 11-step cap.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(30, 60)).astype(np.float32)
  y = rng.permutation(np.repeat(np.arange(3), 10))
  score, diag = sfda_jax.logme(x, y, return_diagnostics=True)
  assert np.isfinite(score) and score == sfda_jax.logme(x, y)
  assert diag == _logme.Diagnostics(iterations=_logme.MAX_ITERATIONS,
                                    converged=False)
  t = rng.normal(size=40)
  _, diag = sfda_jax.logme(rng.normal(size=(40, 5)), t, regression=True,
                           return_diagnostics=True)
  assert diag.iterations == _logme.MAX_ITERATIONS and not diag.converged


_X, _Y = make_features(60, 6, 3, seed=2)
_X_PARTS, _Y_PARTS = make_features(240, 70, 3, seed=2)


class CoreJitTest(chex.TestCase, parameterized.TestCase):
  """Each batched core, jitted and not, scores what its wrapper scores."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*[n for n, s in registry.REGISTRY.items()
                              if s.inputs == "features" and s.batched])
  def test_core(self, metric):
    spec = registry.REGISTRY[metric]
    # Set-level parts need N >= 200 (ETran) and 64 components (NCTI).
    x_in, y_in = (_X_PARTS, _Y_PARTS) if spec.part_of else (_X, _Y)
    enc = _validation.encode_labels(y_in)
    p = spec.prepare(enc, **spec.defaults)
    x = jnp.asarray(x_in, jnp.float32)
    if p.rows is not None:
      x = x[jnp.asarray(p.rows)]
    args = [jnp.asarray(a) for a in p.args]
    core = self.variant(functools.partial(spec.core, **p.static))
    got = float(core(x, *args))
    want = spec.fn(x_in.astype(np.float32), y_in)
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_nleep_reports_convergence():
  from sfda_jax.metrics import _nleep
  x, y = make_features(200, 8, 3, seed=1, separation=4.0)
  score, diag = sfda_jax.nleep(x, y, seed=0, return_diagnostics=True)
  assert score == sfda_jax.nleep(x, y, seed=0)
  assert isinstance(diag, _nleep.Diagnostics)
  assert diag.kmeans_converged and 1 <= diag.kmeans_iterations < 300
  assert diag.em_converged and 1 <= diag.em_iterations < 100


def test_nleep_reports_the_em_cap():
  import jax
  from sfda_jax.metrics import _nleep
  x, _ = make_features(200, 8, 3, seed=1, separation=4.0)
  z = jnp.asarray(x - x.mean(axis=0), jnp.float32)
  fit = jax.jit(_nleep.gmm_posteriors,
                static_argnames=("num_components", "max_iter", "tol",
                                 "return_diagnostics"))
  theta, diag = fit(jax.random.PRNGKey(0), z, num_components=15, max_iter=1,
                    tol=1e-12, return_diagnostics=True)
  assert theta.shape == (200, 15)
  assert int(diag.em_iterations) == 1 and not bool(diag.em_converged)
  _, diag = fit(jax.random.PRNGKey(0), z, num_components=15, max_iter=100,
                tol=1e-3, return_diagnostics=True)
  assert 1 < int(diag.em_iterations) < 100 and bool(diag.em_converged)
