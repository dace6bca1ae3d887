"""Lessons 1-3: activations and their derivatives, vanishing gradients, symmetry.

Every number comes from an implementation's forward_backward / train (compare.protocol); the shared
weights, inputs and sample orders are made here, once, and handed to both implementations.
"""
from __future__ import annotations

import numpy as np

from ..spec import Spec
from .common import Config, iris_data, shared_weights, train

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus")
KINKS = ("relu", "leaky_relu", "elu")          # f is not differentiable at 0: the convention shows there
DEEP_ACTIVATIONS = ("sigmoid", "tanh", "relu")


# ---- 1. activations and their derivatives ------------------------------------------------------------
def probe_weights(dtype="float64") -> dict:
    """A 4-1-3 network that passes x (first input) through one hidden unit: z^1 = x, a^1 = f(x), and
    output 0 = a^1 - 10, so that with target class 0 (Y_0 = 1) delta^2_0 = (2/3n)(f(x) - 11) is never 0."""
    return {"W1": np.array([[1.0, 0, 0, 0]], dtype=dtype), "b1": np.zeros(1, dtype=dtype),
            "W2": np.array([[1.0], [0], [0]], dtype=dtype), "b2": np.array([-10.0, 0, 0], dtype=dtype)}


def activations(cand, ref, cfg: Config) -> dict:
    x = np.arange(-120, 121) / 20.0            # [-6, 6] step 0.05, with x = 0 exactly (the kinks)
    X = np.zeros((len(x), 4))
    X[:, 0] = x
    y = np.zeros(len(x), dtype=np.int64)
    w = probe_weights()
    zero = int(np.flatnonzero(x == 0)[0])
    data = {"shared": {"x": x, "kinks": list(KINKS), "zero_index": zero}, "candidate": {}, "reference": {}}
    for act in ACTIVATIONS:
        spec = Spec(hidden=(1,), activation=act, output="identity", loss="mse", epochs=0)
        for side, impl in (("candidate", cand), ("reference", ref)):
            p = impl.forward_backward(spec, w, X, y, None)
            back = (p.delta[2] @ w["W2"])[:, 0]                 # (W^2)^T delta^2, never 0 here
            d = {"f": p.a[1][:, 0], "fprime": p.delta[1][:, 0] / back + 0.0}   # + 0.0: no -0 (0 * (-)/(-))
            if act in KINKS:
                d["fprime_at_0"] = float(d["fprime"][zero])
            data[side][act] = d
    return data


# ---- 2. vanishing gradients ------------------------------------------------------------------------
def grad_norms(impl, spec, weights, data) -> list[float]:
    """||dC/dW^l||_F for l = 1..L on the whole training split."""
    p = impl.forward_backward(spec, weights, data.X_train, data.y_train, None)
    L = len(weights) // 2
    return [float(np.linalg.norm(p.grads[f"W{l}"])) for l in range(1, L + 1)]


def vanishing(cand, ref, cfg: Config) -> dict:
    data, _ = iris_data(standardize=True)
    lr = 0.1
    out = {"shared": {"depths": list(cfg.depths), "activations": list(DEEP_ACTIVATIONS), "width": 8,
                      "epochs": cfg.vanishing_epochs, "lr": lr, "standardize": True, "seed": 0},
           "candidate": {}, "reference": {}}
    for act in DEEP_ACTIVATIONS:
        for side in ("candidate", "reference"):
            out[side][act] = {"init": [], "trained": [], "diverged": []}
        for k in cfg.depths:
            spec = Spec(hidden=(8,) * k, activation=act, lr=lr, epochs=cfg.vanishing_epochs)
            w = shared_weights(spec.sizes, seed=0)
            for side, impl in (("candidate", cand), ("reference", ref)):
                d = out[side][act]
                d["init"].append(grad_norms(impl, spec, w, data))
                rec = train(impl, spec, w, data)
                d["diverged"].append(rec.diverged is not None)
                d["trained"].append(None if rec.result is None else grad_norms(impl, spec, rec.result.final, data))
    return out


# ---- 3. symmetry -----------------------------------------------------------------------------------
def equal_weights(sizes, value=0.3, dtype="float64") -> dict:
    """Every weight and bias the same number: all hidden units of a layer compute the same function."""
    return {k: np.full(s, value, dtype=dtype) for l in range(1, len(sizes))
            for k, s in ((f"W{l}", (sizes[l], sizes[l - 1])), (f"b{l}", (sizes[l],)))}


def symmetry(cand, ref, cfg: Config) -> dict:
    data, _ = iris_data()
    spec = Spec(hidden=(6,), activation="sigmoid", lr=0.2, epochs=cfg.symmetry_epochs)  # the lecture's iris net
    inits = {"equal": equal_weights(spec.sizes), "random": shared_weights(spec.sizes, seed=0)}
    out = {"shared": {"hidden": 6, "lr": spec.lr, "epochs": spec.epochs, "equal_value": 0.3, "feature": 2},
           "candidate": {}, "reference": {}}
    for name, w0 in inits.items():
        for side, impl in (("candidate", cand), ("reference", ref)):
            rec = train(impl, spec, w0, data, keep=lambda s: True)
            W1 = np.stack([w0["W1"]] + [rec.kept[s]["W1"] for s in sorted(rec.kept)])       # (steps+1, 6, 4)
            b1 = np.stack([w0["b1"]] + [rec.kept[s]["b1"] for s in sorted(rec.kept)])
            W2 = np.stack([w0["W2"]] + [rec.kept[s]["W2"] for s in sorted(rec.kept)])       # (steps+1, 3, 6)
            units = np.concatenate([W1, b1[:, :, None], np.swapaxes(W2, 1, 2)], axis=2)  # (steps+1, 6, 4+1+3)
            spread = (units.max(axis=1) - units.min(axis=1)).max(axis=1)               # max over unit pairs
            # the spread is a difference of weights: measured relative to the weights themselves (normwise)
            floor = float(np.max(np.abs(units)))
            floors = out["shared"].setdefault("floors", {})
            floors[f"{name}.spread"] = max(floor, floors.get(f"{name}.spread", 0.0))
            out[side][name] = {"W1_feature": W1[:, :, 2], "spread": spread, "loss": rec.loss,
                               "train_accuracy": rec.result.train_accuracy[-1] if rec.result else None}
    return out
