"""``snnc report experiments DIR``: every finished figure under DIR (``figN.md`` with its ``figN.png``; Figs. 8-10
share ``fig8_10.md``) collected into one ``report.md`` (images linked by relative path) and one standalone
``report.html`` (images embedded), in figure order. Both files are written as one set.
"""
from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path

from experiments.paper_common import write_outputs
from toolchain.errors import SnncError

_STEM = re.compile(r"^fig(\d+)(?:_(\d+))?$")


def find_figures(root: str | Path) -> list[tuple[int, Path, list[Path]]]:
    """[(first figure number, figN.md, [its PNGs])] under ``root``, sorted by figure number then path."""
    found = []
    for md in Path(root).rglob("fig*.md"):
        m = _STEM.match(md.stem)
        if not m:
            continue
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        pngs = [md.parent / f"fig{n}.png" for n in range(lo, hi + 1) if (md.parent / f"fig{n}.png").is_file()]
        found.append((lo, md, pngs))
    return sorted(found, key=lambda t: (t[0], str(t[1])))


def _shift_headings(text: str) -> str:
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", text, flags=re.M)


def _inline(text: str) -> str:
    t = html.escape(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", t)


def markdown_to_html(text: str) -> str:
    """The markdown the figure commands write (headings, tables, lists, paragraphs, images) as HTML."""
    out, para, table, items = [], [], [], []

    def flush():
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()
        if table:
            rows = [[c.strip() for c in r.strip().strip("|").split("|")] for r in table
                    if not re.fullmatch(r"\|?(\s*-+\s*\|)+\s*-*\s*", r.strip())]
            head, body = rows[0], rows[1:]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            table.clear()

    for line in text.splitlines():
        s = line.strip()
        img = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", s)
        if not s:
            flush()
        elif s.startswith("#"):
            flush()
            level = min(len(s) - len(s.lstrip("#")), 6)
            out.append(f"<h{level}>{_inline(s[level:].strip())}</h{level}>")
        elif s.startswith("|"):
            if para or items:
                flush()
            table.append(s)
        elif s.startswith("- "):
            if para or table:
                flush()
            items.append(s[2:])
        elif img:
            flush()
            out.append(f'<img alt="{html.escape(img.group(1))}" src="{html.escape(img.group(2))}">')
        else:
            if table:
                flush()
            para.append(s)
    flush()
    return "\n".join(out)


def write_report(root: str | Path, out: str | Path | None = None) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` into ``out`` (default ``root``); SnncError when there is nothing."""
    root = Path(root)
    if not root.is_dir():
        raise SnncError(f"{root} is not a folder; pass the folder the experiments wrote into (e.g. runs/experiments)")
    figs = find_figures(root)
    if not figs:
        raise SnncError(f"no finished figure (fig3.md, fig4.md, ...) under {root}; run `snnc experiments figN` first")
    dest = Path(out) if out is not None else root
    md_parts = ["# Comsa et al. 2021: the paper's experiments reproduced with snnc", "",
                f"{len(figs)} figure result(s) collected from {root}."]
    html_parts = list(md_parts)
    html_body = []
    for _, md, pngs in figs:
        text = _shift_headings(md.read_text())
        rel = [os.path.relpath(p, dest.resolve() if dest.exists() else dest.absolute()) for p in pngs]
        section = text.rstrip() + "\n\n" + "\n".join(f"![{p.stem}]({r})" for p, r in zip(pngs, rel))
        md_parts += ["", section, "", f"(from {md})"]
        embedded = text.rstrip() + "\n\n" + "\n".join(
            f"![{p.stem}](data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()})" for p in pngs)
        html_body.append(markdown_to_html(embedded) + f"\n<p><small>from {html.escape(str(md))}</small></p>")
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>snnc experiments</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #bbb;padding:2px 6px;font-size:90%}img{max-width:100%}</style></head><body>\n"
            + markdown_to_html("\n".join(html_parts)) + "\n" + "\n<hr>\n".join(html_body) + "\n</body></html>\n")
    return write_outputs(dest, {"report.md": "\n".join(md_parts) + "\n", "report.html": page})
