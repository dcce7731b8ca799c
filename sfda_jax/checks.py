"""Argument checks shared by the pipeline (one rule, one message each).

``positive_int`` is the metrics' own check (`sfda_jax.metrics._validation`),
re-exported so the pipeline and the metrics give the same message.
"""

from sfda_jax.metrics._validation import positive_int

__all__ = ["positive_int"]
