"""torch_ref/ on its own: the weight mapping, the probe, normal-use training; and autograd equality."""
import ast
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

import manual
import torch_ref
from compare import tolerances as tol
from helpers import ACTIVATIONS, PAIRS, zeroing_hook

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shared_state_dict_shared_round_trip_is_bit_exact(dtype):
    w = manual.init_weights([4, 5, 6, 3], seed=3, dtype=dtype)
    model = torch_ref.from_shared(w, "tanh", "softmax")
    assert model.net.fc1.weight.dtype == getattr(torch, dtype)
    back = torch_ref.state_dict_to_shared(model)
    assert back.keys() == w.keys()
    assert all(back[k].dtype == w[k].dtype and back[k].tobytes() == w[k].tobytes() for k in w)
    assert torch_ref.weight_map(2) == {"W1": "net.fc1.weight", "b1": "net.fc1.bias",
                                       "W2": "net.fc2.weight", "b2": "net.fc2.bias"}


@pytest.mark.parametrize("change,message", [
    (lambda w: w.pop("b2"), r"missing \['b2'\]"),
    (lambda w: w.update(W9=np.zeros((2, 2))), r"unexpected \['W9'\]"),
    (lambda w: w.update(W2=np.zeros((3, 5))), r"tensor W2 has shape \(3, 5\); net.fc2.weight expects \(3, 6\)"),
    (lambda w: w.update(b1=np.zeros(7)), r"tensor b1 has shape \(7,\); net.fc1.bias expects \(6,\)"),
])
def test_the_mapping_fails_loudly(change, message):
    w = manual.init_weights([4, 6, 3], seed=0)
    model = torch_ref.MLP([4, 6, 3])
    change(w)
    with pytest.raises(ValueError, match=message):
        torch_ref.shared_to_state_dict(w, model)


def test_the_probe_records_without_changing_the_model():
    w = manual.init_weights([4, 6, 5, 3], seed=1)
    model = torch_ref.from_shared(w, "relu", "softmax")
    x = torch.randn(7, 4, dtype=torch.float64)
    plain = model(x).detach()
    with torch_ref.Probe(model) as probe:
        z = model(x)
        torch_ref.loss_fn("cross_entropy")(z, model.output(z), torch.tensor([0, 1, 2, 0, 1, 2, 0])).backward()
    assert torch.equal(z.detach(), plain)
    assert [t.shape for t in probe.z[1:]] == [(7, 6), (7, 5), (7, 3)]
    assert torch.equal(probe.a[1], torch.relu(probe.z[1]))
    assert all(d is not None for d in probe.delta[1:])
    assert not model.net.fc1._forward_hooks, "the probe removes its hooks"


def test_normal_use_training_uses_torch_rng_and_is_seeded():
    from compare.data import iris_split

    s = iris_split(standardize=True)
    X, y = torch.from_numpy(s.X_train), torch.from_numpy(s.y_train)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)  # nn.Dropout's masks
        model = torch_ref.from_shared(manual.init_weights([4, 8, 3], seed=0), "relu", "softmax", dropout=0.2)
        h = torch_ref.train(model, X, y, loss="cross_entropy", epochs=5, lr=0.1, batch_size=16,
                            generator=torch.Generator().manual_seed(1))
        runs.append(h["loss"])
    assert runs[0] == runs[1] and len(runs[0]) == 5 * 8
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules())



@pytest.mark.parametrize("in_place", [False, True])
def test_training_steps_with_the_gradients_the_hook_returns(in_place):
    """New arrays are copied into p.grad; arrays changed in place and handed back are p.grad already."""
    from compare.data import iris_split

    s = iris_split()
    w = manual.init_weights([4, 5, 3], seed=1)
    model = torch_ref.from_shared(w)

    torch_ref.train(model, torch.from_numpy(s.X_train), torch.from_numpy(s.y_train), loss="cross_entropy", epochs=2,
                    lr=0.1, batch_size=60, grad_hook=zeroing_hook(in_place))
    assert all(np.array_equal(v, w[k]) for k, v in torch_ref.state_dict_to_shared(model).items())


def test_the_model_owns_contiguous_copies_of_any_layout():
    w = {k: np.asfortranarray(v) for k, v in manual.init_weights([4, 5, 3], seed=2).items()}
    model = torch_ref.from_shared(w)
    assert all(p.is_contiguous() for p in model.parameters())
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert np.array_equal(w["W1"], manual.init_weights([4, 5, 3], seed=2)["W1"])  # the caller's arrays untouched
    for path in (ROOT / "torch_ref").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(n == "manual" or n.startswith("manual.") for n in names), path
    code = "import sys, torch_ref; assert 'manual' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("output,loss", PAIRS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_equal_autograd_to_1e12(activation, output, loss, depth):
    """Random networks and inputs, float64: manual's BP against torch autograd, per tensor."""
    rng = np.random.default_rng(depth)
    sizes = [5] + [7] * (depth - 1) + [4]
    w = {k: v + rng.normal(0, 0.2, v.shape) for k, v in manual.init_weights(sizes, "xavier", depth).items()}
    X, y = rng.normal(size=(9, 5)), rng.integers(0, 4, 9)
    net = manual.MLP.from_weights(w, activation, output, loss)
    loss_m, grads_m = net.gradients(X, y)
    model = torch_ref.from_shared(w, activation, output)
    z = model(torch.from_numpy(X))
    c = torch_ref.loss_fn(loss)(z, model.output(z), torch.from_numpy(y))
    c.backward()
    params = dict(model.named_parameters())
    grads_t = {k: params[key].grad.numpy() for k, key in torch_ref.weight_map(depth).items()}
    floor = tol.group_floor("float64", *grads_t.values())
    worst = max(tol.rel_error(grads_m[k], grads_t[k], floor)[1] for k in grads_t)
    assert worst <= 1e-12, f"relative gradient error {worst:.3g}"
    assert abs(loss_m - c.item()) <= 1e-12 * abs(c.item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (CI has none)")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_reference_agrees_with_manual_and_forces_full_float32_precision(dtype):
    from compare.harness import check
    from compare.spec import Spec

    res, _ = check("manual", "torch:cuda", Spec(dtype=dtype, epochs=50))
    assert res.verdict == "agree", res.reason
    if dtype == "float64":
        assert max(c.rel for s in (res.forward, res.gradients) for c in s.checks) <= 1e-12
    info = res.environment["reference"]
    assert info["allow_tf32"] is False and info["float32_matmul_precision"] == "highest"
