"""The check: one spec, one set of shared weights, a candidate and a reference, compared.

    from compare import check
    result, trajectory = check("manual", "torch", Spec(activation="relu", optimizer="adam"))

Sections (each a list of per-tensor checks, the first disagreement localised):
- forward:            z^l, a^l of every layer and the loss, on the whole training split
- gradients:          delta^l, dC/dW^l, dC/db^l of every layer, on the same batch
- finite_differences: each side's gradients against central differences of its own loss
- trajectory:         a whole training run with the same order, masks and early-stopping rule,
                      judged step by step against the noise envelope (trajectory.py)
A section one side cannot run is "not available" (with the reason), never a failure.
"""
from __future__ import annotations

import platform
from dataclasses import asdict
from typing import Callable

import numpy as np

from .data import Split, check_fits, load_split
from .finite_differences import finite_differences
from .passes import forward_and_gradients
from .protocol import Data, readonly_inputs
from .registry import attributed, load
from .results import CheckResult, not_available, overall
from .schedule import MaskSource
from .spec import Spec
from .threads import one_torch_thread
from .trajectory import Trajectory, trajectory


def initial_weights(spec: Spec) -> dict[str, np.ndarray]:
    """The shared initial weights of ``spec``, in its dtype (a weights file, or the seeded scheme)."""
    from .weights import initial_weights as init

    return init(spec)


def resolve(impl, role: str):
    """An implementation from a name or the object itself, its exceptions marked with ``role`` (registry.Attributed)."""
    return load(impl, role) if isinstance(impl, str) else attributed(impl, role)


def data_for(spec: Spec, split: Split) -> Data:
    return Data(split.X_train, split.y_train, split.X_test, split.y_test)


def _missing(section: str, impls: dict, spec) -> dict:
    return {role: impl.unavailable(spec)[section] for role, impl in impls.items() if section in impl.unavailable(spec)}


def check(candidate, reference, spec: Spec | None = None, data: Split | None = None,
          progress: Callable[[str], None] | None = None, keep_trajectory: str | None = None
          ) -> tuple[CheckResult, Trajectory | None]:
    """Run every section for ``candidate`` against ``reference`` (names or implementation objects).
    ``keep_trajectory``: a .npy file for every step's parameters of both sides (trajectory.keep_file)."""
    spec = spec or Spec()
    cand, ref = resolve(candidate, "candidate"), resolve(reference, "reference")
    with one_torch_thread():
        return _check(cand, ref, spec, data, progress or (lambda s: None), keep_trajectory)


def _check(cand, ref, spec, data, say, keep=None):
    data = data if data is not None else load_split(spec)
    check_fits(spec, data)
    weights = initial_weights(spec)
    impls = {"candidate": cand, "reference": ref}
    X, y = data.X_train, data.y_train
    step0 = MaskSource(spec.dropout, spec.seed, spec.dtype, stream=3).step_masks(0, spec.sizes, X.shape[0])
    say("forward and gradients")
    miss = _missing("forward", impls, spec) or _missing("gradients", impls, spec)
    if miss:
        fwd, grad = not_available("forward", miss), not_available("gradients", miss)
    else:
        fwd, grad = forward_and_gradients(cand, ref, spec, *readonly_inputs(weights, X, y, step0))
    say("finite differences")
    can_fd = {r: i for r, i in impls.items() if "finite_differences" not in i.unavailable(spec)}
    fd = (finite_differences(can_fd, spec, weights, X, y, step0) if can_fd
          else not_available("finite_differences", _missing("finite_differences", impls, spec)))
    if can_fd:
        fd.notes += [f"not available: {r} {why}" for r, why in _missing("finite_differences", impls, spec).items()]
    say("trajectory")
    traj = None
    miss = _missing("trajectory", impls, spec)
    if miss:
        tsec = not_available("trajectory", miss)
    else:
        traj = trajectory(cand, ref, spec, weights, data_for(spec, data), keep=keep)
        tsec = traj.section
    sections = [fwd, grad, fd, tsec]
    verdict, reason = overall(sections)
    env = {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
           "candidate": cand.info(), "reference": ref.info(),
           "loaded_as": {"candidate": cand.source, "reference": ref.source}}
    res = CheckResult(verdict, verdict == "agree", cand.name, ref.name, asdict(spec), env, fwd, grad, fd, tsec,
                      tsec.steps or 0, tsec.judged_steps or 0, reason, None if traj is None else {
                          "divergence": traj.divergence, "envelope": traj.envelope, "allowance": traj.allowance,
                          "judged": traj.judged, **{f"noise_{r}": v for r, v in traj.noise_per_step.items()}})
    return res, traj
