"""The lecture's fully-connected feed-forward network and its back-propagation, in NumPy alone.

Notation (LECTURE.md): layers l = 1..L, a^0 = x, z^l = W^l a^{l-1} + b^l, a^l = sigma(z^l),
a^L = the output function of z^L.  The code keeps samples in rows, so a batch of n inputs is an
(n, n_0) matrix X and every formula is applied to all rows at once: Z^l = A^{l-1} (W^l)^T + b^l.

Conventions, stated once:
- C is the loss *averaged* over the batch (reduction = mean), so delta^l = dC/dz^l already
  carries the factor 1/n, and dC/dW^l = sum over the batch of delta^l (a^{l-1})^T.
- Dropout (inverted) multiplies a^l of hidden layers by a mask m^l with entries 0 or 1/(1-p);
  a^l stored below is the masked value the next layer sees.

Speed, without changing a formula: the parameters are views of one flat array (and so are the
gradients _backprop returns), so an optimiser updates all of them in a few NumPy calls; the training
loop's steps write z, h, delta and the gradients into arrays preallocated per batch size
(``_forward(..., reuse=True)``) instead of new ones, which at large sizes spares the page faults of
fresh memory.  The public ``forward`` / ``gradients`` always return new arrays.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from .activations import OUTPUTS, hidden_activation, softmax_parts
from .flat import views
from .losses import LOSSES, cross_entropy_from_parts, error_rate, one_hot
from .rowops import column_sum
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
        # 1-indexed like the lecture: W[1] .. W[L]; own copies, updated in place by the optimisers.
        # They are views of one flat array, W1, b1, W2, b2, ... back to back (see manual/flat.py).
        self._shapes = [weights[name].shape for name in self.names]
        self._flat = np.empty(sum(math.prod(shape) for shape in self._shapes), self.dtype)
        pieces = views(self._flat, self._shapes)
        for name, p in zip(self.names, pieces):
            p[...] = weights[name]
        self.W, self.b = [None] + pieces[0::2], [None] + pieces[1::2]
        self.z = self.a = self.h = self.delta = self._masks = None
        self._softmax_parts = None         # (t, s) of the last forward pass's softmax, for _loss
        self._no_buffers = _Buffers(self)  # _forward(reuse=False): every array new
        self._buffers = {}                 # batch size n -> _Buffers, for _forward(reuse=True)
        self._ws = self._no_buffers        # the set the last _forward used; _backprop writes into it too

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
            if m is not None and (not isinstance(m, np.ndarray) or m.shape != (n, self.sizes[l]) or m.dtype != self.dtype):
                got = (m.shape, m.dtype) if isinstance(m, np.ndarray) else type(m).__name__
                raise ValueError(f"masks[{l - 1}] (hidden layer {l}) is {got}; expected shape {(n, self.sizes[l])} "
                                 f"dtype {self.dtype}")
            if m is not None:
                check_mask_values(m, f"masks[{l - 1}] (hidden layer {l})")
        return masks

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, X: np.ndarray, masks: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        """a^L for the rows of X, keeping z^l and a^l of every layer.  ``masks[l-1]`` is hidden layer l's."""
        X = self.check_X(X)
        return self._forward(X, self.check_masks(masks, X.shape[0]))

    def _forward(self, X, masks=None, reuse=False, output=True):
        """a^L, keeping z^l, h^l, a^l.  ``reuse``: write them into this network's arrays for batches of
        len(X) rows, overwritten by the next such call (the training loop's steps), not into new ones.
        ``output=False``: stop at z^L (a^L and h^L are left None), for ``_logits``."""
        W, b, L = self.W, self.b, self.L
        ws = self._ws = self._buffers_for(X.shape[0]) if reuse else self._no_buffers
        self.z, self.a, self.h = [None], [X], [None]  # h^l = sigma(z^l) before dropout
        for l in range(1, L + 1):
            z = np.matmul(self.a[l - 1], W[l].T, out=ws.z[l])           # z^l = W^l a^{l-1} + b^l
            z += b[l]
            if l < L:
                h = self.sigma.f(z, out=ws.h[l])                         # a^l = sigma(z^l)
            elif not output:
                h = self._softmax_parts = None                          # no a^L: nothing for _loss to read
            elif self.output == "softmax":                               # a^L = softmax(z^L), keeping its
                h, t, s = softmax_parts(z)                               # log-sum-exp parts for _loss
                self._softmax_parts = (t, s)
            else:
                h = self.out_f(z)                                        # a^L = f(z^L)
            m = masks[l - 1] if masks is not None and l < L else None
            self.z.append(z)
            self.h.append(h)
            self.a.append(h if m is None else np.multiply(h, m, out=ws.masked(l)))  # inverted dropout
        self._masks = masks
        return self.a[L]

    def _buffers_for(self, n: int) -> _Buffers:
        ws = self._buffers.get(n)
        if ws is None:
            ws = self._buffers[n] = _Buffers(self, n)
        return ws

    def _logits(self, X: np.ndarray) -> np.ndarray:
        """z^L for the rows of X: a forward pass that stops before the output function, for class decisions.
        Every output function keeps the order of a row's entries (a_j < a_k exactly when z_j < z_k, for
        softmax, sigmoid and identity), so the arg-max of z^L is the arg-max of the exact a^L, without the
        ties that rounding a^L can make (softmax of (0, 1e-17) is (0.5, 0.5)); torch_ref's accuracy also
        takes the arg-max of the logits.  Leaves a^L None."""
        self._forward(X, output=False)
        return self.z[self.L]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class indices: the arg-max of a^L (taken on z^L, see ``_logits``)."""
        return self._logits(self.check_X(X)).argmax(axis=1)

    def error_rate(self, X: np.ndarray, y: np.ndarray) -> float:
        """The 0-1 loss: the fraction of rows of X that are misclassified (arg-max of z^L, see ``_logits``)."""
        scores = self._logits(self.check_X(X))
        return error_rate(scores, self.check_y(y, X.shape[0]))

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        self.forward(X)  # keeps z^L, a^L and the softmax parts for _loss
        y = self.check_y(y, X.shape[0])
        return self._loss(one_hot(y, self.sizes[-1], self.dtype), y)

    def _loss(self, Y, y) -> float:
        """``loss_f(z^L, a^L, Y, y)`` of the last forward pass (the training loop's loss).  Cross-entropy
        takes log sum_j e^{z_j} from the softmax's own parts: the same arithmetic, 6 NumPy calls fewer."""
        if self.loss_name == "cross_entropy":
            return cross_entropy_from_parts(*self._softmax_parts, y)
        return self.loss_f(self.z[self.L], self.a[self.L], Y, y)

    # ---- backward -----------------------------------------------------------------------------
    def gradients(self, X: np.ndarray, y: np.ndarray, masks=None) -> tuple[float, dict[str, np.ndarray]]:
        """The loss C (mean over the rows of X) and dC/dW^l, dC/db^l for every layer, by BP."""
        X = self.check_X(X)
        y = self.check_y(y, X.shape[0])
        self._forward(X, self.check_masks(masks, X.shape[0]))
        Y = one_hot(y, self.sizes[-1], self.dtype)
        loss = self._loss(Y, y)
        return loss, dict(zip(self.names, self._backprop(Y, y)))

    def _backprop(self, Y, y) -> list[np.ndarray]:
        """The lecture's three steps after the forward pass: delta^L, the recursion, the gradients.
        Returns them in ``names`` order as a Gradients list (views of one flat array); written into the
        forward pass's reused arrays when it had ``reuse``."""
        z, a, h, W, L, ws = self.z, self.a, self.h, self.W, self.L, self._ws
        delta = [None] * (L + 1)
        if self.loss_name == "cross_entropy":
            delta[L] = self.loss_grad(z[L], a[L], Y, y)                  # softmax + CE: (a^L - Y)/n
        else:
            delta[L] = self.out_backprop(z[L], a[L], self.loss_grad(a[L], Y, y))  # sigma'(z^L) . grad_a C
        for l in range(L - 1, 0, -1):
            d = np.matmul(delta[l + 1], W[l + 1], out=ws.delta[l])      # (W^{l+1})^T delta^{l+1}
            d *= self.sigma.fprime(z[l], h[l], out=ws.fprime[l])        # delta^l = sigma'(z^l) . (W^{l+1})^T delta^{l+1}
            if self._masks is not None and self._masks[l - 1] is not None:
                d *= self._masks[l - 1]                                  # a^l = h^l m^l
            delta[l] = d
        grads = ws.grads if ws.grads is not None else Gradients(np.empty(self._flat.size, self.dtype), self._shapes)
        for l in range(1, L + 1):
            np.matmul(delta[l].T, a[l - 1], out=grads[2 * l - 2])       # dC/dW^l = delta^l (a^{l-1})^T
            column_sum(delta[l], out=grads[2 * l - 1])                   # dC/db^l = delta^l, summed over the batch
        self.delta = delta
        return grads


class Gradients(list):
    """dC/dW1, dC/db1, dC/dW2, ... (the order of ``MLP.names``), views of the one flat array ``flat``:
    the optimisers update all parameters from it in a few NumPy calls (see manual/flat.py)."""

    def __init__(self, flat: np.ndarray, shapes):
        super().__init__(views(flat, shapes))
        self.flat = flat


class _Buffers:
    """The arrays one forward and backward pass writes: z^l, h^l, masked a^l, delta^l, sigma'(z^l) and the
    gradients.  ``_Buffers(net)``: all None (every call makes new arrays); ``_Buffers(net, n)``: made once
    for batches of n rows and reused by every training step on such batches (a new 2 MiB array is
    2 MiB of page faults).  h^L and delta^L, n x n_L, are the output function's and the loss's own."""

    def __init__(self, net: MLP, n: int | None = None):
        L, sizes, dt = net.L, net.sizes, net.dtype
        none = [None] * (L + 1)
        self.n, self._a = n, list(none)
        if n is None:
            self.z = self.h = self.delta = self.fprime = none
            self.grads = None
            return
        hidden = range(1, L)
        self.z = [None] + [np.empty((n, sizes[l]), dt) for l in range(1, L + 1)]
        self.h = [None] + [np.empty((n, sizes[l]), dt) for l in hidden] + [None]
        self.delta = [None] + [np.empty((n, sizes[l]), dt) for l in hidden] + [None]
        # sigma'(z^l) is used once, right away: one scratch array shared by all hidden layers
        scratch = np.empty(n * max(sizes[1:L], default=0), dt)
        self.fprime = [None] + [scratch[:n * sizes[l]].reshape(n, sizes[l]) for l in hidden] + [None]
        self.grads = Gradients(np.empty(net._flat.size, dt), net._shapes)

    def masked(self, l: int):
        """The array for the masked a^l (dropout), made on first use; None without reuse."""
        if self.n is not None and self._a[l] is None:
            self._a[l] = np.empty_like(self.z[l])
        return self._a[l]
