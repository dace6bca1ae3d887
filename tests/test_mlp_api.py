"""manual.MLP's public API beyond the equivalence cases: forward with dropout masks (against a hand
computation), the masks' checks, class decisions (the arg-max of z^L, also in early stopping),
error_rate, set_weights, loss in the network's dtype, and the training loop's arrays reused per batch
size (manual/fastpath.py's module docstring)."""
import numpy as np
import pytest

import manual
from compare.tolerances import HAND_ATOL, HAND_RTOL

SIZES = [4, 6, 5, 3]  # two hidden layers: masks[0] is hidden layer 1's, masks[1] hidden layer 2's
W = manual.init_weights(SIZES, seed=3)
X = np.random.default_rng(4).normal(size=(5, 4))  # 5 rows, 4 columns: n != n_0
Y = np.array([0, 1, 2, 0, 1])


def mlp(weights=W, **kw):
    return manual.MLP.from_weights(weights, **kw)


def mask(n, width, seed, p=0.5):
    """An inverted-dropout mask: entries 0 or 1/(1-p)."""
    return (np.random.default_rng(seed).random((n, width)) >= p) / (1 - p)


M1, M2 = mask(5, 6, 1), mask(5, 5, 2)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def by_hand(X, masks=(None, None), weights=W, f=sigmoid):
    """The lecture's forward pass written out: z^l = a^{l-1} W^T + b, a^l = f(z^l) m^l, softmax."""
    a = X
    for l, m in ((1, masks[0]), (2, masks[1])):
        a = f(a @ weights[f"W{l}"].T + weights[f"b{l}"])
        a = a if m is None else a * m
    z = a @ weights["W3"].T + weights["b3"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---- forward: masks, defaults, input checks -----------------------------------------------------------

@pytest.mark.parametrize("masks", [[M1, M2], [M1, None], [None, M2], [None, None]],
                         ids=["both", "first", "second", "none"])
def test_forward_applies_the_masks_it_is_given(masks):
    net = mlp()
    assert np.allclose(net.forward(X, masks), by_hand(X, masks), rtol=HAND_RTOL, atol=0)
    assert all(np.array_equal(net.a[l], net.h[l] if m is None else net.h[l] * m) for l, m in zip((1, 2), masks, strict=False))


def test_forward_without_masks_is_the_plain_pass():
    assert np.allclose(mlp().forward(X), by_hand(X), rtol=HAND_RTOL, atol=0)


def test_the_constructor_defaults_to_the_lecture_network():
    net = manual.MLP(W)
    assert (net.activation, net.output, net.loss_name) == ("sigmoid", "softmax", "cross_entropy")
    assert np.allclose(net.forward(X), by_hand(X), rtol=HAND_RTOL, atol=0)


GAMMA_CASES = {  # gamma reaches the hidden activation through both constructors
    "leaky_relu 0.2": (lambda: manual.MLP(W, "leaky_relu", gamma=0.2), lambda z: np.where(z > 0, z, 0.2 * z)),
    "elu 0.5": (lambda: manual.MLP.from_weights(W, "elu", gamma=0.5), lambda z: np.where(z > 0, z, 0.5 * np.expm1(z))),
}


@pytest.mark.parametrize("case", list(GAMMA_CASES))
def test_gamma_sets_the_slope_of_the_hidden_activation(case):
    make, f = GAMMA_CASES[case]
    x = 3 * X  # enough negative z^l that the slope shows
    assert np.allclose(make().forward(x), by_hand(x, f=f), rtol=HAND_RTOL, atol=0)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "softplus"])
@pytest.mark.parametrize("make", [manual.MLP, manual.MLP.from_weights], ids=["MLP", "from_weights"])
def test_gamma_of_an_activation_without_one_is_refused(make, name):
    with pytest.raises(ValueError, match=rf"^gamma is only a parameter of leaky_relu and elu, not of activation='{name}'$"):
        make(W, name, gamma=0.2)


def test_a_new_network_has_nothing_to_show_until_a_pass():
    net = mlp()
    assert (net.z, net.a, net.h, net.delta) == (None, None, None, None)
    net.forward(X)
    assert len(net.z) == len(net.a) == 4 and net.delta is None  # delta^l comes from gradients


def test_a_single_row_is_a_batch():
    assert np.allclose(mlp().forward(X[:1]), by_hand(X[:1]), rtol=HAND_RTOL, atol=0)


INPUT_CASES = {  # the whole message: the argument's name, what it got and what was expected
    "X a list": (lambda: mlp().forward(X.tolist()), TypeError, r"^X must be a numpy.ndarray, got list$"),
    "X 1-D": (lambda: mlp().forward(X[0]), ValueError, r"^X has shape \(4,\); expected \(n, 4\) with n >= 1$"),
    "X no rows": (lambda: mlp().forward(X[:0]), ValueError, r"^X has shape \(0, 4\); expected \(n, 4\) with n >= 1$"),
    "y a list": (lambda: mlp().error_rate(X, Y.tolist()), TypeError,
                 r"^y must be a numpy.ndarray of class indices, got list$"),
    "y floats": (lambda: mlp().loss(X, Y.astype(float)), TypeError,
                 r"^y has dtype float64; expected integer class indices 0\.\.2$"),
}


@pytest.mark.parametrize("case", list(INPUT_CASES))
def test_bad_inputs_get_the_whole_message(case):
    call, exc, message = INPUT_CASES[case]
    with pytest.raises(exc, match=message):
        call()


# ---- bad masks: the entry, the layer and what was expected -----------------------------------------

MASK_CASES = {
    "too few": ([M1], r"masks has 1 entries; expected one per hidden layer \(2\)"),
    "too many": ([M1, M2, None], r"masks has 3 entries; expected one per hidden layer \(2\)"),
    "wrong width": ([M1, mask(5, 6, 2)], r"masks\[1\] \(hidden layer 2\) is \(\(5, 6\), dtype\('float64'\)\); "
                                         r"expected shape \(5, 5\) dtype float64$"),
    "wrong rows": ([mask(4, 6, 1), M2], r"masks\[0\] \(hidden layer 1\) is \(\(4, 6\), dtype\('float64'\)\); "
                                        r"expected shape \(5, 6\) dtype float64$"),
    "wrong dtype": ([M1.astype(np.float32), M2], r"masks\[0\] \(hidden layer 1\) is \(\(5, 6\), dtype\('float32'\)\); "
                                                 r"expected shape \(5, 6\) dtype float64$"),
    "a list": ([M1.tolist(), M2], r"masks\[0\] \(hidden layer 1\) is list; expected shape \(5, 6\) dtype float64$"),
}


@pytest.mark.parametrize("case", list(MASK_CASES))
def test_bad_masks_get_a_specific_error(case):
    masks, message = MASK_CASES[case]
    with pytest.raises(ValueError, match=message):
        mlp().forward(X, masks)


# ---- error_rate, set_weights, loss -------------------------------------------------------------------

def test_error_rate_is_the_fraction_of_wrong_arg_maxes():
    net = mlp()
    predicted = by_hand(X).argmax(axis=1)
    y = predicted.copy()
    y[:2] = (y[:2] + 1) % 3  # exactly two rows of five misclassified
    assert net.error_rate(X, predicted) == 0.0 and net.error_rate(X, y) == 2 / 5


@pytest.mark.parametrize("output,b", [("softmax", [0.0, 1e-17, -1.0]), ("sigmoid", [40.0, 41.0, 0.0])])
def test_class_decisions_are_the_arg_max_of_z_L_not_of_rounded_a_L(output, b):
    """Every row's z^L is b: class 1's is the largest, but a^L rounds classes 0 and 1 to the same value
    (softmax: e^{-1e-17} = 1.0; sigmoid(40) = sigmoid(41) = 1.0).  The exact a^L, and torch_ref's
    accuracy (on the logits), say class 1."""
    net = mlp({"W1": np.zeros((3, 4)), "b1": np.array(b)}, output=output, loss="mse")
    a = net.forward(X)
    assert a[0, 0] == a[0, 1] and a.argmax(axis=1).tolist() == [0] * 5  # the tie this test is about
    ones = np.ones(5, dtype=int)
    assert (net.predict(X) == 1).all() and net.error_rate(X, ones) == 0.0
    assert net.a[net.L] is None  # predict stops at z^L: no output function evaluated
    hist = manual.train(net, X, ones, epochs=1, lr=1e-30, X_val=X, y_val=ones)
    assert hist.train_accuracy == hist.val_accuracy == [1.0]


def test_early_stopping_judges_the_arg_max_of_z_L():
    """The callback sets b^1 after each epoch's step (lr 1e-30 leaves it so): epoch 1 the rounding tie,
    class 1 by z^L; epoch 2 class 0; epoch 3 class 1 outright.  Validation errors on z^L: 0, 1, 0, so the
    best epoch is 1; on the rounded a^L they would be 1, 1, 0 and the best epoch 3."""
    b1 = {0: [0.0, 1e-17, -1.0], 1: [1.0, 0.0, -1.0], 2: [0.0, 1.0, -1.0]}
    net = mlp({"W1": np.zeros((3, 4)), "b1": np.zeros(3)})
    set_b1 = lambda step, net, loss: net.set_weights({"W1": np.zeros((3, 4)), "b1": np.array(b1[step])})  # noqa: E731
    ones = np.ones(5, dtype=int)
    hist = manual.train(net, X, ones, epochs=3, lr=1e-30, X_val=X, y_val=ones, patience=3, callback=set_b1)
    assert hist.val_accuracy == [1.0, 0.0, 1.0] and hist.best_epoch == 1 and hist.restored_best


@pytest.mark.parametrize("y,message", [(Y[:4], r"y has shape \(4,\); expected \(5,\)"),
                                       (np.array([0, 1, 3, 0, 1]), r"y has labels in \[0, 3\]; expected 0..2")])
def test_error_rate_checks_the_labels(y, message):
    with pytest.raises(ValueError, match=message):
        mlp().error_rate(X, y)


def test_set_weights_writes_into_the_live_parameters():
    net, other = mlp(), manual.init_weights(SIZES, seed=9)
    live = net.params
    net.set_weights(other)
    assert all(p is q for p, q in zip(live, net.params, strict=False))
    assert all(np.array_equal(net.weights()[k], v) for k, v in other.items())
    assert np.allclose(net.forward(X), by_hand(X, weights=other), rtol=HAND_RTOL, atol=0)


def test_set_weights_of_other_sizes_is_refused():
    with pytest.raises(ValueError, match=r"^weights of sizes \[4, 6, 3\] do not fit this network of sizes "
                                         r"\[4, 6, 5, 3\]$"):
        mlp().set_weights(manual.init_weights([4, 6, 3], seed=0))


@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_a_float32_network_computes_its_loss_in_float32(loss):
    """The loss against the one-hot labels in the network's own dtype: the value the training loop
    (gradients) reports, a float32 number, and the formula's value up to float32 rounding."""
    w32 = {k: v.astype(np.float32) for k, v in W.items()}
    net, X32 = mlp(w32, output="sigmoid", loss=loss), X.astype(np.float32)
    value = net.loss(X32, Y)
    a = net.forward(X32).astype(np.float64)
    diff = a - np.eye(3)[Y]
    by_formula = np.mean(diff ** 2) if loss == "mse" else np.mean(np.abs(diff))
    assert value == net.gradients(X32, Y)[0]
    assert float(np.float32(value)) == value
    assert value == pytest.approx(by_formula, rel=1e-6)


def test_gradients_apply_the_masks_as_the_hand_backprop_does():
    """delta^l = (W^{l+1})^T delta^{l+1} . sigma'(z^l) . m^l, written out for both hidden layers."""
    loss, grads = mlp().gradients(X, Y, [M1, M2])
    h1 = sigmoid(X @ W["W1"].T + W["b1"])
    a1 = h1 * M1
    h2 = sigmoid(a1 @ W["W2"].T + W["b2"])
    a2 = h2 * M2
    p = by_hand(X, [M1, M2])
    d3 = (p - np.eye(3)[Y]) / len(X)
    d2 = (d3 @ W["W3"]) * h2 * (1 - h2) * M2
    d1 = (d2 @ W["W2"]) * h1 * (1 - h1) * M1
    expected = {"W3": d3.T @ a2, "b3": d3.sum(0), "W2": d2.T @ a1, "b2": d2.sum(0), "W1": d1.T @ X, "b1": d1.sum(0)}
    assert loss == pytest.approx(-np.log(p[np.arange(5), Y]).mean(), rel=HAND_RTOL)
    assert all(np.allclose(grads[k], v, rtol=HAND_RTOL, atol=HAND_ATOL) for k, v in expected.items())


def test_the_fast_path_takes_the_cross_entropy_from_the_softmax_parts(monkeypatch):
    """manual/fastpath.py: log sum_j e^{z_j} comes from the softmax's own (t, s), not a second pass, and
    gives the plain path's loss bit for bit."""
    net, seen = mlp(), []
    real_parts, real_ce = manual.fastpath.softmax_parts, manual.fastpath.cross_entropy_from_parts

    def spy_parts(z):
        seen.append(real_parts(z))
        return seen[-1]

    def spy_ce(t, s, y):
        seen.append((t, s))
        return real_ce(t, s, y)

    monkeypatch.setattr(manual.fastpath, "softmax_parts", spy_parts)
    monkeypatch.setattr(manual.fastpath, "cross_entropy_from_parts", spy_ce)
    value, _ = manual.FastPath(net).loss_and_gradients(X, manual.one_hot(Y, 3, net.dtype), Y)
    assert len(seen) == 2 and all(a is b for a, b in zip(seen[0][1:], seen[1], strict=True))
    assert value == net.loss(X, Y)
    assert value == pytest.approx(-np.log(by_hand(X)[np.arange(5), Y]).mean(), rel=HAND_RTOL)


# ---- arrays reused per batch size (the training loop's steps) -----------------------------------------

def _step(fast, X, masks):
    """One training step's passes, writing into the arrays kept for batches of len(X) rows."""
    y, net = Y[:len(X)], fast.net
    _, grads = fast.loss_and_gradients(X, manual.one_hot(y, 3, net.dtype), y, masks)
    return [*net.z[1:], *net.h[1:3], *net.a[1:3], *net.delta[1:3], grads.flat], grads


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_steps_reuse_one_set_of_arrays_per_batch_size(dtype):
    """z, h, masked a, delta and the gradients of a step go into arrays kept per batch size, in the network's
    dtype, holding exactly what the public passes compute."""
    net = mlp({k: v.astype(dtype) for k, v in W.items()})
    fast = manual.FastPath(net)
    batches = [(X.astype(dtype), [M1.astype(dtype), M2.astype(dtype)]),
               (X[::-1].astype(dtype), [mask(5, 6, 7).astype(dtype), mask(5, 5, 8).astype(dtype)]),
               (X[:3].astype(dtype), [M1[:3].astype(dtype), None])]
    steps = []
    for x, masks in batches:
        arrays, grads = _step(fast, x, masks)
        public = mlp({k: v.astype(dtype) for k, v in W.items()}).gradients(x, Y[:len(x)], masks)[1]
        assert np.array_equal(grads.flat, np.concatenate([public[k].ravel() for k in net.names]))
        assert all(np.shares_memory(g, grads.flat) for g in grads) and {a.dtype for a in arrays} == {np.dtype(dtype)}
        steps.append(arrays)
    first, second, other = steps
    assert all(a is b for a, b in zip(first, second, strict=False))  # the same arrays for the next batch of 5
    assert all(a is not b for a, b in zip(other, first, strict=False)) and other[0].shape == (3, 6)  # a batch of 3: its own
    assert all(a is b for a, b in zip(_step(fast, *batches[0])[0], first, strict=False))  # kept for the next batch of 5


def test_a_network_without_hidden_layers_trains():
    """L = 1: no hidden layer, no masks; one full-batch SGD step is W - lr dC/dW."""
    w = manual.init_weights([4, 3], seed=5)
    net = mlp(w)
    _, grads = mlp(w).gradients(X, Y)
    manual.train(net, X, Y, epochs=1, lr=0.5)
    assert all(np.allclose(net.weights()[k], w[k] - 0.5 * grads[k], rtol=HAND_RTOL, atol=HAND_ATOL) for k in w)


def test_the_public_passes_return_new_arrays():
    net = mlp()
    out = net.forward(X, [M1, M2])
    kept = [*net.z[1:], *net.a[1:]]
    assert net.forward(X, [M1, M2]) is not out and all(a is not b for a, b in zip(kept, [*net.z[1:], *net.a[1:]], strict=False))
