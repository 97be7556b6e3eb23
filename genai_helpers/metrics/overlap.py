"""N-gram overlap with references: BLEU, ROUGE-N / ROUGE-L, CIDEr (chapter 03).

Each follows a reference implementation closely enough to be checked against it in the tests
and in chapter 03: :func:`bleu` against ``sacrebleu.corpus_bleu`` (same 13a tokenisation and
exponential smoothing), :func:`rouge` against Google's ``rouge-score``, :func:`cider` against the
CIDEr-D of ``pycocoevalcap``.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from ._inputs import as_reference_list, check_k, check_nonempty, check_same_length, check_text

__all__ = ["tokenize_13a", "BleuResult", "bleu", "RougeScore", "tokenize_rouge", "lcs_length", "rouge", "cider"]

# --------------------------------------------------------------------------------------------- BLEU

_13A_RULES = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),   # most punctuation becomes a token
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),                 # . and , unless preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),                 # . and , unless followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),                      # a dash after a digit
)


def tokenize_13a(text: str) -> list[str]:
    """The ``13a`` tokenisation of WMT's ``mteval-v13a.pl`` (sacrebleu's default): split off punctuation."""
    check_text("text", text)
    line = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, char in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
        line = line.replace(entity, char)
    line = f" {line} "
    for pattern, repl in _13A_RULES:
        line = pattern.sub(repl, line)
    return line.split()


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


@dataclass
class BleuResult:
    """Corpus BLEU on a 0-100 scale, with the pieces it is made of."""

    score: float                 # 0-100
    precisions: list[float]      # modified n-gram precisions, 0-100, n = 1..max_order
    brevity_penalty: float       # in (0, 1]
    hyp_len: int                 # tokens in all hypotheses
    ref_len: int                 # tokens in the closest-length reference of each hypothesis

    def __float__(self) -> float:
        return self.score


def bleu(hypotheses: Sequence[str], references: Sequence, *, max_order: int = 4,
         lowercase: bool = False, smooth: bool = True) -> BleuResult:
    """Corpus BLEU (Papineni et al., 2002) of ``hypotheses`` against ``references``, 0-100.

    ``references[i]`` is the reference string of ``hypotheses[i]``, or a list of several. Counts
    are summed over the corpus before dividing (corpus BLEU is *not* the mean of sentence BLEUs):
    the modified precision ``p_n`` clips each hypothesis n-gram count at its largest count in any
    one reference; the brevity penalty ``exp(1 - r / c)`` applies when the hypotheses are shorter
    (``c``) than the closest reference lengths (``r``); BLEU = ``BP * exp(mean(log p_n))``.
    ``smooth=True`` is sacrebleu's default "exp" smoothing: a zero ``p_n`` becomes
    ``1 / (2^j * total_n)`` for the j-th such order. Text is tokenised with :func:`tokenize_13a`.
    """
    check_nonempty("hypotheses", hypotheses)
    check_same_length("hypotheses", hypotheses, "references", references)
    check_k(max_order, "max_order")
    correct, total = [0] * max_order, [0] * max_order
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        check_text("hypotheses", hyp)
        refs = as_reference_list("references", refs)
        prep = (lambda s: s.lower()) if lowercase else (lambda s: s)
        h = tokenize_13a(prep(hyp))
        rs = [tokenize_13a(prep(r)) for r in refs]
        hyp_len += len(h)
        ref_len += min((len(r) for r in rs), key=lambda L: (abs(L - len(h)), L))   # closest, ties -> shorter
        for n in range(1, max_order + 1):
            h_counts = _ngrams(h, n)
            best_ref = Counter()
            for r in rs:
                best_ref |= _ngrams(r, n)                       # max count of each n-gram over references
            correct[n - 1] += sum(min(c, best_ref[g]) for g, c in h_counts.items())
            total[n - 1] += sum(h_counts.values())
    bp = 1.0 if hyp_len >= ref_len else (math.exp(1 - ref_len / hyp_len) if hyp_len else 0.0)
    precisions = [0.0] * max_order
    if not any(correct):
        return BleuResult(0.0, precisions, bp, hyp_len, ref_len)
    halvings = 1.0
    for n in range(max_order):
        if total[n] == 0:
            break
        if correct[n] == 0 and smooth:
            halvings *= 2
            precisions[n] = 100.0 / (halvings * total[n])
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    if min(precisions) == 0:
        return BleuResult(0.0, precisions, bp, hyp_len, ref_len)
    score = bp * math.exp(sum(math.log(p) for p in precisions) / max_order)
    return BleuResult(score, precisions, bp, hyp_len, ref_len)


# -------------------------------------------------------------------------------------------- ROUGE

@dataclass
class RougeScore:
    precision: float    # overlap / hypothesis units, in [0, 1]
    recall: float       # overlap / reference units, in [0, 1]
    fmeasure: float     # harmonic mean of the two


def tokenize_rouge(text: str, use_stemmer: bool = False) -> list[str]:
    """rouge-score's tokenisation: lower-case, keep runs of ``[a-z0-9]``; optional Porter stems (words > 3 letters)."""
    check_text("text", text)
    tokens = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    if use_stemmer:
        stem = _porter().stem
        tokens = [stem(t) if len(t) > 3 else t for t in tokens]
    return tokens


def _porter():
    try:
        from nltk.stem.porter import PorterStemmer
    except ImportError as e:  # pragma: no cover - nltk is in the [eval] extra
        raise ImportError("use_stemmer=True needs nltk (pip install nltk)") from e
    return PorterStemmer("ORIGINAL_ALGORITHM")


def _prf(overlap: int, n_hyp: int, n_ref: int) -> RougeScore:
    p = overlap / n_hyp if n_hyp else 0.0
    r = overlap / n_ref if n_ref else 0.0
    return RougeScore(p, r, 2 * p * r / (p + r) if p + r else 0.0)


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (dynamic programming, O(len a · len b))."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge(hypothesis: str, reference: str, rouge_types: Sequence[str] = ("rouge1", "rouge2", "rougeL"),
          *, use_stemmer: bool = False) -> dict[str, RougeScore]:
    """ROUGE (Lin, 2004) of one hypothesis against one reference: ``{type: RougeScore}``.

    ``rougeN`` (N = 1..9) counts overlapping n-grams (each clipped at its count in the other
    text); ``rougeL`` uses the longest common subsequence, which rewards words in the same order
    even when they are not adjacent. Recall (overlap / reference) is the classic summarisation
    view: did the output cover the reference? Matches ``rouge_score.rouge_scorer.RougeScorer``.
    """
    check_text("hypothesis", hypothesis)
    check_text("reference", reference)
    if isinstance(rouge_types, str) or not rouge_types:
        raise TypeError("rouge_types must be a non-empty list such as ['rouge1', 'rougeL']")
    h, r = tokenize_rouge(hypothesis, use_stemmer), tokenize_rouge(reference, use_stemmer)
    out = {}
    for kind in rouge_types:
        if kind == "rougeL":
            out[kind] = _prf(lcs_length(h, r), len(h), len(r))
        elif re.fullmatch(r"rouge[1-9]", kind):
            n = int(kind[5:])
            hc, rc = _ngrams(h, n), _ngrams(r, n)
            out[kind] = _prf(sum((hc & rc).values()), sum(hc.values()), sum(rc.values()))
        else:
            raise ValueError(f"rouge_types entries must be 'rouge1'..'rouge9' or 'rougeL', got {kind!r}")
    return out


# -------------------------------------------------------------------------------------------- CIDEr

def cider(hypotheses: Sequence[str], references: Sequence, *, max_order: int = 4, sigma: float = 6.0) -> tuple[float, list[float]]:
    """CIDEr-D (Vedantam et al., 2015) as in ``pycocoevalcap``: ``(corpus mean, per-item scores)``.

    Built for captions: every n-gram (n = 1..4) is weighted by TF-IDF, where the "documents" are
    the items (images) of the corpus, so n-grams that every item's references share (``a``,
    ``of the``) count little and distinctive ones count a lot. For each item the score is the
    cosine similarity of TF-IDF vectors, hypothesis against each reference, with the hypothesis
    weights clipped at the reference's and a Gaussian penalty on the length difference
    (``sigma``), averaged over references and n-gram orders and multiplied by 10. Like the
    reference implementation, the "length" it penalises is the number of bigrams, and text is
    split on whitespace (tokenise and lower-case first). The IDF needs a corpus: scores depend on
    the other items. Range ``[0, 10·…]``; typical captioning systems score 0.5-1.5.
    """
    check_nonempty("hypotheses", hypotheses)
    check_same_length("hypotheses", hypotheses, "references", references)
    check_k(max_order, "max_order")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")

    def counts(text: str) -> Counter:
        words = text.split()
        c = Counter()
        for n in range(1, max_order + 1):
            c.update(_ngrams(words, n))
        return c

    hyp_counts = [counts(check_text("hypotheses", h)) for h in hypotheses]
    ref_counts = [[counts(r) for r in as_reference_list("references", refs)] for refs in references]
    doc_freq = Counter()
    for refs in ref_counts:
        doc_freq.update({g for rc in refs for g in rc})
    log_n_docs = math.log(len(ref_counts))

    def tfidf(c: Counter):
        vec = [dict() for _ in range(max_order)]
        norm = [0.0] * max_order
        for g, tf in c.items():
            w = tf * (log_n_docs - math.log(max(1.0, doc_freq[g])))
            vec[len(g) - 1][g] = w
            norm[len(g) - 1] += w * w
        bigrams = sum(tf for g, tf in c.items() if len(g) == 2)
        return vec, [math.sqrt(x) for x in norm], bigrams

    scores = []
    for hc, refs in zip(hyp_counts, ref_counts):
        hv, hn, hl = tfidf(hc)
        total = [0.0] * max_order
        for rc in refs:
            rv, rn, rl = tfidf(rc)
            penalty = math.exp(-((hl - rl) ** 2) / (2 * sigma ** 2))
            for n in range(max_order):
                dot = sum(min(w, rv[n].get(g, 0.0)) * rv[n].get(g, 0.0) for g, w in hv[n].items())
                if hn[n] and rn[n]:
                    dot /= hn[n] * rn[n]
                total[n] += dot * penalty
        scores.append(10.0 * sum(total) / max_order / len(refs))
    return sum(scores) / len(scores), scores
