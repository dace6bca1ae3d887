"""Row-wise maxima and sums, and column sums, for small batches, where each NumPy call's overhead is the cost.

``a.max(axis=1)`` and ``a.sum(axis=1)`` walk a small batch row by row; an arg-max and a pick, and a
product with a vector of ones (one BLAS call), give the same maxima and the same sums up to the order of
the additions, in less time (docs/benchmarks.md has the numbers).
"""
from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=64)
def ones(k: int, dtype) -> np.ndarray:
    """k ones of ``dtype``, read-only and cached."""
    v = np.ones(k, dtype)
    v.flags.writeable = False
    return v


@functools.lru_cache(maxsize=64)
def row_numbers(n: int) -> np.ndarray:
    """0, 1, ..., n-1, read-only and cached: A[row_numbers(n), k] picks entry k[i] of every row i."""
    v = np.arange(n)
    v.flags.writeable = False
    return v


def row_max(a: np.ndarray) -> np.ndarray:
    """max_j a_ij for every row i (NaN where a row holds one, as a.max(axis=1))."""
    return a[row_numbers(a.shape[0]), a.argmax(axis=1)]


def row_sum(a: np.ndarray) -> np.ndarray:
    """sum_j a_ij for every row i: a 1."""
    return a @ ones(a.shape[1], a.dtype)


def column_sum(a: np.ndarray, out=None) -> np.ndarray:
    """sum_i a_ij for every column j: 1^T a (into ``out`` when given)."""
    return np.matmul(ones(a.shape[0], a.dtype), a, out=out)
