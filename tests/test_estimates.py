"""Back-of-envelope formulas agree with real models: parameter counts exactly, memory closely."""
import pytest
import torch

from genai_helpers import estimates as est
from genai_helpers.memory import optimizer_state_bytes, saved_activation_bytes, tensor_bytes
from genai_helpers.models import TransformerLM, TransformerLMConfig


@pytest.mark.parametrize("n_layer,d,vocab,block", [(2, 32, 50, 16), (3, 96, 211, 40)])
def test_parameter_count_is_exact_for_transformer_lm(n_layer, d, vocab, block):
    model = TransformerLM(TransformerLMConfig(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=4, n_embd=d))
    counted = est.transformer_params(n_layer, d, vocab, block)
    assert counted["total"] == sum(p.numel() for p in model.parameters())
    assert counted["per_layer"] == 12 * d * d + 13 * d


def test_parameter_count_is_exact_for_gpt2_built_from_a_config():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=3, n_embd=48, n_head=4, vocab_size=123, n_positions=20,
                                  bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg)
    assert est.transformer_params(3, 48, 123, 20)["total"] == sum(p.numel() for p in model.parameters())


def test_untied_head_adds_one_more_embedding_matrix():
    tied = est.transformer_params(2, 64, 1000, 0)
    untied = est.transformer_params(2, 64, 1000, 0, tied_embeddings=False)
    assert untied["total"] - tied["total"] == 1000 * 64


@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_estimate_is_within_5_percent_of_saved_tensors(checkpointing):
    torch.manual_seed(0)
    cfg = TransformerLMConfig(vocab_size=300, block_size=64, n_layer=3, n_head=4, n_embd=96)
    model = TransformerLM(cfg).train()
    model.set_gradient_checkpointing(checkpointing)
    x = torch.randint(0, 300, (4, 64))
    _, measured = saved_activation_bytes(lambda: model(x, x)[1], model.parameters())
    predicted = est.activation_bytes(4, 64, 96, 3, 300, gradient_checkpointing=checkpointing)
    assert abs(predicted - measured) / measured < 0.05


def test_model_state_bytes_match_adam_tensors_after_one_step():
    model = TransformerLM(TransformerLMConfig(vocab_size=100, block_size=16, n_layer=2, n_head=2, n_embd=32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randint(0, 100, (2, 16))
    model(x, x)[1].backward()
    opt.step()
    n = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    measured = (tensor_bytes(model.parameters()) + tensor_bytes(p.grad for p in model.parameters())
                + optimizer_state_bytes(opt))
    assert est.training_memory(n, bytes_per_param=16)["model_state"] == measured     # fp32 Adam: 4+4+4+4


def test_kv_cache_and_grouped_query_attention():
    full = est.kv_cache_bytes(1, 4096, 32, 4096, bytes_per_value=2)
    assert full == 2 * 32 * 4096 * 4096 * 2                           # 2 GiB for a 7B-class model
    assert est.kv_cache_bytes(1, 4096, 32, 4096, n_heads=32, n_kv_heads=8) == full / 4
    with pytest.raises(ValueError, match="n_kv_heads"):
        est.kv_cache_bytes(1, 8, 2, 64, n_heads=8, n_kv_heads=3)


def test_flops_tokens_and_time_follow_the_rules():
    p = 7e9
    tokens = est.chinchilla_tokens(p)
    assert tokens == 1.4e11
    flops = est.training_flops(p, tokens)
    assert flops == pytest.approx(5.88e21)
    t = est.training_time(flops, "A100-80GB", n_gpus=100, mfu=0.5)
    assert t["gpu_hours"] == pytest.approx(flops / (312e12 * 0.5) / 3600)
    assert t["wall_days"] == pytest.approx(t["gpu_days"] / 100)
    assert t["cost_usd"] == pytest.approx(t["gpu_hours"] * est.GPUS["A100-80GB"].usd_per_hour)
    assert est.gpus_to_hold(81e9, "H100-SXM") == 2


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="mfu"):
        est.training_time(1e20, mfu=1.5)
    with pytest.raises(ValueError, match="gpu"):
        est.training_time(1e20, gpu="TPU")
    with pytest.raises(TypeError, match="n_layer"):
        est.transformer_params(2.0, 64, 100)
    with pytest.raises(ValueError, match="n_params"):
        est.training_flops(-1, 10)
