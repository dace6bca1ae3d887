"""The lessons' files: lessons.json (every plotted number, both sides, the agreement per lesson),
lessons.md with its PNGs beside it, and a self-contained lessons.html (PNGs embedded as base64).
Every file is written atomically (temp file + os.replace); PNGs first, lessons.json, then the pages."""
from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from pathlib import Path

KIND = "backprop-crosscheck lessons"


def prepare_out_dir(path) -> Path:
    """The output folder, created if missing.  Refused: a path that is not a folder, and a non-empty folder
    that is not a previous lessons output (its lessons.json says so), so nothing else is overwritten."""
    if str(path) == "":
        raise ValueError("--out must not be empty; give a folder for the lessons")
    out = Path(path)
    if out.is_symlink() and not out.exists():
        raise ValueError(f"--out {str(out)!r} is a symbolic link to {os.readlink(out)!r}, which does not exist; "
                         "remove the link or give another folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory; give a folder for the lessons")
    if out.is_dir() and any(out.iterdir()):
        try:
            previous = json.loads((out / "lessons.json").read_text(encoding="utf-8")).get("kind") == KIND
        except (OSError, ValueError, AttributeError):
            previous = False
        if not previous:
            raise ValueError(f"--out {str(out)!r} is a non-empty folder that is not a previous lessons output; "
                             "give a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def png_name(i: int, key: str) -> str:
    return f"lesson-{i}-{key}.png"


def agreement_line(a: dict, names) -> str:
    verdict = "within" if a["ok"] else "NOT within"
    return (f"Agreement: {names[0]} vs {names[1]}: largest normwise relative difference {a['max_rel']:.2e} over "
            f"{a['series']} plotted series (worst: {a['where'] or '-'}); {verdict} the {a['dtype']} tolerance "
            f"{a['allowed']:.0e}.")


def render_md(lessons, names, meta) -> str:
    lines = [f"# Lessons: the lecture's claims, run on {names[0]} and {names[1]}", "",
             (f"Candidate **{names[0]}**, reference **{names[1]}**, {meta['dtype']}, seeded; every number in a "
             "figure is computed by both implementations through compare.protocol and compared."), "",
             "| # | lesson | largest relative difference | agree |", "|---|---|---|---|"]
    for i, les in enumerate(lessons, 1):
        a = les["agreement"]
        lines.append(f"| {i} | {les['title']} | {a['max_rel']:.2e} | {'yes' if a['ok'] else '**NO**'} |")
    for i, les in enumerate(lessons, 1):
        a = les["agreement"]
        mark = "" if a["ok"] else " (DISAGREEMENT)"
        lines += ["", f"## {i}. {les['title']}{mark}", "", les["text"], "",
                  f"![{les['title']}]({png_name(i, les['key'])})", "",
                  f"**{agreement_line(a, names)}**" if not a["ok"] else agreement_line(a, names)]
    return "\n".join(lines) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}
section{border-left:4px solid #2a7;padding:0 1em;margin:2.2em 0}section.bad{border-color:#c00;background:#fff4f4}
img{max-width:100%;height:auto}p.agree{font-size:.92em;color:#264}section.bad p.agree,td.bad{color:#c00;
font-weight:bold}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .7em}"""


def render_html(lessons, names, meta, pngs) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{i}</td><td><a href='#{les['key']}'>{e(les['title'])}</a></td>"
                   f"<td>{les['agreement']['max_rel']:.2e}</td><td class='{'ok' if les['agreement']['ok'] else 'bad'}'>"
                   f"{'yes' if les['agreement']['ok'] else 'NO'}</td></tr>" for i, les in enumerate(lessons, 1))
    parts = [(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Lessons: {e(names[0])} vs {e(names[1])}"
             f"</title><style>{CSS}</style></head><body>"),
             f"<h1>Lessons: the lecture's claims, run on {e(names[0])} and {e(names[1])}</h1>",
             (f"<p>Candidate <b>{e(names[0])}</b>, reference <b>{e(names[1])}</b>, {e(meta['dtype'])}, seeded. Every "
             "number in a figure is computed by both implementations through compare.protocol and compared; in the "
             "figures the reference is the wide pale line, the candidate the thin dashed line on top.</p>"),
             f"<table><tr><th>#</th><th>lesson</th><th>largest relative difference</th><th>agree</th></tr>{rows}</table>"]
    for i, les in enumerate(lessons, 1):
        ok = les["agreement"]["ok"]
        b64 = base64.b64encode(pngs[les["key"]]).decode("ascii")
        parts.append(f"<section id='{les['key']}' class='{'ok' if ok else 'bad'}'><h2>{i}. {e(les['title'])}"
                     f"{'' if ok else ' (disagreement)'}</h2><p>{e(les['text'])}</p>"
                     f"<img alt='{e(les['title'])}' src='data:image/png;base64,{b64}'>"
                     f"<p class='agree'>{e(agreement_line(les['agreement'], names))}</p></section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_all(out: Path, lessons, names, meta, pngs) -> None:
    """lessons: dicts with key, title, text, agreement, data (JSON-able); pngs: key -> PNG bytes."""
    for i, les in enumerate(lessons, 1):
        atomic_write(out / png_name(i, les["key"]), pngs[les["key"]])
    doc = {"kind": KIND, **meta, "candidate": names[0], "reference": names[1],
           "agree": all(les["agreement"]["ok"] for les in lessons),
           "lessons": [{**les, "figure": png_name(i, les["key"])} for i, les in enumerate(lessons, 1)]}
    atomic_write(out / "lessons.json", (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode())
    atomic_write(out / "lessons.md", render_md(lessons, names, meta).encode())
    atomic_write(out / "lessons.html", render_html(lessons, names, meta, pngs).encode())
