"""Optimisers, step for step as torch.optim defines them (single-tensor code path, dampening = 0).

SGD (torch.optim.SGD):   g <- g + wd p;  with momentum mu:  buf <- g at the first step,
                         buf <- mu buf + g after;  g <- g + mu buf (nesterov) or g <- buf;  p <- p - lr g
Adam (torch.optim.Adam): g <- g + wd p (L2, not AdamW);  m <- m + (1-b1)(g - m) (torch's lerp);
                         v <- b2 v + (1-b2) g^2;  p <- p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
All arithmetic is in the parameters' dtype (hyper-parameters are Python floats).

Each ``step`` loops over ``pieces``: the tensors one by one, or, when the parameters and the gradients
are FlatTensors (MLP.params and the gradients of MLP.backprop and the fast path), chunks of their flat
arrays: the same formulas in a few NumPy calls for all tensors (see manual/flat.py).
"""
from __future__ import annotations

import math

import numpy as np

from .flat import pieces, state_like

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


def _positive(name, value):
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _nonneg(name, value):
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class SGD:
    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.params = params
        self.lr = _positive("lr", lr)
        self.momentum = _nonneg("momentum", momentum)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0 (as torch.optim.SGD)")
        self.nesterov = bool(nesterov)
        self.buf = [None] * len(params)   # momentum buffers, made at the first step (as torch)
        self._flat_buf = None

    def step(self, grads):
        lr, mu, wd = self.lr, self.momentum, self.weight_decay
        first = bool(mu) and self.buf[0] is None
        if first:
            self._flat_buf, self.buf = state_like(self.params)
        for p, g, buf in pieces(self.params, grads, (self._flat_buf, self.buf)):
            if wd:
                g = g + wd * p                       # g <- g + wd p
            if mu:
                if first:
                    buf[...] = g                     # buf <- g at the first step
                else:
                    buf *= mu                        # buf <- mu buf + g, in place
                    buf += g
                g = g + mu * buf if self.nesterov else buf
            p -= lr * g                              # p <- p - lr g, in place


class Adam:
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = params
        self.lr = _positive("lr", lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        for k, beta in (("betas[0]", self.beta1), ("betas[1]", self.beta2)):
            if not 0 <= beta < 1:
                raise ValueError(f"{k} must be in [0, 1), got {beta}")
        self.eps = _nonneg("eps", eps)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        self.t = 0
        self._flat_m, self.m = state_like(params)
        self._flat_v, self.v = state_like(params)

    def step(self, grads):
        self.t += 1
        b1, b2, wd = self.beta1, self.beta2, self.weight_decay
        step_size = self.lr / (1 - b1 ** self.t)
        bc2_sqrt = math.sqrt(1 - b2 ** self.t)
        for p, g, m, v in pieces(self.params, grads, (self._flat_m, self.m), (self._flat_v, self.v)):
            if wd:
                g = g + wd * p                                           # g <- g + wd p
            m += (1 - b1) * (g - m)                                      # m <- m + (1-b1)(g - m)
            v *= b2
            v += (1 - b2) * (g * g)                                      # v <- b2 v + (1-b2) g^2
            p -= step_size * (m / (np.sqrt(v) / bc2_sqrt + self.eps))   # p <- p - lr_t m / (sqrt(v_t) + eps)


def make_optimizer(name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                   betas=(0.9, 0.999), eps: float = 1e-8):
    """``sgd`` (plain), ``momentum``, ``nesterov`` (both with ``momentum``), or ``adam``."""
    if name == "sgd":
        return SGD(params, lr, 0.0, False, weight_decay)
    if name in ("momentum", "nesterov"):
        return SGD(params, lr, momentum, name == "nesterov", weight_decay)
    if name == "adam":
        return Adam(params, lr, betas, eps, weight_decay)
    raise ValueError(f"optimizer={name!r} is not known; expected one of {list(OPTIMIZERS)}")
