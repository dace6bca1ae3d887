"""A plain torch training loop (zero_grad, forward, loss, backward, step) with early stopping,
plus the two hooks the cross-check needs, which leave the model's code untouched:

- ``Probe(model)``: forward hooks record z^l (the Linear outputs, with ``retain_grad``), a^l (the
  output of each hidden block) and a^L; after ``backward`` ``probe.delta[l]`` = z^l.grad = dC/dz^l.
- ``order`` / ``masks``: for the cross-check only, a supplied sample order replaces ``randperm``,
  and supplied dropout masks replace nn.Dropout's own draw (a forward hook on each nn.Dropout).
In normal use the order comes from ``torch.randperm(generator=...)`` and nn.Dropout draws its masks.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from .model import MLP, loss_fn, make_optimizer, weight_map


class Probe:
    """Records z^l, a^l (l = 1..L) on every forward pass; ``masks[l-1]`` overrides hidden layer l's dropout."""

    def __init__(self, model: MLP):
        self.model, self.L = model, len(model.sizes) - 1
        self.z = [None] * (self.L + 1)
        self.a = [None] * (self.L + 1)
        self.masks = None
        self._handles = []
        mods = dict(model.net.named_children())
        for l in range(1, self.L + 1):
            self._handles.append(mods[f"fc{l}"].register_forward_hook(self._hook_z(l)))
            if l < self.L:
                last = mods.get(f"drop{l}", mods[f"act{l}"])
                self._handles.append(last.register_forward_hook(self._hook_a(l, isinstance(last, nn.Dropout))))
        self._handles.append(model.output.register_forward_hook(self._hook_a(self.L, False)))

    def _hook_z(self, l):
        def hook(module, inputs, out):
            if out.requires_grad:
                out.retain_grad()
            self.z[l] = out
        return hook

    def _hook_a(self, l, is_dropout):
        def hook(module, inputs, out):
            if is_dropout and module.training and self.masks is not None:
                out = inputs[0] * self.masks[l - 1]  # the supplied mask instead of nn.Dropout's draw
            self.a[l] = out
            return out
        return hook

    @property
    def delta(self):
        return [None] + [z.grad for z in self.z[1:]]

    def close(self):
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _shared_params(model: MLP) -> dict:
    """Shared name -> the model's Parameter (WEIGHT_MAP's table)."""
    named = dict(model.named_parameters())
    return {k: named[v] for k, v in weight_map(len(model.sizes) - 1).items()}


def _apply_grad_hook(params: dict, hook, step: int) -> None:
    given = {k: p.grad.detach().cpu().numpy() for k, p in params.items()}  # views of p.grad on the CPU
    new = hook(step, given)
    with torch.no_grad():
        for k, p in params.items():
            if new[k] is not given[k] or p.grad.device.type != "cpu":  # else p.grad holds it already
                p.grad.copy_(torch.as_tensor(np.asarray(new[k]), device=p.grad.device))


def accuracy(model: MLP, X: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows classified correctly (call under model.eval() when the model has dropout)."""
    with torch.no_grad():
        return (model(X).argmax(dim=1) == y).double().mean().item()


def train(model: MLP, X: torch.Tensor, y: torch.Tensor, *, loss: str, epochs: int, lr: float,
          optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0, betas=(0.9, 0.999),
          eps: float = 1e-8, batch_size: int | None = None, shuffle: bool | None = None,
          generator: torch.Generator | None = None, X_val=None, y_val=None, patience: int | None = None,
          order: np.ndarray | None = None, masks: Callable[[int, int, tuple], np.ndarray] | None = None,
          callback: Callable[[int, MLP, float], None] | None = None,
          grad_hook: Callable[[int, dict], dict] | None = None) -> dict:
    """Train ``model`` in place; returns a history dict (loss per step, accuracies per epoch, ...).
    ``grad_hook(step, {"W1": dC/dW1, ...})`` (NumPy arrays) returns the gradients the step uses instead."""
    if loss == "cross_entropy" and not isinstance(model.output, nn.Softmax):
        raise ValueError("loss='cross_entropy' (nn.CrossEntropyLoss on the logits) needs output='softmax'")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    n = X.shape[0]
    B = n if batch_size is None else batch_size
    if not 1 <= B <= n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    if patience is not None and X_val is None:
        raise ValueError("early stopping (patience) needs validation data X_val, y_val")
    if shuffle is None:
        shuffle = B < n
    criterion = loss_fn(loss)
    opt = make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay, betas, eps)
    probe = Probe(model) if masks is not None else None
    hooked = _shared_params(model) if grad_hook is not None else None
    hist = {"loss": [], "train_accuracy": [], "val_accuracy": [], "epochs_run": 0, "best_epoch": None,
            "stopped_early": False, "restored_best": False, "best_state": None}
    best_err, since_best, step = math.inf, 0, 0
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            if order is not None:
                perm = torch.as_tensor(order[epoch - 1], device=X.device)
            elif shuffle:
                perm = torch.randperm(n, generator=generator).to(X.device)
            else:
                perm = torch.arange(n, device=X.device)
            for start in range(0, n, B):
                idx = perm[start:start + B]
                xb, yb = X[idx], y[idx]
                if probe is not None:
                    probe.masks = [torch.as_tensor(masks(step, l, (len(idx), model.sizes[l])), device=X.device)
                                   for l in range(1, len(model.sizes) - 1)]
                opt.zero_grad()
                logits = model(xb)
                probs = None if loss == "cross_entropy" else model.output(logits)  # CrossEntropyLoss takes logits
                c = criterion(logits, probs, yb)
                value = c.item()
                if not math.isfinite(value):
                    raise FloatingPointError(f"the loss became {value} at step {step} (epoch {epoch}); "
                                             f"lower the learning rate (lr={lr}) or standardise the inputs")
                c.backward()
                if grad_hook is not None:
                    _apply_grad_hook(hooked, grad_hook, step)
                opt.step()
                hist["loss"].append(value)
                if callback is not None:
                    callback(step, model, value)
                step += 1
            hist["epochs_run"] = epoch
            model.eval()
            hist["train_accuracy"].append(accuracy(model, X, y))
            if X_val is not None:
                acc = accuracy(model, X_val, y_val)
                hist["val_accuracy"].append(acc)
                if patience is not None:
                    if 1 - acc < best_err:
                        best_err, since_best, hist["best_epoch"] = 1 - acc, 0, epoch
                        hist["best_state"] = copy.deepcopy(model.state_dict())
                    else:
                        since_best += 1
                        if since_best >= patience:
                            hist["stopped_early"] = True
                            break
    finally:
        if probe is not None:
            probe.close()
    if patience is not None and hist["best_state"] is not None:
        model.load_state_dict(hist["best_state"])
        hist["restored_best"] = True
    return hist
