"""``python -m compare check|report``: a candidate implementation against a reference, on iris (or
--dataset digits|wine|breast_cancer, or your own --data FILE.npz).

exit status: 0 everything agrees; 1 something disagrees (nothing else); 2 bad usage or input (one line
on stderr); 3 inconclusive (fewer than half of the training steps could be judged); 4 an environment
or internal error (one line naming a saved traceback file); 130 interrupted (Ctrl-C).  Never a bare
traceback."""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from .vocabulary import ACTIVATIONS, DTYPES, INIT_SCHEMES, LOSSES, OPTIMIZERS, OUTPUTS

EXIT = {"agree": 0, "disagree": 1, "usage": 2, "inconclusive": 3}
STATUSES = ("exit status: 0 agree, 1 disagree, 2 bad usage or input, 3 inconclusive, 4 environment or internal "
            "error (traceback saved), 130 interrupted")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _spec_options(p: argparse.ArgumentParser) -> None:
    from .limits import seed_arg
    from .outputs import nonempty
    from .registry import registered
    from .spec import Spec

    d = Spec.__dataclass_fields__
    g = p.add_argument_group("model and training (defaults: the lecture's iris example)")
    g.add_argument("--candidate", default="manual", metavar="NAME",
                   help="the implementation under test: a registered name (NAME or NAME:OPTION, e.g. torch:cuda:0; "
                        f"installed: {', '.join(sorted(registered())) or 'none'}) or module:attr (default: manual)")
    g.add_argument("--reference", default="torch", metavar="NAME", help="the implementation it is held to "
                   "(default: torch)")
    g.add_argument("--activation", choices=ACTIVATIONS, default=d["activation"].default, help="hidden activation")
    g.add_argument("--gamma", type=float, default=None,
                   help="LeakyReLU negative slope / ELU alpha (default 0.01 / 1.0)")
    g.add_argument("--output", choices=OUTPUTS, default=d["output"].default, help="output function")
    g.add_argument("--loss", choices=LOSSES, default=d["loss"].default, help="loss (reduction = mean)")
    g.add_argument("--hidden", type=int, nargs="+", default=list(d["hidden"].default), metavar="N",
                   help="hidden layer sizes (default: 6)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d["optimizer"].default)
    g.add_argument("--lr", type=float, default=d["lr"].default, help="learning rate")
    g.add_argument("--momentum", type=float, default=d["momentum"].default, help="for momentum/nesterov")
    g.add_argument("--weight-decay", type=float, default=d["weight_decay"].default)
    g.add_argument("--batch-size", type=int, default=None, help="default: full batch (GD); 1 = SGD")
    g.add_argument("--epochs", type=int, default=d["epochs"].default)
    g.add_argument("--dropout", type=float, default=d["dropout"].default, help="on hidden layers")
    g.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a lower validation (iris test) error; restore the best")
    g.add_argument("--dtype", choices=DTYPES, default=d["dtype"].default)
    g.add_argument("--seed", type=seed_arg, default=d["seed"].default, help="0 .. 2**64 - 1")
    g.add_argument("--init", choices=INIT_SCHEMES, default=d["init"].default,
                   help="initial weight scheme (seeded)")
    g.add_argument("--standardize", action="store_true", help="standardise features (fitted on the training split)")
    from .data import DATASETS

    x = g.add_mutually_exclusive_group()
    x.add_argument("--dataset", choices=DATASETS, default=d["dataset"].default,
                   help="a data set shipped with scikit-learn, split per class: the first 80%% (rounded down) of "
                        "each class's rows train, the rest test (default: iris, 40/10 per class)")
    x.add_argument("--data", type=nonempty("--data"), default=None, metavar="FILE.npz",
                   help="your own data instead: an .npz of X_train, y_train, X_test, y_test (float32/float64 "
                        "features, integer labels 0..K-1)")
    g.add_argument("--weights", type=nonempty("--weights"), default=None, metavar="FILE", help="initial weights (safetensors W1, b1, ...)")


def build_parser() -> argparse.ArgumentParser:
    from .outputs import nonempty

    p = _Parser(prog="python -m compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    c = sub.add_parser("check", help="compare forward, gradients and a training trajectory on iris or --dataset / --data",
                       epilog=STATUSES)
    _spec_options(c)
    c.add_argument("--keep-trajectory", type=nonempty("--keep-trajectory"), metavar="FILE.npy",
                   help="write every step's parameters of both sides to FILE.npy (streamed; float64, shape "
                        "(steps + 1, 2, parameters))")
    c.add_argument("--json", type=nonempty("--json"), metavar="PATH",
                   help="write the full result as JSON (- for standard output, instead of the table)")
    r = sub.add_parser("report", help="write the comparison report (markdown, HTML, figures, JSON, weights)",
                       epilog=STATUSES)
    _spec_options(r)
    r.add_argument("--out", type=nonempty("--out"), required=True, metavar="DIR",
                   help="output folder (created if missing; replaced whole by the new report at the end)")
    r.add_argument("--force", action="store_true",
                   help="replace the report in a folder that holds other files too (they are kept)")
    r.add_argument("--no-slide", dest="slide", action="store_false",
                   help="leave out the slide's printed weights on its six flowers (on by default)")
    r.add_argument("--no-companion", dest="companion", action="store_false",
                   help="skip the companion trajectory in the other dtype (float32 for a float64 report)")
    from .lessons.cli import add_parser as add_lessons_parser  # compare/lessons/

    add_lessons_parser(sub)
    return p


def spec_from_args(a):
    from .spec import Spec

    return Spec(hidden=tuple(a.hidden), activation=a.activation, gamma=a.gamma, output=a.output, loss=a.loss,
                optimizer=a.optimizer, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay,
                batch_size=a.batch_size, epochs=a.epochs, dropout=a.dropout, patience=a.early_stopping,
                seed=a.seed, dtype=a.dtype, init=a.init, standardize=a.standardize,
                weights_file=a.weights, dataset=a.dataset if a.data is None else "npz", data_file=a.data)


def format_table(res) -> str:
    rows = [f"{'section':<20}{'tensor':<16}{'rel error':>12}{'allowed':>12}  ok"]
    for sec in res.sections:
        if not sec.checks:
            rows.append(f"{sec.name:<20}{'-':<16}{'':>12}{'':>12}  {sec.verdict}")
        else:
            worst = max(sec.checks, key=lambda c: (not c.ok, c.rel / c.allowed if c.allowed else float("inf")))
            for c in [worst] if sec.agree else [c for c in sec.checks if not c.ok][:5]:
                rows.append(f"{sec.name:<20}{c.tensor:<16}{c.rel:>12.2e}{c.allowed:>12.2e}  {'yes' if c.ok else 'NO'}")
        if sec.first_failure is not None:
            f = sec.first_failure
            where = f"step {f.step}, " if f.step is not None else ""
            side = f"{f.side}'s gradient, " if f.side else ""
            if not f.index and f.candidate is None:
                rows.append(f"  first disagreement: {where}{f.tensor} (see notes)")
            else:
                layer = f"layer {f.layer}, " if f.layer is not None else ""
                rows.append(f"  first disagreement: {where}{side}{layer}{f.tensor}{f.index or ''}: "
                            f"{res.candidate if not f.side else 'back-propagation'} {f.candidate!r} vs "
                            f"{res.reference if not f.side else 'finite difference'} {f.reference!r}")
        for n in sec.notes:
            rows.append(f"  note: {n}")
    judged = (f"judged {res.judged_steps} of {res.steps} training steps" if res.trajectory.verdict != "not available"
              else "judged " + ", ".join(s.name.replace("_", " ") for s in res.sections if s.verdict != "not available")
              + "; no training step (the trajectory is not available: see its note)")
    what = f"{res.candidate} (candidate) vs {res.reference} (reference), {judged} ({res.config['dtype']})"
    rows.append(f"{res.verdict.upper()}: {what}" + (f": {res.reason}" if res.reason else ""))
    return "\n".join(rows)


def _said(e: BaseException) -> str:
    """The exception's message on one line, with its notes (which implementation raised it, see
    registry.Attributed)."""
    return " ".join(" ".join([str(e), *(f"({n})" for n in getattr(e, "__notes__", ()))]).split())


def main(argv=None) -> int:
    with warnings.catch_warnings():  # numpy's RuntimeWarnings: the one line below says what went wrong
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return _main(argv)
        except KeyboardInterrupt:  # before the run (the run's own handler says the same)
            print("python -m compare: interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001  (an environment or internal error: one line and the saved traceback
            from .outputs import save_traceback
            saved = save_traceback(e)
            where = f"; traceback saved to {saved}" if saved else ""
            print(f"python -m compare: internal error: {type(e).__name__}: {_said(e)}{where}", file=sys.stderr)
            return 4


def _main(argv) -> int:
    from .limits import preflight

    try:
        args = build_parser().parse_args(argv)
        if args.command == "lessons":
            from .lessons.cli import run as run_lessons
            return run_lessons(args)
        spec = spec_from_args(args)
        preflight(spec, companion=args.command == "report" and args.companion)
        from .registry import load
        candidate, reference = load(args.candidate, "candidate"), load(args.reference, "reference")
        target = None
        if args.command == "report":
            from .report import prepare_out_dir
            out = prepare_out_dir(args.out, force=args.force)
        else:
            from .outputs import check_file_output
            target = None if args.json is None else check_file_output(args.json, "--json")
            if args.keep_trajectory is not None and check_file_output(args.keep_trajectory,
                                                                      "--keep-trajectory").kind != "atomic":
                raise ValueError(f"--keep-trajectory {args.keep_trajectory!r}: give a regular file (the array is "
                                 "written in place as the run goes, then renamed)")
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, ImportError) as e:  # ImportError: a framework not installed
        print(f"python -m compare: error: {_said(e)}", file=sys.stderr)
        return 2
    try:
        if args.command == "check":
            from .harness import check
            res, _ = check(candidate, reference, spec, keep_trajectory=args.keep_trajectory)
            if target is None or not target.to_stdout:
                print(format_table(res))
            if target is not None:
                target.write((json.dumps(res.to_dict(), indent=2) + "\n").encode())
            return EXIT[res.verdict]
        from .report import write_report
        return EXIT[write_report(spec, out, candidate, reference, slide=args.slide, companion=args.companion,
                                 force=args.force)]
    except (ValueError, TypeError) as e:  # bad weights files, ... (an OSError here is the environment's: 4)
        print(f"python -m compare: error: {_said(e)}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # training diverged: these options cannot be cross-checked
        print(f"python -m compare: error: training diverged: {_said(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("python -m compare: interrupted", file=sys.stderr)
        return 130
