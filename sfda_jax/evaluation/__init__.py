"""Evaluation: ranking a model zoo end to end, and its ground truth.

:func:`rank_zoo` (:mod:`.rank`) runs the whole workflow from a
:class:`RankConfig`; :mod:`.ground_truth` resolves fine-tune accuracies
(the committed ones ship as package data). Needs the ``[pipeline]`` extra
for datasets and backbones (a directory of precomputed features needs only
the core).
"""

from sfda_jax.evaluation.rank import (ZOOS, RankConfig, RankResult,
                                      model_names, rank_zoo)

__all__ = ["ZOOS", "RankConfig", "RankResult", "model_names", "rank_zoo"]
