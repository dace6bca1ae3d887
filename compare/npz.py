"""A user's own data from ``--data FILE.npz``: read bounded, validated, split as given.

The file holds ``X_train, y_train, X_test, y_test`` (and optionally 1-D string arrays
``class_names``, ``feature_names``); it is read with ``allow_pickle=False`` only, after its members'
headers, so a pickle, an object array or a header that claims more than the file holds is refused
before any array is loaded.
"""
from __future__ import annotations

import os

import numpy as np

from .data import Split, cast_features, standardized

NPZ_KEYS = ("X_train", "y_train", "X_test", "y_test")
NPZ_NAME_KEYS = ("class_names", "feature_names")  # optional 1-D string arrays in the .npz
DATA_MEMORY_FRACTION = 0.5    # refuse a file (or its arrays unpacked) above half of physical memory
DATA_MAX_BYTES_FALLBACK = 2 * 1024**3  # ... or above 2 GiB where physical memory cannot be read


def data_max_bytes() -> int:
    from .limits import physical_memory

    memory = physical_memory()
    return int(memory * DATA_MEMORY_FRACTION) if memory else DATA_MAX_BYTES_FALLBACK


def _npz_error(path, message: str) -> ValueError:
    return ValueError(f"--data {str(path)!r}: {message}")


_npz_cache: dict = {}


def read_npz(path, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of a user's .npz (X_train, y_train, X_test, y_test, and class_names / feature_names
    when present), validated; raises ValueError with one line naming the file and what is wrong.

    Read bounded: a regular file no larger than ``max_bytes`` (default ``data_max_bytes()``: half of
    physical memory), its members unpacked no larger either; np.load(allow_pickle=False) only, so a
    pickle (a whole-file pickle or an object array inside) is refused without being executed."""
    import stat
    import zipfile
    import zlib

    max_bytes = data_max_bytes() if max_bytes is None else max_bytes
    try:
        st = os.stat(path)
    except OSError as e:
        raise _npz_error(path, f"cannot read it ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _npz_error(path, "not a regular file")
    if st.st_size > max_bytes:
        raise _npz_error(path, f"{st.st_size:,} bytes, more than the {max_bytes:,} bytes allowed "
                               f"(half of this machine's memory)")
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, max_bytes)
    if key in _npz_cache:
        return _npz_cache[key]
    with open(path, "rb") as f:
        head = f.read(4)
        if not zipfile.is_zipfile(f):
            what = ("a pickle, refused (it could run code); save arrays with np.savez" if head[:1] == b"\x80"
                    else "a single .npy array, not an .npz archive" if head.startswith(b"\x93NUM")
                    else "a corrupt or truncated .npz archive (no zip directory)" if head.startswith(b"PK")
                    else "not an .npz archive (np.savez of X_train, y_train, X_test, y_test)")
            raise _npz_error(path, what)
        try:
            with zipfile.ZipFile(f) as z:
                infos = {i.filename: i for i in z.infolist()}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise _npz_error(path, f"a corrupt .npz archive ({e})") from None
    names = {n[:-4] if n.endswith(".npy") else n: i for n, i in infos.items()}
    missing = [k for k in NPZ_KEYS if k not in names]
    if missing:
        raise _npz_error(path, f"missing array{'s' if len(missing) > 1 else ''} {', '.join(missing)}; expected "
                               f"{', '.join(NPZ_KEYS)} (has {', '.join(sorted(names)) or 'none'})")
    wanted = [k for k in (*NPZ_KEYS, *NPZ_NAME_KEYS) if k in names]
    unpacked = sum(names[k].file_size for k in wanted)
    if unpacked > max_bytes:
        raise _npz_error(path, f"its arrays unpack to {unpacked:,} bytes, more than the {max_bytes:,} bytes allowed "
                               f"(half of this machine's memory)")
    arrays = {}
    try:
        with zipfile.ZipFile(path) as z:  # each member's .npy header first: no pickle, no outsized shape
            for k in wanted:
                with z.open(names[k]) as m:
                    version = np.lib.format.read_magic(m)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(m)
                if dtype.hasobject:
                    raise _npz_error(path, f"{k} is an object array (a pickle inside), refused; save plain "
                                           f"numeric arrays")
                if int(np.prod(shape, dtype=object)) * dtype.itemsize > names[k].file_size:
                    raise _npz_error(path, f"{k}: its header's shape {shape} ({dtype}) is larger than the "
                                           f"{names[k].file_size:,} bytes stored")
        with np.load(path, allow_pickle=False) as npz:
            for k in wanted:
                arrays[k] = npz[k]
    except ValueError as e:
        if str(e).startswith("--data "):
            raise
        raise _npz_error(path, f"a corrupt .npz archive ({e})") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise _npz_error(path, f"a corrupt .npz archive ({type(e).__name__}: {e})") from None
    _validate_npz(path, arrays)
    for v in arrays.values():
        v.setflags(write=False)  # cached: shared by every split made from this file
    if len(_npz_cache) > 2:
        _npz_cache.clear()
    _npz_cache[key] = arrays
    return arrays


def _validate_npz(path, a: dict) -> None:
    err = lambda m: _npz_error(path, m)  # noqa: E731
    for k in NPZ_KEYS:
        if a[k].dtype.hasobject:
            raise err(f"{k} is an object array (a pickle), refused; save plain numeric arrays")
    for k, nd in (("X_train", 2), ("X_test", 2), ("y_train", 1), ("y_test", 1)):
        if a[k].ndim != nd:
            raise err(f"{k} has {a[k].ndim} dimension{'s' if a[k].ndim != 1 else ''} (shape {a[k].shape}); "
                      f"expected {nd} ({'rows, features' if nd == 2 else 'one label per row'})")
    Xtr, Xte, ytr, yte = a["X_train"], a["X_test"], a["y_train"], a["y_test"]
    for k in ("X_train", "X_test"):
        if a[k].dtype not in (np.float32, np.float64):
            raise err(f"{k} has dtype {a[k].dtype}; expected float32 or float64")
    if Xtr.dtype != Xte.dtype:
        raise err(f"X_train is {Xtr.dtype} and X_test is {Xte.dtype}; expected one dtype for both")
    for k in ("X_train", "X_test"):
        if a[k].shape[0] < 1 or a[k].shape[1] < 1:
            raise err(f"{k} has shape {a[k].shape}; expected at least one row and one feature")
    if Xtr.shape[1] != Xte.shape[1]:
        raise err(f"X_train has {Xtr.shape[1]} features and X_test {Xte.shape[1]}; expected the same")
    for k in ("X_train", "X_test"):
        bad = ~np.isfinite(a[k])
        if bad.any():
            r, c = (int(i) for i in np.argwhere(bad)[0])
            raise err(f"{k} has {int(bad.sum()):,} non-finite value{'s' if bad.sum() > 1 else ''} "
                      f"(first at row {r}, column {c}: {a[k][r, c]})")
    for k in ("y_train", "y_test"):
        if a[k].dtype.kind not in "iu":
            raise err(f"{k} has dtype {a[k].dtype}; expected integer class labels 0..K-1")
    for X, y, x, yk in ((Xtr, ytr, "X_train", "y_train"), (Xte, yte, "X_test", "y_test")):
        if y.shape[0] != X.shape[0]:
            raise err(f"{yk} has {y.shape[0]:,} labels and {x} {X.shape[0]:,} rows; expected one label per row")
    if ytr.min() < 0:
        raise err(f"y_train has a negative label {int(ytr.min())}; expected labels 0..K-1")
    K = int(ytr.max()) + 1
    absent = np.flatnonzero(np.bincount(ytr.astype(np.int64), minlength=K) == 0)
    if absent.size:
        raise err(f"y_train has labels 0..{K - 1} with a gap: no row of class {', '.join(map(str, absent[:5]))}"
                  f"{' ...' if absent.size > 5 else ''}; expected every class 0..K-1 in the training split")
    if K < 2:
        raise err("y_train has a single class (0); expected at least two classes")
    if yte.min() < 0 or yte.max() >= K:
        raise err(f"y_test has labels in [{int(yte.min())}, {int(yte.max())}]; y_train's classes are 0..{K - 1}")
    for k, n in (("class_names", K), ("feature_names", Xtr.shape[1])):
        if k in a and (a[k].ndim != 1 or a[k].dtype.kind not in "US" or a[k].shape[0] != n):
            raise err(f"{k} is {a[k].dtype} of shape {a[k].shape}; expected {n} strings (optional)")


def npz_split(path, dtype="float64", standardize: bool = False, max_bytes: int | None = None) -> Split:
    """A user's .npz (``read_npz``) as a Split: train and test as given (row numbers 0..n-1 of each),
    standardised like the data sets (fitted on X_train) when ``standardize``."""
    a = read_npz(path, max_bytes)
    name = os.path.basename(str(path))
    Xtr, Xte, mean, std = standardized(a["X_train"].astype(np.float64), a["X_test"].astype(np.float64), standardize)
    K = int(a["y_train"].max()) + 1
    return Split(cast_features(Xtr, dtype, f"--data {str(path)!r}: X_train"), a["y_train"].astype(np.int64),
                 cast_features(Xte, dtype, f"--data {str(path)!r}: X_test"), a["y_test"].astype(np.int64),
                 np.arange(Xtr.shape[0]), np.arange(Xte.shape[0]), mean, std, name,
                 tuple(map(str, a["class_names"])) if "class_names" in a else tuple(map(str, range(K))),
                 tuple(map(str, a["feature_names"])) if "feature_names" in a
                 else tuple(f"x{j}" for j in range(Xtr.shape[1])))


