"""Collectives, data/tensor/pipeline parallelism and FSDP on CPU ranks (gloo over 127.0.0.1)."""
import functools

import pytest
import torch

from genai_helpers import parallelism as par
from genai_helpers.data import window_batch_fn
from genai_helpers.distributed import ByteCounter, Workers, check_collectives, free_port
from genai_helpers.models import TransformerLM, TransformerLMConfig
from genai_helpers.training import TrainConfig, train

CFG = TransformerLMConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32)
STREAM = torch.arange(600) % 37


MODEL = par.SeededModel(TransformerLM, CFG, seed=0)      # picklable: same weights on every rank
AdamW = functools.partial(torch.optim.AdamW, lr=3e-3)    # picklable optimizer factory


@pytest.fixture(scope="module")
def four():
    with Workers(4, threads=1) as workers:
        yield workers


@pytest.fixture(scope="module")
def two():
    with Workers(2, threads=1) as workers:
        yield workers


def test_ring_and_hierarchical_all_reduce_equal_all_reduce_and_send_the_textbook_bytes(four):
    results = four.run(check_collectives, 1000, 2)
    n, size = 4, results[0]["tensor_bytes"]
    for r in results:
        assert r["ring_max_diff"] < 1e-12 and r["hier_max_diff"] < 1e-12
        assert r["ring_bytes_sent"] == pytest.approx(2 * (n - 1) / n * size, rel=0.01)
    leaders, others = [results[0], results[2]], [results[1], results[3]]
    assert all(r["hier_bytes_sent"] == 2 * size for r in leaders)       # to the other leader + back to its node
    assert all(r["hier_bytes_sent"] == size for r in others)


def test_ddp_gradients_equal_one_process_on_the_full_batch(two):
    x, y = window_batch_fn(STREAM, 8, 16)(0)
    grads = two.run(par.ddp_gradients_on_rank, MODEL, (x, y))
    model = MODEL()
    model(x, y)[1].backward()
    for name, p in model.named_parameters():
        for rank in range(2):
            assert torch.allclose(grads[rank][name], p.grad, atol=1e-6), name


def test_shared_training_loop_under_ddp_equals_single_process_training(two, tmp_path):
    batches = window_batch_fn(STREAM, 8, 16, seed=1)
    cfg = TrainConfig(steps=6, accumulation_steps=2, log_every=2, progress=False, live_plot=False,
                      checkpoint_path=str(tmp_path / "ddp.safetensors"))
    history, state = two.run(par.train_ddp_on_rank, MODEL, AdamW, batches, cfg)[0]
    model = MODEL()
    ref = train(model, AdamW(model.parameters()), batches,
                TrainConfig(steps=6, accumulation_steps=2, log_every=2, progress=False, live_plot=False))
    assert history.loss == pytest.approx(ref.loss, rel=1e-5)
    for k, v in model.state_dict().items():
        assert torch.allclose(state[k], v, atol=1e-5), k
    from safetensors import safe_open
    with safe_open(str(tmp_path / "ddp.safetensors"), "pt") as fh:
        assert not any(k.startswith("model.module.") for k in fh.keys()), "checkpoint holds the unwrapped model"


def test_column_and_row_parallel_linear_equal_the_unsplit_mlp(two):
    for r in two.run(par.tensor_parallel_mlp_on_rank, 32, 128):
        assert r["mlp_max_diff"] < 1e-5 and r["input_grad_max_diff"] < 1e-4
        assert r["column_gather_max_diff"] < 1e-6
        assert r["local_weights"] == r["full_weights"] // 2


def test_pipeline_over_two_ranks_matches_the_unsplit_model(two):
    out = two.run(par.pipeline_on_rank, 4, 16, 32, 2)
    loss, grads = par.reference_pipeline_grads(2, 16, 32, 2)
    assert out[1]["loss"] == pytest.approx(loss, rel=1e-5)
    for got, want in zip(out[0]["grads"] + out[1]["grads"], grads):
        assert torch.allclose(got, want, atol=1e-5)
    for r in out:
        assert 0 < r["busy_s"] <= r["wall_s"]


def test_gpipe_simulator_bubble_equals_formula():
    for p, m in [(2, 1), (2, 8), (4, 4), (8, 32)]:
        sim = par.gpipe_schedule(p, m)
        assert sim["bubble"] == pytest.approx(par.bubble_fraction(p, m))
        assert len(sim["tasks"]) == 2 * p * m


def test_zero_stages_shard_what_they_promise():
    model = MODEL()
    n = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    z = [par.zero_bytes_per_rank(model, 4, s) for s in range(4)]
    assert z[0]["total"] == 16 * n
    assert z[1]["optimizer"] < z[0]["optimizer"] and z[1]["gradients"] == z[0]["gradients"]
    assert z[2]["gradients"] < z[1]["gradients"] and z[2]["parameters"] == z[0]["parameters"]
    assert z[3]["total"] == pytest.approx(16 * n / 4, rel=0.01)
    with pytest.raises(ValueError, match="stage"):
        par.zero_bytes_per_rank(model, 4, 4)


@pytest.mark.parametrize("api", ["fully_shard", "FullyShardedDataParallel"])
def test_fsdp_stores_about_half_the_parameters_on_each_of_two_ranks(two, api):
    out = two.run(par.fsdp_shards_on_rank, MODEL, 2, api=api)
    total = out[0]["total_param_values"]
    assert total <= sum(r["local_param_values"] for r in out) <= total + 2      # FSDP1 pads to even
    for r in out:
        assert abs(r["local_param_values"] - total / 2) / total < 0.05
        assert r["local_adam_values"] == 2 * r["local_param_values"]
        assert torch.isfinite(torch.tensor(r["loss"]))


def test_functions_from_a_notebook_are_refused_with_a_reason(two):
    def local():
        return 1
    local.__module__ = "__main__"
    with pytest.raises(ValueError, match="importable|__main__"):
        two.run(local)


def test_byte_counter_and_port():
    c = ByteCounter()
    c.add(torch.zeros(10, dtype=torch.float32))
    assert (c.bytes_sent, c.messages) == (40, 1)
    assert 0 < free_port() < 65536
