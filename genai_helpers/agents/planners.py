"""Offline agent policies for chapter 08, and the tasks they are measured on.

No instruction-following LLM can be downloaded where this book is built, so the chapter's
agents are driven by policies it builds itself — plainly *not* language models:

- :class:`RulePlanner` routes a question to a plan with hand-written keyword rules;
- :class:`LearnedPlanner` routes with a trained classifier (``question -> route``, a
  :class:`~genai_helpers.models.ngram_classifier.HashedNgramClassifier`), then fills in arguments the same way.

Both are ``generate(prompt) -> str`` callables that read the ReAct transcript and write the next
``Thought:``/``Action:`` (or ``Final Answer:``) lines, so :class:`~genai_helpers.agents.react.ReActAgent`
treats them exactly like an LLM. The four routes: ``calculator``, ``sql``, ``sql+calculator``
(look two values up, then combine them) and ``search`` (the book retriever).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .tools import MODEL_ROWS, format_number, safe_eval

__all__ = ["ROUTES", "question_of", "observations_of", "model_names_in", "column_in", "expression_in",
           "route_by_rules", "sql_for", "router_text", "RulePlanner", "LearnedPlanner", "ToolTask",
           "SEARCH_QUESTIONS", "make_tool_tasks"]

ROUTES = ("calculator", "sql", "sql+calculator", "search")
_NAMES = sorted((r[0] for r in MODEL_ROWS), key=len, reverse=True)
_FAMILIES = sorted({r[1] for r in MODEL_ROWS}, key=len, reverse=True)
_COLUMNS = {"context": "context", "window": "context", "tokens": "context", "released": "year",
            "year": "year", "when": "year", "published": "year", "parameters": "params_m",
            "params": "params_m", "big": "params_m", "size": "params_m"}


def question_of(prompt: str) -> str:
    """The last ``Question:`` line of a ReAct transcript."""
    found = re.findall(r"^Question:\s*(.*)$", prompt, flags=re.M)
    return found[-1].strip() if found else prompt.strip()


def observations_of(prompt: str) -> list[str]:
    """Tool observations after the last ``Question:`` (errors included), in order."""
    tail = prompt[prompt.rfind("Question:"):]
    return [o.strip() for o in re.findall(r"^Observation:\s*(.*?)(?=^\w[\w ]*:|\Z)", tail, flags=re.M | re.S)]


def model_names_in(question: str) -> list[str]:
    """Names from the models table mentioned in ``question``, in order of mention."""
    low, found = question.lower(), []
    for name in _NAMES:
        i = low.find(name.lower())
        if i >= 0 and not any(i >= j and i < j + len(n) for j, n in found):
            found.append((i, name))
    return [n for _, n in sorted(found)]


def column_in(question: str) -> str:
    """The models-table column a question asks about (model names are ignored: "T5-large" is
    not a question about size); parameters when nothing else is named."""
    low = question.lower()
    for name in _NAMES:
        low = low.replace(name.lower(), " ")
    for word, column in _COLUMNS.items():
        if re.search(rf"\b{word}\b", low):
            return column
    return "params_m"


_WORD_OPS = [(r"\bsquare root of\s*([\d.]+)", r"sqrt(\1)"), (r"([\d.]+)\s*% of\s*([\d.]+)", r"\1/100*\2"),
             (r"\bplus\b|\badded to\b", "+"), (r"\bminus\b|\bless\b", "-"), (r"\btimes\b|\bmultiplied by\b", "*"),
             (r"\bdivided by\b|\bover\b", "/"), (r"\bto the power of\b|\braised to\b", "**"), (r"\bsquared\b", "**2")]


def expression_in(question: str) -> str | None:
    """The arithmetic expression a question asks for, or None (``"What is 12% of 250?"`` ->
    ``"12/100*250"``)."""
    text = question.lower().replace(",", "")
    for pattern, repl in _WORD_OPS:
        text = re.sub(pattern, repl, text)
    spans = re.findall(r"[\d.()+\-*/^ a-z]*", text)
    best = None
    for span in re.findall(r"(?:sqrt\()?[\d(][\d.()+\-*/^ ]*", text):
        span = span.strip()
        if re.search(r"\d", span) and (best is None or len(span) > len(best)):
            best = span
    del spans
    if best is None:
        return None
    best = best.rstrip("+-*/^ (.")
    if best.count("(") > best.count(")"):
        best += ")" * (best.count("(") - best.count(")"))
    return best or None


def route_by_rules(question: str) -> str:
    """Hand-written routing rules (the baseline the learned router is compared with)."""
    names, low = model_names_in(question), question.lower()
    if len(names) >= 2 and re.search(r"together|combined|sum|total|times (larger|bigger|more)|ratio|difference|more than", low):
        return "sql+calculator"
    if names or re.search(r"\b(how many|which|list|average|mean)\b.*\bmodels?\b|\bmodels?\b.*\b(database|table)\b", low):
        return "sql"
    if expression_in(question) and re.search(r"\d", question) and not re.search(r"\b(chapter|section)\s+\d", low):
        return "calculator"
    return "search"


def sql_for(question: str) -> str:
    """The SELECT statement for a single-lookup question about the models table."""
    names, low, column = model_names_in(question), question.lower(), column_in(question)
    if names:
        return f"SELECT {column} FROM models WHERE name = '{names[0]}'"
    family = next((f for f in _FAMILIES if f.lower() in low), None)
    year = re.search(r"\b(20\d\d)\b", low)
    where = []
    if family:
        where.append(f"family = '{family}'")
    if year:
        where.append(f"year = {year.group(1)}")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    if re.search(r"\b(most|largest|biggest|longest|highest)\b", low):
        return f"SELECT name, {column} FROM models{clause} ORDER BY {column} DESC LIMIT 1"
    if re.search(r"\b(fewest|smallest|shortest|least|lowest)\b", low):
        return f"SELECT name, {column} FROM models{clause} ORDER BY {column} ASC LIMIT 1"
    if re.search(r"\baverage|mean\b", low):
        return f"SELECT ROUND(AVG({column}), 1) FROM models{clause}"
    if re.search(r"\bhow many\b", low):
        return f"SELECT COUNT(*) FROM models{clause}"
    return f"SELECT name FROM models{clause}"


def _last_value(observation: str) -> str:
    """The value in the last column of the last row of an SQL observation."""
    rows = [r for r in observation.splitlines() if r.strip()]
    return rows[-1].split(" | ")[-1].strip() if len(rows) >= 2 else observation.strip()


def router_text(question: str) -> str:
    """What the learned router reads: the question with model names replaced by ``modelname``,
    numbers by ``num``, plus tags for what the extractors found (``tagtwomodels``, ``tagarith``).
    Abstracting entities lets a small classifier generalise from a few examples."""
    names = model_names_in(question)
    text = question
    for name in names:
        text = re.sub(re.escape(name), " modelname ", text, flags=re.I)
    stripped = text                      # model names out, so "GPT-2" is not arithmetic
    text = re.sub(r"\d+(\.\d+)?", " num ", text)
    tags = (["tagmodel"] if names else []) + (["tagtwomodels"] if len(names) >= 2 else [])
    tags += ["tagarith"] if re.search(r"\d", stripped) and expression_in(stripped) else []
    return " ".join([text] + tags)


class RulePlanner:
    """A ``generate(prompt) -> str`` policy that plans with rules; ``router`` may replace the
    routing step (``question -> one of ROUTES``) — :class:`LearnedPlanner` does exactly that."""

    name = "rule planner"

    def __init__(self, router=route_by_rules):
        self.router = router

    def __call__(self, prompt: str) -> str:
        question, obs = question_of(prompt), observations_of(prompt)
        route = self.router(question)
        ok = [o for o in obs if not o.startswith("Error")]
        if obs and obs[-1].startswith("Error") and len(obs) >= 2 and obs[-2].startswith("Error"):
            return "Thought: the tools keep failing; I should stop.\nFinal Answer: I could not answer this."
        if route == "calculator":
            if not ok:
                expr = expression_in(question)
                if expr is None:
                    return "Thought: I find no arithmetic here; search the book instead.\nAction: search[" + question + "]"
                return f"Thought: this is arithmetic, so I use the calculator.\nAction: calculator[{expr}]"
            return f"Thought: the calculator answered.\nFinal Answer: {ok[-1]}"
        if route == "sql":
            if not ok:
                return f"Thought: the answer is in the models table.\nAction: sql[{sql_for(question)}]"
            rows = [r for r in ok[-1].splitlines() if r.strip()]
            cells = [r.split(" | ") for r in rows[1:]]
            if len(cells) == 1:
                answer = " ".join(cells[0][:1] + [f"({c})" for c in cells[0][1:]])
            else:
                answer = ", ".join(c[0] for c in cells)
            return f"Thought: the database answered.\nFinal Answer: {answer}"
        if route == "sql+calculator":
            names, column = model_names_in(question), column_in(question)
            if len(names) < 2:
                return f"Thought: I expected two models but found {len(names)}; I will search.\nAction: search[{question}]"
            if len(ok) < 2:
                name = names[len(ok)]
                return (f"Thought: I need the {column} of {name} first.\n"
                        f"Action: sql[SELECT {column} FROM models WHERE name = '{name}']")
            if len(ok) == 2:
                a, b = _last_value(ok[0]), _last_value(ok[1])
                low = question.lower()
                op = "/" if re.search(r"times|ratio", low) else "-" if re.search(r"difference|more than", low) else "+"
                return f"Thought: now combine the two values.\nAction: calculator[{a} {op} {b}]"
            return f"Thought: done.\nFinal Answer: {ok[-1]}"
        if not ok:
            return f"Thought: this needs the book's text.\nAction: search[{question}]"
        first = ok[-1].splitlines()[0]
        return f"Thought: the top passage answers it.\nFinal Answer: {first}"


class LearnedPlanner(RulePlanner):
    """:class:`RulePlanner` whose routing is a trained classifier: ``classifier.predict`` on
    :func:`router_text` of the question."""

    name = "learned planner"

    def __init__(self, classifier):
        super().__init__(router=lambda q: classifier.predict([router_text(q)])[0])
        self.classifier = classifier


# ------------------------------------------------------------------ tasks with known answers
@dataclass(frozen=True)
class ToolTask:
    question: str
    route: str            # the route a correct plan takes (one of ROUTES)
    answer: str | None    # the exact expected answer (None for search questions)
    template: int         # which phrasing template produced it (splits are by template)


_BY_NAME = {r[0]: r for r in MODEL_ROWS}
_COL_INDEX = {"params_m": 2, "context": 3, "year": 4}
SEARCH_QUESTIONS = ["What is beam search?", "Why do we scale attention scores by the square root of d_k?",
                    "How does a KV cache speed up generation?", "What is top-p sampling?",
                    "Explain retrieval-augmented generation.", "What does a causal mask do?",
                    "How is perplexity defined?", "What is a mixture of experts?",
                    "Why does the book use smoke mode in CI?", "What is spotlighting?",
                    "How does LoRA reduce trainable parameters?", "What is the difference between BLEU and ROUGE?"]


def make_tool_tasks(n_per_template: int = 4, seed: int = 0) -> list[ToolTask]:
    """Questions with known routes and answers, from phrasing templates (template ids 0-19).

    Templates are grouped so a split by template id tests the router on *phrasings* it never saw.
    """
    if not isinstance(n_per_template, int) or n_per_template < 1:
        raise ValueError(f"n_per_template must be an int >= 1, got {n_per_template}")
    rng = random.Random(seed)
    tasks: list[ToolTask] = []

    def calc(t, fmt, make):
        for _ in range(n_per_template):
            q, expr = make()
            tasks.append(ToolTask(fmt.format(**q), "calculator", format_number(safe_eval(expr)), t))

    calc(0, "What is {a} * {b}?", lambda: ((d := {"a": rng.randint(2, 99), "b": rng.randint(2, 99)}), f"{d['a']}*{d['b']}"))
    calc(1, "Compute {p}% of {n}.", lambda: ((d := {"p": rng.choice([5, 10, 12, 15, 20, 25]), "n": rng.randint(10, 900)}), f"{d['p']}/100*{d['n']}"))
    calc(2, "What is {a} plus {b} minus {c}?", lambda: ((d := {"a": rng.randint(10, 999), "b": rng.randint(10, 999), "c": rng.randint(1, 99)}), f"{d['a']}+{d['b']}-{d['c']}"))
    calc(3, "Calculate ({a} + {b}) / {c}.", lambda: ((d := {"a": rng.randint(10, 99), "b": rng.randint(10, 99), "c": rng.choice([2, 4, 5, 8])}), f"({d['a']}+{d['b']})/{d['c']}"))
    calc(4, "I have {a} GPUs with {b} GB each; total memory = {a} times {b}?", lambda: ((d := {"a": rng.randint(2, 16), "b": rng.choice([16, 24, 40, 80])}), f"{d['a']}*{d['b']}"))
    calc(5, "What is the square root of {s}?", lambda: ((d := {"s": rng.randint(2, 40) ** 2}), f"sqrt({d['s']})"))
    calc(6, "how much is {a} divided by {b}", lambda: ((d := {"a": rng.randint(100, 999), "b": rng.choice([2, 4, 5, 10])}), f"{d['a']}/{d['b']}"))
    names = list(_BY_NAME)
    col_phr = {"params_m": ["How many parameters (in millions) does {n} have?", "What is the size of {n} in millions of parameters?", "how big is {n}"],
               "context": ["What is the context length of {n}?", "How many tokens fit in the context window of {n}?"],
               "year": ["When was {n} released?", "In which year was {n} published?"]}
    t = 7
    for col, phrasings in col_phr.items():
        for fmt in phrasings:
            for name in rng.sample(names, n_per_template):
                tasks.append(ToolTask(fmt.format(n=name), "sql", str(_BY_NAME[name][_COL_INDEX[col]]), t))
            t += 1
    for fam in rng.sample(sorted({r[1] for r in MODEL_ROWS}), min(n_per_template, 5)):
        tasks.append(ToolTask(f"How many {fam} models are in the database?", "sql",
                              str(sum(r[1] == fam for r in MODEL_ROWS)), 14))
    pair_phr = [("How many parameters do {a} and {b} have together?", "+"),
                ("What is the combined context length of {a} and {b}?", "+"),
                ("How many times larger is {a} than {b}?", "/")]
    for i, (fmt, op) in enumerate(pair_phr):
        for _ in range(n_per_template):
            a, b = rng.sample(names, 2)
            col = "context" if "context" in fmt else "params_m"
            va, vb = _BY_NAME[a][_COL_INDEX[col]], _BY_NAME[b][_COL_INDEX[col]]
            tasks.append(ToolTask(fmt.format(a=a, b=b), "sql+calculator", format_number(safe_eval(f"{va}{op}{vb}")), 15 + i))
    for i, q in enumerate(SEARCH_QUESTIONS):
        tasks.append(ToolTask(q, "search", None, 18 + i % 2))
    return tasks
