"""manual.SGD / manual.Adam / manual.train on their own: the update formulas and defaults against
torch.optim, the fast flat path, buffer reuse, the history, the sample order and dropout masks."""
import warnings

import numpy as np
import pytest
import torch
import torch._dynamo  # noqa: F401  (torch.optim imports it on first use: once here, not in a test's time)

import manual
import torch_ref
from compare.tolerances import OPTIM_ATOL, OPTIM_RTOL

W = manual.init_weights([4, 6, 3], seed=0)
X = np.random.default_rng(0).normal(size=(5, 4))
Y = np.array([0, 1, 2, 0, 1])

# name: (manual optimiser on a list of arrays, torch.optim optimiser on the same tensors); every
# argument the manual one leaves out must have torch's default.
OPTIMISERS = {
    "sgd defaults": (lambda ps: manual.SGD(ps, 0.1), lambda ts: torch.optim.SGD(ts, lr=0.1)),
    "sgd momentum": (lambda ps: manual.SGD(ps, 0.1, momentum=0.9),
                     lambda ts: torch.optim.SGD(ts, lr=0.1, momentum=0.9)),
    "sgd nesterov weight decay": (lambda ps: manual.SGD(ps, 0.1, 0.9, True, 0.01),
                                  lambda ts: torch.optim.SGD(ts, 0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adam defaults": (lambda ps: manual.Adam(ps), lambda ts: torch.optim.Adam(ts)),
    "adam betas 0 weight decay": (lambda ps: manual.Adam(ps, 0.01, (0.0, 0.0), 1e-8, 0.1),
                                  lambda ts: torch.optim.Adam(ts, lr=0.01, betas=(0.0, 0.0), weight_decay=0.1)),
}
OPTIMISERS.update({  # make_optimizer's defaults are torch_ref's (the other side of every cross-check)
    f"make_optimizer {name} defaults": (lambda ps, name=name: manual.make_optimizer(name, ps, 0.1),
                                        lambda ts, name=name: torch_ref.make_optimizer(name, ts, 0.1))
    for name in manual.OPTIMIZERS})
SHAPES = {"one tensor": [(3, 4)], "two tensors": [(3, 4), (4,)]}


@pytest.mark.parametrize("shapes", list(SHAPES))
@pytest.mark.parametrize("case", list(OPTIMISERS))
def test_steps_on_plain_arrays_follow_torch_optim(case, shapes):
    make, make_torch = OPTIMISERS[case]
    rng = np.random.default_rng(1)
    params = [rng.normal(size=s) for s in SHAPES[shapes]]
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    opt, ref = make(params), make_torch(tensors)
    for _ in range(3):  # >= 2 steps: the state (momentum buffer, m, v, t) is used
        grads = [rng.normal(size=p.shape) for p in params]
        opt.step(grads)
        for t, g in zip(tensors, grads, strict=False):
            t.grad = torch.tensor(g)
        ref.step()
    for p, t in zip(params, tensors, strict=False):  # to a few ulp: torch rounds p.add_(g, alpha=-lr) its own way
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=OPTIM_RTOL, atol=OPTIM_ATOL)


@pytest.mark.parametrize("optimizer,arrays", [("sgd", 2), ("momentum", 3), ("nesterov", 3), ("adam", 4)])
def test_training_steps_update_parameters_and_state_as_one_flat_array(monkeypatch, optimizer, arrays):
    """manual/flat.py's promise: an MLP's parameters, gradients and optimiser state are each one flat array,
    updated in one piece (a few NumPy calls per step) when they are small."""
    real, seen = manual.optim.pieces, []

    def spy(*args):
        for piece in real(*args):
            seen.append([a.shape for a in piece if isinstance(a, np.ndarray)])
            yield piece

    monkeypatch.setattr(manual.optim, "pieces", spy)
    net = manual.MLP.from_weights(W)
    manual.train(net, X, Y, epochs=2, lr=0.1, optimizer=optimizer)
    size = sum(p.size for p in net.params)
    assert seen == [[(size,)] * arrays] * 2  # (p, g, state...) per step, each all of it


def test_training_steps_reuse_one_set_of_arrays_per_batch_size():
    seen = []
    manual.train(manual.MLP.from_weights(W), X, Y, epochs=2, lr=0.1, batch_size=2,
                 callback=lambda step, net, loss: seen.append((len(net.z[1]), net.z[1], net.delta[1])))
    assert [n for n, _, _ in seen] == [2, 2, 1] * 2
    for n in (2, 1):
        arrays = [(z, d) for m, z, d in seen if m == n]
        assert all(z is arrays[0][0] and d is arrays[0][1] for z, d in arrays)


def test_history_and_callback_see_every_steps_rows_and_loss():
    order = np.array([[4, 0, 3, 1, 2], [1, 2, 0, 4, 3]])
    calls = []
    h = manual.train(manual.MLP.from_weights(W), X, Y, epochs=2, lr=0.1, batch_size=2, order=order,
                     callback=lambda step, net, loss: calls.append((step, loss)))
    assert h.schedule == [[4, 0], [3, 1], [2], [1, 2], [0, 4], [3]]  # consecutive slices of each epoch's order
    assert calls == list(enumerate(h.loss))
    assert h.loss[0] == manual.MLP.from_weights(W).loss(X[[4, 0]], Y[[4, 0]])  # the first batch, before its update


def _row_masks(step, layer, shape):
    """A fixed mask that differs from row to row (entries 0 or 1/(1-0.5))."""
    return 2.0 * (np.add.outer(np.arange(shape[0]), np.arange(shape[1])) % 3 != 0)


def test_a_full_batch_epoch_takes_its_rows_in_the_epochs_order():
    perm = np.roll(np.arange(5), 1)  # moves every row
    net = manual.MLP.from_weights(W)
    h = manual.train(net, X, Y, epochs=2, lr=0.1, order=np.stack([perm, np.arange(5)]), dropout=0.5, masks=_row_masks)
    ref = manual.MLP.from_weights(W)  # the same two epochs as two runs of plain SGD (it has no state)
    h1 = manual.train(ref, X[perm], Y[perm], epochs=1, lr=0.1, dropout=0.5, masks=_row_masks)
    h2 = manual.train(ref, X, Y, epochs=1, lr=0.1, dropout=0.5, masks=_row_masks)
    assert h.schedule == [perm.tolist(), list(range(5))]
    assert h.loss == h1.loss + h2.loss
    assert all(np.array_equal(w, ref.weights()[k]) for k, w in net.weights().items())


@pytest.mark.parametrize("p,dtype", [(0.25, "float32"), (0.5, "float64")])
def test_dropout_mask_keeps_with_probability_1_minus_p_and_scales_by_its_inverse(p, dtype):
    dt = np.dtype(dtype)
    m = manual.dropout_mask(np.random.default_rng(5), p, (40, 7), dt)
    keep = np.random.default_rng(5).random((40, 7)) >= p
    assert m.dtype == dt
    assert np.array_equal(m, np.where(keep, dt.type(1) / dt.type(1 - p), dt.type(0)))


HYPER = {"defaults": {}, "all given": dict(momentum=0.5, weight_decay=0.01, betas=(0.8, 0.9), eps=1e-3)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hyper", list(HYPER))
@pytest.mark.parametrize("optimizer", manual.OPTIMIZERS)
def test_train_steps_as_make_optimizer_on_the_networks_gradients(optimizer, hyper, dtype):
    w, x = {k: v.astype(dtype) for k, v in W.items()}, X.astype(dtype)
    net, ref = manual.MLP.from_weights(w), manual.MLP.from_weights(w)
    manual.train(net, x, Y, epochs=3, lr=0.1, optimizer=optimizer, **HYPER[hyper])
    opt = manual.make_optimizer(optimizer, ref.params, 0.1, **HYPER[hyper])  # same defaults as train's
    for _ in range(3):
        grads = ref.gradients(x, Y)[1]
        opt.step([grads[k] for k in ref.names])
    assert all(np.array_equal(v, ref.weights()[k]) and v.dtype == dtype for k, v in net.weights().items())


def _orders(seed):
    rng = np.random.default_rng([seed, 0])
    return [rng.permutation(5) for _ in range(2)]


CANONICAL = [np.arange(5)] * 2
SCHEDULES = {  # train's options -> (batch size, the two epochs' sample orders), as the module docstring states them
    "full batch": ({}, 5, CANONICAL),
    "batch_size = n": (dict(batch_size=5), 5, CANONICAL),
    "mini-batch, default seed 0": (dict(batch_size=2), 2, _orders(0)),
    "mini-batch, seed 3": (dict(batch_size=2, seed=3), 2, _orders(3)),
    "mini-batch, no shuffle": (dict(batch_size=2, shuffle=False), 2, CANONICAL),
    "full batch, shuffled": (dict(shuffle=True, seed=3), 5, _orders(3)),
}


@pytest.mark.parametrize("case", list(SCHEDULES))
def test_the_default_sample_order(case):
    kw, B, orders = SCHEDULES[case]
    h = manual.train(manual.MLP.from_weights(W), X, Y, epochs=2, lr=0.1, **kw)
    assert h.schedule == [o[s:s + B].tolist() for o in orders for s in range(0, 5, B)]


@pytest.mark.parametrize("epochs,batch_size,shuffle", [(2, 2, None), (2, 5, None), (2, 5, True), (2, 2, False),
                                                       (0, 2, None), (0, 5, None)])
def test_epoch_orders_is_an_order_train_accepts_and_uses_by_default(epochs, batch_size, shuffle):
    order = manual.epoch_orders(5, epochs, batch_size, 3, shuffle)
    kw = dict(epochs=epochs, lr=0.1, batch_size=batch_size, seed=3)
    h = manual.train(manual.MLP.from_weights(W), X, Y, order=order, **kw)
    assert h.schedule == manual.train(manual.MLP.from_weights(W), X, Y, shuffle=shuffle, **kw).schedule
    assert order.shape == (epochs, 5) and order.dtype == np.int64


def test_default_dropout_masks_come_from_the_seeds_second_stream():
    kw = dict(epochs=2, lr=0.1, batch_size=2, dropout=0.3, seed=4)
    net, ref, rng = manual.MLP.from_weights(W), manual.MLP.from_weights(W), np.random.default_rng([4, 1])
    manual.train(net, X, Y, **kw)
    manual.train(ref, X, Y, masks=lambda step, layer, shape: manual.dropout_mask(rng, 0.3, shape, ref.dtype), **kw)
    assert all(np.array_equal(v, ref.weights()[k]) for k, v in net.weights().items())


def test_zero_epochs_with_early_stopping_leave_the_network_as_it_was():
    net = manual.MLP.from_weights(W)
    h = manual.train(net, X, Y, epochs=0, lr=0.1, X_val=X, y_val=Y, patience=1)
    assert (h.epochs_run, h.best_epoch, h.restored_best, h.loss) == (0, None, False, [])
    assert all(np.array_equal(v, W[k]) for k, v in net.weights().items())


def _float32_run(**kw):
    manual.train(manual.MLP.from_weights({k: v.astype(np.float32) for k, v in W.items()}), X.astype(np.float32), Y,
                 epochs=1, **kw)


def _adam_eps_0_on_inputs_of_1e_170():
    """g^2 of the W1 gradient underflows to 0 while m does not: m / (sqrt(0) + 0) divides by zero."""
    manual.train(manual.MLP.from_weights(manual.init_weights([4, 3], seed=0)), 1e-170 * X, Y, epochs=1, lr=0.1,
                 optimizer="adam", eps=0.0)


PARAMETER = r"^a parameter became NaN or Inf in epoch 1 \(step 0\); lower the learning rate "
DIVERGING = {  # a run -> the message it must stop with (RuntimeWarnings are errors: overflow, invalid, divide)
    "loss NaN": (lambda: _float32_run(lr=1e300, batch_size=2),
                 r"^the loss became nan at step 1 \(epoch 1\); lower the learning rate \(lr=1e\+300\)"),
    "parameter overflow": (lambda: _float32_run(lr=1e300), PARAMETER + r"\(lr=1e\+300\)"),  # lr * g overflows
    "Adam divides by zero": (_adam_eps_0_on_inputs_of_1e_170, PARAMETER + r"\(lr=0.1\)"),
}


@pytest.mark.parametrize("case", list(DIVERGING))
def test_a_diverging_run_stops_with_its_step_and_no_warnings(case):
    run, message = DIVERGING[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(manual.TrainingDiverged, match=message):
            run()
