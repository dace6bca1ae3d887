"""manual/flat.py: the optimisers' flat fast path is taken for MLP.params and its gradients, and gives the
per-tensor path's results bit for bit, in one piece or in chunks of CHUNK elements."""
import math

import numpy as np
import pytest

import manual
from manual import flat
from manual.flat import flat_base, pieces, state_like, views
from manual.mlp import Gradients

SHAPES = [(2, 3), (3,), (4, 2)]  # W1, b1, W2 of 17 elements
FLAT = np.arange(17.0)

# flat_base(arrays) -> FLAT when they are its consecutive pieces, in order, covering it; else None
BASE_CASES = {
    "views of one flat array": (lambda: views(FLAT, SHAPES), FLAT),
    "one view covering it": (lambda: [FLAT[:]], FLAT),
    "no arrays": (lambda: [], None),
    "separate arrays": (lambda: [p.copy() for p in views(FLAT, SHAPES)], None),
    "a gap": (lambda: [FLAT[:6].reshape(2, 3), FLAT[7:]], None),
    "wrong order": (lambda: views(FLAT, SHAPES)[::-1], None),
    "partial coverage": (lambda: views(FLAT, SHAPES)[:2], None),
    "a non-contiguous piece": (lambda: [FLAT[:6].reshape(3, 2).T, *views(FLAT, SHAPES)[1:]], None),
    "rows of a 2-D array": (lambda: list(np.zeros((2, 3))), None),
}


@pytest.mark.parametrize("case", list(BASE_CASES))
def test_flat_base(case):
    arrays, want = BASE_CASES[case]
    assert flat_base(arrays()) is want


def test_the_flat_path_is_taken_for_mlp_params_and_their_gradients():
    net = manual.MLP.from_weights(manual.init_weights([4, 6, 3], seed=0))
    base = flat_base(net.params)
    assert base is not None and base.size == sum(p.size for p in net.params)
    assert all(np.shares_memory(base, p) for p in net.params)
    grads = Gradients(np.zeros(base.size), [p.shape for p in net.params])
    state = state_like(net.params, base)
    [(p, g, s)] = pieces(net.params, base, grads, state)
    assert p is base and g is grads.flat and s is state[0]


def test_state_like_makes_zeros_shaped_like_the_params():
    fast, fast_list = state_like(views(FLAT, SHAPES), FLAT)
    slow, slow_list = state_like([p.copy() for p in views(FLAT, SHAPES)], None)
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
    fast = views(rng.normal(size=17).astype(dtype), SHAPES)  # views of one flat array, as MLP.params
    slow = [p.copy() for p in fast]                          # separate arrays: the per-tensor path
    opt_fast, opt_slow = (manual.make_optimizer(optimizer, ps, lr=0.1, weight_decay=0.01) for ps in (fast, slow))
    for step in range(3):
        grads = Gradients(rng.normal(size=17).astype(dtype), SHAPES)
        opt_fast.step(grads)
        opt_slow.step(grads)
        assert all(np.array_equal(a, b) for a, b in zip(fast, slow)), f"step {step}"
    assert len(list(pieces(fast, flat_base(fast), grads))) == math.ceil(17 / chunk)
