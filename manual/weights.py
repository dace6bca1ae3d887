"""Shared weights: plain named arrays W1, b1, ..., WL, bL; their checks, initialisation and files.

Layout (the lecture's BP layout, identical to torch.nn.Linear.weight/bias):
    W^l has shape (n_l, n_{l-1}), b^l has shape (n_l,), so z^l = W^l a^{l-1} + b^l.
All tensors share one float dtype (float32 or float64), which is the dtype of all computation.
Files are safetensors only: nothing is ever unpickled.
"""
from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INIT_SCHEMES = ("torch", "xavier", "he")
_NAME = re.compile(r"^([Wb])([1-9][0-9]*)$")


class WeightsError(ValueError):
    """Shared weights that are missing, unexpected, mis-shaped, of the wrong dtype or not finite."""


def parse_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in FLOAT_DTYPES:  # np.dtype("float64") == None is True
        raise TypeError(f"dtype={dtype!r} is not supported; expected float32 or float64")
    return dt


def check_weights(weights: Mapping[str, np.ndarray]) -> list[int]:
    """Validate a shared-weights mapping and return the layer sizes [n_0, n_1, ..., n_L]."""
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a mapping of names W1, b1, ... to arrays, got {type(weights).__name__}")
    bad = sorted(k for k in weights if not (isinstance(k, str) and _NAME.match(k)))
    if bad:
        raise WeightsError(f"unexpected tensor name(s) {bad}; expected only W1, b1, ..., WL, bL")
    L = max((int(_NAME.match(k).group(2)) for k in weights), default=0)
    if L == 0:
        raise WeightsError("weights is empty; expected W1, b1, ..., WL, bL")
    missing = [f"{p}{l}" for l in range(1, L + 1) for p in "Wb" if f"{p}{l}" not in weights]
    if missing:
        raise WeightsError(f"missing tensor(s) {missing} for a {L}-layer network; expected W1, b1, ..., W{L}, b{L}")
    dtypes = {}
    for name in weights:
        arr = weights[name]
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"tensor {name} must be a numpy.ndarray, got {type(arr).__name__}")
        if arr.dtype not in FLOAT_DTYPES:
            raise TypeError(f"tensor {name} has dtype {arr.dtype}; expected float32 or float64")
        dtypes[name] = arr.dtype
    if len(set(dtypes.values())) > 1:
        raise TypeError(f"mixed dtypes in weights: {dtypes}; all tensors must share one dtype")
    sizes = []
    for l in range(1, L + 1):
        W, b = weights[f"W{l}"], weights[f"b{l}"]
        if W.ndim != 2:
            raise WeightsError(f"tensor W{l} must be 2-D (n_{l}, n_{l - 1}), got shape {W.shape}")
        if not sizes:
            sizes.append(W.shape[1])
        if W.shape[1] != sizes[-1]:
            raise WeightsError(
                f"tensor W{l} has shape {W.shape}; expected ({W.shape[0]}, {sizes[-1]}) "
                f"to follow W{l - 1} of shape {weights[f'W{l - 1}'].shape}")
        if b.shape != (W.shape[0],):
            raise WeightsError(f"tensor b{l} has shape {b.shape}; expected ({W.shape[0]},) to match W{l} {W.shape}")
        if W.size == 0:
            raise WeightsError(f"tensor W{l} has an empty shape {W.shape}")
        sizes.append(W.shape[0])
    for name, arr in weights.items():
        if not np.isfinite(arr).all():
            raise WeightsError(f"tensor {name} contains NaN or Inf")
    return sizes


def init_weights(sizes, scheme: str = "torch", seed: int = 0, dtype="float64") -> dict[str, np.ndarray]:
    """Seeded initial weights for layer sizes [n_0, ..., n_L].

    - ``torch``:  W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch.nn.Linear's default scheme
    - ``xavier``: W ~ U(-sqrt(6/(fan_in+fan_out)), +...), b = 0 (Glorot uniform)
    - ``he``:     W ~ N(0, 2/fan_in), b = 0 (Kaiming normal, fan_in)
    Drawn in float64 from numpy's PCG64 with ``seed``, then rounded to ``dtype``: a float32 net
    starts from the rounded float64 weights of the same seed.
    """
    dt = parse_dtype(dtype)
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not known; expected one of {list(INIT_SCHEMES)}")
    sizes = [int(n) for n in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes={sizes} must list at least an input and an output size, each >= 1")
    rng = np.random.default_rng(seed)
    weights = {}
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        if scheme == "torch":
            bound = 1.0 / np.sqrt(fan_in)
            W = rng.uniform(-bound, bound, (fan_out, fan_in))
            b = rng.uniform(-bound, bound, fan_out)
        elif scheme == "xavier":
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            W, b = rng.uniform(-bound, bound, (fan_out, fan_in)), np.zeros(fan_out)
        else:
            W, b = rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_out, fan_in)), np.zeros(fan_out)
        weights[f"W{l}"], weights[f"b{l}"] = W.astype(dt), b.astype(dt)
    return weights


def save_weights(path, weights: Mapping[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    """Write ``weights`` to a safetensors file atomically (temp file in the same folder, then rename)."""
    from safetensors.numpy import save

    check_weights(weights)
    path = Path(path)
    data = save({k: np.ascontiguousarray(v) for k, v in weights.items()}, metadata=metadata)
    atomic_write_bytes(path, data)
    return path


MAX_HEADER_BYTES = 1 << 20  # a safetensors header of shared weights: ~100 bytes a tensor plus metadata


def _memory_cap() -> int:
    """Half of this machine's physical memory (os.sysconf), the most a weights file may hold by default."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 1 << 32


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n:,} bytes"


def load_weights(path, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Read shared weights from a safetensors file; anything else is refused, never executed.

    Bounded: only a regular file is read (not a device, FIFO or folder); its 8-byte header length is read
    first and a header over MAX_HEADER_BYTES, or tensor data (as the header declares it, or as the file's
    size says) over ``max_bytes`` (default: half of the physical memory) is refused before it is read."""
    from safetensors.numpy import load

    path = Path(path)
    cap = _memory_cap() if max_bytes is None else int(max_bytes)
    try:
        st = os.stat(path)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):  # a folder: open() names the error
            raise WeightsError(f"{str(path)!r} is not a regular file ({_kind(st.st_mode)}); weights are read "
                               "only from a safetensors file")
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            head = f.read(8)
            if head[:1] == b"\x80" or head[:2] == b"PK":  # pickle protocol >= 2 (torch.save before 1.6); zip
                raise WeightsError(f"{str(path)!r} looks like a pickle/torch archive; weights are read only "
                                   "as safetensors (convert with torch.load(..., weights_only=True))")
            if len(head) == 8:
                n = int.from_bytes(head, "little")
                if n > MAX_HEADER_BYTES and 8 + n <= st.st_size:  # (a shorter file: safetensors says it is)
                    raise WeightsError(f"{str(path)!r} is not plausible as shared weights: its safetensors header "
                                       f"declares {_gb(n)} (at most {_gb(MAX_HEADER_BYTES)} is read)")
                declared = _declared_data_bytes(f.read(n)) if n <= MAX_HEADER_BYTES else None
                if declared is not None and declared > cap:
                    raise WeightsError(f"{str(path)!r} is not plausible as shared weights: its header declares "
                                       f"{_gb(declared)} of tensors, more than the {_gb(cap)} allowed")
            if st.st_size > cap + MAX_HEADER_BYTES + 8:
                raise WeightsError(f"{str(path)!r} is not plausible as shared weights: it holds {_gb(st.st_size)}, "
                                   f"more than the {_gb(cap)} allowed")
            f.seek(0)
            raw = f.read(cap + MAX_HEADER_BYTES + 9)  # bounded, whatever the file does meanwhile
    except OSError as e:
        raise WeightsError(f"cannot read weights file {str(path)!r}: {e.strerror}") from None
    try:
        weights = load(raw)
    except Exception as e:  # safetensors raises its own error types for corrupt/truncated headers
        raise WeightsError(f"{str(path)!r} is not a valid safetensors file ({type(e).__name__}: {e})") from None
    try:
        L = len(check_weights(weights)) - 1
    except (WeightsError, TypeError) as e:
        raise WeightsError(f"{str(path)!r}: {e}") from None
    return {f"{p}{l}": weights[f"{p}{l}"] for l in range(1, L + 1) for p in "Wb"}  # W1, b1, W2, ... in order


def _declared_data_bytes(header: bytes) -> int | None:
    """The end of the last tensor's data as a safetensors header declares it; None if it cannot be read
    (safetensors itself then says what is wrong)."""
    try:
        h = json.loads(header)
        return max((int(v["data_offsets"][1]) for k, v in h.items() if k != "__metadata__"), default=0)
    except Exception:  # noqa: BLE001
        return None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a plain file"


def cast_weights(weights: Mapping[str, np.ndarray], dtype, source: str | None = None) -> dict[str, np.ndarray]:
    """``weights`` converted to ``dtype``; a finite value too large for it (1e39 in float32) is refused by name
    instead of becoming Inf.  ``source`` (a file name) goes into the message."""
    dt = parse_dtype(dtype)
    big = float(np.finfo(dt).max)
    out = {}
    for name, arr in weights.items():
        if arr.dtype != dt and arr.size:
            with np.errstate(invalid="ignore"):
                m = float(np.max(np.abs(arr)))
            if np.isfinite(m) and m > big:
                where = f" in {source!r}" if source else ""
                raise WeightsError(f"tensor {name}{where} holds values up to {m:.3g}, which do not fit in {dt} "
                                   f"(largest {big:.3g}); scale the weights down or use float64")
        with np.errstate(over="ignore"):
            out[name] = arr.astype(dt)
    return out


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either its old self or complete, never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the permissions open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
