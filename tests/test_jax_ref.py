"""jax_ref against manual and torch_ref, through the implementation protocol only (compare.protocol).

Forward and backward passes on random networks (float64, every activation with every output/loss
pair, depths 1-3, inputs on the kinks, non-default gamma) and short training runs (every optimiser,
batch regimes, dropout with injected masks, weight decay, gradient hook, early stopping) step by step
against torch; float32 runs stay float32.
"""
from __future__ import annotations

import ast
import pathlib
import sys
import zlib

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the optional jax implementation needs JAX: pip install -e '.[jax]'")

from compare import tolerances as tol  # noqa: E402
from compare.protocol import Data, Implementation  # noqa: E402
from compare.spec import Spec  # noqa: E402
from helpers import ACTIVATIONS, PAIRS, small_split  # noqa: E402
from jax_ref.adapter import JaxImplementation  # noqa: E402
from manual.adapter import ManualImplementation  # noqa: E402
from torch_ref.adapter import TorchImplementation  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
JAX, MANUAL, TORCH = JaxImplementation(), ManualImplementation(), TorchImplementation()
KINKED = ("relu", "leaky_relu", "elu")


def _rel(a, b, floor=0.0):
    return tol.rel_error(a, b, floor)[1]


# ---- forward and backward --------------------------------------------------------------------
def _random_case(spec: Spec, seed: int, n: int = 7):
    """Random weights and inputs of spec.sizes; for kinked activations, row 0 of X and b1 are 0 (so
    z^1[0] = 0 exactly) and unit 0 of every deeper hidden layer has zero weights and bias (z^l[:, 0] = 0)."""
    rng = np.random.default_rng(seed)
    sizes, dt = spec.sizes, spec.np_dtype
    w = {}
    for l in range(1, len(sizes)):
        w[f"W{l}"] = rng.standard_normal((sizes[l], sizes[l - 1])).astype(dt)
        w[f"b{l}"] = rng.standard_normal(sizes[l]).astype(dt)
    X = (2 * rng.standard_normal((n, sizes[0]))).astype(dt)
    y = rng.integers(0, sizes[-1], n)
    if spec.activation in KINKED:
        X[0] = 0
        w["b1"][:] = 0
        for l in range(2, len(sizes) - 1):
            w[f"W{l}"][0], w[f"b{l}"][0] = 0, 0
    return w, X, y


def _assert_passes_agree(p, q, dtype, rtol, who):
    """Every z^l, a^l, delta^l, gradient and the loss of pass p against pass q, each group with its floor."""
    L = len(q.z) - 1
    f_fwd = tol.group_floor(dtype, *q.z[1:], *q.a[1:])
    f_delta = tol.group_floor(dtype, *q.delta[1:])
    f_grad = tol.group_floor(dtype, *q.grads.values())
    assert p.z[0] is None and p.delta[0] is None and np.array_equal(p.a[0], q.a[0])
    assert len(p.z) == len(p.a) == len(p.delta) == L + 1 and sorted(p.grads) == sorted(q.grads)
    assert _rel(p.loss, q.loss) <= rtol, (who, "loss", p.loss, q.loss)
    for l in range(1, L + 1):
        for name, x, ref, floor in (("z", p.z[l], q.z[l], f_fwd), ("a", p.a[l], q.a[l], f_fwd),
                                    ("delta", p.delta[l], q.delta[l], f_delta)):
            assert x.dtype == np.dtype(dtype) and x.shape == ref.shape, (who, name, l, x.dtype, x.shape)
            assert _rel(x, ref, floor) <= rtol, (who, f"{name}{l}", _rel(x, ref, floor))
    for k, g in p.grads.items():
        assert g.dtype == np.dtype(dtype) and g.shape == q.grads[k].shape, (who, k)
        assert _rel(g, q.grads[k], f_grad) <= rtol, (who, f"d{k}", _rel(g, q.grads[k], f_grad))


# every activation x every (output, loss) pair at depth 2; depths 1 and 3 for every activation with
# the pairs in turn (each pair at each depth at least once across the activations)
CASES = [(act, out, loss, 2) for act in ACTIVATIONS for out, loss in PAIRS]
CASES += [(act, *PAIRS[(3 * i + k) % len(PAIRS)], depth) for i, act in enumerate(ACTIVATIONS)
          for depth in (1, 3) for k in range(2)]


@pytest.mark.parametrize("activation,output,loss,depth", CASES)
def test_forward_backward_agrees_with_manual_and_torch_float64(activation, output, loss, depth):
    spec = Spec(hidden=(5,) * (depth - 1), activation=activation, output=output, loss=loss)
    w, X, y = _random_case(spec, seed=zlib.crc32(f"{activation}-{output}-{loss}-{depth}".encode()))
    p = JAX.forward_backward(spec, w, X, y, None)
    if activation in KINKED:  # the kinks are really hit
        assert (p.z[1][0] == 0).all() and all((p.z[l][:, 0] == 0).all() for l in range(2, depth))
    _assert_passes_agree(p, TORCH.forward_backward(spec, w, X, y, None), "float64", tol.HAND_RTOL, "torch")
    _assert_passes_agree(p, MANUAL.forward_backward(spec, w, X, y, None), "float64", tol.HAND_RTOL, "manual")


@pytest.mark.parametrize("activation,gamma", [("leaky_relu", 0.3), ("leaky_relu", 1.7), ("elu", 0.4),
                                              ("elu", 2.5)])
def test_non_default_gamma_at_the_kink(activation, gamma):
    spec = Spec(hidden=(5, 4), activation=activation, gamma=gamma, output="softmax", loss="cross_entropy")
    w, X, y = _random_case(spec, seed=11)
    p = JAX.forward_backward(spec, w, X, y, None)
    t = TORCH.forward_backward(spec, w, X, y, None)
    _assert_passes_agree(p, t, "float64", tol.HAND_RTOL, "torch")
    _assert_passes_agree(p, MANUAL.forward_backward(spec, w, X, y, None), "float64", tol.HAND_RTOL, "manual")
    # f'(0) = gamma: delta^1 at the kinked row is gamma times dC/da^1 there, as torch has it
    default = Spec(**{**spec.__dict__, "gamma": None})
    assert _rel(p.delta[1][0], JAX.forward_backward(default, w, X, y, None).delta[1][0]) > 1e-3


def test_dropout_masks_and_softplus_threshold():
    """Injected masks (a^l is the masked value) and softplus beyond its linear threshold at 20."""
    spec = Spec(hidden=(6, 5), activation="softplus", output="sigmoid", loss="mse", dropout=0.5)
    w, X, y = _random_case(spec, seed=3)
    X *= 15  # z^1 well beyond +-20 for some entries
    rng = np.random.default_rng(4)
    masks = [(rng.random((X.shape[0], s)) >= 0.5) / 0.5 for s in (6, 5)]
    p = JAX.forward_backward(spec, w, X, y, masks)
    assert (np.abs(p.z[1]) > 20).any()
    assert ((p.a[1] == 0) == (masks[0] == 0)).all()
    _assert_passes_agree(p, TORCH.forward_backward(spec, w, X, y, masks), "float64", tol.HAND_RTOL, "torch")
    _assert_passes_agree(p, MANUAL.forward_backward(spec, w, X, y, masks), "float64", tol.HAND_RTOL, "manual")


@pytest.mark.parametrize("activation,output,loss", [("relu", "softmax", "cross_entropy")])
def test_float32_stays_float32(activation, output, loss):
    spec = Spec(hidden=(5,), activation=activation, output=output, loss=loss, dtype="float32")
    w, X, y = _random_case(spec, seed=5)
    p = JAX.forward_backward(spec, w, X, y, None)
    for arr in [*p.z[1:], *p.a, *p.delta[1:], *p.grads.values()]:
        assert arr.dtype == np.float32
    _assert_passes_agree(p, TORCH.forward_backward(spec, w, X, y, None), "float32", tol.float32_allowed(0.0), "torch")
    a, k = JAX.predict(spec, w, X)
    assert a.dtype == np.float32 and k.dtype.kind == "i"


def test_predict_agrees():
    spec = Spec(hidden=(5,), activation="tanh", output="softmax", loss="cross_entropy")
    w, X, _ = _random_case(spec, seed=8, n=20)
    (a, k), (ta, tk) = JAX.predict(spec, w, X), TORCH.predict(spec, w, X)
    assert _rel(a, ta) <= tol.HAND_RTOL and np.array_equal(k, tk) and a.dtype == np.float64


# ---- training runs -----------------------------------------------------------------------------
def _run(impl, spec, w, data, order, masks=None, grad_hook=None):
    steps = []
    r = impl.train(spec, w, data, order, masks, grad_hook,
                   lambda s, ws, loss: steps.append((s, {k: np.array(v) for k, v in ws.items()}, loss)))
    return r, steps


def _orders(spec, n, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(spec.epochs)])


def _data(dtype, rows_per_class):
    s = small_split(dtype, rows_per_class)
    return Data(s.X_train, s.y_train, s.X_test, s.y_test)


def _assert_trajectories_agree(spec, data, masks=None, grad_hook=None, rtol=tol.FLOAT64_RTOL):
    n = data.X_train.shape[0]
    order = _orders(spec, n)
    w = {k: v for k, v in _random_case(spec, seed=21)[0].items()}
    rj, sj = _run(JAX, spec, w, data, order, masks, grad_hook)
    rt, st = _run(TORCH, spec, w, data, order, masks, grad_hook)
    B = spec.batch_size or n
    assert len(sj) == len(st) == len(rj.loss) == rj.epochs_run * -(-n // B) > 0
    assert [s for s, _, _ in sj] == list(range(len(sj)))
    for (s, wj, lj), (_, wt, lt) in zip(sj, st, strict=False):
        assert _rel(lj, lt) <= rtol, (s, lj, lt)
        assert lj == rj.loss[s]
        flat_j = np.concatenate([wj[k].ravel() for k in wt])
        flat_t = np.concatenate([wt[k].ravel() for k in wt])
        assert all(wj[k].dtype == spec.np_dtype for k in wj)
        assert _rel(flat_j, flat_t) <= rtol, (s, _rel(flat_j, flat_t))
    assert rj.train_accuracy == rt.train_accuracy and rj.val_accuracy == rt.val_accuracy
    assert (rj.epochs_run, rj.best_epoch, rj.stopped_early) == (rt.epochs_run, rt.best_epoch, rt.stopped_early)
    assert all(_rel(rj.final[k], rt.final[k]) <= rtol and rj.final[k].dtype == spec.np_dtype for k in rt.final)
    assert (rj.restored is None) == (rt.restored is None)
    if rt.restored is not None:
        assert all(_rel(rj.restored[k], rt.restored[k]) <= rtol for k in rt.restored)
    return rj


@pytest.mark.parametrize("optimizer,batch,activation,output,loss,wd", [
    ("sgd", None, "sigmoid", "softmax", "cross_entropy", 0.0),       # gradient descent
    ("momentum", 3, "relu", "identity", "hinge", 0.0),               # mini-batch
    ("nesterov", 1, "tanh", "sigmoid", "mse", 0.01),                 # SGD, weight decay
    ("adam", 3, "elu", "softmax", "l1", 0.05),                       # Adam, L2 weight decay
])
def test_training_agrees_with_torch_step_by_step(optimizer, batch, activation, output, loss, wd):
    lr = {"sgd": 0.5, "momentum": 0.2, "nesterov": 0.2, "adam": 0.05}[optimizer]
    spec = Spec(hidden=(5,), activation=activation, output=output, loss=loss, optimizer=optimizer, lr=lr,
                batch_size=batch, epochs=3, weight_decay=wd)
    _assert_trajectories_agree(spec, _data("float64", 2))


def test_dropout_with_injected_masks_and_a_grad_hook():
    from compare.schedule import MaskSource

    # batches of 4 and a ragged 2; betas[0] = 0.6 takes torch.lerp's other branch (weight 0.4 -> 1 - 0.6 ...)
    spec = Spec(hidden=(6, 5), activation="leaky_relu", gamma=0.1, output="softmax", loss="cross_entropy",
                optimizer="adam", lr=0.05, batch_size=4, epochs=2, dropout=0.3, betas=(0.4, 0.99))
    seen = []

    def hook(step, grads):  # the same deterministic change on both sides
        seen.append(step)
        return {k: g * (1 + 0.1 * step) + 1e-3 for k, g in grads.items()}

    _assert_trajectories_agree(spec, _data("float64", 2), masks=MaskSource(spec.dropout, spec.seed, spec.dtype), grad_hook=hook)
    assert seen == [0, 1, 2, 3] * 2  # jax's steps, then torch's


def test_early_stopping_restores_the_best_epoch():
    # the configuration of the gradient-descent case above (its compiled step is reused), at a tiny lr
    spec = Spec(hidden=(5,), activation="sigmoid", output="softmax", loss="cross_entropy", optimizer="sgd",
                lr=1e-3, epochs=8, patience=2)
    r = _assert_trajectories_agree(spec, _data("float64", 2))
    assert r.stopped_early and r.restored is not None and r.epochs_run < spec.epochs


def test_float32_training_stays_float32():
    spec = Spec(hidden=(5,), activation="relu", optimizer="adam", lr=0.05, epochs=2, batch_size=3, dtype="float32",
                patience=5)
    data = _data("float32", 2)
    w = _random_case(spec, seed=2)[0]
    r, steps = _run(JAX, spec, w, data, _orders(spec, 6))
    rt, _ = _run(TORCH, spec, w, data, _orders(spec, 6))
    assert all(v.dtype == np.float32 for _, ws, _ in steps for v in ws.values())
    assert all(v.dtype == np.float32 for v in [*r.final.values(), *r.restored.values()])
    assert np.allclose(r.loss, rt.loss, rtol=1e-5)


def test_divergence_raises_floating_point_error_naming_the_step():
    spec = Spec(hidden=(5,), activation="sigmoid", output="softmax", loss="cross_entropy", lr=1e300, epochs=3)
    data = _data("float64", 2)
    w = _random_case(spec, seed=1)[0]
    w["W2"] *= 1e10  # the first update makes parameters inf: caught after the epoch (or by the next loss)
    with pytest.raises(FloatingPointError, match=r"step \d"):
        _run(JAX, spec, w, data, _orders(spec, 6))


# ---- the package ---------------------------------------------------------------------------------
def test_the_adapter_is_an_implementation():
    from compare.registry import load

    impl = load("jax")
    assert impl.name == "jax" and isinstance(impl, Implementation) and impl.unavailable(Spec()) == {}
    info = impl.info()
    assert info["jax"] == jax.__version__ and info["backend"] == "cpu" and "jaxlib" in info
    assert JaxImplementation("cpu").name == "jax:cpu"
    with pytest.raises(ValueError, match="jax:tpu"):
        JaxImplementation("tpu")


def test_jax_ref_never_imports_manual_or_torch_ref():
    for path in (ROOT / "jax_ref").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(n.split(".")[0] in ("manual", "torch_ref", "torch") for n in names), path


def test_without_jax_the_import_error_says_how_to_install(monkeypatch):
    for name in [m for m in sys.modules if m == "jax_ref" or m.startswith("jax_ref.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax now raises ImportError
    with pytest.raises(ImportError) as e:
        import jax_ref.adapter  # noqa: F401
    assert str(e.value) == "the 'jax' implementation needs JAX: pip install -e '.[jax]'"
