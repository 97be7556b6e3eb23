"""Reference-free text metrics: perplexity, diversity (distinct-n), ExactMatch@N (chapter 03).

Overlap metrics that compare with references (BLEU, ROUGE, CIDEr) are in
:mod:`genai_helpers.metrics.overlap`, METEOR in :mod:`genai_helpers.metrics.meteor`.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .._checks import check_tensor
from ._inputs import check_k, check_nonempty, check_same_length

__all__ = ["perplexity", "distinct_n", "exact_match_at_n"]


def perplexity(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> float:
    """``exp`` of the mean next-token cross-entropy (nats) of ``logits`` against ``targets``.

    ``logits`` ``(..., vocab)``, ``targets`` the matching ``(...)`` ids; positions equal to
    ``ignore_index`` do not count. A model that spreads its probability evenly over ``V`` tokens
    has perplexity ``V``: read perplexity as "the number of equally likely tokens it hesitates
    between". Range ``[1, inf)``; lower is better.
    """
    check_tensor("logits", logits)
    check_tensor("targets", targets)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"targets must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}, got {tuple(targets.shape)}")
    if not bool((targets != ignore_index).any()):
        raise ValueError("targets must contain at least one position that is not ignore_index")
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=ignore_index)
    return math.exp(nll.item())


def _tokens(text, name: str) -> list[str]:
    if isinstance(text, str):
        return text.split()
    if isinstance(text, (list, tuple)) and all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in text):
        return list(text)
    raise TypeError(f"{name} entries must be strings (split on whitespace) or lists of tokens (strings or int ids)")


def distinct_n(texts: Sequence, n: int = 2) -> float:
    """Share of distinct n-grams among all n-grams of ``texts`` (Li et al., 2016), in ``[0, 1]``.

    ``texts``: strings (split on whitespace) or token lists (strings or int ids). 1.0 means no n-gram repeats anywhere
    in the set; a decoder that says the same thing over and over scores near 0. Texts shorter
    than ``n`` contribute nothing; if no text has ``n`` tokens the result is 0.
    """
    check_k(n, "n")
    check_nonempty("texts", texts)
    grams = []
    for t in texts:
        toks = _tokens(t, "texts")
        grams.extend(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def exact_match_at_n(predictions: Sequence, references: Sequence, n: int) -> float:
    """ExactMatch@N: share of predictions whose first ``n`` tokens equal the reference's first ``n``.

    The Smart Compose metric (chapter 04): a suggestion counts only if its first ``n`` words are
    exactly what the user went on to type. Strings are split on whitespace; token lists (strings
    or int ids) are used as given. Both sides are cut at ``n`` tokens and must then be equal, so a prediction that
    stops early, or runs on past a reference shorter than ``n``, does not match. Returns a value
    in ``[0, 1]``.
    """
    check_k(n, "n")
    check_nonempty("predictions", predictions)
    check_same_length("predictions", predictions, "references", references)
    hits = 0
    for p, r in zip(predictions, references):
        pt, rt = _tokens(p, "predictions"), _tokens(r, "references")
        hits += pt[:n] == rt[:n]
    return hits / len(predictions)
