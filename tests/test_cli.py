"""python -m compare check: exit 0 agree, 1 disagree, 2 bad usage (one line on stderr, no traceback)."""
import json
import os
import pickle
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import manual
from compare.cli import main
from manual.adapter import ManualImplementation

FAST = ["--epochs", "5"]


def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_agrees_and_writes_json(tmp_path, capsys):
    path = tmp_path / "r.json"
    code, out, err = run(["check", *FAST, "--batch-size", "30", "--optimizer", "nesterov", "--json", str(path)], capsys)
    assert code == 0, out + err
    assert "AGREE: manual (candidate) vs torch (reference), judged 20 of 20 training steps (float64)" in out
    data = json.loads(path.read_text())
    assert data["agree"] is True and data["verdict"] == "agree" and data["steps"] == 20
    assert data["trajectory"]["steps"] == 20 and data["trajectory"]["judged_steps"] == 20
    assert data["candidate"] == "manual" and data["reference"] == "torch"
    assert {"forward", "gradients", "finite_differences", "trajectory", "config", "environment"} <= data.keys()
    assert data["config"]["optimizer"] == "nesterov" and data["config"]["batch_size"] == 30
    assert [c["tensor"] for c in data["gradients"]["checks"]] == ["delta2", "dW2", "db2", "delta1", "dW1", "db1"]


class SumNotMean(ManualImplementation):
    """The classic: the batch sum where the loss is a mean (gradients n times too large)."""

    def forward_backward(self, spec, weights, X, y, masks):
        p = super().forward_backward(spec, weights, X, y, masks)
        p.grads = {k: g * X.shape[0] for k, g in p.grads.items()}
        return p


@pytest.mark.parametrize("role", ["candidate", "reference"])
def test_check_reports_a_disagreement_with_exit_1(role, capsys):
    code, out, err = run(["check", *FAST, f"--{role}", "test_cli:SumNotMean",
                          *(["--candidate", "torch"] if role == "reference" else [])], capsys)
    assert code == 1, out + err
    assert "DISAGREE" in out and "first disagreement: layer 2, dW2" in out


BAD_USAGE = {
    "unknown activation": (["--activation", "gelu"], "invalid choice: 'gelu'"),
    "cross-entropy without softmax": (["--output", "sigmoid"], "needs output='softmax'"),
    "lr zero": (["--lr", "0"], "lr must be a finite number > 0"),
    "lr not a number": (["--lr", "fast"], "invalid float value: 'fast'"),
    "hidden 0": (["--hidden", "0"], "hidden layer size must be >= 1"),
    "dropout 1": (["--dropout", "1"], "dropout must be a probability in [0, 1)"),
    "batch too large": (["--batch-size", "500"], "batch_size must be in [1, 120]"),
    "negative epochs": (["--epochs", "-3"], "epochs must be >= 0"),
    "early stopping 0": (["--early-stopping", "0"], "patience (early stopping) must be >= 1"),
    "bad device": (["--reference", "torch:tpu"], "expected torch, torch:cpu, torch:cuda or torch:cuda:N"),
    "missing cuda device": (["--reference", "torch:cuda:2147483648"], "implementation 'torch:cuda:2147483648'"),
    "unknown implementation": (["--candidate", "tensorflow"], "--candidate 'tensorflow': no implementation"),
    "not an implementation": (["--candidate", "json:dumps"], "is not an implementation: calling dumps"),
    "an object without the methods": (["--candidate", "json:decoder"], "is not an implementation: it lacks"),
    "missing module": (["--reference", "no_such_module:Impl"], "No module named 'no_such_module'"),
    "missing weights file": (["--weights", "/nonexistent/w.safetensors"], "cannot read weights file"),
}


@pytest.mark.parametrize("case", list(BAD_USAGE))
def test_bad_usage_is_one_line_and_exit_2(case, capsys):
    args, message = BAD_USAGE[case]
    code, out, err = run(["check", *FAST, *args], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_no_subcommand_is_bad_usage(capsys):
    code, out, err = run([], capsys)
    assert code == 2 and "required" in err


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned",))


def test_a_pickle_is_refused_without_being_executed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(pickle.dumps({"W1": _Exploit()}))
    code, out, err = run(["check", *FAST, "--weights", str(bad)], capsys)
    assert code == 2 and "pickle" in err and str(bad) in err
    assert not (tmp_path / "pwned").exists()


def test_corrupt_and_truncated_weights_files_name_the_file(tmp_path, capsys):
    good = manual.save_weights(tmp_path / "good.safetensors", manual.init_weights([4, 6, 3], seed=0))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-10])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    for path in (truncated, garbage):
        code, out, err = run(["check", *FAST, "--weights", str(path)], capsys)
        assert code == 2 and f"{str(path)!r} is not a valid safetensors file" in err, err


def test_weights_file_is_the_initial_state(tmp_path, capsys):
    w = manual.init_weights([4, 3, 3], "xavier", seed=9)
    path = manual.save_weights(tmp_path / "w.safetensors", w)
    code, out, err = run(["check", *FAST, "--hidden", "3", "--weights", str(path), "--json", str(tmp_path / "r.json")],
                         capsys)
    assert code == 0, err
    code, out, err = run(["check", *FAST, "--weights", str(path)], capsys)  # default --hidden 6 does not fit
    assert code == 2 and "has layer sizes [4, 3, 3]; the spec needs [4, 6, 3]" in err


def test_the_real_command_line_and_the_same_json_across_processes(tmp_path, capsys):
    """One real process: the exit code travels, bad usage prints one line and no traceback.  And every
    random choice (init, order, dropout masks, the noise run) derives from the seed: the child process
    and this one write byte-identical JSON; another seed does not."""
    args = ["check", "--epochs", "3", "--batch-size", "7", "--dropout", "0.2", "--seed", "11", "--json"]
    child, here, other = tmp_path / "child.json", tmp_path / "here.json", tmp_path / "other.json"
    ok = subprocess.run([sys.executable, "-m", "compare", *args, str(child)], capture_output=True, text=True)
    assert ok.returncode == 0 and "AGREE" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-m", "compare", "check", "--loss", "nll"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert main([*args, str(here)]) == 0
    assert child.read_bytes() == here.read_bytes()
    assert main([*args[:-2], "12", "--json", str(other)]) == 0
    capsys.readouterr()
    assert json.loads(other.read_bytes())["trajectory"] != json.loads(here.read_bytes())["trajectory"]


def test_a_weights_file_in_any_tensor_order_gives_the_same_run(tmp_path):
    """safetensors files list tensors in their own order; the harness must not depend on it."""
    from compare.data import iris_split
    from compare.harness import data_for, initial_weights
    from compare.spec import Spec
    from compare.trajectory import trajectory
    from torch_ref.adapter import TorchImplementation

    w = manual.init_weights([4, 3, 3], "xavier", seed=9)
    path = manual.save_weights(tmp_path / "w.safetensors", {k: w[k] for k in ["b2", "W2", "b1", "W1"]})
    spec = Spec(hidden=(3,), epochs=4, weights_file=str(path))
    init = initial_weights(spec)
    assert list(init) == ["W1", "b1", "W2", "b2"] and all(np.array_equal(init[k], w[k]) for k in w)
    data = iris_split()
    traj = trajectory(ManualImplementation(), TorchImplementation(), spec, init, data_for(spec, data))
    net = manual.MLP.from_weights(w)
    manual.train(net, data.X_train, data.y_train, epochs=4, lr=spec.lr)
    assert all(np.array_equal(traj.candidate.result.final[k], v) for k, v in net.weights().items())


# ---- issue 15: limits, files, exit statuses -----------------------------------------------------------
def one_line(err):
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err and "Warning" not in err


REFUSED_UP_FRONT = {
    "seed -1": (["--seed", "-1"], "argument --seed: must be an integer in 0 .. 18446744073709551615 (2**64 - 1)"),
    "seed 2**64": (["--seed", str(2**64)], "argument --seed: must be an integer in 0 .. 18446744073709551615"),
    "seed text": (["--seed", "x"], "argument --seed: must be an integer in 0 .. "),
    "empty json": (["--json", ""], "argument --json: must not be empty"),
    "empty weights": (["--weights", ""], "argument --weights: must not be empty"),
    "epochs 1e9": (["--epochs", "1000000000"], ("of memory (the per-step record is about 400 bytes x 4 tensors x "
                                                 "1,000,000,001 steps), more than 50% of this machine's")),
    "epochs 1e23": (["--epochs", "99999999999999999999999"], "; lower --epochs"),
    "hidden 1e9": (["--hidden", "1000000000"], "(8,000,000,003 parameters), more than 50% of this machine's"),
    "weights /dev/zero": (["--weights", "/dev/zero"], "'/dev/zero' is not a regular file (a character device)"),
    "weights /dev/urandom": (["--weights", "/dev/urandom"], "'/dev/urandom' is not a regular file"),
    "json in a missing folder": (["--json", "/nonexistent/r.json"],
                                 "--json '/nonexistent/r.json' cannot be written: folder '/nonexistent' does not exist"),
    "json a folder": (["--json", "/"], "--json '/' is a folder; give a file name"),
}


@pytest.mark.parametrize("case", list(REFUSED_UP_FRONT))
def test_refused_before_the_run_with_one_line_and_exit_2(case, capsys, monkeypatch):
    import compare.harness

    def no_run(*a, **k):
        raise AssertionError("the run started")

    monkeypatch.setattr(compare.harness, "check", no_run)
    args, message = REFUSED_UP_FRONT[case]
    code, out, err = run(["check", "--epochs", "1", *args], capsys)
    assert code == 2 and message in err and one_line(err), err
    if "GB" in err:
        assert "GB of memory" in err and "lower --" in err


def test_the_largest_seed_runs(capsys):
    code, out, err = run(["check", "--epochs", "1", "--dropout", "0.1", "--seed", str(2**64 - 1)], capsys)
    assert code == 0 and err == "", err


def test_an_implausible_weights_header_is_refused_unread(tmp_path, capsys):
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as f:  # declares (and holds, sparse) a 4 MiB header
        f.write((4 << 20).to_bytes(8, "little") + b"{")
        f.truncate(8 + (4 << 20) + 100)
    sparse = tmp_path / "sparse.safetensors"
    header = b'{"W1":{"dtype":"F64","shape":[6,4],"data_offsets":[0,4000000000]}}'
    with open(sparse, "wb") as f:  # a sparse file: declares and holds 4 GB, reads as zeros
        f.write(len(header).to_bytes(8, "little") + header)
        f.truncate(8 + len(header) + 4_000_000_000)
    code, out, err = run(["check", *FAST, "--weights", str(big)], capsys)
    assert code == 2 and "its safetensors header declares 4,194,304 bytes (at most 1,048,576 bytes is read)" in err and one_line(err), err
    code, out, err = run(["check", *FAST, "--weights", str(sparse)], capsys)
    assert code == 2 and "its header declares 4 GB of tensors, more than the 408 bytes allowed" in err, err


def _scaled(tmp_path, factor, dtype="float64"):
    w = manual.init_weights([4, 6, 3], seed=0)
    return str(manual.save_weights(tmp_path / "w.safetensors", {k: (v * factor).astype(dtype) for k, v in w.items()}))


NUMERICS = {
    "x1e200 relu": (1e200, ["--activation", "relu"],
                    ("error: the initial forward pass overflows float64 at layer 2: z^2 reaches Inf or NaN before any "
                     "training step; scale the initial weights down")),
    "x1e15 float32 identity mse": (1e15, ["--activation", "relu", "--dtype", "float32", "--output", "identity",
                                          "--loss", "mse"], "error: the initial loss (mse) overflows float32"),
    "x1e39 float32": (1e39, ["--dtype", "float32"], "which do not fit in float32 (largest 3.4e+38)"),
    "x1e19 float32 relu l1": (1e19, ["--activation", "relu", "--dtype", "float32", "--loss", "l1"],
                              "error: the initial loss (l1) overflows float32"),
    "x1e19 float32 relu cross-entropy": (1e19, ["--activation", "relu", "--dtype", "float32"],
                                         "error: the initial loss (cross_entropy) overflows float32"),
}


@pytest.mark.parametrize("case", list(NUMERICS))
def test_a_start_that_overflows_is_named_in_one_line(case, tmp_path, capsys):
    factor, args, message = NUMERICS[case]
    code, out, err = run(["check", *FAST, "--weights", _scaled(tmp_path, factor), *args], capsys)
    assert code == 2 and message in err and one_line(err), err
    assert "diverged" not in err and "NaN or Inf" not in err


def test_json_dash_is_standard_output_alone(capsys):
    code, out, err = run(["check", "--epochs", "1", "--json", "-"], capsys)
    assert code == 0 and err == ""
    assert json.loads(out)["agree"] is True  # the JSON alone: no table before it


def test_json_through_a_link_to_a_character_device_is_written_through(tmp_path, capsys):
    link = tmp_path / "null"
    link.symlink_to("/dev/null")
    code, out, err = run(["check", "--epochs", "1", "--json", str(link)], capsys)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_json_into_a_fifo_is_written_through(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, out, err = run(["check", "--epochs", "1", "--json", str(fifo)], capsys)
    reader.join(10)
    assert code == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and json.loads(got[0])["agree"] is True


def test_json_through_a_link_to_this_process_stdout_keeps_the_link(tmp_path, capfd):
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")  # what /dev/stdout is
    assert main(["check", "--epochs", "1", "--json", str(link)]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["agree"] is True and err == ""
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"


def test_json_through_a_link_to_a_regular_file_replaces_the_target(tmp_path, capsys):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    assert run(["check", "--epochs", "1", "--json", str(link)], capsys)[0] == 0
    assert link.is_symlink() and json.loads(target.read_text())["agree"] is True


def test_json_a_dangling_link_says_so(tmp_path, capsys):
    link = tmp_path / "gone.json"
    link.symlink_to(tmp_path / "missing" / "r.json")
    code, out, err = run(["check", "--epochs", "1", "--json", str(link)], capsys)
    assert code == 2 and "is a symbolic link to" in err and "which does not exist" in err and one_line(err)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), MemoryError(), OSError(28, "No space left on device")])
def test_an_internal_or_environment_error_is_exit_4_with_a_saved_traceback(exc, monkeypatch, capsys):
    import compare.harness

    def broken(*a, **k):
        raise exc

    monkeypatch.setattr(compare.harness, "check", broken)
    code, out, err = run(["check", "--epochs", "1"], capsys)
    assert code == 4 and one_line(err), err
    assert err.startswith(f"python -m compare: internal error: {type(exc).__name__}")
    saved = err.strip().rsplit("traceback saved to ", 1)[1]
    try:
        text = Path(saved).read_text()
        assert text.startswith("Traceback") and "broken" in text
    finally:
        os.unlink(saved)


def test_help_documents_the_exit_statuses(capsys):
    from compare.cli import build_parser

    text = " ".join(build_parser().format_help().split())
    for status in ("0 everything agrees", "1 something disagrees", "2 bad usage", "3 inconclusive",
                   "4 an environment or internal error", "130 interrupted"):
        assert status in text
    capsys.readouterr()
    for command in ("check", "report", "lessons"):  # each subcommand's own --help says them too
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        sub = " ".join(capsys.readouterr().out.split())
        assert "exit status: 0 " in sub and "2 bad usage or input" in sub and "130 interrupted" in sub, sub


# ---- issue 15: numerics that gave a false DISAGREE on correct code ----------------------------------------
def _scaled_weights(tmp_path, factor):
    w = manual.init_weights([4, 6, 3], "torch", seed=0)
    return str(manual.save_weights(tmp_path / f"w{factor}.safetensors", {k: v * factor for k, v in w.items()}))


def test_all_zero_weights_agree_on_rounding_residue(tmp_path, capsys):
    """Every true gradient is 0 and both sides return rounding residue (1e-16): measured against the
    size of the terms, the loss and the inputs, not against the residue itself."""
    code, out, err = run(["check", "--epochs", "3", "--json", "-", "--weights", _scaled_weights(tmp_path, 0)], capsys)
    data = json.loads(out)
    assert code == 0 and data["verdict"] == "agree", data["reason"]
    assert all(data[s]["verdict"] == "agree" for s in ("gradients", "finite_differences", "trajectory"))


def test_all_zero_weights_sit_on_an_unstable_point_reported_as_such(tmp_path, capsys):
    """Training from all-zero weights is decided by rounding (the symmetric point is unstable): the
    noise runs show it, and a long run is inconclusive, never a disagreement."""
    code, out, err = run(["check", "--epochs", "1000", "--weights", _scaled_weights(tmp_path, 0)], capsys)
    assert code == 3 and "INCONCLUSIVE" in out and "rounding amplified" in out, out


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "softplus"])
def test_large_weights_pass_the_finite_differences(activation, tmp_path, capsys):
    """Weights x 1000: |C| ~ 1e3, so h scales with the parameters and the rounding floor with |C|."""
    code, out, err = run(["check", "--epochs", "1", "--activation", activation, "--json", "-",
                          "--weights", _scaled_weights(tmp_path, 1000)], capsys)
    data = json.loads(out)
    assert data["finite_differences"]["verdict"] == "agree", data["finite_differences"]["checks"]


def test_keep_trajectory_streams_every_step_of_both_sides(tmp_path, capsys):
    path = tmp_path / "traj.npy"
    code, out, err = run(["check", "--epochs", "4", "--batch-size", "60", "--keep-trajectory", str(path),
                          "--json", "-"], capsys)
    assert code == 0, err
    a = np.load(path)
    assert a.shape == (9, 2, 51) and not np.isnan(a).any() and not (tmp_path / "traj.npy.partial").exists()
    w = manual.init_weights([4, 6, 3], "torch", seed=0)
    assert np.array_equal(a[0, 0], np.concatenate([w[k].ravel() for k in ("W1", "b1", "W2", "b2")]))
    assert np.abs(a[:, 0] - a[:, 1]).max() < 1e-12 < np.abs(a[-1, 0] - a[0, 0]).max()
    assert main(["check", "--epochs", "1", "--keep-trajectory", "/dev/null"]) == 2


def test_json_a_descriptor_open_for_reading_only_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    """`--json /dev/stdin < file` named a descriptor that exists but cannot be written: found only after
    the whole run (exit 4, Bad file descriptor) until the access mode was checked up front."""
    import compare.harness

    monkeypatch.setattr(compare.harness, "check", lambda *a, **k: pytest.fail("the run started"))
    src = tmp_path / "in.txt"
    src.write_text("x")
    with open(src) as f:
        code, out, err = run(["check", "--epochs", "1", "--json", f"/dev/fd/{f.fileno()}"], capsys)
    assert code == 2 and one_line(err) and "which is open for reading only" in err, err


def test_a_cuda_device_that_does_not_exist_lists_the_devices_that_do(capsys):
    import torch

    code, out, err = run(["check", "--epochs", "1", "--reference", "torch:cuda:2147483648"], capsys)
    expect = ("no such device; this machine has cpu, cuda:0" if torch.cuda.is_available()
              else "CUDA is not available on this machine (devices: cpu)")
    assert code == 2 and expect in err and one_line(err), err
