"""What both implementations of a check are handed alike: sample orders and dropout masks.

The check draws them once and gives the same ones to the candidate and the reference, so that a
training run is a deterministic function of the weights and these schedules.
"""
from __future__ import annotations

import numpy as np


def epoch_orders(n: int, epochs: int, batch_size: int | None, seed: int) -> np.ndarray:
    """(epochs, n) sample order of every epoch: full batch keeps the canonical order (gradient
    descent); smaller batches are reshuffled every epoch from ``default_rng([seed, 0])``."""
    B = batch_size or n
    if B >= n:
        return np.tile(np.arange(n), (epochs, 1))
    rng = np.random.default_rng([seed, 0])
    return np.stack([rng.permutation(n) for _ in range(epochs)]) if epochs else np.zeros((0, n), dtype=np.int64)


def batches(order: np.ndarray, batch_size: int | None) -> list[list[int]]:
    """The sample indices of every step: consecutive slices of each epoch's order."""
    n = order.shape[1]
    B = batch_size or n
    return [order[e, i:i + B].tolist() for e in range(order.shape[0]) for i in range(0, n, B)]


def dropout_mask(rng: np.random.Generator, p: float, shape, dtype) -> np.ndarray:
    """Inverted-dropout mask: each entry 1/(1-p) with probability 1-p, else 0."""
    dtype = np.dtype(dtype)
    return (rng.random(shape) >= p).astype(dtype) / dtype.type(1 - p)


class MaskSource:
    """Dropout masks as ``masks(step, layer, shape)``, each drawn from ``default_rng([seed, stream,
    step, layer])`` (stream 1: training runs; stream 3: the single forward/gradient batch): the
    same mask whichever run asks first, from whichever thread.  ``cast(dtype)`` gives the same
    masks in another dtype."""

    def __init__(self, p: float, seed: int, dtype, stream: int = 1):
        self.p, self.dtype, self.seed, self.stream = p, np.dtype(dtype), seed, stream

    def __call__(self, step: int, layer: int, shape) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.stream, step, layer])
        return dropout_mask(rng, self.p, tuple(shape), self.dtype)

    def cast(self, dtype):
        dtype = np.dtype(dtype)
        return self if dtype == self.dtype else (lambda s, l, shape: self(s, l, shape).astype(dtype))

    def step_masks(self, step: int, sizes, n: int) -> list[np.ndarray] | None:
        """The masks of every hidden layer for one batch of n rows (None without dropout)."""
        return None if not self.p else [self(step, l, (n, sizes[l])) for l in range(1, len(sizes) - 1)]
