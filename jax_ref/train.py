"""A JAX training loop: one jitted step (loss, gradients and the optimiser's update), step for step
the update of torch.optim.SGD (plain, momentum, nesterov, weight_decay) and torch.optim.Adam.

    params, hist = train(params, X, y, cfg=Config.make("relu", "softmax", "cross_entropy"),
                         epochs=100, lr=0.1, optimizer="adam", batch_size=16, key=jax.random.key(0))

Optimisers, as torch.optim writes them (single-tensor code path, dampening 0):
  SGD:  g <- g + wd p;  buf <- mu buf + g (buf starts at 0, so the first step sets buf = g exactly,
        as torch's clone of the first gradient);  g <- g + mu buf (nesterov) or buf;  p <- p - lr g
  Adam: g <- g + wd p (L2, not AdamW);  m <- lerp(m, g, 1-b1) (torch's lerp formula);
        v <- b2 v + (1-b2) g^2;  p <- p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
Every hyper-parameter is a NumPy scalar of the parameters' dtype, cast on the host from the Python
float torch would use (the bias corrections are computed in Python doubles, as torch does), so a
float32 run computes in float32 and new values of lr or t do not recompile anything.

For the cross-check (see compare.protocol): ``order`` replaces the shuffle, ``masks(step, layer,
shape)`` replaces the dropout draw, ``grad_hook(step, grads)`` replaces the gradients (a host round
trip: then the step runs as two jitted calls instead of one), ``callback(step, params, loss)`` sees
the parameters after each update.  In normal use the order and the dropout masks come from ``key``.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .model import Config, batch_loss, forward, n_layers

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


class TrainingDiverged(FloatingPointError):
    """The loss or a parameter became NaN or Inf during training."""


class OptConfig(NamedTuple):
    """The static part of an optimiser (what changes the compiled program); values travel as arguments."""
    name: str             # "sgd" (with or without momentum) or "adam"
    momentum: bool = False
    nesterov: bool = False
    weight_decay: bool = False
    small_lerp_weight: bool = True  # Adam: torch's lerp uses self + w (end - self) when w < 0.5


def make_optimizer(name, lr, momentum=0.9, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8):
    """(OptConfig, hyper(dtype, t) -> the tuple of scalar arguments of step t (1-based))."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r} is not known; expected one of {list(OPTIMIZERS)}")
    for what, v, positive in (("lr", lr, True), ("momentum", momentum, False), ("weight_decay", weight_decay, False),
                              ("eps", eps, False)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 if positive else v >= 0)):
            raise ValueError(f"{what} must be a finite number {'>' if positive else '>='} 0, got {v!r}")
    lr, wd = float(lr), float(weight_decay)
    if name == "adam":
        b1, b2 = (float(b) for b in betas)
        for what, b in (("betas[0]", b1), ("betas[1]", b2)):
            if not 0 <= b < 1:
                raise ValueError(f"{what} must be in [0, 1), got {b}")
        ocfg = OptConfig("adam", weight_decay=wd != 0, small_lerp_weight=(1 - b1) < 0.5)

        def hyper(dt, t):
            step_size = lr / (1 - b1 ** t)
            bc2_sqrt = math.sqrt(1 - b2 ** t)
            return tuple(dt.type(v) for v in (wd, 1 - b1, b2, 1 - b2, step_size, bc2_sqrt, float(eps)))
        return ocfg, hyper
    mu = float(momentum) if name != "sgd" else 0.0
    if name == "nesterov" and mu == 0:
        raise ValueError("nesterov needs momentum > 0 (as torch.optim.SGD)")
    ocfg = OptConfig("sgd", momentum=mu != 0, nesterov=name == "nesterov", weight_decay=wd != 0)
    made = {}  # SGD's arguments do not depend on t: made once per dtype

    def hyper(dt, t):
        if dt not in made:
            made[dt] = tuple(jax.device_put(dt.type(v)) for v in (lr, wd, mu))
        return made[dt]
    return ocfg, hyper


def init_state(ocfg: OptConfig, params):
    zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
    if ocfg.name == "adam":
        return (zeros(), zeros())
    return zeros() if ocfg.momentum else None


def _sgd(p, g, buf, lr, wd, mu, ocfg):
    if ocfg.weight_decay:
        g = g + wd * p
    if ocfg.momentum:
        buf = mu * buf + g
        g = g + mu * buf if ocfg.nesterov else buf
    return p - lr * g, buf


def _adam(p, g, m, v, wd, w1, b2, w2, step_size, bc2_sqrt, eps, ocfg):
    if ocfg.weight_decay:
        g = g + wd * p
    if ocfg.small_lerp_weight:                   # torch.lerp(m, g, w1), both of its branches
        m = m + w1 * (g - m)
    else:
        m = g - (g - m) * (1 - w1)
    v = v * b2 + w2 * g * g
    return p - step_size * (m / (jnp.sqrt(v) / bc2_sqrt + eps)), m, v


def update(params, grads, state, hyper, ocfg: OptConfig):
    """One optimiser step on the whole pytree: (new params, new state)."""
    if ocfg.name == "adam":
        m, v = state
        out = {k: _adam(params[k], grads[k], m[k], v[k], *hyper, ocfg) for k in params}
        return ({k: o[0] for k, o in out.items()}, ({k: o[1] for k, o in out.items()},
                                                    {k: o[2] for k, o in out.items()}))
    if ocfg.momentum:
        out = {k: _sgd(params[k], grads[k], state[k], *hyper, ocfg) for k in params}
        return {k: o[0] for k, o in out.items()}, {k: o[1] for k, o in out.items()}
    return {k: _sgd(params[k], grads[k], None, *hyper, ocfg)[0] for k in params}, None


@partial(jax.jit, static_argnames=("cfg",))
def loss_and_grads(params, X, y, idx, masks, cfg: Config):
    """The batch X[idx]'s loss and gradients."""
    return jax.value_and_grad(batch_loss)(params, X[idx], y[idx], masks, cfg)


_update = jax.jit(update, static_argnames=("ocfg",))


@partial(jax.jit, static_argnames=("cfg", "ocfg"))
def train_step(params, state, X, y, idx, masks, hyper, cfg: Config, ocfg: OptConfig):
    """One whole step, one dispatch: (params after it, optimiser state, the loss before it)."""
    loss, grads = jax.value_and_grad(batch_loss)(params, X[idx], y[idx], masks, cfg)
    params, state = update(params, grads, state, hyper, ocfg)
    return params, state, loss


@partial(jax.jit, static_argnames=("cfg",))
def epoch_stats(params, X, y, X_val, y_val, cfg: Config):
    """(correct on the training set, correct on the validation set or -1, every parameter finite)."""
    def correct(X_, y_):
        return jnp.sum(jnp.argmax(forward(params, X_, None, cfg.activation, cfg.output, cfg.gamma), axis=1) == y_)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree_util.tree_leaves(params)]))
    val = correct(X_val, y_val) if X_val is not None else jnp.asarray(-1)
    return correct(X, y), val, finite


def _dropout_masks(key, p, sizes, dtype):
    """Normal use: inverted-dropout masks from ``key`` (entries 0 or 1/(1-p))."""
    def draw(step, layer, shape):
        keep = jax.random.bernoulli(jax.random.fold_in(jax.random.fold_in(key, step), layer), 1 - p, shape)
        return np.asarray(keep, dtype) / dtype.type(1 - p)
    return draw


def train(params, X, y, *, cfg: Config, epochs: int, lr: float, optimizer: str = "sgd", momentum: float = 0.9,
          weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8, batch_size: int | None = None,
          dropout: float = 0.0, X_val=None, y_val=None, patience: int | None = None,
          order: np.ndarray | None = None, masks: Callable[[int, int, tuple], np.ndarray] | None = None,
          key=None, callback: Callable[[int, dict, float], None] | None = None,
          grad_hook: Callable[[int, dict], dict] | None = None) -> tuple[dict, dict]:
    """Train from ``params`` (a pytree, see model.py); returns (params, history).  The params are the
    best epoch's when early stopping restored them, else those after the last step (``history["last"]``).
    ``callback(step, params, loss)`` gets the pytree after each update; ``grad_hook(step, grads)`` NumPy
    gradients by name and returns those to use.  Raises TrainingDiverged (a FloatingPointError)."""
    X, y = np.asarray(X), np.asarray(y)
    n = X.shape[0]
    dt = np.dtype(params["W1"].dtype)
    if X.dtype != dt:
        raise TypeError(f"X has dtype {X.dtype}; the parameters are {dt}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    B = n if batch_size is None else int(batch_size)
    if not 1 <= B <= n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    if dropout and n_layers(params) == 1:
        raise ValueError("dropout needs at least one hidden layer (it applies to hidden layers only)")
    if patience is not None and (X_val is None or patience < 1):
        raise ValueError("early stopping needs patience >= 1 and validation data X_val, y_val")
    ocfg, hyper = make_optimizer(optimizer, lr, momentum, weight_decay, betas, eps)
    key = jax.random.key(0) if key is None else key
    if order is None:
        order = (np.stack([np.asarray(jax.random.permutation(jax.random.fold_in(key, e), n)) for e in range(epochs)])
                 if B < n and epochs else np.tile(np.arange(n), (epochs, 1)))
    order = np.asarray(order)
    if order.shape != (epochs, n) or order.dtype.kind not in "iu" or not (np.sort(order, axis=1) == np.arange(n)).all():
        raise ValueError(f"order must be {epochs} permutations of range({n}), got shape {order.shape}")
    sizes = [params["W1"].shape[1]] + [params[f"W{l}"].shape[0] for l in range(1, n_layers(params) + 1)]
    if dropout and masks is None:
        masks = _dropout_masks(jax.random.fold_in(key, -1), dropout, sizes, dt)

    Xd, yd = jax.device_put(X), jax.device_put(y)  # uncommitted: they follow the parameters' device
    Xv = None if X_val is None else jax.device_put(np.asarray(X_val))
    yv = None if y_val is None else jax.device_put(np.asarray(y_val))
    state = init_state(ocfg, params)
    hist = {"loss": [], "train_accuracy": [], "val_accuracy": [], "epochs_run": 0, "best_epoch": None,
            "stopped_early": False, "restored_best": False, "last": params}
    best_wrong, best_params, since_best, step = math.inf, None, 0, 0
    names = list(params)
    for epoch in range(1, epochs + 1):
        for start in range(0, n, B):
            idx = order[epoch - 1, start:start + B]
            m = None if not dropout else [np.asarray(masks(step, l, (len(idx), sizes[l])), dt)
                                          for l in range(1, len(sizes) - 1)]
            h = hyper(dt, step + 1)
            if grad_hook is None:
                new_params, new_state, loss = train_step(params, state, Xd, yd, idx, m, h, cfg, ocfg)
                value = float(loss)
                _check_loss(value, step, epoch, lr)
            else:
                loss, grads = loss_and_grads(params, Xd, yd, idx, m, cfg)
                value = float(loss)
                _check_loss(value, step, epoch, lr)
                host = jax.device_get(grads)
                new = grad_hook(step, {k: np.array(host[k]) for k in names})
                grads = {k: jnp.asarray(np.asarray(new[k], dt)) for k in names}
                new_params, new_state = _update(params, grads, state, h, ocfg)
            params, state = new_params, new_state
            hist["loss"].append(value)
            if callback is not None:
                callback(step, params, value)
            step += 1
        hist["epochs_run"] = epoch
        correct, correct_val, finite = jax.device_get(epoch_stats(params, Xd, yd, Xv, yv, cfg))
        if not finite:
            raise TrainingDiverged(f"a parameter became NaN or Inf in epoch {epoch} (step {step - 1}); "
                                   f"lower the learning rate (lr={lr}) or standardise the inputs")
        hist["train_accuracy"].append(int(correct) / n)
        if Xv is not None:
            n_val = Xv.shape[0]
            hist["val_accuracy"].append(int(correct_val) / n_val)
            if patience is not None:
                wrong = n_val - int(correct_val)
                if wrong < best_wrong:
                    best_wrong, since_best, hist["best_epoch"], best_params = wrong, 0, epoch, params
                else:
                    since_best += 1
                    if since_best >= patience:
                        hist["stopped_early"] = True
                        break
    hist["last"] = params
    if patience is not None and best_params is not None:
        params = best_params  # arrays are immutable: keeping the reference kept the epoch's values
        hist["restored_best"] = True
    return params, hist


def _check_loss(value, step, epoch, lr):
    if not math.isfinite(value):
        raise TrainingDiverged(f"the loss became {value} at step {step} (epoch {epoch}); "
                               f"lower the learning rate (lr={lr}) or standardise the inputs")
