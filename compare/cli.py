"""``python -m compare check|report``: exit 0 when everything agrees, 1 when anything disagrees,
2 on bad usage (one line on stderr, never a traceback)."""
from __future__ import annotations

import argparse
import json
import sys

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus")
OUTPUTS = ("softmax", "sigmoid", "identity")
LOSSES = ("cross_entropy", "mse", "l1", "hinge")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _spec_options(p: argparse.ArgumentParser) -> None:
    from .spec import Spec

    d = Spec.__dataclass_fields__
    g = p.add_argument_group("model and training (defaults: the lecture's iris example)")
    g.add_argument("--activation", choices=ACTIVATIONS, default=d["activation"].default, help="hidden activation")
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
    g.add_argument("--dtype", choices=("float32", "float64"), default=d["dtype"].default)
    g.add_argument("--seed", type=int, default=d["seed"].default)
    g.add_argument("--device", default=d["device"].default, help="cpu or cuda[:N] (torch side)")
    g.add_argument("--init", choices=("torch", "xavier", "he"), default=d["init"].default,
                   help="initial weight scheme (seeded)")
    g.add_argument("--standardize", action="store_true", help="standardise features (fitted on the training split)")
    g.add_argument("--weights", default=None, metavar="FILE", help="initial weights (safetensors W1, b1, ...)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m compare", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    c = sub.add_parser("check", help="compare forward, gradients and a training trajectory on iris")
    _spec_options(c)
    c.add_argument("--json", metavar="PATH", help="write the full result as JSON")
    r = sub.add_parser("report", help="write the comparison report (markdown, HTML, figures, JSON, weights)")
    _spec_options(r)
    r.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    r.add_argument("--no-slide", dest="slide", action="store_false",
                   help="leave out the slide's printed weights on its six flowers (on by default)")
    r.add_argument("--no-companion", "--no-float32", dest="companion", action="store_false",
                   help="skip the companion trajectory in the other dtype (float32 for a float64 report)")
    from .lessons.cli import add_parser as add_lessons_parser  # compare/lessons/

    add_lessons_parser(sub)
    return p


def spec_from_args(a):
    from .spec import Spec

    return Spec(hidden=tuple(a.hidden), activation=a.activation, output=a.output, loss=a.loss,
                optimizer=a.optimizer, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay,
                batch_size=a.batch_size, epochs=a.epochs, dropout=a.dropout, patience=a.early_stopping,
                seed=a.seed, dtype=a.dtype, device=a.device, init=a.init, standardize=a.standardize,
                weights_file=a.weights)


def format_table(res) -> str:
    rows = [f"{'section':<20}{'tensor':<16}{'rel error':>12}{'allowed':>12}  ok"]
    for sec in (res.forward, res.gradients, res.finite_differences, res.trajectory):
        worst = max(sec.checks, key=lambda c: (not c.ok, c.rel / c.allowed if c.allowed else float("inf")))
        for c in [worst] if sec.agree else [c for c in sec.checks if not c.ok][:5]:
            rows.append(f"{sec.name:<20}{c.tensor:<16}{c.rel:>12.2e}{c.allowed:>12.2e}  {'yes' if c.ok else 'NO'}")
        if sec.first_failure is not None:
            f = sec.first_failure
            where = f"step {f.step}, " if f.step is not None else ""
            if f.index is None:
                rows.append(f"  first disagreement: {where}{f.tensor} (see notes)")
            else:
                rows.append(f"  first disagreement: {where}layer {f.layer}, {f.tensor}{f.index}: "
                            f"manual {f.manual!r} vs torch {f.torch!r}")
        for n in sec.notes:
            rows.append(f"  note: {n}")
    verdict = "AGREE" if res.agree else "DISAGREE"
    rows.append(f"{verdict}: {res.steps} training steps compared ({res.config['dtype']}, device {res.config['device']})")
    return "\n".join(rows)


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "lessons":
            from .lessons.cli import run as run_lessons
            return run_lessons(args)
        spec = spec_from_args(args)
        if args.command == "report":
            from .report import prepare_out_dir
            out = prepare_out_dir(args.out)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as e:
        print(f"python -m compare: error: {e}", file=sys.stderr)
        return 2
    try:
        if args.command == "check":
            from .harness import run_check
            res, _ = run_check(spec)
            print(format_table(res))
            if args.json:
                from manual.weights import atomic_write_bytes
                atomic_write_bytes(args.json, (json.dumps(res.to_dict(), indent=2) + "\n").encode())
            return 0 if res.agree else 1
        from .report import write_report
        return 0 if write_report(spec, out, slide=args.slide, companion=args.companion) else 1
    except (ValueError, TypeError, OSError) as e:  # bad weights files, unwritable paths, ...
        print(f"python -m compare: error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # training diverged: these options cannot be cross-checked
        print(f"python -m compare: error: training diverged: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("python -m compare: interrupted", file=sys.stderr)
        return 130
