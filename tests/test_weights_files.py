"""Weights files at the library level: manual.load_weights refuses pickles and zip archives (never
unpickling them) and names the file in every error; manual.save_weights keeps its metadata; the write
is atomic (the old file stays whole until a complete hidden sibling replaces it, and nothing is left
behind when it fails)."""
import errno
import io
import json
import os
import pickle
import re
import zipfile

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save

import manual
from manual.weights import atomic_write_bytes

W = manual.init_weights([4, 6, 3], seed=0)


class _Exploit:
    """Unpickling it would create the folder ``target``."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def _zip(member: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(member, b"\x00" * 8)
    return buf.getvalue()


REFUSED = {  # torch.save wrote protocol-2 pickles before 1.6 and zip archives since; np.savez writes zips
    "pickle protocol 2": lambda t: pickle.dumps({"W1": _Exploit(t)}, protocol=2),
    "pickle protocol 4": lambda t: pickle.dumps({"W1": _Exploit(t)}, protocol=4),
    "pickle protocol 5": lambda t: pickle.dumps({"W1": _Exploit(t)}, protocol=5),
    "torch zip archive": lambda t: _zip("archive/data.pkl"),
    "numpy npz": lambda t: _zip("W1.npy"),
}


def _refuses(path, message):
    with pytest.raises(manual.WeightsError, match=f"^{re.escape(repr(str(path)))}{message}"):
        manual.load_weights(path)


@pytest.mark.parametrize("case", list(REFUSED))
def test_pickles_and_zip_archives_are_refused_naming_the_file(case, tmp_path):
    path, target = tmp_path / "w.safetensors", tmp_path / "pwned"
    path.write_bytes(REFUSED[case](str(target)))
    _refuses(path, re.escape(" looks like a pickle/torch archive; weights are read only as safetensors "
                             "(convert with torch.load(..., weights_only=True))") + "$")
    assert not target.exists()


BROKEN = {
    "empty": lambda good: b"",
    "zeros": lambda good: b"\x00" * 64,
    "truncated": lambda good: good[:-10],
    "text": lambda good: b"W1,b1\n1,2\n",
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_files_name_the_file_and_the_error(case, tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(BROKEN[case](save(W)))
    _refuses(path, r" is not a valid safetensors file \(SafetensorError: .+\)$")


INVALID = {  # valid safetensors files whose tensors are not shared weights
    "missing tensor": ({k: v for k, v in W.items() if k != "b2"}, r": missing tensor\(s\) \['b2'\]"),
    "integer tensor": ({**W, "b1": np.zeros(6, dtype=np.int64)}, r": tensor b1 has dtype int64; expected float32"),
    "mis-shaped": ({**W, "b1": np.zeros(5)}, r": tensor b1 has shape \(5,\); expected \(6,\)"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_files_that_are_not_shared_weights_name_the_file_and_the_problem(case, tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(save(INVALID[case][0]))
    _refuses(path, INVALID[case][1])


@pytest.mark.parametrize("name,reason", [("missing.safetensors", "No such file or directory"),
                                         ("folder", "Is a directory")])
def test_an_unreadable_path_is_named_with_the_reason(name, reason, tmp_path):
    (tmp_path / "folder").mkdir()
    path = tmp_path / name
    with pytest.raises(manual.WeightsError, match=f"^cannot read weights file {re.escape(repr(str(path)))}: {reason}$"):
        manual.load_weights(path)


def test_metadata_is_written_into_the_file(tmp_path):
    meta = {"description": "initial weights; seed 0"}
    path = manual.save_weights(tmp_path / "w.safetensors", W, metadata=meta)
    with safe_open(path, framework="np") as f:
        assert f.metadata() == meta


# ---- atomic writes ---------------------------------------------------------------------------------

def test_the_old_file_stays_whole_until_a_complete_hidden_sibling_replaces_it(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"old")
    umask = os.umask(0)
    os.umask(umask)
    seen, replace = [], os.replace

    def spy(src, dst):  # the moment of the rename
        src = type(path)(src)
        seen.append((src.parent, src.name, src.read_bytes(), os.stat(src).st_mode & 0o777, path.read_bytes()))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_bytes(path, b"new bytes")
    [(folder, name, data, mode, old)] = seen
    assert folder == tmp_path and re.fullmatch(r"\.w\.safetensors\..+\.tmp", name)  # same folder: rename is atomic
    assert (data, mode, old) == (b"new bytes", 0o666 & ~umask, b"old")
    assert path.read_bytes() == b"new bytes" and os.listdir(tmp_path) == ["w.safetensors"]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_files_get_the_permissions_of_the_umask(umask, mode, tmp_path):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "w.safetensors", b"data")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "w.safetensors").st_mode & 0o777 == mode


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = manual.save_weights(tmp_path / "w.safetensors", W)
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        manual.save_weights(path, manual.init_weights([4, 6, 3], seed=1))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["w.safetensors"]


# ---- check_weights ------------------------------------------------------------------------------------

W3 = manual.init_weights([4, 6, 5, 3], seed=0)
CHECK_CASES = {  # the whole message: which tensor, what it is and what was expected
    "a list": ([W["W1"]], TypeError, r"^weights must be a mapping of names W1, b1, \.\.\. to arrays, got list$"),
    "empty": ({}, manual.WeightsError, r"^weights is empty; expected W1, b1, \.\.\., WL, bL$"),
    "no W1": ({k: v for k, v in W.items() if k != "W1"}, manual.WeightsError,
              r"^missing tensor\(s\) \['W1'\] for a 2-layer network; expected W1, b1, \.\.\., W2, b2$"),
    "a list tensor": ({**W, "b1": [0.0] * 6}, TypeError, r"^tensor b1 must be a numpy.ndarray, got list$"),
    "W 1-D": ({**W, "W1": np.zeros(24)}, manual.WeightsError,
              r"^tensor W1 must be 2-D \(n_1, n_0\), got shape \(24,\)$"),
    "W3 not after W2": ({**W3, "W3": np.zeros((3, 4))}, manual.WeightsError,
                        r"^tensor W3 has shape \(3, 4\); expected \(3, 5\) to follow W2 of shape \(5, 6\)$"),
    "empty layer": ({"W1": np.zeros((0, 4)), "b1": np.zeros(0), "W2": np.zeros((3, 0)), "b2": np.zeros(3)},
                    manual.WeightsError, r"^tensor W1 has an empty shape \(0, 4\)$"),
}


@pytest.mark.parametrize("case", list(CHECK_CASES))
def test_check_weights_names_the_tensor_and_what_was_expected(case):
    weights, exc, message = CHECK_CASES[case]
    with pytest.raises(exc, match=message):
        manual.check_weights(weights)


def test_check_weights_returns_the_layer_sizes_even_of_one_unit():
    assert manual.check_weights(W3) == [4, 6, 5, 3]
    assert manual.check_weights(manual.init_weights([1, 1, 1])) == [1, 1, 1]


# ---- init_weights -------------------------------------------------------------------------------------

INIT_ERRORS = {
    "not a dtype": (dict(sizes=[4, 3], dtype="floaty"), TypeError,
                    r"^dtype='floaty' is not supported; expected float32 or float64$"),
    "float16": (dict(sizes=[4, 3], dtype="float16"), TypeError,
                r"^dtype='float16' is not supported; expected float32 or float64$"),
    "unknown scheme": (dict(sizes=[4, 3], scheme="glorot"), ValueError,
                       r"^scheme='glorot' is not known; expected one of \['torch', 'xavier', 'he'\]$"),
    "one size": (dict(sizes=[4]), ValueError,
                 r"^sizes=\[4\] must list at least an input and an output size, each >= 1$"),
    "a zero size": (dict(sizes=[4, 0, 3]), ValueError, r"^sizes=\[4, 0, 3\] must list at least an input and an output"),
}


@pytest.mark.parametrize("case", list(INIT_ERRORS))
def test_init_weights_refuses_bad_arguments_with_the_whole_message(case):
    kw, exc, message = INIT_ERRORS[case]
    with pytest.raises(exc, match=message):
        manual.init_weights(**kw)


def test_init_weights_defaults_and_layers_of_one_unit():
    default, explicit = manual.init_weights([4, 6, 3]), manual.init_weights([4, 6, 3], "torch", seed=0, dtype="float64")
    assert all(np.array_equal(default[k], v) and default[k].dtype == np.float64 for k, v in explicit.items())
    assert {k: v.shape for k, v in manual.init_weights([1, 1, 1]).items()} == {"W1": (1, 1), "b1": (1,), "W2": (1, 1),
                                                                             "b2": (1,)}


FAN_IN, FAN_OUT = 50, 400  # W1 has 20000 entries, b1 400
INIT_MOMENTS = {  # tensor of layer 1 -> its standard deviation by the docstring's formula (mean 0)
    ("torch", "W1"): 1 / np.sqrt(FAN_IN) / np.sqrt(3),  # U(-b, b) has standard deviation b / sqrt(3)
    ("torch", "b1"): 1 / np.sqrt(FAN_IN) / np.sqrt(3),
    ("xavier", "W1"): np.sqrt(6 / (FAN_IN + FAN_OUT)) / np.sqrt(3),
    ("he", "W1"): np.sqrt(2 / FAN_IN),
}


@pytest.mark.parametrize("scheme,name", list(INIT_MOMENTS))
def test_init_schemes_draw_from_the_stated_distributions(scheme, name):
    x = manual.init_weights([FAN_IN, FAN_OUT, 3], scheme, seed=1)[name]
    std = INIT_MOMENTS[scheme, name]
    assert abs(x.mean()) < 5 * std / np.sqrt(x.size)  # five standard errors of the sample mean
    assert x.std() == pytest.approx(std, rel=0.03 if x.size > 1000 else 0.15)


# ---- bounded reads: a file is refused on its header and its size before it is read ---------------------
def _header_file(path, header: dict, data: bytes = b"") -> str:
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return str(path)


def test_a_file_larger_than_the_cap_is_refused_with_both_sizes(tmp_path):
    path = manual.save_weights(tmp_path / "w.safetensors", manual.init_weights([4, 6, 3], seed=0))
    with pytest.raises(manual.WeightsError, match=r"header declares 408 bytes of tensors, more than the 100 bytes allowed"):
        manual.load_weights(path, max_bytes=100)
    assert set(manual.load_weights(path, max_bytes=408)) == {"W1", "b1", "W2", "b2"}  # the cap itself passes


def test_a_header_that_declares_more_than_the_file_is_refused_unread(tmp_path):
    from manual.weights import MAX_HEADER_BYTES

    big = _header_file(tmp_path / "h.safetensors", {"W1": {"dtype": "F64", "shape": [10**6, 10**6],
                                                           "data_offsets": [0, 8 * 10**12]}})
    with pytest.raises(manual.WeightsError, match=r"declares 8e\+03 GB of tensors, more than the"):
        manual.load_weights(big)
    path = tmp_path / "long.safetensors"
    path.write_bytes((MAX_HEADER_BYTES + 1).to_bytes(8, "little") + b" " * (MAX_HEADER_BYTES + 1))
    with pytest.raises(manual.WeightsError, match=r"its safetensors header declares 1,048,577 bytes \(at most "
                                                  r"1,048,576 bytes is read\)"):
        manual.load_weights(path)


def test_a_file_whose_size_exceeds_the_cap_is_refused_before_reading(tmp_path):
    path = tmp_path / "sparse.safetensors"
    with open(path, "wb") as f:
        f.write((2).to_bytes(8, "little") + b"{}")
        f.truncate(3 * 10**6)  # beyond the cap plus the largest header read
    with pytest.raises(manual.WeightsError, match=r"it holds 3,000,000 bytes, more than the 1,000 bytes allowed"):
        manual.load_weights(path, max_bytes=1000)


def test_devices_and_fifos_are_not_read(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path, kind in (("/dev/zero", "a character device"), (str(fifo), "a FIFO")):
        with pytest.raises(manual.WeightsError, match=rf"is not a regular file \({kind}\)"):
            manual.load_weights(path)


def test_the_default_cap_is_half_of_physical_memory():
    from manual.weights import _gb, _memory_cap

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert _memory_cap() == total // 2
    assert (_gb(99_999_999), _gb(10**8), _gb(25 * 10**9)) == ("99,999,999 bytes", "0.1 GB", "25 GB")
