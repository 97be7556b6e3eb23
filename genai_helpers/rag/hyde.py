"""HyDE's writer from the book LM (chapter 07).

HyDE (hypothetical document embeddings) searches with the embedding of an answer a language model
*writes* for the question, right or wrong, instead of the question's own embedding: an answer is
worded like the passages it should find. :class:`BookLMWriter` lets the book's own small language
model (:func:`genai_helpers.models.book_lm.load_book_lm`, offline) write that answer; pass it to
:func:`~genai_helpers.rag.retriever.hyde_search` as ``write``. The bigram stand-in it replaces is
:class:`~genai_helpers.rag.generation.BigramWriter`.

Decoding is greedy (with a repetition penalty), so the same question always gives the same text.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["HYDE_PROMPT", "BookLMWriter"]

#: The prompt the book LM continues (``{question}`` is filled in): a question heading, then the
#: start of a passage, as a page of the book would look.
HYDE_PROMPT = "## {question}\n\n"


class BookLMWriter:
    """``writer(question) -> str``: the book LM's continuation of :data:`HYDE_PROMPT` (up to
    ``max_new_tokens`` tokens, 1..256, cut at the last whole word). ``model``/``tokenizer``
    default to the shipped book LM. ``repetition_penalty`` >= 1."""

    name = "book LM (greedy continuation)"

    def __init__(self, model=None, tokenizer=None, *, max_new_tokens: int = 48, repetition_penalty: float = 1.3,
                 prompt: str = HYDE_PROMPT):
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or not 1 <= max_new_tokens <= 256:
            raise ValueError(f"max_new_tokens must be an int in [1, 256], got {max_new_tokens!r}")
        if not 1 <= repetition_penalty <= 5:
            raise ValueError(f"repetition_penalty must be in [1, 5], got {repetition_penalty}")
        if not isinstance(prompt, str) or "{question}" not in prompt:
            raise ValueError("prompt must be a str containing '{question}'")
        if model is None or tokenizer is None:
            from ..models.book_lm import load_book_lm
            model, tokenizer = load_book_lm()
        self.model, self.tok = model.eval(), tokenizer
        self.max_new_tokens, self.repetition_penalty, self.prompt = max_new_tokens, repetition_penalty, prompt

    @torch.no_grad()
    def write(self, question: str) -> str:
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
        ids = [self.tok.eot_id] + self.tok.encode(self.prompt.format(question=question.strip()))
        block = self.model.config.block_size
        ids = ids[-(block - self.max_new_tokens):]
        dev = next(self.model.parameters()).device
        x = torch.tensor([ids], device=dev)
        out = self.model.generate(x, self.max_new_tokens, temperature=0, repetition_penalty=self.repetition_penalty,
                                  eos_token_id=self.tok.eot_id)[0, x.shape[1]:].tolist()
        ended = self.tok.eot_id in out
        text = self.tok.decode(out[:out.index(self.tok.eot_id)] if ended else out)
        if not ended and " " in text.strip():
            text = text.rstrip().rsplit(" ", 1)[0]
        return " ".join(text.split()) or question

    __call__ = write

    def write_many(self, questions: Sequence[str]) -> list[str]:
        """:meth:`write` for each question."""
        if isinstance(questions, str):
            raise TypeError("questions must be a list of strings, got a str")
        return [self.write(q) for q in questions]
