"""A rule the code cannot silently break: no transcendental function whose last bits depend on
the machine reaches a number the toolkit prints, stores or hashes.

numpy dispatches power, exp, log, trigonometric and hyperbolic ufuncs to SIMD kernels chosen by
CPU (AVX-512's SVML kernels round differently from the baseline ones); scipy.special and
Python's math module call the system's libm, which differs by C library, its version and, in
glibc, by CPU. What may reach a printed number: elementwise + - * /, sqrt, sorting, integer
arithmetic, ufunc reductions, math.fsum, and toolkit.numerics (a portable exp and
correctly rounded normal functions and logarithms computed in decimal arithmetic).

This test reads the source (it cannot run the kernels of a CPU it lacks); the runtime guard in
tests/test_portability.py runs the pipelines with those kernels made fatal.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

from conftest import ROOT

# Any attribute or imported name with one of these names is a finding, whatever it belongs to
# (np.exp, math.log, a polars expression's .exp(), pyarrow.compute.ln, scipy.special.ndtr ...).
FORBIDDEN_NAMES = frozenset({
    "power", "float_power", "pow", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "ln", "cbrt",
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "asin", "acos", "atan", "atan2",
    "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "asinh", "acosh", "atanh", "logaddexp",
    "logaddexp2", "hypot", "erf", "erfc", "gamma", "lgamma", "ndtr", "ndtri", "expit", "logit", "logsumexp",
})
FORBIDDEN_MODULES = ("scipy.special", "scipy.stats")

# (file, enclosing function) -> why its use never reaches a printed, stored or hashed number.
# An entry that no longer matches anything fails the test, so the list cannot go stale.
ALLOWLIST: dict[tuple[str, str], str] = {
    ("toolkit/numerics.py", "_exp_constants"):
        "decimal arithmetic: the exp table is built once in software, then rounded",
    ("toolkit/numerics.py", "_cdf_decimal"): "Decimal.exp/sqrt and Decimal ** (libmpdec)",
    ("toolkit/numerics.py", "_density"): "Decimal.exp (libmpdec)",
    ("toolkit/numerics.py", "normal_quantile_scalar"): "Decimal.ln and Decimal ** (libmpdec)",
    ("toolkit/numerics.py", "log_sum_exp"): "Decimal.exp and .ln (libmpdec)",
    ("toolkit/numerics.py", "log_ratio"): "Decimal.ln (libmpdec)",
    ("toolkit/numerics.py", "exact_products"): "2.0 ** an integer: an exact power of two",
    ("toolkit/numerics.py", "_pi.arctan_inv"): "Decimal ** an integer (libmpdec)",
    ("toolkit/numerics.py", "c4"): "4 ** k of Python ints (exact) and Decimal.sqrt (libmpdec)",
    ("toolkit/analysis/metrics.py", "alias_table"): "n ** n of a Python int, exact",
    ("toolkit/analysis/metrics.py", "_multinomial_weights"):
        "integer powers of an int64 array, exact (every value below 12**12, far from 2**63)",
    ("toolkit/analysis/metrics.py", "ExactCells.__init__"): "n ** n of a Python int, exact",
    ("toolkit/analysis/metrics.py", "_pattern_table"): "n ** n of a Python int, exact",
    ("toolkit/analysis/metrics.py", "_unique_rows"): "integer powers (Python int, int64 array): exact",
    ("toolkit/analysis/api.py", "pearson"):
        "a library helper on no command's path; its p-value is scipy's (documented there)",
    ("toolkit/audit/claims.py", "Claim.unit"):
        "10.0 ** an integer on a Python float (libm pow of an exact power of ten): a tolerance, never printed",
    ("toolkit/report/tables.py", "_human"): "10 ** an int: the integer threshold of a format choice",
    ("toolkit/recorder/backends/openai.py", "check_top_logprobs"):
        "math.exp in a validity check (total probability <= 1 with slack): a yes/no, never stored",
    ("toolkit/recorder/backends/openai.py", "OpenAIBackend._sleep_before_retry"): "2 ** attempt: an int, a delay",
    ("toolkit/recorder/backends/local.py", "LocalBackend.digit_logprobs"):
        "torch's logsumexp over a local model's logits: the model's own answer, stored as it gives it",
}


def findings(source: str, filename: str = "<source>") -> list[tuple[str, int, str]]:
    """(enclosing function, line, what) for every forbidden use in ``source``."""
    tree = ast.parse(source, filename)
    out: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = scope + [child.name]
            where = ".".join(s for s in inner if s) or "<module>"
            if isinstance(child, ast.Attribute) and child.attr in FORBIDDEN_NAMES:
                out.append((where, child.lineno, f".{child.attr}"))
            elif isinstance(child, ast.ImportFrom) and child.module:
                if child.module.startswith(FORBIDDEN_MODULES):
                    out.append((where, child.lineno, f"from {child.module} import"))
                out.extend((where, child.lineno, f"import {a.name}") for a in child.names
                           if a.name in FORBIDDEN_NAMES and child.module in ("numpy", "math", "cmath", "scipy"))
            elif isinstance(child, ast.Import):
                out.extend((where, child.lineno, f"import {a.name}") for a in child.names
                           if a.name.startswith(FORBIDDEN_MODULES))
            elif isinstance(child, ast.BinOp) and isinstance(child.op, ast.Pow) and not _harmless_pow(child):
                out.append((where, child.lineno, "**"))
            elif isinstance(child, ast.AugAssign) and isinstance(child.op, ast.Pow):
                out.append((where, child.lineno, "**="))
            visit(child, inner)

    visit(tree, [])
    return out


def _harmless_pow(node: ast.BinOp) -> bool:
    """x ** 2 (numpy squares it exactly), or a power of two literal numbers (folded by Python)."""
    right = node.right
    if isinstance(right, ast.Constant) and right.value in (2, 2.0) and not isinstance(right.value, bool):
        return True
    return isinstance(node.left, ast.Constant) and isinstance(right, ast.Constant)


def _sources() -> list[Path]:
    return sorted((ROOT / "toolkit").rglob("*.py")) + [ROOT / "cli.py"]


def test_no_machine_dependent_transcendental_outside_the_allowlist():
    used: set[tuple[str, str]] = set()
    bad = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        for where, line, what in findings(path.read_text(), rel):
            if (rel, where) in ALLOWLIST:
                used.add((rel, where))
            else:
                bad.append(f"{rel}:{line} in {where}: {what}")
    assert not bad, ("machine-dependent transcendental on a path that may print a number; use "
                     "toolkit.numerics, exact products or sqrt, or add a commented ALLOWLIST entry:\n"
                     + "\n".join(bad))
    stale = set(ALLOWLIST) - used
    assert not stale, f"ALLOWLIST entries that match nothing any more: {sorted(stale)}"


def test_the_rule_catches_each_kind_of_forbidden_call():
    scratch = textwrap.dedent("""
        import math
        import numpy as np
        from numpy import exp
        from scipy.special import ndtr

        def f(x, k):
            a = np.exp(x)          # 8
            b = x ** 1.5           # 9
            c = x ** k             # 10
            d = math.log(3.0)      # 11
            e = np.power(x, 3)     # 12
            g = x.log()            # 13 (a polars or pyarrow expression)
            h = np.hypot(x, x)     # 14
            x **= 3                # 15
            fine = x ** 2 + x * x * x + np.sqrt(x) + 2 ** 31
            return a, b, c, d, e, g, h, fine
    """)
    lines = sorted(line for _, line, _ in findings(scratch))
    assert lines == [4, 5, 8, 9, 10, 11, 12, 13, 14, 15]
