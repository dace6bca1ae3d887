"""The equivalence matrix: manual/ against torch_ref/ through the compare harness, one line per case.

Forward and gradients do not depend on the optimiser or the batch regime, so they run once per
(activation, output/loss, depth, dtype), for all 10 valid output/loss pairs; trajectories run for the
whole product with 7 pairs that use every output and every loss at least twice (float32 at depth 2).
"""
from dataclasses import replace

import numpy as np
import pytest

from compare.weights import initial_weights
from helpers import ACTIVATIONS, BATCH, OPTIMIZERS, PAIRS, TRAJECTORY_PAIRS, assert_agree, check_passes, describe, make_spec, small_split
from manual.adapter import ManualImplementation

DTYPES = ["float64", "float32"]
DEPTHS = [1, 2, 3]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("output,loss", PAIRS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_and_gradients(activation, output, loss, depth, dtype):
    assert_agree(what=("forward", "gradients"), activation=activation, output=output, loss=loss, depth=depth,
                 dtype=dtype)


# float64 trajectories at every depth; float32 at depth 2 (the float32 forward and gradients run at
# depths 1-3 above, and a depth-2 run already carries rounding through a hidden layer both ways).
TRAJECTORY_DEPTH_DTYPE = [(d, "float64") for d in DEPTHS] + [(2, "float32")]


@pytest.mark.parametrize("depth,dtype", TRAJECTORY_DEPTH_DTYPE)
@pytest.mark.parametrize("batch", list(BATCH))
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("output,loss", TRAJECTORY_PAIRS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_trajectory(activation, output, loss, optimizer, batch, depth, dtype):
    assert_agree(what=("trajectory",), activation=activation, output=output, loss=loss, optimizer=optimizer,
                 batch=batch, depth=depth, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", list(BATCH))
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dropout(activation, batch, dtype):
    assert_agree(activation=activation, depth=3, batch=batch, dtype=dtype, dropout=0.3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_weight_decay(optimizer, dtype):
    assert_agree(optimizer=optimizer, batch="mini", dtype=dtype, weight_decay=0.05, epochs=3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.5), ("adam", 0.05)])
def test_early_stopping_on_iris(optimizer, lr, dtype):
    """The full standardised iris split, mini-batches of 10: early stopping fires, at the same epoch on
    both sides, and both restore the same best weights."""
    from compare.data import iris_split

    traj = assert_agree(data=iris_split(dtype, standardize=True), optimizer=optimizer, lr=lr, batch=10, depth=2,
                        hidden=6, dtype=dtype, epochs=300, patience=3, dropout=0.1)
    assert traj.candidate.result.stopped_early and traj.reference.result.stopped_early
    assert traj.candidate.result.best_epoch == traj.reference.result.best_epoch and traj.candidate.result.epochs_run < 300
    assert any(c.tensor == "restored W1" and c.ok for c in traj.section.checks)


class Residue(ManualImplementation):
    """manual, with dC/db1[0] computed in float32 as ``size`` instead of its true value 0 (the hinge loss
    with an identity output sums delta^1 to exactly 0 here: float64 gives 0, float32 may leave ulps)."""

    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward_backward(self, spec, weights, X, y, masks):
        p = super().forward_backward(spec, weights, X, y, masks)
        if spec.dtype == "float32":
            p.grads["b1"] = p.grads["b1"].copy()
            p.grads["b1"][0] = np.float32(self.size)
        return p


def test_a_cancellation_residue_both_float32_sides_share_is_noise_and_a_larger_one_is_caught():
    """Each side's own float32 error is measured with the same denominator floor as the candidate's error:
    a true zero that both float32 runs leave as a few ulps of its terms (-2**-27 here) is the noise floor,
    not an infinitely large error that would allow nothing; a residue of 2**-10 (1e-3 of the terms) is still a failure."""
    spec = make_spec(activation="sigmoid", output="identity", loss="hinge", depth=1, dtype="float32")
    data = small_split("float32")
    w64 = {k: v.astype(np.float64) for k, v in initial_weights(spec).items()}
    p64 = ManualImplementation().forward_backward(replace(spec, dtype="float64"), w64, data.X_train.astype(np.float64),
                                                  data.y_train, None)
    assert p64.grads["b1"][0] == 0.0, "the premise: a gradient entry that is exactly zero in float64"
    fwd, grad = check_passes(spec, data, Residue(-2.0 ** -27), Residue(-2.0 ** -27))
    assert fwd.agree and grad.agree, describe(grad)
    fwd, grad = check_passes(spec, data, Residue(-2.0 ** -10), Residue(-2.0 ** -27))
    assert not grad.agree and grad.first_failure.tensor == "db1"
