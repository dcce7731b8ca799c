"""Baselines the JAX kernels are checked and benchmarked against.

``numpy_reference``: float64 NumPy implementations of every metric written
plainly from METRICS.md and the published code (per-class loops, the
generalized eigen-solve, scikit-learn's PCA + GaussianMixture for NLEEP). The
tests use them for parity; ``experiments.benchmark`` times them. They import
nothing else from sfda_jax.
"""
