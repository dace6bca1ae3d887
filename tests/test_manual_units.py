"""Unit tests of manual/'s edges that the equivalence suite does not reach: the adapter's own
methods, the bounded reading of weights files at its exact limits, the error messages' wording,
and the hooks' arguments (each written against a mutant of `make mutation` that survived without it)."""
import json
import stat
import struct

import numpy as np
import pytest
from safetensors.numpy import save

import manual
from compare import Spec
from compare.data import iris_split
from compare.harness import data_for
from compare.schedule import epoch_orders
from compare.weights import initial_weights
from helpers import zeroing_hook
from manual import weights as mw
from manual.activations import hidden_activation
from manual.adapter import ManualImplementation
from manual.mlp import check_mask_values


# ---- the adapter ------------------------------------------------------------------------------
def test_the_adapter_is_named_manual_takes_no_option_and_records_numpy():
    impl = ManualImplementation()
    assert impl.name == "manual"
    assert impl.info() == {"implementation": "manual (NumPy, hand-written back-propagation)",
                           "numpy": np.__version__}
    with pytest.raises(ValueError, match=r"^implementation 'manual' takes no option, got 'manual:x'$"):
        ManualImplementation("x")


def test_the_adapter_predicts_what_the_network_computes():
    spec, d = Spec(hidden=(5,)), iris_split()
    w = initial_weights(spec)
    aL, k = ManualImplementation().predict(spec, w, d.X_test)
    net = manual.MLP.from_weights(w)
    assert np.array_equal(aL, net.forward(d.X_test)) and np.array_equal(k, net.predict(d.X_test))


def test_the_adapter_passes_every_option_of_the_spec_to_the_trainer():
    """Non-default momentum, betas, eps and gamma, so that an option left out shows; the final weights
    are the last step's, and the start's copy when no step was run."""
    d = iris_split()
    for spec in (Spec(hidden=(5,), activation="elu", gamma=0.5, optimizer="nesterov", momentum=0.5, lr=0.05,
                      batch_size=30, epochs=3),
                 Spec(hidden=(5,), optimizer="adam", betas=(0.5, 0.6), eps=0.1, lr=0.05, batch_size=30, epochs=3)):
        w = initial_weights(spec)
        order = epoch_orders(120, spec.epochs, spec.batch_size, spec.seed)
        seen = []
        res = ManualImplementation().train(spec, w, data_for(spec, d), order, None, None,
                                           lambda s, ws, loss, seen=seen: seen.append(ws))
        net = manual.MLP.from_weights(w, spec.activation, gamma=spec.gamma)
        manual.train(net, d.X_train, d.y_train, epochs=spec.epochs, lr=spec.lr, optimizer=spec.optimizer,
                     momentum=spec.momentum, betas=spec.betas, eps=spec.eps, batch_size=spec.batch_size, order=order)
        assert all(np.array_equal(res.final[k], v) for k, v in net.weights().items())
        assert all(np.array_equal(res.final[k], seen[-1][k]) for k in w) and res.restored is None
    spec = Spec(hidden=(5,), epochs=0)
    w = initial_weights(spec)
    res = ManualImplementation().train(spec, w, data_for(spec, d), np.zeros((0, 120), int), None, None,
                                       lambda *a: None)
    assert all(np.array_equal(res.final[k], w[k]) for k in w)


def test_the_trainer_hands_the_gradient_hook_each_step_number():
    d, steps = iris_split(), []
    net = manual.MLP.from_weights(manual.init_weights([4, 5, 3], seed=1))
    manual.train(net, d.X_train, d.y_train, epochs=2, lr=0.1, batch_size=60,
                 grad_hook=lambda s, g: steps.append((s, sorted(g))) or g)
    assert steps == [(s, ["W1", "W2", "b1", "b2"]) for s in range(4)]



@pytest.mark.parametrize("in_place", [False, True])
def test_the_trainer_steps_with_the_gradients_the_hook_returns(in_place):
    """New arrays are copied in; arrays changed in place and handed back are used as they are."""
    d = iris_split()
    w = manual.init_weights([4, 5, 3], seed=1)
    net = manual.MLP.from_weights(w)

    manual.train(net, d.X_train, d.y_train, epochs=2, lr=0.1, batch_size=60, grad_hook=zeroing_hook(in_place))
    assert all(np.array_equal(v, w[k]) for k, v in net.weights().items())

# ---- messages and names -----------------------------------------------------------------------
def test_a_named_activation_keeps_its_name():
    assert hidden_activation("elu", 0.5).name == "elu" and hidden_activation("leaky_relu", 0.2).name == "leaky_relu"


def test_masked_and_matrix_inputs_get_the_fix_in_the_message():
    net = manual.MLP.from_weights(manual.init_weights([2, 2], seed=0))
    with pytest.raises(TypeError, match=r"^X is a masked array \(numpy.ma\); expected a plain numpy.ndarray "
                                        r"\(X.filled\(value\) for the masked entries\)$"):
        net.forward(np.ma.masked_array(np.zeros((1, 2))))
    with pytest.raises(TypeError, match=r"^X_val is a numpy.matrix; expected a plain numpy.ndarray "
                                        r"\(np.asarray\(X_val\)\)$"):
        with pytest.warns(PendingDeprecationWarning):
            m = np.matrix(np.zeros((1, 2)))
        net.check_X(m, "X_val")


def test_mask_checks_name_the_mask_and_accept_the_scale_one_of_p_zero():
    check_mask_values(np.ones((2, 3)))  # p = 0: every entry kept, scale 1/(1-0) = 1
    with pytest.raises(ValueError, match=r"^mask has entries 0.5 besides 0"):
        check_mask_values(np.full((2, 3), 0.5))


# ---- weights files at their limits -------------------------------------------------------------
def test_declared_data_bytes_reads_the_last_offset_and_skips_the_metadata():
    h = {"__metadata__": {"a": "b"}, "W1": {"dtype": "F64", "shape": [3], "data_offsets": [0, 24]}}
    assert mw._declared_data_bytes(json.dumps(h).encode()) == 24
    assert mw._declared_data_bytes(json.dumps({"__metadata__": {}}).encode()) == 0
    assert mw._declared_data_bytes(b"{not json") is None


def test_every_kind_of_file_that_is_not_read_is_named():
    names = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
             stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder", 0: "not a plain file"}
    assert {k: mw._kind(k) for k in names} == names


def test_the_memory_cap_falls_back_to_4_gib_and_sizes_read_in_gb(monkeypatch):
    monkeypatch.setattr(mw.os, "sysconf", lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert mw._memory_cap() == 1 << 32
    assert mw._gb(1_005_000_001) == "1.01 GB" and mw._gb(99_999_999) == "99,999,999 bytes"


def _padded_file(path, header_bytes: int, extra: int = 0):
    """A valid safetensors file (W1 (1, 1), b1 (1,)) whose JSON header is padded to ``header_bytes``,
    with ``extra`` bytes after the data (which safetensors refuses)."""
    raw = save({"W1": np.ones((1, 1)), "b1": np.zeros(1)})
    n = int.from_bytes(raw[:8], "little")
    header, data = raw[8:8 + n], raw[8 + n:]
    header = header + b" " * (header_bytes - len(header))
    path.write_bytes(struct.pack("<Q", header_bytes) + header + data + b"\0" * extra)
    return path, len(data)


def test_a_file_exactly_at_the_limits_is_read_and_one_byte_more_is_refused(tmp_path):
    """Header of exactly MAX_HEADER_BYTES and a file of exactly cap + MAX_HEADER_BYTES + 8 bytes: read
    (whole); one byte more: refused by its size; a declared data size over the cap: refused by it."""
    p, data = _padded_file(tmp_path / "w.safetensors", mw.MAX_HEADER_BYTES)
    w = mw.load_weights(p, max_bytes=data)
    assert sorted(w) == ["W1", "b1"] and w["W1"][0, 0] == 1.0
    q, _ = _padded_file(tmp_path / "big.safetensors", mw.MAX_HEADER_BYTES, extra=1)
    with pytest.raises(mw.WeightsError, match=rf"^'{q}' is not plausible as shared weights: it holds "):
        mw.load_weights(q, max_bytes=data)
    with pytest.raises(mw.WeightsError, match=rf"^'{p}' is not plausible as shared weights: its header declares "
                                               rf"{data} bytes of tensors, more than the {data - 1} bytes allowed$"):
        mw.load_weights(p, max_bytes=data - 1)


def test_a_header_over_the_limit_and_a_device_are_refused_naming_the_path(tmp_path):
    p = tmp_path / "h.safetensors"
    p.write_bytes(struct.pack("<Q", mw.MAX_HEADER_BYTES + 1) + b" " * (mw.MAX_HEADER_BYTES + 1))
    with pytest.raises(mw.WeightsError, match=rf"^'{p}' is not plausible as shared weights: its safetensors header"):
        mw.load_weights(p)
    with pytest.raises(mw.WeightsError, match=r"^'/dev/null' is not a regular file \(a character device\); weights "
                                              r"are read only from a safetensors file$"):
        mw.load_weights("/dev/null")


def test_casting_keeps_the_largest_float32_and_refuses_one_more_naming_the_file():
    big = float(np.finfo(np.float32).max)
    out = mw.cast_weights({"W1": np.array([[big]])}, "float32")
    assert out["W1"].dtype == np.float32 and out["W1"][0, 0] == np.float32(big)
    with pytest.raises(mw.WeightsError, match=r"^tensor W1 holds values up to 1e\+39, which do not fit"):
        mw.cast_weights({"W1": np.array([[1e39]])}, "float32")
    with pytest.raises(mw.WeightsError, match=r"^tensor W1 in 'f.safetensors' holds values up to 1e\+39"):
        mw.cast_weights({"W1": np.array([[1e39]])}, "float32", source="f.safetensors")
