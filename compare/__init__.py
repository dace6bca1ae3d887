"""The cross-check: a candidate implementation against a reference, through compare.protocol.

    from compare import check, Spec
    result, trajectory = check("manual", "torch", Spec(activation="relu"))

Importing ``compare`` is cheap: no framework is imported until an implementation is loaded.
"""
from .spec import Spec


def check(candidate, reference, spec=None, **kw):
    """See compare.harness.check."""
    from .harness import check as _check

    return _check(candidate, reference, spec, **kw)


__all__ = ["Spec", "check"]
