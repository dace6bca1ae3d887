"""What is timed: the cases (networks, batch, dtype) and, per library, the functions the workers time.

Each builder returns ``{what: (prepare or None, fn, reset)}``: ``fn(prepare())`` is timed, ``reset()``
(untimed, before every block) puts the initial weights back, so that every side times the same steps
from the same state.  manual's and torch's functions are here, JAX's in cases_jax.py (imported only
by the JAX worker).  None of the builders imports another library than its own (and NumPy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    sizes: tuple
    batch: int
    dtype: str
    lr: float = 0.1

    @property
    def gemm_flop(self) -> float:
        """Floating-point operations of one step's matrix products: forward 2n sum n_l n_{l-1}, dC/dW the
        same again, and the back-propagated (W^{l+1})^T delta^{l+1} for l >= 1 (no side computes dC/dX)."""
        prods = [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True)]
        return 2.0 * self.batch * (2 * sum(prods) + sum(prods[1:]))


CASES = [
    Case("iris", "iris 4-6-3, n=120, float64", (4, 6, 3), 120, "float64", lr=0.2),
    Case("mnist", "784-256-10, n=128, float32", (784, 256, 10), 128, "float32"),
    Case("big32", "1024-1024-1024-10, n=512, float32", (1024, 1024, 1024, 10), 512, "float32"),
    Case("big64", "1024-1024-1024-10, n=512, float64", (1024, 1024, 1024, 10), 512, "float64"),
]
CASE = {c.key: c for c in CASES}
GEMM_N = 1024
MIN_REPS = 3  # per block: the median of three, also for the whole 1000-epoch runs
RUN_EPOCHS = 1000
WHATS = ("loss+grad", "step", "gradients()")
TARGETS = {  # (case, what): the targets, manual/torch time
    ("iris", "step"): 0.20,
    ("big32", "step"): 1.00,
    ("run", "1000 epochs"): 0.25,
}
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT",
                 "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
SIDES = ("numpy", "torch", "jax")  # one worker process each
COLUMN = {"numpy": "manual", "torch": "torch", "jax": "jax"}  # a side's name in the tables and the JSON


def functions(side: str, case: Case) -> dict:
    """The timed functions of ``case`` on ``side`` (imports that side's library only)."""
    if side == "jax":
        import cases_jax

        return cases_jax.jax_functions(case)
    return numpy_functions(case) if side == "numpy" else torch_functions(case)


# ---- the benchmarked functions, one set per side (JAX's: cases_jax.py) ------------------------------
def _data(case: Case):
    """(X, y, X_val, y_val) as NumPy arrays: the iris split, or seeded random inputs and labels."""
    import numpy as np

    if case.key == "iris":
        from compare.data import iris_split

        s = iris_split(case.dtype)
        return s.X_train, s.y_train, s.X_test, s.y_test
    rng = np.random.default_rng(0)
    X = rng.standard_normal((case.batch, case.sizes[0])).astype(case.dtype)
    return X, rng.integers(0, case.sizes[-1], case.batch), None, None


def _weights(case: Case):
    """Shared initial weights, torch.nn.Linear's scheme, drawn without importing manual or torch."""
    import numpy as np

    rng = np.random.default_rng(0)
    w = {}
    for l, (fan_in, fan_out) in enumerate(zip(case.sizes[:-1], case.sizes[1:], strict=True), start=1):
        bound = 1.0 / math.sqrt(fan_in)
        w[f"W{l}"] = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(case.dtype)
        w[f"b{l}"] = rng.uniform(-bound, bound, fan_out).astype(case.dtype)
    return w


def numpy_functions(case: Case) -> dict:
    """name -> (prepare or None, fn, reset): fn(prepare()) is timed; reset() (untimed, before every block)
    puts the initial weights back, so that both sides time the same steps from the same state."""
    import numpy as np

    import manual

    w = _weights(case)
    X, y, Xv, yv = _data(case)
    net = manual.MLP.from_weights(w, "sigmoid", "softmax", "cross_entropy")
    opt = manual.make_optimizer("sgd", net.params, case.lr)
    Y = manual.one_hot(y, case.sizes[-1], net.dtype)
    fast = manual.FastPath(net)  # as manual.train's loop

    def loss_grad(_):
        loss, grads = fast.loss_and_gradients(X, Y, y)
        if not math.isfinite(loss):
            raise FloatingPointError(loss)
        return grads

    def step(_):
        opt.step(loss_grad(None))

    def reset():
        net.set_weights(w)

    fns = {"loss+grad": (None, loss_grad, reset), "step": (None, step, reset),
           "gradients()": (None, lambda _: net.gradients(X, y), reset)}
    if case.key == "iris":
        order = np.tile(np.arange(len(y)), (RUN_EPOCHS, 1))  # what the harness passes: canonical order
        fns["1000 epochs"] = (lambda: manual.MLP.from_weights(w, "sigmoid", "softmax", "cross_entropy"),
                              lambda n: manual.train(n, X, y, epochs=RUN_EPOCHS, lr=case.lr, order=order,
                                                     X_val=Xv, y_val=yv), lambda: None)
    return fns


def torch_functions(case: Case) -> dict:
    import numpy as np
    import torch

    import torch_ref

    w = _weights(case)
    X, y, Xv, yv = _data(case)
    model = torch_ref.from_shared(w, "sigmoid", "softmax")
    criterion = torch_ref.loss_fn("cross_entropy")
    opt = torch_ref.make_optimizer("sgd", model.parameters(), case.lr)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    model.train()

    def loss_grad(_):  # torch_ref.train's inner loop without the batch indexing
        opt.zero_grad()
        logits = model(Xt)
        c = criterion(logits, None, yt)  # cross-entropy on the logits: a^L is not needed
        value = c.item()
        if not math.isfinite(value):
            raise FloatingPointError(value)
        c.backward()

    def step(_):
        loss_grad(None)
        opt.step()

    initial = {k: v.clone() for k, v in model.state_dict().items()}

    def reset():
        model.load_state_dict(initial)

    fns = {"loss+grad": (None, loss_grad, reset), "step": (None, step, reset), "gradients()": (None, loss_grad, reset)}
    if case.key == "iris":
        order = np.tile(np.arange(len(y)), (RUN_EPOCHS, 1))
        Xvt, yvt = torch.from_numpy(Xv), torch.from_numpy(yv)
        fns["1000 epochs"] = (lambda: torch_ref.from_shared(w, "sigmoid", "softmax"),
                              lambda m: torch_ref.train(m, Xt, yt, loss="cross_entropy", epochs=RUN_EPOCHS,
                                                        lr=case.lr, order=order, X_val=Xvt, y_val=yvt), lambda: None)
    return fns


def gemm_operands(dtype: str):
    import numpy as np

    rng = np.random.default_rng(1)
    return tuple(rng.standard_normal((GEMM_N, GEMM_N)).astype(dtype) for _ in range(2))


def gemm_function(side: str, dtype: str):
    import numpy as np

    if side == "jax":
        import cases_jax

        return cases_jax.gemm_function(dtype)
    A, B = gemm_operands(dtype)
    C = np.empty_like(A)
    if side == "numpy":
        return None, lambda _: np.matmul(A, B, out=C), lambda: None
    import torch

    At, Bt, Ct = torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(C)
    return None, lambda _: torch.mm(At, Bt, out=Ct), lambda: None


def product_operands(case: Case):
    """([a^0..a^{L-1}], [None, delta^1..delta^L], [None, W^1..W^L]): random operands of a step's shapes."""
    import numpy as np

    rng = np.random.default_rng(2)
    w, L, n = _weights(case), len(case.sizes) - 1, case.batch
    A = [rng.standard_normal((n, case.sizes[l])).astype(case.dtype) for l in range(L)]             # a^{l-1}
    D = [None] + [rng.standard_normal((n, case.sizes[l])).astype(case.dtype) for l in range(1, L + 1)]  # delta^l
    return A, D, [None] + [w[f"W{l}"] for l in range(1, L + 1)]


def products_function(side: str, case: Case):
    """The matrix products of one training step of ``case``, as manual.FastPath makes them (in
    their order; torch's autograd and XLA order and transpose their own), on random operands of the same
    shapes: their values do not matter to the speed.  The bias column sums are left to the element-wise work."""
    import numpy as np

    if side == "jax":
        import cases_jax

        return cases_jax.products_function(case)
    A, D, W = product_operands(case)
    L = len(case.sizes) - 1
    if side == "numpy":
        mm, T = (lambda x, y, out: np.matmul(x, y, out=out)), (lambda x: x.T)  # noqa: E731
    else:
        import torch

        A, D, W = ([None if x is None else torch.from_numpy(x) for x in xs] for xs in (A, D, W))
        mm, T = (lambda x, y, out: torch.mm(x, y, out=out)), (lambda x: x.t())  # noqa: E731
    Z = [None] + [D[l] * 0 for l in range(1, L + 1)]    # outputs: z^l, then (W^{l+1})^T delta^{l+1}
    G = [None] + [W[l] * 0 for l in range(1, L + 1)]    # dC/dW^l

    def products(_):
        for l in range(1, L + 1):
            mm(A[l - 1], T(W[l]), Z[l])          # z^l = a^{l-1} (W^l)^T
        for l in range(L - 1, 0, -1):
            mm(D[l + 1], W[l + 1], Z[l])         # delta^{l+1} W^{l+1}
        for l in range(1, L + 1):
            mm(T(D[l]), A[l - 1], G[l])          # dC/dW^l = (delta^l)^T a^{l-1}
    return None, products, lambda: None
