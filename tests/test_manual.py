"""manual/ on its own: gradient checks, the slide example, the split, dtypes, numerics, files."""
import itertools
import subprocess
import sys

import numpy as np
import pytest

import manual
from compare.data import SLIDE_FLOWERS, SLIDE_LABELS, SLIDE_PROBS, iris_split, slide_weights
from helpers import ACTIVATIONS, PAIRS
from manual import activations as act
from manual import losses

KINK_MARGIN = 1e-3  # finite differences with h = 1e-6 must not straddle a kink


def _random_case(activation, output, loss, depth, seed):
    rng = np.random.default_rng(seed)
    sizes = [3] + [4] * (depth - 1) + [3]
    w = manual.init_weights(sizes, "xavier", seed)
    w = {k: v + rng.normal(0, 0.3, v.shape) for k, v in w.items()}  # non-zero biases too
    X, y = rng.normal(size=(5, 3)), rng.integers(0, 3, 5)
    return manual.MLP.from_weights(w, activation, output, loss), X, y


def _away_from_kinks(net, X, y):
    net.forward(X)
    Y = manual.one_hot(y, net.sizes[-1], net.dtype)
    if net.activation in ("relu", "leaky_relu", "elu") and net.L > 1:
        if min(np.abs(z).min() for z in net.z[1:net.L]) < KINK_MARGIN:
            return False
    aL = net.a[net.L]
    if net.loss_name == "l1" and np.abs(aL - Y).min() < KINK_MARGIN:
        return False
    if net.loss_name == "hinge":
        m = 1.0 - aL[np.arange(len(y)), y][:, None] + aL
        m[np.arange(len(y)), y] = 1.0
        if np.abs(m).min() < KINK_MARGIN:
            return False
    return True


def central_differences(net, X, y, h=1e-6):
    out = {}
    for name, p in zip(net.names, net.params, strict=False):
        g = np.empty(p.size)
        flat = p.reshape(-1)
        for i in range(p.size):
            old = flat[i]
            flat[i] = old + h
            up = net.loss(X, y)
            flat[i] = old - h
            down = net.loss(X, y)
            flat[i] = old
            g[i] = (up - down) / (2 * h)
        out[name] = g.reshape(p.shape)
    return out


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("output,loss", PAIRS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_check(activation, output, loss, depth):
    seed = next(s for s in itertools.count() if _away_from_kinks(*_random_case(activation, output, loss, depth, s)))
    net, X, y = _random_case(activation, output, loss, depth, seed)
    _, bp = net.gradients(X, y)
    fd = central_differences(net, X, y)
    scale = max(np.abs(g).max() for g in bp.values())
    err = max(np.abs(bp[k] - fd[k]).max() for k in bp) / scale
    assert err < 1e-7, f"BP vs finite differences: relative error {err:.3g}"


def test_slide_weights_reproduce_the_slide_probabilities():
    probs = manual.MLP.from_weights(slide_weights()).forward(SLIDE_FLOWERS)
    rel = np.abs(probs - SLIDE_PROBS) / SLIDE_PROBS
    rel[0, 0] = 0.0
    assert rel.max() < 5e-6, "every entry but the misprint agrees to float32-print precision"
    assert abs(probs[0, 0] - 0.99998450) > 1e-5, "entry [0, 0] is the slide's misprint"
    assert abs(probs[0, 0] - 0.999998450) < 1e-7, "... a dropped digit 9: 0.999998450 as printed would read"
    assert (probs.argmax(axis=1) == SLIDE_LABELS).all()


def test_the_slide_layout_is_transposed_on_loading():
    w = slide_weights()
    assert w["W1"].shape == (6, 4) and w["W2"].shape == (3, 6)
    assert w["W1"][0, 2] == -2.33936191  # slide row 2 (petal length), column 0 (hidden unit 0)


def test_iris_is_scikit_learns_copy():
    from sklearn.datasets import load_iris

    from compare.data import load_iris_arrays

    X, y = load_iris_arrays()
    iris = load_iris()
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert np.array_equal(X, iris.data) and np.array_equal(y, iris.target)


def test_iris_split():
    s = iris_split()
    assert s.X_train.shape == (120, 4) and s.X_test.shape == (30, 4)
    assert s.train_rows.tolist() == list(range(0, 40)) + list(range(50, 90)) + list(range(100, 140))
    assert s.test_rows.tolist() == list(range(40, 50)) + list(range(90, 100)) + list(range(140, 150))
    assert np.bincount(s.y_train).tolist() == [40, 40, 40] and np.bincount(s.y_test).tolist() == [10, 10, 10]
    assert s.X_train[0].tolist() == [5.1, 3.5, 1.4, 0.2]  # raw features, as in the slides
    std = iris_split(standardize=True)
    assert np.allclose(std.X_train.mean(axis=0), 0) and np.allclose(std.X_train.std(axis=0), 1)
    assert not np.allclose(std.X_test.mean(axis=0), 0)  # fitted on the training split only


def test_the_lecture_example_trains_to_at_least_29_of_30():
    s = iris_split()
    net = manual.MLP.from_weights(manual.init_weights([4, 6, 3], seed=0))
    h = manual.train(net, s.X_train, s.y_train, epochs=1000, lr=0.2, X_val=s.X_test, y_val=s.y_test)
    correct = int((net.predict(s.X_test) == s.y_test).sum())
    assert correct >= 29, f"{correct}/30"
    assert correct == 30 and h.train_accuracy[-1] == 117 / 120  # measured: 30/30 test, 117/120 train
    assert h.loss[-1] < h.loss[0] / 5


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_preserved_end_to_end(dtype):
    s = iris_split(dtype)
    net = manual.MLP.from_weights(manual.init_weights([4, 5, 5, 3], seed=1, dtype=dtype), "elu", "softmax", "mse")
    loss, grads = net.gradients(s.X_train, s.y_train)
    tensors = [*net.z[1:], *net.a, *net.delta[1:], *grads.values()]
    assert {t.dtype for t in tensors} == {np.dtype(dtype)}
    manual.train(net, s.X_train, s.y_train, epochs=2, lr=0.1, optimizer="adam", batch_size=7, dropout=0.2)
    assert {p.dtype for p in net.params} == {np.dtype(dtype)}


@pytest.mark.parametrize("dtype,big", [("float64", 1e3), ("float32", 80.0)])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_stable_at_extremes(name, dtype, big):
    z = np.array([-big, -1.0, 0.0, 1.0, big], dtype=dtype)
    a = act.hidden_activation(name)
    fz = a.f(z)
    d = a.fprime(z, fz)  # RuntimeWarnings are errors in this suite (pyproject filterwarnings)
    assert fz.dtype == d.dtype == np.dtype(dtype)
    assert np.isfinite(fz).all() and np.isfinite(d).all()


@pytest.mark.parametrize("dtype,big", [("float64", 1e3), ("float32", 80.0)])
@pytest.mark.parametrize("output,loss", PAIRS)
def test_outputs_and_losses_stable_at_extremes(output, loss, dtype, big):
    w = {"W1": np.array([[big, 0.0], [-big, 0.0], [0.0, 1.0]], dtype=dtype), "b1": np.zeros(3, dtype=dtype)}
    net = manual.MLP.from_weights(w, output=output, loss=loss)
    X = np.array([[1.0, 0.0], [-1.0, 0.0]], dtype=dtype)
    value, grads = net.gradients(X, np.array([1, 2]))
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads.values())


def test_derivatives_at_the_kinks_follow_torch():
    z = np.zeros(1)
    assert act.hidden_activation("relu").fprime(z, z)[0] == 0.0
    assert act.hidden_activation("leaky_relu").fprime(z, z)[0] == 0.01
    assert act.hidden_activation("elu").fprime(z, z)[0] == 1.0
    assert act.hidden_activation("elu", gamma=0.5).fprime(z, z)[0] == 0.5
    assert act.hidden_activation("leaky_relu", gamma=0.2).fprime(-np.ones(1), None)[0] == 0.2


def test_losses_follow_the_stated_formulas():
    a = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    y = np.array([1, 0])
    Y = manual.one_hot(y, 3, a.dtype)
    assert losses.mse(None, a, Y, y) == pytest.approx(((a - Y) ** 2).sum() / 6)
    assert losses.l1(None, a, Y, y) == pytest.approx(np.abs(a - Y).sum() / 6)
    # MultiMarginLoss: sample 0: max(0, 1-.5+.2) + max(0, 1-.5+.3) = 1.5; sample 1: .5 + .7 = 1.2
    assert losses.hinge(None, a, Y, y) == pytest.approx((1.5 + 1.2) / 3 / 2)
    z = np.log(np.array([[0.3, 0.3, 0.4]]))
    assert losses.cross_entropy(z, None, None, np.array([2])) == pytest.approx(-np.log(0.4))  # the slide's example
    assert losses.error_rate(a, y) == 0.0 and losses.error_rate(a, np.array([0, 0])) == 0.5


def test_init_schemes_are_seeded_and_shaped():
    for scheme in manual.INIT_SCHEMES:
        w = manual.init_weights([4, 6, 3], scheme, seed=5)
        assert {k: v.shape for k, v in w.items()} == {"W1": (6, 4), "b1": (6,), "W2": (3, 6), "b2": (3,)}
        assert all(np.array_equal(w[k], v) for k, v in manual.init_weights([4, 6, 3], scheme, seed=5).items())
    t = manual.init_weights([4, 6, 3], "torch", seed=0)
    assert np.abs(t["W1"]).max() <= 0.5 and np.abs(t["b2"]).max() <= 1 / np.sqrt(6)  # U(+-1/sqrt(fan_in))
    x = manual.init_weights([4, 6, 3], "xavier", seed=0)
    assert np.abs(x["W1"]).max() <= np.sqrt(6 / 10) and not x["b1"].any()
    f32 = manual.init_weights([4, 6, 3], seed=0, dtype="float32")
    assert all(np.array_equal(f32[k], t[k].astype(np.float32)) for k in t)


def test_safetensors_round_trip(tmp_path):
    w = manual.init_weights([4, 6, 3], seed=2, dtype="float32")
    path = manual.save_weights(tmp_path / "w.safetensors", w)
    back = manual.load_weights(path)
    assert back.keys() == w.keys() and all(np.array_equal(back[k], w[k]) and back[k].dtype == w[k].dtype for k in w)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left behind


def test_importing_manual_does_not_import_torch():
    code = "import sys, manual; manual.MLP; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_early_stopping_restores_the_best_weights():
    s = iris_split(standardize=True)
    net = manual.MLP.from_weights(manual.init_weights([4, 6, 3], seed=0))
    snapshots = {}
    h = manual.train(net, s.X_train, s.y_train, epochs=300, lr=0.5, batch_size=10, X_val=s.X_test, y_val=s.y_test,
                     patience=3, callback=lambda step, n, loss: snapshots.__setitem__(step, n.weights()))
    assert h.stopped_early and h.restored_best and h.epochs_run == h.best_epoch + 3
    best_step = h.best_epoch * 12 - 1  # 12 mini-batches per epoch; the last step of the best epoch
    assert all(np.array_equal(w, snapshots[best_step][k]) for k, w in net.weights().items())
    assert h.val_accuracy[h.best_epoch - 1] == max(h.val_accuracy)


def test_loaded_weights_come_in_layer_order_and_files_are_world_readable(tmp_path):
    import os

    w = manual.init_weights([4, 6, 5, 3], seed=2)
    path = manual.save_weights(tmp_path / "w.safetensors", w)
    assert list(manual.load_weights(path)) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_a_diverging_run_stops_with_a_clear_message_and_no_warnings():
    s = iris_split()
    net = manual.MLP.from_weights(manual.init_weights([4, 6, 3], seed=0), "relu", "identity", "mse")
    with pytest.raises(manual.TrainingDiverged, match=r"became (inf|nan|NaN).* lower the learning rate \(lr=10000.0\)"):
        manual.train(net, s.X_train, s.y_train, epochs=100, lr=1e4)  # RuntimeWarnings are errors in this suite


# Each activation's branches, from the formulas in manual/activations.py.  The functions called on their own
# use torch's defaults (LeakyReLU negative_slope=0.01, ELU alpha=1.0); softplus is linear only *above* 20, as
# torch.nn.Softplus(threshold=20), so at z = 20 it is still log(1 + e^z) (2e-9 above z) and its f' sigmoid(z).
FORMULA_CASES = {
    "leaky_relu on its own": (act.leaky_relu, [-2.0, 0.0, 3.0], [-2.0 * 0.01, 0.0, 3.0]),
    "leaky_relu' on its own": (lambda z: act.leaky_relu_prime(z, None), [-2.0, 0.0, 3.0], [0.01, 0.01, 1.0]),
    "elu on its own": (act.elu, [-1.0, 0.0, 3.0], [np.expm1(-1.0), 0.0, 3.0]),
    "elu' on its own": (lambda z: act.elu_prime(z, None), [-1.0, 0.0, 3.0], [np.exp(-1.0), 1.0, 1.0]),
    "elu gamma 0.5": (lambda z: act.hidden_activation("elu", 0.5).f(z), [-1.0, 0.0, 0.5, 3.0],
                      [0.5 * np.expm1(-1.0), 0.0, 0.5, 3.0]),
    "elu' gamma 0.5": (lambda z: act.hidden_activation("elu", 0.5).fprime(z, None), [-1.0, 0.0, 0.5, 3.0],
                       [0.5 * np.exp(-1.0), 0.5, 1.0, 1.0]),
    "softplus": (act.softplus, [-1.0, 20.0, 20.5, 1e3], [np.log1p(np.exp(-1.0)), np.log1p(np.exp(20.0)), 20.5, 1e3]),
    "softplus'": (lambda z: act.softplus_prime(z, None), [-1.0, 20.0, 20.5, 1e3],
                  [1.0 / (1.0 + np.exp(1.0)), 1.0 / (1.0 + np.exp(-20.0)), 1.0, 1.0]),
}


@pytest.mark.parametrize("case", list(FORMULA_CASES))
def test_activation_formulas_on_each_branch(case):
    f, z, want = FORMULA_CASES[case]
    got = f(np.array(z))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.array(want))


# the module docstring: every activation writes f and f' into a given ``out`` (the fast path's
# preallocated arrays) and returns it, with the bits of a new array; the default and a non-default gamma
IN_PLACE = [(name, gamma, which) for name in ACTIVATIONS for gamma in (None, 0.3) for which in ("f", "fprime")
            if gamma is None or name in ("leaky_relu", "elu")]


@pytest.mark.parametrize("name,gamma,which", IN_PLACE)
def test_every_activation_writes_into_out(name, gamma, which):
    a, z = act.hidden_activation(name, gamma), np.array([-30.0, -3.0, -1.0, 0.0, 0.5, 3.0, 20.0, 20.5, 30.0])
    call = (lambda out=None: a.f(z, out=out)) if which == "f" else (lambda out=None: a.fprime(z, a.f(z), out=out))
    buf = np.empty_like(z)
    assert call(buf) is buf
    np.testing.assert_array_equal(buf, call())


@pytest.mark.parametrize("dtype,big", [("float64", 1e3), ("float32", 80.0)])
def test_softmax_and_cross_entropy_on_their_own_at_extreme_logits(dtype, big):
    z = np.array([[big, -big, 0.0], [-big, -big, -big], [0.0, big, big]], dtype=dtype)
    y = np.array([1, 2, 0])
    e = np.exp(-big)  # computed in float64: 0 for big = 1e3, no overflow anywhere
    # log sum_j e^{z_ij} - z_{i,y_i} by hand: 2 big + log(1 + e + e^2), log 3, big + log(2 + e)
    ce = (3 * big + np.log1p(e + e * e) + np.log(3.0) + np.log(2.0 + e)) / 3
    probs = np.array([np.array([1.0, e * e, e]) / (1 + e + e * e), [1 / 3] * 3, np.array([e, 1.0, 1.0]) / (2 + e)])
    eps = float(np.finfo(dtype).eps)
    a = act.softmax(z)  # RuntimeWarnings are errors in this suite
    assert a.dtype == np.dtype(dtype)
    np.testing.assert_allclose(a, probs.astype(dtype), rtol=eps, atol=0)
    _, t, s = act.softmax_parts(z)
    for value in (losses.cross_entropy(z, None, None, y), losses.cross_entropy_from_parts(t, s, y)):
        assert np.isfinite(value) and value == pytest.approx(ce, rel=eps)


@pytest.mark.parametrize("output,loss", PAIRS)
def test_every_tensor_stays_float32_for_every_output_and_loss(output, loss):
    net = manual.MLP.from_weights(manual.init_weights([4, 5, 3], seed=1, dtype="float32"), "tanh", output, loss)
    X = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    value, grads = net.gradients(X, np.array([0, 1, 2]))
    tensors = [*net.z[1:], *net.a, *net.delta[1:], *grads.values()]
    assert {t.dtype for t in tensors} == {np.dtype(np.float32)} and isinstance(value, float)


# manual/rowops.py's row maxima and row and column sums against NumPy's reductions, in the dtype of the input
# (small integers: every order of the additions gives the same sums exactly)
ROWOPS = {
    "row_max": (manual.rowops.row_max, lambda a: a.max(axis=1)),
    "row_sum": (manual.rowops.row_sum, lambda a: a.sum(axis=1)),
    "column_sum": (manual.rowops.column_sum, lambda a: a.sum(axis=0)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(ROWOPS))
def test_row_and_column_reductions_keep_the_dtype(name, dtype):
    f, reference = ROWOPS[name]
    a = np.arange(12, dtype=dtype).reshape(3, 4) - 5
    got = f(a)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, reference(a))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_hidden_activation_is_the_named_pair_of_functions(name):
    a, (_, f, fprime) = act.hidden_activation(name), act.HIDDEN[name]
    z = np.linspace(-3.0, 3.0, 7)
    assert a.name == name
    np.testing.assert_array_equal(a.f(z), f(z))
    np.testing.assert_array_equal(a.fprime(z, f(z)), fprime(z, f(z)))
