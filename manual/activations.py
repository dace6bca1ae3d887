"""Activations and output functions, each derivative right next to its function (the lecture's table).

One rule for all of them: ``f(z, out=None)`` and ``fprime(z, fz, out=None)`` return a new array, or
write into ``out`` and return it when one is given (the fast path's preallocated arrays, see
manual/fastpath.py).  ``fprime`` also receives f(z), so that sigmoid' = f(1-f) costs no exp.

Conventions, identical to torch.nn, so that the two implementations agree to the last bit:
- At the kinks: ReLU'(0) = 0, LeakyReLU'(0) = gamma, ELU'(0) = gamma.
- softplus is linear above z = 20, as ``torch.nn.Softplus(threshold=20)``: there log(1+e^z) and z
  differ by less than 2.1e-9, and f' = 1 instead of sigmoid(z).
- No overflow or invalid warnings at |z| = 1000 in float64 (80 in float32): the only exp of a large
  positive number is sigmoid's e^{-z} for z very negative, where inf is exact (1/(1+inf) = 0, as in
  torch), so that overflow flag is silenced.  Constants are Python floats: every result keeps z's dtype.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import numpy as np

from .rowops import row_max, row_sum

SOFTPLUS_THRESHOLD = 20.0  # torch.nn.Softplus default
DEFAULT_GAMMA = {"leaky_relu": 0.01, "elu": 1.0}  # torch's negative_slope and alpha


class Activation(NamedTuple):
    name: str
    f: Callable[..., np.ndarray]       # f(z, out=None) = a
    fprime: Callable[..., np.ndarray]  # fprime(z, fz, out=None) = f'(z), element-wise


# sigmoid: 1/(1+e^-z), torch's formula, four fast ufuncs.  f' = f(1-f)
@np.errstate(over="ignore")  # e^{-z} = inf for z < -709 (float64) / -88 (float32), and 1/(1+inf) = 0 is exact
def sigmoid(z, out=None):
    e = np.negative(z, out=out)
    np.exp(e, out=e)
    e += 1.0
    return np.divide(1.0, e, out=e)


def sigmoid_prime(z, fz, out=None):
    d = np.subtract(1.0, fz, out=out)
    d *= fz
    return d


# tanh.  f' = 1 - f^2
def tanh(z, out=None):
    return np.tanh(z, out=out)


def tanh_prime(z, fz, out=None):
    d = np.multiply(fz, fz, out=out)
    return np.subtract(1.0, d, out=d)


# ReLU: max(0, z).  f' = 1 if z > 0 else 0
def relu(z, out=None):
    return np.maximum(z, 0.0, out=out)


def relu_prime(z, fz, out=None):
    if out is None:
        return (z > 0).astype(z.dtype)
    return np.greater(z, 0.0, out=out)  # True/False written as 1.0/0.0


# LeakyReLU(gamma): z if z > 0 else gamma z.  f' = 1 if z > 0 else gamma
def leaky_relu(z, out=None, gamma=0.01):
    r = np.multiply(z, gamma, out=out)
    np.copyto(r, z, where=z > 0)
    return r


def leaky_relu_prime(z, fz, out=None, gamma=0.01):
    d = _filled(z, gamma, out)
    np.copyto(d, 1.0, where=z > 0)
    return d


# ELU(gamma): z if z > 0 else gamma (e^z - 1).  f' = 1 if z > 0 else gamma e^z
def elu(z, out=None, gamma=1.0):
    r = np.minimum(z, 0.0, out=out)  # e^z only of z <= 0: no overflow
    np.expm1(r, out=r)
    r *= gamma
    np.copyto(r, z, where=z > 0)
    return r


def elu_prime(z, fz, out=None, gamma=1.0):
    d = np.minimum(z, 0.0, out=out)
    np.exp(d, out=d)
    d *= gamma
    np.copyto(d, 1.0, where=z > 0)
    return d


# softplus: log(1 + e^z), linear above the threshold as torch.  f' = 1/(1+e^-z) = sigmoid(z)
def softplus(z, out=None):
    r = np.minimum(z, SOFTPLUS_THRESHOLD, out=out)
    np.exp(r, out=r)
    np.log1p(r, out=r)
    np.copyto(r, z, where=z > SOFTPLUS_THRESHOLD)
    return r


def softplus_prime(z, fz, out=None):
    d = sigmoid(z, out=out)
    np.copyto(d, 1.0, where=z > SOFTPLUS_THRESHOLD)
    return d


def _filled(z, value, out):
    """An array shaped like z (``out`` when given) filled with ``value``."""
    if out is None:
        return np.full_like(z, value)
    out.fill(value)
    return out


HIDDEN = {a.name: a for a in (
    Activation("sigmoid", sigmoid, sigmoid_prime),
    Activation("tanh", tanh, tanh_prime),
    Activation("relu", relu, relu_prime),
    Activation("leaky_relu", leaky_relu, leaky_relu_prime),
    Activation("elu", elu, elu_prime),
    Activation("softplus", softplus, softplus_prime),
)}


def hidden_activation(name: str, gamma: float | None = None) -> Activation:
    """The hidden-layer activation called ``name``; ``gamma`` for leaky_relu (0.01) and elu (1.0)."""
    if name not in HIDDEN:
        raise ValueError(f"activation={name!r} is not known; expected one of {sorted(HIDDEN)}")
    if gamma is None:
        return HIDDEN[name]
    if name not in DEFAULT_GAMMA:
        raise ValueError(f"gamma is only a parameter of leaky_relu and elu, not of activation={name!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.floating, np.integer)) or not np.isfinite(gamma):
        raise ValueError(f"gamma (the {name} parameter) must be a finite number, got {gamma!r}")
    a, g = HIDDEN[name], float(gamma)
    return Activation(name, functools.partial(a.f, gamma=g), functools.partial(a.fprime, gamma=g))


# ---- output functions ---------------------------------------------------------------------------------
# softmax is not element-wise, so an output's derivative is given as its back-propagation:
# backprop(z, a, g) = (da/dz)^T g, the delta^L that the gradient g = dC/da^L makes.
class Output(NamedTuple):
    name: str
    f: Callable[[np.ndarray], np.ndarray]                                    # f(z) = a^L
    backprop: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]     # backprop(z, a, g) = delta^L


def softmax(z):
    return softmax_parts(z)[0]


def softmax_parts(z):
    """softmax(z) and what it computes on the way: t = z - max_j z_ij (so that no exp overflows) and
    s_i = sum_j e^{t_ij}.  log s_i - t_{i,y} is row i's cross-entropy (losses.cross_entropy_from_parts)."""
    t = z - row_max(z)[:, None]
    e = np.exp(t)
    s = row_sum(e)
    e /= s[:, None]
    return e, t, s


def softmax_backprop(z, a, g):
    return a * (g - row_sum(g * a)[:, None])  # J^T g with J = diag(a) - a a^T


def sigmoid_backprop(z, a, g):
    return sigmoid_prime(z, a) * g


def identity(z):
    return z


def identity_backprop(z, a, g):
    return g


OUTPUT = {o.name: o for o in (
    Output("softmax", softmax, softmax_backprop),
    Output("sigmoid", sigmoid, sigmoid_backprop),
    Output("identity", identity, identity_backprop),
)}
