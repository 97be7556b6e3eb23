"""Chapter 09 serving package: batching engine and schedulers, paged KV cache, quantisation,
pruning, distillation, speculative decoding (its output distribution equals the target's), cost."""
import math
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genai_helpers.models.gpt import GPT, GPTConfig
from genai_helpers.serving import batching, cost, distillation, paged_kv, pruning, quantization, speculative, workload
from genai_helpers.serving.engine import BatchEngine


def tiny_gpt(seed=0, vocab=40, n_layer=2, n_embd=32, block=64, pos_encoding="learned"):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=2, n_embd=n_embd,
                         pos_encoding=pos_encoding)).eval()


# ---- workload ---------------------------------------------------------------------------------
def test_poisson_arrivals_have_the_requested_rate_and_lengths_stay_in_range():
    reqs = workload.poisson_requests(4000, 5.0, prompt_len=(3, 9), output_len=(2, 50), vocab_size=30, seed=3)
    gaps = np.diff([r.arrival for r in reqs])
    assert reqs[0].arrival == 0.0 and (gaps >= 0).all()
    assert abs(gaps.mean() - 0.2) < 0.01                     # mean gap 1/rate (std err ~0.003)
    assert abs(gaps.std() - 0.2) < 0.015                     # exponential: std = mean
    assert all(3 <= r.prompt_len <= 9 and 2 <= r.max_new_tokens <= 50 for r in reqs)
    out = np.array([r.max_new_tokens for r in reqs])
    assert np.median(out) < out.mean()                       # long tail: many short, few long
    again = workload.poisson_requests(4000, 5.0, prompt_len=(3, 9), output_len=(2, 50), vocab_size=30, seed=3)
    assert [r.arrival for r in again] == [r.arrival for r in reqs]
    burst = workload.poisson_requests(5, float("inf"), vocab_size=10)
    assert [r.arrival for r in burst] == [0.0] * 5


def test_prompts_come_from_the_token_stream():
    stream = torch.arange(1000)
    for r in workload.poisson_requests(20, 1.0, prompt_len=(5, 8), token_stream=stream, seed=0):
        assert torch.equal(r.prompt, torch.arange(int(r.prompt[0]), int(r.prompt[0]) + r.prompt_len))


def test_workload_validates_arguments():
    with pytest.raises(ValueError, match="rate"):
        workload.poisson_requests(3, 0.0, vocab_size=5)
    with pytest.raises(ValueError, match="vocab_size"):
        workload.poisson_requests(3, 1.0)
    with pytest.raises(ValueError, match="kind"):
        workload.sample_lengths(3, 1, 5, kind="zipf")


# ---- engine and schedulers ----------------------------------------------------------------------
@pytest.mark.parametrize("pos_encoding", ["learned", "rope", "sinusoidal"])
def test_batch_engine_matches_full_forward_for_ragged_rows_and_after_removal(pos_encoding):
    model = tiny_gpt(pos_encoding=pos_encoding)
    eng = BatchEngine(model, max_batch=3, max_len=32)
    seqs = [torch.randint(0, 40, (n,), generator=torch.Generator().manual_seed(n)) for n in (3, 7, 5)]
    for s in seqs:
        _, logits = eng.add(s)
        assert torch.allclose(logits, model(s[None])[0][0, -1], atol=1e-5)
    for step in range(4):
        if step == 2:                       # the first request leaves; the last slot moves into slot 0
            assert eng.remove(0) == 2
            seqs = [seqs[2], seqs[1]]
        nxt = torch.tensor([(7 * step + j) % 40 for j in range(len(seqs))])
        logits = eng.step(nxt)
        seqs = [torch.cat([s, nxt[j:j + 1]]) for j, s in enumerate(seqs)]
        for j, s in enumerate(seqs):
            assert torch.allclose(logits[j], model(s[None])[0][0, -1], atol=1e-5)


@pytest.mark.parametrize("policy,pos_encoding", [("static", "learned"), ("continuous", "learned"),
                                                 ("continuous", "rope")])
def test_schedulers_give_each_request_the_models_own_greedy_answer(policy, pos_encoding):
    model = tiny_gpt(1, pos_encoding=pos_encoding)
    reqs = workload.poisson_requests(9, 200.0, prompt_len=(2, 10), output_len=(1, 20), vocab_size=40, seed=2)
    rep = batching.serve(model, reqs, policy=policy, max_batch=3)
    for r, out in zip(reqs, rep.outputs):
        ref = model.generate(r.prompt[None], r.max_new_tokens, temperature=0)[0, r.prompt_len:].tolist()
        assert out == ref
    assert rep.tokens.sum() == sum(r.max_new_tokens for r in reqs)
    assert (rep.ttft >= 0).all() and (rep.latency >= rep.ttft).all()


def _three_requests():
    p = torch.tensor([1, 2])
    return [workload.Request(0, 0.0, p, 4), workload.Request(1, 0.0, p, 1), workload.Request(2, 0.0, p, 1)]


def test_continuous_and_static_timelines_by_hand():
    """Unit cost per prefill and per decoding step; r0 wants 4 tokens, r1 and r2 one each, batch 2.
    continuous: prefill r0 (t=1), r1 (t=2, done), r2 (t=3, done), decode t=4,5,6 -> r0 done at 6.
    static: [r0, r1]: prefill t=1, t=2 (r1 done), decode t=3,4,5 (r1's row wasted 3 times), then r2 at t=6."""
    model = tiny_gpt()
    unit = lambda kind, n: 1.0  # noqa: E731
    cont = batching.serve(model, _three_requests(), policy="continuous", max_batch=2, step_cost=unit)
    assert cont.ttft.tolist() == [1, 2, 3] and cont.latency.tolist() == [6, 2, 3]
    assert cont.wasted_row_steps == 0 and cont.makespan == 6 and cont.throughput == 1.0
    stat = batching.serve(model, _three_requests(), policy="static", max_batch=2, step_cost=unit)
    assert stat.ttft.tolist() == [1, 2, 6] and stat.latency.tolist() == [5, 2, 6]
    assert stat.wasted_row_steps == 3
    assert stat.summary()["latency_p50_s"] == 5.0


def test_idle_server_waits_for_the_next_arrival():
    model = tiny_gpt()
    p = torch.tensor([3, 4])
    reqs = [workload.Request(0, 0.0, p, 2), workload.Request(1, 10.0, p, 2)]
    rep = batching.serve(model, reqs, policy="continuous", max_batch=4, step_cost=lambda k, n: 1.0)
    assert rep.ttft.tolist() == [1, 1] and rep.latency.tolist() == [2, 2] and rep.makespan == 12


def test_serve_validates_arguments():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="policy"):
        batching.serve(model, _three_requests(), policy="fifo")
    with pytest.raises(ValueError, match="max_len"):
        batching.serve(model, [workload.Request(0, 0.0, torch.tensor([1] * 10), 60)])


# ---- paged KV cache -----------------------------------------------------------------------------
def test_block_allocator_tables_growth_and_reuse():
    a = paged_kv.BlockAllocator(num_blocks=6, block_size=4)
    assert a.allocate("x", 5) == [0, 1]                       # ceil(5/4) = 2 blocks, lowest ids first
    assert a.allocate("y", 4) == [2]
    assert a.append("y") == [3]                               # the 5th token opens a block
    assert a.append("x", 3) == [] and a.lengths["x"] == 8     # fills block 1 exactly
    assert a.slot("x", 6) == (1, 2) and a.slot("y", 4) == (3, 0)
    assert a.stats() == {"sequences": 2, "tokens": 13, "reserved_slots": 16, "used_blocks": 4,
                         "free_blocks": 2, "waste": 1 - 13 / 16}
    a.free("x")
    assert a.allocate("z", 9) == [0, 1, 4]
    with pytest.raises(paged_kv.OutOfBlocks):
        a.append("z", 8)                                      # needs 2 more blocks, 1 is free
    with pytest.raises(ValueError, match="already"):
        a.allocate("z", 1)


def test_paged_store_gathers_what_a_contiguous_cache_holds():
    torch.manual_seed(0)
    store = paged_kv.PagedKVStore(paged_kv.BlockAllocator(10, 3), n_head=2, head_dim=4)
    ref = {s: ([], []) for s in "abc"}
    for step, (seq, t) in enumerate([("a", 4), ("b", 2), ("a", 1), ("c", 5), ("b", 3), ("a", 2)]):
        k, v = torch.randn(2, t, 4), torch.randn(2, t, 4)
        store.write(seq, k, v)
        ref[seq][0].append(k); ref[seq][1].append(v)
        if step == 3:
            store.free("c"); ref["c"] = ([], [])
    store.write("c", *(x := (torch.randn(2, 2, 4), torch.randn(2, 2, 4))))   # reuses c's freed blocks
    ref["c"] = ([x[0]], [x[1]])
    for seq in "abc":
        k, v = store.gather(seq)
        assert torch.equal(k, torch.cat(ref[seq][0], 1)) and torch.equal(v, torch.cat(ref[seq][1], 1))


def test_compare_reservations_by_hand():
    rep = paged_kv.compare_reservations([5, 16, 1], max_len=16, block_size=4)
    assert (rep.tokens, rep.contiguous_slots, rep.paged_slots) == (22, 48, 8 + 16 + 4)
    assert rep.contiguous_waste == pytest.approx(1 - 22 / 48) and rep.paged_waste == pytest.approx(1 - 22 / 28)
    assert rep.fit_in(32, 3) == {"contiguous": 2, "paged": 3}
    with pytest.raises(ValueError, match="lengths"):
        paged_kv.compare_reservations([17], max_len=16, block_size=4)


# ---- quantisation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bits,group", [(8, None), (4, 16), (4, None)])
def test_quantize_tensor_error_is_at_most_half_a_step(bits, group):
    w = torch.randn(12, 32)
    q, s = quantization.quantize_tensor(w, bits, group)
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == torch.int8 and int(q.abs().max()) <= qmax + 1
    step = s[:, None] if group is None else s.repeat_interleave(group, dim=1)
    assert ((w - quantization.dequantize(q, s)).abs() <= step / 2 + 1e-6).all()


def test_int4_packing_round_trips_and_halves_bytes():
    q = torch.randint(-8, 8, (5, 10), dtype=torch.int8)
    packed = quantization.pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.shape == (5, 5)
    assert torch.equal(quantization.unpack_int4(packed), q)


def test_weight_only_layers_match_float_and_shrink_memory():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64))
    x = torch.randn(5, 64)
    model.requires_grad_(False)
    ref = model(x)
    int8, int4 = quantization.quantize_weights(model, 8), quantization.quantize_weights(model, 4, group_size=32)
    rel = lambda y: float((y - ref).norm() / ref.norm())  # noqa: E731
    assert rel(int8(x)) < 0.01 and rel(int4(x)) < 0.15
    f32 = quantization.state_bytes(model)
    assert quantization.state_bytes(int8) < 0.3 * f32 and quantization.state_bytes(int4) < 0.2 * f32
    with pytest.raises(ValueError, match="bits"):
        quantization.quantize_weights(model, 3)


def test_int8_dynamic_and_bf16_gpt_stay_close_to_float():
    model = tiny_gpt(n_embd=64)
    model.requires_grad_(False)
    idx = torch.randint(0, 40, (2, 12))
    ref = model(idx)[0]
    dyn = quantization.quantize_int8_dynamic(model)
    assert float((dyn(idx)[0] - ref).abs().max()) < 0.05
    bf = quantization.to_bf16(model)
    assert bf.lm_head.weight.dtype == torch.bfloat16 and model.lm_head.weight.dtype == torch.float32
    assert float((bf(idx)[0].float() - ref).abs().max()) < 0.05


# ---- pruning --------------------------------------------------------------------------------------
def test_global_magnitude_pruning_matches_torch_prune():
    import torch.nn.utils.prune as tprune
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    ours, masks = pruning.magnitude_prune(model, 0.6)
    ref = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    ref.load_state_dict(model.state_dict())
    tprune.global_unstructured([(ref[0], "weight"), (ref[2], "weight")], pruning_method=tprune.L1Unstructured, amount=0.6)
    assert torch.equal(masks["0"], ref[0].weight_mask.bool()) and torch.equal(masks["2"], ref[2].weight_mask.bool())
    assert torch.equal(ours[0].weight, ref[0].weight) and torch.equal(ours[2].weight, ref[2].weight)
    assert pruning.sparsity_of(ours) == pytest.approx(0.6, abs=1e-3)
    assert pruning.sparsity_of(model) == 0.0                   # the original is untouched


def test_layerwise_pruning_prunes_each_layer_to_the_same_fraction():
    model = tiny_gpt()
    pruned, masks = pruning.magnitude_prune(model, 0.5, scope="layer", skip=("lm_head",))
    for name, m in masks.items():
        assert "lm_head" not in name and (~m).float().mean().item() == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError, match="sparsity"):
        pruning.magnitude_prune(model, 1.0)


# ---- distillation ---------------------------------------------------------------------------------
def test_distillation_loss_by_hand():
    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 2.0, 0.0]])
    T = 2.0
    ps, pt = F.softmax(s / T, -1), F.softmax(t / T, -1)
    kl = float((pt * (pt.log() - ps.log())).sum()) * T * T
    ce = -math.log(float(F.softmax(s, -1)[0, 1]))
    got = distillation.distillation_loss(s, t, torch.tensor([1]), temperature=T, alpha=0.3)
    assert float(got) == pytest.approx(0.3 * kl + 0.7 * ce, rel=1e-5)
    assert float(distillation.distillation_loss(t, t, temperature=T, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="targets"):
        distillation.distillation_loss(s, t, alpha=0.5)


def test_distillation_pulls_a_student_towards_the_teacher():
    teacher, student = tiny_gpt(0), tiny_gpt(5, n_layer=1, n_embd=16)
    fn = distillation.distillation_loss_fn(teacher, temperature=1.0, alpha=1.0)
    x = torch.randint(0, 40, (4, 16), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    with torch.no_grad():
        first = float(fn(student, (x, x)))
    for _ in range(30):
        opt.zero_grad(); loss = fn(student, (x, x)); loss.backward(); opt.step()
    with torch.no_grad():
        assert float(fn(student, (x, x))) < 0.5 * first


# ---- speculative decoding ---------------------------------------------------------------------------
def bigram_fn(table):
    """A tiny 'model': logits at each position depend only on the current token."""
    return lambda idx: table[idx]


def test_speculative_output_distribution_equals_the_targets():
    """Draft and target are bigram tables over 4 tokens. Speculative sampling of two tokens (k=2,
    so both the rejection path and the bonus token are exercised) must follow the target's exact
    joint distribution p(x1) p(x2 | x1): a chi-square test on 3000 samples with a fixed seed. The
    same test rejects the draft's own distribution, so it has the power to catch a wrong rule."""
    g = torch.Generator().manual_seed(0)
    V = 4
    target = torch.randn(V, V, generator=g) * 1.5
    draft = target + torch.randn(V, V, generator=g) * 1.5          # a rough approximation
    prompt = [2]
    p_t, p_d = F.softmax(target, -1), F.softmax(draft, -1)
    joint_t = (p_t[2][:, None] * p_t).flatten()                      # P(x1, x2) for the target
    joint_d = (p_d[2][:, None] * p_d).flatten()
    n = 3000
    counts = torch.zeros(V * V)
    gen = torch.Generator().manual_seed(1)
    accepted = drafted = 0
    for _ in range(n):
        out, st = speculative.speculative_generate(bigram_fn(target), bigram_fn(draft), prompt, 2, k=2,
                                                   temperature=1.0, generator=gen)
        counts[out[0] * V + out[1]] += 1
        accepted += st.accepted; drafted += st.drafted
    from scipy.stats import chisquare
    assert chisquare(counts.numpy(), (joint_t * n).numpy()).pvalue > 1e-3
    assert chisquare(counts.numpy(), (joint_d * n).numpy()).pvalue < 1e-6
    assert 0.2 < accepted / drafted < 0.95                           # both paths really ran


def test_greedy_speculative_decoding_equals_target_greedy_with_kv_caches():
    target, draft = tiny_gpt(0, n_layer=2), tiny_gpt(7, n_layer=1, n_embd=16)
    prompt = torch.tensor([5, 9, 1, 3])
    ref = target.generate(prompt[None], 25, temperature=0)[0, 4:].tolist()
    for k in (1, 3, 5):
        out, st = speculative.speculative_generate(target, draft, prompt, 25, k=k, temperature=0)
        assert out == ref
        assert st.accepted + st.rounds >= 25 and st.target_calls == st.rounds + 1
    same, st = speculative.speculative_generate(target, target, prompt, 25, k=4, temperature=0)
    assert same == ref and st.acceptance_rate == 1.0                 # a perfect draft is always accepted


def test_cached_and_recomputed_sessions_agree_after_rollback():
    model = tiny_gpt()
    a, b = speculative.CachedSession(model, 40), speculative.RecomputeSession(lambda idx: model(idx)[0])
    for toks, cut in (([1, 2, 3, 4], 2), ([7, 8], 3), ([9, 10, 11], None)):
        la, lb = a.extend(toks), b.extend(toks)
        assert torch.allclose(la, lb, atol=1e-5)
        if cut is not None:
            a.truncate(cut); b.truncate(cut)
            assert a.length == b.length == cut


def test_expected_tokens_per_round():
    assert speculative.expected_tokens_per_round(0.0, 4) == 1.0
    assert speculative.expected_tokens_per_round(1.0, 4) == 5.0
    assert speculative.expected_tokens_per_round(0.5, 2) == pytest.approx(1.75)


@pytest.mark.parametrize("alpha,k", [(0.3, 4), (0.6, 1), (0.6, 4), (0.9, 6)])
def test_expected_tokens_per_round_matches_a_bernoulli_simulation(alpha, k):
    """Rounds of k i.i.d. Bernoulli(alpha) acceptances: a round emits its accepted prefix (up to the
    first rejection) plus one token. The mean must match (1 - alpha^(k+1)) / (1 - alpha) within
    4 standard errors, and accepted / checked must recover alpha; accepted / drafted does not."""
    rng = np.random.default_rng(0)
    n_rounds = 40_000
    accept = rng.random((n_rounds, k)) < alpha
    prefix = np.cumprod(accept, axis=1).sum(1)                     # accepted before the first rejection
    emitted = prefix + 1
    se = emitted.std(ddof=1) / math.sqrt(n_rounds)
    assert abs(emitted.mean() - speculative.expected_tokens_per_round(alpha, k)) < 4 * se
    checked = np.minimum(prefix + 1, k)
    est = prefix.sum() / checked.sum()
    assert abs(est - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / checked.sum())
    if k > 1:
        assert prefix.sum() / (k * n_rounds) < alpha - 0.05          # the old estimator's bias


def constant_fn(logits):
    """A 'model' whose next-token logits ignore the context: acceptances are i.i.d. Bernoulli(alpha)
    with alpha = sum(min(p, q)), and every emitted token must be distributed as softmax(logits)."""
    return lambda idx: logits.expand(idx.shape[0], idx.shape[1], logits.shape[-1])


def test_speculative_acceptance_rate_estimates_alpha_and_predicts_tokens_per_round():
    g = torch.Generator().manual_seed(5)
    V, k = 6, 4
    target = torch.randn(V, generator=g) * 1.5
    draft = torch.randn(V, generator=g) * 1.5                        # alpha = 0.56, near chapter 09's at k = 4
    p, q = F.softmax(target, -1), F.softmax(draft, -1)
    alpha = float(torch.minimum(p, q).sum())
    assert 0.4 < alpha < 0.8                                         # rejections and full rounds both common
    gen = torch.Generator().manual_seed(1)
    accepted = checked = drafted = 0
    emitted = []                                                     # tokens of each round that drafted k
    counts = torch.zeros(V)
    for _ in range(12):
        out, st = speculative.speculative_generate(constant_fn(target), constant_fn(draft), [0], 500, k=k,
                                                   temperature=1.0, generator=gen)
        pairs = list(zip(st.accepted_per_round, st.drafted_per_round))
        assert st.checked == sum(min(n + 1, kk) for n, kk in pairs) and st.drafted == sum(kk for _, kk in pairs)
        assert st.acceptance_rate == st.accepted / st.checked and st.fraction_kept == st.accepted / st.drafted
        accepted += st.accepted; checked += st.checked; drafted += st.drafted
        emitted += [n + 1 for n, kk in pairs if kk == k]
        counts += torch.bincount(torch.tensor(out), minlength=V)
    rate = accepted / checked
    assert abs(rate - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / checked)
    measured, se = np.mean(emitted), np.std(emitted, ddof=1) / math.sqrt(len(emitted))
    assert abs(measured - speculative.expected_tokens_per_round(alpha, k)) < 4 * se
    assert abs(speculative.expected_tokens_per_round(rate, k) - measured) < 4 * se
    assert speculative.expected_tokens_per_round(accepted / drafted, k) < 0.85 * measured   # the old estimate
    # every emitted token (accepted draft, replacement or bonus) is distributed as the target's p
    freq = counts / counts.sum()
    assert 0.5 * (freq - p).abs().sum() < 0.02 < 0.5 * (freq - q).abs().sum()


# ---- cost ------------------------------------------------------------------------------------------
def test_token_cost_formula():
    price = cost.Price(input_per_m=3.0, output_per_m=15.0)
    assert cost.token_cost(1000, 200, price) == pytest.approx(0.003 + 0.003)
    assert cost.monthly_cost(1000, 1000, 200, price, days=30) == pytest.approx(180.0)
    np.testing.assert_allclose(cost.token_cost([0, 10**6], [10**6, 0], price), [15.0, 3.0])
    with pytest.raises(ValueError):
        cost.Price(-1, 1)


def test_levers_on_a_small_stream_by_hand():
    from genai_helpers.agents.embedders import HashingEmbedder
    queries = ["What is top-p?", "what is top-p", "Explain beam search", "what is top p sampling?", "What is top-p?"]
    intents = ["topp", "topp", "beam", "topp", "topp"]
    big, small = cost.Price(0, 10.0), cost.Price(0, 1.0)
    res = {r.name: r for r in cost.replay_levers(queries, intents, prompt_tokens=[0] * 5, output_tokens=[10**5] * 5,
                                                 big=big, small=small, route_small=[True, True, False, True, True],
                                                 embed=HashingEmbedder(256), threshold=0.99)}
    assert res["no cache"].cost == pytest.approx(5.0)
    assert res["response cache"].hits == 2 and res["response cache"].cost == pytest.approx(3.0)
    assert res["routing"].cost == pytest.approx(4 * 0.1 + 1.0) and res["routing"].routed_small == 4
    assert res["semantic cache"].hits >= 2 and res["semantic cache"].wrong_hits == 0


def test_measure_step_seconds_returns_positive_medians():
    pre, dec = batching.measure_step_seconds(tiny_gpt(), 4, prompt_len=5, steps=3)
    assert pre > 0 and dec > 0
    with pytest.raises(ValueError, match="max_batch"):
        batching.measure_step_seconds(tiny_gpt(), 0)


# ---- prefix caching and copy-on-write ----------------------------------------------------------
def test_prefix_cache_shares_the_blocks_of_an_identical_prefix():
    a = paged_kv.BlockAllocator(num_blocks=10, block_size=4, prefix_caching=True)
    system = list(range(100, 108))                            # two full blocks of shared system prompt
    assert a.allocate_prompt("u1", system + [1, 2, 3]) == 0   # cold cache
    assert a.allocate_prompt("u2", system + [7]) == 8         # both system blocks reused
    assert a.tables["u1"][:2] == a.tables["u2"][:2] and a.tables["u1"][2] != a.tables["u2"][2]
    assert [a.refcount[b] for b in a.tables["u1"][:2]] == [2, 2]
    assert a.allocate_prompt("u3", [100, 101, 102, 103, 9]) == 4   # only the first block matches
    assert a.allocate_prompt("u4", [5] + system) == 0         # same tokens at another position: no hit
    assert a.prefix_hit_rate == pytest.approx((8 + 4) / (11 + 9 + 5 + 9))
    with pytest.raises(ValueError, match="non-empty"):
        a.allocate_prompt("u5", [])
    with pytest.raises(ValueError, match="prefix_caching=True"):
        paged_kv.BlockAllocator(4, 4).allocate_prompt("x", [1])
    with pytest.raises(TypeError, match="prefix_caching"):
        paged_kv.BlockAllocator(4, 4, prefix_caching="yes")


def test_a_fully_cached_prompt_still_recomputes_its_last_token():
    a = paged_kv.BlockAllocator(num_blocks=6, block_size=4, prefix_caching=True)
    a.allocate_prompt("x", list(range(8)))
    assert a.allocate_prompt("y", list(range(8))) == 4        # not 8: the last token's logits are needed
    assert a.tables["y"][0] == a.tables["x"][0] and a.tables["y"][1] != a.tables["x"][1]


def test_freed_prefix_blocks_stay_cached_until_the_pool_needs_them():
    a = paged_kv.BlockAllocator(num_blocks=4, block_size=2, prefix_caching=True)
    a.allocate_prompt("x", [1, 2, 3, 4, 5])                   # blocks 0, 1 registered; 2 holds token 5
    a.free("x")
    assert a.free_blocks == 4 and a.cached_blocks == 2
    assert a.allocate_prompt("y", [1, 2, 3, 4, 9]) == 4       # served from the freed-but-cached blocks
    a.free("y")
    a.allocate("big", 8)                                      # needs every block: the cache is evicted
    assert a.cached_blocks == 0
    a.free("big")
    assert a.allocate_prompt("z", [1, 2, 3, 4, 9]) == 0
    with pytest.raises(paged_kv.OutOfBlocks):
        a.allocate_prompt("w", list(range(20)))


def test_fork_then_append_copies_the_shared_partial_block_only():
    a = paged_kv.BlockAllocator(num_blocks=8, block_size=4)
    a.allocate("p", 6)                                        # blocks [0, 1]; block 1 half full
    a.fork("p", "c")
    assert a.tables["c"] == [0, 1] and a.refcount[0] == a.refcount[1] == 2
    assert a.append("c") == [2] and a.copies == [(1, 2)]      # copy-on-write of block 1
    assert a.tables["c"] == [0, 2] and a.refcount[1] == 1 and a.refcount[0] == 2
    assert a.append("p") == [] and a.copies == [(1, 2)]       # the parent now owns block 1 alone
    a.free("p")
    a.free("c")
    assert a.free_blocks == 8 and not a.refcount


def test_paged_store_with_sharing_matches_contiguous_caches():
    """Random prompts with shared prefixes, forks and appends: every gather equals the keys and
    values a contiguous cache of that sequence would hold."""
    torch.manual_seed(0)
    rng = random.Random(0)
    H, D, bs = 2, 3, 4
    store = paged_kv.PagedKVStore(paged_kv.BlockAllocator(64, bs, prefix_caching=True), n_head=H, head_dim=D)

    def kv_of(tokens):                                        # a deterministic "model": kv depends on the prefix
        ks, vs, h = [], [], 0
        for t in tokens:
            h = (h * 31 + t) % 1009
            g = torch.Generator().manual_seed(h)
            ks.append(torch.randn(H, 1, D, generator=g))
            vs.append(torch.randn(H, 1, D, generator=g))
        return torch.cat(ks, 1), torch.cat(vs, 1)

    prefixes = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 9, 9, 9, 9], [4, 3, 2, 1]]
    seqs: dict[str, list[int]] = {}
    for i in range(30):
        op = rng.random()
        if op < 0.4 or not seqs:
            toks = rng.choice(prefixes) + [rng.randrange(20) for _ in range(rng.randrange(1, 7))]
            name = f"s{i}"
            k_all, v_all = kv_of(toks)
            start = store.write_prompt(name, toks, lambda s: (k_all[:, s:], v_all[:, s:]))
            assert start % bs == 0 and start < len(toks)
            seqs[name] = toks
        elif op < 0.55:
            parent = rng.choice(sorted(seqs))
            store.fork(parent, f"f{i}")
            seqs[f"f{i}"] = list(seqs[parent])
        elif op < 0.85:
            name = rng.choice(sorted(seqs))
            new = [rng.randrange(20) for _ in range(rng.randrange(1, 4))]
            k_all, v_all = kv_of(seqs[name] + new)
            store.write(name, k_all[:, -len(new):], v_all[:, -len(new):])
            seqs[name] += new
        else:
            name = rng.choice(sorted(seqs))
            store.free(name)
            del seqs[name]
        for name, toks in seqs.items():
            k, v = store.gather(name)
            k_ref, v_ref = kv_of(toks)
            assert torch.equal(k, k_ref) and torch.equal(v, v_ref), (i, name)
    assert store.alloc.prefix_hit_tokens > 0 and store.alloc.copies == []


# ---- chunked prefill ---------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_chunked_prefill_gives_the_models_own_greedy_answer(chunk):
    model = tiny_gpt(2, pos_encoding="rope")
    reqs = workload.poisson_requests(7, 100.0, prompt_len=(2, 12), output_len=(1, 9), vocab_size=40, seed=5)
    rep = batching.serve(model, reqs, policy="continuous", max_batch=3, prefill_chunk=chunk)
    for r, out in zip(reqs, rep.outputs):
        assert out == model.generate(r.prompt[None], r.max_new_tokens, temperature=0)[0, r.prompt_len:].tolist()


def test_chunked_prefill_trades_the_long_prompts_first_token_for_smooth_decoding():
    """A cost model (prefill 1 ms per prompt token, a decoding step 10 ms): a 48-token prompt arriving
    while two short requests decode stalls them 48 ms at once without chunks, 8 ms per step with
    8-token chunks; its own first token comes later."""
    model = tiny_gpt(3, block=96)
    g = torch.Generator().manual_seed(0)
    short = [workload.Request(id=k, arrival=0.0, prompt=torch.randint(0, 40, (4,), generator=g), max_new_tokens=30)
             for k in range(2)]
    long = workload.Request(id=2, arrival=0.05, prompt=torch.randint(0, 40, (48,), generator=g), max_new_tokens=5)
    cost = lambda kind, n: 0.001 * n if kind == "prefill" else 0.010
    whole = batching.serve(model, short + [long], policy="continuous", max_batch=4, step_cost=cost)
    chunked = batching.serve(model, short + [long], policy="continuous", max_batch=4, step_cost=cost, prefill_chunk=8)
    assert whole.outputs == chunked.outputs
    assert whole.max_gap[:2].max() == pytest.approx(0.010 + 0.048)
    assert chunked.max_gap[:2].max() == pytest.approx(0.010 + 0.008)
    assert chunked.ttft[2] > whole.ttft[2]
    s = chunked.summary()
    assert s["tpot_p50_s"] == pytest.approx(np.median(chunked.tpot)) and s["tpot_p99_s"] >= s["tpot_p50_s"]
    with pytest.raises(ValueError, match="prefill_chunk"):
        batching.serve(model, short, policy="static", prefill_chunk=8)
    with pytest.raises(ValueError, match="prefill_chunk"):
        batching.serve(model, short, prefill_chunk=0)


# ---- grouped-query attention -------------------------------------------------------------------
@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_gqa_model_caches_fewer_heads_and_its_cached_decoding_matches_the_full_forward(pos_encoding):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=4, n_embd=32, n_kv_head=2, pos_encoding=pos_encoding)
    model = GPT(cfg).eval()
    assert model.transformer.h[0].attn.c_attn.weight.shape == (32 + 2 * 2 * 8, 32)
    idx = torch.randint(0, 40, (2, 12))
    cache = model.new_cache(2, max_len=12)
    assert cache.k[0].shape == (2, 2, 12, 8)                          # 2 key/value heads cached, not 4
    out = torch.cat([model.forward_cached(idx[:, :5], cache)] + [model.forward_cached(idx[:, t:t + 1], cache)
                                                                 for t in range(5, 12)], dim=1)
    assert torch.allclose(out, model(idx)[0], atol=1e-5)
    maps = model.attention_weights(idx)
    assert maps.shape == (2, 2, 4, 12, 12) and torch.allclose(maps.sum(-1), torch.ones(2, 2, 4, 12))
    eng = BatchEngine(model, max_batch=2, max_len=32)                 # the serving engine too
    _, logits = eng.add(idx[0, :6])
    assert torch.allclose(logits, model(idx[:1, :6])[0][0, -1], atol=1e-5)
    assert torch.allclose(eng.step(idx[0, 6:7]), model(idx[:1, :7])[0][:, -1], atol=1e-5)
    with pytest.raises(ValueError, match="n_kv_head"):
        GPTConfig(vocab_size=40, n_head=4, n_embd=32, n_kv_head=3)


def test_mha_to_gqa_with_as_many_groups_as_heads_is_the_same_model_and_pools_otherwise():
    from genai_helpers.models.gpt import mha_to_gqa
    model = tiny_gpt(4, pos_encoding="rope")                           # n_head = 2
    idx = torch.randint(0, 40, (1, 10))
    same = mha_to_gqa(model, 2)
    assert torch.allclose(same(idx)[0], model(idx)[0], atol=1e-6)
    mqa = mha_to_gqa(model, 1)
    w, w1 = model.transformer.h[0].attn.c_attn.weight, mqa.transformer.h[0].attn.c_attn.weight
    C, hd = 32, 16
    assert torch.equal(w1[:C], w[:C])                                  # queries copied
    assert torch.allclose(w1[C:C + hd], (w[C:C + hd] + w[C + hd:2 * C]) / 2)   # keys: mean of the two heads
    assert mqa.new_cache(1).n_head == 1
    with pytest.raises(ValueError, match="multi-head"):
        mha_to_gqa(mqa, 1)
    with pytest.raises(TypeError, match="GPT"):
        mha_to_gqa(object(), 1)


# ---- prefix KV cache in the engine --------------------------------------------------------------
def test_prefix_kv_cache_reuses_shared_system_prompts_with_equal_logits():
    from genai_helpers.serving.prefix_cache import PrefixKVCache
    model = GPT(GPTConfig(vocab_size=40, block_size=64, n_layer=2, n_head=4, n_embd=32, n_kv_head=2,
                          pos_encoding="rope")).eval()
    g = torch.Generator().manual_seed(1)
    system = torch.randint(0, 40, (19,), generator=g)                  # 2 full blocks of 8 + 3 tokens
    prompts = [torch.cat([system, torch.randint(0, 40, (n,), generator=g)]) for n in (2, 5, 1)]
    pc = PrefixKVCache(block_size=8, max_blocks=16)
    eng = BatchEngine(model, max_batch=3, max_len=64)
    for j, p in enumerate(prompts):
        slot, logits = eng.add(p, pc)
        assert eng.last_cached == (0 if j == 0 else 16) and eng.last_computed == p.numel() - eng.last_cached
        assert torch.allclose(logits, model(p[None])[0][0, -1], atol=1e-5)
    assert torch.allclose(eng.step(torch.tensor([1, 2, 3])),
                          torch.stack([model(torch.cat([p, torch.tensor([t])])[None])[0][0, -1]
                                       for p, t in zip(prompts, (1, 2, 3))]), atol=1e-5)
    assert pc.hit_rate == pytest.approx(32 / sum(p.numel() for p in prompts))
    assert pc._blocks[next(iter(pc._blocks))][0][0].shape == (2, 8, 8)   # grouped heads stored
    small = PrefixKVCache(block_size=4, max_blocks=3)
    small.insert(list(range(12)), [torch.zeros(1, 12, 2)], [torch.zeros(1, 12, 2)])
    small.insert([9] * 8, [torch.zeros(1, 8, 2)], [torch.zeros(1, 8, 2)])     # evicts the oldest chain's tail
    assert len(small) == 3 and small.lookup(list(range(12)))[0] == 4
    with pytest.raises(ValueError, match="non-empty"):
        small.lookup([])
    with pytest.raises(ValueError, match="block_size"):
        PrefixKVCache(block_size=0)


@pytest.mark.parametrize("chunk", [None, 4])
def test_serve_with_prefix_cache_gives_the_same_tokens_and_counts_only_computed_prefill(chunk):
    from genai_helpers.serving.prefix_cache import PrefixKVCache
    model = tiny_gpt(5, pos_encoding="rope")
    g = torch.Generator().manual_seed(2)
    system = torch.randint(0, 40, (16,), generator=g)
    reqs = [workload.Request(id=k, arrival=0.01 * k, prompt=torch.cat([system, torch.randint(0, 40, (3,), generator=g)]),
                             max_new_tokens=4) for k in range(5)]
    prefilled = []
    cost = lambda kind, n: (prefilled.append(n) or 0.001 * n) if kind == "prefill" else 0.01
    pc = PrefixKVCache(block_size=8)
    rep = batching.serve(model, reqs, policy="continuous", max_batch=2, step_cost=cost, prefix_cache=pc,
                         prefill_chunk=chunk)
    for r, out in zip(reqs, rep.outputs):
        assert out == model.generate(r.prompt[None], 4, temperature=0)[0, r.prompt_len:].tolist()
    if chunk is None:                       # each later request reuses the two system blocks
        assert sum(prefilled) == 19 + 4 * 3 and pc.hit_rate == pytest.approx(64 / 95)
    else:                                   # request 1 starts while request 0 is still mid-prefill: no hit yet
        assert sum(prefilled) == 2 * 19 + 3 * 3 and pc.hit_rate == pytest.approx(48 / 95)
