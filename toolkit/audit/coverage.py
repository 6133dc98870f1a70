"""Which of a paper's printed numbers a claims file accounts for (`toolkit claims coverage`).

Every number ``latex.printed_numbers`` finds is one of:

- **claimed**: a checkable claim prints it there (its ``where`` names the number's label and
  its ``printed`` value, sign aside, equals it: "a 65% drop" is the claim "-65");
- **unverifiable**: a claim that is UNVERIFIABLE (with its reason) prints it there;
- **excluded**: the claims file's ``excluded`` list says why it is not a result (a sample size,
  a hyper-parameter, a list number), by value, label and table column;
- **unaccounted**: none of these: `claims coverage` lists it with its line and exits 1.

A claim accounts for one cell of a table (a table printing 0.79 twice needs two claims) and for
every mention in running text (the abstract, the introduction and the discussion repeat the
same average).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from .claims import Claim, ClaimSet
from .latex import Printed, printed_numbers

STATES = ("claimed", "unverifiable", "excluded", "unaccounted")


@dataclass(frozen=True)
class Accounted:
    number: Printed
    state: str  # one of STATES
    by: str  # the claim id(s), or the exclusion's reason


@dataclass
class Coverage:
    source: str
    numbers: list[Accounted]

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for a in self.numbers:
            out[a.state] += 1
        return out

    @property
    def unaccounted(self) -> list[Accounted]:
        return [a for a in self.numbers if a.state == "unaccounted"]

    def reasons(self) -> dict[str, int]:
        """How many unverifiable numbers each reason accounts for."""
        out: dict[str, int] = defaultdict(int)
        for a in self.numbers:
            if a.state == "unverifiable":
                out[a.by] += 1
        return dict(out)

    def summary(self) -> str:
        c = self.counts
        reasons = "; ".join(f"{n}: {why}" for why, n in sorted(self.reasons().items(), key=lambda kv: -kv[1]))
        return (f"{len(self.numbers)} numbers printed, {c['claimed']} checked, {c['unverifiable']} unverifiable"
                + (f" ({reasons})" if reasons else "") + f", {c['excluded']} excluded, {c['unaccounted']} unaccounted")


def _same(a: str, b: str) -> bool:
    """Equal as printed, sign aside: "+55" and "55"; "4.50" is not "4.5" (other precision)."""
    a, b = a.lstrip("+-"), b.lstrip("+-")
    if a == b:
        return True
    try:
        return "e" in a + b and Decimal(a) == Decimal(b)
    except InvalidOperation:
        return False


def account(numbers: list[Printed], claims: ClaimSet) -> list[Accounted]:
    """Each number with its state (see the module's docstring)."""
    by_place: dict[str, list[Claim]] = defaultdict(list)
    for c in claims.claims:
        for where in c.where:
            by_place[where].append(c)
    used: set[tuple[str, str]] = set()  # (claim id, label): a claim accounts for one table cell per label
    out = []
    for n in numbers:
        candidates = [c for c in by_place.get(n.where, []) if c.printed and _same(c.printed, n.value)]
        if n.kind == "cell":
            candidates = [c for c in candidates if (c.id, n.where) not in used]
        if candidates:
            # checkable claims first, so a cell is never counted unverifiable when a check exists
            c = sorted(candidates, key=lambda c: c.unverifiable is not None)[0]
            if n.kind == "cell":
                used.add((c.id, n.where))
            if c.unverifiable:
                out.append(Accounted(n, "unverifiable", c.unverifiable))
            else:
                out.append(Accounted(n, "claimed", c.id))
            continue
        why = next((e.reason for e in claims.excluded
                    if (e.printed is None or _same(e.printed, n.value)) and (not e.where or n.where in e.where)
                    and (e.column is None or e.column == n.column)), None)
        out.append(Accounted(n, "excluded", why) if why else Accounted(n, "unaccounted", ""))
    return out


def coverage(source: str | Path, claims: ClaimSet) -> Coverage:
    """The coverage of a LaTeX source by a claims file."""
    return Coverage(str(source), account(printed_numbers(source), claims))


def unaccounted_lines(cov: Coverage) -> str:
    """One line per unaccounted number: line, label, row/column, value and unit."""
    lines = []
    for a in cov.unaccounted:
        n = a.number
        cell = f" row {n.row!r} column {n.column}" if n.kind == "cell" else f" ({n.kind})"
        unit = {"%": "%", "pp": "pp", "x": "×"}.get(n.unit, "")
        lines.append(f"{cov.source}:{n.line}: {n.value}{unit} at {n.where}{cell}\n")
    return "".join(lines)
