"""sfda_jax: which pre-trained model to fine-tune, without fine-tuning them all.

A JAX reimplementation of SFDA (Self-challenging Fisher Discriminant Analysis,
Shao et al., ECCV 2022) and the established transferability metrics (LogME,
LEEP, NCE, NLEEP, H-score, regularized H-score, GBC, TransRate, PARC), those
published since (ETran, NCTI, PED, k-NN, INT) and SFDA's ensemble selection,
as pure, jittable kernels, plus tools to score a model zoo and compare the
ranking with fine-tuning accuracy.

Example:
  >>> import numpy as np, sfda_jax
  >>> rng = np.random.default_rng(0)
  >>> y = np.repeat(np.arange(3), 20)
  >>> x = rng.normal(size=(60, 8)) + 3 * np.eye(8)[y]
  >>> round(sfda_jax.sfda(x, y), 3) > 0.5
  True
"""

from sfda_jax.metrics import (SFDAState, confmix, etran, etran_parts, gbc,
                              hscore, inter_class_distance, knn, leep, logme,
                              ncti, ncti_parts, nce, nleep, parc, ped,
                              ped_remap, regularized_hscore, sfda, sfda_fit,
                              sfda_predict_proba, sfda_transform, transrate)
from sfda_jax import streaming
from sfda_jax.sharding import sample_mesh, shard_samples
from sfda_jax.ranking import (ALL_METRICS, FEATURE_METRICS, SOURCE_METRICS,
                              ScoreResult, agreement, score_models)

from sfda_jax.uncertainty import ResampleResult, resample_scores
from sfda_jax.ensemble import EnsembleResult, select_ensemble

__version__ = "0.1.0"

# The ranking workflow needs the pipeline (TensorFlow, flax, ...): imported
# on first use, so `import sfda_jax` stays light.
_LAZY = {"rank_zoo": "sfda_jax.evaluation",
         "RankConfig": "sfda_jax.evaluation",
         "RankResult": "sfda_jax.evaluation"}


def __getattr__(name):
  if name in _LAZY:
    import importlib  # pylint: disable=g-import-not-at-top
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'sfda_jax' has no attribute {name!r}")

__all__ = [
    "ALL_METRICS", "EnsembleResult", "FEATURE_METRICS", "SOURCE_METRICS",
    "RankConfig", "RankResult", "ResampleResult", "SFDAState", "ScoreResult",
    "agreement", "confmix", "etran", "etran_parts", "gbc", "hscore",
    "inter_class_distance", "knn", "leep", "logme", "ncti", "ncti_parts",
    "nce", "nleep", "parc", "ped", "ped_remap", "rank_zoo",
    "regularized_hscore", "resample_scores", "sample_mesh",
    "score_models", "select_ensemble",
    "sfda", "sfda_fit", "sfda_predict_proba", "sfda_transform", "shard_samples",
    "streaming", "transrate",
]
