"""Capacity planning of chapter 17 (genai_helpers.systems.design): the throughput models follow
their formulas, the DiT counts are exact, and the two fleet simulations behave as queues should."""
import math

import numpy as np
import pytest
import torch

from genai_helpers import estimates as est
from genai_helpers.systems import design as ds


def test_decode_step_is_memory_bound_at_batch_one_and_compute_bound_at_huge_batch():
    P = 7e9
    one = ds.decode_step(P, "H100-SXM", batch=1, context_tokens=0, kv_bytes_per_token=0, bandwidth_efficiency=1.0)
    assert one["bound"] == 1.0
    assert one["memory_s"] == pytest.approx(2 * P / 3.35e12)
    assert one["tokens_per_s"] == pytest.approx(1 / one["step_s"])
    big = ds.decode_step(P, "H100-SXM", batch=4096, context_tokens=0, kv_bytes_per_token=0, mfu=1.0)
    assert big["bound"] == 0.0 and big["compute_s"] == pytest.approx(2 * P * 4096 / 989e12)


def test_decode_throughput_grows_with_batch_but_each_user_gets_slower():
    kv = est.kv_cache_bytes(1, 1, 32, 4096, n_heads=32, n_kv_heads=8)
    steps = [ds.decode_step(6.7e9, "H100-SXM", batch=b, context_tokens=2000, kv_bytes_per_token=kv) for b in (1, 8, 64)]
    assert steps[0]["tokens_per_s"] < steps[1]["tokens_per_s"] < steps[2]["tokens_per_s"]
    assert steps[0]["tokens_per_s_per_sequence"] > steps[2]["tokens_per_s_per_sequence"]


def test_replica_throughput_pays_the_interleaved_prefills_out_of_each_users_speed():
    kv = est.kv_cache_bytes(1, 1, 32, 4096, n_heads=32, n_kv_heads=8)
    r = ds.replica_throughput(6e9, "H100-SXM", batch=40, prompt_tokens=2500, output_tokens=250, kv_bytes_per_token=kv)
    step = ds.decode_step(6e9, "H100-SXM", batch=40, context_tokens=2625, kv_bytes_per_token=kv)["step_s"]
    prefill = ds.prefill_seconds(6e9, 2500, "H100-SXM")
    assert r["effective_step_s"] == pytest.approx(step + 40 / 250 * prefill)
    assert r["tokens_per_s_per_sequence"] == pytest.approx(1 / r["effective_step_s"])
    # requests/s is the same as 1 / (prefill + decode time per request shared by the batch)
    assert r["requests_per_s"] == pytest.approx(1 / (prefill + 250 * step / 40))
    assert r["prefill_share"] == pytest.approx(40 / 250 * prefill / r["effective_step_s"])
    assert r["tokens_per_s_per_sequence"] < 1 / step              # the prefills slow every user down


def test_prefill_and_memory_and_replicas_follow_their_formulas():
    assert ds.prefill_seconds(1e9, 1000, "A100-80GB", mfu=0.5) == pytest.approx(2e12 / (312e12 * 0.5))
    n = ds.max_concurrent_sequences(1e9, "H100-SXM", context_tokens=1000, kv_bytes_per_token=1e5, memory_fraction=1.0)
    assert n == int((80e9 - 2e9) // 1e8)
    assert ds.max_concurrent_sequences(50e9, "L4", context_tokens=10, kv_bytes_per_token=10) == 0
    assert ds.replicas_for_load(70, 10, target_utilisation=0.7) == 10
    assert ds.replicas_for_load(70.1, 10, target_utilisation=0.7, spare=1) == 12
    assert ds.replicas_for_load(0, 10) == 1


def test_dit_counts_match_the_module_and_the_flop_counter():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from genai_helpers.diffusion.dit import DiT, DiTConfig

    shape = dict(image_size=8, in_channels=4, patch=2, d_model=32, depth=2, d_text=16)
    model = DiT(DiTConfig(n_heads=4, **shape))
    assert ds.dit_params(**shape)["total"] == sum(p.numel() for p in model.parameters())
    x, t, pooled = torch.randn(3, 4, 8, 8), torch.randint(0, 100, (3,)), torch.randn(3, 16)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x, t, pooled=pooled)
    assert ds.dit_forward_flops(batch=3, **shape)["total"] == counter.get_total_flops()


def test_dit_attention_share_grows_with_resolution():
    shares = []
    for side in (32, 64, 128):
        f = ds.dit_forward_flops(image_size=side, in_channels=4, patch=2, d_model=1152, depth=28, d_text=768)
        shares.append(f["attention"] / f["total"])
    assert shares[0] < shares[1] < shares[2]


def test_diurnal_load_peaks_at_the_peak_hour_and_is_seeded():
    t, rps = ds.diurnal_load(peak_rps=100, trough_fraction=0.2, noise=0.0, peak_hour=14)
    assert rps.max() == pytest.approx(100) and t[np.argmax(rps)] == pytest.approx(14)
    assert rps.min() == pytest.approx(20, rel=1e-3)
    a, b = ds.diurnal_load(peak_rps=10, seed=3)[1], ds.diurnal_load(peak_rps=10, seed=3)[1]
    assert np.array_equal(a, b) and not np.array_equal(a, ds.diurnal_load(peak_rps=10, seed=4)[1])


@pytest.mark.parametrize("ratio", [1.5, 2.5, 4.0])
def test_diurnal_load_reaches_the_requested_peak_to_mean(ratio):
    t, rps = ds.diurnal_load(peak_rps=50, trough_fraction=0.15, noise=0.0, peak_to_mean=ratio)
    assert rps.max() == pytest.approx(50) and rps.mean() == pytest.approx(50 / ratio, rel=1e-6)
    assert rps.min() == pytest.approx(0.15 * 50, rel=1e-3)


def test_fixed_fleet_pays_every_hour_and_autoscaler_pays_less_on_a_day():
    t, rps = ds.diurnal_load(peak_rps=50, noise=0.0)
    fixed = ds.simulate_autoscaler(rps, capacity_rps=5, min_replicas=15, max_replicas=15)
    assert fixed.gpu_hours == pytest.approx(15 * 24) and fixed.unserved_fraction == 0.0
    auto = ds.simulate_autoscaler(rps, capacity_rps=5, target_utilisation=0.7, scale_up_delay_steps=0)
    assert auto.gpu_hours < fixed.gpu_hours and auto.unserved_fraction == 0.0
    assert np.allclose(fixed.utilisation, rps / (15 * 5)) and fixed.steps_above(0.5) == int(np.sum(rps > 37.5))
    assert 0.5 < auto.utilisation.min() and auto.utilisation.max() < 0.71   # it tracks its target (one step late)


def test_a_slow_autoscaler_misses_a_sudden_burst():
    load = np.r_[np.full(30, 10.0), np.full(30, 40.0)]
    slow = ds.simulate_autoscaler(load, capacity_rps=5, scale_up_delay_steps=10, target_utilisation=0.9)
    fast = ds.simulate_autoscaler(load, capacity_rps=5, scale_up_delay_steps=0, target_utilisation=0.9)
    assert slow.unserved.sum() > fast.unserved.sum() > 0       # even an instant one misses the first step
    assert slow.replicas[-1] == fast.replicas[-1] == math.ceil(40 / 4.5)


def test_one_replica_is_a_fifo_queue():
    res = ds.simulate_load_balancer([0.0, 0.0, 1.0], [2.0, 1.0, 1.0], n_replicas=1, policy="round_robin")
    assert np.allclose(res.latency, [2.0, 3.0, 3.0]) and np.allclose(res.wait, [0.0, 2.0, 2.0])
    two_slots = ds.simulate_load_balancer([0.0, 0.0, 1.0], [2.0, 1.0, 1.0], n_replicas=1, slots=2)
    assert np.allclose(two_slots.latency, [2.0, 1.0, 1.0])


def test_least_outstanding_avoids_the_replica_stuck_on_a_long_request():
    arrivals, service = [0.0, 0.1, 1.5, 3.0], [10.0, 1.0, 1.0, 1.0]
    rr = ds.simulate_load_balancer(arrivals, service, n_replicas=2, policy="round_robin")
    lo = ds.simulate_load_balancer(arrivals, service, n_replicas=2, policy="least_outstanding")
    assert rr.replica.tolist() == [0, 1, 0, 1] and lo.replica.tolist() == [0, 1, 1, 1]
    assert lo.p(95, of="latency") < rr.p(95, of="latency")


def test_failed_replica_work_is_retried_on_the_survivors():
    res = ds.simulate_load_balancer([0.0, 0.0, 0.5], [5.0, 5.0, 1.0], n_replicas=2, policy="round_robin",
                                    failures={1: 1.0})
    assert res.retried.tolist() == [False, True, False]
    assert set(res.replica.tolist()) == {0}
    assert res.latency[1] == pytest.approx(5.0 + 1.0 + 5.0)     # waits behind requests 0 and 2 on replica 0


@pytest.mark.parametrize("call, error, word", [
    (lambda: ds.decode_step(1e9, "TPU", batch=1, context_tokens=1, kv_bytes_per_token=1), ValueError, "gpu"),
    (lambda: ds.decode_step(1e9, "L4", batch=0, context_tokens=1, kv_bytes_per_token=1), ValueError, "batch"),
    (lambda: ds.decode_step(1e9, "L4", batch=1, context_tokens=1, kv_bytes_per_token=1, mfu=1.5), ValueError, "mfu"),
    (lambda: ds.prefill_seconds("7B", 10, "L4"), TypeError, "n_params"),
    (lambda: ds.replicas_for_load(10, 1, target_utilisation=0), ValueError, "target_utilisation"),
    (lambda: ds.dit_params(image_size=9, in_channels=4, patch=2, d_model=8, depth=1, d_text=8), ValueError, "patch"),
    (lambda: ds.diurnal_load(peak_rps=-1), ValueError, "peak_rps"),
    (lambda: ds.diurnal_load(peak_rps=1, trough_fraction=0.25, peak_to_mean=5.0), ValueError, "peak_to_mean"),
    (lambda: ds.replica_throughput(1e9, "L4", batch=1, prompt_tokens=10, output_tokens=0, kv_bytes_per_token=1),
     ValueError, "output_tokens"),
    (lambda: ds.simulate_autoscaler([1.0, -1.0], capacity_rps=1), ValueError, "load_rps"),
    (lambda: ds.simulate_autoscaler([1.0], capacity_rps=1, min_replicas=3, max_replicas=2), ValueError, "max_replicas"),
    (lambda: ds.simulate_load_balancer([1.0, 0.0], [1.0, 1.0], n_replicas=1), ValueError, "sorted"),
    (lambda: ds.simulate_load_balancer([0.0], [1.0], n_replicas=2, policy="fastest"), ValueError, "policy"),
    (lambda: ds.simulate_load_balancer([0.0], [1.0], n_replicas=1, failures={0: 1.0}), ValueError, "failures"),
])
def test_bad_arguments_name_the_parameter(call, error, word):
    with pytest.raises(error, match=word):
        call()
