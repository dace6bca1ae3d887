"""Result types of a check, the per-tensor comparison, the verdict and the JSON form.

Roles, not names: every error is the candidate's against the reference (or, in float32 single
passes, against the reference's float64 run); ``noise`` is the measured floor a check was allowed
to scale with.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from . import tolerances as tol

VERDICTS = ("agree", "disagree", "inconclusive")


@dataclass
class TensorCheck:
    tensor: str                 # z1, a1, loss, delta1, dW1, db1, W1, b1, ...
    layer: int | None
    shape: list[int]
    max_abs: float              # candidate against reference (or its float64 run)
    rel: float
    allowed: float
    ok: bool
    step: int | None = None     # trajectory: the step of the worst (or first failing) error
    index: list[int] | None = None   # where the worst error sits
    candidate: float | None = None   # the two values there
    reference: float | None = None
    noise: float | None = None       # the noise floor the allowance was computed from
    side: str | None = None          # finite differences: which implementation's gradient


@dataclass
class Section:
    name: str
    agree: bool
    checks: list[TensorCheck]
    first_failure: TensorCheck | None = None
    notes: list[str] = field(default_factory=list)
    verdict: str = "agree"           # agree | disagree | inconclusive | not available
    steps: int | None = None         # trajectory: steps run and steps judged
    judged_steps: int | None = None


@dataclass
class CheckResult:
    verdict: str
    agree: bool                      # True only for verdict "agree" (kept for compatibility)
    candidate: str
    reference: str
    config: dict
    environment: dict
    forward: Section
    gradients: Section
    finite_differences: Section
    trajectory: Section
    steps: int
    judged_steps: int
    reason: str | None = None        # why the verdict is not "agree", in one line
    per_step: dict | None = None     # trajectory, per step 0..N: divergence, envelope, allowance, judged

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    @property
    def sections(self) -> list[Section]:
        return [self.forward, self.gradients, self.finite_differences, self.trajectory]


def jsonable(x):
    """Dicts, lists, numbers as JSON allows them: NaN/Inf as the strings "nan", "inf", "-inf"."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else str(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def worst(a, b):
    """(index, a there, b there) of the largest |a - b| (NaN/Inf counts as largest)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    bad = ~(np.isfinite(a) & np.isfinite(b))
    d = np.where(bad, np.inf, np.abs(np.where(bad, 0, a - b)))
    i = np.unravel_index(int(np.argmax(d)), d.shape) if d.size else ()
    return [int(k) for k in i], (float(a[i]) if d.size else None), (float(b[i]) if d.size else None)


def check_tensor(name, layer, cand, ref, ref64=None, noise=None, floor=0.0, step=None) -> TensorCheck:
    """The candidate ``cand`` against the reference ``ref``.  float64: allowed FLOAT64_RTOL.  float32
    (``ref64`` given, the reference's float64 run): the candidate is judged against ``ref64`` with
    the allowance FLOAT32_ORDER x ``noise`` (the float32 noise floor; see tolerances.py)."""
    cand, ref = np.asarray(cand), np.asarray(ref)
    if ref64 is None:
        max_abs, rel = tol.rel_error(cand, ref, floor)
        allowed = tol.FLOAT64_RTOL
    else:
        max_abs, rel = tol.rel_error(cand, ref64, floor)
        allowed = tol.float32_allowed(noise) if noise is not None and math.isfinite(noise) else 0.0
    index, cv, rv = worst(cand, ref)
    ok = math.isfinite(rel) and rel <= allowed
    return TensorCheck(name, layer, list(cand.shape), max_abs, rel, allowed, bool(ok), step, index, cv, rv, noise)


def section(name, checks, notes=()) -> Section:
    bad = [c for c in checks if not c.ok]
    return Section(name, not bad, checks, bad[0] if bad else None, list(notes),
                   "agree" if not bad else "disagree")


def not_available(name: str, reasons: dict) -> Section:
    """A section one side cannot run: reported as such, never as a failure and never silently."""
    notes = [f"not available: {role} {why}" for role, why in reasons.items()]
    return Section(name, True, [], None, notes, "not available")


def overall(sections: list[Section], min_judged_fraction: float = tol.MIN_JUDGED_FRACTION) -> tuple[str, str | None]:
    """The check's verdict and, unless it is "agree", its reason in one line."""
    for s in sections:
        if s.verdict == "disagree":
            f = s.first_failure
            where = "" if f is None else f": {f.tensor}" + (f" at step {f.step}" if f.step is not None else "") + (
                f" (layer {f.layer})" if f.layer is not None else "")
            return "disagree", f"{s.name} disagrees{where}"
    for s in sections:
        if s.verdict == "inconclusive":
            return "inconclusive", s.notes[-1] if s.notes else f"{s.name} judged too little"
    if all(s.verdict == "not available" for s in sections if s.name != "finite_differences"):
        return "inconclusive", "no section compares the two implementations: forward, gradients and trajectory " \
                               "are not available (see the notes)"
    return "agree", None
