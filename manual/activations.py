"""Activations and output functions, each f next to its f' (the lecture's table).

Conventions (identical to torch.nn, so the two implementations can agree to the last bits):
- ``fprime(z, fz)`` takes z and the already computed f(z), so sigmoid' = f(1-f) costs no exp.
- At the kinks: ReLU'(0) = 0, LeakyReLU'(0) = gamma, ELU'(0) = gamma (torch's choice).
- softplus is linear above z = 20, as ``torch.nn.Softplus(threshold=20)``: there log(1+e^z) and z
  differ by less than 2.1e-9, and f' = 1 instead of sigmoid(z).
- No overflow/invalid warnings at |z| = 1000 in float64 (80 in float32): the only exp of a large
  positive number is sigmoid's e^{-z} for z very negative, where inf is exact (1/(1+inf) = 0, as in
  torch) and the overflow flag is silenced. Every result keeps the dtype of z (Python-float constants only).
- ``out``: an Activation's f(z, out=None) and fprime(z, fz, out=None) may write their result into a
  preallocated array ``out`` (the training loop's buffers, see MLP._forward); sigmoid, tanh and relu
  do, the others return a new array. Callers always use the returned array.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .rowops import row_max, row_sum

SOFTPLUS_THRESHOLD = 20.0  # torch.nn.Softplus default


@dataclass(frozen=True)
class Activation:
    name: str
    f: Callable[..., np.ndarray]       # f(z, out=None)
    fprime: Callable[..., np.ndarray]  # fprime(z, fz, out=None)


# logistic: 1/(1+e^-z), torch's formula: 4 fast ufuncs (exp(-logaddexp(0, -z)) was 10x slower).  f' = f(1-f)
@np.errstate(over="ignore")  # e^{-z} = inf for z < -709 (float64) / -88 (float32), and 1/(1+inf) = 0 is exact
def sigmoid(z, out=None):
    e = np.negative(z, out=out)                       # -z, in out (or one new array)
    np.exp(e, out=e)                                  # e^{-z}, in place
    e += 1.0
    return np.divide(1.0, e, out=e)                   # 1/(1+e^{-z}), in place


def sigmoid_prime(z, fz, out=None):
    d = np.subtract(1.0, fz, out=out)                 # 1 - f
    d *= fz                                           # f(1-f), in place
    return d


# tanh.  f' = 1 - f^2
def tanh(z, out=None):
    return np.tanh(z, out=out)


def tanh_prime(z, fz, out=None):
    d = np.multiply(fz, fz, out=out)                  # f^2
    return np.subtract(1.0, d, out=d)                 # 1 - f^2, in place


# ReLU: max(0, z).  f' = I(z > 0)
def relu(z, out=None):
    return np.maximum(z, 0.0, out=out)


def relu_prime(z, fz):
    return (z > 0).astype(z.dtype)


# LeakyReLU(gamma): max(0, z) + gamma min(0, z).  f' = 1 if z > 0 else gamma
def leaky_relu(z, gamma=0.01):
    return np.where(z > 0, z, gamma * z)


def leaky_relu_prime(z, fz, gamma=0.01):
    return np.where(z > 0, z.dtype.type(1.0), z.dtype.type(gamma))


# ELU(gamma): z if z > 0 else gamma (e^z - 1).  f' = 1 if z > 0 else gamma e^z
def elu(z, gamma=1.0):
    return np.where(z > 0, z, gamma * np.expm1(np.minimum(z, 0.0)))


def elu_prime(z, fz, gamma=1.0):
    return np.where(z > 0, 1.0, gamma * np.exp(np.minimum(z, 0.0)))


# softplus: log(1 + e^z) (linear above the threshold, as torch).  f' = 1/(1+e^-z) = sigmoid(z)
def softplus(z):
    return np.where(z > SOFTPLUS_THRESHOLD, z, np.log1p(np.exp(np.minimum(z, SOFTPLUS_THRESHOLD))))


def softplus_prime(z, fz):
    return np.where(z > SOFTPLUS_THRESHOLD, 1.0, sigmoid(z))


# Output layer.  softmax is not element-wise: its "f'" is the Jacobian-vector product
# delta = J^T g = a * (g - sum_j g_j a_j), so every output's fprime here is (z, a, g) -> delta^L.
def softmax(z):
    return softmax_parts(z)[0]


def softmax_parts(z):
    """softmax(z) and what it computes on the way: t = z - max_j z_ij (shifted so that no exp overflows) and
    s_i = sum_j e^{t_ij}.  log s_i - t_{i,y} is the cross-entropy of row i (see losses.cross_entropy)."""
    t = z - row_max(z)[:, None]
    e = np.exp(t)
    s = row_sum(e)
    e /= s[:, None]                       # e^{t_ij} / s_i, in place
    return e, t, s


def softmax_backprop(z, a, g):
    return a * (g - row_sum(g * a)[:, None])


def identity(z):
    return z


def identity_backprop(z, a, g):
    return g


def sigmoid_backprop(z, a, g):
    return sigmoid_prime(z, a) * g


def hidden_activation(name: str, gamma: float | None = None) -> Activation:
    """The hidden-layer activation called ``name``; ``gamma`` for leaky_relu (0.01) and elu (1.0)."""
    if name not in HIDDEN:
        raise ValueError(f"activation={name!r} is not known; expected one of {sorted(HIDDEN)}")
    if gamma is not None and name not in ("leaky_relu", "elu"):
        raise ValueError(f"gamma is only a parameter of leaky_relu and elu, not of activation={name!r}")
    f, fprime = HIDDEN[name]
    if name in ("leaky_relu", "elu"):
        if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.floating, np.integer))
                                  or not np.isfinite(gamma)):
            raise ValueError(f"gamma (the {name} parameter) must be a finite number, got {gamma!r}")
        g = float(DEFAULT_GAMMA[name] if gamma is None else gamma)
        return Activation(name, lambda z, out=None: f(z, g), lambda z, fz, out=None: fprime(z, fz, g))
    if name == "relu":
        return Activation(name, f, lambda z, fz, out=None: fprime(z, fz))
    if name == "softplus":
        return Activation(name, lambda z, out=None: f(z), lambda z, fz, out=None: fprime(z, fz))
    return Activation(name, f, fprime)  # sigmoid, tanh: both use out


HIDDEN = {
    "sigmoid": (sigmoid, sigmoid_prime),
    "tanh": (tanh, tanh_prime),
    "relu": (relu, relu_prime),
    "leaky_relu": (leaky_relu, leaky_relu_prime),
    "elu": (elu, elu_prime),
    "softplus": (softplus, softplus_prime),
}
DEFAULT_GAMMA = {"leaky_relu": 0.01, "elu": 1.0}

# output name -> (f, backprop(z, a, dC/da) -> delta^L)
OUTPUTS = {
    "softmax": (softmax, softmax_backprop),
    "sigmoid": (sigmoid, sigmoid_backprop),
    "identity": (identity, identity_backprop),
}
