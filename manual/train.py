"""Training: the lecture's SGD algorithm with gradient descent, SGD and mini-batch regimes.

    random init; repeat { shuffle the training set; for each batch: theta <- theta - eta dC/dtheta }
    until the error rate on the validation set stops falling (early stopping with a patience).

- ``batch_size=None`` (or n) is full-batch gradient descent, 1 is SGD, anything between mini-batch.
  Batches are consecutive slices of the epoch's order; the last one may be smaller (as torch's
  DataLoader with drop_last=False).
- Order: by default full batch keeps the canonical order and smaller batches reshuffle every epoch
  from ``np.random.default_rng([seed, 0])``; ``order`` (epochs x n permutations) overrides it.
- Dropout masks come from ``np.random.default_rng([seed, 1])`` unless ``masks(step, layer, shape)``
  supplies them (entries 0 or 1/(1-p)).
- ``history.loss[s]`` is the loss of step s's batch before its update; accuracies are measured
  after each epoch without dropout, as the arg-max of z^L (``MLP.logits``).
- Each step's loss and gradients come from manual/fastpath.py (the plain path's formulas, written into
  arrays kept per batch size for as long as this call runs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .fastpath import FastPath
from .losses import accuracy, error_rate, one_hot
from .mlp import MLP
from .optim import make_optimizer


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or Inf during training."""


@dataclass
class History:
    loss: list[float] = field(default_factory=list)            # per step
    train_accuracy: list[float] = field(default_factory=list)  # per epoch
    val_accuracy: list[float] = field(default_factory=list)    # per epoch (when validation data is given)
    schedule: list[list[int]] = field(default_factory=list)    # sample indices of every step
    epochs_run: int = 0
    best_epoch: int | None = None       # 1-based epoch of the lowest validation error (early stopping)
    stopped_early: bool = False
    restored_best: bool = False
    best_weights: dict | None = None


def dropout_mask(rng: np.random.Generator, p: float, shape, dtype) -> np.ndarray:
    """Inverted-dropout mask: each entry 1/(1-p) with probability 1-p, else 0."""
    return (rng.random(shape) >= p).astype(dtype) / dtype.type(1 - p)


def epoch_orders(n: int, epochs: int, batch_size: int, seed: int, shuffle: bool | None = None) -> np.ndarray:
    """The (epochs, n) sample order the trainer uses by default."""
    if shuffle is None:
        shuffle = batch_size < n
    if not shuffle:
        return np.tile(np.arange(n), (epochs, 1))
    rng = np.random.default_rng([seed, 0])
    return np.stack([rng.permutation(n) for _ in range(epochs)]) if epochs else np.zeros((0, n), dtype=np.int64)


def _check_int(name, value, lo, hi=None):
    out_of_range = value < lo or (hi is not None and value > hi)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or out_of_range:
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
    return int(value)


def train(net: MLP, X: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, optimizer: str = "sgd",
          momentum: float = 0.9, weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8,
          batch_size: int | None = None, shuffle: bool | None = None, seed: int = 0,
          order: np.ndarray | None = None, dropout: float = 0.0,
          masks: Callable[[int, int, tuple], np.ndarray] | None = None,
          X_val: np.ndarray | None = None, y_val: np.ndarray | None = None, patience: int | None = None,
          callback: Callable[[int, MLP, float], None] | None = None,
          grad_hook: Callable[[int, dict], dict] | None = None) -> History:
    """Train ``net`` in place on (X, y); returns the History.  See the module docstring.
    ``grad_hook(step, {"W1": dC/dW1, ...})`` returns the gradients the step uses instead."""
    X = net.check_X(X)
    n = X.shape[0]
    y = net.check_y(y, n)
    epochs = _check_int("epochs", epochs, 0)
    B = n if batch_size is None else _check_int("batch_size", batch_size, 1, n)
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    if dropout and net.L == 1:
        raise ValueError("dropout needs at least one hidden layer (it applies to hidden layers only)")
    if patience is not None:
        patience = _check_int("patience", patience, 1)
        if X_val is None:
            raise ValueError("early stopping (patience) needs validation data X_val, y_val")
    if (X_val is None) != (y_val is None):
        raise ValueError("give both X_val and y_val, or neither")
    if X_val is not None:
        X_val = net.check_X(X_val, "X_val")
        y_val = net.check_y(y_val, X_val.shape[0], "y_val")
    if order is None:
        order = epoch_orders(n, epochs, B, seed, shuffle)
    else:
        order = np.asarray(order)
        if order.shape != (epochs, n) or order.dtype.kind not in "iu" or not (
                np.sort(order, axis=1) == np.arange(n)).all():  # every row a permutation, checked at once
            raise ValueError(f"order must be {epochs} permutations of range({n}) (shape ({epochs}, {n})), "
                             f"got shape {order.shape}")
    opt = make_optimizer(optimizer, net.params, lr, momentum, weight_decay, betas, eps)
    if dropout and masks is None:
        drop_rng = np.random.default_rng([seed, 1])
        masks = lambda step, layer, shape: dropout_mask(drop_rng, dropout, shape, net.dtype)  # noqa: E731
    Y = one_hot(y, net.sizes[-1], net.dtype)  # built once, rows picked per batch
    # A diverging run overflows somewhere before its loss turns inf: the loss check below stops it with
    # a clear message (and the parameters are checked after every epoch), so NumPy's warnings are off.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _loop(net, X, y, Y, order, B, opt, dropout, masks, X_val, y_val, patience, callback, lr, grad_hook)


def _loop(net, X, y, Y, order, B, opt, dropout, masks, X_val, y_val, patience, callback, lr, grad_hook) -> History:
    n, epochs = X.shape[0], order.shape[0]
    canonical = (order == np.arange(n)).all(axis=1) if B == n else None  # full-batch epochs in row order
    hist = History()
    best_err, since_best, step = math.inf, 0, 0
    fast = FastPath(net)  # the steps' arrays, kept per batch size until this function returns
    for epoch in range(1, epochs + 1):
        for start in range(0, n, B):
            idx = order[epoch - 1, start:start + B]
            if B == n and canonical[epoch - 1]:
                Xb, Yb, yb = X, Y, y                                # full batch, canonical order: no copy
            else:
                Xb, Yb, yb = X[idx], Y[idx], y[idx]
            m = None if not dropout else [masks(step, l, (len(idx), net.sizes[l])) for l in range(1, net.L)]
            loss, grads = fast.loss_and_gradients(Xb, Yb, yb, m)
            if not math.isfinite(loss):
                raise TrainingDiverged(f"the loss became {loss} at step {step} (epoch {epoch}); "
                                       f"lower the learning rate (lr={lr}) or standardise the inputs")
            if grad_hook is not None:
                new = grad_hook(step, dict(zip(net.names, grads, strict=True)))
                for name, g in zip(net.names, grads, strict=True):
                    if new[name] is not g:
                        g[...] = new[name]
            opt.step(grads)
            hist.loss.append(loss)
            hist.schedule.append(idx.tolist())
            if callback is not None:
                callback(step, net, loss)
            step += 1
        hist.epochs_run = epoch
        if not np.isfinite(net.params.flat).all():
            raise TrainingDiverged(f"a parameter became NaN or Inf in epoch {epoch} (step {step - 1}); "
                                   f"lower the learning rate (lr={lr}) or standardise the inputs")
        hist.train_accuracy.append(accuracy(net.logits(X), y))
        if X_val is not None:
            scores = net.logits(X_val)
            hist.val_accuracy.append(accuracy(scores, y_val))
            if patience is not None:
                err = error_rate(scores, y_val)
                if err < best_err:
                    best_err, since_best, hist.best_epoch, hist.best_weights = err, 0, epoch, net.weights()
                else:
                    since_best += 1
                    if since_best >= patience:
                        hist.stopped_early = True
                        break
    if patience is not None and hist.best_weights is not None:
        net.set_weights(hist.best_weights)
        hist.restored_best = True
    return hist
