"""Alignment (chapter 06): SFT masking, reward-model ranking loss, PPO clipping and GAE, DPO —
checked on hand-computed numbers."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genai_helpers.finetuning.alignment import (RewardModel, dpo_loss, gae_advantages, kl_penalized_rewards,
                                                masked_mean, pad_batch, ppo_policy_loss, ranking_loss, sequence_kl,
                                                sequence_logprob, sft_example, sft_loss, token_logprobs, value_loss)
from genai_helpers.models.gpt import GPT, GPTConfig


def tiny_gpt(seed=0, vocab=11):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=16, n_layer=1, n_head=2, n_embd=16, pos_encoding="rope"))


# ------------------------------------------------------------------------------------ SFT
def test_sft_example_masks_the_prompt():
    inp, tgt = sft_example([1, 2, 3], [4, 5])
    assert inp == [1, 2, 3, 4]
    assert tgt == [-100, -100, 4, 5]        # predicting the prompt is never trained


def test_sft_loss_is_cross_entropy_on_response_tokens_only():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 6)
    target = torch.tensor([[-100, -100, 4, 5]])
    manual = -(torch.log_softmax(logits[0, 2], -1)[4] + torch.log_softmax(logits[0, 3], -1)[5]) / 2
    assert torch.allclose(sft_loss(logits, target), manual)
    logits2 = logits.clone()
    logits2[0, :2] += torch.randn(2, 6) * 10      # change what the model says at prompt positions
    assert torch.allclose(sft_loss(logits2, target), manual)


def test_sft_loss_gradient_is_zero_on_prompt_positions():
    logits = torch.randn(1, 4, 6, requires_grad=True)
    sft_loss(logits, torch.tensor([[-100, -100, 4, 5]])).backward()
    assert torch.all(logits.grad[0, :2] == 0) and torch.any(logits.grad[0, 2:] != 0)


def test_sft_loss_equals_gpt_loss_with_ignore_index():
    model = tiny_gpt()
    inp, tgt = sft_example([1, 2, 3], [4, 5, 6])
    idx, targets = torch.tensor([inp]), torch.tensor([tgt])
    logits, loss = model(idx, targets)
    assert torch.allclose(sft_loss(logits, targets), loss, atol=1e-6)


def test_sft_argument_validation():
    with pytest.raises(ValueError, match="prompt_ids"):
        sft_example([], [1])
    with pytest.raises(ValueError, match="logits"):
        sft_loss(torch.randn(1, 3, 5), torch.zeros(1, 4, dtype=torch.long))


# ------------------------------------------------------------------------- log-probabilities
def test_token_logprobs_match_manual_gather():
    model = tiny_gpt()
    idx = torch.tensor([[1, 4, 2, 7, 3]])
    with torch.no_grad():
        logits, _ = model(idx)
    manual = [0.0] + [float(torch.log_softmax(logits[0, t - 1], -1)[idx[0, t]]) for t in range(1, 5)]
    assert torch.allclose(token_logprobs(model, idx)[0], torch.tensor(manual), atol=1e-5)
    mask = torch.tensor([[0, 0, 0, 1, 1]])
    assert torch.allclose(sequence_logprob(model, idx, mask), torch.tensor([manual[3] + manual[4]]), atol=1e-5)


def test_pad_batch_right_pads():
    assert pad_batch([[1, 2, 3], [4]], 0).tolist() == [[1, 2, 3], [4, 0, 0]]


# ---------------------------------------------------------------------------- reward model
def test_ranking_loss_hand_computed():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = (math.log1p(math.exp(-1)) + math.log1p(math.exp(1))) / 2     # -log σ(1), -log σ(-1)
    assert ranking_loss(chosen, rejected).item() == pytest.approx(expected, abs=1e-6)
    # a margin of 1 moves both differences down by one: -log σ(0) and -log σ(-2)
    expected_m = (math.log(2) + math.log1p(math.exp(2))) / 2
    assert ranking_loss(chosen, rejected, margin=1.0).item() == pytest.approx(expected_m, abs=1e-6)
    hinge = ranking_loss(chosen, rejected, margin=1.0, kind="hinge")
    assert hinge.item() == pytest.approx(1.0)                                 # (max(0, 0) + max(0, 2)) / 2
    assert torch.allclose(hinge, F.margin_ranking_loss(chosen, rejected, torch.ones(2), margin=1.0))


def test_ranking_loss_gradient_pushes_chosen_up_and_rejected_down():
    chosen, rejected = torch.tensor([0.3], requires_grad=True), torch.tensor([0.5], requires_grad=True)
    ranking_loss(chosen, rejected).backward()
    assert chosen.grad.item() < 0 < rejected.grad.item()
    with pytest.raises(ValueError, match="kind"):
        ranking_loss(chosen, rejected, kind="square")


def test_reward_model_reads_score_at_last_token_and_ignores_right_padding():
    torch.manual_seed(0)
    rm = RewardModel(tiny_gpt(), n_embd=16)
    a = torch.tensor([[1, 2, 3, 4, 0, 0]])
    b = torch.tensor([[1, 2, 3, 4, 9, 9]])          # different padding after the last real token
    last = torch.tensor([3])
    assert torch.allclose(rm(a, last), rm(b, last), atol=1e-6)
    assert torch.allclose(rm(a, last), rm.values(a)[:, 3])
    assert rm(torch.cat([a, b]), torch.tensor([3, 5])).shape == (2,)


def test_reward_model_trains_to_rank_pairs():
    torch.manual_seed(0)
    rm = RewardModel(tiny_gpt(), n_embd=16)
    chosen = torch.tensor([[1, 2, 3], [4, 5, 6]])
    rejected = torch.tensor([[1, 2, 7], [4, 5, 8]])
    last = torch.tensor([2, 2])
    opt = torch.optim.Adam(rm.parameters(), lr=1e-2)
    for _ in range(30):
        loss = ranking_loss(rm(chosen, last), rm(rejected, last))
        opt.zero_grad(); loss.backward(); opt.step()
    assert bool((rm(chosen, last) > rm(rejected, last)).all())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in rm.trunk.parameters())


def test_reward_model_validates_hidden_module():
    with pytest.raises(ValueError, match="hidden_module"):
        RewardModel(tiny_gpt(), 16, hidden_module="nope")


# ------------------------------------------------------------------------------------- PPO
def test_ppo_clipping_values_and_zero_gradient_outside_the_range():
    # four tokens: ratio 1.5 (A=+1), 1.1 (A=+1), 0.5 (A=-1), 1.5 (A=-1); eps = 0.2
    ratios = torch.tensor([[1.5, 1.1, 0.5, 1.5]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    logp_old = torch.zeros(1, 4)
    logp = torch.log(ratios).requires_grad_(True)
    loss, stats = ppo_policy_loss(logp, logp_old, adv, torch.ones(1, 4), clip_eps=0.2)
    # per-token objective min(ρA, clip(ρ)A): 1.2 (clipped), 1.1, -0.8 (clipped), -1.5
    assert loss.item() == pytest.approx(-(1.2 + 1.1 - 0.8 - 1.5) / 4, abs=1e-6)
    loss.backward()
    # d(-ρA/4)/dlogp = -ρA/4 where unclipped; exactly 0 where the clip is active
    assert logp.grad[0].tolist() == pytest.approx([0.0, -1.1 / 4, 0.0, 1.5 / 4], abs=1e-6)
    assert stats["clip_frac"] == pytest.approx(0.5)


def test_ppo_is_policy_gradient_inside_the_range_and_ignores_masked_tokens():
    logp_old = torch.tensor([[0.3, -1.0, -0.5]])
    logp = logp_old.clone().requires_grad_(True)
    adv = torch.tensor([[5.0, 2.0, -3.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    loss, _ = ppo_policy_loss(logp, logp_old, adv, mask)
    assert loss.item() == pytest.approx(-(2.0 - 3.0) / 2)          # ρ = 1: -mean(A) over the mask
    loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([0.0, -1.0, 1.5])


def test_gae_hand_computed():
    # position 0 is the prompt, 1..3 the response, 4 padding
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[9.0, 0.5, 0.6, 0.7, 9.0]])
    mask = torch.tensor([[0, 1, 1, 1, 0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=1.0, lam=0.5)
    # δ3 = 1 - 0.7 = 0.3; δ2 = 0.7 - 0.6 = 0.1; δ1 = 0.6 - 0.5 = 0.1
    # A3 = 0.3; A2 = 0.1 + 0.5·0.3 = 0.25; A1 = 0.1 + 0.5·0.25 = 0.225
    assert adv[0].tolist() == pytest.approx([0.0, 0.225, 0.25, 0.3, 0.0])
    assert ret[0].tolist() == pytest.approx([0.0, 0.725, 0.85, 1.0, 0.0])
    adv1, _ = gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv1[0, 1:4].tolist() == pytest.approx([0.5, 0.4, 0.3])   # Monte-Carlo return 1 minus V


def test_kl_penalized_rewards_put_the_score_on_the_last_response_token():
    logp = torch.tensor([[0.0, -1.0, -2.0, 0.0]])
    logp_ref = torch.tensor([[0.0, -1.5, -1.0, 0.0]])
    mask = torch.tensor([[0, 1, 1, 0]])
    rewards, kl = kl_penalized_rewards(torch.tensor([2.0]), logp, logp_ref, mask, beta=0.1)
    assert kl[0].tolist() == pytest.approx([0.0, 0.5, -1.0, 0.0])
    assert rewards[0].tolist() == pytest.approx([0.0, -0.05, 0.1 + 2.0, 0.0])
    assert sequence_kl(logp, logp_ref, mask).tolist() == pytest.approx([-0.5])


def test_value_loss_clips_large_moves():
    v_old, ret, mask = torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.ones(1, 1)
    # V jumps to 1.0 (perfect), but the clipped value is 0.2: loss = 0.5 · max(0, 0.64) = 0.32
    assert value_loss(torch.tensor([[1.0]]), v_old, ret, mask, clip=0.2).item() == pytest.approx(0.32)


def test_ppo_argument_validation():
    z = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_policy_loss(z, z, z, z, clip_eps=1.5)
    with pytest.raises(ValueError, match="shapes"):
        ppo_policy_loss(z, torch.zeros(1, 3), z, z)
    with pytest.raises(ValueError, match="gamma"):
        gae_advantages(z, z, z, gamma=2.0)


# ------------------------------------------------------------------------------------- DPO
def test_dpo_loss_hand_computed_value_and_sign():
    pc, pr = torch.tensor([-1.0]), torch.tensor([-3.0])
    rc, rr = torch.tensor([-2.0]), torch.tensor([-2.0])
    loss, r_w, r_l = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # r_w = 0.5·(−1 + 2) = 0.5; r_l = 0.5·(−3 + 2) = −0.5; loss = −log σ(1) = log(1 + e^−1)
    assert r_w.item() == pytest.approx(0.5) and r_l.item() == pytest.approx(-0.5)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-6)
    swapped, _, _ = dpo_loss(pr, pc, rr, rc, beta=0.5)     # prefer the wrong one: loss above log 2
    assert swapped.item() == pytest.approx(math.log1p(math.exp(1.0)), abs=1e-6)
    same, _, _ = dpo_loss(rc, rr, rc, rr, beta=0.5)          # policy = reference: log 2
    assert same.item() == pytest.approx(math.log(2), abs=1e-6)


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    pc, pr = torch.tensor([-2.0], requires_grad=True), torch.tensor([-2.0], requires_grad=True)
    loss, _, _ = dpo_loss(pc, pr, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.1)
    loss.backward()
    assert pc.grad.item() == pytest.approx(-0.05) and pr.grad.item() == pytest.approx(0.05)   # ∓β·σ(0)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(pc, pr, pc, pr, beta=0.0)


def test_dpo_steps_on_a_tiny_gpt_widen_the_margin():
    model, ref = tiny_gpt(1), tiny_gpt(1)
    chosen = torch.tensor([[1, 2, 3, 4], [1, 5, 3, 4]])
    rejected = torch.tensor([[1, 2, 3, 9], [1, 5, 3, 8]])
    mask = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    with torch.no_grad():
        ref_c, ref_r = sequence_logprob(ref, chosen, mask), sequence_logprob(ref, rejected, mask)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss, r_w, r_l = dpo_loss(sequence_logprob(model, chosen, mask), sequence_logprob(model, rejected, mask),
                                  ref_c, ref_r, beta=0.5)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5) and losses[-1] < 0.6


def test_masked_mean():
    assert masked_mean(torch.tensor([1.0, 2.0, 100.0]), torch.tensor([1, 1, 0])).item() == pytest.approx(1.5)


def test_reward_model_leaves_no_hook_on_its_trunk_so_copies_stay_independent():
    import copy

    trunk = tiny_gpt()
    rm = RewardModel(trunk, n_embd=16)
    idx = torch.tensor([[1, 2, 3, 4]])
    before = rm.values(idx)
    ln_f = trunk.transformer.ln_f
    assert len(ln_f._forward_hooks) == 0                  # none after construction or after a call
    policy = copy.deepcopy(trunk)                          # chapter 06 copies the SFT model into its PPO policy
    assert len(policy.transformer.ln_f._forward_hooks) == 0
    policy(idx)
    assert len(ln_f._forward_hooks) == 0 and torch.equal(rm.values(idx), before)
    hidden, logits = rm.hidden_and_logits(idx)
    assert hidden.shape == (1, 4, 16) and torch.allclose(logits, trunk(idx)[0])
    clone = copy.deepcopy(rm)                              # a copied reward model reads its own trunk
    with torch.no_grad():
        clone.trunk.transformer.ln_f.bias.add_(1.0)
    assert torch.equal(rm.values(idx), before) and not torch.allclose(clone.values(idx), before)


# --------------------------------------------------------------------- PPO value alignment
def test_token_values_pair_each_logprob_with_the_state_before_its_token():
    """token_logprobs(idx)[:, t] scores idx[:, t] from the logits at position t - 1; the value PPO
    pairs with it must come from that same position, so changing idx[:, t] changes the log-prob
    but not its baseline. The raw per-position score values(idx)[:, t] has read idx[:, t] (the old
    pairing: a baseline that has seen the action it judges)."""
    model = tiny_gpt()
    vm = RewardModel(model, n_embd=16)
    a = torch.tensor([[1, 2, 3, 4, 5, 6]])
    j = 4
    b = a.clone(); b[0, j] = 9                                      # another action at position j
    with torch.no_grad():
        lp_a, lp_b = token_logprobs(model, a), token_logprobs(model, b)
        va, vb = vm.token_values(vm.hidden_states(a)), vm.token_values(vm.hidden_states(b))
        raw_a, raw_b = vm.values(a), vm.values(b)
    assert abs(lp_a[0, j] - lp_b[0, j]) > 1e-3                       # the log-prob judges token j ...
    assert torch.allclose(va[:, :j + 1], vb[:, :j + 1], atol=1e-6)    # ... its value has not seen it
    assert not torch.allclose(va[:, j + 1:], vb[:, j + 1:])           # later states have
    assert abs(raw_a[0, j] - raw_b[0, j]) > 1e-4                       # the misaligned pairing leaks
    assert torch.allclose(va[:, 1:], raw_a[:, :-1]) and va[0, 0] == 0  # out[:, t] = V(idx[:, :t])
    hidden, logits = vm.hidden_and_logits(a)
    assert torch.allclose(token_logprobs(model, a, logits=logits), lp_a)
    assert torch.equal(vm.token_values(hidden), va)


def test_token_values_train_the_head_and_validate_hidden():
    vm = RewardModel(tiny_gpt(), n_embd=16)
    idx = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        hidden = vm.hidden_states(idx)
    mask = torch.tensor([[0, 0, 1, 1]])
    v_loss = value_loss(vm.token_values(hidden), torch.zeros(1, 4), torch.ones(1, 4), mask)
    v_loss.backward()
    assert vm.head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="hidden"):
        vm.token_values(hidden[..., :8])
    with pytest.raises(ValueError, match="hidden"):
        vm.token_values(hidden[0])


# ------------------------------------------------------------------ reward model's trunk pass
def test_reward_model_reads_the_gpts_hidden_states_directly_without_hooks(monkeypatch):
    """For the book's GPT the trunk pass calls its hidden-state pass: no hook on the (shared)
    ln_f, the same hidden states ln_f gives inside forward, the same logits, and no output head
    when only hidden states are asked for."""
    trunk = tiny_gpt()
    rm = RewardModel(trunk, n_embd=16)
    idx = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    seen = []
    h = trunk.transformer.ln_f.register_forward_hook(lambda m, i, o: seen.append(o))
    logits_ref = trunk(idx)[0]
    h.remove()
    lm_head_calls = []
    trunk.lm_head.register_forward_hook(lambda m, i, o: lm_head_calls.append(1))

    def no_hooks(*args, **kwargs):
        raise AssertionError("the reward model must not hook the GPT")
    monkeypatch.setattr(trunk.transformer.ln_f, "register_forward_hook", no_hooks)
    assert torch.equal(rm.hidden_states(idx), seen[0]) and lm_head_calls == []
    hidden, logits = rm.hidden_and_logits(idx)
    assert torch.equal(hidden, seen[0]) and torch.equal(logits, logits_ref) and lm_head_calls == [1]
    with pytest.raises(ValueError, match="idx"):
        rm.values(torch.tensor([[1, 2, 99]]))                         # the GPT's own id check still runs


def test_reward_model_hook_path_for_other_trunks_is_checked_and_always_removed():
    from genai_helpers.models.transformer_lm import TransformerLM, TransformerLMConfig

    torch.manual_seed(0)
    lm = TransformerLM(TransformerLMConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    rm = RewardModel(lm, n_embd=16, hidden_module="ln_f")
    idx = torch.tensor([[1, 2, 3, 4]])
    hidden, logits = rm.hidden_and_logits(idx)
    assert torch.allclose(logits, lm(idx)) and torch.allclose(logits, lm.head(hidden), atol=1e-6)
    with pytest.raises(ValueError):
        rm.values(torch.ones(1, 9, dtype=torch.long))                 # longer than block_size: the trunk raises
    assert len(lm.ln_f._forward_hooks) == 0                           # the hook went with the failed pass
    with pytest.raises(ValueError, match="hidden_module"):            # the LM head: (B, T, vocab), not (B, T, C)
        RewardModel(lm, n_embd=16, hidden_module="head").values(idx)
    assert len(lm.head._forward_hooks) == 0

    class TwiceNormed(nn.Module):                                    # runs its hidden module twice
        def __init__(self):
            super().__init__()
            self.emb, self.ln = nn.Embedding(11, 16), nn.LayerNorm(16)

        def forward(self, idx):
            return self.ln(self.ln(self.emb(idx)))
    with pytest.raises(RuntimeError, match="exactly once"):
        RewardModel(TwiceNormed(), n_embd=16, hidden_module="ln").values(idx)
