"""The FLOP count with attention equals what PyTorch's flop counter counts, and the IsoFLOP fits
(chapter 02) recover the vertex and exponent of data made from a known law."""
import math

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from genai_helpers import estimates as est
from genai_helpers.models.gpt import GPT, GPTConfig


def counted_training_flops(model, batch_size):
    T, V = model.config.block_size, model.config.vocab_size
    x = torch.randint(0, V, (batch_size, T), generator=torch.Generator().manual_seed(0))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:   # attention as plain bmm
        model(x, x)[1].backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("n_layer,d,heads,T,V", [(2, 32, 2, 16, 50), (3, 48, 4, 40, 211)])
def test_flops_with_attention_equal_the_flop_counter_for_gpt(n_layer, d, heads, T, V):
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=n_layer, n_head=heads, n_embd=d, dropout=0.0,
                          bias=False, pos_encoding="rope", tie_weights=True))
    matmul_params = 12 * n_layer * d * d + V * d          # c_attn, c_proj, mlp and the (tied) lm_head
    formula = est.training_flops_with_attention(matmul_params, 3 * T, n_layer, T, d)
    assert counted_training_flops(model, 3) == formula
    plain = est.training_flops(matmul_params, 3 * T)
    assert formula - plain == 12 * n_layer * T * d * 3 * T
    half = est.training_flops_with_attention(matmul_params, 3 * T, n_layer, T, d, causal=True)
    assert half == pytest.approx((formula + plain) / 2)


def test_flops_with_attention_reject_bad_input():
    with pytest.raises(ValueError, match="n_tokens"):
        est.training_flops_with_attention(1e6, 0, 2, 128, 64)
    with pytest.raises(TypeError, match="seq_len"):
        est.training_flops_with_attention(1e6, 1e3, 2, 128.0, 64)


def test_isoflop_minimum_finds_the_vertex_of_a_parabola_in_log_params():
    n = np.array([1e5, 3e5, 1e6, 3e6])
    loss = 0.3 * (np.log(n) - math.log(7e5)) ** 2 + 3.1
    fit = est.isoflop_minimum(n, loss)
    assert fit["params_opt"] == pytest.approx(7e5, rel=1e-6)
    assert fit["loss_opt"] == pytest.approx(3.1, abs=1e-9)
    assert fit["inside"] and fit["residual_rms"] < 1e-9
    assert fit["coefficients"][0] == pytest.approx(0.3)


def test_isoflop_minimum_flags_a_vertex_outside_the_sizes_tried():
    n = [1e5, 2e5, 4e5]
    loss = [0.2 * (math.log(v) - math.log(1e6)) ** 2 + 3 for v in n]
    fit = est.isoflop_minimum(n, loss)
    assert not fit["inside"] and fit["params_opt"] == pytest.approx(1e6, rel=1e-6)


@pytest.mark.parametrize("params,losses,match", [
    ([1e5, 2e5], [3.0, 2.9], "at least 3"),
    ([1e5, 2e5, 4e5, 8e5], [3.0, 2.9, 3.0], "same length"),
    ([1e5, -2e5, 4e5], [3.0, 2.9, 3.1], "> 0"),
    ([1e5, 1e5, 4e5], [3.0, 2.9, 3.1], "three different"),
    ([1e5, 2e5, 4e5], [3.0, 3.2, 3.0], "opens downward"),
])
def test_isoflop_minimum_rejects_bad_input(params, losses, match):
    with pytest.raises(ValueError, match=match):
        est.isoflop_minimum(params, losses)


def test_power_law_fit_recovers_exponent_and_coefficient():
    c = np.array([1e12, 4e12, 1.2e13, 5e13])
    rng = np.random.default_rng(0)
    n_opt = 0.09 * c ** 0.5
    fit = est.power_law_fit(c, n_opt)
    assert fit["exponent"] == pytest.approx(0.5, abs=1e-9)
    assert fit["coefficient"] == pytest.approx(0.09, rel=1e-6)
    assert fit["exponent_stderr"] == pytest.approx(0, abs=1e-9) and fit["n"] == 4
    noisy = est.power_law_fit(c, n_opt * np.exp(rng.normal(0, 0.05, c.size)))
    assert abs(noisy["exponent"] - 0.5) < 4 * noisy["exponent_stderr"]
    assert math.isnan(est.power_law_fit([1.0, 2.0], [3.0, 6.0])["exponent_stderr"])


def test_power_law_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        est.power_law_fit([1.0], [1.0])
    with pytest.raises(ValueError, match="> 0"):
        est.power_law_fit([1.0, 0.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="two different"):
        est.power_law_fit([2.0, 2.0], [1.0, 2.0])
    with pytest.raises(TypeError, match="x must be"):
        est.power_law_fit(["a", "b"], [1.0, 2.0])
