"""Transferability metrics: pure, jittable JAX kernels with validating wrappers.

Each public metric ``f(features [N, D], labels [N]) -> float`` validates and
remaps its inputs on the host, then calls a jitted ``*_core`` function with a
static ``num_classes``. The ``*_core`` functions are exported for use inside
your own ``jax.jit``/``jax.vmap`` code (they take integer codes ``0..K-1``).
"""

from sfda_jax.metrics._etran import etran, etran_parts
from sfda_jax.metrics._gbc import gbc, gbc_core
from sfda_jax.metrics._hscore import (hscore, hscore_core, regularized_hscore,
                                     regularized_hscore_core)
from sfda_jax.metrics._leep import leep, leep_core, nce, nce_core
from sfda_jax.metrics._logme import logme, logme_core
from sfda_jax.metrics._knn import (inter_class_distance,
                                   inter_class_distance_core, knn, knn_core)
from sfda_jax.metrics._ncti import ncti, ncti_parts
from sfda_jax.metrics._nleep import nleep, nleep_core
from sfda_jax.metrics._parc import parc, parc_core
from sfda_jax.metrics._ped import ped, ped_remap
from sfda_jax.metrics._sfda import (SFDAState, confmix, sfda, sfda_core,
                                   sfda_fit, sfda_fit_core, sfda_predict_proba,
                                   sfda_transform)
from sfda_jax.metrics._transrate import transrate, transrate_core
from sfda_jax.metrics import registry
from sfda_jax.metrics.registry import (ALL_METRICS, FEATURE_METRICS, REGISTRY,
                                       SOURCE_METRICS, MetricSpec)

__all__ = [
    "ALL_METRICS", "FEATURE_METRICS", "MetricSpec", "REGISTRY",
    "SOURCE_METRICS", "SFDAState", "confmix", "etran", "etran_parts", "gbc",
    "gbc_core", "hscore", "hscore_core", "inter_class_distance",
    "inter_class_distance_core", "knn", "knn_core", "leep",
    "leep_core", "logme", "logme_core", "ncti", "ncti_parts", "nce",
    "nce_core", "nleep", "nleep_core", "parc", "parc_core", "ped",
    "ped_remap", "regularized_hscore",
    "regularized_hscore_core", "registry", "sfda", "sfda_core", "sfda_fit",
    "sfda_fit_core", "sfda_predict_proba", "sfda_transform", "transrate",
    "transrate_core",
]
