"""PyTorch baseline: the published SFDA code's metrics, ported to torch.

This is how one would run the published SFDA / LogME code on an accelerator
without sfda_jax: the same algorithms, step for step, as tensor operations on
whatever device torch sees. It is what ``experiments.benchmark`` times
sfda_jax against, and ``tests/baselines/test_torch_reference.py`` checks it against the
float64 NumPy reference (``numpy_reference``) to ~1e-8 relative.

What is ported (formulas exactly as ``numpy_reference`` / METRICS.md):
  * SFDA (``sfda_score``): class means by a scatter-add, the within-class
    scatter as a per-class loop of biased covariances weighted by the priors,
    the published 3-step power iteration for the adaptive shrinkage, shrunk
    total and within scatters, the generalized eigenproblem
    ``Sb v = e Sw_s v`` solved by Cholesky whitening (``L^-1 Sb L^-T = U E U^T``,
    ``V = L^-T U``, what LAPACK's ``sygvd`` behind ``scipy.linalg.eigh(a, b)``
    does), ``coef = M V V^T``, the "soften" softmax, ConfMix as a per-class
    loop, and the second fit with the first fit's shrinkage.
  * LogME (``logme``): eigen-decomposition of ``F^T F`` (N > D) or thin SVD,
    ``u = F V / s``, then the fixed point per target column, a Python loop
    with a host-side convergence test each step, as the published code.
  * NLEEP (``nleep``): its published path is scikit-learn's PCA and
    GaussianMixture on the CPU, which torch does not change; this module
    delegates to ``numpy_reference.nleep_sklearn`` (exactly that path).

torch is an optional dependency (the ``baseline`` extra) imported only here,
lazily, on first use: ``import sfda_jax`` never needs it.

Every function takes ``device`` (default: ``"cuda"`` when available, else
``"cpu"``) and ``dtype`` (default ``float64``, the reference precision; use
``float32`` for timing). Inputs may be NumPy arrays or torch tensors; a tensor
already on ``device`` with ``dtype`` is used without a copy and never modified.
Labels may be any integers; they are remapped to ``0..K-1`` in sorted order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sfda_jax.baselines import numpy_reference

__all__ = ["available", "default_device", "sfda_fit", "sfda_predict_proba",
           "sfda_score", "logme", "nleep"]

_INSTALL_HINT = ("sfda_jax.baselines.torch_reference needs PyTorch, the "
                 "optional 'baseline' extra: pip install -e '.[baseline]'")


def _torch():
  """Imports torch on first use, with an actionable error when it is absent."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"{_INSTALL_HINT} ({e}).") from e
  return torch


def available() -> bool:
  """Whether torch can be imported."""
  try:
    _torch()
  except ImportError:
    return False
  return True


def default_device() -> str:
  """``"cuda"`` when torch sees a CUDA device, else ``"cpu"``."""
  return "cuda" if _torch().cuda.is_available() else "cpu"


def _resolve(device, dtype):
  """(torch.device, torch.dtype) from strings, torch objects or None."""
  torch = _torch()
  device = torch.device(default_device() if device is None else device)
  if dtype is None:
    dtype = torch.float64
  elif isinstance(dtype, str):
    if dtype not in ("float32", "float64"):
      raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    dtype = getattr(torch, dtype)
  elif dtype not in (torch.float32, torch.float64):
    raise ValueError(f"dtype must be torch.float32 or torch.float64, got "
                     f"{dtype}.")
  return device, dtype


def _features(x: Any, device, dtype):
  """A ``[N, D]`` tensor on ``device`` in ``dtype`` (no copy if already so)."""
  torch = _torch()
  if isinstance(x, torch.Tensor):
    t = x.to(device=device, dtype=dtype)
  else:
    t = torch.as_tensor(np.asarray(x), dtype=dtype, device=device)
  if t.ndim != 2:
    raise ValueError(f"features must be 2-D [N, D], got shape "
                     f"{tuple(t.shape)}.")
  return t


def _labels(y: Any, num_samples: int, device):
  """Labels remapped to ``0..K-1`` (sorted unique ids) as a long tensor."""
  torch = _torch()
  if isinstance(y, torch.Tensor):
    y = y.detach().cpu().numpy()
  y = np.asarray(y).ravel()
  if y.shape[0] != num_samples:
    raise ValueError(f"length mismatch: features have {num_samples} rows but "
                     f"labels has {y.shape[0]} entries.")
  classes, codes = np.unique(y, return_inverse=True)
  if classes.shape[0] < 2:
    raise ValueError("labels must contain at least 2 classes.")
  return torch.as_tensor(codes.ravel(), dtype=torch.long,
                         device=device), int(classes.shape[0])


# ---------------------------------------------------------------------------
# SFDA


def _cov(x):
  """Biased covariance ``[D, D]`` of the rows of ``x [n, D]`` (np.cov, bias)."""
  xc = x - x.mean(dim=0, keepdim=True)
  return xc.T @ xc / x.shape[0]


def _shrunk(c, s: float):
  """``(1 - s) C + s (tr(C) / D) I``."""
  torch = _torch()
  d = c.shape[0]
  return (1.0 - s) * c + s * (torch.trace(c) / d) * torch.eye(
      d, dtype=c.dtype, device=c.device)


def _class_means(x, codes, num_classes: int):
  """``[K, D]`` class means by scatter-add (the published ``np.add.at``)."""
  torch = _torch()
  means = torch.zeros((num_classes, x.shape[1]), dtype=x.dtype,
                      device=x.device)
  means.index_add_(0, codes, x)
  counts = torch.bincount(codes, minlength=num_classes).to(x.dtype)
  return means / counts[:, None], counts


def _power_iteration(a, max_iterations: int = 3):
  """The published ``iterative_A`` top-eigenvalue estimate of ``a [D, D]``."""
  torch = _torch()
  x = a.sum(dim=1)
  v = x
  for _ in range(max_iterations):
    t = a @ x
    v = t / torch.linalg.vector_norm(t)
    t = a @ v
    x = t / torch.linalg.vector_norm(t)
  return x @ (a @ v)


def _fit(x, codes, num_classes: int, shrinkage: float | None) -> dict:
  """SFDA's regularised Fisher discriminant on prepared tensors."""
  torch = _torch()
  n, d = x.shape
  means, counts = _class_means(x, codes, num_classes)
  priors = counts / n

  sw = torch.zeros((d, d), dtype=x.dtype, device=x.device)
  for k in range(num_classes):                  # per-class covariance loop
    sw += priors[k] * _cov(x[codes == k])

  if shrinkage is None:                         # adaptive (host-side, as published)
    lam = float(_power_iteration(sw, max_iterations=3))
    shrinkage = max(math.exp(-5.0 * lam), 1e-10)
  s = float(shrinkage)

  st_s = _shrunk(_cov(x), s)
  sw_s = _shrunk(sw, s)
  sb = st_s - sw_s

  # Generalized eigh(Sb, Sw_s) by Cholesky whitening, as LAPACK sygvd.
  chol = torch.linalg.cholesky(sw_s)
  tmp = torch.linalg.solve_triangular(chol, sb, upper=False)         # L^-1 Sb
  whitened = torch.linalg.solve_triangular(chol, tmp.T, upper=False)  # .. L^-T
  whitened = 0.5 * (whitened + whitened.T)
  evals, u = torch.linalg.eigh(whitened)
  scalings = torch.linalg.solve_triangular(chol.T, u, upper=True)    # L^-T U
  order = torch.argsort(evals, descending=True)
  scalings = scalings[:, order]

  coef = means @ scalings @ scalings.T
  intercept = -0.5 * torch.sum(means * coef, dim=1) + torch.log(priors)
  return {"means": means, "priors": priors, "shrinkage": s, "coef": coef,
          "intercept": intercept, "scalings": scalings,
          "eigenvalues": evals[order]}


def _predict_proba(state: dict, x):
  torch = _torch()
  return torch.softmax(x @ state["coef"].T + state["intercept"], dim=1)


def sfda_fit(features: Any, labels: Any, shrinkage: float | None = None,
             device=None, dtype=None) -> dict:
  """Fits the published SFDA discriminant.

  Args:
    features: ``[N, D]`` array or tensor.
    labels: ``[N]`` class ids (any integers).
    shrinkage: ``None`` for the adaptive ``max(exp(-5 lambda), 1e-10)``, or a
      fixed value.
    device: torch device (default cuda if available, else cpu).
    dtype: ``float64`` (default) or ``float32``.

  Returns:
    A dict of tensors: means ``[K, D]``, priors ``[K]``, coef ``[K, D]``,
    intercept ``[K]``, scalings ``[D, D]`` (``V`` sorted by eigenvalue
    descending, ``V^T Sw_s V = I``), eigenvalues ``[D]``; and shrinkage
    (float).
  """
  device, dtype = _resolve(device, dtype)
  x = _features(features, device, dtype)
  codes, k = _labels(labels, x.shape[0], device)
  return _fit(x, codes, k, shrinkage)


def sfda_predict_proba(state: dict, features: Any) -> Any:
  """``softmax(X coef^T + intercept)``, ``[N, K]`` tensor on the fit's device."""
  coef = state["coef"]
  return _predict_proba(state, _features(features, coef.device, coef.dtype))


def sfda_score(features: Any, labels: Any, device=None, dtype=None) -> float:
  """SFDA score as the published code computes it.

  Args:
    features: ``[N, D]`` array or tensor (never modified).
    labels: ``[N]`` class ids (any integers).
    device: torch device (default cuda if available, else cpu).
    dtype: ``float64`` (default) or ``float32``.

  Returns:
    Mean probability of the true class after ConfMix and the second fit.
  """
  torch = _torch()
  device, dtype = _resolve(device, dtype)
  x = _features(features, device, dtype)
  codes, k = _labels(labels, x.shape[0], device)
  n = x.shape[0]

  first = _fit(x, codes, k, None)
  p = _predict_proba(first, x)
  p = torch.softmax(p, dim=1)                   # the published "soften" step

  means = first["means"]                        # of the original X
  means_other = (means.sum(dim=0, keepdim=True) - means) / (k - 1)
  mixed = x.clone()
  for c in range(k):                            # ConfMix, per class
    idx = torch.nonzero(codes == c).squeeze(1)
    q = p[idx, c][:, None]
    mixed[idx] = q * x[idx] + (1.0 - q) * means_other[c]

  second = _fit(mixed, codes, k, first["shrinkage"])
  p2 = _predict_proba(second, mixed)
  return float(p2[torch.arange(n, device=device), codes].mean())


# ---------------------------------------------------------------------------
# LogME


def logme(features: Any, labels: Any, regression: bool = False, device=None,
          dtype=None) -> float:
  """LogME evidence (fixed-point solver), mean over target columns.

  Args:
    features: ``[N, D]`` array or tensor.
    labels: ``[N]`` class ids, or with ``regression=True`` float targets
      ``[N]`` or ``[N, T]``.
    regression: one evidence per target column instead of per class.
    device: torch device (default cuda if available, else cpu).
    dtype: ``float64`` (default) or ``float32``.

  Returns:
    The mean per-sample log evidence.
  """
  torch = _torch()
  device, dtype = _resolve(device, dtype)
  f = _features(features, device, dtype)
  n, d = f.shape

  if n > d:                       # eigen-decomposition of F^T F, not an SVD
    evals, v = torch.linalg.eigh(f.T @ f)
    s = torch.sqrt(torch.clamp(evals, min=0.0))
    keep = s > 1e-10
    s = s[keep]
    u = f @ v[:, keep] / s
  else:
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    keep = s > 1e-10
    s = s[keep]
    u = u[:, keep]
  sigma = s ** 2

  if regression:
    targets = labels if isinstance(labels, torch.Tensor) else np.asarray(
        labels)
    targets = _features(targets.reshape(n, -1), device, dtype)
    columns = [targets[:, c] for c in range(targets.shape[1])]
  else:
    codes, k = _labels(labels, n, device)
    columns = [(codes == c).to(dtype) for c in range(k)]

  log_2pi = math.log(2.0 * math.pi)
  evidences = []
  for t in columns:               # per target column, as published
    x = u.T @ t
    x2 = x ** 2
    res_x2 = t @ t - x2.sum()
    alpha, beta = 1.0, 1.0
    evidence = None
    for _ in range(11):
      tau = alpha / beta
      gamma = (sigma / (sigma + tau)).sum()
      m2 = (sigma * x2 / ((tau + sigma) ** 2)).sum()
      res2 = (x2 / ((1 + sigma / tau) ** 2)).sum() + res_x2
      alpha = gamma / (m2 + 1e-5)
      beta = (n - gamma) / (res2 + 1e-5)
      tau_new = alpha / beta
      evidence = (d / 2.0 * torch.log(alpha) + n / 2.0 * torch.log(beta)
                  - 0.5 * torch.sum(torch.log(alpha + beta * sigma))
                  - beta / 2.0 * res2 - alpha / 2.0 * m2 - n / 2.0 * log_2pi)
      evidence = evidence / n
      if float(torch.abs(tau_new - tau) / tau) <= 1e-3:   # host sync
        break
    evidences.append(evidence)
  return float(torch.stack(evidences).mean())


# ---------------------------------------------------------------------------
# NLEEP


def nleep(features: Any, labels: Any, seed: int = 0) -> float:
  """NLEEP by its published path: scikit-learn PCA + GaussianMixture (CPU).

  torch adds nothing here (the published code never puts NLEEP on an
  accelerator), so this is exactly ``numpy_reference.nleep_sklearn``.
  """
  if _is_tensor(features):
    features = features.detach().cpu().numpy()
  if _is_tensor(labels):
    labels = labels.detach().cpu().numpy()
  return numpy_reference.nleep_sklearn(features, labels, seed=seed)


def _is_tensor(x) -> bool:
  return type(x).__module__.startswith("torch")
