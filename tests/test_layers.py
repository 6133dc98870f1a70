"""The folder tree is the data flow: protocol -> recorder / ingest -> store -> analysis -> report
(audit, cli on top). Read from the source (every import statement, also those inside
functions), so a lazy import cannot hide a dependency that runs the wrong way."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "toolkit"

# package -> the toolkit packages it must never import
FORBIDDEN = {
    "protocol": {"recorder", "ingest", "analysis", "report", "audit", "cli", "datasets", "integrations", "parallel"},
    "store": {"recorder", "ingest", "analysis", "report", "audit", "cli", "datasets", "integrations"},
    "parallel": {"protocol", "recorder", "ingest", "store", "analysis", "report", "audit", "cli", "datasets"},
    "recorder": {"ingest", "analysis", "report", "audit", "cli", "datasets"},
    "ingest": {"recorder", "report", "audit", "cli", "datasets"},
    "analysis": {"recorder", "ingest", "report", "audit", "cli", "datasets", "integrations"},
    "report": {"recorder", "audit", "cli", "datasets", "integrations"},
    "audit": {"recorder", "cli", "integrations"},
    "numerics": {"protocol", "recorder", "ingest", "store", "analysis", "report", "audit", "cli", "parallel"},
}
# the simulator's ground truth uses the metrics' own helpers, and its generating model is the one
# `power --simulate` plants changes in (analysis.model)
ONLY_FROM_INGEST = {"ingest": {"analysis.metrics", "analysis.model"}}


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Every toolkit module a file imports, as dotted names below ``toolkit``."""
    module = path.relative_to(root).with_suffix("").parts
    package = module[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("toolkit.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("toolkit"):
                names = [f"{name}.{a.name}" for a in node.names] if name == "toolkit" else [name]
                out |= set(names)
    return {n.removeprefix("toolkit.") for n in out if n != "toolkit"}


def stage(dotted: str) -> str:
    return dotted.split(".")[0]


def test_every_import_runs_with_the_data_flow():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).with_suffix("").parts
        here = own[0]
        for target in imports_of(path):
            allowed = ONLY_FROM_INGEST.get(here, set())
            if stage(target) in FORBIDDEN.get(here, set()) and not any(target.startswith(a) for a in allowed):
                bad.append(f"{path.relative_to(ROOT)} imports toolkit.{target}")
            if stage(target) == "cli" and here != "cli":
                bad.append(f"{path.relative_to(ROOT)} imports the command line (toolkit.{target})")
    assert not bad, "\n".join(bad)


def test_the_rule_catches_a_lazy_import(tmp_path):
    """The check reads imports inside functions too."""
    fake = tmp_path / "toolkit" / "analysis" / "probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..recorder import plan\n    return plan\n")
    assert imports_of(fake, tmp_path) == {"recorder"}
    assert stage("recorder") in FORBIDDEN["analysis"]
