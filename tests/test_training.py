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
    return TrainConfig(**{"progress": False, "live_plot": False, "log_every": 5, **kw})


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

    monkeypatch.setattr("os.fsync", boom)          # the bytes are in the temporary file, not yet durable
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


# --- the schedule, the time budget, hooks (issue 14) ----------------------------------------------

from genai_helpers.training import EMA, StepInfo, every, warmup_cosine  # noqa: E402


class FakeClock:
    """Stands in for ``time`` inside the training module: each batch "takes" one second."""

    def __init__(self, t=0.0):
        self.t = t

    def perf_counter(self):
        return self.t


def timed(batch_fn, clock, seconds=1.0):
    def fn(i):
        clock.t += seconds
        return batch_fn(i)
    return fn


def test_warmup_cosine_by_hand_and_as_a_scheduler():
    assert [warmup_cosine(s, 10, 2, 0.1) for s in (0, 1)] == [0.5, 1.0]
    assert warmup_cosine(2, 10, 2, 0.1) == 1.0 and warmup_cosine(10, 10, 2, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(6, 10, 2, 0.0) == pytest.approx(0.5)                     # half-way down the cosine
    assert warmup_cosine(3, 10, 2, 0.0, position=10) == pytest.approx(0.0)         # a time budget ran out
    assert warmup_cosine(0, 10, 4, 0.0, position=7) == pytest.approx(0.25)         # never above the warm-up ramp
    model, opt, sched = make()                                                        # 30 steps, warm-up 5, min 0.1
    lrs = []
    for _ in range(31):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [3e-3 * warmup_cosine(s, 30, 5, 0.1) for s in range(31)]


def test_built_in_cosine_equals_the_cosine_schedule_scheduler_bit_for_bit():
    batches = window_batch_fn(STREAM, 8, 16, seed=2)
    m1, o1, s1 = make()
    h1 = train(m1, o1, batches, quiet(steps=30), scheduler=s1)
    m2, _, _ = make()
    o2 = torch.optim.AdamW(m2.parameters(), lr=3e-3)            # the starting rate is the optimizer's lr
    h2 = train(m2, o2, batches, quiet(steps=30, lr_schedule="cosine", warmup_steps=5, min_lr_ratio=0.1))
    assert h1.loss == h2.loss and h1.lr == h2.lr
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_time_budget_stops_early_and_still_ends_at_the_annealed_rate(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("genai_helpers.training.time", clock)
    model, _, _ = make()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    cfg = quiet(steps=100, time_budget_s=10, lr_schedule="cosine", warmup_steps=2, min_lr_ratio=0.1, log_every=1)
    hist = train(model, opt, timed(window_batch_fn(STREAM, 8, 16), clock), cfg)
    assert hist.steps_done == 10 and hist.stopped == "time budget" and hist.step[-1] == 10
    assert hist.seconds == 10.0
    # after step k the run is k seconds = 10 k % of the way in: the rate of the next step follows the clock
    assert hist.lr == pytest.approx([3e-3 * warmup_cosine(k, 100, 2, 0.1, position=10.0 * k) for k in range(1, 11)])
    assert hist.lr[-1] == pytest.approx(0.1 * 3e-3)
    # the old loops laid the cosine over all 100 steps: stopped at step 10, the rate was still 98 % of the peak
    assert warmup_cosine(10, 100, 2, 0.1) > 0.97


def test_resume_under_a_time_budget_continues_the_schedule_and_the_budget(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("genai_helpers.training.time", clock)
    batches = window_batch_fn(STREAM, 8, 16, seed=3)
    cfg = dict(steps=100, time_budget_s=12, lr_schedule="cosine", warmup_steps=2, log_every=2)
    ref_model, _, _ = make()
    ref = train(ref_model, torch.optim.AdamW(ref_model.parameters(), lr=3e-3), timed(batches, clock), quiet(**cfg))

    ckpt = str(tmp_path / "budget.safetensors")
    clock.t = 0.0

    def crashing(i):
        if i == 7:
            raise KeyboardInterrupt("simulated crash")
        return batches(i)

    model, _, _ = make()
    with pytest.raises(KeyboardInterrupt):
        train(model, torch.optim.AdamW(model.parameters(), lr=3e-3), timed(crashing, clock),
              quiet(**cfg, checkpoint_path=ckpt, checkpoint_every=4))
    clock.t = 1000.0                                   # a day later: downtime does not count against the budget
    model, _, _ = make(seed=99)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0)   # the starting rate and the schedule come from the checkpoint
    hist = train(model, opt, timed(batches, clock), quiet(**cfg, checkpoint_path=ckpt, checkpoint_every=4))
    assert hist.resumed_from == 4 and hist.steps_done == ref.steps_done == 12 and hist.seconds == 12.0
    assert hist.loss == ref.loss and hist.lr == ref.lr
    for a, b in zip(ref_model.parameters(), model.parameters()):
        assert torch.equal(a, b)
    again = train(model, opt, timed(batches, clock), quiet(**cfg, checkpoint_path=ckpt))   # budget spent: nothing to do
    assert again.steps_done == 12 and again.loss == ref.loss and again.stopped == "time budget"


def test_hooks_ema_every_and_early_stop():
    batches = window_batch_fn(STREAM, 8, 16)
    model, opt, _ = make(dropout=0.0)
    ema, seen, calls = EMA(model, decay=0.9), [], []
    manual_model, manual_opt, _ = make(dropout=0.0)
    manual = EMA(manual_model, decay=0.9)

    def watch(info):
        assert isinstance(info, StepInfo) and info.model.training and info.steps == 50
        seen.append((info.step, info.loss, info.final))
        if info.step == 7:
            info.stop("enough")

    hist = train(model, opt, batches, quiet(steps=50), hooks=[ema, watch, every(3, lambda i: calls.append(i.step))])
    assert hist.stopped == "enough" and hist.steps_done == 7 and ema.updates == 7
    assert [s for s, _, _ in seen] == list(range(1, 8)) and seen[-1][2] is False    # stopped by a hook, not "final"
    assert calls == [3, 6]
    assert hist.step == [5, 7] and hist.loss[0] == pytest.approx(sum(l for _, l, _ in seen[:5]) / 5)
    for _ in range(7):                                  # the same steps by hand give the same average
        manual_opt.zero_grad()
        x, y = batches(_)
        manual_model(x, y)[1].backward()
        torch.nn.utils.clip_grad_norm_(manual_model.parameters(), 1.0)
        manual_opt.step()
        manual.update(manual_model)
    for a, b in zip(ema.model.parameters(), manual.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_loss_terms_are_logged_beside_the_loss():
    model, opt, _ = make(dropout=0.0)

    def loss_fn(m, batch):
        _, ce = m(*batch)
        reg = 1e-3 * sum(p.pow(2).sum() for p in m.parameters())
        return ce + reg, {"ce": ce.detach(), "l2": reg.detach()}

    hist = train(model, opt, window_batch_fn(STREAM, 8, 16), quiet(steps=10, accumulation_steps=2), loss_fn=loss_fn)
    assert set(hist.terms) == {"ce", "l2"} and len(hist.terms["ce"]) == len(hist.loss) == 2
    for total, ce, l2 in zip(hist.loss, hist.terms["ce"], hist.terms["l2"]):
        assert total == pytest.approx(ce + l2, rel=1e-5)


def test_scheduler_does_not_step_when_the_grad_scaler_skips_the_optimizer_step(monkeypatch):
    # fp16 loss scaling on CPU: an inf gradient (step 2's huge input) makes the scaler skip that step
    monkeypatch.setattr("genai_helpers.training.resolve_precision", lambda precision, device: (None, True))
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    batch_fn = lambda i: torch.full((1, 1), 1e38 if i == 2 else 1.0)          # noqa: E731
    hist = train(model, opt, batch_fn, quiet(steps=5, grad_clip=None), loss_fn=lambda m, x: m(x).sum(), scheduler=sched)
    assert hist.step[-1] == 5
    assert sched.last_epoch == 4, "4 optimizer steps taken, one skipped: the schedule advances 4 times"
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 4)


def _nan_loss_on_rank_one():
    """On every rank of a gloo group: train a DDP model whose loss is NaN on rank 1 at step 2 only."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    model = DDP(torch.nn.Linear(4, 1))
    bad_rank = dist.get_rank() == 1
    batch_fn = lambda i: torch.full((8, 4), float("nan") if bad_rank and i == 2 else 1.0)   # noqa: E731
    try:
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), batch_fn, quiet(steps=5),
              loss_fn=lambda m, x: m(x).pow(2).mean())
    except FloatingPointError as err:
        return str(err)
    return "trained on"


def test_non_finite_loss_on_one_ddp_rank_raises_on_every_rank():
    from genai_helpers.distributed import Workers

    with Workers(2, threads=1, timeout=60) as workers:     # before the fix: rank 0 waited in all-reduce forever
        errors = workers.run(_nan_loss_on_rank_one)
    assert errors == ["loss was not finite on 1 of 2 ranks at step 2"] * 2


@pytest.mark.parametrize("kwargs, param", [
    (dict(steps=5, time_budget_s=0), "time_budget_s"), (dict(steps=5, lr_schedule="linear"), "lr_schedule"),
    (dict(steps=5, warmup_steps=3), "warmup_steps"), (dict(steps=5, lr_schedule="cosine", min_lr_ratio=1.5), "min_lr_ratio"),
])
def test_schedule_options_are_checked(kwargs, param):
    with pytest.raises(ValueError, match=param):
        TrainConfig(**kwargs)


def test_a_step_based_scheduler_is_refused_with_a_time_budget_or_the_built_in_schedule():
    model, opt, sched = make()
    with pytest.raises(ValueError, match="time_budget_s"):
        train(model, opt, window_batch_fn(STREAM, 8, 16), quiet(steps=3, time_budget_s=60), scheduler=sched)
    with pytest.raises(ValueError, match="lr_schedule"):
        train(model, opt, window_batch_fn(STREAM, 8, 16), quiet(steps=3, lr_schedule="cosine"), scheduler=sched)
    with pytest.raises(TypeError, match="hooks"):
        train(model, opt, window_batch_fn(STREAM, 8, 16), quiet(steps=3), hooks=[3])


def test_write_atomic_gives_a_normal_file_mode_and_file_sha256_matches_hashlib(tmp_path):
    import hashlib
    import os
    import stat
    from genai_helpers.checkpoint import file_sha256, write_atomic
    path = write_atomic(tmp_path / "card.json", "{}\n" * 1000)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask     # not mkstemp's 0600
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
