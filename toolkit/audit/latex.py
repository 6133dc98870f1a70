"""Every number a LaTeX paper prints, with where it is printed: what `claims coverage` holds
against a claims file.

A reader sees numbers in the typeset paper, not in its source, so the tokenizer reads the
source the way LaTeX prints it:

- only the document body (``\\begin{document}`` to ``\\end{document}``, or the whole file when
  it has none), comments removed (a ``%`` not escaped as ``\\%``);
- arguments that are never printed as text are blanked: labels, references, citations, URLs,
  file names, lengths, environment names and a tabular's column spec, ``\\multicolumn``'s span
  and alignment;
- a number is a run of digits with an optional decimal part, thousands groups written
  ``30{,}000`` or ``30\\,000``, a sign when it is unary (``$-26$``, ``($+6\\%$)``; not the
  dash of a range ``0--5``), and ``a \\times 10^{b}`` read as one number;
- digits that are part of a name are not numbers: ``GPT-4o``, ``MFQ-30``, ``Qwen3-235B``,
  ``70B`` (a letter or a hyphenated word touches them);
- a unit after the number is kept: ``\\%``, ``pp``, ``\\times``.

Each number is placed: in a table or figure environment, at that environment's ``\\label``
(``tab:metrics_s``), with its row and column for a tabular cell; in the abstract at
``abstract``; elsewhere at the label of the enclosing (sub)section, or ``section:Title`` when
the section has no label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolkitError

# commands whose every brace argument is not printed text
_SILENT = ("label", "ref", "eqref", "autoref", "cref", "Cref", "pageref", "cite", "citep", "citet", "citealp",
           "citeauthor", "citeyear", "url", "href", "includegraphics", "input", "include", "bibliography",
           "bibliographystyle", "graphicspath", "usepackage", "setlength", "setcounter", "addtolength", "vspace",
           "hspace", "documentclass", "PassOptionsToPackage", "begin", "end", "newcommand", "renewcommand",
           "cmidrule", "arraystretch", "resizebox", "scalebox", "rule", "fontsize", "linewidth", "textwidth")
_SILENT_RE = re.compile(r"\\(?:" + "|".join(_SILENT) + r")\*?\s*((?:\[[^\]]*\]|\{(?:[^{}]|\{[^{}]*\})*\}\s*)*)")
_TABULAR_SPEC = re.compile(r"\\begin\{(?:tabular|tabularx|array)\*?\}(\s*\{[^}]*\})?(\s*\{(?:[^{}]|\{[^{}]*\})*\})")
_MULTICOLUMN = re.compile(r"\\multicolumn\s*(\{[^}]*\})\s*(\{[^}]*\})")
_NUMBER = re.compile(r"(?P<sign>[+\-\u2212])?\s*(?P<int>\d+(?:(?:\{,\}|\\,|,(?=\d{3}\b))\d{3})*)(?P<frac>\.\d+)?")
_SCI = re.compile(r"\s*\\times\s*10\^\{?(?P<exp>[+\-\u2212]?\d+)\}?")
_UNIT = re.compile(r"\s*\$?\s*(?P<unit>\\%|\{\\%\}|pp\b|\\times\b|\\,\\%)")
_ENV = re.compile(r"\\(begin|end)\{(table\*?|figure\*?|abstract|tabular\*?|tabularx)\}")
_DISPLAY = re.compile(r"\\begin\{(equation|align|eqnarray|gather|multline)(\*?)\}.*?\\end\{\1\2\}|\\\[.*?\\\]",
                      re.DOTALL)
_SECTION = re.compile(r"\\(?:sub)*section\*?\{([^}]*)\}")
_LABEL = re.compile(r"\\label\{([^}]*)\}")


@dataclass(frozen=True)
class Printed:
    """One number as the paper prints it: ``value`` (canonical: sign, digits, decimal part as
    printed; ``2e-4`` for ``2 \\times 10^{-4}``), its ``unit`` ('%', 'pp', 'x' or ''), the
    source ``line`` (1-based), ``where`` it sits (a label), and for a table cell its ``row``
    (the row's first cell) and ``column`` (1-based)."""

    value: str
    unit: str
    line: int
    where: str
    kind: str  # "cell", "caption" (a table or figure's other text), "text"
    row: str = ""
    column: int = 0

    @property
    def magnitude(self) -> str:
        """The value without its sign: a claim printed "-65" accounts for "a 65% drop"."""
        return self.value.lstrip("+-")


def _blank(text: str, start: int, end: int) -> str:
    """Replace text[start:end] with spaces, keeping newlines (so line numbers hold)."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def _strip_comments(text: str) -> str:
    return "\n".join(re.sub(r"(?<!\\)%.*", "", line) for line in text.split("\n"))


def _silence(text: str) -> str:
    for m in reversed(list(_DISPLAY.finditer(text))):  # displayed formulas define, they do not report
        text = _blank(text, m.start(), m.end())
    for pattern, groups in ((_TABULAR_SPEC, (1, 2)), (_MULTICOLUMN, (1, 2))):
        for m in reversed(list(pattern.finditer(text))):
            for g in groups:
                if m.group(g):
                    text = _blank(text, m.start(g), m.end(g))
    for m in reversed(list(_SILENT_RE.finditer(text))):
        text = _blank(text, m.start(), m.end())
    return text


def _is_name_part(text: str, start: int, end: int) -> bool:
    """Digits touching a letter (or a hyphen joined to a word) belong to a name: GPT-4o, MFQ-30."""
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    if before.isalpha() or before == "_" or (after.isalpha() and not text.startswith("pp", end)):
        return True
    if before == "-" and start >= 2 and text[start - 2].isalnum():
        return True
    if before in "^_" or (after == "/" and end + 1 < len(text) and text[end + 1].isalpha()):
        return True  # an exponent, a subscript or a ratio written 1/R: part of a formula
    return after == "-" and end + 1 < len(text) and text[end + 1].isalpha()


def _regions(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, where, kind) of the table/figure/abstract environments, innermost tabulars as "cell"."""
    out: list[tuple[int, int, str, str]] = []
    stack: list[tuple[str, int]] = []
    for m in _ENV.finditer(text):
        if m.group(1) == "begin":
            stack.append((m.group(2), m.end()))
            continue
        while stack and stack[-1][0] != m.group(2):
            stack.pop()
        if not stack:
            continue
        env, start = stack.pop()
        out.append((start, m.start(), env, ""))
    return out


def printed_numbers(source: str | Path) -> list[Printed]:
    """Every printed number of a LaTeX file, in source order."""
    path = Path(source)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolkitError(f"cannot read the LaTeX source: {exc}", path=str(path)) from None
    return numbers_of(raw)


def numbers_of(raw: str) -> list[Printed]:
    """``printed_numbers`` of LaTeX text."""
    text = _strip_comments(raw)
    begin, end = text.find("\\begin{document}"), text.find("\\end{document}")
    if begin >= 0:
        text = _blank(text, 0, begin + len("\\begin{document}"))
    if end >= 0:
        text = _blank(text, end, len(text))
    labels = {m.start(): m.group(1) for m in _LABEL.finditer(text)}
    sections = [(m.start(), m.group(1)) for m in _SECTION.finditer(text)]
    regions = _regions(text)
    quiet = _silence(text)
    line_starts = [0] + [i + 1 for i, c in enumerate(quiet) if c == "\n"]

    def line_of(pos: int) -> int:
        lo, hi = 0, len(line_starts)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if line_starts[mid] <= pos:
                lo = mid
            else:
                hi = mid
        return lo + 1

    def section_at(pos: int) -> str:
        before = [s for s in sections if s[0] <= pos]
        if not before:
            return "section:front"
        start, title = before[-1]
        nxt = [s for s, _ in sections if s > start]
        stop = min(nxt[0] if nxt else len(text), start + 400)
        own = [lab for p, lab in labels.items() if start < p < stop]
        return own[0] if own else f"section:{title.strip()}"

    def env_label(start: int, stop: int) -> str | None:
        inside = [lab for p, lab in labels.items() if start <= p < stop]
        return inside[0] if inside else None

    out: list[Printed] = []
    consumed = 0
    for m in _NUMBER.finditer(quiet):
        s, e = m.start("int"), m.end("frac") if m.group("frac") else m.end("int")
        if s < consumed or _is_name_part(quiet, s, e):
            continue
        sign = m.group("sign") or ""
        if sign:
            before = quiet[: m.start("sign")].rstrip(" ")
            if not before or before[-1] in "$({[,=;:":
                pass  # unary: opens math, a bracket or a list item
            else:
                sign = ""  # a binary minus, or the dash of a range (0--5): not the number's sign
        digits = re.sub(r"\{,\}|\\,|,", "", m.group("int")) + (m.group("frac") or "")
        value = ("-" if sign in ("-", "\u2212") else "+" if sign == "+" else "") + digits
        tail = quiet[e:]
        sci = _SCI.match(tail)
        if sci:
            value = f"{value}e{sci.group('exp').replace(chr(0x2212), '-')}"
            e += sci.end()
            tail = quiet[e:]
        consumed = e
        unit_m = _UNIT.match(tail)
        unit = ""
        if unit_m:
            u = unit_m.group("unit")
            unit = "pp" if u == "pp" else "x" if "times" in u else "%"
        where, kind, row, column = section_at(s), "text", "", 0
        envs = sorted((r for r in regions if r[0] <= s < r[1]), key=lambda r: r[1] - r[0])
        if envs:
            containers = [r for r in envs if r[2].startswith(("table", "figure", "abstract"))]
            if containers:
                c = containers[0]
                where = "abstract" if c[2] == "abstract" else (env_label(c[0], c[1]) or f"{c[2]}@line{line_of(c[0])}")
                kind = "text" if c[2] == "abstract" else "caption"
            tab = [r for r in envs if r[2].startswith("tabular")]
            if tab:
                kind = "cell"
                row_start = max(quiet.rfind("\\\\", tab[0][0], s), quiet.rfind("\\midrule", tab[0][0], s),
                                quiet.rfind("\\toprule", tab[0][0], s), tab[0][0])
                segment = quiet[row_start:s]
                column = segment.count("&") + 1
                row = re.sub(r"\\[a-zA-Z]+|[{}$\\]|^\s*(rule)?", " ", quiet[row_start:s].split("&")[0]).strip()
                row = re.sub(r"\s+", " ", row)
        out.append(Printed(value, unit, line_of(s), where, kind, row, column))
    return out
