"""A pytest helper for a port's own test suite: one line that runs the whole check.

    from compare.testing import assert_agree

    def test_my_port_matches_torch():
        assert_agree("my_port.adapter:MyNet", "torch", activation="relu", optimizer="adam", epochs=20)
"""
from __future__ import annotations

from .harness import check
from .spec import Spec


class Disagreement(AssertionError):
    """The check did not agree; the message names the first diverging (step, layer, tensor)."""


def describe(res) -> str:
    lines = [f"{res.candidate} (candidate) vs {res.reference} (reference): {res.verdict}, judged "
             f"{res.judged_steps} of {res.steps} training steps" + (f": {res.reason}" if res.reason else "")]
    for s in res.sections:
        f = s.first_failure
        if f is not None:
            at = ", ".join(x for x in (f"step {f.step}" if f.step is not None else "",
                                       f"layer {f.layer}" if f.layer is not None else "",
                                       f"tensor {f.tensor}" + (f"{f.index}" if f.index else "")) if x)
            lines.append(f"  {s.name}: first disagreement at {at}: relative error {f.rel:.3g} > allowed "
                         f"{f.allowed:.3g}; values {f.candidate!r} vs {f.reference!r}")
        elif s.verdict not in ("agree",):
            lines.append(f"  {s.name}: {s.verdict}" + (f" ({s.notes[-1]})" if s.notes else ""))
    return "\n".join(lines)


def assert_agree(candidate, reference="torch", spec: Spec | None = None, *, allow_inconclusive: bool = False,
                 **options):
    """Run every section of the check and raise Disagreement unless the verdict is "agree"
    (or "inconclusive" with ``allow_inconclusive``).  ``options`` are Spec fields.  Returns the result."""
    spec = spec or Spec(**options)
    res, _ = check(candidate, reference, spec)
    if res.verdict == "agree" or (allow_inconclusive and res.verdict == "inconclusive"):
        return res
    raise Disagreement(describe(res))
