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

# Trajectories: some training runs amplify rounding (gradient descent at the edge of stability:
# raw iris with lr >= 0.3, or lr = 0.2 after ~1200 epochs; SGD with momentum at lr 0.05).  There two
# correct implementations drift apart exponentially, to ~1e-1, although every single step agrees to
# 1e-15.  A noise run measures this: torch itself, restarted 1 ulp away and with one rounding-error
# bound (+-k eps max|g|) added to every gradient before every step.  (Adam is such an amplifier too:
# a gradient that cancels to exactly 0 in one summation order and to 5e-17 in another becomes a step
# of lr * g / eps ~ 3e-10.)  From the first step where the noise run's divergence exceeds
# NOISE_HORIZON * eps (rounding amplified a thousandfold), the steps are reported but not judged:
# in exponential divergence the level at a given step depends on the exact perturbation (measured:
# manual leads the noise run by 20-70 steps, by factors of 1-80), so no tolerance could be honest.
# Before that step the normal tolerance applies.  Every planted bug shows at steps 1-2, where the
# noise run is still ~1e-16 apart; stable runs (the defaults, the test matrix) never reach it.
NOISE_HORIZON = 1e3

# float32: no fixed constant.  Both float32 runs are compared with a float64 reference run of the
# same problem (the same float32-rounded weights and inputs, computed in float64); torch's own
# float32 error against that reference is the measured noise floor (for trajectories: torch's
# float32 run with one batch-sum rounding error, +-n * eps32 * max|g|, added to its gradients before every step,
# so that amplifiers such as Adam on a cancelled gradient show in the floor as well).  Manual's float32 error must be
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


# Unit tests that check manual/ against a float64 computation written out in the test itself (the
# same formulas evaluated in another order: a few ulp per operation through a net of depth <= 3, so
# ~1e-15; HAND_ATOL for entries that cancel to ~0), or against torch.optim on plain float64 arrays
# (1-3 steps of the same update; torch rounds p.add_(g, alpha=-lr) its own way: a few ulp).  Every
# bug these tests are for (a wrong formula, a missing mask or bias correction) is >= 1e-3 relative.
HAND_RTOL, HAND_ATOL = 1e-12, 1e-15
OPTIM_RTOL, OPTIM_ATOL = 1e-14, 1e-15

# A tensor whose entries are all far smaller than the rest of its group (say db1 of a hinge loss,
# whose per-sample terms +-1/(nC) cancel to exactly 0 in one implementation and to 5e-17 in the
# other) has no meaningful relative error of its own: it is the rounding residue of sums of terms as
# large as the group.  Its denominator is floored at GROUP_FLOOR[dtype] times the largest |value| in
# its group (all z^l and a^l; all delta^l; all gradients; all parameters at a step).
# - float64: 1e-4, so one rounding error at the group scale reads as eps/1e-4 ~ 2e-12, 1/45 of
#   FLOAT64_RTOL, while a tensor above 1e-4 of the group keeps its own relative error.
# - float32: 1, i.e. normwise over the group: eps32 ~ 1.2e-7 is already 1/8 of the smallest float32
#   allowance (10 x FLOAT32_MIN_FLOOR), so any smaller floor would measure cancellation noise.
GROUP_FLOOR = {"float64": 1e-4, "float32": 1.0}


def rel_error(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> tuple[float, float]:
    """(max-abs, normwise relative) error of ``a`` against ``b``; inf if either has NaN/Inf.
    The denominator is max(max|b|, floor); see GROUP_FLOOR."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf"), float("inf")
    if a.size == 0:
        return 0.0, 0.0
    max_abs = float(np.max(np.abs(a - b)))
    scale = max(float(np.max(np.abs(b))), floor)
    if max_abs == 0.0:
        return 0.0, 0.0
    return max_abs, (max_abs / scale if scale > 0 else float("inf"))


def float32_allowed(torch_rel: float) -> float:
    """The relative error manual's float32 result may have, given torch's float32 error."""
    return FLOAT32_ORDER * max(torch_rel, FLOAT32_MIN_FLOOR)


def allowed(dtype, torch_rel: float | None = None) -> float:
    return FLOAT64_RTOL if np.dtype(dtype) == np.float64 else float32_allowed(torch_rel)


def group_floor(dtype, *tensors) -> float:
    """GROUP_FLOOR[dtype] times the largest finite |value| among ``tensors``."""
    m = 0.0
    for t in tensors:
        t = np.asarray(t, dtype=np.float64)
        fin = t[np.isfinite(t)]
        if fin.size:
            m = max(m, float(np.max(np.abs(fin))))
    return GROUP_FLOOR[str(np.dtype(dtype))] * m
