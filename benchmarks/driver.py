"""The driver: command line, the worker processes, interleaved rounds, the summary and the JSON file.

Each library runs in its own persistent worker process (worker.py); the driver alternates short timing
blocks between them, each after ``--gap`` seconds of idle, in an order that changes from round to round
(ABBA with two libraries; every rotation and its reverse with three), so that blocks adjacent in time see
the same drift of the machine and each round's ratios cancel it.  Method and history: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

from cases import CASE, CASES, COLUMN, GEMM_N, MIN_REPS, OPENBLAS_VARS, TARGETS, WHATS
from monitor import cpu_model, machine_busy_seconds, proc_cpu_seconds, wait_idle
from render import markdown, print_results
from worker import Worker, memory, run_memory, worker


def timing_plan(args) -> list[str]:
    """The order of one round.  Each dtype's GEMM block comes right before the large network of that
    dtype, so that the % of GEMM peak compares blocks a second apart, not ten."""
    keys, gemm_done = [], set()
    for case in CASES:
        if case.key not in args.cases:
            continue
        if case.key.startswith("big") and case.dtype not in gemm_done:
            keys.append(f"gemm:{case.dtype}")
            gemm_done.add(case.dtype)
        keys += [f"net:{case.key}/{w}" for w in WHATS]
        if case.key.startswith("big"):
            keys.append(f"prod:{case.key}")
        if case.key == "iris" and not args.no_run:
            keys.append("net:iris/1000 epochs")
    keys += [f"gemm:{dt}" for dt in ("float32", "float64") if dt not in gemm_done]
    return keys


def round_orders(sides: list[str]) -> list[tuple]:
    """The sides' order in successive rounds: the rotations, then (three or more sides) their reverses, so
    that every side is first, middle and last equally often and every pair meets in both orders."""
    rot = [tuple(sides[i:] + sides[:i]) for i in range(len(sides))]
    return rot if len(sides) <= 2 else rot + [o[::-1] for o in rot]


def calibrate(worker: Worker, key: str, block_s: float) -> tuple[int, float]:
    """(reps per block so that a block takes about block_s, at least MIN_REPS; the key's first call in
    seconds).  Also warms the key up: JAX compiles on the first call, which no block ever times."""
    first = worker.ask(cmd="time", key=key, reps=1)
    t = min(first["times"] + worker.ask(cmd="time", key=key, reps=1)["times"])
    reps = 1
    while reps * t < block_s / 4 and reps < 100000:  # a short pre-block, then the estimate from it
        reps *= 4
    if reps > 1:
        t = statistics.median(worker.ask(cmd="time", key=key, reps=reps)["times"])
    return max(MIN_REPS, min(100000, int(block_s / t))), first.get("first_call_s", first["times"][0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="manual/ (NumPy by hand) against torch_ref/ and jax_ref/ (jitted) on "
                                 "this machine's CPU; the method: docs/benchmarks.md",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    ap.add_argument("--block", type=float, default=0.2, help="seconds per timing block (default 0.2)")
    ap.add_argument("--gap", type=float, default=0.12,
                    help="idle seconds before each block, so that the other side's BLAS/OpenMP threads have "
                         "stopped spinning (OpenBLAS: 2^28 cycles, ~0.1 s; default 0.12)")
    ap.add_argument("--max-others", type=float, default=0.2, metavar="CORES",
                    help="drop rounds during which other processes used more than this many cores "
                         "(default 0.2; if every round is over it, all are kept and a warning says so)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="before the run and before every round, wait (up to this long in all) for 5 s in "
                         "which other processes use < 0.1 cores")
    ap.add_argument("--cases", nargs="+", default=[c.key for c in CASES], choices=[c.key for c in CASES])
    ap.add_argument("--no-run", action="store_true", help="skip the 1000-epoch iris runs")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    ap.add_argument("--no-jax", action="store_true", help="leave out the JAX column (it reads 'not run')")
    ap.add_argument("--quick", action="store_true", help="3 rounds of 0.08 s blocks: a smoke run")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--markdown", nargs="+", metavar="JSON",
                    help="print the README's tables from the --json files of runs (the last one in full)")
    ap.add_argument("--worker", choices=["numpy", "torch", "jax"], help=argparse.SUPPRESS)
    ap.add_argument("--memory", nargs=2, metavar=("SIDE", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if args.memory:
        print(json.dumps(memory(*args.memory)))
        return 0
    if args.markdown:
        runs = []
        for p in args.markdown:
            with open(p) as f:
                runs.append(json.load(f))
        print(markdown(runs))
        return 0
    if args.quick:
        args.rounds, args.block = 3, 0.08
    if args.wait_idle:
        wait_idle(args.wait_idle)
    return drive(args)


def start_workers(args) -> tuple[dict, dict, str]:
    """The workers that can time, their info, and the JAX column's status."""
    workers = {side: Worker(side) for side in ("numpy", "torch") + (() if args.no_jax else ("jax",))}
    info = {side: w.ask(cmd="info") for side, w in workers.items()}
    jax_status = "not run (--no-jax)" if args.no_jax else "ok"
    if "unavailable" in info.get("jax", {}):
        jax_status = info["jax"]["unavailable"]
        workers.pop("jax").close()
        print(f"JAX: {jax_status} ({info['jax'].get('error')}); the JAX column reads '{jax_status}'")
    return workers, info, jax_status


def drive(args) -> int:
    started = datetime.datetime.now().astimezone()
    load0 = os.getloadavg()
    env = {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ}
    print(f"backprop-crosscheck benchmark, {started:%Y-%m-%d %H:%M %Z}, {platform.node()}")
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if k in env:
            print(f"WARNING: {k}={env[k]} is set; it can slow NumPy.  For a benchmark run: "
                  f"env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE make bench")
    workers, info, jax_status = start_workers(args)
    sides = list(workers)
    try:
        print_environment(info, env, load0)
        keys = timing_plan(args)
        print(f"\ncalibrating and warming up {len(keys)} timings on {len(sides)} sides ...", flush=True)
        cal = {(side, k): calibrate(w, k, args.block) for k in keys for side, w in workers.items()}
        reps = {sk: c[0] for sk, c in cal.items()}
        first = {sk: c[1] for sk, c in cal.items()}
        rounds = []  # per round: {(side, key): block median}, and the CPU other processes used meanwhile
        t0 = time.time()
        ours = lambda: proc_cpu_seconds(os.getpid()) + sum(w.cpu_seconds() for w in workers.values())  # noqa: E731
        orders = round_orders(sides)
        waited = 0.0
        for r in range(args.rounds):
            if args.wait_idle:  # every round starts on an idle machine, within the --wait-idle budget
                waited += wait_idle(max(0.0, args.wait_idle - waited), ours)
            ours0 = ours()
            busy0, r0 = machine_busy_seconds(), time.time()
            got = {}
            for k in keys:
                for side in orders[r % len(orders)]:  # no side always first
                    time.sleep(args.gap)
                    reply = workers[side].ask(cmd="time", key=k, reps=reps[side, k])
                    got[side, k] = (statistics.median(reply["times"]), reply["faults"])
            others = max(0.0, machine_busy_seconds() - busy0 - (ours() - ours0)) / (time.time() - r0)
            rounds.append({"blocks": got, "others_cores": others})
            print(f"  round {r + 1}/{args.rounds} done ({time.time() - t0:.0f} s)"
                  + (f"  other processes used {others:.2f} cores: round dropped" if others > args.max_others else ""),
                  flush=True)
    finally:
        for w in workers.values():
            w.close()
    mem = measure_memory(args, sides)
    load1 = os.getloadavg()
    clean = [r for r in rounds if r["others_cores"] <= args.max_others]
    used = clean if clean else rounds
    blocks = {(side, k): [r["blocks"][side, k][0] for r in used] for side in sides for k in keys}
    faults = {(side, k): statistics.median(r["blocks"][side, k][1] for r in used) for side in sides for k in keys}
    result = summarise(args, sides, keys, blocks, reps, first, faults)
    result.update(date=started.isoformat(timespec="seconds"), host=platform.node(), cpu=cpu_model(),
                  cpus=os.cpu_count(), load_avg_start=load0, load_avg_end=load1, env=env, info=info,
                  jax=jax_status, memory={f"{s}/{c}": v for (s, c), v in mem.items()})
    result["targets"] = targets(result["rows"], mem)
    result["contention"] = {"others_cores_per_round": [r["others_cores"] for r in rounds],
                            "rounds_used": len(used), "rounds_dropped": len(rounds) - len(clean),
                            "all_contended": not clean}
    missed = print_results(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 1 if (missed and args.strict) else 0


def measure_memory(args, sides) -> dict:
    mem = {}
    if args.no_memory:
        return mem
    print("measuring peak memory, one fresh process per measurement ...", flush=True)
    for case in CASES:
        if case.key in args.cases:
            for side in sides:
                try:
                    mem[side, case.key] = run_memory(side, case.key)
                except Exception as e:  # the JAX column must never end the run; manual and torch may
                    if side != "jax":
                        raise
                    print(f"  JAX peak memory of {case.key} failed: {e}")
    return mem


def print_environment(info, env, load0):
    npi, thi = info["numpy"], info["torch"]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; load average {load0[0]:.2f} "
          f"(anything else running distorts the numbers)")
    print(f"NumPy {npi['numpy']}; torch {thi.get('torch')} ({thi.get('torch_blas')}, "
          f"{thi.get('torch_threads')} threads, CPU capability {thi.get('torch_cpu_capability')})")
    jx = info.get("jax", {})
    if "jax" in jx:
        print(f"JAX {jx['jax']} (jaxlib {jx['jaxlib']}, {jx['device']}, x64 {jx['jax_enable_x64']}, "
              f"XLA_FLAGS {jx['xla_flags'] or 'unset'})")
    print(f"environment: {env or 'no OPENBLAS_*/OMP_*/MKL_*/XLA_FLAGS variables set'}")


def _ratio_stats(a, b):
    r = sorted(x / y for x, y in zip(a, b, strict=True))
    return statistics.median(r), r[0], r[-1]


def summarise(args, sides, keys, blocks, reps, first, faults) -> dict:
    """One row per key: each side's median time (``manual_s``, ``torch_s``, ``jax_s``), the per-round ratios
    manual/torch (``ratio``) and manual/jax (``jax_ratio``), GFLOP/s and % of the round's NumPy GEMM."""
    med = {k: statistics.median(v) for k, v in blocks.items()}
    peak = {dt: 2 * GEMM_N ** 3 / med["numpy", f"gemm:{dt}"] / 1e9 for dt in ("float32", "float64")}
    rows = []
    for k in keys:
        kind, name = k.split(":", 1)
        ratio, lo, hi = _ratio_stats(blocks["numpy", k], blocks["torch", k])
        row = {"key": k, "ratio": ratio, "ratio_min": lo, "ratio_max": hi,
               "reps": [reps[s, k] for s in sides], "faults_per_call": [faults[s, k] for s in sides]}
        for s in sides:
            row.update({f"{COLUMN[s]}_s": med[s, k], f"{COLUMN[s]}_blocks": blocks[s, k],
                        f"{COLUMN[s]}_first_call_s": first[s, k]})
        if "jax" in sides:
            jr, jlo, jhi = _ratio_stats(blocks["numpy", k], blocks["jax", k])
            row.update(jax_ratio=jr, jax_ratio_min=jlo, jax_ratio_max=jhi,
                       jax_compile_s=max(0.0, first["jax", k] - med["jax", k]))
        if kind == "gemm":
            row.update(case="GEMM 1024^3 " + name, what="matmul", dtype=name)
            flop = 2 * GEMM_N ** 3
        else:
            case_key, what = name.split("/", 1) if kind == "net" else (name, "products")
            case = CASE[case_key]
            row.update(case=case.label, what=what, dtype=case.dtype)
            flop = None if what == "1000 epochs" else case.gemm_flop
        if flop:  # per round against that round's GEMM block, then the median over rounds
            gemm = blocks["numpy", f"gemm:{row['dtype']}"]
            for s in sides:
                row[f"{COLUMN[s]}_gflops"] = flop / med[s, k] / 1e9
                pct = [100 * (flop / t) / (2 * GEMM_N ** 3 / g) for t, g in zip(blocks[s, k], gemm, strict=True)]
                row[f"{COLUMN[s]}_peak_pct"] = statistics.median(pct)
        rows.append(row)
    return {"rounds": args.rounds, "block_s": args.block, "gap_s": args.gap, "max_others": args.max_others,
            "sides": [COLUMN[s] for s in sides], "gemm_peak_gflops": peak, "rows": rows}


def targets(rows, mem) -> list[dict]:
    """The issue's targets: manual against torch (JAX is a column beside them, not a target)."""
    out = []
    by = {r["key"]: r for r in rows}
    for (case_key, what), limit in TARGETS.items():
        key = "net:iris/1000 epochs" if case_key == "run" else f"net:{case_key}/{what}"
        if key in by:
            r = by[key]
            out.append({"what": f"{r['case']}, {r['what']}: manual/torch time <= {limit:.2f}",
                        "value": f"{r['ratio']:.3f}", "met": r["ratio"] <= limit})
    if ("numpy", "big32") in mem:
        m, t = mem["numpy", "big32"]["step_peak_kib"], mem["torch", "big32"]["step_peak_kib"]
        out.append({"what": f"{CASE['big32'].label}, step: peak memory manual <= torch",
                    "value": f"{m / 1024:.1f} MiB vs {t / 1024:.1f} MiB", "met": m <= t})
    return out


if __name__ == "__main__":
    sys.exit(main())
