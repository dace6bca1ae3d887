"""The report's blocks (report_text.blocks) rendered to markdown and to one self-contained HTML page."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from .results import VERDICTS


# -------------------------------------------------------------------------------
def render_md(blocks) -> str:
    out = []
    for kind, *a in blocks:
        if kind == "h":
            out.append("#" * a[0] + " " + a[1])
        elif kind == "p":
            out.append(a[0])
        elif kind == "ul":
            out.append("\n".join(f"- {x}" for x in a[0]))
        elif kind == "pre":
            out.append(f"```{a[1]}\n{a[0]}\n```")
        elif kind == "img":
            out.append(f"![{a[1]}]({a[0]})")
        elif kind == "table":
            cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731
            out.append("\n".join(["| " + " | ".join(map(cell, a[0])) + " |", "|" + " --- |" * len(a[0])]
                                 + ["| " + " | ".join(map(cell, row)) + " |" for row in a[1]]))
    return "\n\n".join(out) + "\n"


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45;"
       "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;"
       "padding:.25em .6em;text-align:left}th{background:#f3f3f3}code,pre{background:#f6f6f6;font-size:.9em}"
       "pre{padding:.8em;overflow-x:auto}img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}"
       "figcaption{color:#555;font-size:.9em}.agree{color:#176f2c}.disagree{color:#b00020}.inconclusive{color:#a05a00}")


def _inline(text: str) -> str:
    t = html.escape(str(text), quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t).replace("\\*", "*")


def render_html(blocks, out: Path) -> str:
    """One self-contained page: the PNG figures in ``out`` are embedded as base64 data: URLs."""
    body = []
    for kind, *a in blocks:
        if kind == "h":
            cls = "" if a[0] != 1 else f' class="{next(v for v in VERDICTS if f": {v.upper()}," in a[1])}"'
            body.append(f"<h{a[0]}{cls}>{_inline(a[1])}</h{a[0]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(a[0])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in a[0]) + "</ul>")
        elif kind == "pre":
            body.append(f"<pre><code>{html.escape(a[0])}</code></pre>")
        elif kind == "img":
            data = base64.b64encode((out / a[0]).read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(a[1])}">'
                        f"<figcaption>{html.escape(a[1])}</figcaption></figure>")
        elif kind == "table":
            body.append("<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in a[0]) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{_inline(x)}</td>" for x in row) + "</tr>" for row in a[1])
                        + "</table>")
    title = html.escape(blocks[0][2])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


