"""Parameters, gradients and optimiser state as views of one flat array each (W1, b1, W2, b2, ... back
to back, the order of ``MLP.names``).

An element-wise update formula applied to the flat arrays is the same formula applied to every tensor,
bit for bit, in one NumPy call instead of one per tensor. On the iris network, where each NumPy call
costs more than its arithmetic, that is what makes an optimiser step cheap; on large networks the flat
arrays are walked in chunks of ``CHUNK`` elements, so that each formula's temporaries stay small (in
the cache, never page-faulted) instead of being as large as all the parameters together.
"""
from __future__ import annotations

import math

import numpy as np

CHUNK = 1 << 16  # elements per piece of a flat update: 256 KiB in float32, 512 KiB in float64


def views(flat: np.ndarray, shapes) -> list[np.ndarray]:
    """Consecutive pieces of the 1-D array ``flat``, reshaped to ``shapes`` (views, no copies)."""
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(flat[start:start + size].reshape(shape))
        start += size
    return out


def flat_base(arrays) -> np.ndarray | None:
    """The 1-D array that ``arrays`` are the consecutive pieces of (as MLP.params are), else None."""
    base = arrays[0].base if arrays else None
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    address = base.__array_interface__["data"][0]
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous or a.__array_interface__["data"][0] != address:
            return None
        address += a.nbytes
    return base if address == base.__array_interface__["data"][0] + base.nbytes else None


def state_like(params, flat_params):
    """Zero-filled optimiser state shaped like ``params``: (flat array or None, list of per-tensor arrays),
    the list being views of the flat array when the parameters are views of one (``flat_params``)."""
    if flat_params is None:
        return None, [np.zeros_like(p) for p in params]
    flat = np.zeros_like(flat_params)
    return flat, views(flat, [p.shape for p in params])


def pieces(params, flat_params, grads, *states):
    """What an optimiser step updates, as tuples (p, g, state_1, ...): per tensor, or -- when the parameters
    and the gradients are both views of flat arrays (MLP.params and what MLP._backprop returns, its
    ``.flat``) -- the flat arrays themselves, in chunks of CHUNK elements when they are larger.  Each state
    is a pair (flat array or None, list of per-tensor arrays or Nones), as state_like makes them."""
    flat_grads = getattr(grads, "flat", None)
    if flat_params is None or flat_grads is None:
        yield from zip(params, grads, *(s[1] for s in states))
    elif flat_params.size <= CHUNK:
        yield (flat_params, flat_grads, *(s[0] for s in states))
    else:
        for start in range(0, flat_params.size, CHUNK):
            part = slice(start, start + CHUNK)
            yield (flat_params[part], flat_grads[part], *(None if f is None else f[part] for f, _ in states))
