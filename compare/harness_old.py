"""The equivalence harness: one spec, one set of shared weights, two implementations, compared.

Sections (each a list of per-tensor checks, the first disagreement localised):
- forward:            z^l, a^l of every layer and the loss, on the whole training split
- gradients:          delta^l, dC/dW^l, dC/db^l of every layer, on the same batch
- finite_differences: manual's gradients against float64 central differences (a third opinion)
- trajectory:         a whole training run with the same order, masks and early-stopping rule:
                      the loss and every parameter after every step, accuracies, the stop epoch
float64 specs compare manual with torch directly; float32 specs compare both with a float64
reference run (see tolerances.py).
"""
from __future__ import annotations

import math
import platform
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

import manual
import torch_ref
from . import tolerances as tol
from .data import Split, iris_split
from .spec import Spec


def initial_weights(spec: Spec) -> dict[str, np.ndarray]:
    """The shared initial weights of ``spec``, in its dtype."""
    if spec.weights_file:
        w = manual.load_weights(spec.weights_file)
        sizes = manual.check_weights(w)
        if sizes != spec.sizes:
            raise ValueError(f"--weights {spec.weights_file!r} has layer sizes {sizes}; the spec needs {spec.sizes} "
                             f"(iris: 4 inputs, 3 classes; set --hidden to match)")
        return {k: w[k].astype(spec.np_dtype) for k in canonical_names(len(sizes) - 1)}
    return manual.init_weights(spec.sizes, spec.init, spec.seed, spec.dtype)


def canonical_names(L: int) -> list[str]:
    """W1, b1, W2, b2, ..., WL, bL: the order of every flattened parameter vector here."""
    return [f"{p}{l}" for l in range(1, L + 1) for p in "Wb"]


def training_order(spec: Spec, n: int = 120) -> np.ndarray:
    """(epochs, n) sample order of every epoch, indices into the training split's canonical order."""
    return manual.epoch_orders(n, spec.epochs, spec.batch_size or n, spec.seed)


class MaskSource:
    """Dropout masks drawn once from ``default_rng([seed, stream])`` and handed to both implementations
    (stream 1: the training run; stream 3: the single forward/gradient batch)."""

    def __init__(self, spec: Spec, stream: int = 1):
        self.p, self.dtype = spec.dropout, spec.np_dtype
        self.rng = np.random.default_rng([spec.seed, stream])
        self.cache: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, step: int, layer: int, shape) -> np.ndarray:
        key = (step, layer)
        if key not in self.cache:
            self.cache[key] = manual.dropout_mask(self.rng, self.p, shape, self.dtype)
        m = self.cache[key]
        if m.shape != tuple(shape):
            raise RuntimeError(f"mask for step {step} layer {layer} was drawn with shape {m.shape}, asked {shape}")
        return m

    def step_masks(self, step: int, sizes, n: int):
        return None if not self.p else [self(step, l, (n, sizes[l])) for l in range(1, len(sizes) - 1)]


# ---- results ---------------------------------------------------------------------------------
@dataclass
class TensorCheck:
    tensor: str                 # z1, a1, loss, delta1, dW1, db1, W1, b1, ...
    layer: int | None
    shape: list[int]
    max_abs: float              # manual against torch (float64) or against the float64 reference (float32)
    rel: float
    allowed: float
    ok: bool
    step: int | None = None     # trajectory: the step of the worst (or first failing) error
    index: list[int] | None = None  # where the worst error sits
    manual: float | None = None     # the two values there
    torch: float | None = None
    torch_rel: float | None = None  # the noise floor: torch's own float32 error against the float64
                                    # reference, or (float64 trajectories) torch's 1-ulp twin
    manual_vs_torch: float | None = None  # float32: manual against torch directly (information)


@dataclass
class Section:
    name: str
    agree: bool
    checks: list[TensorCheck]
    first_failure: TensorCheck | None = None
    notes: list[str] = field(default_factory=list)


def _worst(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    bad = ~(np.isfinite(a) & np.isfinite(b))
    d = np.where(bad, np.inf, np.abs(np.where(bad, 0, a - b)))
    i = np.unravel_index(int(np.argmax(d)), d.shape) if d.size else ()
    return [int(k) for k in i], (float(a[i]) if d.size else None), (float(b[i]) if d.size else None)


def check_tensor(name, layer, m, t, ref=None, step=None, floor=0.0) -> TensorCheck:
    """Compare manual ``m`` with torch ``t``; with a float64 ``ref`` (float32 runs) judge both against it.
    ``floor``: the group's denominator floor (tolerances.GROUP_FLOOR)."""
    m, t = np.asarray(m), np.asarray(t)
    if ref is None:
        max_abs, rel = tol.rel_error(m, t, floor)
        allowed, torch_rel, mvt = tol.FLOAT64_RTOL, None, None
    else:
        max_abs, rel = tol.rel_error(m, ref, floor)
        _, torch_rel = tol.rel_error(t, ref, floor)
        _, mvt = tol.rel_error(m, t, floor)
        allowed = tol.float32_allowed(torch_rel) if math.isfinite(torch_rel) else 0.0
    index, mv, tv = _worst(m, t)
    ok = math.isfinite(rel) and rel <= allowed and (torch_rel is None or math.isfinite(torch_rel))
    return TensorCheck(name, layer, list(m.shape), max_abs, rel, allowed, bool(ok), step, index, mv, tv,
                       torch_rel, mvt)


def _section(name, checks, notes=()) -> Section:
    bad = [c for c in checks if not c.ok]
    return Section(name, not bad, checks, bad[0] if bad else None, list(notes))


# ---- one forward/backward pass on each side --------------------------------------------------
def manual_pass(spec: Spec, weights, X, y, masks):
    net = manual.MLP.from_weights(weights, spec.activation, spec.output, spec.loss)
    loss, grads = net.gradients(X, y, masks)
    return {"loss": loss, "z": net.z, "a": net.a, "delta": net.delta, "grads": grads}


def torch_device(spec: Spec):
    """The torch device of the spec; on CUDA, float32 matmuls are forced to full precision (no TF32)."""
    import torch

    dev = torch.device(spec.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={spec.device!r}: CUDA is not available on this machine")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    elif dev.type != "cpu":
        raise ValueError(f"device={spec.device!r} is not supported; expected cpu or cuda[:N]")
    return dev


def torch_pass(spec: Spec, weights, X, y, masks):
    import torch

    dev = torch_device(spec)
    model = torch_ref.from_shared(weights, spec.activation, spec.output, spec.dropout, dev)
    model.train()
    with torch_ref.Probe(model) as probe:
        probe.masks = None if masks is None else [torch.as_tensor(m, device=dev) for m in masks]
        logits = model(torch.as_tensor(X, device=dev))
        loss = torch_ref.loss_fn(spec.loss)(logits, model.output(logits), torch.as_tensor(y, device=dev))
        loss.backward()
    L = len(model.sizes) - 1
    np_ = lambda t: t.detach().cpu().numpy()  # noqa: E731
    params = dict(model.named_parameters())
    grads = {k: np_(params[key].grad) for k, key in torch_ref.weight_map(L).items()}
    return {"loss": loss.item(), "z": [None] + [np_(z) for z in probe.z[1:]],
            "a": [X] + [np_(a) for a in probe.a[1:]], "delta": [None] + [np_(d) for d in probe.delta[1:]],
            "grads": grads}


def _passes(spec: Spec, weights, data: Split, masks):
    X, y = data.X_train, data.y_train
    m = manual_pass(spec, weights, X, y, masks)
    t = torch_pass(spec, weights, X, y, masks)
    ref = None
    if spec.np_dtype == np.float32:
        up = lambda d: {k: v.astype(np.float64) for k, v in d.items()}  # noqa: E731
        ref64 = Spec(**{**asdict(spec), "dtype": "float64", "weights_file": None})
        ref = torch_pass(ref64, up(weights), X.astype(np.float64), y,
                         None if masks is None else [mk.astype(np.float64) for mk in masks])
    return m, t, ref


def forward_and_gradient_sections(spec: Spec, weights, data: Split, masks) -> tuple[Section, Section]:
    m, t, r = _passes(spec, weights, data, masks)
    L = len(spec.sizes) - 1
    b = r if r is not None else t  # what manual is measured against
    R = (lambda key, l=None: None if r is None else (r[key] if l is None else r[key][l]))
    f_fwd = tol.group_floor(spec.dtype, *b["z"][1:], *b["a"][1:])
    f_delta = tol.group_floor(spec.dtype, *b["delta"][1:])
    f_grad = tol.group_floor(spec.dtype, *b["grads"].values())
    fwd = []
    for l in range(1, L + 1):
        fwd.append(check_tensor(f"z{l}", l, m["z"][l], t["z"][l], R("z", l), floor=f_fwd))
        fwd.append(check_tensor(f"a{l}", l, m["a"][l], t["a"][l], R("a", l), floor=f_fwd))
    fwd.append(check_tensor("loss", None, m["loss"], t["loss"], R("loss")))
    grad = []
    for l in range(L, 0, -1):
        grad.append(check_tensor(f"delta{l}", l, m["delta"][l], t["delta"][l], R("delta", l), floor=f_delta))
        for p in "Wb":
            k = f"{p}{l}"
            grad.append(check_tensor(f"d{k}", l, m["grads"][k], t["grads"][k],
                                     None if r is None else r["grads"][k], floor=f_grad))
    return _section("forward", fwd), _section("gradients", grad)


def finite_difference_section(spec: Spec, weights, data: Split, masks, max_coords: int = 400) -> Section:
    """manual's float64 BP gradient against central differences of manual's float64 loss."""
    w64 = {k: v.astype(np.float64) for k, v in weights.items()}
    X, y = data.X_train.astype(np.float64), data.y_train
    masks64 = None if masks is None else [mk.astype(np.float64) for mk in masks]
    net = manual.MLP.from_weights(w64, spec.activation, spec.output, spec.loss)
    _, grads = net.gradients(X, y, masks64)
    rng = np.random.default_rng([spec.seed, 2])
    h = tol.FD_STEP

    def loss_at():
        net._forward(X, masks64)
        return net.loss_f(net.z[net.L], net.a[net.L], manual.one_hot(y, spec.sizes[-1], np.float64), y)

    checks = []
    total = sum(p.size for p in net.params)
    scale = max(float(np.max(np.abs(g))) for g in grads.values())
    for name, p in zip(net.names, net.params):
        k = p.size if total <= max_coords else max(1, round(max_coords * p.size / total))
        coords = np.arange(p.size) if k >= p.size else np.sort(rng.choice(p.size, k, replace=False))
        flat = p.reshape(-1)
        fd = np.empty(len(coords))
        for j, c in enumerate(coords):
            old = flat[c]
            flat[c] = old + h
            up = loss_at()
            flat[c] = old - h
            down = loss_at()
            flat[c] = old
            fd[j] = (up - down) / (2 * h)
        bp = grads[name].reshape(-1)[coords]
        max_abs = float(np.max(np.abs(bp - fd))) if np.isfinite(fd).all() else float("inf")
        rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        index, mv, tv = _worst(bp, fd)
        checks.append(TensorCheck(f"d{name}", int(name[1:]), list(p.shape), max_abs, rel, tol.FD_RTOL,
                                  bool(rel <= tol.FD_RTOL), None, index, mv, tv))
    notes = [f"central differences, h = {h:g}, float64, error relative to max|dC/dtheta| = {scale:.3g} over all "
             "parameters; 'torch' holds the finite difference"]
    if total > max_coords:
        notes.append(f"{max_coords} of {total} coordinates sampled (seeded)")
    return _section("finite_differences", checks, notes)


# ---- whole training runs ---------------------------------------------------------------------
@dataclass
class Run:
    """One implementation's training run, as arrays: params[s] = every parameter after step s
    (row 0 = the initial weights), flattened in the order W1, b1, W2, b2, ..."""
    loss: np.ndarray
    params: np.ndarray
    train_accuracy: list[float]
    val_accuracy: list[float]
    epochs_run: int
    best_epoch: int | None
    stopped_early: bool
    final: dict[str, np.ndarray]          # after the last step
    restored: dict[str, np.ndarray] | None  # the best weights early stopping restored


def _flat(ws):
    return np.concatenate([np.asarray(w, dtype=np.float64).reshape(-1) for w in ws])


def run_manual(spec: Spec, weights, data: Split, order, masks: MaskSource | None, dtype=None) -> Run:
    dt = np.dtype(dtype or spec.dtype)
    w = {k: v.astype(dt) for k, v in weights.items()}
    net = manual.MLP.from_weights(w, spec.activation, spec.output, spec.loss)
    snaps = [_flat(net.params)]
    final = {}

    def cb(step, net_, loss):
        snaps.append(_flat(net_.params))

    h = manual.train(net, data.X_train.astype(dt), data.y_train, epochs=spec.epochs, lr=spec.lr,
                     optimizer=spec.optimizer, momentum=spec.momentum, weight_decay=spec.weight_decay,
                     betas=spec.betas, eps=spec.eps, batch_size=spec.batch_size, order=order,
                     dropout=spec.dropout, masks=_cast_masks(masks, dt), X_val=data.X_test.astype(dt),
                     y_val=data.y_test, patience=spec.patience, callback=cb)
    final = _unflat(snaps[-1], weights, dt)
    restored = net.weights() if h.restored_best else None
    return Run(np.array(h.loss), np.stack(snaps), h.train_accuracy, h.val_accuracy, h.epochs_run, h.best_epoch,
               h.stopped_early, final, restored)


def run_torch(spec: Spec, weights, data: Split, order, masks: MaskSource | None, dtype=None) -> Run:
    import torch

    dt = np.dtype(dtype or spec.dtype)
    dev = torch_device(spec)
    w = {k: v.astype(dt) for k, v in weights.items()}
    model = torch_ref.from_shared(w, spec.activation, spec.output, spec.dropout, dev)
    L = len(spec.sizes) - 1
    named = dict(model.named_parameters())
    params = [named[k] for k in torch_ref.weight_map(L).values()]
    flat = lambda: _flat([p.detach().cpu().numpy() for p in params])  # noqa: E731
    snaps = [flat()]
    T = lambda a: torch.as_tensor(a, device=dev)  # noqa: E731
    h = torch_ref.train(model, T(data.X_train.astype(dt)), T(data.y_train), loss=spec.loss, epochs=spec.epochs,
                        lr=spec.lr, optimizer=spec.optimizer, momentum=spec.momentum,
                        weight_decay=spec.weight_decay, betas=spec.betas, eps=spec.eps,
                        batch_size=spec.batch_size, X_val=T(data.X_test.astype(dt)), y_val=T(data.y_test),
                        patience=spec.patience, order=order, masks=_cast_masks(masks, dt),
                        callback=lambda s, m, l: snaps.append(flat()))
    final = _unflat(snaps[-1], weights, dt)
    restored = torch_ref.state_dict_to_shared(model) if h["restored_best"] else None
    return Run(np.array(h["loss"]), np.stack(snaps), h["train_accuracy"], h["val_accuracy"], h["epochs_run"],
               h["best_epoch"], h["stopped_early"], final, restored)


class _RoundingNoise:
    """While active, every torch optimiser step first moves each gradient entry by +-k * eps * max|g|
    (max over all parameters): the classic bound k * eps on the rounding error of a sum of k terms,
    with k = the terms summed on the way to a gradient entry: the batch rows, plus one dot product per
    layer forward (fan-in) and backward (fan-out), i.e. n + sum of the layer sizes.  That is the
    size of the per-step difference between two correct implementations that order those sums
    differently."""

    def __init__(self, seed: int, n: int):
        import torch

        self.gen, self.n, self.handle = torch.Generator().manual_seed(seed), n, None

    def _hook(self, optimizer, args, kwargs):
        import torch

        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return
        scale = float(torch.stack([g.abs().max() for g in grads]).max())
        for g in grads:
            sign = torch.randint(0, 2, g.shape, generator=self.gen, dtype=g.dtype).mul_(2).sub_(1)
            g.add_(sign.to(g.device), alpha=self.n * torch.finfo(g.dtype).eps * scale)

    def __enter__(self):
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        self.handle = register_optimizer_step_pre_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _cast_masks(masks, dt):
    if masks is None or not masks.p:
        return None
    return masks if masks.dtype == dt else (lambda s, l, shape: masks(s, l, shape).astype(dt))


def _unflat(vec, like, dt):
    return {k: vec[a:b].reshape(shape).astype(dt) for k, (a, b, shape) in _offsets(like).items()}


@dataclass
class Trajectory:
    section: Section
    steps: int
    manual: Run
    torch: Run
    noise: Run                     # the run that measures the noise floor (see trajectory_section)
    base: Run                      # what manual is measured against: torch (float64) or the float64 reference
    param_rel_per_step: np.ndarray  # max over tensors of manual's relative error after each step
    floor_per_step: np.ndarray      # the same for the noise run: the measured noise floor
    schedule: list[list[int]]
    horizon: int | None = None      # the first step not judged (noise-dominated), if any
    allowed_per_step: np.ndarray | None = None  # the relative error each step was allowed (inf: not judged)


def _offsets(weights):
    """name -> (start, stop, shape) in the flattened W1, b1, W2, ... vector."""
    offs, i = {}, 0
    for k in canonical_names(len(weights) // 2):
        offs[k] = (i, i + weights[k].size, weights[k].shape)
        i += weights[k].size
    return offs


def _per_step_rel(A, B, offs, loss_a, loss_b, dtype):
    """Relative error after every step (row 0 = before training), per tensor and for the loss."""
    out = {}
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        floor = tol.GROUP_FLOOR[str(np.dtype(dtype))] * np.abs(np.where(np.isfinite(B), B, 0)).max(1)  # all parameters at each step
        for k, (s, e, _) in offs.items():
            a, b = A[:, s:e], B[:, s:e]
            bad = ~(np.isfinite(a).all(1) & np.isfinite(b).all(1))
            d = np.abs(np.where(np.isfinite(a - b), a - b, 0)).max(1)
            scale = np.maximum(np.abs(np.where(np.isfinite(b), b, 0)).max(1), floor)
            r = np.where(d == 0, 0.0, d / scale)
            r[bad] = np.inf
            out[k] = r
        # the loss curve is one tensor: normwise over the steps so far (a single sample's loss can be
        # ~1e-6 while its terms are ~10, so its own relative error would measure cancellation)
        scale = np.maximum.accumulate(np.abs(np.where(np.isfinite(loss_b), loss_b, 0)))
        lr = np.where(loss_a == loss_b, 0.0, np.abs(loss_a - loss_b) / scale)
        out["loss"] = np.concatenate([[0.0], np.where(np.isfinite(lr), lr, np.inf)])
    return out


def _first_difference(a: list, b: list):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))


def trajectory_section(spec: Spec, weights, data: Split, masks: MaskSource | None = None) -> Trajectory:
    """Train both from the same weights with the same order and masks, and compare every step.

    A noise run measures how far two correct implementations drift apart (tolerances.py):
    - float64: torch started 1 ulp away (every initial weight moved to the next float64 up) whose
      gradients are moved by one rounding-error bound (+-k eps max|g|, see _RoundingNoise) before
      every step.  Manual is measured against torch; the noise run against torch too.
    - float32: torch in float32 with the same gradient moves (eps of float32).  Manual's float32
      run and the noise run are measured against a float64 reference run (the same float32 weights
      and inputs, computed in float64).
    float64 steps must agree to FLOAT64_RTOL; float32 steps to FLOAT32_ORDER times the noise floor
    (the noise run's largest error so far).  From the step where the noise run shows rounding
    amplified a NOISE_HORIZON-fold (chaotic dynamics: GD at the edge of stability, say), correct
    implementations diverge at a rate no tolerance can pin: those steps are reported, not judged.
    Epoch-level outcomes (accuracies, the early-stopping epoch, the restored weights) must be
    identical for epochs that end before that horizon.
    """
    order = training_order(spec, data.X_train.shape[0])
    masks = masks if masks is not None else (MaskSource(spec) if spec.dropout else None)
    m = run_manual(spec, weights, data, order, masks)
    t = run_torch(spec, weights, data, order, masks)
    f32 = spec.np_dtype == np.float32
    with _RoundingNoise(spec.seed, (spec.batch_size or order.shape[1]) + sum(spec.sizes)):
        start = weights if f32 else {k: np.nextafter(v, np.inf) for k, v in weights.items()}
        noise = run_torch(spec, start, data, order, masks)
    if f32:  # manual32 and the noisy torch32 are both measured against the float64 reference
        base = run_torch(spec, {k: v.astype(np.float64) for k, v in weights.items()}, data, order, masks, "float64")
    else:    # manual64 and the noisy torch64 are both measured against torch64
        base = t
    offs = _offsets(weights)
    notes, checks = [], []
    n = min(len(m.loss), len(t.loss), len(noise.loss))
    if len(m.loss) != len(t.loss):
        notes.append(f"manual ran {len(m.loss)} steps, torch {len(t.loss)}")
    rel_m = _per_step_rel(m.params[:n + 1], base.params[:n + 1], offs, m.loss[:n], base.loss[:n], spec.dtype)
    rel_n = _per_step_rel(noise.params[:n + 1], base.params[:n + 1], offs, noise.loss[:n], base.loss[:n], spec.dtype)
    # one floor per step: the noise run's largest divergence so far over all parameters and the loss
    # (the dynamics couple every tensor, so an amplification seen in one applies to all)
    floor = np.maximum.accumulate(np.max(np.stack([rel_n[k] for k in [*offs, "loss"]]), axis=0))
    amplified = np.flatnonzero(floor > tol.NOISE_HORIZON * np.finfo(spec.np_dtype).eps)
    horizon = int(amplified[0]) if len(amplified) else None  # the first step not judged
    if f32:
        allowed_s = tol.FLOAT32_ORDER * np.maximum(floor, tol.FLOAT32_MIN_FLOOR)
    else:
        allowed_s = np.full(n + 1, tol.FLOAT64_RTOL)
    if horizon is not None:
        allowed_s[horizon:] = np.inf
        notes.append(f"from step {horizon} on the noise run shows rounding amplified {tol.NOISE_HORIZON:g}-fold "
                     f"(chaotic dynamics): steps {horizon}..{n} are reported, not judged")
    first_fail = None
    for k in [*offs, "loss"]:
        rm = rel_m[k]
        fails = np.flatnonzero(~(rm <= allowed_s))
        s = int(fails[0]) if len(fails) else int(np.argmax(rm))
        if k == "loss":
            mv, tv = (float(m.loss[s - 1]), float(t.loss[s - 1])) if s > 0 else (None, None)
            idx, shape, ma = [], [], (abs(mv - tv) if s > 0 else 0.0)
        else:
            a, b, e = offs[k]
            va, vb = m.params[s, a:b].reshape(e), t.params[s, a:b].reshape(e)
            idx, mv, tv = _worst(va, vb)
            ma, shape = float(np.max(np.abs(va - vb))), list(e)
        c = TensorCheck(k, None if k == "loss" else int(k[1:]), shape, ma, float(rm[s]), float(allowed_s[s]),
                        not len(fails), s, idx, mv, tv, float(floor[s]))
        checks.append(c)
        if len(fails) and (first_fail is None or s < first_fail.step):
            first_fail = c
    # Epoch-level outcomes are discrete (an arg-max can flip on a rounding-sized difference only
    # in a near-tie), so they must be identical for every epoch that ends before the horizon.
    steps_per_epoch = len(range(0, order.shape[1], spec.batch_size or order.shape[1]))

    def judged(epoch_index):  # 0-based epoch
        return horizon is None or (epoch_index + 1) * steps_per_epoch < horizon

    for k in ("train_accuracy", "val_accuracy"):
        e = _first_difference(getattr(m, k), getattr(t, k))
        if e is not None:
            mv, tv = getattr(m, k), getattr(t, k)
            notes.append(f"{k} differs first after epoch {e + 1}: manual {mv[e] if e < len(mv) else None}, "
                         f"torch {tv[e] if e < len(tv) else None}" + ("" if judged(e) else " (beyond the horizon)"))
            if judged(e):
                checks.append(TensorCheck(k, None, [], float("inf"), float("inf"), 0.0, False,
                                          (e + 1) * steps_per_epoch))
    for k in ("epochs_run", "best_epoch", "stopped_early"):
        if getattr(m, k) != getattr(t, k):
            e = min(m.epochs_run, t.epochs_run) - 1
            notes.append(f"{k} differs: manual {getattr(m, k)}, torch {getattr(t, k)}" +
                         ("" if judged(e) else " (beyond the horizon)"))
            if judged(e):
                checks.append(TensorCheck(k, None, [], float("inf"), float("inf"), 0.0, False,
                                          (e + 1) * steps_per_epoch))
    # the weights early stopping restored (the best epoch's), as each implementation restored them
    if (m.restored is None) != (t.restored is None):
        notes.append(f"restored best weights: manual {m.restored is not None}, torch {t.restored is not None}")
        checks.append(TensorCheck("restored", None, [], float("inf"), float("inf"), 0.0, False))
    elif m.restored is not None and m.best_epoch == t.best_epoch and judged(m.best_epoch - 1):
        ref_restored = base.restored if f32 else None
        gfloor = tol.group_floor(spec.dtype, *(ref_restored or t.restored).values())
        for k in offs:
            checks.append(check_tensor(f"restored {k}", int(k[1:]), m.restored[k], t.restored[k],
                                       None if ref_restored is None else ref_restored[k], floor=gfloor))
    sec = _section("trajectory", checks, notes)
    if first_fail is not None:
        sec.first_failure = first_fail  # the earliest failing step, not the first tensor in the list
    per_step = np.max(np.stack([rel_m[k] for k in offs]), axis=0)
    floor_s = np.max(np.stack([rel_n[k] for k in offs]), axis=0)
    B = spec.batch_size or order.shape[1]
    sched = [order[e, i:i + B].tolist() for e in range(m.epochs_run) for i in range(0, order.shape[1], B)]
    return Trajectory(sec, n, m, t, noise, base, per_step, floor_s, sched, horizon, allowed_s)


# ---- everything --------------------------------------------------------------------------------
@dataclass
class CheckResult:
    agree: bool
    config: dict
    environment: dict
    forward: Section
    gradients: Section
    finite_differences: Section
    trajectory: Section
    steps: int

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else str(x)  # JSON has no NaN/Inf: "nan", "inf", "-inf"
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def environment(spec: Spec) -> dict:
    import torch

    env = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
           "platform": platform.platform(), "device": spec.device}
    if torch.device(spec.device).type == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name(torch.device(spec.device))
        env["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        env["allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return env


@contextmanager
def one_torch_thread():
    """Iris-sized tensors: extra torch threads only cost, and spin badly on a busy machine (a float32
    trajectory took 50 s instead of 3 s with two threads while other jobs ran)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_check(spec: Spec, data: Split | None = None, progress: Callable[[str], None] | None = None
              ) -> tuple[CheckResult, Trajectory]:
    with one_torch_thread():
        return _run_check(spec, data, progress)


def _run_check(spec, data, progress):
    data = data if data is not None else iris_split(spec.dtype, spec.standardize)
    weights = initial_weights(spec)
    say = progress or (lambda s: None)
    step0 = MaskSource(spec, stream=3).step_masks(0, spec.sizes, data.X_train.shape[0]) if spec.dropout else None
    say("forward and gradients")
    fwd, grad = forward_and_gradient_sections(spec, weights, data, step0)
    say("finite differences")
    fd = finite_difference_section(spec, weights, data, step0)
    say("trajectory")
    traj = trajectory_section(spec, weights, data)
    ok = fwd.agree and grad.agree and fd.agree and traj.section.agree
    res = CheckResult(ok, asdict(spec), environment(spec), fwd, grad, fd, traj.section, traj.steps)
    return res, traj
