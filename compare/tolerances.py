"""Every tolerance of the cross-check, in one place, each with its reason.

Errors are measured per tensor: max-abs  = max |a - b|,
                                relative = max |a - b| / max |b|   (normwise; 0 when both are all zero).
NaN or Inf on either side is a disagreement, never masked.
"""
import numpy as np

# float64: manual and torch evaluate the same formulas in a different order (BLAS blocking,
# fused kernels such as log_softmax, torch's lerp in Adam), so they differ by a few ulps per
# operation.  Measured worst cases: 5e-15 for one forward/backward on random nets of every
# activation/output/loss at depths 1-3; a few 1e-13 after thousands of training steps on iris
# (rounding differences grow mildly through the training dynamics).  1e-10 leaves three orders of
# magnitude for that growth, and still sits 5+ orders below the smallest planted bug we catch.
FLOAT64_RTOL = 1e-10

# float64 trajectories where the dynamics amplify rounding (gradient descent at the edge of
# stability: raw iris with lr >= 0.3, or lr = 0.2 after ~1000 epochs) drift apart by up to 1e-1
# although every single step agrees to 1e-15.  There the floor is measured: torch restarted with
# every initial weight moved 1 ulp.  Manual may differ from torch by at most FLOAT64_ORDER times that
# twin's distance so far (measured: at most 4.8x on iris GD, lr 0.2-0.5), or FLOAT64_RTOL, whichever
# is larger.  A planted bug differs by >1e-6 from the first step, while the floor is still ~1e-16.
FLOAT64_ORDER = 10.0

# float32: no fixed constant.  Both float32 runs are compared with a float64 reference run of the
# same problem (the same float32-rounded weights and inputs, computed in float64); torch's own
# float32 error against that reference is the measured noise floor.  Manual's float32 error must be
# of the same order: at most FLOAT32_ORDER times the floor.  The floor never goes below
# FLOAT32_MIN_FLOOR (a few float32 ulps), so an exact torch result (error 0) does not demand that
# manual be exact too.  For trajectories the floor at step s is torch's largest error up to s.
FLOAT32_ORDER = 10.0
FLOAT32_MIN_FLOOR = 8 * float(np.finfo(np.float32).eps)  # ~9.5e-7

# Central finite differences in float64 with step FD_STEP.  Their absolute error is about the same
# for every coordinate, so it is measured against the largest gradient entry of the whole network
# (max |bp - fd| / max |dC/dtheta|), not per tensor.  Truncation error ~ h^2 |C'''| / 6 and rounding
# error ~ eps |C| / h are each ~1e-10 here (raw iris inputs reach 7.9, so third derivatives reach
# ~500), two orders below FD_RTOL relative to gradients of order 1e-3..1.  FD is not defined at
# kinks (ReLU at 0, |.| at 0, hinge at margin 0): gradient-check tests keep inputs away from them.
FD_STEP = 1e-6
FD_RTOL = 1e-7


def rel_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(max-abs, normwise relative) error of ``a`` against ``b``; inf if either has NaN/Inf."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf"), float("inf")
    if a.size == 0:
        return 0.0, 0.0
    max_abs = float(np.max(np.abs(a - b)))
    scale = float(np.max(np.abs(b)))
    if max_abs == 0.0:
        return 0.0, 0.0
    return max_abs, (max_abs / scale if scale > 0 else float("inf"))


def float32_allowed(torch_rel: float) -> float:
    """The relative error manual's float32 result may have, given torch's float32 error."""
    return FLOAT32_ORDER * max(torch_rel, FLOAT32_MIN_FLOOR)


def allowed(dtype, torch_rel: float | None = None) -> float:
    return FLOAT64_RTOL if np.dtype(dtype) == np.float64 else float32_allowed(torch_rel)
