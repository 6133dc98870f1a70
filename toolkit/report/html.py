"""HTML pieces every report page shares: one stylesheet, a navigation bar, tables, figures.

Pages are plain HTML with no script, sharing one stylesheet (``style.css`` at the site's root,
linked relatively), so a report opens from a file URL, offline, in any browser, and the same
inputs give the same bytes (no timestamps, no random ids). The stylesheet is written once: with
1,200 persona pages an inline copy cost a megabyte.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import polars as pl

STYLE = """body{font-family:system-ui,sans-serif;max-width:1240px;margin:0 auto;padding:0 1em 3em;color:#222}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:.6em 0;margin-bottom:1em}
nav a{margin-right:1.2em;text-decoration:none;color:#1a5fb4}nav a.here{font-weight:bold;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.6em 0 1.2em}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto}figure{margin:1em 0}figcaption{font-size:13px;color:#555}
.note{color:#555;font-size:14px}.warn{color:#a04000}pre{white-space:pre-wrap;background:#f7f7f7;padding:.5em}
details{margin:.3em 0}summary{cursor:pointer}code{font-size:90%}"""

STYLESHEET = "style.css"  # the file every page links, written by the site writer at its root

STATUS_COLOR = {"PASS": "#2e7d32", "WITHIN-SE": "#ef6c00", "FAIL": "#c62828", "UNVERIFIABLE": "#5f6368"}


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def page(title: str, body: str, nav: Sequence[tuple[str, str]], here: str, root: str = "") -> str:
    """A whole page; ``nav`` holds (file, label) pairs relative to the site root, ``root`` is
    the way back to it from this page ("" or "../")."""
    here_attr = ' class="here"'
    links = "".join(f'<a href="{esc(root + href)}"{here_attr if href == here else ""}>{esc(label)}</a>'
                    for href, label in nav)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="{esc(root)}{STYLESHEET}"></head><body>\n<nav>{links}</nav>\n'
            f"<h1>{esc(title)}</h1>\n{body}\n</body></html>\n")


def cell_text(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else str(value)


def table(df: pl.DataFrame, *, table_id: str | None = None, links: dict[str, str] | None = None,
          status: str | None = None) -> str:
    """``df`` as a table. ``links`` maps a shown column to the column holding its href (not
    shown); ``status`` names a column coloured as PASS / WITHIN-SE / FAIL."""
    links = links or {}
    hidden = set(links.values())
    cols = [c for c in df.columns if c not in hidden]
    numeric = {c for c in cols if df.schema[c].is_numeric()}
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for row in df.iter_rows(named=True):
        cells = []
        for c in cols:
            text = esc(cell_text(row[c]))
            if c in links and row[links[c]]:
                text = f'<a href="{esc(row[links[c]])}">{text}</a>'
            attrs = ' class="num"' if c in numeric else ""
            if c == status and row[c] in STATUS_COLOR:
                attrs += f' style="color:{STATUS_COLOR[row[c]]};font-weight:bold"'
            cells.append(f"<td{attrs}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure(src: str, caption: str) -> str:
    """An image for PNG and SVG; a PDF (which browsers do not show inline) as a link; a figure
    that could not be drawn as its reason."""
    if not src:
        return f'<p class="note warn">{esc(caption)}</p>'
    if src.endswith(".pdf"):
        return f'<p><a href="{esc(src)}">{esc(caption)} (PDF)</a></p>'
    return f'<figure><img src="{esc(src)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'
