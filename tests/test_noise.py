"""The noise runs' gradient hook (compare/noise.py): its law, and its two paths (one flat vector for
small networks, tensor by tensor for large ones) giving the same values bit for bit."""
import numpy as np
import pytest

from compare import noise
from compare import tolerances as tol

SHAPES = {"W1": (6, 4), "b1": (6,), "W2": (3, 6), "b2": (3,)}


def _grads(dtype, rng, residue=False, nan=False):
    g = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    if residue:
        g["b2"] = np.array([1e-18, -2e-18, 0.0], dtype=dtype)   # cancellation residue of terms ~1
    if nan:
        g["W2"][1, 2] = np.nan
    return g


def _keep(step, own):
    """Structural zeros: W1's first row, nothing elsewhere."""
    z = dict.fromkeys(SHAPES)
    z["W1"] = np.zeros(SHAPES["W1"], bool)
    z["W1"][0] = True
    return z


def _run(monkeypatch, small, grads, terms, steps=3):
    monkeypatch.setattr(noise, "SMALL", 1 << 30 if small else 0)
    hook = noise.noise_hook(5, 1, _keep, terms)
    return [hook(s, {k: v.copy() for k, v in grads.items()}) for s in range(steps)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("residue", [False, True])
@pytest.mark.parametrize("nan", [False, True])
def test_the_flat_and_the_per_tensor_paths_move_every_entry_alike(monkeypatch, dtype, residue, nan):
    grads = _grads(dtype, np.random.default_rng(3), residue, nan)
    terms = {"b2": 1.0} if residue else None
    flat, per = _run(monkeypatch, True, grads, terms), _run(monkeypatch, False, grads, terms)
    for a, b in zip(flat, per, strict=True):
        for k in SHAPES:
            assert a[k].dtype == grads[k].dtype and a[k].shape == grads[k].shape
            assert np.array_equal(a[k], b[k], equal_nan=True)


@pytest.mark.parametrize("small", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_each_entry_moves_by_at_most_noise_rel_eps_of_its_size_and_structural_zeros_stay(monkeypatch, small, dtype):
    grads = _grads(dtype, np.random.default_rng(4), residue=True)
    out = _run(monkeypatch, small, grads, {"b2": 1.0}, steps=1)[0]
    eps = float(np.finfo(dtype).eps)
    for k, g in grads.items():
        g64 = g.astype(np.float64)
        S = 1.0 if k == "b2" else float(np.max(np.abs(g64)))   # the residue tensor takes its terms' size
        bound = tol.NOISE_REL * eps * (np.abs(g64) + S)
        d = np.abs(out[k].astype(np.float64) - g64)
        assert np.all(d <= bound * (1 + 1e-6) + (eps * np.abs(g64) if dtype == "float32" else 0))
        moved = d > 0
        if k == "W1":
            assert not moved[0].any() and moved[1:].mean() > 0.5
        else:
            assert moved.mean() > 0.5
