"""The lecture's feed-forward network and its back-propagation, written by hand in NumPy alone.

    from manual import MLP
    net = MLP.from_weights(weights, activation="sigmoid", output="softmax", loss="cross_entropy")
    probs = net.forward(X)             # a^L, shape (n, n_L)
    loss, grads = net.gradients(X, y)  # float, {"W1": dC/dW1, "b1": dC/db1, ...}

Importing this package never imports torch.
"""
from .activations import HIDDEN as _HIDDEN
from .activations import OUTPUT as _OUTPUT
from .fastpath import FastPath
from .losses import LOSS as _LOSS
from .losses import error_rate, one_hot
from .mlp import MLP, check_config
from .optim import OPTIMIZERS, SGD, Adam, make_optimizer
from .train import History, TrainingDiverged, dropout_mask, epoch_orders, train
from .weights import INIT_SCHEMES, WeightsError, check_weights, init_weights, load_weights, save_weights

# the names each option accepts (the functions themselves: activations.HIDDEN, activations.OUTPUT, losses.LOSS)
ACTIVATIONS = tuple(_HIDDEN)
OUTPUTS = tuple(_OUTPUT)
LOSSES = tuple(_LOSS)

__all__ = ["MLP", "FastPath", "train", "History", "TrainingDiverged", "init_weights", "save_weights",
           "load_weights", "check_weights", "WeightsError", "SGD", "Adam", "make_optimizer", "error_rate", "one_hot",
           "dropout_mask", "epoch_orders", "check_config", "ACTIVATIONS", "OUTPUTS", "LOSSES", "OPTIMIZERS",
           "INIT_SCHEMES"]
