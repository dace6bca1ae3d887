"""The spec of one cross-check run: model, training options, seed, dtype (what both sides are given).

No torch here, so that the CLI can parse and validate options (and print --help) quickly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import vocabulary as V


@dataclass
class Spec:
    hidden: tuple[int, ...] = (6,)
    activation: str = "sigmoid"
    gamma: float | None = None         # LeakyReLU slope / ELU alpha; None: the activation's default
    output: str = "softmax"
    loss: str = "cross_entropy"
    optimizer: str = "sgd"
    lr: float = 0.2  # raw iris GD is stable here; lr >= 0.3 reaches the edge of stability
    momentum: float = 0.9
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    batch_size: int | None = None      # None: full batch (gradient descent); 1: SGD
    epochs: int = 1000
    dropout: float = 0.0
    patience: int | None = None        # early stopping on the validation (= iris test) error rate
    seed: int = 0
    dtype: str = "float64"
    init: str = "torch"
    standardize: bool = False
    weights_file: str | None = None    # initial weights from a safetensors file instead of ``init``
    dataset: str = "iris"              # one of data.DATASETS; "npz" for a data_file
    data_file: str | None = None       # a user's .npz (X_train, y_train, X_test, y_test) instead of dataset
    n_inputs: int | None = None        # filled from the data at construction (iris: 4 features,
    n_classes: int | None = None       # 3 classes, 120 training rows, without reading anything)
    n_train: int | None = None

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        self.betas = tuple(float(b) for b in self.betas)
        from .data import DATASETS, NPZ, data_sizes

        if self.data_file and self.dataset == "iris":  # the default dataset: a data_file replaces it
            self.dataset = NPZ
        if self.data_file and self.dataset != NPZ:
            raise ValueError(f"data_file ({self.data_file!r}) and dataset ({self.dataset!r}) are exclusive")
        if not self.data_file and self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r} is not known; expected one of {list(DATASETS)}"
                             + (" (with data_file)" if self.dataset == NPZ else ""))
        if None in (self.n_inputs, self.n_classes, self.n_train):
            sizes = data_sizes(self.dataset, self.data_file)
            self.n_inputs, self.n_classes, self.n_train = (
                v if v is not None else d for v, d in zip((self.n_inputs, self.n_classes, self.n_train), sizes, strict=False))
        self.validate()

    def validate(self):
        """Raise ValueError/TypeError naming the bad option and what was expected."""
        for name, known in (("activation", V.ACTIVATIONS), ("output", V.OUTPUTS), ("loss", V.LOSSES),
                            ("optimizer", V.OPTIMIZERS), ("init", V.INIT_SCHEMES), ("dtype", V.DTYPES)):
            if getattr(self, name) not in known:
                raise ValueError(f"{name}={getattr(self, name)!r} is not known; expected one of {list(known)}")
        if self.loss == "cross_entropy" and self.output != "softmax":
            raise ValueError(f"loss='cross_entropy' is taken on the logits z^L and needs output='softmax', "
                             f"got output={self.output!r}")
        if self.gamma is not None:
            if self.activation not in V.DEFAULT_GAMMA:
                raise ValueError(f"gamma is a parameter of {list(V.DEFAULT_GAMMA)} only, not of "
                                 f"activation={self.activation!r}")
            if not (isinstance(self.gamma, (int, float)) and math.isfinite(self.gamma) and self.gamma >= 0):
                raise ValueError(f"gamma must be a finite number >= 0, got {self.gamma!r}")
        for name in ("n_inputs", "n_classes", "n_train"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1 (from the data), got {v!r}")
        if self.hidden and min(self.hidden) < 1:
            raise ValueError(f"hidden={list(self.hidden)}: every hidden layer size must be >= 1")
        if self.dropout and not self.hidden:
            raise ValueError("dropout needs at least one hidden layer (it applies to hidden layers only)")
        for name in ("lr",):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name in ("momentum", "weight_decay", "eps"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a probability in [0, 1), got {self.dropout!r}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size is not None and not 1 <= self.batch_size <= self.n_train:
            raise ValueError(f"batch_size must be in [1, {self.n_train}] (the {self.data_name} training split), "
                             f"got {self.batch_size}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience (early stopping) must be >= 1 epoch, got {self.patience}")

    @property
    def sizes(self) -> list[int]:
        return [self.n_inputs, *self.hidden, self.n_classes]

    @property
    def data_name(self) -> str:
        """The data set's name, or the --data file's name."""
        import os

        return os.path.basename(self.data_file) if self.data_file else self.dataset

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)
