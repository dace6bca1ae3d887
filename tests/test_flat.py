"""manual/flat.py: the optimisers' flat fast path is taken for FlatTensors (MLP.params and the gradients),
and gives the per-tensor path's results bit for bit, in one piece or in chunks of CHUNK elements."""
import math

import numpy as np
import pytest

import manual
from manual import flat
from manual.flat import FlatTensors, flat_of, pieces, state_like, views

SHAPES = [(2, 3), (3,), (4, 2)]  # W1, b1, W2 of 17 elements
FLAT = np.arange(17.0)

# flat_of(tensors) -> FLAT only for FlatTensors: their type says they are views of one array, nothing is
# inferred from memory addresses
FLAT_CASES = {
    "FlatTensors": (lambda: FlatTensors(FLAT, SHAPES), FLAT),
    "a list of its views": (lambda: views(FLAT, SHAPES), None),
    "no arrays": (lambda: [], None),
    "separate arrays": (lambda: [p.copy() for p in views(FLAT, SHAPES)], None),
}


@pytest.mark.parametrize("case", list(FLAT_CASES))
def test_flat_of(case):
    tensors, want = FLAT_CASES[case]
    assert flat_of(tensors()) is want


def test_flat_tensors_are_views_of_their_flat_array():
    t = FlatTensors(FLAT.copy(), SHAPES)
    assert [p.shape for p in t] == SHAPES and all(np.shares_memory(p, t.flat) for p in t)
    t[1][...] = -1.0
    assert np.array_equal(t.flat[6:9], [-1.0] * 3)
    e = FlatTensors.empty(SHAPES, np.float32)
    assert e.flat.shape == (17,) and e.flat.dtype == np.float32


def test_the_flat_path_is_taken_for_mlp_params_and_their_gradients():
    net = manual.MLP.from_weights(manual.init_weights([4, 6, 3], seed=0))
    base = flat_of(net.params)
    assert base is not None and base.size == sum(p.size for p in net.params)
    assert all(np.shares_memory(base, p) for p in net.params) and net.params is net.params
    grads = net.backprop(*_labels(net))
    state = state_like(net.params)
    [(p, g, s)] = pieces(net.params, grads, state)
    assert p is base and g is grads.flat and s is state[0]


def _labels(net):
    X, y = np.ones((2, 4)), np.array([0, 2])
    net.forward(X)
    return manual.one_hot(y, 3, net.dtype), y


def test_state_like_makes_zeros_shaped_like_the_params():
    fast, fast_list = state_like(FlatTensors(FLAT, SHAPES))
    slow, slow_list = state_like([p.copy() for p in views(FLAT, SHAPES)])
    assert slow is None and fast.shape == FLAT.shape and not fast.any()
    assert all(np.shares_memory(fast, s) for s in fast_list)
    for states in (fast_list, slow_list):
        assert [(s.shape, s.dtype, s.any()) for s in states] == [(shape, FLAT.dtype, False) for shape in SHAPES]


# CHUNK 5: four ragged chunks; 17: exactly one; the default 65536: the flat arrays themselves
@pytest.mark.parametrize("chunk", [5, 17, flat.CHUNK])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", manual.OPTIMIZERS)
def test_flat_steps_equal_per_tensor_steps_bit_for_bit(optimizer, dtype, chunk, monkeypatch):
    monkeypatch.setattr(flat, "CHUNK", chunk)
    rng = np.random.default_rng(0)
    fast = FlatTensors(rng.normal(size=17).astype(dtype), SHAPES)  # views of one flat array, as MLP.params
    slow = [p.copy() for p in fast]                                # separate arrays: the per-tensor path
    opt_fast, opt_slow = (manual.make_optimizer(optimizer, ps, lr=0.1, weight_decay=0.01) for ps in (fast, slow))
    for step in range(3):
        grads = FlatTensors(rng.normal(size=17).astype(dtype), SHAPES)
        opt_fast.step(grads)
        opt_slow.step(grads)
        assert all(np.array_equal(a, b) for a, b in zip(fast, slow, strict=False)), f"step {step}"
    assert len(list(pieces(fast, grads))) == math.ceil(17 / chunk)
