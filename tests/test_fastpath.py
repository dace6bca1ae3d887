"""manual/fastpath.py computes what the plain path (MLP.feedforward, MLP.backprop) computes, bit for bit:
z, h, a, delta, the loss and the gradients, for every activation, output and loss, both dtypes, with and
without dropout masks, and again when its arrays are reused for a second batch of the same size."""
import numpy as np
import pytest

import manual
from helpers import ACTIVATIONS, PAIRS

SIZES = [4, 7, 5, 3]


def _case(activation, output, loss, dtype, seed):
    rng = np.random.default_rng(seed)
    w = {k: (v * 2).astype(dtype) for k, v in manual.init_weights(SIZES, seed=seed).items()}
    X = rng.normal(size=(9, SIZES[0])).astype(dtype)
    y = rng.integers(0, SIZES[-1], 9)
    masks = [(rng.random((9, n)) >= 0.4).astype(dtype) / dtype.type(0.6) for n in SIZES[1:-1]]
    return manual.MLP.from_weights(w, activation, output, loss), X, y, masks


def _arrays(net):
    return [*net.z[1:], *net.h[1:], *net.a, *net.delta[1:]]


@pytest.mark.parametrize("dtype", [np.dtype(np.float64), np.dtype(np.float32)], ids=["float64", "float32"])
@pytest.mark.parametrize("dropout", [False, True], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("output,loss", PAIRS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_fast_path_equals_the_plain_path_bit_for_bit(activation, output, loss, dropout, dtype):
    fast_net, X, y, masks = _case(activation, output, loss, dtype, seed=1)
    plain_net = manual.MLP.from_weights(fast_net.weights(), activation, output, loss)
    fast = manual.FastPath(fast_net)
    Y = manual.one_hot(y, SIZES[-1], dtype)
    for step in range(2):  # the second step writes into the first one's arrays
        m = masks if dropout else None
        X = X[::-1].copy() if step else X
        value, grads = fast.loss_and_gradients(X, Y, y, m)
        want_value, want = plain_net.gradients(X, y, m)
        assert value == want_value and type(value) is float
        assert np.array_equal(grads.flat, np.concatenate([want[k].ravel() for k in plain_net.names]))
        for got, expected in zip(_arrays(fast_net), _arrays(plain_net), strict=True):
            assert (got is None) == (expected is None)
            if got is not None:
                assert got.dtype == expected.dtype == dtype and np.array_equal(got, expected)
