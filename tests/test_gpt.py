"""GPT (chapter 04): the KV cache changes nothing but speed, RoPE scores depend only on the
offset, weights convert to and from transformers' GPT2LMHeadModel, bad arguments are refused."""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from genai_helpers.models.gpt import GPT, GPTConfig, KVCache, apply_rope, rope_cos_sin
from genai_helpers.positional import sinusoidal_positions

POS = ["learned", "sinusoidal", "rope"]


def tiny(pos="learned", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=61, block_size=24, n_layer=2, n_head=2, n_embd=32, pos_encoding=pos)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def ids(b=2, t=6, v=61, seed=1):
    return torch.randint(0, v, (b, t), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------- KV cache

@pytest.mark.parametrize("pos", POS)
@pytest.mark.parametrize("max_len", [None, 24])
def test_cached_logits_equal_full_forward(pos, max_len):
    model, x = tiny(pos), ids(t=20)
    with torch.no_grad():
        full = model(x)[0]
        cache = model.new_cache(2, max_len=max_len)
        pieces = [model.forward_cached(x[:, a:b], cache) for a, b in [(0, 7), (7, 8), (8, 11), (11, 20)]]
    assert cache.length == 20
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pos", POS)
def test_generate_same_tokens_with_and_without_cache(pos):
    model, x = tiny(pos), ids(t=5)
    # 30 new tokens on top of 5 run past block_size=24, so the sliding window is exercised too.
    a = model.generate(x, 30, temperature=0, use_cache=True)
    b = model.generate(x, 30, temperature=0, use_cache=False)
    assert a.shape == (2, 35)
    assert torch.equal(a, b)
    assert torch.equal(a[:, :5], x)


@pytest.mark.parametrize("pos", POS)
def test_greedy_generate_picks_argmax_of_full_forward(pos):
    model, x = tiny(pos), ids(t=4)
    out = model.generate(x, 6, temperature=0)
    with torch.no_grad():
        for i in range(4, 10):
            assert torch.equal(model(out[:, :i])[0][:, -1].argmax(-1), out[:, i])


def test_sampling_reproducible_with_generator_and_cache_does_not_change_draws():
    model, x = tiny("rope"), ids(t=3)
    kw = dict(temperature=0.9, top_k=20, top_p=0.9, repetition_penalty=1.2)
    a = model.generate(x, 12, generator=torch.Generator().manual_seed(5), use_cache=True, **kw)
    b = model.generate(x, 12, generator=torch.Generator().manual_seed(5), use_cache=False, **kw)
    assert torch.equal(a, b)


def test_eos_stops_generation_and_pads_finished_rows():
    model, x = tiny(), ids(t=3)
    first = model.generate(x, 1, temperature=0)[:, -1]
    eos = int(first[0])
    out = model.generate(x, 10, temperature=0, eos_token_id=eos)
    assert out[0, 3] == eos and (out[0, 3:] == eos).all()


def test_kv_cache_bookkeeping():
    model = tiny()
    cache = model.new_cache(3, max_len=10)
    assert isinstance(cache, KVCache) and len(cache.k) == len(cache.v) == 2
    assert cache.k[0].shape == (3, 2, 10, 16)
    assert cache.nbytes() == 2 * 2 * 3 * 2 * 10 * 16 * 4          # layers * (k, v) * B * H * L * hd * fp32
    with torch.no_grad():
        model.forward_cached(ids(b=3, t=4), cache)
    assert cache.length == 4
    cache.reset()
    assert cache.length == 0
    with pytest.raises(ValueError, match="full"), torch.no_grad():
        model.forward_cached(ids(b=3, t=11), cache)


def test_cache_reorder_keeps_selected_rows():
    model, x = tiny("rope"), ids(b=3, t=6)
    with torch.no_grad():
        cache = model.new_cache(3)
        model.forward_cached(x[:, :5], cache)
        cache.reorder(torch.tensor([2, 2, 0]))
        step = model.forward_cached(x[[2, 2, 0], 5:6], cache)
        full = model(x[[2, 2, 0]])[0][:, -1:]
    torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("max_len", [None, 24])
def test_cache_crop_and_copy_give_the_cache_of_a_prefix(max_len):
    """crop(n) leaves the cache of the first n tokens; a copy is independent of the original."""
    model, x = tiny("rope"), ids(b=1, t=10)
    with torch.no_grad():
        cache = model.new_cache(1, max_len=max_len)
        model.forward_cached(x[:, :8], cache)
        cache.crop(5)
        twin = cache.copy()
        step = model.forward_cached(x[:, 5:10], cache)                  # writes into cache only
        torch.testing.assert_close(step, model(x)[0][:, 5:10], atol=1e-5, rtol=1e-5)
        assert twin.length == 5
        again = model.forward_cached(x[:, 5:7], twin)
        torch.testing.assert_close(again, step[:, :2], atol=1e-5, rtol=1e-5)
        small = twin.copy(max_len=9)                                      # capacity 9, holds 7 tokens
        assert small.max_len == 9 and small.k[0].shape[2] == 9 and small.length == 7
        torch.testing.assert_close(model.forward_cached(x[:, 7:9], small), step[:, 2:4], atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="full"):
            model.forward_cached(x[:, 9:10], small)
    with pytest.raises(ValueError, match="max_len"):
        cache.copy(max_len=2)
    with pytest.raises(ValueError, match="length"):
        cache.crop(11)
    with pytest.raises(TypeError, match="length"):
        cache.crop(2.0)


# --------------------------------------------------------------------------------------- positions

def test_rope_scores_depend_only_on_relative_offset():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 64, generator=g), torch.randn(1, 64, generator=g)

    def score(m, n):
        cm, sm = rope_cos_sin(torch.tensor([m]), 64)
        cn, sn = rope_cos_sin(torch.tensor([n]), 64)
        return float(apply_rope(q, cm, sm) @ apply_rope(k, cn, sn).T)

    for offset in (0, 1, 5, 37):
        ref = score(offset, 0)
        for start in (3, 100, 1000):
            assert score(start + offset, start) == pytest.approx(ref, abs=1e-4)
    assert score(5, 0) != pytest.approx(score(9, 0), abs=1e-3)        # ...but it does depend on the offset


def test_rope_is_a_rotation_of_each_pair():
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]])                           # pairs (0, 2) and (1, 3)
    cos, sin = rope_cos_sin(torch.tensor([1]), 4, base=100.0)
    # pair 0 turns by 1 rad, pair 1 by 1/sqrt(100)=0.1 rad (frequency base**(-2i/d))
    torch.testing.assert_close(cos[0], torch.cos(torch.tensor([1.0, 0.1, 1.0, 0.1])))
    out = apply_rope(x, cos, sin)
    torch.testing.assert_close(out, torch.tensor([[torch.cos(torch.tensor(1.0)), 0.0, torch.sin(torch.tensor(1.0)), 0.0]]))
    assert out.norm() == pytest.approx(1.0)


def test_sinusoidal_and_rope_extrapolate_learned_refuses():
    for pos in ("sinusoidal", "rope"):
        logits, _ = tiny(pos)(ids(t=60))
        assert logits.shape == (2, 60, 61) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="block_size"):
        tiny("learned")(ids(t=25))


def test_sinusoidal_input_is_scaled_tokens_plus_table():
    """The first block sees wte(idx) * sqrt(n_embd) + table[pos] (Vaswani et al.): unscaled, the
    [-1, 1] table would drown token vectors of std 0.02."""
    model, x = tiny("sinusoidal"), ids(t=7)
    seen = []
    model.transformer.h[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    with torch.no_grad():
        model(x)
    table = sinusoidal_positions(7, 32)
    expected = model.transformer.wte(x) * 32 ** 0.5 + table
    torch.testing.assert_close(seen[0], expected)


@pytest.mark.parametrize("pos", POS)
def test_embed_scale_multiplies_the_token_vectors_for_every_encoding(pos):
    """embed_scale=None keeps the defaults (sqrt(d) for sinusoidal, 1 otherwise); a number sets the
    factor for any encoding, so chapter 04 can give all three the same token scale."""
    default = tiny(pos)
    assert default.config.token_scale == (32 ** 0.5 if pos == "sinusoidal" else 1.0)
    scaled = tiny(pos, embed_scale=3.0)
    assert scaled.config.token_scale == 3.0
    seen = []
    scaled.transformer.h[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    x = ids(t=7)
    with torch.no_grad():
        scaled(x)
    expected = scaled.transformer.wte(x) * 3.0
    if pos == "learned":
        expected = expected + scaled.transformer.wpe(torch.arange(7))
    elif pos == "sinusoidal":
        expected = expected + sinusoidal_positions(7, 32)
    torch.testing.assert_close(seen[0], expected)
    same = tiny(pos, embed_scale=32 ** 0.5 if pos == "sinusoidal" else 1.0)
    with torch.no_grad():
        torch.testing.assert_close(same(x)[0], default(x)[0])
    with pytest.raises(ValueError, match="embed_scale"):
        GPTConfig(vocab_size=8, embed_scale=0.0)


# --------------------------------------------------------------------------------------- loss, tying

def test_loss_is_cross_entropy_with_ignore_index():
    model, x = tiny(), ids(t=8)
    targets = ids(t=8, seed=3)
    targets[:, :3] = -100
    logits, loss = model(x, targets)
    ref = torch.nn.functional.cross_entropy(logits[:, 3:].reshape(-1, 61), targets[:, 3:].reshape(-1))
    torch.testing.assert_close(loss, ref)
    assert model(x)[1] is None


def test_weight_tying_and_parameter_count():
    tied, untied = tiny(), tiny(tie_weights=False)
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert untied.num_parameters() - tied.num_parameters() == 61 * 32
    assert tied.num_parameters(exclude_embeddings=True) == tied.num_parameters() - 61 * 32 - 24 * 32
    assert tiny("rope").num_parameters() == tied.num_parameters() - 24 * 32   # no position table


# --------------------------------------------------------------------------------------- Hugging Face

def test_from_hf_gpt2_matches_transformers():
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=61, n_positions=24, n_embd=32, n_layer=2, n_head=2,
                                    bos_token_id=None, eos_token_id=None)).eval()
    model = GPT.from_hf_gpt2(hf)
    x = ids(t=24)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], hf(x).logits, atol=1e-5, rtol=1e-5)
        hf_greedy = hf.generate(x[:, :5], max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(model.generate(x[:, :5], 8, temperature=0), hf_greedy)


def test_to_hf_gpt2_round_trip():
    model, x = tiny(seed=3), ids(t=24)
    hf = model.to_hf_gpt2()
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, model(x)[0], atol=1e-5, rtol=1e-5)
    back = GPT.from_hf_gpt2(hf)
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), back.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    with pytest.raises(ValueError, match="learned"):
        tiny("rope").to_hf_gpt2()



@pytest.mark.parametrize("kw", [dict(bias=False, activation="gelu"), dict(bias=True), dict(tie_weights=False)])
def test_to_hf_neox_same_logits_and_greedy_tokens(kw):
    """A RoPE GPT as transformers' GPTNeoXForCausalLM: same function, same greedy tokens with HF's cache."""
    model, x = tiny("rope", seed=4, **kw), ids(t=24)
    with torch.no_grad():
        for p in model.parameters():              # non-zero biases and LayerNorm gains, so every copy is tested
            p.add_(0.05 * torch.randn_like(p))
    hf = model.to_hf_neox()
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, model(x)[0], atol=1e-5, rtol=1e-5)
        hf_greedy = hf.generate(x[:, :5], attention_mask=torch.ones_like(x[:, :5]), max_new_tokens=12,
                                min_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(model.generate(x[:, :5], 12, temperature=0), hf_greedy)


@pytest.mark.parametrize("kw", [dict(pos="learned"), dict(pos="rope", n_kv_head=1), dict(pos="rope", embed_scale=2.0)])
def test_to_hf_neox_rejects_other_layouts(kw):
    with pytest.raises(ValueError, match="to_hf_neox needs"):
        tiny(**kw).to_hf_neox()


# --------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("kw, err, match", [
    (dict(pos_encoding="alibi"), ValueError, "pos_encoding"),
    (dict(n_head=3), ValueError, "n_head"),
    (dict(n_layer=0), ValueError, "n_layer"),
    (dict(dropout=1.5), ValueError, "dropout"),
    (dict(block_size=2.5), TypeError, "block_size"),
    (dict(rope_base=1.0), ValueError, "rope_base"),
    (dict(pos_encoding="rope", n_embd=30, n_head=2), ValueError, "even head size"),
])
def test_config_validation(kw, err, match):
    cfg = dict(vocab_size=10, n_embd=32, n_head=2)
    cfg.update(kw)
    with pytest.raises(err, match=match):
        GPTConfig(**cfg)


def test_call_validation():
    model = tiny()
    with pytest.raises(TypeError, match="config"):
        GPT(dict(vocab_size=10))
    with pytest.raises(ValueError, match="idx"):
        model(torch.tensor([[0, 61]]))
    with pytest.raises(TypeError, match="idx"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="idx"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        model(ids(t=4), ids(t=5))
    with pytest.raises(TypeError, match="cache"):
        model.forward_cached(ids(), cache=None)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(ids(), -1)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(ids(), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(ids(), 2, top_p=1.5)
    with pytest.raises(ValueError, match="different model"):
        model.forward_cached(ids(), tiny(n_layer=3).new_cache(2))


def test_exact_gelu_option_matches_transformers_gelu_and_differs_from_gpt2s_tanh():
    from genai_helpers.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    exact = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32, activation="gelu")).eval()
    tanh = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    tanh.load_state_dict(exact.state_dict())
    x = torch.randint(0, 50, (2, 16))
    hf = exact.to_hf_gpt2().eval()
    assert hf.config.activation_function == "gelu"
    with torch.no_grad():
        assert torch.allclose(exact(x)[0], hf(input_ids=x).logits, atol=1e-5)
        assert not torch.allclose(exact(x)[0], tanh(x)[0], atol=1e-6)
        back = GPT.from_hf_gpt2(hf).eval()
        assert back.config.activation == "gelu" and torch.allclose(back(x)[0], exact(x)[0], atol=1e-6)
    with pytest.raises(ValueError, match="activation"):
        GPTConfig(vocab_size=50, activation="relu")
