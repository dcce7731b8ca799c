"""Float64 NumPy references of the k-NN estimator and INT, written plainly from METRICS.md.

"## k-NN estimator (Sorkhei et al., arXiv 2503.18528, TMLR 2025)" and "## INT - pairwise normalised
inter-class distance (Singh, Hess & Vanschoren, arXiv 2502.06925)". Per-sample and per-class-pair Python
loops, no chunking and no numerical tricks, so that each line can be read against the contract. Nothing here
imports the rest of ``sfda_jax`` but the helpers of its sibling ``numpy_reference``.

``knn_vectorised`` and ``inter_class_distance_cdist`` are the same two quantities in the form of the metrics'
official code (DINO's ``knn_classifier``: a chunked similarity product and a top-k; pymfe's ``ft_int``:
scipy's ``cdist`` per class pair), in float64: the baselines ``experiments.benchmark`` times, since the
loops above would measure Python, not the formulation. Tests check they equal the loops.

Conventions (as in ``numpy_reference``): inputs are cast to float64 copies (the callers' arrays are never
modified); labels may be any integers and are remapped to 0..K-1 in sorted order of their unique values.
"""

import numpy as np
from scipy.spatial import distance

from sfda_jax.baselines.numpy_reference import _as_f64, _remap






def _l2_normalise(X):
    """Rows divided by max(||x_i||_2, 1e-12)."""
    norms = np.sqrt(np.sum(X * X, axis=1, keepdims=True))
    return X / np.maximum(norms, 1e-12)


# ----------------------------------------------------------------------------------------------------------
# k-NN estimator (Sorkhei et al., TMLR 2025; DINO's eval_knn protocol)
# ----------------------------------------------------------------------------------------------------------

def _knn_inputs(X, y, k):
    """``(L2-normalised float64 rows, remapped labels, K, N)``; checks ``1 <= k <= N - 1``."""
    X = _as_f64(X)
    y, K = _remap(y)
    N = X.shape[0]
    if not 1 <= k <= N - 1:
        raise ValueError(f"k must be in [1, N - 1] = [1, {N - 1}], got k={k} (N={N}).")
    return _l2_normalise(X), y, K, N


def knn(X, y, k=20, temperature=0.07, soft=False):
    """Leave-one-out weighted k-NN accuracy on cosine similarity (DINO's knn_classifier).

    1. xh_i = x_i / max(||x_i||, 1e-12); s_ij = xh_i . xh_j.
    2. Neighbours of i come from j != i (leave-one-out over the scoring set).
    3. NN_k(i) = the k largest s_ij, ties broken towards the lower j; k <= N - 1.
    4. c_i(l) = sum_{j in NN_k(i), y_j = l} exp(s_ij / T); pred_i = argmax_l c_i(l), ties -> smallest id.
    5. score = mean_i [pred_i == y_i]; soft=True: mean_i c_i(y_i) / sum_l c_i(l).
    """
    Xh, y, K, N = _knn_inputs(X, y, k)
    total = 0.0
    for i in range(N):
        s = np.array([np.dot(Xh[i], Xh[j]) for j in range(N)])
        others = [j for j in range(N) if j != i]
        # Stable sort on -s: equal similarities keep their index order (lower j first).
        order = sorted(others, key=lambda j: -s[j])
        neighbours = order[:k]
        votes = np.zeros(K)
        for j in neighbours:
            votes[y[j]] += np.exp(s[j] / temperature)
        if soft:
            total += votes[y[i]] / votes.sum()
        else:
            pred = int(np.argmax(votes))       # first maximum: the smallest class id
            total += float(pred == y[i])
    return total / N


# ----------------------------------------------------------------------------------------------------------
# INT (Singh, Hess & Vanschoren, arXiv 2502.06925; pymfe MFEClustering.ft_int)
# ----------------------------------------------------------------------------------------------------------

def _int_inputs(X, y, normalize):
    """``(float64 rows, L2-normalised for normalize="l2", remapped labels, K)``."""
    X = _as_f64(X)
    y, K = _remap(y)
    if normalize == "l2":
        X = _l2_normalise(X)
    elif normalize is not None:
        raise ValueError(f"normalize must be None or 'l2', got {normalize!r}.")
    return X, y, K


def inter_class_distance(X, y, normalize=None):
    """INT = 2/(K(K-1)) sum_{a<b} (1/(n_a n_b)) sum_{y_i=a} sum_{y_j=b} ||x_i - x_j||_2.

    Plain Euclidean distance on the raw features (``normalize="l2"``: on L2-normalised rows instead).
    """
    X, y, K = _int_inputs(X, y, normalize)
    total = 0.0
    for a in range(K):
        for b in range(a + 1, K):
            Xa, Xb = X[y == a], X[y == b]
            pair_sum = 0.0
            for xi in Xa:
                pair_sum += np.sum(np.sqrt(np.sum((xi[None, :] - Xb) ** 2, axis=1)))
            total += pair_sum / (Xa.shape[0] * Xb.shape[0])
    return 2.0 * total / (K * (K - 1))


# ----------------------------------------------------------------------------------------------------------
# The official code's formulations (benchmark baselines)
# ----------------------------------------------------------------------------------------------------------

def knn_vectorised(X, y, k=20, temperature=0.07, soft=False, chunk=1024):
    """:func:`knn` as DINO's ``knn_classifier`` computes it: per chunk of rows, similarities to every row
    (one product), the sample itself excluded, the top k (``argpartition``), weights exp(s / T) summed per
    class. Equal to :func:`knn` up to the order of equal similarities (measure zero on real features)."""
    Xh, y, K, N = _knn_inputs(X, y, k)
    total = 0.0
    for start in range(0, N, chunk):
        rows = np.arange(start, min(start + chunk, N))
        s = Xh[rows] @ Xh.T                                   # [B, N]
        s[np.arange(rows.size), rows] = -np.inf               # leave one out
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]       # [B, k]
        weights = np.exp(np.take_along_axis(s, top, axis=1) / temperature)
        votes = np.zeros((rows.size, K))
        np.add.at(votes, (np.repeat(np.arange(rows.size), k), y[top].ravel()), weights.ravel())
        if soft:
            total += np.sum(votes[np.arange(rows.size), y[rows]] / votes.sum(axis=1))
        else:
            total += np.sum(np.argmax(votes, axis=1) == y[rows])
    return float(total / N)


def inter_class_distance_cdist(X, y, normalize=None):
    """:func:`inter_class_distance` as pymfe's ``ft_int`` computes it: the mean of scipy's ``cdist``
    (Euclidean) between the samples of each class pair, averaged over the pairs."""
    X, y, K = _int_inputs(X, y, normalize)
    groups = [X[y == a] for a in range(K)]
    total = sum(distance.cdist(groups[a], groups[b]).mean()
                for a in range(K) for b in range(a + 1, K))
    return float(2.0 * total / (K * (K - 1)))
