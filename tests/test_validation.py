"""Bad input gets a specific error naming the argument and what was expected (table-driven)."""
import numpy as np
import pytest

import manual
import torch_ref
from compare.spec import Spec

W = manual.init_weights([4, 6, 3], seed=0)
X = np.ones((5, 4))
Y = np.array([0, 1, 2, 0, 1])


def mlp(**kw):
    return manual.MLP.from_weights(kw.pop("weights", W), **kw)


def without(name):
    return {k: v for k, v in W.items() if k != name}


def replaced(name, value):
    return {**W, name: value}


def train(**kw):
    args = dict(epochs=1, lr=0.1)
    args.update(kw)
    x, y = args.pop("X", X), args.pop("y", Y)
    return manual.train(mlp(), x, y, **args)


def sgd(**kw):
    return manual.SGD(mlp().params, **{"lr": 0.1, **kw})


def adam(**kw):
    return manual.Adam(mlp().params, **kw)


CASES = {
    # weights
    "missing tensor": (lambda: mlp(weights=without("b2")), ValueError, r"missing tensor\(s\) \['b2'\]"),
    "extra tensor": (lambda: mlp(weights=replaced("V1", W["W1"])), ValueError, r"unexpected tensor name\(s\) \['V1'\]"),
    "extra layer": (lambda: mlp(weights=replaced("W4", W["W1"])), ValueError, r"missing tensor\(s\) \['W3', 'b3', 'b4'\]"),
    "mis-shaped W": (lambda: mlp(weights=replaced("W2", np.zeros((3, 5)))), ValueError,
                     r"W2 has shape \(3, 5\); expected \(3, 6\)"),
    "mis-shaped b": (lambda: mlp(weights=replaced("b1", np.zeros(5))), ValueError, r"b1 has shape \(5,\); expected \(6,\)"),
    "W not 2-D": (lambda: mlp(weights=replaced("W1", np.zeros(24))), ValueError, r"W1 must be 2-D"),
    "mixed dtypes": (lambda: mlp(weights=replaced("b1", W["b1"].astype(np.float32))), TypeError, r"mixed dtypes"),
    "integer weights": (lambda: mlp(weights=replaced("b1", np.zeros(6, dtype=int))), TypeError,
                        r"b1 has dtype int64; expected float32 or float64"),
    "NaN weight": (lambda: mlp(weights=replaced("W1", np.full((6, 4), np.nan))), ValueError, r"W1 contains NaN or Inf"),
    "not a mapping": (lambda: mlp(weights=[W["W1"]]), TypeError, r"weights must be a mapping"),
    # names and combinations
    "unknown activation": (lambda: mlp(activation="gelu"), ValueError, r"activation='gelu' is not known; expected one of"),
    "unknown output": (lambda: mlp(output="tanh", loss="mse"), ValueError, r"output='tanh' is not known"),
    "unknown loss": (lambda: mlp(loss="nll"), ValueError, r"loss='nll' is not known; expected one of \['cross_entropy'"),
    "cross_entropy without softmax": (lambda: mlp(output="sigmoid"), ValueError, r"needs output='softmax'"),
    "unknown optimizer": (lambda: train(optimizer="rmsprop"), ValueError, r"optimizer='rmsprop' is not known"),
    # inputs
    "X not 2-D": (lambda: mlp().forward(np.ones(4)), ValueError, r"X has shape \(4,\); expected \(n, 4\)"),
    "X wrong width": (lambda: mlp().forward(np.ones((5, 3))), ValueError, r"X has shape \(5, 3\); expected \(n, 4\)"),
    "X NaN": (lambda: mlp().forward(np.full((2, 4), np.nan)), ValueError, r"X contains NaN or Inf"),
    "X Inf": (lambda: mlp().gradients(np.full((5, 4), np.inf), Y), ValueError, r"X contains NaN or Inf"),
    "X list": (lambda: mlp().forward([[1, 2, 3, 4]]), TypeError, r"X must be a numpy.ndarray"),
    "X float32 vs float64 weights": (lambda: mlp().forward(X.astype(np.float32)), TypeError,
                                     r"X has dtype float32 but the weights are float64"),
    "labels out of range": (lambda: mlp().gradients(X, np.array([0, 1, 2, 3, 0])), ValueError,
                            r"y has labels in \[0, 3\]; expected 0..2"),
    "negative labels": (lambda: mlp().gradients(X, np.array([0, -1, 2, 0, 1])), ValueError, r"y has labels in \[-1, 2\]"),
    "non-integer labels": (lambda: mlp().gradients(X, Y.astype(float)), TypeError, r"y has dtype float64; expected integer"),
    "wrong label count": (lambda: mlp().gradients(X, Y[:4]), ValueError, r"y has shape \(4,\); expected \(5,\)"),
    # training options
    "lr zero": (lambda: train(lr=0.0), ValueError, r"lr must be a finite number > 0, got 0.0"),
    "lr negative": (lambda: train(lr=-1.0), ValueError, r"lr must be a finite number > 0"),
    "dropout 1": (lambda: train(dropout=1.0), ValueError, r"dropout must be a probability in \[0, 1\), got 1.0"),
    "dropout negative": (lambda: train(dropout=-0.1), ValueError, r"dropout must be a probability in \[0, 1\)"),
    "batch size 0": (lambda: train(batch_size=0), ValueError, r"batch_size must be an integer in \[1, 5\], got 0"),
    "batch size too large": (lambda: train(batch_size=6), ValueError, r"batch_size must be an integer in \[1, 5\], got 6"),
    "negative epochs": (lambda: train(epochs=-1), ValueError, r"epochs must be an integer >= 0, got -1"),
    "patience without validation": (lambda: train(patience=2), ValueError, r"patience\) needs validation data"),
    "X_val mixed dtype": (lambda: train(X_val=X.astype(np.float32), y_val=Y), TypeError, r"X_val has dtype float32"),
    "bad order": (lambda: train(order=np.zeros((1, 5), dtype=int)), ValueError, r"order must be 1 permutations"),
    "negative momentum": (lambda: train(optimizer="momentum", momentum=-0.5), ValueError, r"momentum must be"),
    "epochs not an integer": (lambda: train(epochs=1.5), ValueError, r"epochs must be an integer >= 0, got 1.5"),
    "batch size bool": (lambda: train(batch_size=True), ValueError,
                        r"batch_size must be an integer in \[1, 5\], got True"),
    "patience 0": (lambda: train(patience=0, X_val=X, y_val=Y), ValueError,
                   r"patience must be an integer >= 1, got 0"),
    "patience with y_val alone": (lambda: train(patience=2, y_val=Y), ValueError,
                                  r"^early stopping \(patience\) needs validation data X_val, y_val$"),
    "X_val without y_val": (lambda: train(X_val=X), ValueError, r"^give both X_val and y_val, or neither$"),
    "y_val wrong length": (lambda: train(X_val=X, y_val=Y[:4]), ValueError,
                           r"y_val has shape \(4,\); expected \(5,\)"),
    "order too few epochs": (lambda: train(epochs=2, order=np.arange(5)[None]), ValueError,
                             r"order must be 2 permutations of range\(5\) \(shape \(2, 5\)\), got shape \(1, 5\)"),
    "dropout without hidden layer": (lambda: manual.train(mlp(weights=manual.init_weights([4, 3], seed=0)), X, Y,
                                                          epochs=1, lr=0.1, dropout=0.5), ValueError,
                                     r"^dropout needs at least one hidden layer \(it applies to hidden layers only\)$"),
    # the optimisers, built directly
    "SGD weight_decay negative": (lambda: sgd(weight_decay=-0.5), ValueError,
                                  r"weight_decay must be a finite number >= 0, got -0.5"),
    "SGD nesterov without momentum": (lambda: sgd(nesterov=True), ValueError,
                                      r"^nesterov=True needs momentum > 0 \(as torch.optim.SGD\)$"),
    "Adam lr zero": (lambda: adam(lr=0), ValueError, r"lr must be a finite number > 0, got 0"),
    "Adam beta1 one": (lambda: adam(betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be in \[0, 1\), got 1.0"),
    "Adam beta2 negative": (lambda: adam(betas=(0.9, -0.5)), ValueError,
                            r"betas\[1\] must be in \[0, 1\), got -0.5"),
    "Adam eps negative": (lambda: adam(eps=-1e-8), ValueError, r"eps must be a finite number >= 0, got -1e-08"),
    "Adam weight_decay NaN": (lambda: adam(weight_decay=float("nan")), ValueError,
                              r"weight_decay must be a finite number >= 0, got nan"),
    # torch_ref builders
    "torch_ref unknown activation": (lambda: torch_ref.MLP([4, 6, 3], activation="gelu"), ValueError,
                                     r"activation='gelu' is not known"),
    "torch_ref mixed dtypes": (lambda: torch_ref.from_shared(replaced("b1", W["b1"].astype(np.float32))), TypeError,
                               r"must all be float32 or all float64"),
    "torch_ref mis-shaped": (lambda: torch_ref.from_shared(replaced("b2", np.zeros(4))), ValueError,
                             r"tensor b2 has shape \(4,\); net.fc2.bias expects \(3,\)"),
    "torch_ref dropout": (lambda: torch_ref.MLP([4, 6, 3], dropout=1.5), ValueError, r"dropout must be a probability"),
    # the harness spec
    "spec hidden 0": (lambda: Spec(hidden=(0,)), ValueError, r"hidden layer size must be >= 1"),
    "spec dtype": (lambda: Spec(dtype="float16"), ValueError, r"dtype='float16' is not known; expected one of \['float32'"),
    "spec batch": (lambda: Spec(batch_size=121), ValueError, r"batch_size must be in \[1, 120\]"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_a_specific_error(case):
    call, exc, message = CASES[case]
    with pytest.raises(exc, match=message):
        call()


# ---- issue 15: inputs that passed the checks and failed later (or silently) ------------------------------
def _matrix(a):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(a)


def _mask(*values):
    m = np.full((5, 6), 2.0)
    m.flat[:len(values)] = values
    return [m]


MORE_CASES = {
    "X np.matrix": (lambda: mlp().forward(_matrix(X)), TypeError,
                    r"^X is a numpy.matrix; expected a plain numpy.ndarray \(np.asarray\(X\)\)$"),
    "X masked array": (lambda: mlp().gradients(np.ma.masked_array(X, mask=X > 2), Y), TypeError,
                       r"^X is a masked array \(numpy.ma\); expected a plain numpy.ndarray"),
    "X_val np.matrix": (lambda: train(X_val=_matrix(X), y_val=Y), TypeError, r"^X_val is a numpy.matrix"),
    "leaky_relu gamma NaN": (lambda: mlp(activation="leaky_relu", gamma=float("nan")), ValueError,
                             r"^gamma \(the leaky_relu parameter\) must be a finite number, got nan$"),
    "elu gamma Inf": (lambda: mlp(activation="elu", gamma=float("inf")), ValueError,
                      r"^gamma \(the elu parameter\) must be a finite number, got inf$"),
    "gamma a string": (lambda: mlp(activation="leaky_relu", gamma="0.1"), ValueError, r"got '0.1'$"),
    "mask NaN": (lambda: mlp().forward(X, masks=_mask(np.nan)), ValueError,
                 r"^masks\[0\] \(hidden layer 1\) contains NaN or Inf; expected entries 0 and 1/\(1-p\)$"),
    "mask two scales": (lambda: mlp().forward(X, masks=_mask(0.0, 1.5)), ValueError,
                        r"^masks\[0\] \(hidden layer 1\) has entries 1.5 and 2.0 besides 0; expected 0 and one scale"),
    "mask scale below 1": (lambda: mlp().gradients(X, Y, masks=[np.full((5, 6), 0.5)]), ValueError,
                           r"has entries 0.5 besides 0; expected 0 and 1/\(1-p\) >= 1"),
}


@pytest.mark.parametrize("case", list(MORE_CASES))
def test_more_bad_input_gets_a_specific_error(case):
    call, exc, message = MORE_CASES[case]
    with pytest.raises(exc, match=message):
        call()


def test_valid_masks_still_pass():
    m = np.where(np.arange(30).reshape(5, 6) % 3 == 0, 0.0, 1 / (1 - 0.25))
    a = mlp().forward(X, masks=[m])
    assert np.isfinite(a).all()
    assert np.isfinite(mlp(activation="leaky_relu", gamma=0).forward(X)).all()  # 0 is a finite gamma


def test_weights_that_do_not_fit_float32_are_named_not_called_nan():
    from manual.weights import cast_weights

    w = {k: v * 1e39 for k, v in W.items()}
    with pytest.raises(manual.WeightsError, match=r"^tensor W1 in 'w.st' holds values up to [0-9.e+]+, which do not "
                                                  r"fit in float32 \(largest 3.4e\+38\)"):
        cast_weights(w, "float32", "w.st")
    assert cast_weights(W, "float32")["W1"].dtype == np.float32
    assert cast_weights(w, "float64")["W1"] is not w["W1"]


def test_an_initial_forward_pass_that_overflows_names_the_layer():
    from compare.limits import check_initial_forward

    w = {k: v * 1e200 for k, v in W.items()}
    with pytest.raises(ValueError, match=r"^the initial forward pass overflows float64 at layer 2: z\^2 reaches "
                                         r"Inf or NaN before any training step; scale the initial weights down"):
        check_initial_forward(w, X, "relu", "softmax")
    w32 = {k: (v * 1e15).astype(np.float32) for k, v in W.items()}
    with pytest.raises(ValueError, match=r"^the initial loss \(mse\) overflows float32: "):
        check_initial_forward(w32, X.astype(np.float32), "relu", "identity", "mse", Y)
    check_initial_forward(W, X, "relu", "identity", "mse", Y)  # the ordinary start passes


RUN_SIZES = {  # with 16 GB of memory: the limit is 8 GB
    "epochs 1e9": ({"epochs": 10**9}, (r"^this run would need about 2,560.0 GB of memory \(the per-step record is "
                                       r"about 400 bytes x 4 tensors x 1,000,000,001 steps\), more than 50% of "
                                       r"this machine's 16.0 GB; lower --epochs$")),
    "epochs 1e23": ({"epochs": 99999999999999999999999}, r"about 2.56e\+17 GB .* lower --epochs$"),
    "hidden 1e9": ({"hidden": (10**9,)}, r"\(8,000,000,003 parameters\), .* lower --hidden"),
    "SGD steps": ({"epochs": 10**6, "batch_size": 1}, r"lower --epochs or raise --batch-size$"),
}


@pytest.mark.parametrize("case", list(RUN_SIZES))
def test_a_run_too_large_for_memory_is_refused_up_front(case):
    from compare.limits import check_run_size

    kw, message = RUN_SIZES[case]
    with pytest.raises(ValueError, match=message):
        check_run_size(Spec(**kw), memory=16 * 10**9)


def test_the_default_run_fits_and_the_rule_counts_the_companion():
    from compare.limits import check_run_size, run_bytes

    check_run_size(Spec(), memory=16 * 10**9)
    check_run_size(Spec())  # this machine's physical memory
    assert run_bytes(Spec(), companion=True)["trajectory"] == 2 * run_bytes(Spec())["trajectory"]


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, True])
def test_seeds_outside_what_numpy_and_torch_take_are_named(seed):
    from compare.limits import check_seed

    with pytest.raises(ValueError, match=r"^--seed must be an integer in 0 .. 18446744073709551615 \(2\*\*64 - 1\)"):
        check_seed(seed)
