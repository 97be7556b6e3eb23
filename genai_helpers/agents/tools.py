"""Tools an agent can call (chapter 08): a safe calculator, read-only SQL over sqlite, and
retrieval over any index with ``.search(query, k)``.

Every tool is a :class:`Tool`: a name, a one-line description the policy sees, and a function
``fn(arg: str) -> str``. Tools never raise into the agent loop: calling a :class:`Tool` turns an
exception into a short ``"Error: ..."`` observation the agent can read and recover from.

The argument of a tool call is written by a model that may be steered by an attacker (chapter 08
§8.5), so each tool bounds what one call may cost: the calculator bounds the size of every
intermediate number, the nesting depth and the time; the SQL tool opens the file read-only,
refuses every statement that is not a read, and bounds time, rows, output and value sizes.
"""
from __future__ import annotations

import ast
import math
import operator
import re
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["Tool", "MAX_ERROR_CHARS", "MAX_SQL_COLUMNS", "safe_eval", "format_number", "calculator_tool", "MODEL_ROWS",
           "build_models_database", "run_sql", "sql_tool", "retrieval_tool"]

#: Longest error text a :class:`Tool` returns (characters); the rest is cut.
MAX_ERROR_CHARS = 300


@dataclass
class Tool:
    name: str
    description: str
    fn: Callable[[str], str]

    def __call__(self, arg: str) -> str:
        try:
            return str(self.fn(arg))
        except Exception as exc:  # the agent sees the error as an observation
            message = f"Error: {type(exc).__name__}: {exc}"
            return message if len(message) <= MAX_ERROR_CHARS else message[:MAX_ERROR_CHARS - 3] + "..."


# ---------------------------------------------------------------- calculator
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
#: name -> (function, fewest arguments, most arguments)
_FUNCS = {"sqrt": (math.sqrt, 1, 1), "log": (math.log, 1, 2), "log2": (math.log2, 1, 1),
          "log10": (math.log10, 1, 1), "exp": (math.exp, 1, 1), "abs": (abs, 1, 1), "round": (round, 1, 2),
          "min": (min, 2, 20), "max": (max, 2, 20), "sin": (math.sin, 1, 1), "cos": (math.cos, 1, 1)}
_CONSTS = {"pi": math.pi, "e": math.e}
_SYMBOLS = {"^": "**", "×": "*", "÷": "/", "−": "-"}          # what people type for * / - and powers
# "1,000,000": a group of 1-3 digits, then comma-separated groups of exactly three digits
_THOUSANDS = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?!\d)")


def _check_shape(node: ast.AST, depth: int, max_depth: int) -> None:
    """Raise ValueError unless ``node`` uses only the calculator's grammar (see :func:`safe_eval`)."""
    if depth > max_depth:
        raise ValueError(f"expression nests deeper than max_depth={max_depth}")
    if isinstance(node, ast.Expression):
        return _check_shape(node.body, depth + 1, max_depth)
    if isinstance(node, ast.Constant):
        if type(node.value) not in (int, float):
            raise ValueError(f"only int and float numbers are allowed, got {type(node.value).__name__}")
        return None
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check_shape(node.left, depth + 1, max_depth)
        return _check_shape(node.right, depth + 1, max_depth)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check_shape(node.operand, depth + 1, max_depth)
    if isinstance(node, ast.Name):
        if node.id not in _CONSTS and node.id not in _FUNCS:
            raise ValueError(f"unknown name {node.id[:30]!r}; allowed constants: {', '.join(_CONSTS)}")
        if node.id in _FUNCS:
            raise ValueError(f"function {node.id!r} must be called, e.g. {node.id}(2)")
        return None
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS:
            what = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
            raise ValueError(f"function {what[:30]!r} is not allowed; allowed: {', '.join(_FUNCS)}")
        _, lo, hi = _FUNCS[node.func.id]
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ValueError(f"{node.func.id}() takes positional numbers only")
        if not lo <= len(node.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise ValueError(f"{node.func.id}() takes {want} arguments, got {len(node.args)}")
        for a in node.args:
            _check_shape(a, depth + 1, max_depth)
        return None
    raise ValueError(f"unsupported syntax in expression: {type(node).__name__}")


def _parse(text: str, max_depth: int) -> ast.Expression:
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError) as err:
        raise ValueError(f"expression does not parse: {getattr(err, 'msg', err)}") from None
    except (RecursionError, MemoryError):
        raise ValueError("expression is nested too deeply to parse") from None
    try:
        _check_shape(tree, 0, max_depth)
    except RecursionError:            # only with a caller's max_depth above Python's recursion limit
        raise ValueError("expression is nested too deeply to check; lower max_depth") from None
    return tree


def safe_eval(expression: str, *, max_len: int = 200, max_power: int = 1000, max_digits: int = 4000,
              max_depth: int = 200, max_seconds: float = 1.0) -> float | int:
    """Evaluate an arithmetic ``expression`` without ``eval`` (chapter 08 §8.2).

    The text is parsed to a Python AST and only numbers, ``+ - * / // % **`` (``^``, ``×``, ``÷``
    and ``−`` are read as ``** * / -``), parentheses, the constants ``pi``/``e`` and calls of
    ``sqrt log log2 log10 exp abs round min max sin cos`` with positional arguments
    (``round(10/3, 2)``, ``max(3, 4)``) are interpreted. Anything else — attributes, other
    names or functions, keywords, comprehensions, strings, non-ASCII digits — raises ValueError.
    Commas between digit groups are thousands separators when that reading parses
    (``1,000 / 8`` is 125; ``max(100,200)`` keeps its two arguments).

    Limits, each refused with a ValueError that names it:

    - ``max_len`` characters of input; ``max_depth`` levels of nesting;
    - ``max_power``: largest absolute exponent of ``**`` (so ``9**9**9`` is refused);
    - ``max_digits``: largest integer, in decimal digits, of *every* intermediate result; the size
      of ``**`` and ``*`` is estimated before computing, so ``((10**1000)**1000)**1000`` is
      refused without being computed;
    - floats must stay finite (``1e308 * 10`` overflows and is refused, never returned as inf);
    - ``max_seconds`` of evaluation in total.
    """
    if not isinstance(expression, str):
        raise TypeError(f"expression must be a str, got {type(expression).__name__}")
    for name, value in (("max_len", max_len), ("max_power", max_power), ("max_digits", max_digits),
                        ("max_depth", max_depth)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    str_limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()     # Python >= 3.11: 4300 by default
    if str_limit and max_digits > str_limit:
        raise ValueError(f"max_digits must be at most {str_limit} (Python's limit on printing integers), got {max_digits}")
    if not isinstance(max_seconds, (int, float)) or not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds!r}")
    if len(expression) > max_len:
        raise ValueError(f"expression must be at most max_len={max_len} characters, got {len(expression)}")
    text = expression.strip()
    for symbol, op in _SYMBOLS.items():
        text = text.replace(symbol, op)
    bad = next((c for c in text if not (c.isascii() and (c.isprintable() or c in " \t"))), None)
    if bad is not None:
        raise ValueError(f"expression must use ASCII digits and operators; found {bad!r} (U+{ord(bad):04X})")
    # thousands separators: "1,000" = 1000 when only that reading is valid; when both readings are
    # valid and differ ("max(1,000,2)": 1000 or 2?) the expression is refused, not guessed
    tree = None
    if _THOUSANDS.search(text):
        try:
            tree = _parse(_THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), text), max_depth)
        except ValueError:
            tree = None
        if tree is not None:
            try:
                _parse(text, max_depth)
            except ValueError:
                pass
            else:
                raise ValueError("expression has ambiguous commas (thousands separators or arguments?); "
                                 "write 1000 for a thousand and put a space after argument commas, e.g. max(1000, 2)")
    if tree is None:
        tree = _parse(text, max_depth)

    deadline = time.monotonic() + max_seconds
    log10_limit = max_digits          # an int with more than max_digits digits has log10 >= max_digits

    def too_big(log10_size: float, what: str) -> ValueError:
        return ValueError(f"{what} would have about {log10_size + 1:,.0f} digits, more than max_digits={max_digits}")

    def checked(x):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ValueError(f"result is not a real number ({type(x).__name__})")
        if isinstance(x, float) and not math.isfinite(x):
            raise ValueError("result overflows the float range (about 1.8e308)")
        if isinstance(x, int) and x and math.log10(abs(x)) >= log10_limit:
            raise too_big(math.log10(abs(x)), "an intermediate integer")
        return x

    def log10_abs(x) -> float:
        return math.log10(abs(x)) if x else -math.inf

    def ev(node):
        if time.monotonic() > deadline:
            raise ValueError(f"evaluation took longer than max_seconds={max_seconds}")
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return checked(node.value)
        if isinstance(node, ast.Name):
            return _CONSTS[node.id]
        if isinstance(node, ast.UnaryOp):
            return checked(_UNARY[type(node.op)](ev(node.operand)))
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            op = type(node.op)
            if op is ast.Pow:
                if abs(right) > max_power:
                    raise ValueError(f"exponent {format_number(right)} exceeds max_power={max_power}")
                if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                    size = right * log10_abs(left)
                    if size >= log10_limit:
                        base = format_number(left) if abs(left) < 10**15 else "a large number"
                        raise too_big(size, f"{base} ** {right}")
            elif op is ast.Mult and isinstance(left, int) and isinstance(right, int) and left and right:
                size = log10_abs(left) + log10_abs(right)
                if size >= log10_limit:
                    raise too_big(size, "a product")
            try:
                return checked(_BINARY[op](left, right))
            except OverflowError as err:
                raise ValueError(f"result overflows the float range ({err})") from None
        # a call: the shape check has already vetted the name and the number of arguments
        name = node.func.id
        args = [ev(a) for a in node.args]
        if name == "round" and len(args) == 2 and (not isinstance(args[1], int) or abs(args[1]) > max_digits):
            raise ValueError(f"round()'s second argument must be an int in [-{max_digits}, {max_digits}]")
        try:
            return checked(_FUNCS[name][0](*args))
        except OverflowError as err:
            raise ValueError(f"{name}() overflows the float range ({err})") from None
        except TypeError as err:
            raise ValueError(f"{name}(): {err}") from None

    try:
        return ev(tree)
    except RecursionError:
        raise ValueError("expression is nested too deeply to evaluate") from None


def format_number(x: float | int) -> str:
    """Integers print without a decimal point; other floats with up to 6 significant decimals."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def calculator_tool(**limits) -> Tool:
    """The calculator as a :class:`Tool`: ``calculator[(124 + 355) * 2]`` -> ``"958"``.

    ``limits`` (``max_len``, ``max_power``, ``max_digits``, ``max_depth``, ``max_seconds``) are
    passed to :func:`safe_eval`; a refused expression comes back as a short ``"Error: ..."`` text.
    """
    safe_eval("1", **limits)          # unknown or bad limits fail here, not at the agent's first call
    return Tool("calculator", "evaluate an arithmetic expression, e.g. calculator[(124 + 355) * 2]",
                lambda expr: format_number(safe_eval(expr, **limits)))


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


_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                 getattr(sqlite3, "SQLITE_RECURSIVE", 33)}   # WITH RECURSIVE reads too; the time limit bounds it
_HAS_SETLIMIT = hasattr(sqlite3.Connection, "setlimit")     # Python >= 3.11
# printf's width and precision ('%.*c' with 1e9) make sqlite loop inside one opcode, where neither
# the progress handler nor the length limit can stop it early: refused always.
_DENIED_FUNCTIONS = {"printf", "format",
                     # fts3_tokenizer('simple') returns a C pointer (an address-space leak) and its
                     # two-argument form installs one; load_extension loads native code
                     "fts3_tokenizer", "load_extension",
                     # build details an attacker can use to pick exploits; nothing a question needs
                     "sqlite_compileoption_get", "sqlite_compileoption_used", "sqlite_source_id"}
#: Most columns one query may return (``SELECT b, b, b, ...`` of a 100 kB value would otherwise hold
#: gigabytes in memory) and most characters of one cell kept before formatting.
MAX_SQL_COLUMNS = 64
# Without Connection.setlimit (Python 3.10) no value size limit can be set, so the functions that
# build large strings or blobs from small arguments are refused as well.
_GROWING_FUNCTIONS = {"randomblob", "zeroblob", "replace", "hex", "char", "group_concat", "string_agg",
                      "json_group_array", "json_group_object"}


def _read_only_authorizer(action, arg1, arg2, db_name, trigger):
    if action not in _READ_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION:
        name = str(arg2).lower()
        if name in _DENIED_FUNCTIONS or (not _HAS_SETLIMIT and name in _GROWING_FUNCTIONS):
            return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


_TRAILER = re.compile(r"(?:\s|;|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)   # what may follow the one statement


def _one_statement(query: str) -> str | None:
    """The single statement in ``query`` (up to its terminating ``;``), or None when a second
    statement follows. A ``;`` inside a string, identifier or comment does not end a statement:
    ``sqlite3.complete_statement`` tokenises the way sqlite does."""
    for i, ch in enumerate(query):
        if ch == ";" and sqlite3.complete_statement(query[: i + 1]):
            return query[: i + 1] if _TRAILER.fullmatch(query, i + 1) else None
    return query


# every character that str.splitlines() or a terminal treats as a line break or control: \n, \r, \v, \f,
# \x1c-\x1e, \x85, \u2028, \u2029 and the other C0/C1 controls (tab is kept)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_control(match: re.Match) -> str:
    c = match.group(0)
    return {"\n": "\\n", "\r": "\\r"}.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")


def _cell(value, max_chars: int | None = None) -> str:
    if isinstance(value, bytes) and max_chars is not None and len(value) > max_chars:
        value = value[:max_chars]                    # never format a 100 kB blob to show 4000 characters
    text = format_number(value) if isinstance(value, float) else str(value)
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars]
    return _CONTROL.sub(_escape_control, text)      # a value cannot fake extra rows or lines


def run_sql(db_path: str | Path, query: str, *, max_rows: int = 20, timeout_s: float = 1.0,
            max_chars: int = 4000, max_value_bytes: int = 100_000, max_query_chars: int = 5000) -> str:
    """Run one read-only ``query`` against the sqlite file ``db_path`` and format the rows.

    Locks: the file is opened through a ``file:...?mode=ro`` URI (the handle cannot write); an
    authorizer denies every action that is not a read (writes, ``ATTACH``, ``PRAGMA``, DDL); only
    one statement is accepted (``SELECT 'a;b'`` is one). Bounds, each with an error naming it:

    - ``timeout_s`` seconds (a progress handler interrupts the query: a ten-way self-join or an
      endless ``WITH RECURSIVE`` raises TimeoutError);
    - ``max_rows`` rows are shown, and at most ``max_chars`` characters of output;
    - ``max_value_bytes``: the largest string or blob the query may build (``randomblob(1e9)``
      fails); on Python 3.10, which cannot set this limit, functions that build large values
      (``randomblob``, ``zeroblob``, ``printf``, ``replace``, ...) are refused instead;
    - ``max_query_chars`` characters of SQL;
    - at most :data:`MAX_SQL_COLUMNS` columns, rows fetched one at a time with every cell cut to
      ``max_chars`` (a ``SELECT b, b, b, ...`` of a 100 kB value cannot fill memory);
    - functions that leak pointers or build details (``fts3_tokenizer``, ``sqlite_compileoption_get``)
      are refused, and control characters and every kind of line break in a value are escaped
      (``\\x0b``, ``\\u2028``), so a value cannot fake a line of the observation.
    """
    for name, value in (("max_rows", max_rows), ("max_chars", max_chars), ("max_value_bytes", max_value_bytes),
                        ("max_query_chars", max_query_chars)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 600:
        raise ValueError(f"timeout_s must be in (0, 600] seconds, got {timeout_s!r}")
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty SQL string")
    if len(query) > max_query_chars:
        raise ValueError(f"query must be at most max_query_chars={max_query_chars} characters, got {len(query)}")
    statement = _one_statement(query)
    if statement is None:
        raise ValueError("query must be exactly one SQL statement")
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"db_path must be an existing sqlite file, got {str(path)!r}")
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        if _HAS_SETLIMIT:
            con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_value_bytes)
            con.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 200)
            con.setlimit(sqlite3.SQLITE_LIMIT_EXPR_DEPTH, 200)
            con.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_SQL_COLUMNS)
        con.set_authorizer(_read_only_authorizer)
        deadline = time.monotonic() + timeout_s
        con.set_progress_handler(lambda: time.monotonic() > deadline, 1000)   # non-zero return interrupts
        try:
            cur = con.execute(statement)
            names = [d[0] for d in cur.description or []]
            if len(names) > MAX_SQL_COLUMNS:
                raise ValueError(f"query returns {len(names)} columns, more than MAX_SQL_COLUMNS={MAX_SQL_COLUMNS}")
            # one row at a time, each cell cut to max_chars at once: at most one row of full-size
            # values is in memory, and fetching stops when the output is already full
            rows, size = [], 0
            while len(rows) <= max_rows and size <= max_chars:
                row = cur.fetchone()
                if row is None:
                    break
                rows.append(tuple(_cell(v, max_chars) for v in row))
                size += sum(len(c) + 3 for c in rows[-1])
        except (sqlite3.OperationalError, sqlite3.DataError) as err:
            if time.monotonic() > deadline or "interrupted" in str(err):
                raise TimeoutError(f"query stopped after timeout_s={timeout_s} s") from None
            if "too big" in str(err) or "too many columns" in str(err):
                if "columns" in str(err):
                    raise ValueError(f"query has more than MAX_SQL_COLUMNS={MAX_SQL_COLUMNS} columns") from None
                raise ValueError(f"query builds a value larger than max_value_bytes={max_value_bytes:,}") from None
            raise
    finally:
        con.close()
    if not rows:
        return "(no rows)"
    lines = [" | ".join(_cell(n, max_chars) for n in names)] + [" | ".join(r) for r in rows[:max_rows]]
    if len(rows) > max_rows:
        lines.append(f"... (more than {max_rows} rows)")
    out = "\n".join(lines)
    if len(out) > max_chars:
        out = out[:max_chars] + f"\n... (output cut at max_chars={max_chars} characters)"
    return out


def sql_tool(db_path: str | Path, **limits) -> Tool:
    """Read-only SQL over ``db_path`` as a :class:`Tool`; ``limits`` (``max_rows``, ``timeout_s``,
    ``max_chars``, ``max_value_bytes``, ``max_query_chars``) are passed to :func:`run_sql`."""
    unknown = set(limits) - {"max_rows", "timeout_s", "max_chars", "max_value_bytes", "max_query_chars"}
    if unknown:
        raise TypeError(f"unknown limits for run_sql: {sorted(unknown)}")
    return Tool("sql", "read-only SQL over table models(name, family, params_m, context, year), "
                       "e.g. sql[SELECT params_m FROM models WHERE name = 'GPT-2 XL']",
                lambda q: run_sql(db_path, q, **limits))


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
