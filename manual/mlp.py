"""The lecture's fully-connected feed-forward network and its back-propagation, in NumPy alone.

Notation (LECTURE.md): layers l = 1..L, a^0 = x, z^l = W^l a^{l-1} + b^l, a^l = sigma(z^l),
a^L = the output function of z^L.  The code keeps samples in rows, so a batch of n inputs is an
(n, n_0) matrix X and every formula is applied to all rows at once: Z^l = A^{l-1} (W^l)^T + b^l.

Conventions, stated once:
- C is the loss *averaged* over the batch (reduction = mean), so delta^l = dC/dz^l already
  carries the factor 1/n, and dC/dW^l = sum over the batch of delta^l (a^{l-1})^T.
- Dropout (inverted) multiplies a^l of hidden layers by a mask m^l with entries 0 or 1/(1-p);
  a^l stored below is the masked value the next layer sees.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .activations import OUTPUTS, hidden_activation
from .losses import LOSSES, error_rate, one_hot
from .weights import check_weights

OUTPUT_NAMES = tuple(OUTPUTS)
LOSS_NAMES = tuple(LOSSES)


def check_config(activation: str, output: str, loss: str) -> None:
    hidden_activation(activation)  # raises on an unknown name
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r} is not known; expected one of {list(OUTPUTS)}")
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not known; expected one of {list(LOSSES)}")
    if loss == "cross_entropy" and output != "softmax":
        raise ValueError(f"loss='cross_entropy' is torch.nn.CrossEntropyLoss on z^L and needs output='softmax', "
                         f"got output={output!r}")


class MLP:
    """A fully-connected network built from shared weights ``W1, b1, ..., WL, bL``.

    After ``forward``: ``z[l]`` and ``a[l]`` for l = 0..L (z[0] is None, a[0] = X).
    After ``gradients``: ``delta[l]`` = dC/dz^l for l = 1..L (delta[0] is None).
    """

    def __init__(self, weights: Mapping[str, np.ndarray], activation: str = "sigmoid",
                 output: str = "softmax", loss: str = "cross_entropy", gamma: float | None = None):
        self.sizes = check_weights(weights)
        check_config(activation, output, loss)
        self.L = len(self.sizes) - 1
        self.dtype = weights["W1"].dtype
        self.activation, self.output, self.loss_name = activation, output, loss
        self.sigma = hidden_activation(activation, gamma)
        self.out_f, self.out_backprop = OUTPUTS[output]
        self.loss_f, self.loss_grad = LOSSES[loss]
        # 1-indexed like the lecture: W[1] .. W[L]; own copies, updated in place by the optimisers
        self.W = [None] + [np.array(weights[f"W{l}"], order="C") for l in range(1, self.L + 1)]
        self.b = [None] + [np.array(weights[f"b{l}"]) for l in range(1, self.L + 1)]
        self.z = self.a = self.delta = None

    @classmethod
    def from_weights(cls, weights, activation="sigmoid", output="softmax", loss="cross_entropy", gamma=None):
        return cls(weights, activation=activation, output=output, loss=loss, gamma=gamma)

    # ---- parameters -------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [f"{p}{l}" for l in range(1, self.L + 1) for p in "Wb"]

    @property
    def params(self) -> list[np.ndarray]:
        """The live parameter arrays, in the order of ``names`` (W1, b1, W2, b2, ...)."""
        return [t for l in range(1, self.L + 1) for t in (self.W[l], self.b[l])]

    def weights(self) -> dict[str, np.ndarray]:
        """A copy of the current shared weights."""
        return {n: p.copy() for n, p in zip(self.names, self.params)}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        if check_weights(weights) != self.sizes:
            raise ValueError(f"weights of sizes {check_weights(weights)} do not fit this network of sizes {self.sizes}")
        for n, p in zip(self.names, self.params):
            p[...] = weights[n]

    # ---- input checks -------------------------------------------------------------------------
    def check_X(self, X, name="X") -> np.ndarray:
        if not isinstance(X, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(X).__name__}")
        if X.ndim != 2 or X.shape[1] != self.sizes[0] or X.shape[0] == 0:
            raise ValueError(f"{name} has shape {X.shape}; expected (n, {self.sizes[0]}) with n >= 1")
        if X.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {X.dtype} but the weights are {self.dtype}; "
                            f"convert it explicitly ({name}.astype(np.{self.dtype}))")
        if not np.isfinite(X).all():
            raise ValueError(f"{name} contains NaN or Inf")
        return X

    def check_y(self, y, n: int, name="y") -> np.ndarray:
        if not isinstance(y, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray of class indices, got {type(y).__name__}")
        if y.dtype.kind not in "iu":
            raise TypeError(f"{name} has dtype {y.dtype}; expected integer class indices 0..{self.sizes[-1] - 1}")
        if y.shape != (n,):
            raise ValueError(f"{name} has shape {y.shape}; expected ({n},), one label per row of X")
        if n and (y.min() < 0 or y.max() >= self.sizes[-1]):
            raise ValueError(f"{name} has labels in [{y.min()}, {y.max()}]; expected 0..{self.sizes[-1] - 1}")
        return y

    def check_masks(self, masks, n: int):
        if masks is None:
            return None
        masks = list(masks)
        if len(masks) != self.L - 1:
            raise ValueError(f"masks has {len(masks)} entries; expected one per hidden layer ({self.L - 1})")
        for l, m in enumerate(masks, start=1):
            if m is not None and (not isinstance(m, np.ndarray) or m.shape != (n, self.sizes[l]) or m.dtype != self.dtype):
                got = (m.shape, m.dtype) if isinstance(m, np.ndarray) else type(m).__name__
                raise ValueError(f"masks[{l - 1}] (hidden layer {l}) is {got}; expected shape {(n, self.sizes[l])} "
                                 f"dtype {self.dtype}")
        return masks

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, X: np.ndarray, masks: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        """a^L for the rows of X, keeping z^l and a^l of every layer.  ``masks[l-1]`` is hidden layer l's."""
        X = self.check_X(X)
        return self._forward(X, self.check_masks(masks, X.shape[0]))

    def _forward(self, X, masks=None):
        W, b, L = self.W, self.b, self.L
        self.z, self.a, self.h = [None], [X], [None]  # h^l = sigma(z^l) before dropout
        for l in range(1, L + 1):
            z = self.a[l - 1] @ W[l].T                                 # z^l = W^l a^{l-1} + b^l
            z += b[l]
            h = self.sigma.f(z) if l < L else self.out_f(z)            # a^l = sigma(z^l)
            m = masks[l - 1] if masks is not None and l < L else None
            self.z.append(z)
            self.h.append(h)
            self.a.append(h if m is None else h * m)                   # inverted dropout
        self._masks = masks
        return self.a[L]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class indices: the arg-max of a^L."""
        return self.forward(X).argmax(axis=1)

    def error_rate(self, X: np.ndarray, y: np.ndarray) -> float:
        """The 0-1 loss: the fraction of rows of X that are misclassified."""
        a = self.forward(X)
        return error_rate(a, self.check_y(y, X.shape[0]))

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        a = self.forward(X)
        y = self.check_y(y, X.shape[0])
        return self.loss_f(self.z[self.L], a, one_hot(y, self.sizes[-1], self.dtype), y)

    # ---- backward -----------------------------------------------------------------------------
    def gradients(self, X: np.ndarray, y: np.ndarray, masks=None) -> tuple[float, dict[str, np.ndarray]]:
        """The loss C (mean over the rows of X) and dC/dW^l, dC/db^l for every layer, by BP."""
        X = self.check_X(X)
        y = self.check_y(y, X.shape[0])
        self._forward(X, self.check_masks(masks, X.shape[0]))
        Y = one_hot(y, self.sizes[-1], self.dtype)
        loss = self.loss_f(self.z[self.L], self.a[self.L], Y, y)
        return loss, dict(zip(self.names, self._backprop(Y, y)))

    def _backprop(self, Y, y) -> list[np.ndarray]:
        """The lecture's three steps after the forward pass: delta^L, the recursion, the gradients."""
        z, a, h, W, L = self.z, self.a, self.h, self.W, self.L
        delta = [None] * (L + 1)
        if self.loss_name == "cross_entropy":
            delta[L] = self.loss_grad(z[L], a[L], Y, y)                  # softmax + CE: (a^L - Y)/n
        else:
            delta[L] = self.out_backprop(z[L], a[L], self.loss_grad(a[L], Y, y))  # sigma'(z^L) . grad_a C
        for l in range(L - 1, 0, -1):
            delta[l] = self.sigma.fprime(z[l], h[l]) * (delta[l + 1] @ W[l + 1])  # sigma'(z^l) . (W^{l+1})^T delta^{l+1}
            if self._masks is not None and self._masks[l - 1] is not None:
                delta[l] *= self._masks[l - 1]                           # a^l = h^l m^l
        grads = []
        for l in range(1, L + 1):
            grads.append(delta[l].T @ a[l - 1])                          # dC/dW^l = delta^l (a^{l-1})^T
            grads.append(delta[l].sum(axis=0))                           # dC/db^l = delta^l
        self.delta = delta
        return grads
