"""GPT.attention_weights: the attention probabilities the forward pass actually uses (chapter 01)."""
import pytest
import torch

from genai_helpers.models.gpt import GPT, GPTConfig


def _model(pos_encoding, bias, n_layer=3, n_head=4):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=97, block_size=32, n_layer=n_layer, n_head=n_head, n_embd=32, bias=bias,
                    pos_encoding=pos_encoding, dropout=0.1)
    model = GPT(cfg)
    with torch.no_grad():                       # sharper than the 0.02 init, so the maps are not all uniform
        for block in model.transformer.h:
            block.attn.c_attn.weight.mul_(10)
    return model


@pytest.mark.parametrize("pos_encoding,bias", [("rope", False), ("learned", True), ("sinusoidal", True)])
def test_attention_weights_are_causal_distributions_that_reproduce_each_layers_output(pos_encoding, bias):
    model = _model(pos_encoding, bias)
    model.train()                               # the method must switch to eval itself (dropout off)
    idx = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(1))
    w = model.attention_weights(idx)
    cfg = model.config
    assert w.shape == (cfg.n_layer, 2, cfg.n_head, 11, 11)
    assert model.training, "the previous mode is restored"
    assert not w.requires_grad
    assert torch.allclose(w.sum(-1), torch.ones(()), atol=1e-5)
    assert torch.all(w.triu(diagonal=1) == 0)
    assert w[..., 0, 0].eq(1).all()             # the first token can only look at itself
    assert w.std() > 0.05, "the test needs non-uniform maps to mean anything"

    # Each block's attention output, recorded in a plain forward pass, equals c_proj(weights @ v).
    model.eval()
    inputs, outputs = {}, {}

    def record(i):
        def hook(module, args, out):
            inputs[i], outputs[i] = args[0], out
        return hook

    hooks = [block.attn.register_forward_hook(record(i)) for i, block in enumerate(model.transformer.h)]
    with torch.no_grad():
        model(idx)
    for h in hooks:
        h.remove()
    B, T, C, H, hd = 2, 11, cfg.n_embd, cfg.n_head, cfg.head_dim
    for i, block in enumerate(model.transformer.h):
        v = block.attn.c_attn(inputs[i]).split(C, dim=2)[2].view(B, T, H, hd).transpose(1, 2)   # (B, H, T, hd)
        y = (w[i] @ v).transpose(1, 2).reshape(B, T, C)
        assert torch.allclose(block.attn.c_proj(y), outputs[i], atol=1e-5), f"layer {i}"


def test_attention_weights_differ_between_heads_and_layers_and_follow_the_input():
    model = _model("rope", False, n_layer=2, n_head=2)
    idx = torch.randint(0, 97, (1, 9), generator=torch.Generator().manual_seed(2))
    w = model.attention_weights(idx)
    assert not torch.allclose(w[0, :, 0], w[0, :, 1]), "heads must not be copies"
    assert not torch.allclose(w[0], w[1]), "layers must not be copies"
    other = idx.clone()
    other[0, 3] = (other[0, 3] + 1) % 97
    w2 = model.attention_weights(other)
    assert torch.allclose(w[..., :3, :3], w2[..., :3, :3], atol=1e-6), "queries before the change do not move"
    assert not torch.allclose(w[..., 3:, :], w2[..., 3:, :])


def test_attention_weights_checks_its_input():
    model = _model("rope", False, n_layer=1, n_head=2)
    with pytest.raises(ValueError, match="idx"):
        model.attention_weights(torch.tensor([[0, 200]]))
    with pytest.raises(TypeError, match="idx"):
        model.attention_weights(torch.zeros(1, 3))
