"""Experiment entry points (absl apps): thin layers over the sfda_jax library."""
