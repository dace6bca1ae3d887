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

# Trajectories are judged step by step against an envelope measured in the same run.  Each
# implementation makes a noise run besides its own run: the same training from weights moved by
# one rounding error (x (1 +- eps), exact zeros stay zero) whose gradients are moved by NOISE_REL
# rounding errors before every step: a nonzero entry g of tensor G by u NOISE_REL eps (|g| + max|G|) (max over that tensor; over the
# size of the terms it sums where the whole tensor is cancellation residue),
# u uniform in [-1, 1].  That is the size of the difference two correct implementations make when
# they sum the same terms in another order (relative to the terms, whose scale max|G| stands for:
# an entry that cancels to ~1e-17 in one order may be 5e-17 in another, and Adam turns either into a
# step of lr g / eps), and never a change to a structural zero: an entry exactly zero at that step in
# both implementations' runs (a dead ReLU unit, a dropped unit).  An entry zero on one side only is
# a cancellation and is moved like any other.
# The noise run's distance from its own unperturbed run, largest so far (looking ENVELOPE_LEAD
# steps ahead), is the measured noise at step t; the envelope is the smaller of the two sides' (a bug that destabilises one side cannot
# widen its own allowance).  Step t may differ by TRAJECTORY_RTOL[dtype] + ENVELOPE_FACTOR x envelope:
# in stable runs the envelope stays within a few hundred eps and the dtype tolerance rules; in
# runs that amplify rounding (gradient descent at the edge of stability, momentum at a large lr)
# the allowance grows with the measured amplification.  Where the envelope passes ENVELOPE_LIMIT,
# no comparison can tell a bug from chance: those steps are reported, not judged, and a run with
# fewer than MIN_JUDGED_FRACTION of its steps judged is inconclusive, never agreement.
# NOISE_REL = 8: a gradient entry is a sum over the batch of products through the layers; two
# correct orders of summation differ by a few eps relative to the terms (measured: the noise runs'
# distance is >= the candidate-reference distance at every step over the test matrix, see
# tests/test_trajectory_verdicts.py).  ENVELOPE_FACTOR = 10 leaves an order of magnitude for the
# chance that two runs' rounding walks apart further than the noise run's.
# ENVELOPE_LEAD: where the dynamics amplify rounding, the burst comes a few steps earlier or later
# in each run, by chance (measured: float32 GD at lr 0.5 on raw iris, manual vs torch jumps from
# 2e-7 to 2e-5 at steps 90-95, the noise runs at steps 95-100).  The noise level at step t is
# therefore the largest up to step t + ENVELOPE_LEAD.  Planted bugs show at steps 1-2, long before.
NOISE_REL = 8.0
ENVELOPE_FACTOR = 10.0
ENVELOPE_LEAD = 50
ENVELOPE_LIMIT = 1e-3
MIN_JUDGED_FRACTION = 0.5
# float64: FLOAT64_RTOL (above).  float32: the two implementations' float32 runs are compared
# directly; one step differs by a few float32 ulps of the largest parameter (~1e-7), so 1e-5
# leaves two orders for the first steps before the envelope takes over, and sits two orders below
# the smallest planted bug.
TRAJECTORY_RTOL = {"float64": FLOAT64_RTOL, "float32": 1e-5}

# float32 single passes (forward, gradients): no fixed constant.  Both sides' float32 results are
# compared with the reference's float64 run of the same problem (the same float32-rounded weights
# and inputs, computed in float64).  Each side's own float32 error against its float64 run is a
# measured noise floor; the tighter of the two is the floor.  The candidate's float32 error must
# be of the same order: at most FLOAT32_ORDER times the floor.  The floor never goes below
# FLOAT32_MIN_FLOOR (a few float32 ulps), so an exact result (error 0) on one side does not demand
# that the other be exact too.
FLOAT32_ORDER = 10.0
FLOAT32_MIN_FLOOR = 8 * float(np.finfo(np.float32).eps)  # ~9.5e-7

# Central finite differences in float64 with step FD_STEP x max(1, |theta_j|).  Their absolute error is about the same
# for every coordinate, so it is measured against the largest gradient entry of the whole network
# (max |bp - fd| / max |dC/dtheta|), not per tensor.  Truncation error ~ h^2 |C'''| / 6 and rounding
# error ~ eps |C| / h are each ~1e-10 here (raw iris inputs reach 7.9, so third derivatives reach
# ~500), two orders below FD_RTOL relative to gradients of order 1e-3..1.  FD is not defined at
# kinks (ReLU at 0, |.| at 0, hinge at margin 0): gradient-check tests keep inputs away from them.
FD_STEP = 1e-6
FD_RTOL = 1e-7
# The difference quotient's rounding error: two loss evaluations, each a sum whose relative rounding
# error is a few eps, divided by 2h: FD_ROUNDING x eps x |C| / h bounds it.  Used as the floor of the
# denominator (finite_differences.py) so that all-zero gradients are not measured against rounding.
FD_ROUNDING = 10.0
# Above finite_differences' max_coords parameters, FD_DIRECTIONS random directions per tensor instead
# of every coordinate: a unit direction's step error is of the same order as a coordinate's, and a
# formula that is wrong anywhere in the tensor moves every direction.
FD_DIRECTIONS = 4


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

# Trajectories: a parameter acts through z = W a, so a difference in W matters in units of
# 1 / max|x| (x: the inputs).  Parameter differences are measured against at least
# PARAM_FLOOR[dtype] / max(1, max|x|): a network whose weights are all tiny (all-zero weights, where
# every true gradient is 0 and every step moves the weights by rounding residue, ~1e-16 per step,
# measured up to 1e-15 after 100 steps of raw iris) is not judged on the residue's own scale.  For the
# usual weights (|W| ~ 0.1-10) the floor is below max|W| and changes nothing.
PARAM_FLOOR = {"float64": 1e-2, "float32": 1.0}


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


def float32_allowed(noise: float) -> float:
    """The relative error a float32 result may have against the float64 run, given the float32 noise floor."""
    return FLOAT32_ORDER * max(noise, FLOAT32_MIN_FLOOR)


def group_floor(dtype, *tensors) -> float:
    """GROUP_FLOOR[dtype] times the largest finite |value| among ``tensors``."""
    m = 0.0
    for t in tensors:
        t = np.asarray(t, dtype=np.float64)
        fin = t[np.isfinite(t)]
        if fin.size:
            m = max(m, float(np.max(np.abs(fin))))
    return GROUP_FLOOR[str(np.dtype(dtype))] * m
