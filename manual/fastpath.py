"""The training loop's forward pass, loss and back-propagation: the formulas of manual/mlp.py, each one
written into arrays preallocated per batch size.

Why a second copy of the formulas, instead of out= arguments threaded through the plain path: the plain
path (``MLP.feedforward`` / ``MLP.backprop``) stays the lecture, one formula a line; all that speed needs
lives here, in one place, and tests/test_fastpath.py checks that both compute the same bits for every
activation, output, loss, dtype and dropout.  What the speed is made of:
- No new arrays per step: z^l, h^l, a^l, delta^l and the gradients go into a ``Workspace`` kept per batch
  size (a new 2 MiB array is 2 MiB of page faults; on the 1024-wide networks that is 5-15 % of a step).
- The gradients are views of one flat array (manual/flat.py), so an optimiser updates all of them in a
  few NumPy calls.
- Softmax with cross-entropy takes C from the softmax's own parts (activations.softmax_parts): the
  same arithmetic as losses.cross_entropy, without computing max, exp and sum a second time.
The arithmetic is the plain path's, operation for operation (only its order of operands in commutative
products differs), so the results are identical, not merely close.
"""
from __future__ import annotations

import numpy as np

from .activations import softmax_parts
from .flat import FlatTensors
from .losses import cross_entropy_from_parts
from .mlp import by_layer
from .rowops import column_sum


class Workspace:
    """The arrays of one step on batches of n rows, index l as in the lecture (entries 0 unused).
    a^L, h^L and delta^L (n x n_L, small) are the output function's and the loss's own new arrays."""

    def __init__(self, net, n: int):
        L, sizes, dt = net.L, net.sizes, net.dtype
        hidden = range(1, L)
        self.z = [None] + [np.empty((n, sizes[l]), dt) for l in range(1, L + 1)]
        self.h = [None] + [np.empty((n, sizes[l]), dt) for l in hidden] + [None]
        self.masked = [None] * (L + 1)  # a^l = h^l m^l, made on first use (only with dropout)
        self.delta = [None] + [np.empty((n, sizes[l]), dt) for l in hidden] + [None]
        # σ'(z^l) is used once, right away: one scratch array shared by all hidden layers
        scratch = np.empty(n * max(sizes[1:L], default=0), dt)
        self.fprime = [None] + [scratch[:n * sizes[l]].reshape(n, sizes[l]) for l in hidden] + [None]
        self.grads = FlatTensors.empty(net.shapes, dt)

    def masked_a(self, l: int) -> np.ndarray:
        if self.masked[l] is None:
            self.masked[l] = np.empty_like(self.h[l])
        return self.masked[l]


class FastPath:
    """``loss_and_gradients`` of one training step for ``net``; its arrays live as long as this object."""

    def __init__(self, net):
        self.net = net
        self.workspaces: dict[int, Workspace] = {}

    def workspace(self, n: int) -> Workspace:
        if n not in self.workspaces:
            self.workspaces[n] = Workspace(self.net, n)
        return self.workspaces[n]

    def loss_and_gradients(self, X, Y, y, masks=None) -> tuple[float, FlatTensors]:
        """(C, [dC/dW^1, dC/db^1, ...]) for the rows of X, as ``MLP.gradients`` computes them; the inputs as
        MLP.check_X / check_y / check_masks accept them, and Y = one_hot(y).  Sets net.z, h, a and delta like
        the plain path; the arrays (and the gradients) are overwritten by the next step of the same size."""
        net, ws = self.net, self.workspace(X.shape[0])
        W, b, L, sigma = net.W, net.b, net.L, net.sigma
        m = by_layer(masks, L)
        z, h, a, delta = [None] * (L + 1), [None] * (L + 1), [X] + [None] * L, [None] * (L + 1)
        for l in range(1, L + 1):
            z[l] = np.matmul(a[l - 1], W[l].T, out=ws.z[l])
            z[l] += b[l]
            if l < L:
                h[l] = sigma.f(z[l], out=ws.h[l])
                a[l] = h[l] if m[l] is None else np.multiply(h[l], m[l], out=ws.masked_a(l))
        if net.loss_name == "cross_entropy":  # always with softmax
            a[L], t, s = softmax_parts(z[L])
            loss = cross_entropy_from_parts(t, s, y)
        else:
            a[L] = net.output_fn.f(z[L])
            loss = net.cost.value(z[L], a[L], Y, y)
        h[L] = a[L]
        delta[L] = net.cost.delta(z[L], a[L], Y, y, net.output_fn)
        for l in range(L - 1, 0, -1):
            delta[l] = np.matmul(delta[l + 1], W[l + 1], out=ws.delta[l])
            delta[l] *= sigma.fprime(z[l], h[l], out=ws.fprime[l])
            if m[l] is not None:
                delta[l] *= m[l]
        dW, db = ws.grads[0::2], ws.grads[1::2]
        for l in range(1, L + 1):
            np.matmul(delta[l].T, a[l - 1], out=dW[l - 1])
            column_sum(delta[l], out=db[l - 1])
        net.z, net.h, net.a, net.delta = z, h, a, delta
        return loss, ws.grads
