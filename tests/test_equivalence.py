"""The equivalence matrix: manual/ against torch_ref/ through the compare harness, one line per case.

Forward and gradients do not depend on the optimiser or the batch regime, so they run once per
(activation, output/loss, depth, dtype), for all 10 valid output/loss pairs; trajectories run for the
whole product with 7 pairs that use every output and every loss at least twice (float32 at depth 2).
"""
import pytest

from helpers import ACTIVATIONS, BATCH, OPTIMIZERS, PAIRS, TRAJECTORY_PAIRS, assert_agree

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
