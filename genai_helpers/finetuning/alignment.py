"""Aligning a language model: SFT, a reward model, PPO and DPO (chapter 06).

    from genai_helpers.finetuning.alignment import (sft_example, sft_loss, RewardModel, ranking_loss,
                                                    token_logprobs, gae_advantages, ppo_policy_loss, dpo_loss)

The functions work on any causal LM ``model(idx) -> logits (B, T, V)`` (or a tuple whose first
item is the logits, as :class:`genai_helpers.models.gpt.GPT` returns). Conventions:

- A *sequence* is ``prompt + response``; ``response_mask`` ``(B, T)`` is 1 on response tokens
  (the ``<|end|>`` token included) and 0 on prompt and padding.
- :func:`token_logprobs` returns ``log π(x_t | x_<t)`` aligned with the *input* positions
  ``(B, T)``; position 0 (no context) gets 0. Sum them under the mask for ``log π(y | x)``.

Pieces:

- **SFT** — :func:`sft_example` builds ``(input, target)`` with target ``-100`` on the prompt, so
  :func:`sft_loss` (cross-entropy, ``ignore_index=-100``) trains on response tokens only.
- **Reward model** — :class:`RewardModel` is an LM trunk plus a scalar head read at the last
  response token, trained with :func:`ranking_loss`: ``-log σ(r_chosen − r_rejected − margin)``
  (InstructGPT / Llama 2), or the hinge ``max(0, margin − (r_chosen − r_rejected))``.
- **PPO** — per-token rewards ``−β (log π − log π_ref)`` plus the reward model's score on the last
  token (:func:`kl_penalized_rewards`), values ``V(x_<t)`` of the state *before* each token, aligned
  with :func:`token_logprobs` (:meth:`RewardModel.token_values`), advantages by GAE
  (:func:`gae_advantages`), and the clipped surrogate ``−min(ρ A, clip(ρ, 1−ε, 1+ε) A)`` with
  ``ρ = π/π_old`` (:func:`ppo_policy_loss`).
- **DPO** — :func:`dpo_loss`: ``−log σ(β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])``
  (Rafailov et al., 2023); no reward model, no sampling.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_tensor
from ..data.batching import pad_batch  # noqa: F401  (re-exported: chapter 06 imports it from here)

__all__ = ["IGNORE_INDEX", "masked_mean", "masked_whiten", "sft_example", "sft_loss", "token_logprobs",
           "sequence_logprob", "RewardModel", "ranking_loss", "kl_penalized_rewards", "gae_advantages",
           "ppo_policy_loss", "value_loss", "dpo_loss", "sequence_kl", "sample_responses", "build_sequences",
           "AdaptiveKLController", "best_of_n_kl"]

IGNORE_INDEX = -100


def _logits(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    out = model(idx)
    return out[0] if isinstance(out, (tuple, list)) else out


def _check_same_shape(**tensors) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"shapes must match, got {shapes}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1 (over everything, or along ``dim``)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp_min(1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp_min(1.0)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(values − mean) / std`` over the masked entries (the usual advantage normalisation)."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + eps) * mask


# ----------------------------------------------------------------------------------------- SFT
def sft_example(prompt_ids: Sequence[int], response_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """One SFT training pair from token ids: ``input = (prompt + response)[:-1]``,
    ``target = (prompt + response)[1:]`` with ``-100`` wherever the target is a prompt token.

    The model is trained to predict the response only; predicting the user's prompt is not its job.
    """
    prompt_ids, response_ids = list(prompt_ids), list(response_ids)
    if not prompt_ids or not response_ids:
        raise ValueError(f"prompt_ids and response_ids must be non-empty, got lengths "
                         f"{len(prompt_ids)} and {len(response_ids)}")
    seq = prompt_ids + response_ids
    target = [IGNORE_INDEX] * (len(prompt_ids) - 1) + response_ids
    return seq[:-1], target


def sft_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over target positions that are not ``-100``.

    ``logits`` ``(B, T, V)``, ``targets`` ``(B, T)`` (already shifted: ``targets[:, t]`` is the token
    after ``input[:, t]``).
    """
    check_tensor("logits", logits, ndim=3)
    check_tensor("targets", targets, ndim=2)
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"logits (B, T, V) and targets (B, T) must agree, got {tuple(logits.shape)} and {tuple(targets.shape)}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)


# ------------------------------------------------------------------------- log-probabilities
def token_logprobs(model: nn.Module, idx: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
    """``out[:, t] = log π(idx[:, t] | idx[:, :t])`` for ``t >= 1``; ``out[:, 0] = 0``. Shape ``(B, T)``.

    Pass ``logits`` (``(B, T, V)`` from ``model(idx)``) to reuse a forward pass already made.
    """
    check_tensor("idx", idx, ndim=2)
    logits = _logits(model, idx) if logits is None else logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, idx[:, 1:, None]).squeeze(-1)
    return F.pad(logp, (1, 0))


def sequence_logprob(model: nn.Module, idx: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """``log π(response | prompt)`` per row, ``(B,)``: token log-probs summed under ``response_mask``."""
    _check_same_shape(idx=idx, response_mask=response_mask)
    return (token_logprobs(model, idx) * response_mask).sum(-1)


# ---------------------------------------------------------------------------- reward model
class RewardModel(nn.Module):
    """A language-model trunk plus a linear head that gives one scalar per position.

    ``trunk`` is any causal LM. Its final hidden states ``(B, T, C)`` (``hidden[:, t]`` has read
    ``idx[:, :t+1]``) come straight from the book's GPT (:class:`~genai_helpers.models.gpt.GPT`,
    whose ``_hidden`` pass ends in ``transformer.ln_f``); any other trunk is run whole and the
    output of the module named ``hidden_module`` is read by a forward hook that lives only for that
    pass. ``forward(idx, last_index)`` returns the score ``(B,)`` at ``last_index`` (the last
    response token of each row); ``values(idx)`` the per-position scores ``(B, T)``.

    As PPO's value function, use :meth:`token_values`: ``values(idx)[:, t]`` has already seen
    ``idx[:, t]``, the very token whose advantage it would be the baseline for.
    """

    def __init__(self, trunk: nn.Module, n_embd: int, hidden_module: str = "transformer.ln_f"):
        super().__init__()
        if not isinstance(trunk, nn.Module):
            raise TypeError(f"trunk must be an nn.Module, got {type(trunk).__name__}")
        if hidden_module not in dict(trunk.named_modules()):
            raise ValueError(f"hidden_module must name a module of trunk, got {hidden_module!r}")
        self.trunk = trunk
        self.hidden_module = hidden_module
        self.head = nn.Linear(n_embd, 1)
        nn.init.normal_(self.head.weight, std=1.0 / (n_embd + 1))
        nn.init.zeros_(self.head.bias)

    def _direct(self) -> bool:
        """The book's GPT gives its final hidden states directly: no hook on a shared module."""
        from ..models.gpt import GPT
        return isinstance(self.trunk, GPT) and self.hidden_module == "transformer.ln_f"

    def _trunk_pass(self, idx: torch.Tensor, need_logits: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One trunk forward pass; returns ``(hidden (B, T, C), logits (B, T, V) or None)``.

        For the book's GPT: ``trunk._hidden(idx)`` (embeddings -> blocks -> ``ln_f``), and
        ``trunk.lm_head`` on it only when the logits are wanted (what ``GPT.forward`` computes).
        For other trunks a forward hook on ``hidden_module`` reads its output during one full
        forward pass and is removed in a ``finally``, so it never outlives the pass, not even when
        the trunk raises: a hook left on the trunk would follow it into every ``copy.deepcopy``
        (chapter 06 copies the SFT model into the PPO policy, and the value model shares the SFT
        model as its trunk) and would keep the last activations alive. The module must run exactly
        once and give ``(B, T, n_embd)``.
        """
        check_tensor("idx", idx, ndim=2)
        if self._direct():
            self.trunk._check_idx(idx)
            hidden = self.trunk._hidden(idx)
            return hidden, (self.trunk.lm_head(hidden) if need_logits else None)
        captured: list = []
        handle = self.trunk.get_submodule(self.hidden_module).register_forward_hook(
            lambda module, inputs, output: captured.append(output))
        try:
            logits = _logits(self.trunk, idx)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(f"the hidden module {self.hidden_module!r} must run exactly once in the trunk's "
                               f"forward pass, it ran {len(captured)} times")
        hidden = captured[0]
        want = (*idx.shape, self.head.in_features)
        if not torch.is_tensor(hidden) or tuple(hidden.shape) != want:
            got = tuple(hidden.shape) if torch.is_tensor(hidden) else type(hidden).__name__
            raise ValueError(f"hidden_module {self.hidden_module!r} must output hidden states of shape (B, T, n_embd) "
                             f"= {want}, got {got}")
        return hidden, logits

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``(B, T, C)`` of the trunk for ``idx`` ``(B, T)``."""
        return self._trunk_pass(idx, need_logits=False)[0]

    def hidden_and_logits(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One trunk pass giving both the hidden states ``(B, T, C)`` and the LM logits ``(B, T, V)``
        (PPO reads the frozen reference's log-probabilities and its value features together)."""
        return self._trunk_pass(idx)

    def values(self, idx: torch.Tensor) -> torch.Tensor:
        """Scalar score at every position, ``(B, T)``: ``values(idx)[:, t]`` has read ``idx[:, :t+1]``."""
        return self.head(self.hidden_states(idx)).squeeze(-1)

    def token_values(self, hidden: torch.Tensor) -> torch.Tensor:
        """PPO's value baseline per token, aligned with :func:`token_logprobs`, ``(B, T)``.

        ``out[:, t] = head(hidden[:, t−1]) = V(idx[:, :t])``: the value of the state *before*
        token ``t``, read at the position whose logits give ``log π(idx[:, t] | idx[:, :t])``, so
        the baseline never sees the action it judges. ``out[:, 0] = 0`` (like the log-probs; position
        0 is never a response token). ``hidden`` ``(B, T, C)`` from :meth:`hidden_states` or
        :meth:`hidden_and_logits`; gradients reach the head (and the trunk, if ``hidden`` carries them).
        """
        check_tensor("hidden", hidden, ndim=3)
        if hidden.shape[-1] != self.head.in_features:
            raise ValueError(f"hidden must be (B, T, n_embd={self.head.in_features}), got {tuple(hidden.shape)}")
        return F.pad(self.head(hidden[:, :-1]).squeeze(-1), (1, 0))

    def forward(self, idx: torch.Tensor, last_index: torch.Tensor | None = None) -> torch.Tensor:
        """Score ``(B,)`` read at ``last_index`` ``(B,)`` (default: the last position)."""
        v = self.values(idx)
        if last_index is None:
            return v[:, -1]
        return v.gather(1, last_index.view(-1, 1).long()).squeeze(1)


def ranking_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: float | torch.Tensor = 0.0,
                 kind: str = "logsigmoid") -> torch.Tensor:
    """Pairwise loss for a reward model: the chosen response should score above the rejected one.

    ``kind="logsigmoid"``: ``mean(−log σ(r_c − r_r − margin))`` (Bradley–Terry; with a margin as in
    Llama 2). ``kind="hinge"``: ``mean(max(0, margin − (r_c − r_r)))``, equal to
    ``torch.nn.MarginRankingLoss(margin)(r_c, r_r, 1)``. ``chosen``/``rejected`` ``(B,)``;
    ``margin`` a float or a ``(B,)`` tensor (e.g. larger for clearer preferences).
    """
    _check_same_shape(chosen=chosen, rejected=rejected)
    diff = chosen - rejected
    if kind == "logsigmoid":
        return -F.logsigmoid(diff - margin).mean()
    if kind == "hinge":
        return torch.clamp(margin - diff, min=0).mean()
    raise ValueError(f"kind must be 'logsigmoid' or 'hinge', got {kind!r}")


# ------------------------------------------------------------------------------------- PPO
def kl_penalized_rewards(score: torch.Tensor, logp: torch.Tensor, logp_ref: torch.Tensor,
                         response_mask: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards for PPO: ``−β (log π − log π_ref)`` on every response token, plus the
    sequence ``score`` ``(B,)`` on the last response token. Returns ``(rewards, kl)`` both ``(B, T)``,
    where ``kl = (log π − log π_ref) · mask`` (its row sum estimates KL(π ‖ π_ref) for that sample)."""
    _check_same_shape(logp=logp, logp_ref=logp_ref, response_mask=response_mask)
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    mask = response_mask.to(logp.dtype)
    kl = (logp - logp_ref) * mask
    rewards = -beta * kl
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = (positions * (mask > 0)).amax(1)                              # index of the last response token
    rewards = rewards.scatter_add(1, last[:, None], score.to(rewards.dtype)[:, None])
    return rewards, kl


def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, response_mask: torch.Tensor,
                   gamma: float = 1.0, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016) over response tokens.

    ``δ_t = r_t + γ V_{t+1} − V_t`` (``V`` after the last response token is 0) and
    ``A_t = δ_t + γλ A_{t+1}``; returns ``(advantages, returns = A + V)``, both ``(B, T)``, zero off
    the mask. ``λ = 1`` gives Monte-Carlo returns minus the value baseline, ``λ = 0`` one-step TD.
    The response tokens of a row must be contiguous (prompt, then response, then padding).
    """
    _check_same_shape(rewards=rewards, values=values, response_mask=response_mask)
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")
    mask = response_mask.to(values.dtype)
    values = values * mask
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])
    next_adv = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        advantages[:, t] = adv * mask[:, t]
        next_value = torch.where(mask[:, t] > 0, values[:, t], next_value)
        next_adv = torch.where(mask[:, t] > 0, adv, next_adv)
    return advantages, (advantages + values) * mask


def ppo_policy_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                    response_mask: torch.Tensor, clip_eps: float = 0.2) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate (Schulman et al., 2017), averaged over response tokens.

    ``ρ = exp(logp − logp_old)``; loss ``= −mean(min(ρ A, clip(ρ, 1−ε, 1+ε) A))``. Once ρ leaves
    ``[1−ε, 1+ε]`` in the direction the advantage favours, the token's gradient is exactly zero:
    one batch of samples cannot push the policy far. Returns ``(loss, stats)`` with the clipped
    fraction and an estimate of KL(π_old ‖ π).
    """
    _check_same_shape(logp=logp, logp_old=logp_old, advantages=advantages, response_mask=response_mask)
    if not 0.0 < clip_eps < 1.0:
        raise ValueError(f"clip_eps must be in (0, 1), got {clip_eps}")
    ratio = torch.exp(logp - logp_old)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    loss = -masked_mean(torch.minimum(unclipped, clipped), response_mask)
    with torch.no_grad():
        stats = {"clip_frac": float(masked_mean((clipped < unclipped).float(), response_mask)),
                 "approx_kl": float(masked_mean(0.5 * (logp - logp_old) ** 2, response_mask))}
    return loss, stats


def value_loss(values: torch.Tensor, values_old: torch.Tensor, returns: torch.Tensor,
               response_mask: torch.Tensor, clip: float = 0.2) -> torch.Tensor:
    """Clipped value loss: ``0.5 · mean(max((V − R)², (V_old + clip(V − V_old, ±c) − R)²))``."""
    _check_same_shape(values=values, values_old=values_old, returns=returns, response_mask=response_mask)
    v_clipped = values_old + torch.clamp(values - values_old, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (v_clipped - returns) ** 2), response_mask)


class AdaptiveKLController:
    """The KL coefficient of Ziegler et al. (2019), adapted toward a target KL per response.

    After each batch with measured KL ``kl`` (nats per response): ``e = clip(kl / target − 1, −0.2, 0.2)``
    and ``beta ← beta · (1 + e · n_steps / horizon)``: beta grows while the policy drifts past the
    target and shrinks while it stays below, by at most 20 % per ``horizon`` batches.
    """

    def __init__(self, init_beta: float, target: float, horizon: int = 100):
        if not init_beta > 0:
            raise ValueError(f"init_beta must be > 0, got {init_beta}")
        if not target > 0:
            raise ValueError(f"target must be > 0 (nats per response), got {target}")
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
        self.beta, self.target, self.horizon = float(init_beta), float(target), horizon

    def update(self, kl: float, n_steps: int = 1) -> float:
        """Adapt ``beta`` to the KL just measured; returns the new value."""
        error = min(max(float(kl) / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_steps / self.horizon
        return self.beta


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n ‖ base) = log n − (n − 1)/n in nats: the analytic value for a reward that ties no
    two responses (Stiennon et al., 2020; an upper bound otherwise, Beirami et al., 2024)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    import math
    return math.log(n) - (n - 1) / n


# ------------------------------------------------------------------------------------- DPO
def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct preference optimisation loss from sequence log-probabilities ``(B,)``.

    ``r_w = β (log π(y_w|x) − log π_ref(y_w|x))``, ``r_l`` likewise; loss ``= mean(−log σ(r_w − r_l))``.
    Returns ``(loss, r_w, r_l)``; ``r_w − r_l > 0`` means the policy already prefers the chosen
    response more than the reference does (loss below ``log 2``).
    """
    _check_same_shape(policy_chosen=policy_chosen, policy_rejected=policy_rejected,
                      ref_chosen=ref_chosen, ref_rejected=ref_rejected)
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    r_w = beta * (policy_chosen - ref_chosen)
    r_l = beta * (policy_rejected - ref_rejected)
    return -F.logsigmoid(r_w - r_l).mean(), r_w.detach(), r_l.detach()


def sequence_kl(logp: torch.Tensor, logp_ref: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Per-sample estimate of KL(π ‖ π_ref) from tokens *sampled from π*: ``Σ_t (log π − log π_ref)``, ``(B,)``."""
    _check_same_shape(logp=logp, logp_ref=logp_ref, response_mask=response_mask)
    return ((logp - logp_ref) * response_mask).sum(-1)


# ------------------------------------------------------------------ sampling and batching
@torch.no_grad()
def sample_responses(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos_id: int, *,
                     temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                     repetition_penalty: float = 1.0, generator: torch.Generator | None = None) -> list[list[int]]:
    """Sample one response per prompt (lists of ids) with ``model.generate`` (the book's GPT).

    Prompts of equal length are generated together (the GPT has no padding mask, so a batch must
    share its length). Each response is cut after its first ``eos_id`` (kept); a response that
    never produced it is ``max_new_tokens`` long. The order of ``prompts`` is kept.
    """
    if not prompts:
        raise ValueError("prompts must contain at least one prompt")
    device = next(model.parameters()).device
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p), []).append(i)
    out: list[list[int]] = [[] for _ in prompts]
    for length in sorted(groups):
        rows = groups[length]
        idx = torch.tensor([list(prompts[i]) for i in rows], dtype=torch.long, device=device)
        full = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                              repetition_penalty=repetition_penalty, eos_token_id=eos_id, generator=generator)
        for r, seq in zip(rows, full[:, length:].tolist()):
            out[r] = seq[:seq.index(eos_id) + 1] if eos_id in seq else seq
    return out


def build_sequences(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
                    pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Join prompts and responses into ``(idx, response_mask, last_index)``.

    ``idx`` ``(B, T)`` right-padded with ``pad_id``; ``response_mask`` ``(B, T)`` is 1 on response
    tokens; ``last_index`` ``(B,)`` is the position of each row's last response token (where a
    reward model reads its score). Empty responses are not allowed.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"prompts and responses must have the same length, got {len(prompts)} and {len(responses)}")
    if any(len(r) == 0 for r in responses):
        raise ValueError("every response must hold at least one token")
    rows = [list(p) + list(r) for p, r in zip(prompts, responses)]
    idx = pad_batch(rows, pad_id)
    mask = torch.zeros_like(idx)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        mask[i, len(p):len(p) + len(r)] = 1
    last = torch.tensor([len(p) + len(r) - 1 for p, r in zip(prompts, responses)], dtype=torch.long)
    return idx, mask, last
