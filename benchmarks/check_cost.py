"""What the check itself costs: wall time and peak memory of ``python -m compare check`` against the
number of training steps and the number of parameters, as a multiple of one training run of the
slower implementation (issue 16).

    .venv/bin/python benchmarks/check_cost.py                    # the sweep -> benchmarks/check_cost.json
    .venv/bin/python benchmarks/check_cost.py --only p1M-s100,p1M-s1000         # the two 1M-parameter points
    .venv/bin/python benchmarks/check_cost.py --figure run.json  # docs/img/check_cost.png from a run
    .venv/bin/python benchmarks/check_cost.py --memory           # the --hidden 512 512 epochs 100/300 facts

Every measurement is a fresh process, started from here and reaped with os.wait4, whose rusage gives
that process's own peak resident set (ru_maxrss; imports and code pages included):

- ``check``: ``compare.cli.main(["check", ...])``, exactly what ``python -m compare check`` runs, with
  timestamps added around the check's sections (the harness's progress callback) and inside the
  trajectory (per run: wall, thread CPU, time blocked in the lockstep rendezvous; the step-by-step
  comparison; the noise runs' waits for the structural zeros), called three times: the first call is
  cold (it pays every lazy initialisation, torch's first optimizer importing ``torch._dynamo`` among
  them, as a user's one check does); the faster of the other two is the warm figure.  Then, in the
  same process, each implementation trains alone (``single_runs``: manual, torch, torch, manual, each
  side's faster run kept), back to back with the checks it is divided into.
- ``train``: the same single runs in a fresh process of their own: each side's first run there is the
  cold figure, and the process's peak RSS is training's alone.

A single run is ``impl.train(spec, weights, data, order, None, None, no-op)``, with the check's spec,
weights, data and order and its thread settings (``harness.one_torch_thread``: one torch intra-op
thread, one BLAS thread).  The multiple compares like with like: **warm** = the warm check() / the
slower implementation's warm single run, both in the check's process; **cold** = the process's first
check() / the slower side's first run in the train process.  The load average seen before each
process is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.abspath(__file__)
if ROOT not in sys.path:  # this checkout's compare/, manual/, torch_ref/ (not another worktree's install)
    sys.path.insert(0, ROOT)
OUT_JSON = os.path.join(ROOT, "benchmarks", "check_cost.json")
FIGURE = os.path.join(ROOT, "docs", "img", "check_cost.png")
ROWS = 120  # iris' training split
BATCH = 32  # every grid point: minibatches of 32 (4 steps an epoch on iris: 32, 32, 32, 24 rows)


def params(hidden, n_in=4, n_out=3) -> int:
    sizes = [n_in, *hidden, n_out]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def epochs_for(steps: int, batch: int | None) -> int:
    per = -(-ROWS // (batch or ROWS))
    assert steps % per == 0, (steps, per)
    return steps // per


SMALL, MID, LARGE = (28, 28), (312, 312), (1000, 1000)   # 1,039 / 100,155 / 1,009,003 parameters on iris


def grid() -> list[dict]:
    """name, hidden, steps, batch: the steps sweep at ~1k parameters, the parameter sweep at 100 steps,
    and 1M parameters for 1,000 steps; all on iris, batch 32."""
    pts = [(f"p1k-s{s}", SMALL, s) for s in (100, 1000, 10000)]
    pts += [("p100k-s100", MID, 100), ("p1M-s100", LARGE, 100), ("p1M-s1000", LARGE, 1000)]
    return [{"name": n, "hidden": list(h), "steps": s, "batch": BATCH, "epochs": epochs_for(s, BATCH),
             "params": params(h)} for n, h, s in pts]


def cli_args(pt: dict) -> list[str]:
    a = ["check", "--hidden", *map(str, pt["hidden"]), "--epochs", str(pt["epochs"])]
    return a + (["--batch-size", str(pt["batch"])] if pt.get("batch") else [])


# ---- the measured processes -------------------------------------------------------------------------
def _spawn(argv: list[str], result_path: str | None = None, timeout: float = 1800) -> dict:
    """Run argv in a fresh process; its wall time, peak RSS (os.wait4), exit status and, if given,
    the JSON it wrote to result_path."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = t0 + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.returncode = os.waitstatus_to_exitcode(status)
    out = {"wall_s": wall, "peak_rss_mb": ru.ru_maxrss / 1024, "rc": p.returncode, "load1_before": load,
           "user_s": ru.ru_utime, "sys_s": ru.ru_stime}
    if err.strip():
        out["stderr_tail"] = err[-600:]
    if result_path and os.path.exists(result_path):
        with open(result_path) as f:
            out.update(json.load(f))
        os.remove(result_path)
    return out


def measure(pt: dict, tmp: str) -> dict:
    spec = json.dumps(pt)
    res = {**pt}
    path = os.path.join(tmp, f"{pt['name']}-train.json")
    res["train"] = _spawn([sys.executable, HERE, "--worker", "train", spec, path], path)
    path = os.path.join(tmp, f"{pt['name']}-check.json")
    res["check"] = _spawn([sys.executable, HERE, "--worker", "check", spec, path], path)
    tr, ck = res["train"], res["check"]
    if "manual_s" in tr and "single" in ck:
        one = ck["single"]           # warm single runs, measured in the check's process right after it
        slower = max(one["manual_s"], one["torch_s"])
        res["slower"] = "manual" if one["manual_s"] >= one["torch_s"] else "torch"
        res["slower_run_s"] = slower
        res["multiple"] = ck["warm"]["check_s"] / slower     # warm check / warm run
        res["multiple_cold"] = ck["check_s"] / max(tr["manual_cold_s"], tr["torch_cold_s"])  # first / first
        res["multiple_cpu"] = ck["warm"]["check_cpu_s"] / max(one["manual_cpu_s"], one["torch_cpu_s"])
    return res


# ---- workers (run in the measured processes) --------------------------------------------------------
def _spec(pt):
    from compare.spec import Spec

    return Spec(hidden=tuple(pt["hidden"]), epochs=pt["epochs"], batch_size=pt.get("batch"))


def single_runs(pt: dict, names=("manual", "torch", "torch", "manual")) -> dict:
    """Each of ``names`` trained alone, in turn, with the check's spec, weights, data and order and its
    thread settings: ``impl.train(spec, weights, data, order, None, None, no-op)``.  Per side: the
    faster of its runs (warm), its first run in this process (cold), the CPU seconds, every time."""
    from compare import harness
    from compare.data import load_split
    from compare.registry import load
    from compare.schedule import epoch_orders

    spec = _spec(pt)
    impls = {"manual": load("manual"), "torch": load("torch")}
    weights = harness.initial_weights(spec)
    data = harness.data_for(spec, load_split(spec))
    order = epoch_orders(data.X_train.shape[0], spec.epochs, spec.batch_size, spec.seed)
    times = {"manual": [], "torch": []}
    cpu = {"manual": [], "torch": []}
    steps = {}
    with harness.one_torch_thread():
        for name in names:
            t0, c0 = time.perf_counter(), time.process_time()
            r = impls[name].train(spec, weights, data, order, None, None, lambda *a: None)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            steps[name] = len(r.loss)
    return {"manual_s": min(times["manual"]), "torch_s": min(times["torch"]),
            "manual_cold_s": times["manual"][0], "torch_cold_s": times["torch"][0],
            "manual_cpu_s": min(cpu["manual"]), "torch_cpu_s": min(cpu["torch"]),
            "times": times, "cpu": cpu, "steps_run": steps}


def worker_train(pt: dict, path: str) -> None:
    """The single runs in a process of their own: cold (torch's first training run pays its lazy
    initialisation, as a user's one run alone would) and the peak RSS of training alone."""
    with open(path, "w") as f:
        json.dump(single_runs(pt), f)


def worker_check(pt: dict, path: str) -> None:
    """compare.cli.main(check ...) with timestamps around the sections and inside the trajectory."""
    import threading

    from compare import cli, harness, lockstep, trajectory

    marks = []
    prof = {"arrive_s": {}, "structural_wait_s": {}, "run_wall_s": {}, "run_cpu_s": {}, "compare_s": 0.0,
            "compare_calls": 0}
    lk = threading.Lock()

    def add(d, k, v):
        with lk:
            d[k] = d.get(k, 0.0) + v

    real_check = harness.check

    cpu_marks = []

    def mark(s):
        marks.append((s, time.perf_counter()))
        cpu_marks.append(time.process_time())

    def timed_check(candidate, reference, spec=None, data=None, progress=None, keep_trajectory=None):
        mark("start")
        try:
            return real_check(candidate, reference, spec, data, mark, keep_trajectory)
        finally:
            mark("end")

    harness.check = timed_check

    real_init, real_arrive, real_structural = lockstep.Lockstep.__init__, lockstep.Lockstep.arrive, \
        lockstep.Lockstep.structural

    def init(self, roles, compare):
        def timed_compare(step, slots):
            t0 = time.perf_counter()
            compare(step, slots)
            prof["compare_s"] += time.perf_counter() - t0   # in the comparator thread, one step at a time
            prof["compare_calls"] += 1
        real_init(self, roles, timed_compare)

    def arrive(self, role, step, w, loss):
        t0 = time.perf_counter()
        real_arrive(self, role, step, w, loss)
        add(prof["arrive_s"], role, time.perf_counter() - t0)

    def structural(self, step, of_roles, own):
        t0 = time.perf_counter()
        r = real_structural(self, step, of_roles, own)
        add(prof["structural_wait_s"], threading.current_thread().name, time.perf_counter() - t0)
        return r

    lockstep.Lockstep.__init__, lockstep.Lockstep.arrive, lockstep.Lockstep.structural = init, arrive, structural
    real_job = trajectory.training_job

    def job(impl, role, *a):
        run = real_job(impl, role, *a)

        def timed():
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return run()
            finally:
                add(prof["run_wall_s"], role, time.perf_counter() - t0)
                add(prof["run_cpu_s"], role, time.thread_time() - c0)
        return timed

    trajectory.training_job = job

    def once() -> dict:
        marks.clear()
        cpu_marks.clear()
        prof.update({"arrive_s": {}, "structural_wait_s": {}, "run_wall_s": {}, "run_cpu_s": {}, "compare_s": 0.0,
                     "compare_calls": 0})
        t_call = time.perf_counter()
        saved = sys.stdout
        sys.stdout = open(os.devnull, "w")
        try:
            rc = cli.main(cli_args(pt))
        finally:
            sys.stdout = saved
        m = dict(marks)
        names = [k for k, _ in marks]
        return {"rc": rc, "check_s": m["end"] - m["start"], "check_cpu_s": cpu_marks[-1] - cpu_marks[0],
                "before_check_s": m["start"] - t_call,
                "sections_s": {names[i]: marks[i + 1][1] - marks[i][1] for i in range(1, len(marks) - 1)},
                "sections_cpu_s": {names[i]: cpu_marks[i + 1] - cpu_marks[i] for i in range(1, len(marks) - 1)},
                "trajectory_profile": json.loads(json.dumps(prof))}

    out = once()                 # the process's first check: it pays every lazy initialisation, as a user's does
    warm = [once(), once()]      # the same check twice more in this process: the faster is the warm figure
    out["warm"] = min(warm, key=lambda w: w["check_s"])
    out["warm_s"] = [w["check_s"] for w in warm]
    out["single"] = single_runs(pt)   # then each side alone, back to back with the checks it is divided into
    with open(path, "w") as f:
        json.dump(out, f)


# ---- the 512 512 memory facts -----------------------------------------------------------------------
def memory_facts() -> dict:
    out = {}
    for epochs in (100, 300):
        argv = [sys.executable, "-m", "compare", "check", "--hidden", "512", "512", "--epochs", str(epochs)]
        r = _spawn(argv)
        r["argv"] = " ".join(["python", *argv[1:]])
        out[f"epochs{epochs}"] = r
        print(f"  {r['argv']}: {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, rc {r['rc']}", flush=True)
    out["ratio_300_over_100"] = out["epochs300"]["peak_rss_mb"] / out["epochs100"]["peak_rss_mb"]
    return out


# ---- figure and table -------------------------------------------------------------------------------
def table(run: dict) -> str:
    rows = ["| grid point | hidden | parameters | steps (epochs x batch 32) | manual run | torch run | check() | "
            "FD | trajectory | first check() | manual, torch first run | peak RSS | multiple warm | multiple cold |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in run["points"]:
        tr, ck = r["train"], r["check"]
        if "multiple" not in r:
            rows.append(f"| {r['name']} | {r['hidden']} | {r['params']:,} | {r['steps']:,} | failed: "
                        f"{ck.get('stderr_tail', '')[-80:]!r} |")
            continue
        w, one = ck["warm"], ck["single"]
        sec = w["sections_s"]
        rows.append(f"| {r['name']} | {'-'.join(map(str, r['hidden']))} | {r['params']:,} | {r['steps']:,} "
                    f"({r['epochs']}) | {one['manual_s']:.2f} s | {one['torch_s']:.2f} s | {w['check_s']:.2f} s | "
                    f"{sec.get('finite differences', 0):.2f} s | {sec.get('trajectory', 0):.2f} s | "
                    f"{ck['check_s']:.2f} s | {tr['manual_cold_s']:.2f} s, {tr['torch_cold_s']:.2f} s | "
                    f"{ck['peak_rss_mb']:.0f} MB | **{r['multiple']:.1f}x** | **{r['multiple_cold']:.1f}x** |")
    return "\n".join(rows)


def figure(run: dict, path: str = FIGURE) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in run["points"] if "multiple" in r]
    by_steps = sorted([r for r in pts if r["hidden"] == list(SMALL)], key=lambda r: r["steps"])
    by_params = sorted([r for r in pts if r["steps"] == 100], key=lambda r: r["params"])
    extra = [r for r in pts if r["hidden"] == list(LARGE) and r["steps"] != 100]
    fig, ax = plt.subplots(2, 2, figsize=(11, 8.5))
    for col, (rows, key, label) in enumerate(((by_steps, "steps", f"training steps ({by_steps[0]['params']:,} "
                                               "parameters, batch 32)" if by_steps else "steps"),
                                              (by_params, "params", "parameters (100 steps, batch 32)"))):
        if not rows:
            continue
        x = [r[key] for r in rows]
        a = ax[0][col]
        a.loglog(x, [r["check"]["warm"]["check_s"] for r in rows], "o-", label="check(), warm")
        a.loglog(x, [r["check"]["check_s"] for r in rows], "o:", color="C0", alpha=0.5,
                 label="check(), the process's first (cold)")
        a.loglog(x, [r["check"]["warm"]["sections_s"].get("finite differences", float("nan")) for r in rows],
                 "s--", label="  of which finite differences (warm)")
        a.loglog(x, [r["check"]["warm"]["sections_s"].get("trajectory", float("nan")) for r in rows], "^--",
                 label="  of which trajectory, 4 runs (warm)")
        a.loglog(x, [r["check"]["single"]["manual_s"] for r in rows], "x-", label="one run: manual (warm)")
        a.loglog(x, [r["check"]["single"]["torch_s"] for r in rows], "+-", label="one run: torch (warm)")
        for i, r in enumerate(rows):
            a.annotate(f"{r['multiple']:.1f}x ({r['multiple_cold']:.1f}x)", (r[key], r["check"]["warm"]["check_s"]),
                       textcoords="offset points", xytext=(-78 if i == len(rows) - 1 else 4, 8), fontsize=9,
                       fontweight="bold")
        if col == 1 and extra:
            for r in extra:
                a.loglog([r[key]], [r["check"]["warm"]["check_s"]], "D", color="C3",
                         label=f"check() warm, {r['steps']:,} steps")
                a.loglog([r[key]], [r["slower_run_s"]], "d", color="C3",
                         alpha=0.5, label=f"slower single run, {r['steps']:,} steps")
                a.annotate(f"{r['multiple']:.1f}x ({r['multiple_cold']:.1f}x)", (r[key], r["check"]["warm"]["check_s"]),
                           textcoords="offset points", xytext=(-84, -4), fontsize=9, fontweight="bold", color="C3")
        a.set_xlabel(label)
        a.set_ylabel("wall time (s)")
        a.grid(True, which="both", alpha=0.3)
        a.margins(x=0.08, y=0.15)
        a.legend(fontsize=7, loc="upper left")
        a.set_title("wall time (bold: warm check() / slower warm run; in brackets: first / first)", fontsize=9)
        b = ax[1][col]
        b.loglog(x, [r["check"]["peak_rss_mb"] for r in rows], "o-", label="check process peak RSS")
        b.loglog(x, [r["train"]["peak_rss_mb"] for r in rows], "x-", label="single-runs process peak RSS")
        if col == 1 and extra:
            for r in extra:
                b.loglog([r[key]], [r["check"]["peak_rss_mb"]], "D", color="C3",
                         label=f"check process, {r['steps']:,} steps")
        b.set_xlabel(label)
        b.set_ylabel("peak RSS (MB)")
        b.grid(True, which="both", alpha=0.3)
        b.legend(fontsize=7)
        b.set_title("peak memory (whole process: Python, NumPy, torch included)", fontsize=10)
    fig.suptitle(f"Cost of python -m compare check (iris, sigmoid, SGD, batch 32); load avg "
                 f"{run.get('load_range', '')}", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", nargs=3, metavar=("KIND", "POINT", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("--only", default=None, help="comma-separated grid point names (p1k-s100, ...)")
    p.add_argument("--json", default=OUT_JSON, help=f"output (default {os.path.relpath(OUT_JSON, ROOT)})")
    p.add_argument("--figure", metavar="RUN.json", help="only draw docs/img/check_cost.png (and the table) from a run")
    p.add_argument("--memory", action="store_true", help="only the --hidden 512 512 epochs 100 / 300 facts")
    a = p.parse_args()
    if a.worker:
        kind, pt, path = a.worker
        (worker_train if kind == "train" else worker_check)(json.loads(pt), path)
        return
    if a.figure:
        with open(a.figure) as f:
            run = json.load(f)
        figure(run)
        print(table(run))
        return
    import tempfile

    run = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "python": sys.version.split()[0], "cpus": os.cpu_count(),
           "points": []}
    if os.path.exists(a.json):
        with open(a.json) as f:
            old = json.load(f)
        run = {**old, **{k: run[k] for k in ("started",)}}
        run["points"] = [x for x in run.get("points", []) if "single" in x.get("check", {})]  # this format's only
    if a.memory:
        print("memory facts (--hidden 512 512, full batch):", flush=True)
        run["memory_512"] = memory_facts()
    else:
        pts = [pt for pt in grid() if a.only is None or pt["name"] in a.only.split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            for pt in pts:
                r = measure(pt, tmp)
                run["points"] = [x for x in run["points"] if x["name"] != pt["name"]] + [r]
                ck = r["check"]
                if "multiple" in r:
                    w, one = ck["warm"], ck["single"]
                    print(f"{pt['name']:12s} {pt['params']:>9,} params {pt['steps']:>6,} steps: manual "
                          f"{one['manual_s']:.2f} s torch {one['torch_s']:.2f} s | check() warm "
                          f"{w['check_s']:.2f} s ({ {k: round(v, 2) for k, v in w['sections_s'].items()} }) first "
                          f"{ck['check_s']:.2f} s | peak {ck['peak_rss_mb']:.0f} MB | warm x{r['multiple']:.1f} "
                          f"cold x{r['multiple_cold']:.1f} CPU x{r['multiple_cpu']:.1f} "
                          f"| load {r['train']['load1_before']:.1f}/{ck['load1_before']:.1f}", flush=True)
                else:
                    print(f"{pt['name']}: failed: {r['train'].get('stderr_tail')} {ck.get('stderr_tail')}", flush=True)
                with open(a.json, "w") as f:
                    json.dump(run, f, indent=1)
        order = {pt["name"]: i for i, pt in enumerate(grid())}
        run["points"].sort(key=lambda x: order.get(x["name"], 99))
        loads = [x[k]["load1_before"] for x in run["points"] for k in ("train", "check")]
        run["load_range"] = f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores" if loads else ""
    with open(a.json, "w") as f:
        json.dump(run, f, indent=1)
    if run["points"]:
        figure(run, FIGURE if os.path.abspath(a.json) == OUT_JSON else os.path.splitext(a.json)[0] + ".png")
        print(table(run))


if __name__ == "__main__":
    main()
