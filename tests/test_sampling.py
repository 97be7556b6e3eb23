"""Decoding: filters equal transformers' logits processors; sampling draws from the filtered
distribution; beam search finds what exhaustive search finds."""
import itertools
import math

import pytest
import torch
from transformers import (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
                          TopPLogitsWarper)

from genai_helpers.sampling import (apply_repetition_penalty, beam_search, generate, lm_step_fn, process_logits,
                                    sample_next_token, top_k_filter, top_p_filter)


def random_logits(b=6, v=50, seed=0):
    return torch.randn(b, v, generator=torch.Generator().manual_seed(seed)) * 2.5


# ----------------------------------------------------------------------------------------- filters

@pytest.mark.parametrize("k", [1, 3, 10, 50, 80])
def test_top_k_equals_transformers_warper(k):
    logits = random_logits()
    ref = TopKLogitsWarper(top_k=k)(torch.zeros(6, 1, dtype=torch.long), logits.clone())
    assert torch.equal(top_k_filter(logits, k), ref)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9, 0.99, 1.0])
def test_top_p_equals_transformers_warper(p):
    for seed in range(5):
        logits = random_logits(seed=seed)
        ref = TopPLogitsWarper(top_p=p)(torch.zeros(6, 1, dtype=torch.long), logits.clone())
        assert torch.equal(top_p_filter(logits, p), ref), (p, seed)


def test_top_p_equals_transformers_on_flat_large_vocabularies():
    # Many near-equal probabilities put tokens right at the p boundary: the float arithmetic must match too.
    for seed in range(10):
        logits = torch.randn(8, 4000, generator=torch.Generator().manual_seed(seed)) * 0.3
        for p in (0.5, 0.9, 0.95):
            assert torch.equal(top_p_filter(logits, p), TopPLogitsWarper(top_p=p)(None, logits.clone()))


def test_top_p_keeps_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = lambda p: torch.isfinite(top_p_filter(logits, p)).tolist()  # noqa: E731
    assert kept(0.5) == [True, False, False, False]        # 0.5 alone reaches 0.5
    assert kept(0.51) == [True, True, False, False]
    assert kept(0.8) == [True, True, False, False]
    assert kept(0.81) == [True, True, True, False]
    assert kept(1e-6) == [True, False, False, False]       # never empty
    assert kept(1.0) == [True, True, True, True]


def test_filters_work_on_the_last_dimension_of_batched_logits():
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(1))
    k_out, p_out = top_k_filter(logits, 2), top_p_filter(logits, 0.6)
    assert k_out.shape == p_out.shape == logits.shape
    for i, j in itertools.product(range(2), range(3)):
        assert torch.equal(k_out[i, j], top_k_filter(logits[i, j], 2))
        assert torch.equal(p_out[i, j], top_p_filter(logits[i, j], 0.6))
    assert (torch.isfinite(k_out).sum(-1) == 2).all()


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([1.0, 5.0, 3.0, 4.0, 2.0])
    assert torch.isfinite(top_k_filter(logits, 2)).tolist() == [False, True, False, True, False]
    assert torch.equal(top_k_filter(logits, 2)[[1, 3]], logits[[1, 3]])     # kept values unchanged


@pytest.mark.parametrize("penalty", [0.5, 1.0, 1.3, 2.0])
def test_repetition_penalty_equals_transformers_processor(penalty):
    logits = random_logits()
    prev = torch.randint(0, 50, (6, 9), generator=torch.Generator().manual_seed(2))
    ref = RepetitionPenaltyLogitsProcessor(penalty=penalty)(prev, logits.clone())
    assert torch.allclose(apply_repetition_penalty(logits, prev, penalty), ref)


def test_repetition_penalty_lowers_repeated_tokens_whatever_their_sign():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1]]), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0]]


@pytest.mark.parametrize("t", [0.3, 1.0, 1.7])
def test_temperature_equals_transformers_warper(t):
    logits = random_logits()
    ref = TemperatureLogitsWarper(t)(torch.zeros(6, 1, dtype=torch.long), logits.clone())
    assert torch.allclose(process_logits(logits, temperature=t), ref)


def test_full_chain_equals_transformers_processors_in_generate_order():
    logits = random_logits(seed=3)
    prev = torch.randint(0, 50, (6, 5), generator=torch.Generator().manual_seed(4))
    ref = logits.clone()
    for proc in (RepetitionPenaltyLogitsProcessor(1.4), TemperatureLogitsWarper(0.7), TopKLogitsWarper(12),
                 TopPLogitsWarper(0.8)):
        ref = proc(prev, ref)
    ours = process_logits(logits, 0.7, 12, 0.8, 1.4, prev)
    assert torch.equal(torch.isfinite(ours), torch.isfinite(ref))
    assert torch.allclose(ours[torch.isfinite(ours)], ref[torch.isfinite(ref)])


# ---------------------------------------------------------------------------------------- sampling

def test_temperature_zero_is_greedy():
    logits = random_logits()
    assert torch.equal(sample_next_token(logits, temperature=0), logits.argmax(-1))
    assert torch.equal(sample_next_token(logits, temperature=0, top_k=3, top_p=0.2), logits.argmax(-1))


def test_greedy_with_repetition_penalty_avoids_the_repeated_argmax():
    logits = torch.tensor([[3.0, 2.5, 0.0]])
    assert sample_next_token(logits, temperature=0).item() == 0
    assert sample_next_token(logits, temperature=0, repetition_penalty=2.0, previous_tokens=torch.tensor([[0]])).item() == 1


def test_samples_follow_the_filtered_distribution():
    logits = torch.log(torch.tensor([0.4, 0.3, 0.2, 0.06, 0.04]))
    n = 40_000
    g = torch.Generator().manual_seed(0)
    draws = sample_next_token(logits.expand(n, -1), top_p=0.85, generator=g)
    freq = torch.bincount(draws, minlength=5).float() / n
    expected = torch.tensor([0.4, 0.3, 0.2, 0.0, 0.0]) / 0.9       # nucleus {0, 1, 2}, renormalised
    assert freq[3:].sum() == 0
    assert torch.allclose(freq, expected, atol=0.01)


def test_high_temperature_flattens_and_low_temperature_sharpens():
    logits = torch.tensor([2.0, 1.0, 0.0])
    entropy = lambda t: -(torch.softmax(process_logits(logits, t), -1) * torch.log_softmax(process_logits(logits, t), -1)).sum()  # noqa: E731
    assert entropy(0.25) < entropy(1.0) < entropy(4.0) < math.log(3)


def test_same_generator_seed_gives_same_tokens():
    logits = random_logits()
    a = sample_next_token(logits, top_k=20, generator=torch.Generator().manual_seed(7))
    b = sample_next_token(logits, top_k=20, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (6,)
    assert sample_next_token(logits[0], generator=torch.Generator().manual_seed(7)).shape == ()


@pytest.mark.parametrize("kwargs, name", [
    (dict(top_k=0), "k"), (dict(top_k=-3), "k"), (dict(top_p=0.0), "p"), (dict(top_p=1.5), "p"),
    (dict(top_p=-0.1), "p"), (dict(temperature=-1.0), "temperature"), (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(repetition_penalty=-1.0), "repetition_penalty")])
def test_invalid_settings_raise_value_error_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sample_next_token(random_logits(), previous_tokens=torch.zeros(6, 1, dtype=torch.long), **kwargs)


def test_filter_functions_validate_their_arguments():
    with pytest.raises(ValueError, match="k"):
        top_k_filter(random_logits(), 0)
    with pytest.raises(ValueError, match="p"):
        top_p_filter(random_logits(), 0)
    with pytest.raises(ValueError, match="p"):
        top_p_filter(random_logits(), 1.01)
    with pytest.raises(ValueError, match="repetition_penalty"):
        apply_repetition_penalty(random_logits(), torch.zeros(6, 1, dtype=torch.long), 0)
    with pytest.raises(TypeError, match="logits"):
        top_k_filter([1.0, 2.0], 1)
    with pytest.raises(ValueError, match="previous_tokens"):
        apply_repetition_penalty(random_logits(), torch.tensor([[99]]), 1.2)


# ------------------------------------------------------------------------------- generate and beams

def markov_step_fn(table):
    """A toy 'model': next-token logits depend only on the last token (row of ``table``)."""
    return lambda ids: table[ids[:, -1]]


def test_generate_greedy_follows_the_argmax_chain_and_stops_at_eos():
    table = torch.full((4, 4), -5.0)
    table[0, 1] = table[1, 2] = table[2, 3] = table[3, 3] = 5.0
    out = generate(markov_step_fn(table), torch.tensor([[0]]), 10, temperature=0, eos_id=3)
    assert out.tolist() == [[0, 1, 2, 3]]
    with pytest.raises(TypeError, match="settings"):
        generate(markov_step_fn(table), torch.tensor([[0]]), 2, top_q=3)


def exhaustive_best(step, prompt, V, length, length_penalty):
    best, best_seq = -math.inf, None
    for seq in itertools.product(range(V), repeat=length):
        ids, lp = list(prompt), 0.0
        for tok in seq:
            lp += torch.log_softmax(step(torch.tensor([ids])).double(), -1)[0, tok].item()
            ids.append(tok)
        score = lp / length ** length_penalty
        if score > best:
            best, best_seq = score, list(seq)
    return best_seq, best


def test_wide_beam_finds_the_exhaustive_optimum_and_width_one_is_greedy():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(4, 4, generator=g) * 2
    step = markov_step_fn(table)
    seq, score = exhaustive_best(step, [0], 4, 3, 1.0)
    beams = beam_search(step, [0], beam_width=64, max_new_tokens=3)
    assert beams[0].tokens == seq and math.isclose(beams[0].score, score, rel_tol=1e-9)
    assert all(a.score >= b.score for a, b in zip(beams, beams[1:]))
    greedy = generate(step, torch.tensor([[0]]), 3, temperature=0)[0, 1:].tolist()
    assert beam_search(step, [0], beam_width=1, max_new_tokens=3)[0].tokens == greedy


def test_beam_search_beats_greedy_when_the_best_first_step_is_a_trap():
    # From token 0, token 1 looks best (0.6) but is followed by a flat distribution; token 2 (0.4)
    # is followed by a near-certain token. Greedy takes 1; beam search finds 0 -> 2 -> 3.
    probs = torch.tensor([[0.0, 0.6, 0.4, 0.0], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.02, 0.98], [0.25] * 4])
    step = markov_step_fn(torch.log(probs + 1e-12))
    greedy = generate(step, torch.tensor([[0]]), 2, temperature=0)[0, 1:].tolist()
    best = beam_search(step, [0], beam_width=2, max_new_tokens=2, length_penalty=0.0)[0]
    assert greedy[0] == 1 and best.tokens == [2, 3]
    assert math.isclose(best.log_prob, math.log(0.4 * 0.98), rel_tol=1e-6)


def test_length_normalisation_changes_which_finished_beam_wins():
    # Token 3 is eos. Stopping at once: log 0.5 = -0.69. Going on 0 -> 1 -> 2 -> eos:
    # log 0.5 + log 0.8 + log 1 = -0.92 in total, but -0.31 per token.
    probs = torch.full((4, 4), 1e-9)
    probs[0, 3], probs[0, 1] = 0.5, 0.5
    probs[1, 2], probs[1, 3] = 0.8, 0.2
    probs[2, 3] = 1.0
    step = markov_step_fn(torch.log(probs))
    raw = beam_search(step, [0], beam_width=3, max_new_tokens=4, eos_id=3, length_penalty=0.0)[0]
    normed = beam_search(step, [0], beam_width=3, max_new_tokens=4, eos_id=3, length_penalty=1.0)[0]
    assert raw.tokens == [3] and math.isclose(raw.score, math.log(0.5), rel_tol=1e-6)
    assert normed.tokens == [1, 2, 3] and math.isclose(normed.score, math.log(0.4) / 3, rel_tol=1e-6)


def test_beam_search_validates_arguments():
    step = markov_step_fn(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(step, [0], beam_width=0, max_new_tokens=2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        beam_search(step, [0], beam_width=2, max_new_tokens=0)
    with pytest.raises(ValueError, match="length_penalty"):
        beam_search(step, [0], beam_width=2, max_new_tokens=2, length_penalty=-1.0)
    with pytest.raises(ValueError, match="num_return"):
        beam_search(step, [0], beam_width=2, max_new_tokens=2, num_return=3)
    with pytest.raises(ValueError, match="prompt"):
        beam_search(step, [], beam_width=2, max_new_tokens=2)


def test_lm_step_fn_crops_context_and_suppresses_tokens():
    from genai_helpers.models import TransformerLM, TransformerLMConfig

    torch.manual_seed(0)
    model = TransformerLM(TransformerLMConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16)).eval()
    step = lm_step_fn(model, suppress_tokens=[1])
    ids = torch.randint(0, 20, (2, 12))
    out = step(ids)
    assert out.shape == (2, 20) and torch.isinf(out[:, 1]).all()
    with torch.no_grad():
        expected = model(ids[:, -8:])[:, -1]
    expected[:, 1] = float("-inf")
    assert torch.equal(out, expected)
