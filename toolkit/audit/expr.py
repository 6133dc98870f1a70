"""The expressions of ordinal and derived claims: a small grammar, parsed by hand (no ``eval``).

A claim's ``expr`` is either a value, checked against the printed number like any claim
(``mean_cv_S(variant="secure-code") / mean_cv_S(variant="insecure-code")`` printed "2.7"), or
a statement, which PASSes when it holds (``S(model="gpt-4o-misaligned", variant="insecure-code")
> 2 * 0.83``)::

    statement  := either ("or" either)*          either := both ("and" both)*
    both       := "not" both | compare
    compare    := sum (("<" | "<=" | ">" | ">=" | "==") sum)*     (chained, like 0 < x < 1)
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | NUMBER | "(" statement ")" | call
    call       := METRIC "(" key "=" "string" ("," key "=" "string")* ")"
                | ("min" | "max" | "mean" | "abs") "(" sum ("," sum)* ")"

METRIC is a metric of the claims format (claims.py); keys are ``model``, ``variant``, ``group``,
``control`` and ``temperature``. ``model="*"`` stands for every model of the variant and is
allowed only inside min/max/mean: "every insecure variant above the band" is
``min(S(model="*", variant="insecure-code")) > 0.83``. Anything else (an unknown name, a
dot, a bracket, an unbalanced parenthesis, a string outside a call) is refused with its
position when the claims file loads.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

MAX_LENGTH = 500
KEYS = ("model", "variant", "group", "control", "temperature")
FUNCTIONS = ("min", "max", "mean", "abs")
_TOKEN = re.compile(r'\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>"[^"\\]*")|(?P<name>[A-Za-z_][A-Za-z0-9_]*)'
                    r"|(?P<op><=|>=|==|<|>|\+|-|\*|/|\(|\)|,|=))")


class ExprError(ValueError):
    """A claim expression the grammar refuses."""


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Ref:
    metric: str
    keys: tuple[tuple[str, str], ...]

    def text(self) -> str:
        return f"{self.metric}({', '.join(f'{k}={v!r}' for k, v in self.keys)})"


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Op:
    op: str  # + - * / neg
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Compare:
    terms: tuple[Node, ...]
    ops: tuple[str, ...]


@dataclass(frozen=True)
class Logic:
    op: str  # and, or, not
    args: tuple[Node, ...]


Node: TypeAlias = Num | Ref | Call | Op | Compare | Logic


def _tokens(text: str) -> list[tuple[str, str, int]]:
    if len(text) > MAX_LENGTH:
        raise ExprError(f"an expression is at most {MAX_LENGTH} characters")
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            at = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise ExprError(f"unexpected {text[at]!r} at character {at + 1}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, metrics: frozenset[str]) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.metrics = metrics

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "", 0)

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        tok = self.peek()
        if tok[0] == "end" or (value is not None and tok[1] != value):
            where = f"at character {tok[2]}" if tok[0] != "end" else "at the end"
            raise ExprError(f"expected {value!r} {where}" if value else f"unexpected end {where}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.statement()
        if self.peek()[0] != "end":
            raise ExprError(f"unexpected {self.peek()[1]!r} at character {self.peek()[2]}")
        return node

    def joined(self, word: str, part: Callable[[], Node]) -> Node:
        """part (word part)*: one Logic node for two or more parts."""
        args = [part()]
        while self.peek()[1] == word:
            self.take()
            args.append(part())
        return args[0] if len(args) == 1 else Logic(word, tuple(args))

    def statement(self) -> Node:
        return self.joined("or", self.either)

    def either(self) -> Node:
        return self.joined("and", self.both)

    def both(self) -> Node:
        if self.peek()[1] == "not":
            self.take()
            return Logic("not", (self.both(),))
        return self.compare()

    def compare(self) -> Node:
        terms, ops = [self.sum()], []
        while self.peek()[1] in ("<", "<=", ">", ">=", "=="):
            ops.append(self.take()[1])
            terms.append(self.sum())
        return terms[0] if not ops else Compare(tuple(terms), tuple(ops))

    def left(self, ops: tuple[str, ...], part: Callable[[], Node]) -> Node:
        """part (op part)*, grouped from the left: a - b - c is (a - b) - c."""
        node = part()
        while self.peek()[1] in ops:
            op = self.take()[1]
            node = Op(op, (node, part()))
        return node

    def sum(self) -> Node:
        return self.left(("+", "-"), self.product)

    def product(self) -> Node:
        return self.left(("*", "/"), self.unary)

    def unary(self) -> Node:
        kind, value, pos = self.peek()
        if value == "-":
            self.take()
            return Op("neg", (self.unary(),))
        if kind == "num":
            self.take()
            return Num(float(value))
        if value == "(":
            self.take()
            node = self.statement()
            self.take(")")
            return node
        if kind == "name":
            return self.call()
        raise ExprError(f"unexpected {value!r} at character {pos}" if kind != "end" else "unexpected end")

    def call(self) -> Node:
        _, name, pos = self.take()
        if name not in self.metrics and name not in FUNCTIONS:
            raise ExprError(f"unknown name {name!r} at character {pos} (a metric of the claims format, or "
                            f"{', '.join(FUNCTIONS)})")
        self.take("(")
        if name in FUNCTIONS:
            args = [self.sum()]
            while self.peek()[1] == ",":
                self.take()
                args.append(self.sum())
            self.take(")")
            return Call(name, tuple(args))
        keys: dict[str, str] = {}
        while True:
            kind, key, kpos = self.take()
            if kind != "name" or key not in KEYS:
                raise ExprError(f"{key!r} at character {kpos}: a metric takes {', '.join(KEYS)}=\"...\"")
            self.take("=")
            kind, value, vpos = self.take()
            if kind != "str":
                raise ExprError(f"the {key} at character {vpos} must be a string in double quotes")
            if key in keys:
                raise ExprError(f"{key} given twice at character {kpos}")
            keys[key] = value[1:-1]
            if self.peek()[1] != ",":
                break
            self.take()
        self.take(")")
        return Ref(name, tuple(sorted(keys.items())))


def parse(text: str, metrics: frozenset[str]) -> Node:
    """The expression's tree; ExprError (with the position) for anything the grammar refuses."""
    node = _Parser(text, metrics).parse()
    _check_wildcards(node, inside_aggregate=False)
    return node


def is_statement(node: Node) -> bool:
    """True for a comparison or a logical combination (a claim that holds or not)."""
    return isinstance(node, (Compare, Logic))


def _check_wildcards(node: Node, inside_aggregate: bool) -> None:
    if isinstance(node, Ref):
        if dict(node.keys).get("model") == "*" and not inside_aggregate:
            raise ExprError(f"{node.text()}: model=\"*\" stands for several values; wrap it in min, max or mean")
        return
    agg = isinstance(node, Call) and node.fn in ("min", "max", "mean")
    for child in getattr(node, "args", ()) + getattr(node, "terms", ()):
        _check_wildcards(child, inside_aggregate or agg)


Lookup = Callable[[Ref], list[float]]  # every value a reference stands for (one unless model="*")


def evaluate(node: Node, lookup: Lookup) -> float | bool:
    """The value (or truth) of the tree, with references resolved by ``lookup``; a reference
    with no value raises ExprError naming it."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Ref):
        found = lookup(node)
        if len(found) != 1:
            raise ExprError(f"{node.text()}: no value in the data")
        return found[0]
    if isinstance(node, Call):
        if node.fn == "abs":
            if len(node.args) != 1:
                raise ExprError("abs takes one argument")
            return abs(_number(evaluate(node.args[0], lookup)))
        values: list[float] = []
        for arg in node.args:
            if isinstance(arg, Ref):
                found = lookup(arg)
                if not found:
                    raise ExprError(f"{arg.text()}: no value in the data")
                values += found
            else:
                values.append(_number(evaluate(arg, lookup)))
        return min(values) if node.fn == "min" else max(values) if node.fn == "max" else sum(values) / len(values)
    if isinstance(node, Op):
        vals = [_number(evaluate(a, lookup)) for a in node.args]
        if node.op == "neg":
            return -vals[0]
        a, b = vals
        if node.op == "/" and b == 0:
            raise ExprError("division by zero")
        return a + b if node.op == "+" else a - b if node.op == "-" else a * b if node.op == "*" else a / b
    if isinstance(node, Compare):
        vals = [_number(evaluate(t, lookup)) for t in node.terms]
        checks = {"<": lambda x, y: x < y, "<=": lambda x, y: x <= y, ">": lambda x, y: x > y,
                  ">=": lambda x, y: x >= y, "==": lambda x, y: x == y}
        return all(checks[op](vals[k], vals[k + 1]) for k, op in enumerate(node.ops))
    if node.op == "not":
        return not evaluate(node.args[0], lookup)
    truths = [bool(evaluate(a, lookup)) for a in node.args]
    return all(truths) if node.op == "and" else any(truths)


def _number(value: float | bool) -> float:
    if isinstance(value, bool):
        raise ExprError("a comparison cannot be used as a number")
    return value


def described(node: Node, lookup: Lookup) -> str:
    """The comparison with its sides evaluated, for the audit's note: "1.684 > 1.66"."""
    if isinstance(node, Compare):
        vals = [_number(evaluate(t, lookup)) for t in node.terms]
        parts = [f"{vals[0]:.4g}"]
        for op, v in zip(node.ops, vals[1:]):
            parts += [op, f"{v:.4g}"]
        return " ".join(parts)
    if isinstance(node, Logic):
        return f" {node.op} ".join(f"({described(a, lookup)})" for a in node.args)
    return f"{_number(evaluate(node, lookup)):.6g}"
