"""Optimisers, step for step as torch.optim defines them (single-tensor code path, dampening = 0).

SGD (torch.optim.SGD):   g <- g + wd p;  with momentum mu:  buf <- g at the first step,
                         buf <- mu buf + g after;  g <- g + mu buf (nesterov) or g <- buf;  p <- p - lr g
Adam (torch.optim.Adam): g <- g + wd p (L2, not AdamW);  m <- m + (1-b1)(g - m) (torch's lerp);
                         v <- b2 v + (1-b2) g^2;  p <- p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
All arithmetic is in the parameters' dtype (hyper-parameters are Python floats).
"""
from __future__ import annotations

import math

import numpy as np

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
        self.buf = [None] * len(params)

    def step(self, grads):
        lr, mu, wd = self.lr, self.momentum, self.weight_decay
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if wd:
                g = g + wd * p
            if mu:
                if self.buf[i] is None:
                    self.buf[i] = g.copy()
                else:
                    self.buf[i] *= mu
                    self.buf[i] += g
                g = g + mu * self.buf[i] if self.nesterov else self.buf[i]
            p -= lr * g


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
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads):
        self.t += 1
        b1, b2, wd = self.beta1, self.beta2, self.weight_decay
        step_size = self.lr / (1 - b1 ** self.t)
        bc2_sqrt = math.sqrt(1 - b2 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if wd:
                g = g + wd * p
            m += (1 - b1) * (g - m)
            v *= b2
            v += (1 - b2) * (g * g)
            p -= step_size * (m / (np.sqrt(v) / bc2_sqrt + self.eps))


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
