"""Independent float64 NumPy references for the set-level metrics ETran and NCTI.

Written plainly from METRICS.md ("Metrics after SFDA (2023-2025)": "ETran - energy + LDA" and "NCTI -
neural-collapse transferability"), unoptimised (per-class Python loops, direct SVDs) so that they are easy to
check by reading. They are used by the tests to check the JAX implementations; nothing here imports the rest of
``sfda_jax`` but the helpers of its sibling ``numpy_reference``.

Conventions (as ``numpy_reference.py``):
  * inputs are cast to float64 copies (callers' arrays are never modified);
  * labels may be any integers and are remapped to 0..K-1 in sorted order of their unique values;
  * Cov(.) is the biased covariance (divide by the number of rows);
  * mm(v) is the min-max over the candidate models, 0 for every model when max = min (the METRICS.md DEVIATION).
"""

import numpy as np
import scipy.linalg
import scipy.special

from sfda_jax.baselines.numpy_reference import _as_f64, _remap, _softmax


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------







def _cov(X):
    """Biased covariance of the rows of X, [D, D]."""
    Xc = X - X.mean(axis=0)
    return Xc.T @ Xc / X.shape[0]


def _shrunk(C, s):
    """(1 - s) C + s (tr(C) / D) I."""
    D = C.shape[0]
    return (1.0 - s) * C + s * (np.trace(C) / D) * np.eye(D)


def _class_stats(X, y, K):
    """(class means [K, D], priors [K]) of remapped labels."""
    means = np.stack([X[y == k].mean(axis=0) for k in range(K)])
    priors = np.array([np.mean(y == k) for k in range(K)])
    return means, priors


def _within(X, y, K, priors, s=None):
    """sum_k pi_k Cov(X_k) (each Cov shrunk by s first when s is given)."""
    D = X.shape[1]
    Sw = np.zeros((D, D))
    for k in range(K):
        Ck = _cov(X[y == k])
        Sw += priors[k] * (Ck if s is None else _shrunk(Ck, s))
    return Sw


def _true_class_mean(P, y):
    """mean_i P[i, y_i]."""
    return float(np.mean(P[np.arange(len(y)), y]))


def min_max(values):
    """{model: (v - min) / (max - min)}, 0 for every model when max = min."""
    v = np.array([float(x) for x in values.values()])
    lo, hi = v.min(), v.max()
    out = np.zeros_like(v) if hi == lo else (v - lo) / (hi - lo)
    return dict(zip(values, out.tolist()))


def _check_models(features_by_model):
    if not isinstance(features_by_model, dict) or len(features_by_model) < 2:
        raise ValueError("a set-level metric needs {model: features} with at least 2 models")


# ----------------------------------------------------------------------------------------------------------
# ETran (Gholami et al., ICCV 2023)
# ----------------------------------------------------------------------------------------------------------

def etran_energy(X, y):
    """E = mean of the floor(5 N / 1000) smallest e_i = logsumexp_d X[i, d]; N < 200 -> ValueError."""
    X = _as_f64(X)
    N = X.shape[0]
    if len(np.asarray(y).ravel()) != N:
        raise ValueError("one label per row")
    n_sel = int(10 * 0.5) * N // 1000
    if n_sel < 1:
        raise ValueError(f"etran energy needs N >= 200, got {N}")
    e = scipy.special.logsumexp(X, axis=1)
    return float(np.sort(e)[:n_sel].mean())


def _sfda_stage1(X, y, K):
    """SFDA's stage-1 statistics: (means, priors, Sw_s, St_s, s) with the adaptive shrinkage."""
    means, priors = _class_stats(X, y, K)
    Sw = _within(X, y, K, priors)
    # Power iteration exactly as the SFDA code: x = Sw 1, 3 x {t = Sw x; v = t/|t|; t = Sw v; x = t/|t|}.
    x = Sw.sum(axis=1)
    v = x
    for _ in range(3):
        t = Sw @ x
        v = t / np.linalg.norm(t)
        t = Sw @ v
        x = t / np.linalg.norm(t)
    lam = x @ Sw @ v
    s = max(np.exp(-5.0 * lam), 1e-10)
    return means, priors, _shrunk(Sw, s), _shrunk(_cov(X), s), s


def etran_lda(X, y, lda="reference"):
    """ETran's LDA part L.

    "reference": the closed form L = mean_i softmax_k(-1/2 ||x_i - mu_k||^2 + log pi_k)[y_i].
    "fisher" (DEVIATION): SFDA stage-1 mean true-class probability, coef = M Sw_s^-1 (adaptive s).
    """
    X = _as_f64(X)
    y, K = _remap(y)
    if lda == "reference":
        means, priors = _class_stats(X, y, K)
        logits = np.stack([-0.5 * np.sum((X - means[k]) ** 2, axis=1) + np.log(priors[k])
                           for k in range(K)], axis=1)
        return _true_class_mean(_softmax(logits), y)
    if lda == "fisher":
        means, priors, Sw_s, _, _ = _sfda_stage1(X, y, K)
        coef = np.linalg.solve(Sw_s, means.T).T
        intercept = -0.5 * np.sum(means * coef, axis=1) + np.log(priors)
        return _true_class_mean(_softmax(X @ coef.T + intercept), y)
    raise ValueError(f"unknown lda {lda!r}")


def etran_lda_literal(X, y):
    """The reference's literal LDA_Score: SFDA stage-1 fit, then np.linalg.eigh(inv(Sw_s) @ Sb) (a non-symmetric
    matrix: eigh reads its lower triangle), eigenvectors sorted by eigenvalue descending, coef = M V V^T,
    intercept = -1/2 diag(M coef^T) + log pi, mean true-class softmax probability on the raw X."""
    X = _as_f64(X)
    y, K = _remap(y)
    means, priors, Sw_s, St_s, _ = _sfda_stage1(X, y, K)
    Sb = St_s - Sw_s
    evals, evecs = np.linalg.eigh(np.linalg.inv(Sw_s) @ Sb)
    evecs = evecs[:, np.argsort(evals)[::-1]]
    coef = means @ evecs @ evecs.T
    intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
    return _true_class_mean(_softmax(X @ coef.T + intercept), y)


def etran(features_by_model, y, lda="reference"):
    """{model: 0.15 mm(E) + 0.85 mm(L)}."""
    _check_models(features_by_model)
    E = {m: etran_energy(X, y) for m, X in features_by_model.items()}
    L = {m: etran_lda(X, y, lda=lda) for m, X in features_by_model.items()}
    mE, mL = min_max(E), min_max(L)
    return {m: 0.15 * mE[m] + 0.85 * mL[m] for m in features_by_model}


# ----------------------------------------------------------------------------------------------------------
# NCTI (Wang et al., ICCV 2023)
# ----------------------------------------------------------------------------------------------------------

def _pca(X, dim=64):
    """Exact PCA: (scores [N, dim] = U S, explained variances S^2 / (N - 1))."""
    N, D = X.shape
    if min(N, D) < dim:
        raise ValueError(f"ncti needs min(N, D) >= {dim}, got N = {N}, D = {D}")
    Xc = X - X.mean(axis=0)
    U, S, _ = np.linalg.svd(Xc, full_matrices=False)
    return U[:, :dim] * S[:dim], S[:dim] ** 2 / (N - 1)


def _lda_svd_branch(Xp, y, K, c, tol=1e-4):
    """Unshrunk LDA with Sigma = c Sw, as scikit-learn's svd solver: within-class directions whose singular value
    of sqrt(c/N) R / sigma_R is <= tol are dropped, then between-class directions <= tol x the largest.
    Returns (Z = (X - xbar) V[:, :r], probabilities [N, K])."""
    N = Xp.shape[0]
    means, priors = _class_stats(Xp, y, K)
    xbar = priors @ means
    R = Xp - means[y]
    std = R.std(axis=0)
    std[std == 0] = 1.0
    _, S, Vt = np.linalg.svd(np.sqrt(c / N) * R / std, full_matrices=False)
    rank = int(np.sum(S > tol))
    W = (Vt[:rank] / std).T / S[:rank]                      # W^T (c Sw) W = I
    B = (np.sqrt(N * priors / (K - 1))[:, None] * (means - xbar)) @ W
    _, S2, Vt2 = np.linalg.svd(B, full_matrices=False)
    rank2 = int(np.sum(S2 > tol * S2[0]))
    V = W @ Vt2.T[:, :rank2]
    r = min(K - 1, Xp.shape[1])
    Z = (Xp - xbar) @ V[:, :r]
    G = (means - xbar) @ V
    coef = G @ V.T
    intercept = -0.5 * np.sum(G ** 2, axis=1) + np.log(priors) - xbar @ coef.T
    return Z, _softmax(Xp @ coef.T + intercept)


def _lda_eigen_branch(Xp, y, K, s):
    """Shrunk LDA (scikit-learn's eigen solver, shrinkage s): Sigma = Sw_s, Sb = St_s - Sw_s,
    scipy.linalg.eigh(Sb, Sigma) (V^T Sigma V = I), descending. Returns (Z = X V[:, :r], probabilities)."""
    means, priors = _class_stats(Xp, y, K)
    Sw_s = _within(Xp, y, K, priors, s=s)
    Sb = _shrunk(_cov(Xp), s) - Sw_s
    evals, evecs = scipy.linalg.eigh(Sb, Sw_s)
    V = evecs[:, np.argsort(evals)[::-1]]
    r = min(K - 1, Xp.shape[1])
    Z = Xp @ V[:, :r]
    coef = means @ V @ V.T
    intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
    return Z, _softmax(Xp @ coef.T + intercept)


def ncti_lda_branch(X, y):
    """("svd" or "eigen", s) that the shrinkage rule picks for X: s = max(exp(-sum_{j<32} lambda_j), 1e-10)."""
    _, lam = _pca(_as_f64(X))
    s = max(np.exp(-lam[:32].sum()), 1e-10)
    return ("svd" if s == 1e-10 else "eigen"), s


def ncti_parts(X, y, within="unbiased"):
    """{"seli", "ncc", "vc"} of one model (see METRICS.md, NCTI steps 1-6).

    within: "unbiased" (c = N/(N-K) in the svd branch) or "biased" (c = 1).
    """
    X = _as_f64(X)
    y, K = _remap(y)
    N = X.shape[0]
    if within == "unbiased":
        c = N / (N - K)
    elif within == "biased":
        c = 1.0
    else:
        raise ValueError(f"unknown within {within!r}")
    Xp, lam = _pca(X)
    s = max(np.exp(-lam[:32].sum()), 1e-10)
    if s == 1e-10:
        Z, P = _lda_svd_branch(Xp, y, K, c)
    else:
        Z, P = _lda_eigen_branch(Xp, y, K, s)
    seli = float(np.linalg.svd(Z - Z.mean(axis=0), compute_uv=False).sum())
    ncc = _true_class_mean(P, y)
    total = 0.0
    for k in range(K):
        Pk = P[y == k]
        # A class with one sample adds ||p_i||_2 (the nuclear norm of a 1 x K matrix).
        total += np.linalg.norm(Pk[0]) if Pk.shape[0] == 1 else np.linalg.svd(Pk, compute_uv=False).sum()
    return {"seli": seli, "ncc": ncc, "vc": float(np.log(total))}


def ncti(features_by_model, y, within="unbiased"):
    """{model: mm(ncc) + mm(seli) - mm(vc)}."""
    _check_models(features_by_model)
    parts = {m: ncti_parts(X, y, within=within) for m, X in features_by_model.items()}
    mm = {p: min_max({m: parts[m][p] for m in parts}) for p in ("seli", "ncc", "vc")}
    return {m: mm["ncc"][m] + mm["seli"][m] - mm["vc"][m] for m in parts}
