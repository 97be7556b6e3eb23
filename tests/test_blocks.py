"""Positional encodings, the transformer block, mixture of experts and the small LM."""
import math

import pytest
import torch

from genai_helpers.models import TransformerLM, TransformerLMConfig
from genai_helpers.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, sinusoidal_positions
from genai_helpers.transformer import FeedForward, MixtureOfExperts, TransformerBlock


def test_sinusoidal_table_matches_the_formula_and_is_bounded():
    pe = sinusoidal_positions(50, 16)
    pos, i = 7, 3
    assert math.isclose(pe[pos, 2 * i].item(), math.sin(pos / 10000 ** (2 * i / 16)), abs_tol=1e-6)
    assert math.isclose(pe[pos, 2 * i + 1].item(), math.cos(pos / 10000 ** (2 * i / 16)), abs_tol=1e-6)
    assert pe.abs().max() <= 1.0


def test_sinusoidal_positions_are_distinct():
    pe = sinusoidal_positions(512, 32)
    dists = torch.cdist(pe, pe) + torch.eye(512) * 1e9
    assert dists.min() > 1e-3


def test_sinusoidal_dot_product_depends_only_on_offset():
    pe = sinusoidal_positions(200, 64).double()
    for offset in (1, 5, 17):
        dots = (pe[:-offset] * pe[offset:]).sum(-1)
        assert torch.allclose(dots, dots[0].expand_as(dots), atol=1e-4), offset
    # and a fixed rotation maps every position to the one `offset` later
    k = 3
    rotated = pe[:-k].clone()
    for j in range(32):
        w = 1 / 10000 ** (2 * j / 64)
        c, s = math.cos(w * k), math.sin(w * k)
        sin, cos = pe[:-k, 2 * j], pe[:-k, 2 * j + 1]
        rotated[:, 2 * j], rotated[:, 2 * j + 1] = sin * c + cos * s, cos * c - sin * s
    assert torch.allclose(rotated, pe[k:], atol=1e-5)


def test_positional_modules_add_to_the_input_and_reject_too_long_inputs():
    x = torch.zeros(2, 10, 8)
    sin = SinusoidalPositionalEncoding(8, max_len=16)
    assert torch.allclose(sin(x)[0], sinusoidal_positions(10, 8))
    learned = LearnedPositionalEmbedding(8, max_len=10)
    assert torch.allclose(learned(x)[1], learned.embedding.weight)
    with pytest.raises(ValueError, match="max_len"):
        learned(torch.zeros(1, 11, 8))
    with pytest.raises(ValueError, match="d_model"):
        sinusoidal_positions(4, 7)


def test_block_is_causal_future_tokens_do_not_change_past_outputs():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4).eval()
    x = torch.randn(1, 6, 16)
    y = x.clone()
    y[:, 4:] = torch.randn(1, 2, 16)
    assert torch.allclose(block(x, is_causal=True)[:, :4], block(y, is_causal=True)[:, :4], atol=1e-6)
    assert not torch.allclose(block(x)[:, :4], block(y)[:, :4], atol=1e-4)


def test_block_parameter_count_is_close_to_12_d_squared():
    d = 256
    n = sum(p.numel() for p in TransformerBlock(d, 8).parameters())
    assert n == 12 * d * d + 13 * d        # weights 12d², biases 9d, two LayerNorms 4d


def test_cross_attention_block_requires_context():
    block = TransformerBlock(16, 2, cross_attention=True, d_context=12)
    assert block(torch.randn(2, 3, 16), torch.randn(2, 5, 12)).shape == (2, 3, 16)
    with pytest.raises(ValueError, match="context"):
        block(torch.randn(2, 3, 16))


def test_moe_equals_explicit_per_token_mixture():
    torch.manual_seed(0)
    moe = MixtureOfExperts(8, n_experts=4, top_k=2)
    x = torch.randn(3, 5, 8)
    out = moe(x)
    tokens = x.reshape(-1, 8)
    expected = []
    for t in tokens:
        logits = moe.router(t)
        val, idx = logits.topk(2)
        gate = torch.softmax(val, -1)
        expected.append(sum(g * moe.experts[int(e)](t) for g, e in zip(gate, idx)))
    assert torch.allclose(out.reshape(-1, 8), torch.stack(expected), atol=1e-6)
    counts = moe.parameter_counts()
    per_expert = sum(p.numel() for p in FeedForward(8).parameters())
    assert counts == {"total": 32 + 4 * per_expert, "active": 32 + 2 * per_expert}
    probs = torch.softmax(moe.router(tokens), -1)
    load = torch.bincount(probs.topk(2, -1).indices.reshape(-1), minlength=4).float() / (2 * len(tokens))
    assert torch.allclose(moe.aux_loss, 4 * (load * probs.mean(0)).sum(), atol=1e-6)


def test_moe_with_all_experts_and_equal_experts_equals_one_ffn():
    torch.manual_seed(0)
    moe = MixtureOfExperts(8, n_experts=3, top_k=3)
    for e in moe.experts[1:]:
        e.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(4, 8)
    assert torch.allclose(moe(x), moe.experts[0](x), atol=1e-6)


def test_moe_rejects_top_k_above_n_experts():
    with pytest.raises(ValueError, match="top_k"):
        MixtureOfExperts(8, n_experts=2, top_k=3)


def test_lm_loss_at_init_is_near_log_vocab_and_weights_are_returned():
    torch.manual_seed(0)
    cfg = TransformerLMConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = TransformerLM(cfg)
    idx = torch.randint(0, 50, (4, 16))
    targets = torch.randint(0, 50, (4, 16))
    logits, loss, maps = model(idx, targets, need_weights=True)
    assert logits.shape == (4, 16, 50)
    assert abs(loss.item() - math.log(50)) < 0.3
    assert len(maps) == 2 and maps[0].shape == (4, 2, 16, 16)
    assert torch.all(maps[0].triu(1) == 0)


def test_lm_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    cfg = TransformerLMConfig(vocab_size=40, block_size=8, n_layer=2, n_head=2, n_embd=16)
    model = TransformerLM(cfg)
    idx = torch.randint(0, 40, (2, 8))
    model(idx, idx)[1].backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_gradient_checkpointing(True)
    model(idx, idx)[1].backward()
    for a, p in zip(plain, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_lm_config_validates():
    with pytest.raises(ValueError, match="n_head"):
        TransformerLMConfig(vocab_size=10, n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="positions"):
        TransformerLMConfig(vocab_size=10, positions="rotary-ish")
