"""The mutation score of `make mutation`, from mutmut's results in mutants/ (run from the repository root).

    score = killed / (mutants - equivalent)

killed counts mutmut's "killed" and "timeout" (a mutant that makes the suite hang is detected);
equivalent mutants are the ones listed, each with its reason, in tests/mutation_equivalents.txt: a
mutant that no test can kill because it does not change what the code computes (e.g. a fast path
replaced by its slow twin).  Every other survivor counts against the score and is listed here; see
one with `.venv/bin/python -m mutmut show NAME`.  Mutants that were not run ("not checked",
"no tests", ...) are counted as not killed too.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code  # mutmut's own exit code -> status table

DETECTED = {"killed", "timeout"}


def load_results(mutants: Path) -> dict[str, str]:
    """mutant name -> status, from every mutants/**/*.py.meta file mutmut wrote."""
    results = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        for name, code in data["exit_code_by_key"].items():
            results[name] = status_by_exit_code[code]
    return results


def load_equivalents(path: Path) -> dict[str, str]:
    """``name  # reason`` per line; blank lines and lines starting with # are ignored."""
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, reason = line.partition("#")
        if not sep or not reason.strip():
            raise SystemExit(f"{path}:{n}: every equivalent mutant needs a reason after '#': {line!r}")
        out[name.strip()] = reason.strip()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=Path, default=Path("mutants"))
    ap.add_argument("--equivalents", type=Path, default=Path("tests/mutation_equivalents.txt"))
    args = ap.parse_args(argv)
    results = load_results(args.mutants)
    if not results:
        print(f"no mutmut results under {args.mutants}/: run `make mutation` first", file=sys.stderr)
        return 2
    equivalent = load_equivalents(args.equivalents) if args.equivalents.exists() else {}
    stale = sorted(set(equivalent) - set(results))
    wrongly = sorted(k for k in equivalent if results.get(k) in DETECTED)
    counts = Counter(results.values())
    eq = [k for k in equivalent if k in results and results[k] not in DETECTED]
    detected = sum(counts[s] for s in DETECTED)
    judged = len(results) - len(eq)
    print(f"mutants {len(results)}: " + ", ".join(f"{s} {c}" for s, c in counts.most_common()))
    print(f"equivalent (tests/mutation_equivalents.txt): {len(eq)}")
    print(f"score: {detected} / {judged} non-equivalent mutants detected = {100 * detected / judged:.1f} %")
    print(f"raw (every survivor counted): {detected} / {len(results)} = {100 * detected / len(results):.1f} %")
    undetected = sorted(k for k, s in results.items() if s not in DETECTED and k not in equivalent)
    if undetected:
        print(f"\nnot detected and not listed as equivalent ({len(undetected)}):")
        for k in undetected:
            print(f"  {k}: {results[k]}")
    if stale:
        print(f"\nlisted as equivalent but not among the mutants (renumbered by a code change?): {stale}")
    if wrongly:
        print(f"\nlisted as equivalent but killed (remove them from the list): {wrongly}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
