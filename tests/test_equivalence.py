"""The equivalence matrix: manual/ against torch_ref/ through the compare harness, one line per case.

Forward and gradients do not depend on the optimiser or the batch regime, so they run once per
(activation, output/loss, depth, dtype), for all 10 valid output/loss pairs; trajectories run for the
whole product with 7 pairs that use every output and every loss at least twice.
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("batch", list(BATCH))
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("output,loss", TRAJECTORY_PAIRS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_trajectory(activation, output, loss, optimizer, batch, depth, dtype):
    assert_agree(what=("trajectory",), activation=activation, output=output, loss=loss, optimizer=optimizer,
                 batch=batch, depth=depth, dtype=dtype)
