"""Long-term memory for an assistant, stored in sqlite (chapter 08).

Each memory is a row ``(id, user, text, embedding, created, last_used, uses)``; recall embeds
the query and returns the user's ``k`` most similar memories (cosine similarity), so facts
survive across sessions and processes. Memories are per user (one user never recalls another's)
and :meth:`LongTermMemory.forget` deletes a user's rows — the "right to be forgotten".
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["Memory", "LongTermMemory"]


@dataclass(frozen=True)
class Memory:
    id: int
    text: str
    score: float     # cosine similarity to the query, in [-1, 1]


class LongTermMemory:
    """``LongTermMemory(path, embed)``; ``path=":memory:"`` keeps it in RAM (tests)."""

    def __init__(self, path: str | Path, embed: Callable, *, clock: Callable[[], float] = time.time):
        if not callable(embed):
            raise TypeError("embed must be callable: embed(list[str]) -> (N, D) array")
        self.embed, self.clock = embed, clock
        self.con = sqlite3.connect(str(path))
        self.con.execute("CREATE TABLE IF NOT EXISTS memories (id INTEGER PRIMARY KEY, user TEXT NOT NULL, "
                         "text TEXT NOT NULL, embedding BLOB NOT NULL, created REAL, last_used REAL, uses INTEGER DEFAULT 0)")
        self.con.execute("CREATE INDEX IF NOT EXISTS memories_user ON memories(user)")

    def remember(self, user: str, text: str) -> int:
        """Store ``text`` for ``user``; returns its id. Exact duplicates are stored once."""
        if not isinstance(user, str) or not user:
            raise ValueError("user must be a non-empty str")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty str")
        row = self.con.execute("SELECT id FROM memories WHERE user = ? AND text = ?", (user, text)).fetchone()
        if row:
            return row[0]
        vec = np.asarray(self.embed([text]), dtype=np.float32)[0]
        now = self.clock()
        cur = self.con.execute("INSERT INTO memories (user, text, embedding, created, last_used) VALUES (?, ?, ?, ?, ?)",
                               (user, text, vec.tobytes(), now, now))
        self.con.commit()
        return cur.lastrowid

    def recall(self, user: str, query: str, k: int = 3, min_score: float = -1.0) -> list[Memory]:
        """The ``user``'s ``k`` memories most similar to ``query`` with score >= ``min_score``."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k}")
        rows = self.con.execute("SELECT id, text, embedding FROM memories WHERE user = ?", (user,)).fetchall()
        if not rows:
            return []
        matrix = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
        q = np.asarray(self.embed([query]), dtype=np.float32)[0]
        scores = matrix @ q
        order = np.argsort(-scores, kind="stable")[:k]
        hits = [Memory(rows[i][0], rows[i][1], float(scores[i])) for i in order if scores[i] >= min_score]
        now = self.clock()
        self.con.executemany("UPDATE memories SET last_used = ?, uses = uses + 1 WHERE id = ?", [(now, h.id) for h in hits])
        self.con.commit()
        return hits

    def forget(self, user: str) -> int:
        """Delete every memory of ``user``; returns how many were deleted."""
        cur = self.con.execute("DELETE FROM memories WHERE user = ?", (user,))
        self.con.commit()
        return cur.rowcount

    def __len__(self) -> int:
        return self.con.execute("SELECT COUNT(*) FROM memories").fetchone()[0]

    def close(self) -> None:
        self.con.close()
