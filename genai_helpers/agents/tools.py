"""Tools an agent can call (chapter 08): a safe calculator, read-only SQL over sqlite, and
retrieval over any index with ``.search(query, k)``.

Every tool is a :class:`Tool`: a name, a one-line description the policy sees, and a function
``fn(arg: str) -> str``. Tools never raise into the agent loop: calling a :class:`Tool` turns an
exception into an ``"Error: ..."`` observation the agent can read and recover from.
"""
from __future__ import annotations

import ast
import math
import operator
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["Tool", "safe_eval", "format_number", "calculator_tool", "MODEL_ROWS", "build_models_database",
           "run_sql", "sql_tool", "retrieval_tool"]


@dataclass
class Tool:
    name: str
    description: str
    fn: Callable[[str], str]

    def __call__(self, arg: str) -> str:
        try:
            return str(self.fn(arg))
        except Exception as exc:  # the agent sees the error as an observation
            return f"Error: {type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- calculator
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {"sqrt": math.sqrt, "log": math.log, "log2": math.log2, "log10": math.log10, "exp": math.exp,
          "abs": abs, "round": round, "min": min, "max": max, "sin": math.sin, "cos": math.cos}
_CONSTS = {"pi": math.pi, "e": math.e}


def safe_eval(expression: str, *, max_len: int = 200, max_power: int = 1000) -> float | int:
    """Evaluate an arithmetic ``expression`` without ``eval``: the text is parsed to a Python AST
    and only numbers, ``+ - * / // % **``, parentheses, the names ``pi``/``e`` and the functions
    ``sqrt log log2 log10 exp abs round min max sin cos`` are interpreted. Anything else
    (attributes, names, calls to other functions, comprehensions, strings) raises ValueError.
    Exponents above ``max_power`` are refused so ``9**9**9`` cannot hang the process.
    """
    if not isinstance(expression, str):
        raise TypeError(f"expression must be a str, got {type(expression).__name__}")
    if len(expression) > max_len:
        raise ValueError(f"expression must be at most {max_len} characters, got {len(expression)}")
    expression = expression.replace("^", "**").replace("×", "*").replace("÷", "/").replace(",", "")
    tree = ast.parse(expression.strip(), mode="eval")

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > max_power:
                raise ValueError(f"exponent {right} exceeds max_power={max_power}")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Name) and node.id in _CONSTS:
            return _CONSTS[node.id]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
                and not node.keywords):
            return _FUNCS[node.func.id](*[ev(a) for a in node.args])
        raise ValueError(f"unsupported syntax in expression: {ast.dump(node)[:60]}")

    return ev(tree)


def format_number(x: float | int) -> str:
    """Integers print without a decimal point; other floats with up to 6 significant decimals."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def calculator_tool() -> Tool:
    return Tool("calculator", "evaluate an arithmetic expression, e.g. calculator[(124 + 355) * 2]",
                lambda expr: format_number(safe_eval(expr)))


# ---------------------------------------------------------------- SQL
#: The rows of chapter 08's ``models`` table: ``(name, family, parameters in millions, context
#: length in tokens, release year)``.
#: :meta hide-value:
MODEL_ROWS = [  # name, family, parameters (millions), context length (tokens), release year
    ("BERT-base", "BERT", 110, 512, 2018), ("BERT-large", "BERT", 340, 512, 2018),
    ("DistilBERT", "BERT", 66, 512, 2019), ("GPT-2 small", "GPT-2", 124, 1024, 2019),
    ("GPT-2 medium", "GPT-2", 355, 1024, 2019), ("GPT-2 large", "GPT-2", 774, 1024, 2019),
    ("GPT-2 XL", "GPT-2", 1558, 1024, 2019), ("T5-small", "T5", 60, 512, 2019),
    ("T5-base", "T5", 220, 512, 2019), ("T5-large", "T5", 770, 512, 2019),
    ("all-MiniLM-L6-v2", "MiniLM", 23, 256, 2021), ("ViT-B/16", "ViT", 86, 197, 2020),
]


def build_models_database(path: str | Path) -> Path:
    """Create (or overwrite) the chapter's sqlite database at ``path``: one table
    ``models(name TEXT, family TEXT, params_m INTEGER, context INTEGER, year INTEGER)`` with the
    rows of :data:`MODEL_ROWS` (parameters in millions, context in tokens)."""
    path = Path(path)
    if path.exists():
        path.unlink()
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE models (name TEXT PRIMARY KEY, family TEXT, params_m INTEGER, "
                    "context INTEGER, year INTEGER)")
        con.executemany("INSERT INTO models VALUES (?, ?, ?, ?, ?)", MODEL_ROWS)
    return path


def _read_only_authorizer(action, arg1, arg2, db_name, trigger):
    allowed = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}
    return sqlite3.SQLITE_OK if action in allowed else sqlite3.SQLITE_DENY


def run_sql(db_path: str | Path, query: str, *, max_rows: int = 20) -> str:
    """Run one read-only ``query`` against the sqlite file ``db_path`` and format the rows.

    Two independent locks: the file is opened with ``mode=ro`` (the OS-level handle cannot
    write) and an authorizer denies every statement that is not a read; only one statement is
    accepted. At most ``max_rows`` rows are shown.
    """
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty SQL string")
    if not sqlite3.complete_statement(query.strip().rstrip(";") + ";") or query.strip().rstrip(";").count(";"):
        raise ValueError("query must be exactly one SQL statement")
    con = sqlite3.connect(f"file:{Path(db_path)}?mode=ro", uri=True)
    try:
        con.set_authorizer(_read_only_authorizer)
        cur = con.execute(query)
        names = [d[0] for d in cur.description or []]
        rows = cur.fetchmany(max_rows + 1)
    finally:
        con.close()
    if not rows:
        return "(no rows)"
    lines = [" | ".join(names)] + [" | ".join(format_number(v) if isinstance(v, float) else str(v) for v in r)
                                   for r in rows[:max_rows]]
    if len(rows) > max_rows:
        lines.append(f"... (more than {max_rows} rows)")
    return "\n".join(lines)


def sql_tool(db_path: str | Path) -> Tool:
    return Tool("sql", "read-only SQL over table models(name, family, params_m, context, year), "
                       "e.g. sql[SELECT params_m FROM models WHERE name = 'GPT-2 XL']",
                lambda q: run_sql(db_path, q))


# ---------------------------------------------------------------- retrieval
def retrieval_tool(index, *, k: int = 3, max_chars: int = 300, wrap: Callable[[str, str], str] | None = None) -> Tool:
    """Search any ``index`` with ``.search(query, k)`` returning hits with ``.text``, ``.score``
    and ``.source`` (e.g. chapter 07's book index). Each hit is cut to ``max_chars`` characters
    and passed through ``wrap(text, source)`` — use :func:`genai_helpers.guardrails.injection.spotlight`
    here to mark retrieved text as data."""
    if not hasattr(index, "search"):
        raise TypeError("index must have a .search(query, k) method")

    def search(query: str) -> str:
        hits = index.search(query, k=k)
        if not hits:
            return "(no results)"
        parts = []
        for h in hits:
            text = " ".join(str(h.text).split())[:max_chars]
            parts.append(wrap(text, str(h.source)) if wrap else f"[{h.source}] {text}")
        return "\n".join(parts)

    return Tool("search", "search the book for a passage, e.g. search[what is beam search]", search)
