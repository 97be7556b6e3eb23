"""Smart Compose (chapter 04): triggering rules, cached beam search equals the package's
recompute-everything beam search, post-processing filters, the n-gram baseline's arithmetic."""
import math

import pytest
import torch

from genai_helpers.systems.smart_compose import (Candidate, SmartCompose, TriggeringService, beam_search_cached,
                                                 percentile, postprocess, tidy, trim_to_word_boundary, typing_session)
from genai_helpers.data.bpe import BPETokenizer
from genai_helpers.models.gpt import GPT, GPTConfig
from genai_helpers.models.ngram_lm import NGramLM
from genai_helpers.sampling import beam_search, lm_step_fn


def tiny_gpt(pos="rope", vocab=40, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=32, n_layer=2, n_head=2, n_embd=32, pos_encoding=pos)).eval()


class _Wrap(torch.nn.Module):                  # the package's step function expects model(ids) -> logits
    def __init__(self, m):
        super().__init__()
        self.m, self.config = m, m.config

    def forward(self, ids):
        return self.m(ids)[0]


# ------------------------------------------------------------------------------------- triggering

def test_trigger_rules():
    t = TriggeringService(min_words=3, debounce_ms=100)
    assert t.decide("Hi Anna, could you ", 250) == (True, "trigger")
    assert t.decide("Hi Anna, could yo", 250) == (False, "mid-word")
    assert t.decide("Hi Anna, ", 250) == (False, "too short")
    assert t.decide("Hi Anna, could you ", 40) == (False, "typing fast")
    assert t.decide("   ", 250) == (False, "empty")
    assert TriggeringService(word_boundary=False).decide("one two thr", 500)[0]
    with pytest.raises(ValueError, match="debounce_ms"):
        TriggeringService(debounce_ms=-1)


# ------------------------------------------------------------------------------------- beam search

@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope"])
@pytest.mark.parametrize("beam_width", [1, 3])
def test_cached_beam_search_equals_package_beam_search(pos, beam_width):
    model = tiny_gpt(pos)
    prompt = [3, 7, 1, 9]
    ref = beam_search(lm_step_fn(_Wrap(model)), prompt, beam_width, 6, eos_id=5)
    ours = beam_search_cached(model, prompt, beam_width, 6, eos_id=5)
    assert [c.tokens for c in ours] == [b.tokens for b in ref]
    for c, b in zip(ours, ref):
        assert c.log_prob == pytest.approx(b.log_prob, abs=1e-5)


def test_greedy_beam_equals_greedy_generate_and_logprobs_are_exact():
    model = tiny_gpt()
    prompt = torch.tensor([[2, 4, 6]])
    (best,) = beam_search_cached(model, prompt, 1, 5)
    assert best.tokens == model.generate(prompt, 5, temperature=0)[0, 3:].tolist()
    with torch.no_grad():
        full = torch.log_softmax(model(torch.tensor([[2, 4, 6] + best.tokens]))[0][0].double(), -1)
    expected = [float(full[2 + i, t]) for i, t in enumerate(best.tokens)]
    assert best.token_logprobs == pytest.approx(expected, abs=1e-5)


def test_stop_ids_finish_beams_and_first_token_mask_is_respected():
    model = tiny_gpt()
    mask = torch.zeros(40, dtype=torch.bool)
    mask[[10, 11]] = True
    out = beam_search_cached(model, [1, 2], 3, 4, first_token_mask=mask, stop_ids=range(20, 40))
    assert all(c.tokens[0] in (10, 11) for c in out)
    for c in out:
        assert c.finished == (c.tokens[-1] >= 20)
        assert all(t < 20 for t in c.tokens[:-1])
    with pytest.raises(ValueError, match="first_token_mask"):
        beam_search_cached(model, [1], 2, 3, first_token_mask=torch.ones(39, dtype=torch.bool))
    with pytest.raises(ValueError, match="max_new_tokens"):
        beam_search_cached(model, [1], 2, 32)


# ------------------------------------------------------------------------------------- post-processing

def test_trim_and_tidy():
    assert trim_to_word_boundary(" the slides by Friday? Thanks", True) == " the slides by Friday?"
    assert trim_to_word_boundary(" the slides by Fri", False) == " the slides by"
    assert trim_to_word_boundary(" the slides\nBest", False) == " the slides"
    assert trim_to_word_boundary(" 9:30 am works", True) == " 9:30 am works"       # a colon inside a time is not an end
    assert tidy("  see  you , then", "Thanks. ") == "See you, then"
    assert tidy("see you", "Thanks, ") == "see you"


def _cand(texts, lps, finished=True):
    return Candidate(list(range(len(texts))), lps, finished), list(texts)


def test_postprocess_filters_with_reasons():
    texts = [" see", " you", " on", " Friday", "."]
    good = Candidate([0, 1, 2, 3, 4], [math.log(0.9)] * 5, True)
    dup = Candidate([0, 1, 2, 3, 4], [math.log(0.8)] * 5, True)
    unsure = Candidate([0, 1], [math.log(0.3), math.log(0.3)], False)
    out = postprocess([good, dup, unsure], texts, "Thanks! ", min_confidence=0.5)
    assert [s.reason for s in out] == ["ok", "duplicate", "low confidence"]
    assert out[0].text == "See you on Friday." and out[0].confidence == pytest.approx(0.9 ** 5)
    assert out[2].text == "See" and out[2].confidence == pytest.approx(0.3)    # unfinished: last word dropped
    # long filter: cut to max_words, confidence of the kept tokens only
    cut = postprocess([good], texts, "x ", max_words=2, min_confidence=0.0)[0]
    assert cut.text == "see you" and cut.confidence == pytest.approx(0.81) and cut.n_tokens == 2
    blocked = postprocess([Candidate([0, 1], [0.0, 0.0], True)], [" ask", " her"], "x ")[0]
    assert blocked.reason == "blocklisted"


def test_postprocess_removes_duplicates_among_all_candidates():
    """Beams that differ only in what trimming cut off give the same text; only the most confident
    copy survives, whatever the other filters then decide (low-confidence copies included)."""
    texts = [" to", " meet", " Mei", " Lin", " Kim", " Ray"]
    a = Candidate([0, 1, 2, 3], [math.log(0.5)] * 4, False)         # -> "to meet Mei" p=0.125
    b = Candidate([0, 1, 2, 4], [math.log(0.5)] * 4, False)         # same text after trimming
    c = Candidate([0, 1, 2, 5], [math.log(0.6)] + [math.log(0.5)] * 3, False)   # same text, more confident
    out = postprocess([a, b, c], texts, "x ", min_confidence=0.5)
    assert [s.reason for s in out] == ["duplicate", "duplicate", "low confidence"]
    assert out[2].text == "to meet Mei" and out[2].confidence == pytest.approx(0.6 * 0.25)
    kept = postprocess([a, b, c], texts, "x ", min_confidence=0.0)
    assert [s.reason for s in kept] == ["ok", "duplicate", "duplicate"]
    assert len({s.text for s in kept if s.reason != "duplicate"}) == 1
    spaced = postprocess([Candidate([0], [0.0], True), Candidate([1], [0.0], True)], [" See you", " see  you"], "x ")
    assert [s.reason for s in spaced] == ["ok", "duplicate"]


# ------------------------------------------------------------------------------------- service

@pytest.fixture(scope="module")
def service():
    docs = ["could you send me the slides by friday.", "could you send me the notes by monday."] * 30
    tok = BPETokenizer.train(docs, vocab_size=280)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(tok), block_size=32, n_layer=1, n_head=2, n_embd=32))
    ids = tok.encode_corpus(docs)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for i in range(120):
        s = (i * 7) % (ids.numel() - 33)
        x, y = ids[s:s + 32][None], ids[s + 1:s + 33][None]
        loss = model(x, y)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return SmartCompose(model.eval(), tok, TriggeringService(min_words=2, debounce_ms=50), min_confidence=0.1)


def test_service_suggests_the_learned_phrase_and_reuses_it(service):
    s = service.suggest("could you send ")
    assert s is not None and s.text.startswith("me the")
    service.reset()
    first = service.on_keystroke("could you send ", idle_ms=300)
    assert first.action == "model" and first.suggestion.text == s.text
    nxt = service.on_keystroke("could you send m", idle_ms=10)               # typed what was shown
    assert nxt.action == "reuse" and nxt.suggestion.text == s.text[1:]
    assert service.on_keystroke("could you send x", idle_ms=10).action == "mid-word"
    assert service.on_keystroke("could ", idle_ms=300).action == "too short"


def test_typing_session_and_percentile():
    steps = typing_session("Hi Anna, see you", start=3, seed=1)
    assert [t for t, _ in steps][0] == "Hi A" and steps[-1] == ("Hi Anna, see you", math.inf)
    assert all(g > 0 for _, g in steps)
    assert typing_session("Hi Anna, see you", start=3, seed=1) == steps
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 95) == 5
    with pytest.raises(ValueError, match="start"):
        typing_session("abc", start=3)


# ------------------------------------------------------------------------------------- n-gram baseline

def test_ngram_probabilities_by_hand():
    ids = [0, 1, 0, 2, 0, 1]                           # V = 3
    lm = NGramLM(order=2, discount=0.5, vocab_size=3).fit(ids)
    uni = [(3 + 1) / 9, (2 + 1) / 9, (1 + 1) / 9]       # add-one unigram
    # after token 0: followers {1: 2, 2: 1}, total 3, 2 distinct
    expected = [(0 + 0.5 * 2 * uni[0]) / 3, (2 - 0.5 + 0.5 * 2 * uni[1]) / 3, (1 - 0.5 + 0.5 * 2 * uni[2]) / 3]
    assert lm.distribution([0]).tolist() == pytest.approx(expected)
    assert sum(expected) == pytest.approx(1.0)
    assert lm.prob([2], 0) == pytest.approx((1 - 0.5 + 0.5 * 1 * uni[0]) / 1)
    assert lm.prob([], 2) == pytest.approx(uni[2])
    ppl = lm.perplexity([0, 1, 0])
    assert ppl == pytest.approx(math.exp(-(math.log(expected[1]) + math.log(lm.prob([1], 0))) / 2))
    assert lm.greedy([0], 2) == [1, 0]


def test_ngram_validation():
    with pytest.raises(ValueError, match="order"):
        NGramLM(order=0)
    with pytest.raises(ValueError, match="discount"):
        NGramLM(discount=1.0)
    with pytest.raises(RuntimeError, match="fit"):
        NGramLM().prob([0], 1)


def test_prefix_cache_between_keystrokes_gives_the_same_suggestions(service):
    """keep_prefix_cache=True feeds only the tokens the kept cache has not seen, and every
    suggestion (text and confidence) is the one of the service without it: while typing, after an
    edit earlier in the text, and past the model's context (the window slides)."""
    plain = service
    kept = SmartCompose(plain.model, plain.tokenizer, plain.trigger, min_confidence=0.1, keep_prefix_cache=True)
    texts = [t for t, _ in typing_session("could you send me the slides by friday. could you send me the notes ",
                                          start=5, seed=0) if t.endswith(" ")]
    texts += ["could you mail me the ", "could you mail me the notes by ",          # an edit: the cache is cropped
              "could you send me the slides by friday. " * 4 + "could you send "]  # longer than block_size
    fed_plain, fed_kept = [], []
    for t in texts:
        a = plain.suggestions(t, min_confidence=0.0)
        fed_plain.append(plain.last_prompt_tokens_fed)
        b = kept.suggestions(t, min_confidence=0.0)
        fed_kept.append(kept.last_prompt_tokens_fed)
        assert [s.text for s in a] == [s.text for s in b]
        assert [s.confidence for s in a] == pytest.approx([s.confidence for s in b], abs=1e-5)
    assert sum(fed_kept) < sum(fed_plain) / 2
    assert all(k <= p for k, p in zip(fed_kept, fed_plain)) and fed_kept[-2] < fed_plain[-2]   # extends the edit
    kept.reset()
    assert kept.suggestions(texts[2])[0].text == plain.suggestions(texts[2])[0].text
    with pytest.raises(TypeError, match="keep_prefix_cache"):
        SmartCompose(plain.model, plain.tokenizer, keep_prefix_cache=1)
