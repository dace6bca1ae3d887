"""The same MLP as idiomatic torch.nn code: the way a framework user writes it (and a port's template).

    model = MLP([4, 6, 3], activation="sigmoid", output="softmax")
    logits = model(x)                  # z^L
    probs = model.output(logits)       # a^L
    loss = loss_fn("cross_entropy")(logits, probs, y)

Shared weights map onto the Linear layers through one declared table, ``WEIGHT_MAP``:
``W{l}`` <-> ``net.fc{l}.weight`` and ``b{l}`` <-> ``net.fc{l}.bias`` (same (n_l, n_{l-1}) layout).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,   # negative_slope = gamma (default 0.01)
    "elu": nn.ELU,                # alpha = gamma (default 1.0)
    "softplus": nn.Softplus,
}
OUTPUTS = {"softmax": lambda: nn.Softmax(dim=1), "sigmoid": nn.Sigmoid, "identity": nn.Identity}
LOSSES = ("cross_entropy", "mse", "l1", "hinge")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class MLP(nn.Module):
    """Linear -> activation [-> Dropout] for each hidden layer, then Linear; ``output`` maps z^L to a^L."""

    def __init__(self, sizes, activation="sigmoid", output="softmax", dropout=0.0, gamma=None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not known; expected one of {list(ACTIVATIONS)}")
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r} is not known; expected one of {list(OUTPUTS)}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        if gamma is not None and activation not in ("leaky_relu", "elu"):
            raise ValueError(f"gamma is only a parameter of leaky_relu and elu, not of activation={activation!r}")
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes={sizes} must list at least an input and an output size, each >= 1")
        self.sizes = sizes
        layers = OrderedDict()
        L = len(sizes) - 1
        for l in range(1, L + 1):
            layers[f"fc{l}"] = nn.Linear(sizes[l - 1], sizes[l])
            if l < L:
                layers[f"act{l}"] = ACTIVATIONS[activation]() if gamma is None else ACTIVATIONS[activation](gamma)
                if dropout > 0:
                    layers[f"drop{l}"] = nn.Dropout(dropout)
        self.net = nn.Sequential(layers)
        self.output = OUTPUTS[output]()

    def forward(self, x):
        return self.net(x)  # logits z^L; self.output(z^L) = a^L


def weight_map(L: int) -> dict[str, str]:
    """The declared mapping shared name -> state_dict key, for an L-layer MLP."""
    return {k: v for l in range(1, L + 1) for k, v in ((f"W{l}", f"net.fc{l}.weight"), (f"b{l}", f"net.fc{l}.bias"))}


def shared_to_state_dict(weights: Mapping[str, np.ndarray], model: MLP) -> dict[str, torch.Tensor]:
    """Shared weights -> a state_dict for ``model``; missing, unexpected or mis-shaped tensors fail loudly."""
    mapping = weight_map(len(model.sizes) - 1)
    missing = sorted(set(mapping) - set(weights))
    unexpected = sorted(set(weights) - set(mapping))
    if missing or unexpected:
        raise ValueError(f"shared weights do not fit a {len(model.sizes) - 1}-layer MLP of sizes {model.sizes}: "
                         f"missing {missing}, unexpected {unexpected}")
    own = model.state_dict()
    out = {}
    for name, key in mapping.items():
        arr = weights[name]
        if not isinstance(arr, np.ndarray) or arr.dtype not in (np.float32, np.float64):
            raise TypeError(f"tensor {name} must be a float32/float64 numpy array, got "
                            f"{getattr(arr, 'dtype', type(arr).__name__)}")
        if tuple(arr.shape) != tuple(own[key].shape):
            raise ValueError(f"tensor {name} has shape {tuple(arr.shape)}; {key} expects {tuple(own[key].shape)}")
        out[key] = torch.from_numpy(np.array(arr, order="C"))  # the parameter itself (assign=True): contiguous
    return out


def state_dict_to_shared(model: MLP) -> dict[str, np.ndarray]:
    """The model's parameters as shared weights (copies, on the CPU)."""
    sd = model.state_dict()
    return {name: sd[key].detach().cpu().numpy().copy() for name, key in weight_map(len(model.sizes) - 1).items()}


def from_shared(weights: Mapping[str, np.ndarray], activation="sigmoid", output="softmax", dropout=0.0,
                device="cpu", gamma=None) -> MLP:
    """Build the model from shared weights; dtype follows the weights (float32 or float64)."""
    dtypes = {np.dtype(getattr(w, "dtype", None)) for w in weights.values()} if weights else set()
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise TypeError(f"shared weights must all be float32 or all float64, got dtypes {sorted(map(str, dtypes))}")
    L = sum(1 for k in weights if k.startswith("W"))
    if L == 0 or "W1" not in weights or getattr(weights["W1"], "ndim", 0) != 2:
        raise ValueError(f"shared weights must contain 2-D W1..WL and b1..bL, got names {sorted(weights)}")
    sizes = [weights["W1"].shape[1]] + [weights[f"W{l}"].shape[0] if f"W{l}" in weights else -1
                                        for l in range(1, L + 1)]
    if -1 in sizes:
        raise ValueError(f"shared weights must be named W1..W{L}, got {sorted(weights)}")
    with torch.device("meta"):  # shapes only: the random initialisation would be overwritten at once
        model = MLP(sizes, activation, output, dropout, gamma)
    model.load_state_dict(shared_to_state_dict(weights, model), assign=True)  # dtype follows the weights
    return model.to(device)


def load_shared_file(path) -> dict[str, np.ndarray]:
    """Shared weights from a safetensors file, or a torch file read with weights_only=True (never unpickled)."""
    from pathlib import Path

    path = Path(path)
    if path.suffix in (".pt", ".pth"):
        sd = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v.numpy() for k, v in sd.items()}
    from safetensors.numpy import load_file

    return load_file(str(path))


def loss_fn(name: str):
    """The torch.nn loss for ``name``, as a function (logits z^L, probabilities a^L, labels y) -> C."""
    if name == "cross_entropy":
        ce = nn.CrossEntropyLoss()
        return lambda logits, probs, y: ce(logits, y)
    if name == "hinge":
        mm = nn.MultiMarginLoss(p=1, margin=1.0)
        return lambda logits, probs, y: mm(probs, y)
    if name in ("mse", "l1"):
        crit = nn.MSELoss() if name == "mse" else nn.L1Loss()
        return lambda logits, probs, y: crit(probs, F.one_hot(y, probs.shape[1]).to(probs.dtype))
    raise ValueError(f"loss={name!r} is not known; expected one of {list(LOSSES)}")


def make_optimizer(name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                   betas=(0.9, 0.999), eps: float = 1e-8) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=name == "nesterov",
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    raise ValueError(f"optimizer={name!r} is not known; expected one of ['sgd', 'momentum', 'nesterov', 'adam']")
