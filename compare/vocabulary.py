"""The vocabulary every implementation speaks, declared once: the names of activations, outputs,
losses, optimisers and initialisations, the shared parameter names, and the data sets' shapes.

The CLI's choices come from here, and tests/test_vocabulary.py asserts that every implementation
covers all of it.  No framework is imported.
"""
from __future__ import annotations

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus")
DEFAULT_GAMMA = {"leaky_relu": 0.01, "elu": 1.0}   # LeakyReLU's negative slope, ELU's alpha
OUTPUTS = ("softmax", "sigmoid", "identity")
LOSSES = ("cross_entropy", "mse", "l1", "hinge")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
INIT_SCHEMES = ("torch", "xavier", "he")
DTYPES = ("float32", "float64")


def param_names(L: int) -> list[str]:
    """W1, b1, W2, b2, ..., WL, bL: the shared weights' names and the order of every flattened vector."""
    return [f"{p}{l}" for l in range(1, L + 1) for p in "Wb"]
