from __future__ import annotations

import sys

import numpy as np
import pytest

from contextpilot import ContextPilot
from contextpilot.bench.workloads import synthetic_rag
from contextpilot.core.overlap import overlap_matrix, resolve_backend


def _incidence(seed=0, n=300, n_blocks=500):
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n), 8)
    cols = rng.integers(0, n_blocks, size=len(rows))
    keep = np.unique(rows * n_blocks + cols, return_index=True)[1]
    return rows[keep], cols[keep], rng.integers(1, 50, size=n_blocks).astype(float), n, n_blocks


def test_scipy_overlap_is_the_weighted_cooccurrence():
    rows, cols, w, n, nb = _incidence()
    m = overlap_matrix(rows, cols, w, n, nb).toarray()
    dense = np.zeros((n, nb))
    dense[rows, cols] = 1
    assert np.allclose(m, (dense * w) @ dense.T)


@pytest.mark.torch
def test_torch_backend_matches_scipy():
    pytest.importorskip("torch")
    rows, cols, w, n, nb = _incidence(1)
    a = overlap_matrix(rows, cols, w, n, nb, "scipy")
    b = overlap_matrix(rows, cols, w, n, nb, "torch")
    assert (abs(a - b)).max() == 0


@pytest.mark.torch
def test_use_gpu_plans_like_the_default():
    pytest.importorskip("torch")
    wl = synthetic_rag(400, seed=2)
    r1 = ContextPilot(stateless=True, token_counter=wl.token_counter).reorder(wl.contexts)
    r2 = ContextPilot(stateless=True, token_counter=wl.token_counter, use_gpu=True).reorder(wl.contexts)
    assert r1 == r2


def test_use_gpu_without_torch_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(ValueError, match="contextpilot\\[torch\\]"):
        resolve_backend(True)
    assert resolve_backend(False) == "scipy"
    with pytest.raises(ValueError):
        overlap_matrix(np.zeros(0, int), np.zeros(0, int), np.zeros(1), 1, 1, "cuda")
