"""The shared training loop: it learns, checkpoints atomically, and resumes exactly."""
import json
import os

import pytest
import torch
from safetensors import safe_open

from genai_helpers.checkpoint import load_checkpoint, save_checkpoint
from genai_helpers.data import window_batch_fn
from genai_helpers.models import TransformerLM, TransformerLMConfig
from genai_helpers.training import TrainConfig, cosine_schedule, resolve_precision, train

STREAM = torch.arange(600) % 37                       # a learnable periodic "text"


def make(seed=0, dropout=0.1):
    torch.manual_seed(seed)
    model = TransformerLM(TransformerLMConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32,
                                              dropout=dropout))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    return model, opt, cosine_schedule(opt, total_steps=30, warmup_steps=5)


def quiet(**kw):
    return TrainConfig(progress=False, live_plot=False, log_every=5, **kw)


def test_loop_reduces_loss_on_a_learnable_sequence():
    model, opt, _ = make(dropout=0.0)
    for group in opt.param_groups:
        group["lr"] = 1e-2
    hist = train(model, opt, window_batch_fn(STREAM, 8, 16), quiet(steps=60), scheduler=None)
    assert hist.step == list(range(5, 61, 5))
    assert hist.loss[-1] < 1.0, "next token is a deterministic function of the current one"

    assert hist.loss[-1] < 0.5 * hist.loss[0]


def test_accumulation_of_two_half_batches_equals_one_full_batch():
    full = window_batch_fn(STREAM, 8, 16)

    def halves(i):
        x, y = full(i // 2)
        s = slice(0, 4) if i % 2 == 0 else slice(4, 8)
        return x[s], y[s]

    m1, o1, _ = make(dropout=0.0)
    m2, o2, _ = make(dropout=0.0)
    train(m1, o1, full, quiet(steps=3))
    train(m2, o2, halves, quiet(steps=3, accumulation_steps=2))
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path):
    batches = window_batch_fn(STREAM, 8, 16, seed=3)
    ref_model, ref_opt, ref_sched = make()
    ref = train(ref_model, ref_opt, batches, quiet(steps=30), scheduler=ref_sched)

    ckpt = str(tmp_path / "run.safetensors")

    def crashing(i):
        if i == 17:
            raise KeyboardInterrupt("simulated crash")
        return batches(i)

    model, opt, sched = make()
    with pytest.raises(KeyboardInterrupt):
        train(model, opt, crashing, quiet(steps=30, checkpoint_path=ckpt, checkpoint_every=12), scheduler=sched)
    model, opt, sched = make(seed=99)                  # fresh process: different init, then resume
    hist = train(model, opt, batches, quiet(steps=30, checkpoint_path=ckpt, checkpoint_every=12), scheduler=sched)
    assert hist.resumed_from == 12
    assert hist.loss == pytest.approx(ref.loss, abs=1e-6)
    for a, b in zip(ref_model.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_round_trip_keeps_tied_weights_optimizer_and_rng(tmp_path):
    model, opt, sched = make()
    train(model, opt, window_batch_fn(STREAM, 4, 16), quiet(steps=3), scheduler=sched)
    torch.manual_seed(1234)
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, sched, step=3, extra={"note": "hi"})
    expected_draw = torch.rand(3)
    other, other_opt, other_sched = make(seed=5)
    state = load_checkpoint(path, other, other_opt, other_sched)
    assert state == {"step": 3, "extra": {"note": "hi"}}
    assert torch.equal(torch.rand(3), expected_draw)
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert other.head.weight.data_ptr() == other.tok_emb.weight.data_ptr(), "tying must survive loading"
    assert other_sched.last_epoch == sched.last_epoch
    sa, sb = opt.state_dict()["state"], other_opt.state_dict()["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for i in sa:
        assert torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) and torch.equal(sa[i]["step"], sb[i]["step"])
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["genai_helpers"])
    assert meta["aliases"] == {"model.head.weight": "model.tok_emb.weight"}


def test_checkpoint_write_is_atomic_no_partial_file_on_failure(tmp_path, monkeypatch):
    model, _, _ = make()
    target = tmp_path / "c.safetensors"
    save_checkpoint(target, model)
    before = target.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("genai_helpers.checkpoint.save_file", boom)
    with pytest.raises(OSError):
        save_checkpoint(target, model, step=9)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.safetensors"], "temporary files must be cleaned up"


def test_gradient_checkpointing_option_trains_the_same(tmp_path):
    batches = window_batch_fn(STREAM, 4, 16)
    m1, o1, _ = make(dropout=0.0)
    m2, o2, _ = make(dropout=0.0)
    train(m1, o1, batches, quiet(steps=4))
    train(m2, o2, batches, quiet(steps=4, gradient_checkpointing=True))
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_bf16_autocast_on_cpu_still_learns():
    model, opt, _ = make(dropout=0.0)
    hist = train(model, opt, window_batch_fn(STREAM, 8, 16), quiet(steps=20, precision="bf16"))
    assert hist.loss[-1] < hist.loss[0]


def test_precision_resolution_per_device():
    assert resolve_precision("auto", torch.device("cpu")) == (None, False)
    assert resolve_precision("fp16", torch.device("cuda")) == (torch.float16, True)
    assert resolve_precision("bf16", torch.device("cpu")) == (torch.bfloat16, False)


@pytest.mark.parametrize("kwargs, param", [
    (dict(steps=0), "steps"), (dict(steps=5, precision="fp8"), "precision"),
    (dict(steps=5, grad_clip=0), "grad_clip"), (dict(steps=5, checkpoint_path="x.pt"), "checkpoint_path"),
    (dict(steps=5, accumulation_steps=0), "accumulation_steps"),
])
def test_train_config_rejects_bad_values_naming_them(kwargs, param):
    with pytest.raises(ValueError, match=param):
        TrainConfig(**kwargs)


def test_checkpoint_path_must_be_safetensors(tmp_path):
    model, _, _ = make()
    with pytest.raises(ValueError, match="safetensors"):
        save_checkpoint(tmp_path / "c.pt", model)
