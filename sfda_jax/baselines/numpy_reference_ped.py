"""Float64 NumPy reference of PED (Li, Hu, Ge, Shan, Duan, ICCV 2023), written plainly from METRICS.md
("PED — potential-energy descent remap before a base metric").

A direct transcription: every step recomputes the per-class statistics from the current X and builds the
K x K x D tensor of pairwise repulsions, as the published ``One_Step_PED`` does. The one departure from the
published code is the documented DEVIATION: a pair of classes with coincident means (d_ab = 0) contributes 0
(the published code returns NaN). Only NumPy and ``sfda_jax.baselines.numpy_reference`` (the base metrics)
are used; nothing else of ``sfda_jax``.
"""

import numpy as np

from sfda_jax.baselines import numpy_reference


def _remap_labels(y):
    classes, y_idx = np.unique(np.asarray(y).ravel(), return_inverse=True)
    return y_idx.ravel(), len(classes)


def one_step(X, y, K, sigma, dt=0.1, nsigma=0.6, c=1.0):
    """One PED step from X (original units). Returns (X_new, P, delta [K, D]).

    sigma: the floored per-dimension std max(sigma_src, eps), [D]. y: labels 0..K-1.
    """
    Z = X / sigma
    D = X.shape[1]
    mu = np.zeros((K, D))
    var = np.zeros((K, D))
    for k in range(K):
        Zk = Z[y == k]
        mu[k] = Zk.mean(axis=0)
        var[k] = Zk.var(axis=0)               # biased
    R = np.sqrt(var.sum(axis=1))

    diff = mu[:, None, :] - mu[None, :, :]    # [K, K, D]: mu_a - mu_b
    d = np.sqrt(np.sum(diff ** 2, axis=2))    # [K, K]
    F = np.maximum(nsigma * (R[:, None] + R[None, :]) - d, 0.0)
    step = np.minimum(0.5 * c * dt ** 2 * F, F)
    pair = np.zeros((K, K, D))
    for a in range(K):
        for b in range(K):
            if a != b and d[a, b] > 0:        # d_ab = 0 contributes 0 (DEVIATION)
                pair[a, b] = step[a, b] * diff[a, b] / d[a, b]
    delta = pair.sum(axis=1)                  # [K, D], standardised units
    X_new = X + delta[y] * sigma
    P = np.sum(np.abs(delta))
    return X_new, P, delta


def ped_remap(X, y, sigma_src, dt=0.1, nsigma=0.6, c=1.0, exit_ratio=0.5, eps=1e-3, max_steps=6):
    """PED's remap. Returns (X_remapped, steps_accepted).

    Loop t = 0..max_steps-1: compute (X_new, P_t); accept (X <- X_new) while P_t / P_0 > exit_ratio, else
    stop and discard that step. P_0 = 0 gives 0/0 = NaN: stop at once, X unchanged.
    """
    X = np.array(X, dtype=np.float64, copy=True)
    y, K = _remap_labels(y)
    sigma = np.maximum(np.asarray(sigma_src, dtype=np.float64), eps)
    accepted = 0
    P0 = None
    for t in range(max_steps):
        X_new, P, _ = one_step(X, y, K, sigma, dt=dt, nsigma=nsigma, c=c)
        if t == 0:
            P0 = P
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.float64(P) / np.float64(P0)
        if ratio > exit_ratio:
            X = X_new
            accepted += 1
        else:
            break
    return X, accepted


_BASES = {
    "sfda": lambda X, y, seed: numpy_reference.sfda_score(X, y),
    "logme": lambda X, y, seed: numpy_reference.logme(X, y),
    "nleep": lambda X, y, seed: numpy_reference.nleep_sklearn(X, y, seed=seed),
}


def ped(X, y, sigma_src=None, base="sfda", dt=0.1, nsigma=0.6, c=1.0, exit_ratio=0.5, eps=1e-3,
        max_steps=6, seed=0):
    """PED score: the base metric of the remapped features.

    sigma_src: the per-dimension biased std of ImageNet-val features [D]; None: the std of X itself over
    axis 0 (biased), computed once before step 0 (standardize="self", DEVIATION).
    base: "sfda", "logme", "nleep" (numpy_reference's sfda_score, logme, nleep_sklearn(seed=seed)), or a
    callable base(X, y) -> float.
    """
    X = np.array(X, dtype=np.float64, copy=True)
    if sigma_src is None:
        sigma_src = X.std(axis=0)
    X_new, _ = ped_remap(X, y, sigma_src, dt=dt, nsigma=nsigma, c=c, exit_ratio=exit_ratio, eps=eps,
                         max_steps=max_steps)
    if callable(base):
        return float(base(X_new, y))
    return float(_BASES[base](X_new, y, seed))
