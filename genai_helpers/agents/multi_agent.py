"""Multi-agent patterns (chapter 08): sequential, parallel and debate.

An *agent* here is any callable ``agent(task: str) -> str`` (wrap a :class:`~genai_helpers.agents.react.ReActAgent` with
``lambda q: agent.run(q).answer``). The patterns only decide who sees what, and when:

- :func:`sequential`  each stage gets the previous stage's output (an assembly line);
- :func:`parallel`    every agent answers the same task independently (threads), then an
  ``aggregate`` (default :func:`majority_vote`) combines the answers;
- :func:`debate`      agents answer, then for ``rounds`` more rounds each sees the others'
  latest answers (``agent(task, others)``) and may revise; the final answers are aggregated.
"""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

__all__ = ["sequential", "majority_vote", "parallel", "debate"]


def sequential(stages: Sequence[Callable[[str], str]], task: str) -> list[str]:
    """Run ``stages`` in order, each on the previous output; returns every stage's output."""
    if not stages:
        raise ValueError("stages must hold at least one callable")
    outputs, current = [], task
    for stage in stages:
        current = stage(current)
        outputs.append(current)
    return outputs


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most common non-empty answer; ties go to the answer given first (None if none)."""
    valid = [a for a in answers if a]
    if not valid:
        return None
    counts = Counter(valid)
    best = max(counts.values())
    return next(a for a in valid if counts[a] == best)


def parallel(agents: Sequence[Callable[[str], str]], task: str, *, aggregate=majority_vote,
             max_workers: int | None = None) -> tuple[str | None, list[str]]:
    """Every agent answers ``task`` concurrently; returns ``(aggregate(answers), answers)``."""
    if not agents:
        raise ValueError("agents must hold at least one callable")
    with ThreadPoolExecutor(max_workers=max_workers or len(agents)) as pool:
        answers = list(pool.map(lambda agent: agent(task), agents))
    return aggregate(answers), answers


def debate(agents: Sequence[Callable[..., str]], task: str, *, rounds: int = 1,
           aggregate=majority_vote) -> tuple[str | None, list[list[str]]]:
    """Round 0: ``agent(task, [])``; round r: ``agent(task, other_agents_answers)``.

    Returns ``(aggregate(final answers), answers per round)``.
    """
    if not agents:
        raise ValueError("agents must hold at least one callable")
    if not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be an int >= 0, got {rounds}")
    history = [[agent(task, []) for agent in agents]]
    for _ in range(rounds):
        last = history[-1]
        history.append([agent(task, [a for j, a in enumerate(last) if j != i]) for i, agent in enumerate(agents)])
    return aggregate(history[-1]), history
