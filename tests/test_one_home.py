"""One home for each idea: every shared rule and default is defined once and read from there.
A second copy is how the seams broke before (the report counting answers differently from
`analyze`, the CLI's parallel default differing from the library's), so these are read from
the source."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "toolkit").rglob("*.py")) + [ROOT / "cli.py"]


def _where(pattern: str) -> list[str]:
    """The source files whose text matches ``pattern``."""
    rx = re.compile(pattern)
    return [str(p.relative_to(ROOT)) for p in SOURCES if rx.search(p.read_text(encoding="utf-8"))]


def test_the_modes_are_listed_once():
    assert _where(r"""["']persona["'],\s*["']self["'],\s*["']logprob["']""") == ["toolkit/store/manifest.py"]


def test_the_parallel_backends_and_their_default_are_defined_once():
    assert _where(r"""["']forkserver["'],\s*["']loky["']""") == ["toolkit/parallel/__init__.py"]
    assert _where(r"DEFAULT_BACKEND\s*=") == ["toolkit/parallel/__init__.py"]


def test_the_command_line_types_no_analysis_default():
    """The analysis options' defaults live in AnalysisOptions alone: the CLI's options default
    to None and --help reads the library's values."""
    fields = ("bootstrap", "rerun_bootstrap", "seed", "jobs", "ci_level", "ci_method", "permutations", "min_shared",
              "retention", "backend")
    cli = [p for p in SOURCES if "toolkit/cli/" in str(p) or p.name == "cli.py"]
    typed = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in cli for m in
             re.finditer(r"default=(2000|400|0\.95|\"bca\"|\"family\"|\"forkserver\"|\"loky\")",
                         p.read_text(encoding="utf-8"))]
    assert not typed, typed
    from toolkit.analysis.options import AnalysisOptions

    assert set(fields) <= set(AnalysisOptions.__dataclass_fields__)


def test_the_newest_answer_rule_and_the_selection_rule_live_in_the_store():
    assert _where(r"def newest_positions\(") == ["toolkit/store/generations.py"]
    assert _where(r"np\.lexsort\(") == ["toolkit/store/generations.py"]
    assert _where(r"class Selection\b") == ["toolkit/store/query.py"]
    assert _where(r"def (check_output_folder|check_output_file)\(") == ["toolkit/store/output.py"]


def test_no_library_function_takes_keyword_filters_or_out_parameters():
    """Runs are chosen by a Selection, and what an analysis leaves out comes back in its
    Result: no ``**selection`` and no public ``problems=`` / ``notes=`` parameter."""
    bad = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                names = [a.arg for a in node.args.args + node.args.kwonlyargs]
                if node.args.kwarg is not None and node.args.kwarg.arg == "selection":
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}(**selection)")
                if "analysis" in str(path) and {"problems", "notes"} & set(names) and path.name in (
                        "api.py", "foundations.py", "diagnose.py", "power.py"):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}(problems/notes)")
    assert not bad, bad


def test_the_version_is_written_once():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert re.search(r"^version\s*=", project, re.M) is None and 'attr = "toolkit.__version__"' in text
    assert _where(r"__version__\s*=") == ["toolkit/__init__.py"]


def test_the_command_line_is_thin():
    """cli.py is a few lines; each command module stays small (the design's limits)."""
    assert len((ROOT / "cli.py").read_text(encoding="utf-8").splitlines()) < 30
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (ROOT / "toolkit" / "cli").glob("*.py")}
    assert sizes and max(sizes.values()) <= 350, sizes


def test_help_shows_the_library_defaults_and_a_left_out_option_takes_them():
    from click.testing import CliRunner

    from toolkit.analysis.options import AnalysisOptions
    from toolkit.cli import main
    from toolkit.ingest.simulate import Spec

    def blocks(args: list[str]) -> dict[str, str]:
        """Each option's help, by its first flag."""
        text = CliRunner().invoke(main, args).output
        parts = re.split(r"\n  (?=-)", text.split("Options:", 1)[1])
        return {p.split()[0].rstrip(","): " ".join(p.split()) for p in parts if p.strip()}

    lib = AnalysisOptions()
    shown = blocks(["compare", "--help"])
    for flag, value in (("--bootstrap", lib.bootstrap), ("--ci-level", lib.ci_level), ("--min-shared", lib.min_shared),
                        ("--parallel-backend", lib.backend), ("--permutations", lib.permutations)):
        assert f"[default: {value}]" in shown[flag], (flag, shown[flag])
    assert f"[default: {Spec().personas}]" in blocks(["simulate", "--help"])["--persona-count"]
    from conftest import run_cli

    left_out = run_cli("analyze", "--by", "group", "--format", "csv")
    spelled = run_cli("analyze", "--by", "group", "--format", "csv", "--bootstrap", str(lib.bootstrap),
                      "--rerun-bootstrap", str(lib.rerun_bootstrap), "--seed", str(lib.seed), "--retention",
                      lib.retention)
    assert left_out.returncode == 0 and left_out.stdout == spelled.stdout
