"""The report's few lines on the terminal, from results.json's dict alone (as the report's text)."""
from __future__ import annotations

from pathlib import Path

from .report_text import sci


def terminal_summary(r: dict, out: Path, seconds: float) -> str:
    t, te, c, n = r["trajectory_summary"], r["test"], r["config"], r["data"]["n_test"]
    who = {role: f"{r[role]} ({role})" for role in ("candidate", "reference")}

    def worst(k):
        return max((x["rel"] for x in r[k]["checks"] if isinstance(x["rel"], float)), default=0.0)

    lines = [f"{r['verdict'].upper()}: {who['candidate']} vs {who['reference']} on {r['data']['name']}, judged "
             f"{r['judged_steps']} of {r['steps']} steps ({c['dtype']}, {c['optimizer']}, lr {c['lr']:g})"
             + (": " + r["reason"].removeprefix(f"judged {r['judged_steps']} of {r['steps']} steps: ")
                if r["reason"] else ""),
             f"  forward {worst('forward'):.1e}, gradients {worst('gradients'):.1e}, finite differences "
             f"{worst('finite_differences'):.1e}; trajectory max divergence {t['max_divergence']:.1e} "
             f"(judged noise envelope up to {sci(t['max_envelope_judged'])})"
             + ("" if t["first_failing_step"] is None else f", FIRST FAILING STEP {t['first_failing_step']}")]
    k = r["companion"]
    if k is not None and "error" in k:
        lines.append(f"  {k['dtype']} companion: not compared, {k['error']}")
    elif k is not None:
        lines.append(f"  {k['dtype']} companion: {k['verdict']}, judged {k['summary']['judged_steps']} of "
                     f"{k['summary']['steps']} steps, max divergence {k['summary']['max_divergence']:.1e}")
    slide = ("" if r["slide"] is None else f"; slide's six flowers: {r['slide']['rel']:.1e} apart, about "
             f"{r['slide']['significant_digits']} digits of the slide's print")
    lines.append(f"  test accuracy: {who['candidate']} {te['candidate']['correct']}/{n}, {who['reference']} "
                 f"{te['reference']['correct']}/{n}{slide}")
    if r["verdict"] != "agree":
        lines.append(f"  {r['verdict']}: " + ", ".join(f"{k} {v}" for k, v in r["parts"].items() if v != "agree"))
    lines.append(f"  written to {out}/ (report.html, report.md, results.json, figures, weights) in {seconds:.1f} s")
    return "\n".join(lines)
