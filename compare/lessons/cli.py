"""``python -m compare lessons --out DIR [--candidate NAME] [--reference NAME] [--only a,b] [--quick]``.

Exit 0 when every lesson's two implementations agree within the tolerance, 1 when any lesson disagrees
(marked in red), 2 on bad usage (one line on stderr, never a traceback).  compare/cli.py adds the
subparser with :func:`add_parser` and dispatches to :func:`run`; :func:`main` runs it alone."""
from __future__ import annotations

import argparse
import sys
import time

from . import LESSONS


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("lessons", help="the lecture's lessons as figures, run on two implementations (HTML, markdown, JSON)",
                       epilog="exit status: 0 every lesson agrees, 1 a lesson disagrees, 2 bad usage or input, "
                              "4 environment or internal error (traceback saved), 130 interrupted")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--candidate", default="manual", metavar="NAME", help="implementation under test (default manual)")
    p.add_argument("--reference", default="torch", metavar="NAME", help="reference implementation (default torch)")
    p.add_argument("--only", default=None, metavar="NAMES", help=f"comma-separated subset of: {', '.join(LESSONS)}")
    p.add_argument("--quick", action="store_true", help="a reduced configuration (fewer epochs, depths, seeds)")
    return p


def _fail(msg: str) -> int:
    print(f"python -m compare lessons: error: {msg}", file=sys.stderr)
    return 2


class _Bar:
    def __init__(self, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, disable=not sys.stderr.isatty(), file=sys.stderr, leave=False,
                        bar_format="lessons {bar:30} {n_fmt}/{total_fmt} [{elapsed}] {desc}")

    def __call__(self, key):
        self.bar.set_description_str(f"{key} done")
        self.bar.update(1)

    def close(self):
        self.bar.close()


def run(args) -> int:
    from ..registry import ImplementationError, load
    from .common import DTYPE, FULL, QUICK
    from .render import prepare_out_dir, write_all
    from .runner import run_all

    t0 = time.perf_counter()
    keys = list(LESSONS)
    if args.only is not None:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        bad = [k for k in keys if k not in LESSONS]
        if bad or not keys:
            return _fail(f"--only: unknown lesson name(s) {bad or [args.only]}; valid names: {', '.join(LESSONS)}")
        keys = [k for k in LESSONS if k in keys]
    try:
        out = prepare_out_dir(args.out)
        cand = load(args.candidate, "candidate")
        ref = load(args.reference, "reference")
    except ImplementationError as e:
        return _fail(str(e))
    except (ValueError, TypeError, OSError) as e:
        return _fail(str(e))
    names = (cand.name, ref.name)
    bar = _Bar(len(keys))
    try:
        lessons, pngs = run_all(keys, cand, ref, QUICK if args.quick else FULL, names, bar)
        meta = {"dtype": DTYPE, "quick": bool(args.quick), "lessons_run": keys}
        write_all(out, lessons, names, meta, pngs)
    except OSError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        print("python -m compare lessons: interrupted", file=sys.stderr)
        return 130
    finally:
        bar.close()
    bad = [f"{les['key']} ({les['agreement']['max_rel']:.1e})" for les in lessons if not les["agreement"]["ok"]]
    took = time.perf_counter() - t0
    print(f"{len(lessons)} lessons written to {out}/lessons.html, lessons.md, lessons.json in {took:.1f} s; "
          + (f"DISAGREE: {', '.join(bad)}" if bad else f"{names[0]} and {names[1]} agree in every lesson"))
    return 1 if bad else 0


def main(argv=None) -> int:
    """``python -m compare lessons ...`` through compare's own parser (argv without the 'lessons' word)."""
    from ..cli import main as compare_main

    return compare_main(["lessons", *(sys.argv[1:] if argv is None else argv)])
