"""The results as text: the console table (``print_results``) and the README's markdown (``markdown``).

Three time columns, manual, torch and jax.  The JAX column reads what the run's ``jax`` field says when
JAX did not run ("not installed", "not run (--no-jax)"); in a JSON file from before the JAX column it
reads "not measured".
"""
from __future__ import annotations

import os

from cases import CASES, GEMM_N


def _t(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def jax_status(res: dict) -> str:
    return res.get("jax", "not measured")


def _jax_cells(res: dict, r: dict) -> tuple[str, str]:
    """(the JAX time, manual/jax (min-max)) of row ``r``, or the reason JAX has none."""
    if "jax_s" not in r:
        return jax_status(res), "-"
    return _t(r["jax_s"]), f"{r['jax_ratio']:.3f} ({r['jax_ratio_min']:.2f}-{r['jax_ratio_max']:.2f})"


def _gflops(r: dict, col: str, width: bool = False) -> str:
    if f"{col}_gflops" not in r:
        return ""
    return (f"{r[col + '_gflops']:7.1f} ({r[col + '_peak_pct']:4.0f} %)" if width
            else f"{r[col + '_gflops']:.1f} ({r[col + '_peak_pct']:.0f} %)")


def best_gemm_pct(res: dict, key: str = "net:big32/step") -> tuple[float, float] | None:
    """(%, GFLOP/s): the manual row ``key``'s median GFLOP/s against the fastest NumPy GEMM block of the run.
    Not a target, a cross-check of one: the GEMM slows down in some phases of a shared machine (up to 2x
    here) while a step barely does, and then the per-round % of the median GEMM reads high."""
    by = {r["key"]: r for r in res["rows"]}
    if key not in by or f"gemm:{by[key]['dtype']}" not in by:
        return None
    fastest = 2 * GEMM_N ** 3 / min(by[f"gemm:{by[key]['dtype']}"]["manual_blocks"]) / 1e9
    return 100 * by[key]["manual_gflops"] / fastest, fastest


def _memory_cells(res: dict, case) -> tuple | None:
    """(manual, torch, jax) peak-memory entries of ``case``; None when manual's or torch's is missing."""
    m, t = res["memory"].get(f"numpy/{case.key}"), res["memory"].get(f"torch/{case.key}")
    return (m, t, res["memory"].get(f"jax/{case.key}")) if m and t else None


def _mib(v: dict | None, res: dict) -> str:
    return f"{v['step_peak_kib'] / 1024:.1f} MiB" if v else (jax_status(res) if jax_status(res) != "ok" else "failed")


def markdown(runs: list[dict]) -> str:
    """The targets of each run side by side, then the last run's whole table (README format)."""
    out = ["| target | " + " | ".join(f"run {i + 1} ({r['date'][:16].replace('T', ' ')})" for i, r in enumerate(runs))
           + " |", "| --- |" + " --- |" * len(runs)]
    for i, t in enumerate(runs[0]["targets"]):
        cells = [f"{r['targets'][i]['value']} {'met' if r['targets'][i]['met'] else '**missed**'}" for r in runs]
        out.append(f"| {t['what']} | " + " | ".join(cells) + " |")
    best = [best_gemm_pct(r) for r in runs]
    if all(best):
        out.append("| (not a target) the same step against the run's fastest GEMM block | "
                   + " | ".join(f"{p:.1f} % of {g:.0f} GFLOP/s" for p, g in best) + " |")
    last = runs[-1]
    pk = last["gemm_peak_gflops"]
    out += ["", f"Run {len(runs)} in full (NumPy GEMM peak {pk['float32']:.0f} GFLOP/s float32, "
            f"{pk['float64']:.0f} float64; {last['contention']['rounds_used']} rounds):", "",
            "| case | what | manual | torch | jax | manual/torch (min-max) | manual/jax (min-max) "
            "| manual GFLOP/s (% of peak) | torch GFLOP/s (% of peak) | jax GFLOP/s (% of peak) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in last["rows"]:
        jt, jr = _jax_cells(last, r)
        out.append(f"| {r['case']} | {r['what']} | {_t(r['manual_s'])} | {_t(r['torch_s'])} | {jt} | "
                   f"{r['ratio']:.3f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | {jr} | "
                   f"{_gflops(r, 'manual')} | {_gflops(r, 'torch')} | {_gflops(r, 'jax')} |")
    compile_rows = [r for r in last["rows"] if r.get("jax_compile_s", 0) >= 1e-3]
    if compile_rows:
        out += ["", "JAX's first call of each function (trace and compile, not in the times above), minus a "
                "steady call: " + "; ".join(f"{r['case']} {r['what']} {_t(r['jax_compile_s'])}"
                                            for r in compile_rows) + "."]
    if last["memory"]:
        out += ["", "| peak memory of a training step | manual | torch | jax |", "| --- | ---: | ---: | ---: |"]
        for case in CASES:
            cells = _memory_cells(last, case)
            if cells:
                out.append(f"| {case.label} | " + " | ".join(_mib(v, last) for v in cells) + " |")
    return "\n".join(out)


def print_results(res: dict) -> list:
    print()
    npi = res["info"]["numpy"]["threadpools"]
    if isinstance(npi, str):
        print("NumPy BLAS:", npi)
    else:
        for p in npi:
            print(f"NumPy worker thread pool: {p['internal_api']} {p['version']}, kernel {p.get('architecture')}, "
                  f"{p['threading_layer']}, {p['num_threads']} threads ({os.path.basename(p['filepath'] or '')})")
    thp, th = res["info"]["torch"]["threadpools"], res["info"]["torch"]
    omp = [p for p in thp if p["internal_api"] == "openmp"] if not isinstance(thp, str) else []
    print(f"torch worker: {th.get('torch_blas')} (linked into torch), "
          + ", ".join(f"OpenMP {os.path.basename(p['filepath'] or '')} {p['num_threads']} threads" for p in omp)
          + f"; torch.get_num_threads() = {th.get('torch_threads')}")
    jx = res["info"].get("jax", {})
    print(f"JAX worker: {'JAX ' + jx['jax'] + ' on ' + jx['device'] if 'jax' in jx else jax_status(res)}")
    pk = res["gemm_peak_gflops"]
    print(f"GEMM peak (NumPy, 1024^3): {pk['float32']:.1f} GFLOP/s float32, {pk['float64']:.1f} GFLOP/s float64")
    print(f"{res['contention']['rounds_used']} interleaved rounds, {res['block_s']} s blocks, {res['gap_s']} s gaps; "
          "medians; ratio = median (min-max) of the per-round ratios; % = median over rounds of the GFLOP/s as a "
          "share of the same round's NumPy GEMM; jax compile = its first call minus a steady one (not timed)\n")
    head = (f"{'case':34s} {'what':11s} {'manual':>9s} {'torch':>9s} {'jax':>13s}  {'manual/torch':>18s}"
            f"  {'manual/jax':>18s}  {'manual GFLOP/s':>16s}  {'torch GFLOP/s':>16s}  {'jax GFLOP/s':>16s}"
            f"  {'jax compile':>11s}  {'page faults/call':>16s}")
    print(head)
    print("-" * len(head))
    for r in res["rows"]:
        jt, jr = _jax_cells(res, r)
        comp = _t(r["jax_compile_s"]) if "jax_compile_s" in r else ""
        print(f"{r['case']:34s} {r['what']:11s} {_t(r['manual_s']):>9s} {_t(r['torch_s']):>9s} {jt:>13s}  "
              f"{r['ratio']:6.3f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})  {jr:>18s}  "
              f"{_gflops(r, 'manual', True):>16s}  {_gflops(r, 'torch', True):>16s}  {_gflops(r, 'jax', True):>16s}"
              f"  {comp:>11s}  " + " ".join(f"{f:7.0f}" for f in r["faults_per_call"]))
    if res["memory"]:
        print("\npeak memory of a training step (fresh process each; VmHWM above VmRSS before the steps):")
        print(f"{'case':34s} {'manual':>10s} {'torch':>10s} {'jax':>13s}  {'manual/torch':>12s}   "
              "kept between steps (manual / torch / jax)")
        for case in CASES:
            cells = _memory_cells(res, case)
            if cells:
                m, t, j = cells
                ratio = f"{m['step_peak_kib'] / t['step_peak_kib']:.2f}" if t["step_peak_kib"] else "-"
                kept = " / ".join(f"{v['kept_kib'] / 1024:.1f}" for v in cells if v)
                print(f"{case.label:34s} {_mib(m, res):>10s} {_mib(t, res):>10s} {_mib(j, res):>13s}  "
                      f"{ratio:>12s}   {kept} MiB")
        methods = {v["method"] for v in res["memory"].values()}
        print("method:", "; ".join(sorted(methods)))
    print("\ntargets (manual against torch; JAX is a column beside them, not a target):")
    missed = []
    for t in res["targets"]:
        print(f"  {'met   ' if t['met'] else 'MISSED'}  {t['what']}: {t['value']}")
        if not t["met"]:
            missed.append(t)
    best = best_gemm_pct(res)
    if best:
        print(f"  (not a target: the same step against the run's fastest GEMM block, {best[1]:.1f} GFLOP/s: "
              f"{best[0]:.1f} %)")
    c = res["contention"]
    per_round = ", ".join(f"{x:.2f}" for x in c["others_cores_per_round"])
    print(f"\nother processes' CPU use per round, in cores: {per_round}; rounds used {c['rounds_used']}, "
          f"dropped {c['rounds_dropped']} (> {res['max_others']} cores)")
    if c["all_contended"]:
        print("WARNING: every round ran beside other work; these numbers are not a measurement of this "
              "machine. Rerun when it is idle (--wait-idle).")
    return missed
