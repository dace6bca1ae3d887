"""The protocol every implementation speaks: what ``compare`` asks of a candidate or a reference.

An implementation is any object with the attributes and methods of :class:`Implementation`
(structural typing: no base class to inherit).  ``compare`` reaches it through this protocol only,
so a port to a new framework is one adapter file and no change here.

Conventions (the contract; docs/porting.md walks through them):

- Shared weights are a dict ``{"W1", "b1", ..., "WL", "bL"}`` of NumPy arrays, ``W^l`` shaped
  ``(n_l, n_{l-1})`` and ``b^l`` shaped ``(n_l,)``; rows of ``X`` are samples.  An implementation
  computes in the dtype of the weights it is given (float32 or float64) and returns NumPy arrays
  of that dtype.
- Layer lists are indexed like the lecture, 0..L: ``z[0] is None``, ``a[0]`` is the input batch,
  ``delta[0] is None``; ``a[L]`` is the output function of ``z[L]``.
- The loss is averaged over the batch (reduction = mean); ``delta[l] = dC/dz^l``.
- Dropout (inverted) multiplies ``a^l`` of hidden layers by a mask with entries 0 or 1/(1-p);
  ``a[l]`` is the masked value.  Masks come from ``masks(step, layer, shape)`` (layer 1..L-1).
- Training: ``order[e]`` is epoch e's sample order (0-based epochs); batches are consecutive
  slices of it, the last one may be smaller.  Step s (0-based, counting across epochs) records the
  loss of its batch *before* its update, then calls ``grad_hook(s, grads)`` (when given) and uses
  the gradients it returns, updates, and calls ``on_step(s, weights, loss)`` with the weights after
  the update.  After each epoch the training and validation accuracies (arg-max of ``z^L``, no
  dropout) are recorded; epochs are 1-based in ``TrainResult``.
- A run whose loss or parameters become NaN or Inf raises ``FloatingPointError`` (a subclass is
  fine), naming the step.
- Optional: ``forward_loss(spec, weights, X, y, masks) -> float``, the loss of one forward pass (no
  backward).  Finite differences evaluate the loss hundreds of times and use it when present (after
  checking that it equals ``forward_backward(...).loss`` at the start); without it they take
  ``forward_backward(...).loss``, which gives the same numbers more slowly.
- Optional: ``fork_safe = False`` on an implementation whose library cannot run in a forked child
  once it has computed in the parent (a runtime that keeps its own threads).  The report's companion
  and the lessons then run in this process instead of in forked workers.
- Inputs are not to be changed: ``forward_backward`` and ``forward_loss`` get read-only views of the
  weights, the batch and the masks, ``train`` read-only data; ``train``'s weights are the run's own
  copy (a port may update them in place).
- Early stopping (``spec.patience``): stop after ``patience`` epochs without a lower validation
  error rate than the best so far, and restore the best epoch's weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, runtime_checkable

import numpy as np

Weights = Mapping[str, np.ndarray]
Masks = Callable[[int, int, tuple], np.ndarray]            # (step, layer, shape) -> mask
GradHook = Callable[[int, dict], dict]                     # (step, grads by name) -> grads to use
OnStep = Callable[[int, dict, float], None]                # (step, weights after it, its loss)

# The sections a check is made of; an implementation may lack some (see Implementation.unavailable).
SECTIONS = ("forward", "gradients", "finite_differences", "trajectory")


@dataclass
class Pass:
    """One forward and backward pass on one batch (see the conventions above)."""
    loss: float
    z: list          # z[0] None, z[l] (n, n_l)
    a: list          # a[0] = X, a[l] (n, n_l)
    delta: list      # delta[0] None, delta[l] = dC/dz^l (n, n_l); entries None where not available
    grads: dict      # "W1": dC/dW1, "b1": dC/db1, ...


@dataclass
class Data:
    """The arrays of one training run, in the run's dtype (labels int64)."""
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray


@dataclass
class TrainResult:
    """What a training run returns (the weights of every step went to ``on_step``)."""
    loss: list                       # per step, before its update
    train_accuracy: list             # per epoch
    val_accuracy: list               # per epoch
    epochs_run: int
    best_epoch: int | None           # 1-based, early stopping only
    stopped_early: bool
    final: dict                      # weights after the last step
    restored: dict | None            # the best epoch's weights when early stopping restored them


@runtime_checkable
class Implementation(Protocol):
    """An MLP implementation that ``compare`` can check.  ``spec`` is a :class:`compare.Spec`:
    sizes, activation, gamma, output, loss, optimiser and training options."""

    name: str  # as the user named it, e.g. "torch:cuda:0"

    def info(self) -> dict:
        """Versions and settings worth recording (library versions, device, precision flags)."""

    def unavailable(self, spec) -> dict:
        """Sections of SECTIONS (and "noise": training with ``grad_hook``) this implementation
        cannot run for ``spec``, each with its reason; {} when it can run them all."""

    def forward_backward(self, spec, weights: Weights, X: np.ndarray, y: np.ndarray,
                         masks: list | None) -> Pass:
        """One forward and backward pass; ``masks[l-1]`` is hidden layer l's dropout mask."""

    def train(self, spec, weights: Weights, data: Data, order: np.ndarray, masks: Masks | None,
              grad_hook: GradHook | None, on_step: OnStep) -> TrainResult:
        """A whole training run from ``weights`` (see the conventions above)."""

    def predict(self, spec, weights: Weights, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a^L, the arg-max of z^L) for the rows of X, without dropout."""


def readonly(a) -> np.ndarray:
    """A read-only view of ``a``: what the check hands an implementation that must not change it."""
    v = np.asarray(a).view()
    v.flags.writeable = False
    return v


def readonly_inputs(weights, X, y, masks) -> tuple:
    """(weights, X, y, masks) of one pass as read-only views (masks may be None)."""
    return ({k: readonly(v) for k, v in weights.items()}, readonly(X), readonly(y),
            None if masks is None else [readonly(m) for m in masks])


def fork_safe(*impls) -> bool:
    """Whether every implementation may keep computing in a forked child (see ``fork_safe`` above)."""
    return all(getattr(i, "fork_safe", True) for i in impls)
