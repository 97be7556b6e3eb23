"""Attention equals PyTorch's reference implementations; masks behave; bad input is named."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genai_helpers.attention import MultiHeadAttention, causal_mask, padding_mask, scaled_dot_product_attention


@pytest.fixture
def qkv():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, 3, 5, 8, generator=g), torch.randn(2, 3, 7, 8, generator=g),
            torch.randn(2, 3, 7, 4, generator=g))


def test_matches_torch_sdpa_without_mask(qkv):
    q, k, v = qkv
    out, w = scaled_dot_product_attention(q, k, v)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 5), atol=1e-6)


def test_matches_torch_sdpa_with_causal_flag():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 4, 6, 8, generator=g) for _ in range(3))
    out, w = scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)
    assert torch.all(w.triu(diagonal=1) == 0), "a query must put no weight on future keys"


def test_matches_torch_sdpa_with_boolean_and_float_masks(qkv):
    q, k, v = qkv
    g = torch.Generator().manual_seed(2)
    bool_mask = torch.rand(5, 7, generator=g) > 0.3
    bool_mask[:, 0] = True                              # no fully masked rows
    out, w = scaled_dot_product_attention(q, k, v, bool_mask)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=bool_mask), atol=1e-6)
    assert torch.all(w[..., ~bool_mask] == 0)
    float_mask = torch.randn(5, 7, generator=g)
    out, _ = scaled_dot_product_attention(q, k, v, float_mask)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask), atol=1e-6)


def test_custom_scale_matches_torch(qkv):
    q, k, v = qkv
    out, _ = scaled_dot_product_attention(q, k, v, scale=0.5)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, scale=0.5), atol=1e-6)


def test_fully_masked_row_gives_zeros_not_nan():
    q = k = v = torch.randn(1, 3, 4)
    mask = torch.tensor([[True, True, True], [False, False, False], [True, False, True]])
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert not torch.isnan(out).any()
    assert torch.all(w[0, 1] == 0)


def test_causal_mask_with_more_keys_than_queries_lets_last_query_see_everything():
    m = causal_mask(2, 5)
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


def test_padding_mask_marks_real_tokens():
    assert padding_mask(torch.tensor([1, 3]), 4).tolist() == [[True, False, False, False], [True, True, True, False]]


def _copy_into_torch_mha(ours: MultiHeadAttention) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(ours.d_model, ours.n_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref


@pytest.mark.parametrize("need_weights", [False, True])
def test_multihead_matches_nn_multiheadattention_with_causal_and_padding(need_weights):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    ref = _copy_into_torch_mha(mha).eval()
    x = torch.randn(3, 6, 16)
    keep = padding_mask(torch.tensor([6, 4, 2]), 6)
    ours = mha(x, key_padding_mask=keep, is_causal=True, need_weights=need_weights)
    ours = ours[0] if need_weights else ours
    theirs, ref_w = ref(x, x, x, key_padding_mask=~keep, attn_mask=~causal_mask(6), need_weights=True,
                        average_attn_weights=False)
    assert torch.allclose(ours, theirs, atol=1e-5)
    if need_weights:
        _, w = mha(x, key_padding_mask=keep, is_causal=True, need_weights=True)
        assert torch.allclose(w, ref_w, atol=1e-5)


def test_cross_attention_uses_context_length_and_width():
    mha = MultiHeadAttention(16, 2, d_context=10)
    out, w = mha(torch.randn(2, 5, 16), torch.randn(2, 9, 10), need_weights=True)
    assert out.shape == (2, 5, 16) and w.shape == (2, 2, 5, 9)


def test_multihead_gradients_reach_every_parameter_and_input():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4)
    x = torch.randn(2, 5, 16, requires_grad=True)
    mha(x, is_causal=True).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in mha.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("call, param", [
    (lambda: MultiHeadAttention(10, 3), "n_heads"),
    (lambda: MultiHeadAttention(0, 1), "d_model"),
    (lambda: MultiHeadAttention(8, 2, dropout=1.5), "dropout"),
    (lambda: scaled_dot_product_attention(torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)), "d_k"),
    (lambda: scaled_dot_product_attention(torch.randn(2, 3), torch.randn(2, 3), torch.randn(5, 3)), "sequence length"),
    (lambda: scaled_dot_product_attention(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3), scale=-1.0), "scale"),
    (lambda: causal_mask(0), "n_queries"),
    (lambda: causal_mask(4, 2), "n_keys"),
    (lambda: padding_mask(torch.tensor([5]), 3), "max_len"),
])
def test_invalid_arguments_raise_value_error_naming_the_parameter(call, param):
    with pytest.raises(ValueError, match=param):
        call()


def test_wrong_type_raises_type_error():
    with pytest.raises(TypeError, match="q"):
        scaled_dot_product_attention([[1.0]], torch.randn(1, 1), torch.randn(1, 1))
