"""METEOR (Banerjee & Lavie, 2005), and the offline WordNet it uses for synonyms (chapter 03).

METEOR aligns hypothesis words to reference words in three passes — exact form, then Porter
stem, then WordNet synonym — and scores the alignment with a recall-weighted F-mean times a
penalty for fragmentation (matched words scattered in many chunks). This module follows NLTK's
``nltk.translate.meteor_score`` step by step, so the two agree exactly when they use the same
stemmer and WordNet.

WordNet: NLTK downloads it from the network, which this book avoids. :func:`setup_wordnet`
builds the folder NLTK expects from Debian's ``wordnet-base`` and ``wordnet-sense-index``
packages (``apt-get install wordnet-base wordnet-sense-index``). Without WordNet, :func:`meteor`
uses exact and stem matches only; :func:`wordnet_status` says which.
"""
from __future__ import annotations

import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Sequence


DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.adj", "data.adv", "data.noun", "data.verb", "index.adj", "index.adv", "index.noun",
                 "index.verb", "index.sense", "adj.exc", "adv.exc", "noun.exc", "verb.exc")
# WordNet 3.0's lexicographer files, numbered in order; NLTK reads them from a file "lexnames",
# which Debian does not ship. The last column is the part of speech (1 noun, 2 verb, 3 adj, 4 adv).
LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
            "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
            "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
            "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
            "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
            "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
            "adj.ppl").split()
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def default_nltk_data_dir() -> Path:
    """``$NLTK_DATA`` (first entry) if set, else ``~/nltk_data``."""
    env = os.environ.get("NLTK_DATA")
    return Path(env.split(os.pathsep)[0]) if env else Path.home() / "nltk_data"


def setup_wordnet(nltk_data: str | os.PathLike | None = None, source: str | os.PathLike = DEBIAN_WORDNET_DIR,
                  *, overwrite: bool = False) -> Path:
    """Copy WordNet 3.0 from ``source`` (Debian's files) into ``<nltk_data>/corpora/wordnet``.

    Files are copied, not linked (NLTK's reader rejects some links), and the ``lexnames`` file
    NLTK needs is written. ``nltk_data`` defaults to :func:`default_nltk_data_dir`; it is added
    to ``nltk.data.path`` when nltk is importable. Returns the ``wordnet`` folder. Raises
    ``FileNotFoundError`` naming the Debian packages when ``source`` lacks the files.
    """
    src = Path(source)
    missing = [f for f in WORDNET_FILES if not (src / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"source={str(src)!r} lacks WordNet files {missing[:4]}{'...' if len(missing) > 4 else ''}; install them "
            f"with `apt-get install wordnet-base wordnet-sense-index` (Debian/Ubuntu/Colab)")
    root = Path(nltk_data) if nltk_data is not None else default_nltk_data_dir()
    target = root / "corpora" / "wordnet"
    target.mkdir(parents=True, exist_ok=True)
    for name in WORDNET_FILES:
        dst = target / name
        if overwrite or not dst.is_file() or dst.is_symlink():
            if dst.is_symlink():
                dst.unlink()
            shutil.copyfile(src / name, dst)
    lexnames = "".join(f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))
    (target / "lexnames").write_text(lexnames)
    try:
        import nltk

        if str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))
    except ImportError:  # pragma: no cover - nltk is in the [eval] extra
        pass
    return target


def load_wordnet():
    """NLTK's WordNet reader if nltk and the WordNet data can be loaded, else ``None``."""
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        wordnet.synsets("dog")
        return wordnet
    except Exception:   # nltk missing, data missing (LookupError), or unreadable data
        return None


def wordnet_status() -> str:
    """One line saying which METEOR matching stages are available here."""
    wn = load_wordnet()
    if wn is None:
        return "WordNet not found: METEOR uses exact and stem matches only (call setup_wordnet() to add synonyms)"
    return f"WordNet {wn.get_version()} loaded: METEOR uses exact, stem and synonym matches"


def _tokens(text) -> list[str]:
    if isinstance(text, str):
        return text.split()
    if isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
        return list(text)
    raise TypeError("hypothesis and references must be strings (split on whitespace) or lists of token strings")


def _match_exact(hyp: list[tuple[int, str]], ref: list[tuple[int, str]]):
    """Pair equal words, scanning the hypothesis from its end; return (pairs, unmatched hyp, unmatched ref)."""
    where = defaultdict(list)
    for j, (_, word) in enumerate(ref):
        where[word].append(j)
    pairs, used_h, used_r = [], set(), set()
    for i in reversed(range(len(hyp))):
        slots = where.get(hyp[i][1])
        if slots:
            j = slots.pop()                        # the last unused occurrence in the reference
            used_h.add(i)
            used_r.add(j)
            pairs.append((hyp[i][0], ref[j][0]))
    return (pairs, [w for i, w in enumerate(hyp) if i not in used_h], [w for j, w in enumerate(ref) if j not in used_r])


def _match_synonyms(hyp, ref, wordnet):
    where = defaultdict(list)
    for j, (_, word) in enumerate(ref):
        where[word].append(j)
    pairs, used_h, used_r = [], set(), set()
    for i in reversed(range(len(hyp))):
        word = hyp[i][1]
        synonyms = {lemma.name() for s in wordnet.synsets(word) for lemma in s.lemmas() if "_" not in lemma.name()}
        synonyms.add(word)
        best_j, best = -1, None
        for syn in synonyms:                       # the synonym whose last free slot is furthest right
            slots = where.get(syn)
            if slots and slots[-1] > best_j:
                best_j, best = slots[-1], syn
        if best is not None:
            where[best].pop()
            used_h.add(i)
            used_r.add(best_j)
            pairs.append((hyp[i][0], ref[best_j][0]))
    return (pairs, [w for i, w in enumerate(hyp) if i not in used_h], [w for j, w in enumerate(ref) if j not in used_r])


def meteor_alignment(hypothesis, reference, *, use_synonyms: bool | None = None) -> list[tuple[int, int, str]]:
    """The METEOR alignment: ``(hyp position, ref position, stage)`` with stage ``exact``/``stem``/``synonym``."""
    wordnet = _resolve_wordnet(use_synonyms)
    hyp = list(enumerate(w.lower() for w in _tokens(hypothesis)))
    ref = list(enumerate(w.lower() for w in _tokens(reference)))
    out = []
    exact, hyp, ref = _match_exact(hyp, ref)
    out += [(i, j, "exact") for i, j in exact]
    stem = _porter_default().stem
    stem_pairs, hyp_s, ref_s = _match_exact([(i, stem(w)) for i, w in hyp], [(j, stem(w)) for j, w in ref])
    out += [(i, j, "stem") for i, j in stem_pairs]
    if wordnet is not None:
        # Like NLTK, the synonym pass looks up the *stemmed* leftovers.
        syn_pairs, _, _ = _match_synonyms(hyp_s, ref_s, wordnet)
        out += [(i, j, "synonym") for i, j in syn_pairs]
    return sorted(out)


def _porter_default():
    try:
        from nltk.stem.porter import PorterStemmer
    except ImportError as e:  # pragma: no cover
        raise ImportError("meteor needs nltk for its Porter stemmer (pip install nltk)") from e
    return PorterStemmer()


def _resolve_wordnet(use_synonyms):
    if use_synonyms not in (None, True, False):
        raise TypeError(f"use_synonyms must be None (use WordNet if available), True or False, got {use_synonyms!r}")
    if use_synonyms is False:
        return None
    wn = load_wordnet()
    if wn is None and use_synonyms:
        raise LookupError("use_synonyms=True but WordNet cannot be loaded: " + wordnet_status())
    return wn


def _chunks(pairs: Sequence[tuple[int, int]]) -> int:
    """Fewest runs of matches that are adjacent in both texts (pairs sorted by hypothesis position)."""
    if not pairs:
        return 0
    return 1 + sum(1 for a, b in zip(pairs, pairs[1:]) if not (b[0] == a[0] + 1 and b[1] == a[1] + 1))


def meteor(hypothesis, references, *, alpha: float = 0.9, beta: float = 3.0, gamma: float = 0.5,
           use_synonyms: bool | None = None) -> float:
    """Sentence METEOR of ``hypothesis`` against one or several ``references``, in ``[0, 1]``.

    ``references`` is one string or a list of references; text is lower-cased and split on
    whitespace (or pass token lists: a hypothesis token list and a list of reference token lists). With ``m`` matched words,
    ``P = m / len(hyp)``, ``R = m / len(ref)``, ``F = P R / (alpha P + (1 - alpha) R)`` (``alpha=0.9``
    weights recall nine times more), the penalty is ``gamma * (chunks / m) ** beta`` and the score
    ``F * (1 - penalty)``. With several references the best score counts. As in NLTK, the synonym
    pass looks up the Porter *stems* left unmatched, so a word whose stem is not a WordNet lemma
    (``large`` -> ``larg``) finds no synonyms. ``use_synonyms``: None
    uses WordNet when :func:`load_wordnet` finds it, True requires it, False never uses it.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if isinstance(references, str):
        refs = [references]
    elif isinstance(references, (list, tuple)):
        refs = list(references)                    # several references: strings or token lists
    else:
        raise TypeError(f"references must be a str or a list of references, got {type(references).__name__}")
    if not refs:
        raise ValueError("references must hold at least one reference")
    use = _resolve_wordnet(use_synonyms) is not None
    hyp_len = len(_tokens(hypothesis))
    best = 0.0
    for ref in refs:
        ref_len = len(_tokens(ref))
        pairs = [(i, j) for i, j, _ in meteor_alignment(hypothesis, ref, use_synonyms=use)]
        m = len(pairs)
        if m == 0 or hyp_len == 0 or ref_len == 0:
            continue
        p, r = m / hyp_len, m / ref_len
        f_mean = p * r / (alpha * p + (1 - alpha) * r)
        penalty = gamma * (_chunks(pairs) / m) ** beta
        best = max(best, f_mean * (1 - penalty))
    return best


__all__ = ["meteor", "meteor_alignment", "setup_wordnet", "load_wordnet", "wordnet_status", "default_nltk_data_dir"]
