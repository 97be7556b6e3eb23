"""LoRA adapters (genai_helpers.finetuning.lora, chapter 14): zero init, merge, counts, storage, and peft."""
import pytest
import torch
import torch.nn as nn
from safetensors import safe_open

from genai_helpers.attention import MultiHeadAttention
from genai_helpers.finetuning.lora import (LoRALinear, count_parameters, inject_lora, load_lora, lora_layers,
                                           lora_parameters, merge_lora, save_lora, unmerge_lora)
from genai_helpers.serving.quantization import Int4WeightOnlyLinear


class Tiny(nn.Module):
    """Two attention-like projections and an MLP: the layers a LoRA targets."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(16, 16)
        self.v = nn.Linear(16, 16, bias=False)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 8)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.q(x) * torch.sigmoid(self.v(x)))))


def _randomise_b(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


def test_zero_init_gives_the_base_output():
    torch.manual_seed(0)
    model, x = Tiny(), torch.randn(5, 16)
    before = model(x)
    names = inject_lora(model, ["q", "v", "fc1"], r=4, alpha=8)
    assert names == ["q", "v", "fc1"]
    assert all(torch.count_nonzero(layer.lora_B) == 0 for _, layer in lora_layers(model))
    assert torch.count_nonzero(model.q.lora_A) > 0                      # A is random, B is zero
    assert torch.equal(model(x), before)


def test_forward_is_w_x_plus_scaled_bax():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, r=2, alpha=6)
    with torch.no_grad():
        layer.lora_B.copy_(torch.arange(10.0).reshape(5, 2) / 10)
    x = torch.randn(3, 6)
    expected = x @ base.weight.T + base.bias + 3.0 * (x @ layer.lora_A.T @ layer.lora_B.T)   # alpha / r = 3
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_merged_equals_unmerged_and_unmerge_restores_weights():
    torch.manual_seed(0)
    model, x = Tiny(), torch.randn(7, 16)
    inject_lora(model, ["q", "v", "fc1", "fc2"], r=3, alpha=5)
    _randomise_b(model)
    w0 = model.fc1.base.weight.clone()
    unmerged = model(x)
    assert not torch.allclose(unmerged, Tiny().eval()(x))                # the adapter changed something
    assert merge_lora(model) == 4
    assert model.fc1.merged and not torch.equal(model.fc1.base.weight, w0)
    assert torch.allclose(model(x), unmerged, atol=1e-5)
    merged_plain = nn.Linear(16, 32)
    merged_plain.load_state_dict(model.fc1.base.state_dict())
    assert torch.allclose(merged_plain(x), model.fc1(x), atol=1e-6)     # a plain Linear carries it after merging
    merge_lora(model)                                                   # idempotent
    assert torch.allclose(model(x), unmerged, atol=1e-5)
    assert unmerge_lora(model) == 4
    assert torch.allclose(model.fc1.base.weight, w0, atol=1e-6)
    assert torch.allclose(model(x), unmerged, atol=1e-6)


def test_trainable_parameter_count_by_hand():
    torch.manual_seed(0)
    model = Tiny()
    total_base = 16 * 16 + 16 + 16 * 16 + 16 * 32 + 32 + 32 * 8 + 8    # 1336
    assert count_parameters(model) == {"trainable": total_base, "total": total_base}
    inject_lora(model, ["q", "fc2"], r=2)
    lora = 2 * (16 + 16) + 2 * (32 + 8)                                 # r * (in + out) per layer = 144
    assert count_parameters(model) == {"trainable": lora, "total": total_base + lora}
    assert sum(p.numel() for p in lora_parameters(model)) == lora


def test_attention_projections_are_the_default_targets():
    torch.manual_seed(0)
    att = MultiHeadAttention(32, 4, d_context=16)
    x, ctx = torch.randn(2, 5, 32), torch.randn(2, 3, 16)
    before = att(x, ctx)
    names = inject_lora(att, r=4)
    assert sorted(names) == ["k_proj", "out_proj", "q_proj", "v_proj"]
    assert count_parameters(att)["trainable"] == 4 * ((32 + 32) + (16 + 32) + (16 + 32) + (32 + 32))
    assert torch.equal(att(x, ctx), before)
    _randomise_b(att)
    changed = att(x, ctx)
    merge_lora(att)
    assert torch.allclose(att(x, ctx), changed, atol=1e-5)


def test_save_holds_only_the_adapter_and_loads_back(tmp_path):
    torch.manual_seed(0)
    model, x = Tiny(), torch.randn(4, 16)
    inject_lora(model, ["q", "fc1"], r=2, alpha=4)
    _randomise_b(model)
    path = save_lora(tmp_path / "subject.safetensors", model, extra={"token": "sks"})
    with safe_open(str(path), framework="pt") as fh:
        keys = sorted(fh.keys())
    assert keys == ["model.fc1.lora_A", "model.fc1.lora_B", "model.q.lora_A", "model.q.lora_B"]
    assert path.stat().st_size < 4 * (2 * (16 + 16) + 2 * (16 + 32)) + 2000   # adapter floats + header, no base
    torch.manual_seed(0)
    fresh = Tiny()                                   # same base weights (same seed), a new random A
    inject_lora(fresh, ["q", "fc1"], r=2, alpha=4)
    assert not torch.allclose(fresh(x), model(x))
    meta = load_lora(path, fresh)
    assert meta["token"] == "sks" and meta["layers"]["q"] == {"r": 2, "alpha": 4.0}
    assert torch.equal(fresh(x), model(x))
    merge_lora(model)
    with pytest.raises(ValueError, match="unmerge"):
        save_lora(tmp_path / "merged.safetensors", model)


def test_qlora_on_an_int4_base():
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    q4 = Int4WeightOnlyLinear(lin, group_size=32)
    layer = LoRALinear(q4, r=4, alpha=4)
    x = torch.randn(3, 64)
    assert torch.equal(layer(x), q4(x))                         # zero-init: the quantised base's output
    _randomise_b(nn.Sequential(layer))
    assert torch.allclose(layer(x), q4(x) + x @ layer.delta_weight().T, atol=1e-5)
    assert count_parameters(layer)["trainable"] == 4 * (64 + 32)  # the int4 codes are buffers, not parameters
    with pytest.raises(TypeError, match="merge"):
        layer.merge()


def test_arguments_are_validated():
    with pytest.raises(TypeError, match="base"):
        LoRALinear(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="r must be"):
        LoRALinear(nn.Linear(4, 4), r=0)
    with pytest.raises(TypeError, match="r must be"):
        LoRALinear(nn.Linear(4, 4), r=2.0)
    with pytest.raises(ValueError, match="alpha"):
        LoRALinear(nn.Linear(4, 4), alpha=-1)
    with pytest.raises(ValueError, match="dropout"):
        LoRALinear(nn.Linear(4, 4), dropout=1.5)
    with pytest.raises(TypeError, match="target_modules"):
        inject_lora(Tiny(), "q")
    with pytest.raises(ValueError, match="matched no"):
        inject_lora(Tiny(), ["nothing_here"])
    with pytest.raises(TypeError, match="model"):
        inject_lora("not a model", ["q"])
    with pytest.raises(ValueError, match="no LoRA layers"):
        save_lora("x.safetensors", Tiny())


def test_matches_peft_outputs_and_counts():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    ref_base, x = Tiny(), torch.randn(6, 16)
    mine = Tiny()
    mine.load_state_dict(ref_base.state_dict())
    targets = ["q", "v", "fc1"]
    peft_model = peft.get_peft_model(ref_base, peft.LoraConfig(r=4, lora_alpha=12, lora_dropout=0.0, target_modules=targets))
    inject_lora(mine, targets, r=4, alpha=12)
    _randomise_b(mine, seed=3)
    # the same A and B in both (peft keeps them as lora_A/lora_B Linear layers, adapter "default")
    with torch.no_grad():
        for name, layer in lora_layers(mine):
            peft_layer = peft_model.base_model.model.get_submodule(name)
            peft_layer.lora_A["default"].weight.copy_(layer.lora_A)
            peft_layer.lora_B["default"].weight.copy_(layer.lora_B)
    assert torch.allclose(mine(x), peft_model(x), atol=1e-6)
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert count_parameters(mine) == {"trainable": trainable, "total": total}
    assert trainable == 4 * ((16 + 16) + (16 + 16) + (16 + 32))
    merged_ref = peft_model.merge_and_unload()
    merge_lora(mine)
    for name in targets:
        assert torch.allclose(mine.get_submodule(name).base.weight, merged_ref.get_submodule(name).weight, atol=1e-6)
    assert torch.allclose(mine(x), merged_ref(x), atol=1e-5)


def test_same_init_distribution_as_peft_a_and_zero_b():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    peft_model = peft.get_peft_model(Tiny(), peft.LoraConfig(r=8, lora_alpha=8, target_modules=["fc1"]))
    ref_a = peft_model.base_model.model.fc1.lora_A["default"].weight
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 32), r=8)
    bound = 1 / 16 ** 0.5                             # kaiming_uniform(a=sqrt(5)) on fan_in 16
    for a in (ref_a, layer.lora_A):
        assert a.abs().max() <= bound + 1e-6 and a.abs().max() > 0.8 * bound
    assert torch.count_nonzero(peft_model.base_model.model.fc1.lora_B["default"].weight) == 0


def test_freeze_base_false_keeps_the_wrapped_base_weights_trainable():
    model = Tiny()
    inject_lora(model, ["q", "v"], r=2, freeze_base=False)
    assert model.q.base.weight.requires_grad and model.q.base.bias.requires_grad and model.v.base.weight.requires_grad
    assert count_parameters(model)["trainable"] == count_parameters(model)["total"]
    model(torch.randn(3, 16)).sum().backward()
    assert model.q.base.weight.grad is not None and model.q.lora_A.grad is not None
    frozen = Tiny()
    inject_lora(frozen, ["q", "v"], r=2)                                  # the default freezes everything else
    assert not frozen.q.base.weight.requires_grad and not frozen.fc1.weight.requires_grad
    assert {n for n, p in frozen.named_parameters() if p.requires_grad} == {
        "q.lora_A", "q.lora_B", "v.lora_A", "v.lora_B"}
    with pytest.raises(TypeError, match="freeze_base"):
        LoRALinear(nn.Linear(4, 4), freeze_base="no")
