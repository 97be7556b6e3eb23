"""MaskGIT (genai_helpers.models.maskgit): cosine masking, masked-token loss, parallel decoding."""
import math

import pytest
import torch
import torch.nn.functional as F

from genai_helpers.models.maskgit import (cosine_schedule, mask_tokens, masked_token_loss, maskgit_decode,
                                          parallel_decoding_flops)
from genai_helpers.models.token_prior import batched_eval, generation_flops
from genai_helpers.sampling import sample_next_token
from genai_helpers.models.transformer_lm import TransformerLM, TransformerLMConfig

K, N = 16, 12


def bidirectional(seed=0):
    torch.manual_seed(seed)
    return TransformerLM(TransformerLMConfig(vocab_size=K + 1, block_size=N, n_layer=1, n_head=2, n_embd=16,
                                             causal=False))


class Recorder(torch.nn.Module):
    """Wraps a model and keeps every input it sees."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, ids):
        self.calls.append(ids.clone())
        return self.inner(ids)


class FixedLogits(torch.nn.Module):
    """Ignores its input: the same random logits ``(N, K + 1)`` at every call."""

    def __init__(self, seed=0):
        super().__init__()
        self.logits = torch.nn.Parameter(3 * torch.randn(N, K + 1, generator=torch.Generator().manual_seed(seed)))

    def forward(self, ids):
        return self.logits.expand(ids.shape[0], -1, -1)


def test_cosine_schedule_falls_from_one_to_zero():
    r = torch.linspace(0, 1, 11)
    g = cosine_schedule(r)
    assert g[0] == 1 and abs(float(g[-1])) < 1e-7
    assert (g[1:] <= g[:-1]).all()
    assert cosine_schedule(0.5) == pytest.approx(math.cos(math.pi / 4))
    with pytest.raises(ValueError, match="r must be in"):
        cosine_schedule(1.5)
    with pytest.raises(ValueError, match="r must be in"):
        cosine_schedule(torch.tensor([-0.1]))
    with pytest.raises(TypeError, match="r must be"):
        cosine_schedule("half")


def test_mask_tokens_hides_ceil_gamma_r_n_tokens_per_row_and_keeps_the_rest():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, K, (500, N), generator=g)
    inputs, mask = mask_tokens(codes, K, generator=torch.Generator().manual_seed(1))
    r = torch.rand(500, generator=torch.Generator().manual_seed(1))             # the same first draws
    expected = torch.ceil(torch.cos(math.pi / 2 * r) * N).clamp(1, N).long()
    assert torch.equal(mask.sum(1), expected)
    assert torch.equal(inputs[mask], torch.full((int(mask.sum()),), K))
    assert torch.equal(inputs[~mask], codes[~mask])
    # the cosine schedule hides 2/pi of the tokens on average (plus the ceiling's rounding up)
    assert 2 / math.pi < mask.float().mean().item() < 2 / math.pi + 1 / N + 0.03


def test_mask_tokens_is_reproducible_and_checks_its_input():
    codes = torch.randint(0, K, (4, N))
    a = mask_tokens(codes, K, generator=torch.Generator().manual_seed(3))
    b = mask_tokens(codes, K, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="codes must be in"):
        mask_tokens(codes + K, K)
    with pytest.raises(ValueError, match="codes must have 2 dimensions"):
        mask_tokens(codes.view(4, 3, 4), K)
    with pytest.raises(TypeError, match="codes must hold integer ids"):
        mask_tokens(codes.float(), K)
    with pytest.raises(ValueError, match="mask_id"):
        mask_tokens(codes, 0)


def test_masked_token_loss_is_cross_entropy_on_the_hidden_positions_only():
    model = bidirectional()
    codes = torch.randint(0, K, (6, N), generator=torch.Generator().manual_seed(0))
    loss = masked_token_loss(model, codes, K, generator=torch.Generator().manual_seed(5))
    inputs, mask = mask_tokens(codes, K, generator=torch.Generator().manual_seed(5))
    logits = model(inputs)
    assert loss.item() == pytest.approx(F.cross_entropy(logits[mask], codes[mask]).item(), rel=1e-6)
    loss.backward()
    assert model.tok_emb.weight.grad is not None


def test_decode_calls_the_model_steps_times_and_hides_as_the_schedule_says():
    for steps in (1, 4, 8, N):
        rec = Recorder(bidirectional())
        out = maskgit_decode(rec, 3, N, K, steps=steps, generator=torch.Generator().manual_seed(0))
        assert out.shape == (3, N) and out.dtype == torch.long
        assert int(out.min()) >= 0 and int(out.max()) < K                     # never the mask id
        assert len(rec.calls) == steps
        hidden = [int((c[0] == K).sum()) for c in rec.calls]
        assert hidden[0] == N
        for t in range(1, steps):                                              # floor(N gamma(t / T)), >= 1, < previous
            assert hidden[t] == max(1, min(hidden[t - 1] - 1, math.floor(N * math.cos(math.pi / 2 * t / steps))))
        for prev, nxt in zip(rec.calls, rec.calls[1:] + [out]):                # a revealed token never changes
            known = prev != K
            assert torch.equal(nxt[known], prev[known])


def test_decode_without_noise_hides_again_the_least_confident_draws():
    model, steps, B = Recorder(FixedLogits()), 3, 4
    out = maskgit_decode(model, B, N, K, steps=steps, choice_temperature=0.0, generator=torch.Generator().manual_seed(0))
    # replay the first step: the same draws from the same generator, then the rule by hand
    logits = model.inner.logits.detach()[:, :K].expand(B, -1, -1)
    drawn = sample_next_token(logits.reshape(-1, K), temperature=1.0,
                              generator=torch.Generator().manual_seed(0)).view(B, N)
    logp = torch.log_softmax(logits, -1).gather(-1, drawn[..., None])[..., 0]
    n_hidden = math.floor(N * math.cos(math.pi / 2 * 1 / steps))
    second = model.calls[1]
    for b in range(B):
        assert set((second[b] == K).nonzero().flatten().tolist()) == set(logp[b].argsort()[:n_hidden].tolist())
        kept = second[b] != K
        assert torch.equal(second[b][kept], drawn[b][kept])                    # the others keep their draws
        assert torch.equal(out[b][kept], drawn[b][kept])


def test_decode_noise_changes_the_order_and_same_seed_repeats():
    model = bidirectional()
    a = maskgit_decode(model, 4, N, K, steps=4, generator=torch.Generator().manual_seed(7))
    b = maskgit_decode(model, 4, N, K, steps=4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    r1, r2 = Recorder(model), Recorder(model)
    maskgit_decode(r1, 4, N, K, steps=4, choice_temperature=0.0, generator=torch.Generator().manual_seed(7))
    maskgit_decode(r2, 4, N, K, steps=4, choice_temperature=50.0, generator=torch.Generator().manual_seed(7))
    assert not torch.equal(r1.calls[1] == K, r2.calls[1] == K)                 # different positions stay hidden


def test_decode_batches_do_not_change_the_count_and_bad_input_is_refused():
    model = bidirectional()
    assert maskgit_decode(model, 5, N, K, steps=3, batch_size=2).shape == (5, N)
    with pytest.raises(ValueError, match="steps must be <= seq_len"):
        maskgit_decode(model, 2, N, K, steps=N + 1)
    with pytest.raises(ValueError, match="steps"):
        maskgit_decode(model, 2, N, K, steps=0)
    with pytest.raises(ValueError, match="temperature"):
        maskgit_decode(model, 2, N, K, temperature=0.0)
    with pytest.raises(ValueError, match="choice_temperature"):
        maskgit_decode(model, 2, N, K, choice_temperature=-1.0)
    with pytest.raises(ValueError, match="n must be"):
        maskgit_decode(model, 0, N, K)


def test_parallel_decoding_flops_are_steps_full_passes():
    one = parallel_decoding_flops(49, 1, 2, 96, 129)
    assert one["dense"] == 24 * 96 ** 2 * 2 * 49
    assert one["attention"] == 4 * 96 * 2 * 49 * 49
    assert one["head"] == 2 * 96 * 129 * 49
    eight = parallel_decoding_flops(49, 8, 2, 96, 129)
    assert eight["total"] == pytest.approx(8 * one["total"])
    # one full pass costs the same dense and head FLOPs as the AR prior's cached generation of 49 tokens
    ar = generation_flops(49, 2, 96, 129)
    assert one["dense"] == ar["dense"] and one["head"] == ar["head"]
    assert one["attention"] > ar["attention"]                                   # every token attends to all 49
    with pytest.raises(ValueError, match="steps"):
        parallel_decoding_flops(49, 0, 2, 96, 129)


def test_batched_eval_concatenates_batches_and_restores_the_mode():
    """The batching loop shared by maskgit_decode and sample_token_grid."""
    model = bidirectional()
    model.train()
    seen = []

    def draw(b, device):
        assert not model.training                                  # eval mode inside
        seen.append(b)
        return torch.full((b, 2), len(seen))

    out = batched_eval(model, 5, 2, draw)
    assert seen == [2, 2, 1] and out.shape == (5, 2) and out[:, 0].tolist() == [1, 1, 2, 2, 3]
    assert model.training                                          # restored
    model.eval()
    batched_eval(model, 1, 4, lambda b, d: torch.zeros(b))
    assert not model.training

    def boom(b, device):
        raise RuntimeError("boom")
    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        batched_eval(model, 3, 2, boom)
    assert model.training                                          # restored on error too
    with pytest.raises(ValueError, match="n must be"):
        batched_eval(model, 0, 2, draw)
    with pytest.raises(ValueError, match="batch_size"):
        batched_eval(model, 2, 0, draw)
    with pytest.raises(TypeError, match="draw must be callable"):
        batched_eval(model, 2, 2, None)
