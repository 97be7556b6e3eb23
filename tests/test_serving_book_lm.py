"""Chapter 09 on the book LM: the serving levers the chapter measures keep the book LM's answers,
its KV-memory formula covers grouped-query and multi-query attention, speculative decoding works
with a rotary target and draft, and the chapter's cost stream asks each one-off question once."""
import pytest
import torch

from genai_helpers.agents.cache import make_query_stream
from genai_helpers.estimates import kv_cache_bytes
from genai_helpers.models.book_lm import bits_per_byte, load_book_lm, narrative_text
from genai_helpers.models.gpt import GPT, GPTConfig, mha_to_gqa
from genai_helpers.serving import batching, quantization, speculative, workload
from genai_helpers.serving.prefix_cache import PrefixKVCache


@pytest.fixture(scope="module")
def book_lm():
    model, tok = load_book_lm()
    return model, tok


def _greedy(model, r):
    return model.generate(r.prompt[None], r.max_new_tokens, temperature=0)[0, r.prompt_len:].tolist()


def test_book_lm_served_with_shared_system_prompts_and_chunks_gives_its_own_greedy_answers(book_lm):
    model, tok = book_lm
    stream = torch.tensor(tok.encode(narrative_text()[:3000]))
    systems = [stream[0:32], stream[100:132]]
    reqs = [workload.Request(k, 0.001 * k, torch.cat([systems[k % 2], stream[300 + 7 * k:305 + 7 * k]]), 6)
            for k in range(6)]
    refs = [_greedy(model, r) for r in reqs]
    for policy, kw in (("static", {}), ("continuous", {}), ("continuous", {"prefill_chunk": 8}),
                       ("continuous", {"prefix_cache": PrefixKVCache(block_size=16, max_blocks=16)})):
        rep = batching.serve(model, reqs, policy=policy, max_batch=3, **kw)
        assert rep.outputs == refs, (policy, kw)
    assert kw["prefix_cache"].hit_rate > 0.5            # 32 of 37 prompt tokens shared after the first two


@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_kv_cache_bytes_formula_matches_the_cache_tensors_of_gqa_and_mqa(n_kv):
    torch.manual_seed(0)
    mha = GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=32, pos_encoding="rope")).eval()
    model = mha if n_kv == 4 else mha_to_gqa(mha, n_kv)
    cache = model.new_cache(3, max_len=32)
    assert cache.nbytes() == kv_cache_bytes(3, 32, 2, 32, n_kv_heads=n_kv, n_heads=4, bytes_per_value=4)


def test_greedy_speculative_decoding_with_the_book_lm_and_a_small_rotary_draft(book_lm):
    model, tok = book_lm
    torch.manual_seed(1)
    c = model.config
    draft = GPT(GPTConfig(vocab_size=c.vocab_size, block_size=c.block_size, n_layer=1, n_head=2, n_embd=32,
                          pos_encoding="rope", tie_weights=True)).eval()
    prompt = torch.tensor([tok.eot_id] + tok.encode("The river"))
    ref = model.generate(prompt[None], 20, temperature=0)[0, len(prompt):].tolist()
    for k in (1, 4):
        out, st = speculative.speculative_generate(model, draft, prompt, 20, k=k, temperature=0)
        assert out == ref and st.checked >= st.accepted


def test_int8_dynamic_book_lm_keeps_bits_per_byte_within_a_hundredth(book_lm):
    model, tok = book_lm
    text = narrative_text()[:2000]
    q = quantization.quantize_int8_dynamic(model)
    assert abs(bits_per_byte(q, tok, text) - bits_per_byte(model, tok, text)) < 0.01
    assert quantization.state_bytes(q) < quantization.state_bytes(model)


def test_query_stream_with_enough_one_offs_asks_each_once():
    intents = {"a": ["what is a", "define a"], "b": ["what is b"]}
    one_offs = [f"unique question {i}" for i in range(100)]
    queries, labels = make_query_stream(intents, one_offs, 200, new_fraction=0.3, seed=0)
    new = [q for q, lab in zip(queries, labels) if lab.startswith("new:")]
    assert 30 < len(new) <= 100 and len(set(new)) == len(new)
