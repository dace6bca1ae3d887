"""Parameters, gradients and optimiser state as views of one flat array each (W1, b1, W2, b2, ... back
to back, the order of ``MLP.names``).

An element-wise update formula applied to the flat arrays is the same formula applied to every tensor,
bit for bit, in one NumPy call instead of one per tensor.  On the iris network, where each NumPy call
costs more than its arithmetic, that is what makes an optimiser step cheap; on large networks the flat
arrays are walked in chunks of ``CHUNK`` elements, so that each formula's temporaries stay small (in
the cache, never page-faulted) instead of being as large as all the parameters together.

Which tensors are views of one flat array is said by their type, ``FlatTensors`` (a list with the array
as ``.flat``), as ``MLP.params`` and the gradients of ``MLP.gradients_list`` / the fast path are.
"""
from __future__ import annotations

import math

import numpy as np

CHUNK = 1 << 16  # elements per piece of a flat update: 256 KiB in float32, 512 KiB in float64


class FlatTensors(list):
    """Tensors of the given shapes, views of consecutive pieces of the 1-D array ``flat``."""

    def __init__(self, flat: np.ndarray, shapes):
        super().__init__(views(flat, shapes))
        self.flat = flat

    @classmethod
    def empty(cls, shapes, dtype) -> FlatTensors:
        return cls(np.empty(sum(math.prod(s) for s in shapes), dtype), shapes)


def views(flat: np.ndarray, shapes) -> list[np.ndarray]:
    """Consecutive pieces of the 1-D array ``flat``, reshaped to ``shapes`` (views, no copies)."""
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(flat[start:start + size].reshape(shape))
        start += size
    return out


def flat_of(tensors) -> np.ndarray | None:
    """The flat array of FlatTensors, else None."""
    return tensors.flat if isinstance(tensors, FlatTensors) else None


def state_like(params):
    """Zero-filled optimiser state shaped like ``params``: (flat array or None, list of per-tensor arrays),
    FlatTensors when the parameters are."""
    if flat_of(params) is None:
        return None, [np.zeros_like(p) for p in params]
    state = FlatTensors(np.zeros_like(params.flat), [p.shape for p in params])
    return state.flat, state


def pieces(params, grads, *states):
    """What an optimiser step updates, as tuples (p, g, state_1, ...): the flat arrays when the parameters
    and the gradients are both FlatTensors (in chunks of CHUNK elements when they are larger), else tensor
    by tensor.  Each state is a pair (flat array or None, list of per-tensor arrays or Nones), as
    state_like makes them."""
    flat_params, flat_grads = flat_of(params), flat_of(grads)
    if flat_params is None or flat_grads is None:
        yield from zip(params, grads, *(s[1] for s in states), strict=True)
    elif flat_params.size <= CHUNK:
        yield (flat_params, flat_grads, *(s[0] for s in states))
    else:
        for start in range(0, flat_params.size, CHUNK):
            part = slice(start, start + CHUNK)
            yield (flat_params[part], flat_grads[part], *(None if f is None else f[part] for f, _ in states))
