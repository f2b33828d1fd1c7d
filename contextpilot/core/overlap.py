"""Pairwise overlap of requests as one sparse product, on scipy or torch.

``overlap[i, j] = sum of weights of blocks held by both i and j`` for the
blocks given (the planner passes only blocks with short posting lists, so
the product stays sparse). scipy is the default; torch (the ``torch``
extra, CUDA when available) is an optional backend for large batches on a
GPU and gives the same matrix. Never required.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp

__all__ = ["BACKENDS", "overlap_matrix", "resolve_backend"]

log = logging.getLogger("contextpilot")

BACKENDS = ("scipy", "torch")


def resolve_backend(use_gpu: bool) -> str:
    """``"torch"`` when a GPU path is asked for and torch imports, else
    ``"scipy"``; asking without torch installed is an error, not a silent
    fallback."""
    if not use_gpu:
        return "scipy"
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ValueError(
            "use_gpu=True needs torch: pip install 'contextpilot[torch]' "
            "(or leave use_gpu False; the planner never requires it)"
        ) from None
    return "torch"


def overlap_matrix(
    rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, n: int, n_blocks: int, backend: str = "scipy"
) -> sp.csr_matrix:
    """Weighted co-occurrence of requests ``rows`` holding blocks ``cols``."""
    if backend == "scipy":
        a = sp.csr_matrix((weights[cols], (rows, cols)), shape=(n, n_blocks))
        b = sp.csr_matrix((np.ones(len(cols)), (cols, rows)), shape=(n_blocks, n))
        return (a @ b).tocsr()
    if backend == "torch":
        return _overlap_torch(rows, cols, weights, n, n_blocks)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def _overlap_torch(
    rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, n: int, n_blocks: int
) -> sp.csr_matrix:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    r = torch.as_tensor(rows, dtype=torch.int64, device=device)
    c = torch.as_tensor(cols, dtype=torch.int64, device=device)
    w = torch.as_tensor(weights[cols], dtype=torch.float64, device=device)
    ones = torch.ones(len(cols), dtype=torch.float64, device=device)
    with warnings.catch_warnings():
        # torch flags its sparse kernels as beta on every call
        warnings.simplefilter("ignore", UserWarning)
        a = torch.sparse_coo_tensor(torch.stack([r, c]), w, (n, n_blocks), check_invariants=False)
        b = torch.sparse_coo_tensor(torch.stack([c, r]), ones, (n_blocks, n), check_invariants=False)
        out = torch.sparse.mm(a.coalesce(), b.coalesce()).coalesce()
    idx = out.indices().cpu().numpy()
    val = out.values().cpu().numpy()
    return sp.csr_matrix((val, (idx[0], idx[1])), shape=(n, n))
