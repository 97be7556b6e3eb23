"""Parallel text for chapter 05 (translation): a synthetic language pair and real Bibles.

1. :func:`synthetic_splits` — English sentences and their translation into **Veltan**, a small
   made-up language whose grammar differs from English in the ways real languages do:

   ===================  ==========================  ======================================
   feature              English                     Veltan
   ===================  ==========================  ======================================
   word order           subject-verb-object (SVO)   subject-object-verb (SOV)
   adjectives           before the noun             after the noun, in mirror order
   case                 word order only             suffix: ``-ko`` subject, ``-ta`` object
   plural               ``-s``                      ``-en`` before the case suffix
   tense, negation      ``saw``, ``does not see``   verb suffixes ``-mi`` (past), ``-ne`` (not)
   place phrase         "in the park", at the end   ``parkde`` (postposition), first
   articles             the / a                     none
   ===================  ==========================  ======================================

   "the big dog chased a small cat in the park ." -> "sadrode wuroko gor misata lin kurmi ."

   Splits are fixed: the test sentences depend only on ``seed`` and ``n_test``, and no test
   sentence occurs in the training, validation or monolingual sets.

2. :func:`load_bible_pairs` — English-Spanish verse pairs (about 31,000) from two public-domain
   Bibles packaged by Debian as SWORD modules: the World English Bible (``sword-text-web``) and
   the Reina-Valera 1909 (``sword-text-sparv``). ``mod2imp`` (``libsword-utils``) exports them;
   verses are aligned by reference and the export is cached.

3. Vocabularies with the same special tokens at the same ids (``<pad> <bos> <eos> <unk> <mask>``
   = 0..4): :class:`WordVocab` (whole words, readable attention maps) and :class:`SubwordVocab`
   (a BPE trained locally with Hugging Face ``tokenizers``; no unknown words in practice).
"""
from __future__ import annotations

import html
import json
import os
import random
import re
import shutil
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from .._checks import check_positive_int, check_probability
from .batching import pad_batch  # noqa: F401  (the package's one pad_batch; pads with PAD = 0 by default)

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>", "<mask>")
PAD, BOS, EOS, UNK, MASK = range(5)

# ============================================================================ synthetic pair

# English noun -> Veltan stem.  Verbs: English (base, 3rd person singular, past) -> Veltan stem.
NOUNS = {"dog": "wuro", "cat": "misa", "bird": "tiki", "farmer": "bolan", "child": "nemi", "teacher": "sorat",
         "fish": "palu", "horse": "kadu", "king": "raval", "queen": "ravana", "doctor": "medo", "baker": "panor",
         "friend": "amik", "soldier": "gerro", "woman": "fema", "man": "andro", "student": "lerno", "fox": "vulpa",
         "mouse": "muso", "cook": "kokin"}
PLURAL_EN = {"child": "children", "fish": "fish", "woman": "women", "man": "men", "mouse": "mice", "fox": "foxes"}
ADJECTIVES = {"big": "gor", "small": "lin", "red": "ruva", "old": "tesh", "young": "jun", "happy": "joli",
              "angry": "ira", "tired": "fesa", "clever": "sapi", "brave": "kura", "quiet": "sil", "hungry": "fami"}
VERBS = {("see", "sees", "saw"): "vid", ("chase", "chases", "chased"): "kur", ("help", "helps", "helped"): "sep",
         ("like", "likes", "liked"): "amo", ("call", "calls", "called"): "vok", ("find", "finds", "found"): "trov",
         ("follow", "follows", "followed"): "seg", ("feed", "feeds", "fed"): "nutr", ("hear", "hears", "heard"): "aud",
         ("teach", "teaches", "taught"): "doc", ("visit", "visits", "visited"): "vizit", ("watch", "watches", "watched"): "gard"}
PLACES = {"park": "sadro", "garden": "hortu", "house": "domo", "river": "fluvi", "school": "skola", "market": "merka",
          "forest": "silva", "village": "vilag"}
PREPOSITIONS = {"in": "de", "near": "pa", "behind": "sul"}
SUBJECT, OBJECT, PLURAL, PRESENT, PAST, NEGATION = "ko", "ta", "en", "ra", "mi", "ne"


@dataclass(frozen=True)
class SentencePair:
    source: str      # English
    target: str      # Veltan (or Spanish for the Bible pairs)
    ref: str = ""    # where it came from (a verse reference for the Bibles)


def _noun_phrase(noun: str, adjectives: Sequence[str], plural: bool, definite: bool, case: str):
    if noun not in NOUNS or any(a not in ADJECTIVES for a in adjectives):
        raise ValueError(f"unknown noun {noun!r} or adjectives {list(adjectives)} (see NOUNS, ADJECTIVES)")
    det = "the" if plural or definite else "a"
    en = [det, *adjectives, PLURAL_EN.get(noun, noun + "s") if plural else noun]
    xx = [NOUNS[noun] + (PLURAL if plural else "") + case, *[ADJECTIVES[a] for a in reversed(adjectives)]]
    return en, xx


def compose(subject: str, verb: str, obj: str, *, subject_adjectives: Sequence[str] = (),
            object_adjectives: Sequence[str] = (), subject_plural: bool = False, object_plural: bool = False,
            subject_definite: bool = True, object_definite: bool = True, past: bool = False,
            negated: bool = False, place: str | None = None, preposition: str = "in") -> SentencePair:
    """Build one English sentence and its Veltan translation from explicit choices.

    ``verb`` is the English base form (``"chase"``); nouns, adjectives and places come from
    ``NOUNS``, ``ADJECTIVES`` and ``PLACES``. Example::

        compose("dog", "chase", "cat", subject_adjectives=["big"], object_adjectives=["small"],
                object_definite=False, past=True, place="park")
        # the big dog chased a small cat in the park .  ->  sadrode wuroko gor misata lin kurmi .
    """
    forms = next((f for f in VERBS if f[0] == verb), None)
    if forms is None:
        raise ValueError(f"verb must be one of {sorted(f[0] for f in VERBS)}, got {verb!r}")
    subj_en, subj_xx = _noun_phrase(subject, subject_adjectives, subject_plural, subject_definite, SUBJECT)
    obj_en, obj_xx = _noun_phrase(obj, object_adjectives, object_plural, object_definite, OBJECT)
    if negated:
        verb_en = ["did" if past else ("do" if subject_plural else "does"), "not", forms[0]]
    else:
        verb_en = [forms[2] if past else (forms[0] if subject_plural else forms[1])]
    verb_xx = [VERBS[forms] + (PAST if past else PRESENT) + (NEGATION if negated else "")]
    place_en, place_xx = [], []
    if place is not None:
        if place not in PLACES or preposition not in PREPOSITIONS:
            raise ValueError(f"place must be in {sorted(PLACES)} and preposition in {sorted(PREPOSITIONS)}")
        place_en, place_xx = [preposition, "the", place], [PLACES[place] + PREPOSITIONS[preposition]]
    en = [*subj_en, *verb_en, *obj_en, *place_en, "."]
    xx = [*place_xx, *subj_xx, *obj_xx, *verb_xx, "."]
    return SentencePair(" ".join(en), " ".join(xx))


def synthetic_pair(rng: random.Random) -> SentencePair:
    """One random English sentence and its Veltan translation (see the module docstring)."""
    def noun_choices():
        noun = rng.choice(sorted(NOUNS))
        plural = rng.random() < 0.35
        adjs = rng.sample(sorted(ADJECTIVES), rng.choice((0, 0, 1, 1, 2)))
        definite = rng.random() < 0.6
        return noun, adjs, plural, definite

    s_noun, s_adjs, s_plural, s_def = noun_choices()
    o_noun, o_adjs, o_plural, o_def = noun_choices()
    verb = rng.choice(sorted(VERBS))[0]
    past, negated = rng.random() < 0.5, rng.random() < 0.25
    place, prep = None, "in"
    if rng.random() < 0.4:
        prep, place = rng.choice(sorted(PREPOSITIONS)), rng.choice(sorted(PLACES))
    return compose(s_noun, verb, o_noun, subject_adjectives=s_adjs, object_adjectives=o_adjs,
                   subject_plural=s_plural, object_plural=o_plural, subject_definite=s_def,
                   object_definite=o_def, past=past, negated=negated, place=place, preposition=prep)


def synthetic_splits(n_train: int, n_valid: int = 200, n_test: int = 300, n_mono: int = 0,
                     seed: int = 0) -> dict[str, list]:
    """Fixed, disjoint splits of the English -> Veltan pair.

    Returns ``{"train", "valid", "test"}`` lists of :class:`SentencePair` and, for denoising
    pretraining, ``"mono_source"`` and ``"mono_target"``: ``n_mono`` English and ``n_mono``
    Veltan sentences taken from *different* pairs (monolingual text, not parallel). Sentences are
    distinct; the test set is drawn first, so it depends only on ``seed`` and ``n_test``.
    """
    check_positive_int("n_train", n_train)
    check_positive_int("n_valid", n_valid)
    check_positive_int("n_test", n_test)
    check_positive_int("n_mono", n_mono, minimum=0)
    rng = random.Random(seed)
    seen: set[str] = set()
    total = n_test + n_valid + n_train + 2 * n_mono
    pairs: list[SentencePair] = []
    tries = 0
    while len(pairs) < total:
        tries += 1
        if tries > 50 * total:
            raise ValueError(f"could not draw {total} distinct sentences; ask for fewer")
        p = synthetic_pair(rng)
        if p.source not in seen:
            seen.add(p.source)
            pairs.append(p)
    a = n_test
    out = {"test": pairs[:a], "valid": pairs[a:a + n_valid]}
    a += n_valid
    out["train"] = pairs[a:a + n_train]
    a += n_train
    out["mono_source"] = [p.source for p in pairs[a:a + n_mono]]
    out["mono_target"] = [p.target for p in pairs[a + n_mono:a + 2 * n_mono]]
    return out


# ============================================================================ vocabularies

class WordVocab:
    """Whole-word vocabulary: lower-cased words and punctuation marks, ids 0-4 the specials.

    ``encode`` never adds ``<bos>``/``<eos>`` (the batching code does); unknown words map to
    ``<unk>``. One vocabulary may cover two languages (a *shared* vocabulary).
    """

    PATTERN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")

    def __init__(self, itos: Sequence[str]):
        if tuple(itos[:len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"itos must start with the special tokens {SPECIALS}")
        self.itos = list(itos)
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def split(cls, text: str) -> list[str]:
        return cls.PATTERN.findall(text.lower())

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int | None = None, min_count: int = 1) -> "WordVocab":
        """The most frequent words of ``texts`` (ties alphabetical), at most ``max_size`` entries in all."""
        counts = Counter(w for t in texts for w in cls.split(t))
        words = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
        if max_size is not None:
            check_positive_int("max_size", max_size, minimum=len(SPECIALS) + 1)
            words = words[:max_size - len(SPECIALS)]
        return cls([*SPECIALS, *words])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, UNK) for w in self.split(text)]

    def tokens(self, text: str) -> list[str]:
        return [self.itos[i] for i in self.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        words = [self.itos[int(i)] for i in ids if int(i) not in (PAD, BOS, EOS)]
        return re.sub(r" ([.,;:!?)])", r"\1", " ".join(words))


class SubwordVocab:
    """A byte-pair-encoding vocabulary trained locally with Hugging Face ``tokenizers``.

    Words are split on whitespace (``▁`` marks a word start, so decoding restores the spaces)
    and into learned subword pieces; specials are ids 0-4 as in :class:`WordVocab`.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        for i, s in enumerate(SPECIALS):
            if tokenizer.token_to_id(s) != i:
                raise ValueError(f"tokenizer must map {s} to id {i}")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4000) -> "SubwordVocab":
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        check_positive_int("vocab_size", vocab_size, minimum=len(SPECIALS) + 30)
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False)
        tok.train_from_iterator(list(texts), trainer)
        return cls(tok)

    def save(self, path: str | os.PathLike) -> None:
        self.tokenizer.save(str(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SubwordVocab":
        from tokenizers import Tokenizer
        return cls(Tokenizer.from_file(str(path)))

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)


# ============================================================================ batching

def seq2seq_batch(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]):
    """``(src, tgt_in, tgt_out)`` for teacher forcing: ``tgt_in = <bos> y``, ``tgt_out = y <eos>``."""
    if len(src_ids) != len(tgt_ids):
        raise ValueError(f"src_ids and tgt_ids must have the same length, got {len(src_ids)} and {len(tgt_ids)}")
    return (pad_batch(src_ids), pad_batch([[BOS, *t] for t in tgt_ids]), pad_batch([[*t, EOS] for t in tgt_ids]))


class PairBatches:
    """Picklable ``batch_fn(i)`` of random (source, target) id pairs; a pure function of ``i``."""

    def __init__(self, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], batch_size: int,
                 seed: int = 0):
        if len(src_ids) != len(tgt_ids) or not src_ids:
            raise ValueError("src_ids and tgt_ids must be non-empty and of equal length")
        self.src, self.tgt = list(src_ids), list(tgt_ids)
        self.batch_size, self.seed = check_positive_int("batch_size", batch_size), seed

    def __call__(self, i: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        idx = torch.randint(0, len(self.src), (self.batch_size,), generator=g).tolist()
        return seq2seq_batch([self.src[j] for j in idx], [self.tgt[j] for j in idx])


def mask_spans(ids: Sequence[int], rng: random.Random, mask_ratio: float = 0.3, max_span: int = 3,
               mask_id: int = MASK) -> list[int]:
    """BART-style *text infilling*: hide about ``mask_ratio`` of the tokens in spans.

    Spans of 1..``max_span`` tokens are chosen at random until the ratio is reached; each span is
    replaced by a single ``mask_id``, so the model must also work out how many tokens are missing.
    The original ``ids`` are the reconstruction target.
    """
    check_probability("mask_ratio", mask_ratio)
    check_positive_int("max_span", max_span)
    ids = list(ids)
    n_mask = round(mask_ratio * len(ids))
    hidden = [False] * len(ids)
    tries = 0
    while sum(hidden) < n_mask and tries < 100:
        tries += 1
        span = rng.randint(1, max_span)
        start = rng.randrange(0, max(1, len(ids) - span + 1))
        for j in range(start, min(len(ids), start + span)):
            hidden[j] = True
    out: list[int] = []
    for j, t in enumerate(ids):
        if not hidden[j]:
            out.append(t)
        elif j == 0 or not hidden[j - 1]:                   # first token of a hidden span
            out.append(mask_id)
    return out


class DenoisingBatches:
    """``batch_fn(i)`` for denoising pretraining: (span-masked sentence -> the sentence itself)."""

    def __init__(self, ids: Sequence[Sequence[int]], batch_size: int, mask_ratio: float = 0.3,
                 max_span: int = 3, seed: int = 0):
        if not ids:
            raise ValueError("ids must hold at least one sentence")
        self.ids, self.mask_ratio, self.max_span, self.seed = list(ids), mask_ratio, max_span, seed
        self.batch_size = check_positive_int("batch_size", batch_size)
        check_probability("mask_ratio", mask_ratio)

    def __call__(self, i: int):
        rng = random.Random(self.seed * 1_000_003 + i)
        picked = [self.ids[rng.randrange(len(self.ids))] for _ in range(self.batch_size)]
        return seq2seq_batch([mask_spans(s, rng, self.mask_ratio, self.max_span) for s in picked], picked)


# ============================================================================ the Bibles

SWORD_MODULES_DIR = Path("/usr/share/sword/mods.d")
BIBLE_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genai_helpers" / "bibles"
ENGLISH_BIBLE, SPANISH_BIBLE = "engWEB2015eb", "spaRV1909eb"
INSTALL_HINT = ("install them with `sudo apt-get install sword-text-web sword-text-sparv libsword-utils` "
                "(Debian/Ubuntu/Colab)")


def _clean_verse(raw: str) -> str:
    text = re.sub(r"<note\b.*?</note>", " ", raw, flags=re.S)           # footnotes
    text = re.sub(r"<title\b.*?</title>", " ", text, flags=re.S)        # headings inside verses
    text = re.sub(r"<[^>]+>", "", text)                                 # every other tag, keep its text
    text = html.unescape(text)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r" ([,.;:!?])", r"\1", text)


def parse_imp(text: str) -> dict[str, str]:
    """Parse ``mod2imp`` output (``$$$Book C:V`` lines, each followed by the verse) into {ref: text}."""
    verses: dict[str, str] = {}
    ref, lines = None, []
    for line in text.split("\n") + ["$$$"]:
        if line.startswith("$$$"):
            if ref is not None and re.search(r" \d+:[1-9]\d*$", ref):     # real verses, not headings
                clean = _clean_verse(" ".join(lines))
                if clean:
                    verses[ref] = clean
            ref, lines = line[3:].strip(), []
        else:
            lines.append(line)
    return verses


def _module_installed(module: str) -> bool:
    """A SWORD module is installed when ``mods.d`` holds its ``.conf`` (file names vary in case)."""
    if not SWORD_MODULES_DIR.is_dir():
        return False
    return any(f.name.lower() == f"{module.lower()}.conf" for f in SWORD_MODULES_DIR.iterdir())


def export_bible(module: str, cache_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Verses ``{reference: text}`` of an installed SWORD module, exported once with ``mod2imp``.

    The cleaned export is cached as JSON in ``cache_dir`` (default ``~/.cache/genai_helpers/bibles``).
    Raises ``FileNotFoundError`` saying how to install the module and ``mod2imp`` when absent.
    """
    if not isinstance(module, str) or not re.fullmatch(r"[A-Za-z0-9_]+", module):
        raise ValueError(f"module must be a SWORD module name such as {ENGLISH_BIBLE!r}, got {module!r}")
    cache = Path(cache_dir) if cache_dir is not None else BIBLE_CACHE_DIR
    path = cache / f"{module}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    if not _module_installed(module):
        raise FileNotFoundError(f"SWORD module {module!r} is not installed in {SWORD_MODULES_DIR}; {INSTALL_HINT}")
    if shutil.which("mod2imp") is None:
        raise FileNotFoundError(f"the exporter mod2imp is missing; {INSTALL_HINT}")
    out = subprocess.run(["mod2imp", module], capture_output=True, check=True)
    verses = parse_imp(out.stdout.decode("utf-8", errors="replace"))
    if not verses:
        raise RuntimeError(f"mod2imp exported no verses from {module!r}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(verses, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)                                                    # atomic: no half-written cache
    return verses


def bible_available() -> bool:
    """True when both Bibles can be loaded (installed, or already in the cache)."""
    try:
        for m in (ENGLISH_BIBLE, SPANISH_BIBLE):
            if not (BIBLE_CACHE_DIR / f"{m}.json").is_file() and not (
                    _module_installed(m) and shutil.which("mod2imp")):
                return False
        return True
    except OSError:
        return False


def load_bible_pairs(source: str = ENGLISH_BIBLE, target: str = SPANISH_BIBLE, *,
                     max_words: int | None = None, cache_dir: str | os.PathLike | None = None) -> list[SentencePair]:
    """English-Spanish verse pairs aligned by reference (``"John 3:16"``), in canonical order.

    Only references present in both Bibles are kept (the WEB has the deuterocanonical books, the
    RV1909 does not). ``max_words`` drops pairs where either side has more words.
    """
    if max_words is not None:
        check_positive_int("max_words", max_words)
    src, tgt = export_bible(source, cache_dir), export_bible(target, cache_dir)
    pairs = [SentencePair(src[r], tgt[r], r) for r in src if r in tgt]
    if max_words is not None:
        pairs = [p for p in pairs if len(p.source.split()) <= max_words and len(p.target.split()) <= max_words]
    return pairs


def split_by_reference(pairs: Sequence[SentencePair], valid_percent: int = 1,
                       test_percent: int = 1) -> dict[str, list[SentencePair]]:
    """Fixed train/valid/test split by a checksum of each pair's reference (stable across runs)."""
    for name, v in (("valid_percent", valid_percent), ("test_percent", test_percent)):
        check_positive_int(name, v, minimum=0)
    if valid_percent + test_percent >= 100:
        raise ValueError("valid_percent + test_percent must be < 100")
    out = {"train": [], "valid": [], "test": []}
    for p in pairs:
        bucket = zlib.crc32(p.ref.encode()) % 100
        key = "test" if bucket < test_percent else "valid" if bucket < test_percent + valid_percent else "train"
        out[key].append(p)
    return out


__all__ = ["SPECIALS", "PAD", "BOS", "EOS", "UNK", "MASK", "SentencePair", "compose", "synthetic_pair", "synthetic_splits",
           "WordVocab", "SubwordVocab", "pad_batch", "seq2seq_batch", "PairBatches", "mask_spans",
           "DenoisingBatches", "parse_imp", "export_bible", "bible_available", "load_bible_pairs",
           "split_by_reference"]
