"""RAFT — retrieval-augmented fine-tuning, in a version small enough to train on a CPU (chapter 07).

RAFT trains the *reader* on what retrieval really returns: each training question comes with its
oracle passage (the one holding the answer) mixed among distractors, and a share of examples
have no oracle at all, so the model learns both to pick the right passage and to say "I don't
know" when nothing supports an answer.

Here the reader is :class:`PassageReader`: it scores each passage by a learned bilinear form of
the question and passage embeddings (initialised to plain cosine similarity, so the untrained
reader is the usual similarity ranking) and has a learned *abstain* score. :func:`make_raft_examples`
builds the oracle + distractor training data; :class:`RaftBatches` feeds it to the shared training
loop (:func:`genai_helpers.training.train`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["RaftExample", "make_raft_examples", "PassageReader", "embed_examples", "RaftBatches", "reader_accuracy"]


@dataclass(frozen=True)
class RaftExample:
    """A question, its passages and the position of the oracle among them (``-1``: no oracle)."""

    question: str
    passages: tuple[str, ...]
    oracle: int


def make_raft_examples(pairs: Sequence[tuple[str, str]], distractors: Callable[[str, str, int], list[str]], *,
                       n_passages: int = 4, p_no_oracle: float = 0.25, copies: int = 1, seed: int = 0) -> list[RaftExample]:
    """RAFT training data from ``(question, oracle passage)`` pairs.

    ``distractors(question, oracle, n)`` returns ``n`` passages that do not answer the question
    (hard ones: retrieved for the question from other sources). Each pair yields ``copies``
    examples of ``n_passages`` passages; with probability ``p_no_oracle`` (in [0, 1]) the oracle
    is replaced by one more distractor. Passage order is shuffled with ``seed``.
    """
    if not 0 <= p_no_oracle <= 1:
        raise ValueError(f"p_no_oracle must be in [0, 1], got {p_no_oracle}")
    if not isinstance(n_passages, int) or n_passages < 2:
        raise ValueError(f"n_passages must be an int >= 2, got {n_passages!r}")
    rng = np.random.default_rng(seed)
    out = []
    for question, oracle in pairs:
        pool = distractors(question, oracle, n_passages + 2)
        for _ in range(copies):
            with_oracle = rng.random() >= p_no_oracle
            chosen = list(rng.choice(len(pool), size=n_passages - int(with_oracle), replace=False))
            passages = [pool[i] for i in chosen] + ([oracle] if with_oracle else [])
            order = rng.permutation(len(passages))
            passages = [passages[i] for i in order]
            pos = int(np.where(order == len(passages) - 1)[0][0]) if with_oracle else -1
            out.append(RaftExample(question, tuple(passages), pos))
    return out


class PassageReader(nn.Module):
    """Scores ``n`` passages for a question and one extra *abstain* option.

    ``forward(q, p, target=None)``: ``q`` (B, d) and ``p`` (B, n, d) unit-norm embeddings; returns
    logits (B, n + 1) — column ``n`` is "abstain" — and, with ``target`` (B,) in ``[-1, n)``
    (``-1`` = no oracle, i.e. abstain), the cross-entropy loss.
    Score of passage j: ``scale * (q + q @ A) . p_j`` with ``A`` (d, d) starting at zero, so the
    untrained reader ranks by cosine similarity.
    """

    def __init__(self, dim: int, *, init_scale: float = 10.0, init_abstain: float = 0.0):
        super().__init__()
        self.A = nn.Parameter(torch.zeros(dim, dim))
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(init_scale))))
        self.abstain = nn.Parameter(torch.tensor(float(init_abstain)))

    def forward(self, q: torch.Tensor, p: torch.Tensor, target: torch.Tensor | None = None):
        qa = q + q @ self.A                                            # (B, d)
        s = self.log_scale.exp() * torch.einsum("bd,bnd->bn", qa, p)   # (B, n)
        logits = torch.cat([s, self.abstain.expand(s.shape[0], 1)], dim=1)
        if target is None:
            return logits
        t = torch.where(target < 0, torch.full_like(target, s.shape[1]), target)
        return logits, F.cross_entropy(logits, t)

    @torch.no_grad()
    def predict(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Chosen passage per question (B,), ``-1`` where the reader abstains."""
        choice = self.forward(q, p).argmax(1)
        return torch.where(choice == p.shape[1], torch.full_like(choice, -1), choice)


def embed_examples(examples: Sequence[RaftExample], embed) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(q (N, d), p (N, n, d), target (N,))`` tensors for a list of same-size examples."""
    if not examples or len({len(e.passages) for e in examples}) != 1:
        raise ValueError("examples must be non-empty and all have the same number of passages")
    n = len(examples[0].passages)
    q = torch.from_numpy(embed([e.question for e in examples]))
    p = torch.from_numpy(embed([t for e in examples for t in e.passages])).view(len(examples), n, -1)
    return q, p, torch.tensor([e.oracle for e in examples])


class RaftBatches:
    """``batch_fn(i)`` for the training loop: a random batch of examples, a pure function of ``i``."""

    def __init__(self, q, p, target, batch_size: int = 32, seed: int = 0):
        self.q, self.p, self.target, self.batch_size, self.seed = q, p, target, batch_size, seed

    def __call__(self, i: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        idx = torch.randint(len(self.q), (self.batch_size,), generator=g)
        return self.q[idx], self.p[idx], self.target[idx]


def reader_accuracy(reader: PassageReader, q, p, target) -> dict:
    """``with_oracle``: share of oracle-present examples where the oracle is chosen;
    ``abstain_when_absent``: share of no-oracle examples where the reader abstains;
    ``overall``: share of all examples handled correctly."""
    pred = reader.predict(q, p)
    has = target >= 0
    return {"with_oracle": float((pred[has] == target[has]).float().mean()) if has.any() else float("nan"),
            "abstain_when_absent": float((pred[~has] == -1).float().mean()) if (~has).any() else float("nan"),
            "overall": float((pred == target).float().mean())}
