"""The lecture's fully-connected feed-forward network and its back-propagation, in NumPy alone.

Notation (docs/lecture.md): layers l = 1..L, a^0 = x, z^l = W^l a^{l-1} + b^l, a^l = sigma(z^l),
a^L = the output function of z^L.  The code keeps samples in rows, so a batch of n inputs is an
(n, n_0) matrix X and every formula is applied to all rows at once: Z^l = A^{l-1} (W^l)^T + b^l,
Delta^l (an n x n_l matrix, one delta^l per row) and dC/dW^l = (Delta^l)^T A^{l-1}.

Conventions, stated once:
- C is the loss *averaged* over the batch (reduction = mean), so delta^l = dC/dz^l already
  carries the factor 1/n, and dC/dW^l = sum over the batch of delta^l (a^{l-1})^T.
- Dropout (inverted) multiplies a^l of hidden layers by a mask m^l with entries 0 or 1/(1-p):
  h^l = sigma(z^l) is the activation before the mask, a^l = h^l m^l the value the next layer sees.

This module is the plain path: ``feedforward`` and ``backprop`` are the lecture's formulas, one line
each, on new arrays.  The training loop runs the same formulas through manual/fastpath.py, which
writes them into preallocated arrays and is tested bit for bit against this module.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .activations import OUTPUT, hidden_activation
from .flat import FlatTensors
from .losses import LOSS, error_rate, one_hot
from .rowops import ones
from .weights import check_weights


def check_config(activation: str, output: str, loss: str) -> None:
    hidden_activation(activation)  # raises on an unknown name
    if output not in OUTPUT:
        raise ValueError(f"output={output!r} is not known; expected one of {list(OUTPUT)}")
    if loss not in LOSS:
        raise ValueError(f"loss={loss!r} is not known; expected one of {list(LOSS)}")
    if loss == "cross_entropy" and output != "softmax":
        raise ValueError(f"loss='cross_entropy' is torch.nn.CrossEntropyLoss on z^L and needs output='softmax', "
                         f"got output={output!r}")


def check_mask_values(m: np.ndarray, name: str = "mask") -> None:
    """An inverted-dropout mask holds 0 and one scale 1/(1-p) >= 1, nothing else (no NaN, no Inf)."""
    if not np.isfinite(m).all():
        raise ValueError(f"{name} contains NaN or Inf; expected entries 0 and 1/(1-p)")
    kept = m[m != 0]
    if kept.size:
        lo, hi = float(kept.min()), float(kept.max())
        if lo != hi:
            raise ValueError(f"{name} has entries {lo!r} and {hi!r} besides 0; expected 0 and one scale 1/(1-p)")
        if lo < 1:
            raise ValueError(f"{name} has entries {lo!r} besides 0; expected 0 and 1/(1-p) >= 1 "
                             f"for a dropout probability p in [0, 1)")


class MLP:
    """A fully-connected network built from shared weights ``W1, b1, ..., WL, bL``.

    After ``forward``: ``z[l]``, ``h[l]`` and ``a[l]`` for l = 0..L (z[0], h[0] are None, a[0] = X).
    After ``gradients``: ``delta[l]`` = dC/dz^l for l = 1..L (delta[0] is None).
    """

    def __init__(self, weights: Mapping[str, np.ndarray], activation: str = "sigmoid",
                 output: str = "softmax", loss: str = "cross_entropy", gamma: float | None = None):
        self.sizes = check_weights(weights)
        check_config(activation, output, loss)
        self.L = len(self.sizes) - 1
        self.dtype = weights["W1"].dtype
        self.activation, self.output, self.loss_name = activation, output, loss
        self.sigma = hidden_activation(activation, gamma)  # Activation: f, fprime
        self.output_fn = OUTPUT[output]                    # Output: f, backprop
        self.cost = LOSS[loss]                              # Loss: value, delta
        # Own copies, 1-indexed like the lecture (W[1] .. W[L]), updated in place by the optimisers:
        # views of one flat array, W1, b1, W2, b2, ... back to back (manual/flat.py).
        self.shapes = [weights[name].shape for name in self.names]
        self._params = FlatTensors.empty(self.shapes, self.dtype)
        self.set_weights(weights)
        self.W, self.b = [None, *self._params[0::2]], [None, *self._params[1::2]]
        self.z = self.h = self.a = self.delta = None

    @classmethod
    def from_weights(cls, weights, activation="sigmoid", output="softmax", loss="cross_entropy", gamma=None):
        return cls(weights, activation=activation, output=output, loss=loss, gamma=gamma)

    # ---- parameters -------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [f"{p}{l}" for l in range(1, self.L + 1) for p in "Wb"]

    @property
    def params(self) -> FlatTensors:
        """The live parameter arrays, in the order of ``names`` (W1, b1, W2, b2, ...), views of ``params.flat``."""
        return self._params

    def weights(self) -> dict[str, np.ndarray]:
        """A copy of the current shared weights."""
        return {n: p.copy() for n, p in zip(self.names, self.params, strict=True)}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        if check_weights(weights) != self.sizes:
            raise ValueError(f"weights of sizes {check_weights(weights)} do not fit this network of sizes {self.sizes}")
        for n, p in zip(self.names, self.params, strict=True):
            p[...] = weights[n]

    # ---- input checks -------------------------------------------------------------------------
    def check_X(self, X, name="X") -> np.ndarray:
        if not isinstance(X, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(X).__name__}")
        if isinstance(X, (np.matrix, np.ma.MaskedArray)):  # their * and indexing differ from ndarray's
            kind = "numpy.matrix" if isinstance(X, np.matrix) else "masked array (numpy.ma)"
            fix = "np.asarray(X)" if isinstance(X, np.matrix) else "X.filled(value) for the masked entries"
            raise TypeError(f"{name} is a {kind}; expected a plain numpy.ndarray ({fix.replace('X', name)})")
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
            fits = isinstance(m, np.ndarray) and m.shape == (n, self.sizes[l]) and m.dtype == self.dtype
            if m is not None and not fits:
                got = (m.shape, m.dtype) if isinstance(m, np.ndarray) else type(m).__name__
                raise ValueError(f"masks[{l - 1}] (hidden layer {l}) is {got}; expected shape {(n, self.sizes[l])} "
                                 f"dtype {self.dtype}")
            if m is not None:
                check_mask_values(m, f"masks[{l - 1}] (hidden layer {l})")
        return masks

    # ---- the public passes: checked inputs ---------------------------------------------------------
    def forward(self, X: np.ndarray, masks: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        """a^L for the rows of X, keeping z^l, h^l and a^l of every layer.  ``masks[l-1]`` is hidden layer l's."""
        X = self.check_X(X)
        return self.feedforward(X, self.check_masks(masks, X.shape[0]))

    def loss(self, X: np.ndarray, y: np.ndarray, masks: Sequence[np.ndarray | None] | None = None) -> float:
        """C (mean over the rows of X) after a forward pass with the given dropout masks."""
        self.forward(X, masks)
        y = self.check_y(y, X.shape[0])
        return self.cost.value(self.z[self.L], self.a[self.L], one_hot(y, self.sizes[-1], self.dtype), y)

    def gradients(self, X: np.ndarray, y: np.ndarray, masks=None) -> tuple[float, dict[str, np.ndarray]]:
        """The loss C (mean over the rows of X) and dC/dW^l, dC/db^l for every layer, by BP."""
        X = self.check_X(X)
        y = self.check_y(y, X.shape[0])
        masks = self.check_masks(masks, X.shape[0])
        self.feedforward(X, masks)
        Y = one_hot(y, self.sizes[-1], self.dtype)
        loss = self.cost.value(self.z[self.L], self.a[self.L], Y, y)
        return loss, dict(zip(self.names, self.backprop(Y, y, masks), strict=True))

    def logits(self, X: np.ndarray) -> np.ndarray:
        """z^L for the rows of X: the forward pass without the output function, for class decisions.
        Every output function keeps the order of a row's entries (a_j < a_k exactly when z_j < z_k, for
        softmax, sigmoid and identity), so the arg-max of z^L is the arg-max of the exact a^L, without the
        ties that rounding a^L can make (softmax of (0, 1e-17) is (0.5, 0.5)); torch_ref's accuracy also
        takes the arg-max of the logits.  Leaves a^L None."""
        self.feedforward(self.check_X(X), output=False)
        return self.z[self.L]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class indices: the arg-max of a^L (taken on z^L, see ``logits``)."""
        return self.logits(X).argmax(axis=1)

    def error_rate(self, X: np.ndarray, y: np.ndarray) -> float:
        """The 0-1 loss: the fraction of rows of X that are misclassified (arg-max of z^L, see ``logits``)."""
        return error_rate(self.logits(X), self.check_y(y, X.shape[0]))

    # ---- the lecture's formulas: inputs as checked above ------------------------------------------------
    def feedforward(self, X: np.ndarray, masks=None, output: bool = True) -> np.ndarray | None:
        """a^L, keeping z^l, h^l, a^l.  ``output=False`` stops at z^L (a^L and h^L are left None)."""
        W, b, L, sigma, m = self.W, self.b, self.L, self.sigma, by_layer(masks, self.L)
        z, h, a = [None] * (L + 1), [None] * (L + 1), [X] + [None] * L
        for l in range(1, L + 1):
            z[l] = a[l - 1] @ W[l].T + b[l]                           # z^l = W^l a^{l-1} + b^l
            if l < L:
                h[l] = sigma.f(z[l])                                  # a^l = σ(z^l)
                a[l] = h[l] if m[l] is None else h[l] * m[l]          # dropout: a^l = h^l ⊙ m^l
            elif output:
                a[L] = h[L] = self.output_fn.f(z[L])                  # a^L = f(z^L), the output function
        self.z, self.h, self.a = z, h, a
        return a[L]

    def backprop(self, Y: np.ndarray, y: np.ndarray, masks=None) -> FlatTensors:
        """dC/dW^1, dC/db^1, ..., dC/db^L (the order of ``names``) after ``feedforward(X, masks)``, for the
        labels y of X's rows and their one-hot rows Y; keeps δ^l as ``delta[l]``."""
        z, h, a, W, L, sigma, m = self.z, self.h, self.a, self.W, self.L, self.sigma, by_layer(masks, self.L)
        grads = FlatTensors.empty(self.shapes, self.dtype)
        dW, db, delta = [None, *grads[0::2]], [None, *grads[1::2]], [None] * (L + 1)
        delta[L] = self.cost.delta(z[L], a[L], Y, y, self.output_fn)      # δ^L = ∂C/∂z^L
        for l in range(L - 1, 0, -1):
            delta[l] = sigma.fprime(z[l], h[l]) * (delta[l + 1] @ W[l + 1])  # δ^l = σ'(z^l) ⊙ (W^{l+1})^T δ^{l+1}
            if m[l] is not None:
                delta[l] *= m[l]                                      # dropout: ∂a^l/∂h^l = m^l
        for l in range(1, L + 1):
            dW[l][...] = delta[l].T @ a[l - 1]                        # ∂C/∂W^l = δ^l (a^{l-1})^T
            db[l][...] = ones(len(Y), self.dtype) @ delta[l]          # ∂C/∂b^l = Σ δ^l over the batch
        self.delta = delta
        return grads


def by_layer(masks, L: int) -> list:
    """Dropout masks indexed by layer, m[1] .. m[L-1] (m[0], m[L] and absent masks are None)."""
    return [None] * (L + 1) if masks is None else [None, *masks, None]
