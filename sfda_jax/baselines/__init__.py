"""Baselines the JAX kernels are checked and benchmarked against.

``numpy_reference``: float64 NumPy implementations of every metric written
plainly from METRICS.md and the published code (per-class loops, the
generalized eigen-solve, scikit-learn's PCA + GaussianMixture for NLEEP). The
tests use them for parity; ``experiments.benchmark`` times them. They import
nothing else from sfda_jax.

``torch_reference``: the published SFDA and LogME algorithms ported step for
step to PyTorch (any device torch sees; float64 for checks, float32 for
timing), the accelerator baseline of ``experiments.benchmark``. NLEEP
delegates to ``numpy_reference.nleep_sklearn`` (its published path is
scikit-learn on the CPU). torch is the optional ``baseline`` extra, imported
lazily by that module only.
"""
