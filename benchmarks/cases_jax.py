"""The JAX side of every case: jax_ref's MLP, jitted, on JAX's default device (the CPU here).

Imported by the JAX worker only (never beside NumPy's manual or torch in one process).  What is timed,
the counterpart of each manual/torch row (see docs/benchmarks.md):

- ``loss+grad``: ``jax.jit`` of ``jax.value_and_grad(jax_ref.batch_loss)`` on the whole batch, then
  ``float(loss)`` (manual and torch read the loss as a Python float too) and ``block_until_ready`` on
  the gradients: JAX dispatches asynchronously, and a time without the wait would be the dispatch only.
- ``step``: loss, gradients and ``jax_ref.train.update`` (plain SGD) in one jitted call, which is
  ``jax_ref.train.train_step`` without its ``X[idx]`` gather (manual and torch skip the batch indexing on a
  full batch as well); the new parameters are waited for.  ``gradients()``: the same as ``loss+grad``
  (JAX has no other public gradient API than ``jax.value_and_grad``; torch's row is its loss+grad too).
- ``1000 epochs``: ``jax_ref.train`` itself, as the harness runs it (one jitted step per epoch, the
  accuracies after each epoch).
- ``products`` / ``GEMM``: the same products on the same operands as manual's, in one jitted function,
  ``Precision.HIGHEST`` as jax_ref asks for.

Compilation is not in the times: jax.jit compiles on a function's first call per shape and dtype, and the
driver's calibration calls every function before its first block.  The worker reports each function's
first call, and the driver prints first call minus the steady time as the compile (and trace) time.
"""
from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from cases import RUN_EPOCHS, Case, _data, _weights, gemm_operands, product_operands

import jax_ref  # turns on jax_enable_x64 (before any JAX array is made): the float64 cases stay float64
from jax_ref.model import HIGHEST, Config, batch_loss
from jax_ref.train import init_state, make_optimizer, update

CFG = Config.make("sigmoid", "softmax", "cross_entropy")


@partial(jax.jit, static_argnames=("cfg",))
def loss_and_grads(params, X, y, cfg: Config):
    return jax.value_and_grad(batch_loss)(params, X, y, None, cfg)


@partial(jax.jit, static_argnames=("cfg", "ocfg"))
def train_step(params, state, X, y, hyper, cfg: Config, ocfg):
    """jax_ref.train.train_step on the whole batch (no gather)."""
    loss, grads = jax.value_and_grad(batch_loss)(params, X, y, None, cfg)
    params, state = update(params, grads, state, hyper, ocfg)
    return params, state, loss


def _finite(loss) -> float:
    value = float(loss)
    if not math.isfinite(value):
        raise FloatingPointError(value)
    return value


def jax_functions(case: Case) -> dict:
    w = _weights(case)
    X, y, Xv, yv = _data(case)
    params0 = jax_ref.from_shared(w)
    Xd, yd = jax.device_put(X), jax.device_put(y)
    ocfg, hyper = make_optimizer("sgd", case.lr)
    state0, h = init_state(ocfg, params0), hyper(np.dtype(case.dtype), 1)
    cur = {}

    def reset():
        cur.update(params=params0, state=state0)

    def loss_grad(_):
        loss, grads = loss_and_grads(cur["params"], Xd, yd, CFG)
        jax.block_until_ready(grads)
        _finite(loss)
        return grads

    def step(_):
        params, state, loss = train_step(cur["params"], cur["state"], Xd, yd, h, CFG, ocfg)
        _finite(loss)
        cur.update(params=jax.block_until_ready(params), state=state)

    reset()
    fns = {"loss+grad": (None, loss_grad, reset), "step": (None, step, reset), "gradients()": (None, loss_grad, reset)}
    if case.key == "iris":
        order = np.tile(np.arange(len(y)), (RUN_EPOCHS, 1))

        def run(params):
            out, _ = jax_ref.train(params, X, y, cfg=CFG, epochs=RUN_EPOCHS, lr=case.lr, order=order,
                                   X_val=Xv, y_val=yv)
            jax.block_until_ready(out)

        fns["1000 epochs"] = (lambda: jax_ref.from_shared(w), run, lambda: None)
    return fns


def gemm_function(dtype: str):
    A, B = (jax.device_put(x) for x in gemm_operands(dtype))
    mm = jax.jit(lambda a, b: jnp.matmul(a, b, precision=HIGHEST))
    return None, lambda _: mm(A, B).block_until_ready(), lambda: None


def products_function(case: Case):
    """manual's products (cases.products_function), the same operands, in one jitted call; every product's
    result is an output, so XLA computes them all (it may order or overlap them as it likes)."""
    A, D, W = product_operands(case)
    A, D, W = ([None if x is None else jax.device_put(x) for x in xs] for xs in (A, D, W))
    L = len(case.sizes) - 1

    @jax.jit
    def products(A, D, W):
        mm = partial(jnp.matmul, precision=HIGHEST)
        z = [mm(A[l - 1], W[l].T) for l in range(1, L + 1)]           # z^l = a^{l-1} (W^l)^T
        back = [mm(D[l + 1], W[l + 1]) for l in range(L - 1, 0, -1)]  # delta^{l+1} W^{l+1}
        g = [mm(D[l].T, A[l - 1]) for l in range(1, L + 1)]           # dC/dW^l = (delta^l)^T a^{l-1}
        return z, back, g

    return None, lambda _: jax.block_until_ready(products(A, D, W)), lambda: None


def info() -> dict:
    import os

    import jaxlib

    dev = jax.devices()[0]
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "backend": dev.platform, "device": str(dev),
            "jax_enable_x64": bool(jax.config.jax_enable_x64), "xla_flags": os.environ.get("XLA_FLAGS", "")}
