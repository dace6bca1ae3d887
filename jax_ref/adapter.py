"""``jax`` as an implementation of the cross-check's protocol (compare.protocol): the functions of
jax_ref.model and the jitted loop of jax_ref.train.  ``jax:cpu`` / ``jax:gpu[:N]`` pick a device
(default: JAX's default backend).  Without JAX installed, importing this module raises an
ImportError that says how to install it (jax_ref/__init__.py)."""
from __future__ import annotations

import re

import jax  # noqa: F401  (jax_ref below has already checked that it is installed and enabled x64)
import numpy as np

from compare.protocol import Pass, TrainResult

from .model import Config, batch_loss, from_shared, layer_pass, predict, to_shared
from .train import train


def _device(option: str | None):
    if option is None:
        return None
    m = re.fullmatch(r"(cpu|gpu|cuda)(?::([0-9]{1,4}))?", option)
    if not m:
        raise ValueError(f"implementation 'jax:{option}': expected jax, jax:cpu, jax:gpu or jax:gpu:N")
    platform, index = ("gpu" if m.group(1) == "cuda" else m.group(1)), int(m.group(2) or 0)
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        devices = []
    if index >= len(devices):
        have = ", ".join(str(d) for d in jax.devices())
        raise ValueError(f"implementation 'jax:{option}': no such device; JAX here has {have}")
    return devices[index]


_batch_loss = jax.jit(batch_loss, static_argnames="cfg")  # compiled once per shape: finite differences call it often


def _np(x, dtype):
    return np.asarray(jax.device_get(x), dtype=dtype)


class JaxImplementation:
    """Registered as ``jax`` (pyproject.toml entry points); ``jax:gpu:0`` for a GPU."""

    fork_safe = False  # XLA's runtime threads: a forked child that computes after the parent did deadlocks

    def __init__(self, option: str | None = None):
        self.device = _device(option)
        self.name = "jax" if option is None else f"jax:{option}"

    def info(self) -> dict:
        import jaxlib

        dev = self.device if self.device is not None else jax.devices()[0]
        return {"implementation": "jax_ref (JAX, jax.grad and a jitted torch.optim-equal update)",
                "jax": jax.__version__, "jaxlib": jaxlib.__version__, "backend": dev.platform,
                "device": str(dev), "jax_enable_x64": bool(jax.config.jax_enable_x64),
                "matmul_precision": "HIGHEST"}

    def unavailable(self, spec) -> dict:
        return {}

    def _cfg(self, spec) -> Config:
        return Config.make(spec.activation, spec.output, spec.loss, spec.gamma)

    def _put(self, a):
        return jax.device_put(np.asarray(a), self.device)

    def forward_backward(self, spec, weights, X, y, masks) -> Pass:
        params = from_shared(weights, self.device)
        dt = np.dtype(weights["W1"].dtype)
        m = None if masks is None or not spec.dropout else [self._put(np.asarray(k, dt)) for k in masks]
        loss, zs, as_, deltas, grads = jax.device_get(
            layer_pass(params, self._put(np.asarray(X, dt)), self._put(y), m, self._cfg(spec)))
        return Pass(float(loss), [None] + [_np(z, dt) for z in zs], [np.asarray(X)] + [_np(a, dt) for a in as_],
                    [None] + [_np(d, dt) for d in deltas], {k: _np(grads[k], dt) for k in weights})

    def forward_loss(self, spec, weights, X, y, masks) -> float:
        dt = np.dtype(weights["W1"].dtype)
        m = None if masks is None or not spec.dropout else [self._put(np.asarray(k, dt)) for k in masks]
        return float(_batch_loss(from_shared(weights, self.device), self._put(np.asarray(X, dt)), self._put(y), m,
                                 self._cfg(spec)))

    def train(self, spec, weights, data, order, masks, grad_hook, on_step) -> TrainResult:
        params = from_shared(weights, self.device)

        def callback(step, params_, loss):
            on_step(step, to_shared(params_), loss)

        params, h = train(params, data.X_train, data.y_train, cfg=self._cfg(spec), epochs=spec.epochs, lr=spec.lr,
                          optimizer=spec.optimizer, momentum=spec.momentum, weight_decay=spec.weight_decay,
                          betas=spec.betas, eps=spec.eps, batch_size=spec.batch_size, dropout=spec.dropout,
                          X_val=data.X_val, y_val=data.y_val, patience=spec.patience, order=order, masks=masks,
                          key=jax.random.key(spec.seed), callback=callback, grad_hook=grad_hook)
        return TrainResult(h["loss"], h["train_accuracy"], h["val_accuracy"], h["epochs_run"], h["best_epoch"],
                           h["stopped_early"], to_shared(h["last"]), to_shared(params) if h["restored_best"] else None)

    def predict(self, spec, weights, X):
        dt = np.dtype(weights["W1"].dtype)
        a, k = jax.device_get(predict(from_shared(weights, self.device), self._put(np.asarray(X, dt)),
                                      self._cfg(spec)))
        return np.asarray(a, dt), np.asarray(k)
