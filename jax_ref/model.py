"""The MLP as plain JAX functions of a parameter pytree (the way a JAX user writes it).

    params = from_shared(weights)                        # {"W1": (n_1, n_0), "b1": (n_1,), ...}
    logits = forward(params, X, masks, "relu", "softmax", None)         # z^L
    probs = OUTPUTS["softmax"](logits)                                  # a^L
    loss = LOSSES["cross_entropy"](logits, probs, y)                    # mean over the batch

``layer_pass`` returns every z^l, a^l and delta^l = dC/dz^l besides the loss and the gradients:
each z^l gets an additive offset e^l (zeros), so z^l + e^l has the value z^l to the last bit, and
dC/de^l at e = 0 is dC/dz^l; one ``jax.value_and_grad`` over (params, offsets) gives the parameter
gradients and every delta^l in the same backward pass.

Conventions matched to torch.nn (which ``manual`` matches too), where jax.nn differs or could:
- ReLU'(0) = 0, LeakyReLU'(0) = gamma, ELU'(0) = gamma (torch's kernels use ``z > 0``); written
  with ``jnp.where(z > 0, ...)``.  ``jax.nn.leaky_relu`` has slope 1 at 0, and the gradient of
  ``jnp.maximum``/``jnp.minimum`` at a tie is 1/2, so neither is used.
- Softplus is linear above 20 (torch.nn.Softplus(beta=1, threshold=20)); ELU's exp only sees
  z <= 0 (the double-``where`` trick, so no inf reaches a gradient).
- MultiMarginLoss counts margins > 0 strictly (a margin of exactly 0 has gradient 0, not 1/2).
- Every matmul asks for ``Precision.HIGHEST``: full float32 on accelerators (no TF32/bf16 passes).
- Constants are weakly typed Python floats: float32 parameters give float32 results.

``layer_pass`` and ``predict`` run op by op (JAX compiles each primitive once per shape and
dtype and caches it): the cross-check calls them once per spec, and compiling the whole pass costs
~1 s of XLA time for a pass that takes milliseconds.  ``jax.jit(layer_pass, static_argnames="cfg")``
is the same function compiled, for repeated use.  The training loop (jax_ref/train.py) jits its step:
there the configuration is a static ``Config`` (a hashable NamedTuple), and jax.jit keeps one
compiled program per (Config, shapes, dtypes), so every step after the first costs one dispatch.
"""
from __future__ import annotations

from functools import partial
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SOFTPLUS_THRESHOLD = 20.0  # torch.nn.Softplus default
DEFAULT_GAMMA = {"leaky_relu": 0.01, "elu": 1.0}
HIGHEST = jax.lax.Precision.HIGHEST
ROWS_TIMES_ROWS = (((1,), (1,)), ((), ()))  # A W^T: contract A's columns with W's columns


def _sigmoid(z):
    return jax.nn.sigmoid(z)  # lax.logistic: 1/(1+e^-z), derivative a(1-a)


def _tanh(z):
    return jnp.tanh(z)


def _relu(z):
    return jnp.where(z > 0, z, 0.0)  # f'(0) = 0


def _leaky_relu(z, gamma):
    return jnp.where(z > 0, z, gamma * z)  # f'(0) = gamma


def _elu(z, gamma):
    neg = jnp.where(z > 0, 0.0, z)  # z <= 0 only: expm1 never overflows, f'(0) = gamma
    return jnp.where(z > 0, z, gamma * jnp.expm1(neg))


def _softplus(z):
    above = z > SOFTPLUS_THRESHOLD
    safe = jnp.where(above, 0.0, z)  # exp only of z <= 20
    return jnp.where(above, z, jnp.log1p(jnp.exp(safe)))


ACTIVATIONS = {
    "sigmoid": lambda gamma: _sigmoid,
    "tanh": lambda gamma: _tanh,
    "relu": lambda gamma: _relu,
    "leaky_relu": lambda gamma: partial(_leaky_relu, gamma=gamma),
    "elu": lambda gamma: partial(_elu, gamma=gamma),
    "softplus": lambda gamma: _softplus,
}
OUTPUTS = {
    "softmax": lambda z: jax.nn.softmax(z, axis=1),
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda z: z,
}


def _one_hot(y, like):
    return jax.nn.one_hot(y, like.shape[1], dtype=like.dtype)


def cross_entropy(logits, probs, y):
    """torch.nn.CrossEntropyLoss on z^L: mean_i [log sum_j e^{z_ij} - z_{i,y_i}]."""
    logp = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def mse(logits, probs, y):
    """torch.nn.MSELoss(a^L, one_hot(y))."""
    return jnp.mean((probs - _one_hot(y, probs)) ** 2)


def l1(logits, probs, y):
    """torch.nn.L1Loss(a^L, one_hot(y)); |.|'(0) = 0 as torch's sign."""
    return jnp.mean(jnp.abs(probs - _one_hot(y, probs)))


def hinge(logits, probs, y):
    """torch.nn.MultiMarginLoss(p=1, margin=1) on a^L: mean_i (1/C) sum_{j != y_i} max(0, 1 - a_{i,y_i} + a_ij)."""
    n, C = probs.shape
    m = 1.0 - jnp.take_along_axis(probs, y[:, None], axis=1) + probs
    counted = (m > 0) & (jnp.arange(C)[None, :] != y[:, None])
    return jnp.sum(jnp.where(counted, m, 0.0)) / (n * C)


LOSSES = {"cross_entropy": cross_entropy, "mse": mse, "l1": l1, "hinge": hinge}


class Config(NamedTuple):
    """What fixes the network's function besides its parameters (a static argument of jax.jit)."""
    activation: str = "sigmoid"
    output: str = "softmax"
    loss: str = "cross_entropy"
    gamma: float | None = None   # LeakyReLU slope / ELU alpha; None: 0.01 / 1.0

    @classmethod
    def make(cls, activation="sigmoid", output="softmax", loss="cross_entropy", gamma=None) -> "Config":
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not known; expected one of {list(ACTIVATIONS)}")
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r} is not known; expected one of {list(OUTPUTS)}")
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r} is not known; expected one of {list(LOSSES)}")
        if loss == "cross_entropy" and output != "softmax":
            raise ValueError("loss='cross_entropy' (CrossEntropyLoss on the logits) needs output='softmax'")
        if gamma is not None and activation not in DEFAULT_GAMMA:
            raise ValueError(f"gamma is only a parameter of leaky_relu and elu, not of activation={activation!r}")
        if activation in DEFAULT_GAMMA:
            gamma = float(DEFAULT_GAMMA[activation] if gamma is None else gamma)
        return cls(activation, output, loss, gamma)


def n_layers(params) -> int:
    return len(params) // 2


def _layers(params, X, masks, offsets, activation, gamma):
    """z^1..z^L and the hidden a^1..a^{L-1} (masked when ``masks``); ``offsets[l-1]`` is added to z^l."""
    sigma = ACTIVATIONS[activation](gamma)
    L = n_layers(params)
    a, zs, hs = X, [], []
    for l in range(1, L + 1):
        z = jax.lax.dot_general(a, params[f"W{l}"], ROWS_TIMES_ROWS, precision=HIGHEST) + params[f"b{l}"]
        if offsets is not None:
            z = z + offsets[l - 1]
        zs.append(z)
        if l < L:
            a = sigma(z)
            if masks is not None:
                a = a * masks[l - 1]
            hs.append(a)
    return zs, hs


def forward(params, X, masks=None, activation="sigmoid", output="softmax", gamma=None):
    """The logits z^L (``OUTPUTS[output](z^L)`` is a^L); ``masks[l-1]``: hidden layer l's dropout mask.
    ``output`` does not change z^L; it is accepted so that one signature describes the network."""
    if activation in DEFAULT_GAMMA and gamma is None:
        gamma = DEFAULT_GAMMA[activation]
    return _layers(params, X, masks, None, activation, gamma)[0][-1]


def batch_loss(params, X, y, masks, cfg: Config):
    """The mean loss of the batch (a differentiable function of ``params``)."""
    z = forward(params, X, masks, cfg.activation, cfg.output, cfg.gamma)
    probs = None if cfg.loss == "cross_entropy" else OUTPUTS[cfg.output](z)
    return LOSSES[cfg.loss](z, probs, y)


def _loss_with_offsets(params, offsets, X, y, masks, cfg: Config):
    zs, hs = _layers(params, X, masks, offsets, cfg.activation, cfg.gamma)
    aL = OUTPUTS[cfg.output](zs[-1])
    return LOSSES[cfg.loss](zs[-1], aL, y), (zs, hs + [aL])


def layer_pass(params, X, y, masks, cfg: Config):
    """(loss, [z^1..z^L], [a^1..a^L], [delta^1..delta^L], grads): one forward and backward pass."""
    offsets = [jnp.zeros((X.shape[0], params[f"b{l}"].shape[0]), X.dtype) for l in range(1, n_layers(params) + 1)]
    (loss, (zs, as_)), (grads, deltas) = jax.value_and_grad(_loss_with_offsets, argnums=(0, 1), has_aux=True)(
        params, offsets, X, y, masks, cfg)
    return loss, zs, as_, deltas, grads


def predict(params, X, cfg: Config):
    """(a^L, arg-max of z^L) without dropout."""
    z = forward(params, X, None, cfg.activation, cfg.output, cfg.gamma)
    return OUTPUTS[cfg.output](z), jnp.argmax(z, axis=1)


def check_shared(weights: Mapping[str, np.ndarray]) -> list[int]:
    """The layer sizes of shared weights W1, b1, ..., WL, bL (one float dtype); raises on anything else."""
    dtypes = {np.dtype(getattr(w, "dtype", None)) for w in weights.values()} if weights else set()
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise TypeError(f"shared weights must all be float32 or all float64, got dtypes {sorted(map(str, dtypes))}")
    L = len(weights) // 2
    names = [n for l in range(1, L + 1) for n in (f"W{l}", f"b{l}")]
    if L == 0 or sorted(names) != sorted(weights):
        raise ValueError(f"shared weights must be named W1, b1, ..., WL, bL, got {sorted(weights)}")
    sizes = [np.shape(weights["W1"])[1] if np.ndim(weights["W1"]) == 2 else -1]
    for l in range(1, L + 1):
        W, b = weights[f"W{l}"], weights[f"b{l}"]
        if np.ndim(W) != 2 or np.shape(W)[1] != sizes[-1] or np.shape(b) != (np.shape(W)[0],):
            raise ValueError(f"W{l} {np.shape(W)} / b{l} {np.shape(b)} do not follow a layer of size {sizes[-1]}")
        sizes.append(np.shape(W)[0])
    return sizes


def from_shared(weights: Mapping[str, np.ndarray], device=None) -> dict:
    """Shared weights -> the parameter pytree (JAX arrays of the weights' dtype, on ``device``)."""
    check_shared(weights)
    return {k: jax.device_put(np.asarray(v), device) for k, v in weights.items()}


def to_shared(params) -> dict:
    """The parameter pytree -> shared weights: NumPy arrays (fresh, writable copies) in W1, b1, ... order."""
    host = jax.device_get(params)
    return {k: np.array(host[k]) for l in range(1, n_layers(params) + 1) for k in (f"W{l}", f"b{l}")}
