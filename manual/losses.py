"""Losses C(a^L, y), each value next to its delta^L = dC/dz^L.  Reduction = mean, exactly as torch.

Every loss is a record ``Loss(name, value, delta)`` with the same signatures:
``value(z, a, Y, y) -> float`` and ``delta(z, a, Y, y, output) -> delta^L``, where z = z^L, a = a^L,
``y`` holds integer class indices 0..C-1, ``Y`` is its one-hot matrix (a^L's dtype) and ``output`` is
the output function (manual.activations.Output).  For mse, l1 and hinge, delta^L is the output's
back-propagation of dC/da^L; cross-entropy comes fused with softmax, where it is (a^L - Y)/n.

- cross_entropy: torch.nn.CrossEntropyLoss on z^L = mean_i [log sum_j e^{z_ij} - z_{i,y_i}]
  (= -log softmax(z^L)_y).  Only with a softmax output (mlp.check_config).
- mse:   torch.nn.MSELoss(a^L, Y)  = sum (a - Y)^2 / (n C)   ->  dC/da = 2 (a - Y) / (n C)
- l1:    torch.nn.L1Loss(a^L, Y)   = sum |a - Y|  / (n C)    ->  dC/da = sign(a - Y) / (n C)
- hinge: torch.nn.MultiMarginLoss(a^L, y), p = 1, margin = 1:
         (1/n) sum_i (1/C) sum_{j != y_i} max(0, 1 - a_{i,y_i} + a_ij)
         ->  dC/da_ij = [margin_ij > 0]/(nC) for j != y_i, and dC/da_{i,y_i} = -(count of those)/(nC)
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from .rowops import row_max, row_numbers, row_sum


class Loss(NamedTuple):
    name: str
    value: Callable[..., float]       # value(z, a, Y, y) = C
    delta: Callable[..., np.ndarray]  # delta(z, a, Y, y, output) = dC/dz^L


def one_hot(y: np.ndarray, n_classes: int, dtype) -> np.ndarray:
    Y = np.zeros((y.shape[0], n_classes), dtype=dtype)
    Y[np.arange(y.shape[0]), y] = 1
    return Y


def cross_entropy(z, a, Y, y):
    t = z - row_max(z)[:, None]  # t_ij = z_ij - max_j z_ij <= 0: no exp overflows
    return cross_entropy_from_parts(t, row_sum(np.exp(t)), y)


def cross_entropy_from_parts(t, s, y):
    """The cross-entropy from t = z - max_j z_ij and s_i = sum_j e^{t_ij} (activations.softmax_parts):
    log sum_j e^{z_ij} - z_{i,y_i} = log s_i - t_{i,y_i}, two terms >= 0 (no cancellation), averaged;
    sum / n is np.mean's arithmetic without its per-call overhead."""
    n = t.shape[0]
    return float((np.log(s) - t[row_numbers(n), y]).sum() / n)


def cross_entropy_delta(z, a, Y, y, output):
    return (a - Y) / z.shape[0]  # softmax and cross-entropy together: dC/dz^L = (a^L - Y)/n


def mse(z, a, Y, y):
    return float(np.mean((a - Y) ** 2))


def mse_grad(a, Y, y):
    return (2.0 / a.size) * (a - Y)


def l1(z, a, Y, y):
    return float(np.mean(np.abs(a - Y)))


def l1_grad(a, Y, y):
    return np.sign(a - Y) / a.size


def hinge(z, a, Y, y):
    return float(np.maximum(_margins(a, y), 0.0).sum() / a.size)


def hinge_grad(a, Y, y):
    g = (_margins(a, y) > 0).astype(a.dtype)
    g[np.arange(a.shape[0]), y] = -g.sum(axis=1)
    return g / a.size


def _margins(a, y):
    rows = np.arange(a.shape[0])
    m = 1.0 - a[rows, y][:, None] + a
    m[rows, y] = 0.0  # the true class is not summed over
    return m


# delta^L = the output function's back-propagation of dC/da^L (cross-entropy's is the shortcut above)
def mse_delta(z, a, Y, y, output):
    return output.backprop(z, a, mse_grad(a, Y, y))


def l1_delta(z, a, Y, y, output):
    return output.backprop(z, a, l1_grad(a, Y, y))


def hinge_delta(z, a, Y, y, output):
    return output.backprop(z, a, hinge_grad(a, Y, y))


LOSS = {c.name: c for c in (
    Loss("cross_entropy", cross_entropy, cross_entropy_delta),
    Loss("mse", mse, mse_delta),
    Loss("l1", l1, l1_delta),
    Loss("hinge", hinge, hinge_delta),
)}


# count / n is exactly np.mean of the booleans (both round k/n once), with less per-call overhead.
# ``a``: rows of per-class scores, a^L or z^L (MLP.logits); the class is their arg-max.
def error_rate(a: np.ndarray, y: np.ndarray) -> float:
    """The 0-1 loss averaged: the fraction of rows whose arg-max is not the label."""
    return np.count_nonzero(a.argmax(axis=1) != y) / len(y)


def accuracy(a: np.ndarray, y: np.ndarray) -> float:
    """The fraction of rows whose arg-max is the label (1 - error_rate, counted directly)."""
    return np.count_nonzero(a.argmax(axis=1) == y) / len(y)
