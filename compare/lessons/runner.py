"""Running the lessons: each lesson's experiment, figure, paragraph and agreement, in two forked worker
processes where fork and a second core exist (iris runs are tiny; per-step overhead dominates)."""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed

from ..harness import one_torch_thread
from ..protocol import fork_safe
from . import LESSONS
from .common import agreement, jsonable
from .figures import FIGURES
from .text import TEXT

# the longest first, so that two workers finish together
COST = {"vanishing": 5, "hidden": 5, "overfitting": 4, "batch": 3, "lr": 2, "symmetry": 1, "activations": 0}


def run_lesson(key: str, cand, ref, cfg, names) -> tuple[dict, bytes]:
    title, experiment = LESSONS[key]
    with one_torch_thread():
        data = experiment(cand, ref, cfg)
        les = {"key": key, "title": title, "agreement": agreement(data), "text": TEXT[key](data)}
        png = FIGURES[key](data, names)
    les["data"] = jsonable(data)
    return les, png


def warm_up(cand, ref) -> None:
    """One tiny training step on each side before forking, so that lazy imports (torch.optim's) happen once."""
    from ..spec import Spec
    from .common import iris_data, shared_weights, train

    data, _ = iris_data()
    spec = Spec(hidden=(2,), epochs=1)
    w = shared_weights(spec.sizes, 0)
    with one_torch_thread():
        for impl in (cand, ref):
            train(impl, spec, w, data)


_FORKED: dict = {}   # the implementations, inherited by the forked workers (never pickled)


def _run_forked(key, cfg, names):
    return run_lesson(key, _FORKED["cand"], _FORKED["ref"], cfg, names)


def run_all(keys, cand, ref, cfg, names, progress=None) -> tuple[list[dict], dict]:
    """(lessons in the order of ``keys``, key -> PNG)."""
    done: dict[str, tuple[dict, bytes]] = {}
    tick = progress or (lambda key: None)
    parallel = (sys.platform == "linux" and (os.cpu_count() or 1) > 1 and len(keys) > 1
                and not os.environ.get("COMPARE_LESSONS_NO_FORK") and fork_safe(cand, ref))
    if parallel:
        warm_up(cand, ref)
        _FORKED.update(cand=cand, ref=ref)
        try:
            with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as pool:
                futures = {pool.submit(_run_forked, k, cfg, names): k
                           for k in sorted(keys, key=lambda k: -COST.get(k, 1))}
                for f in as_completed(futures):
                    done[futures[f]] = f.result()
                    tick(futures[f])
        finally:
            _FORKED.clear()
    else:
        for k in keys:
            done[k] = run_lesson(k, cand, ref, cfg, names)
            tick(k)
    return [done[k][0] for k in keys], {k: done[k][1] for k in keys}
