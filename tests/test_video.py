"""Chapter 15: the moving-shapes data set, the video VAE, temporal layers, the video denoiser,
frame interpolation and the video metrics."""
import numpy as np
import pytest
import torch

from genai_helpers.data.procedural import SCENE_COLOURS
from genai_helpers.data.shapes import SHAPES
from genai_helpers.data.video import (DIRECTION_STEPS, DIRECTIONS, SPEEDS, SPEED_NAMES, label_matrix,
                                      make_clips_for_captions, make_moving_shapes, parse_video_prompt, video_prompt)
from genai_helpers.diffusion.interpolation import (MidFrameNet, frame_triplets, interpolate_clip, linear_blend,
                                                   train_mid_frame_net)
from genai_helpers.diffusion.schedules import NoiseSchedule
from genai_helpers.diffusion.video import (TemporalAttention, TemporalConv, VideoDenoiser, VideoDenoiserConfig,
                                           VideoVAE, add_temporal_layers, batch_to_frames, frames_to_batch,
                                           video_denoising_loss, video_vae_loss)
from genai_helpers.metrics.feature_net import FeatureNet
from genai_helpers.metrics.video import (VideoFeatureNet, fvd, motion_from_track, per_frame_fid, shuffle_frames,
                                         track_centroids, train_video_feature_net)


def _centroid(frame):
    """Centre (x, y) of the brightest-than-background pixels of a (3, H, W) frame, in fractions of the width."""
    diff = (frame - frame[:, :1, :1]).abs().sum(0).numpy()           # background is the corner colour
    ys, xs = np.nonzero(diff > 0.3)
    w = diff[ys, xs]
    H = frame.shape[-1]
    return ((xs + 0.5) * w).sum() / w.sum() / H, ((ys + 0.5) * w).sum() / w.sum() / H


# --- data set ---------------------------------------------------------------------------------------

def test_shapes_dtype_range_and_labels():
    v, caps, lab = make_moving_shapes(6, frames=8, size=16, seed=0)
    assert v.shape == (6, 8, 3, 16, 16) and v.dtype == torch.float32
    assert float(v.min()) >= 0 and float(v.max()) <= 1
    assert len(caps) == 6
    assert label_matrix(lab).shape == (6, 4)
    assert lab["start"].shape == (6, 2)


def test_same_seed_same_clips_other_seed_other_clips():
    a, ca, _ = make_moving_shapes(5, seed=3)
    b, cb, _ = make_moving_shapes(5, seed=3)
    c, _, _ = make_moving_shapes(5, seed=4)
    assert torch.equal(a, b) and ca == cb
    assert not torch.equal(a, c)


def test_captions_say_what_the_clip_shows():
    v, caps, lab = make_moving_shapes(24, frames=8, size=32, seed=1)
    for i, cap in enumerate(caps):
        parsed = parse_video_prompt(cap)
        assert parsed["direction"] == DIRECTIONS[int(lab["direction"][i])]
        assert parsed["speed"] == SPEED_NAMES[int(lab["speed"][i])]
        # the shape's centroid moves the captioned way, by about speed * (frames - 1)
        (x0, y0), (x1, y1) = _centroid(v[i, 0]), _centroid(v[i, -1])
        dx, dy = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}[parsed["direction"]]
        travel = SPEEDS[parsed["speed"]] * 7
        assert (x1 - x0) * dx + (y1 - y0) * dy == pytest.approx(travel, abs=0.04), cap
        assert abs((x1 - x0) * dy) + abs((y1 - y0) * dx) < 0.02, cap        # nothing across the motion
        # the shape is painted in the captioned colour (the frame's brightest pixel is the colour)
        rgb = np.array(SCENE_COLOURS[parsed["colour"]]) / 255
        frame = v[i, 0].numpy()
        flat = frame.reshape(3, -1)
        best = flat[:, np.argmin(((flat - rgb[:, None]) ** 2).sum(0))]
        assert np.allclose(best, rgb, atol=0.02), cap


def test_whole_path_stays_inside_the_image():
    # a shape cut by the border would lose area: the painted area must be the same in every frame
    v, _, _ = make_moving_shapes(30, frames=8, size=32, seed=2, speed="quickly")
    ink = (v - v[..., :1, :1]).abs().sum(dim=(2, 3, 4))              # (n, frames): total colour difference
    assert float((ink / ink[:, :1] - 1).abs().max()) < 0.04           # anti-aliasing moves it a little


def test_fixed_attributes_and_prompt_without_speed():
    _, caps, lab = make_moving_shapes(4, seed=0, shape="square", colour="green", direction="up", speed="slowly",
                                      with_speed=False)
    assert caps == ["a green square moving up"] * 4
    assert int(lab["speed"][0]) == SPEED_NAMES.index("slowly")
    assert video_prompt("circle", "red", "left", "quickly") == "a red circle moving left quickly"


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=2, frames=1), dict(n=2, size=4), dict(n=2, half_size=(0.3, 0.2)),
                                    dict(n=2, frames=20), dict(n=2, direction="sideways"), dict(n=2, speeds=("fast",)),
                                    dict(n=2, background=(0.2, 0.9))])
def test_dataset_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_moving_shapes(**kwargs)


def test_prompt_validation():
    with pytest.raises(ValueError, match="colour"):
        video_prompt("circle", "pink", "left")
    with pytest.raises(ValueError):
        parse_video_prompt("a red circle")


# --- VAE and reshapes -----------------------------------------------------------------------------

def test_frames_to_batch_round_trip_and_order():
    x = torch.randn(2, 3, 4, 5, 5)
    b = frames_to_batch(x)
    assert b.shape == (8, 3, 5, 5)
    assert torch.equal(b[5], x[1, :, 1])                              # clip 1, frame 1
    assert torch.equal(batch_to_frames(b, 4), x)
    with pytest.raises(ValueError, match="frames"):
        batch_to_frames(b, 3)


def test_vae_compresses_space_and_time():
    torch.manual_seed(0)
    vae = VideoVAE(latent_channels=4, width=8).eval()
    x = torch.rand(2, 3, 8, 16, 16) * 2 - 1
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (2, 4, 4, 8, 8)               # T, H, W all halved
    assert x[0].numel() / mean[0].numel() == 6.0
    recon, _, _ = vae(x, generator=torch.Generator().manual_seed(0))
    assert recon.shape == x.shape and float(recon.detach().abs().max()) <= 1
    assert vae.decode(mean).shape == x.shape


def test_vae_rejects_odd_sizes_and_bad_beta():
    vae = VideoVAE(width=8)
    with pytest.raises(ValueError, match="even"):
        vae.encode(torch.zeros(1, 3, 7, 16, 16))
    with pytest.raises(ValueError, match="C=3"):
        vae.encode(torch.zeros(1, 1, 8, 16, 16))
    with pytest.raises(ValueError, match="dimensions"):
        vae.encode(torch.zeros(3, 8, 16, 16))
    with pytest.raises(ValueError, match="multiple of 8"):
        VideoVAE(width=12)
    x = torch.zeros(1, 3, 2, 4, 4)
    with pytest.raises(ValueError, match="beta"):
        video_vae_loss(x, x, torch.zeros(1, 4, 1, 2, 2), torch.zeros(1, 4, 1, 2, 2), beta=-1)


def test_vae_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    x, recon = torch.randn(2, 3, 2, 4, 4, generator=g), torch.randn(2, 3, 2, 4, 4, generator=g)
    mean, logvar = torch.randn(2, 4, 1, 2, 2, generator=g), torch.randn(2, 4, 1, 2, 2, generator=g)
    loss, parts = video_vae_loss(recon, x, mean, logvar, beta=0.5)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum() / 2 / 96
    assert torch.allclose(parts["kl"], kl)
    assert torch.allclose(loss, ((recon - x) ** 2).mean() + 0.5 * kl)


# --- temporal layers ------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [TemporalAttention(16, n_heads=4), TemporalConv(16)])
def test_temporal_layers_mix_only_along_time(layer):
    torch.manual_seed(0)
    for p in layer.parameters():                                       # random, non-trivial weights
        torch.nn.init.normal_(p, std=0.3)
    layer.eval()
    x = torch.randn(2, 16, 6, 5, 5)
    y = x.clone()
    y[1, :, 2, 3, 1] += torch.randn(16)                                # clip 1, frame 2, pixel (3, 1)
    diff = (layer(y) - layer(x)).abs().amax(dim=1)                     # (B, T, H, W)
    changed = diff > 1e-6
    assert changed[1, :, 3, 1].sum() >= 2                              # it reaches other frames at that pixel
    changed[1, :, 3, 1] = False
    assert not changed.any()                                           # and nothing else: not other pixels, not clip 0


def test_temporal_attention_is_order_aware_and_shape_preserving():
    torch.manual_seed(0)
    layer = TemporalAttention(16).eval()
    x = torch.randn(1, 16, 4, 2, 2)
    out = layer(x)
    assert out.shape == x.shape
    # with frame positions, reversing time does not simply reverse the output
    assert not torch.allclose(layer(x.flip(2)), out.flip(2), atol=1e-5)
    with pytest.raises(ValueError):
        layer(torch.randn(1, 8, 4, 2, 2))
    with pytest.raises(ValueError, match="odd"):
        TemporalConv(16, kernel=2)


# --- denoiser -------------------------------------------------------------------------------------

def _prompts(B, L=8):
    ids = torch.randint(4, 20, (B, L))
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[:, 5:] = False
    return ids, mask


def test_denoiser_shapes_and_temporal_switch():
    torch.manual_seed(0)
    x, t = torch.randn(2, 4, 4, 8, 8), torch.tensor([3, 700])
    ids, mask = _prompts(2)
    with_t = VideoDenoiser(VideoDenoiserConfig(vocab_size=32, channels=(16, 32), temporal=True))
    without = VideoDenoiser(VideoDenoiserConfig(vocab_size=32, channels=(16, 32), temporal=False))
    assert with_t(x, t, ids, mask).shape == x.shape
    n_with, n_without = (sum(p.numel() for p in m.parameters()) for m in (with_t, without))
    n_temporal = sum(p.numel() for n, p in with_t.named_parameters() if ".tconv." in n or ".tattn." in n)
    assert n_temporal > 0 and n_with - n_without == n_temporal


def test_denoiser_without_temporal_layers_treats_frames_independently():
    torch.manual_seed(0)
    model = VideoDenoiser(VideoDenoiserConfig(vocab_size=32, channels=(16, 32), temporal=False)).eval()
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)             # make the output depend on the input
    x, t = torch.randn(1, 4, 4, 8, 8), torch.tensor([500])
    ids, mask = _prompts(1)
    y = x.clone()
    y[:, :, 0] += 1.0                                                 # change frame 0 only
    d = (model(y, t, ids, mask) - model(x, t, ids, mask)).detach().abs().amax(dim=(1, 3, 4))[0]
    assert d[0] > 1e-4 and float(d[1:].max()) == 0.0
    with_t = VideoDenoiser(VideoDenoiserConfig(vocab_size=32, channels=(16, 32), temporal=True)).eval()
    torch.nn.init.normal_(with_t.conv_out.weight, std=0.1)
    d = (with_t(y, t, ids, mask) - with_t(x, t, ids, mask)).detach().abs().amax(dim=(1, 3, 4))[0]
    assert float(d[1:].min()) > 1e-4                                  # the temporal layers carry it to every frame


def test_denoiser_validation():
    model = VideoDenoiser(VideoDenoiserConfig(vocab_size=32, channels=(16, 32)))
    ids, mask = _prompts(2)
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(2, 4, 4, 7, 7), torch.tensor([1, 2]), ids, mask)
    with pytest.raises(ValueError, match="one row per clip"):
        model(torch.randn(3, 4, 4, 8, 8), torch.tensor([1, 2, 3]), ids, mask)
    with pytest.raises(ValueError, match="channels"):
        VideoDenoiserConfig(channels=(12,))


def test_video_denoising_loss_by_hand():
    torch.manual_seed(0)
    model = VideoDenoiser(VideoDenoiserConfig(vocab_size=32, channels=(16, 32)))
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)
    sched = NoiseSchedule.make("cosine", 100)
    x0 = torch.randn(2, 4, 2, 4, 4)
    ids, mask = _prompts(2)
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, 100, (2,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    ab = sched.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    by_hand = ((model(x_t, t, ids, mask) - noise) ** 2).mean()
    pkg = video_denoising_loss(model, x0, {"ids": ids, "mask": mask}, sched, torch.Generator().manual_seed(5))
    assert torch.allclose(by_hand, pkg, atol=1e-6)


# --- interpolation --------------------------------------------------------------------------------

def test_linear_blend_is_exact_and_interpolation_keeps_the_originals():
    a, b = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, -1.0]])
    assert torch.equal(linear_blend(a, b), torch.tensor([[0.5, 0.0]]))
    assert torch.equal(linear_blend(a, b, 0.25), torch.tensor([[0.25, 0.5]]))
    clips = torch.randn(2, 3, 4, 6, 6)
    out = interpolate_clip(clips)
    assert out.shape == (2, 3, 7, 6, 6)
    assert torch.equal(out[:, :, 0::2], clips)
    assert torch.allclose(out[:, :, 3], (clips[:, :, 1] + clips[:, :, 2]) / 2)
    with pytest.raises(ValueError, match="weight"):
        linear_blend(a, b, 1.5)
    with pytest.raises(ValueError, match="shape"):
        linear_blend(a, torch.zeros(2, 2))


def test_untrained_mid_frame_net_is_the_blend_and_training_beats_it():
    v, _, _ = make_moving_shapes(300, frames=4, size=16, seed=0)
    clips = v.transpose(1, 2) * 2 - 1
    torch.manual_seed(0)
    net = MidFrameNet(width=16)
    prev, mid, nxt = frame_triplets(clips)
    assert prev.shape == (300 * 2, 3, 16, 16) and torch.equal(mid[1], clips[0, :, 2])
    with torch.no_grad():
        assert torch.equal(net(prev, nxt), linear_blend(prev, nxt).clamp(-1, 1))
    train_mid_frame_net(net, clips, steps=120, batch_size=64, lr=3e-3)
    vt, _, _ = make_moving_shapes(64, frames=4, size=16, seed=1)       # held-out clips
    p, m, n = frame_triplets(vt.transpose(1, 2) * 2 - 1)
    with torch.no_grad():
        assert ((net(p, n) - m) ** 2).mean() < 0.85 * ((linear_blend(p, n) - m) ** 2).mean()


# --- metrics --------------------------------------------------------------------------------------

def test_per_frame_fid_is_blind_to_frame_order_fvd_is_not():
    v, _, lab = make_moving_shapes(160, frames=8, size=16, seed=0)
    clips = v.transpose(1, 2) * 2 - 1
    vnet = train_video_feature_net(clips, label_matrix(lab), epochs=2, width=8, seed=0)
    assert vnet.train_report["n_val"] == 16
    torch.manual_seed(0)
    fnet = FeatureNet(3, (18,), width=8).eval()
    real, fake = clips[:80], clips[80:]
    shuffled = shuffle_frames(fake, seed=0)
    assert not torch.equal(shuffled, fake)
    assert torch.equal(shuffled.sort(dim=2).values, fake.sort(dim=2).values)    # the same frames per clip
    assert per_frame_fid(fnet, real, shuffled) == pytest.approx(per_frame_fid(fnet, real, fake), rel=1e-6, abs=1e-9)
    assert fvd(vnet, real, shuffled) != pytest.approx(fvd(vnet, real, fake), rel=1e-3)
    assert fvd(vnet, real, real) == pytest.approx(0.0, abs=1e-6)


def test_video_metric_validation():
    net = VideoFeatureNet(3, (4,), width=8)
    with pytest.raises(ValueError, match="T >= 2"):
        net.predict(torch.zeros(2, 3, 1, 8, 8))
    with pytest.raises(TypeError):
        per_frame_fid(net, torch.zeros(2, 3, 2, 8, 8), torch.zeros(2, 3, 2, 8, 8))
    with pytest.raises(ValueError, match="labels"):
        train_video_feature_net(torch.zeros(4, 3, 2, 8, 8), torch.zeros(4, 1))


# --- the training functions run on the shared loop and train exactly as their old loops did (issue 14) ---

def _old_train_video_denoiser(model, latents, prompt_ids, prompt_mask, null_prompt, schedule, *, steps, batch_size,
                              lr, warmup, p_uncond, ema_decay, seed, log_every, min_snr_gamma):
    """train_video_denoiser's own loop before issue 14, verbatim (time budget left out)."""
    import math

    from genai_helpers.diffusion.denoising import drop_prompts
    from genai_helpers.training import EMA
    null_ids, null_mask = null_prompt
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    ema, losses, lrs, running = EMA(model, ema_decay), [], [], []
    model.train()
    for step in range(steps):
        idx = torch.randint(0, latents.shape[0], (batch_size,), generator=gen)
        keep = drop_prompts(torch.ones(batch_size, dtype=torch.long), p_uncond, gen).bool()[:, None]
        ids = torch.where(keep, prompt_ids[idx], null_ids)
        mask = torch.where(keep, prompt_mask[idx], null_mask)
        loss = video_denoising_loss(model, latents[idx], {"ids": ids, "mask": mask}, schedule, gen, min_snr_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(model)
        running.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            losses.append(sum(running) / len(running))
            lrs.append(sched.get_last_lr()[0])
            running = []
    return ema, losses, lrs


def test_train_video_denoiser_on_the_shared_loop_equals_the_old_loop_bit_for_bit():
    from genai_helpers.diffusion.video import train_video_denoiser
    torch.manual_seed(1)
    latents = torch.randn(6, 4, 2, 4, 4)
    ids, mask = _prompts(6)
    null = (torch.full((1, 8), 2), torch.tensor([[True] + [False] * 7]))
    kw = dict(steps=5, batch_size=3, lr=2e-3, warmup=2, p_uncond=0.3, ema_decay=0.9, seed=2, log_every=2, min_snr_gamma=5.0)
    out = []
    for fn in (_old_train_video_denoiser, train_video_denoiser):
        torch.manual_seed(0)
        model = VideoDenoiser(VideoDenoiserConfig(vocab_size=32, channels=(16, 32)))
        torch.nn.init.normal_(model.conv_out.weight, std=0.05)
        out.append((model, fn(model, latents, ids, mask, null, NoiseSchedule.make("cosine", 100), **kw)))
    (old_model, (old_ema, old_loss, old_lr)), (model, (ema, hist)) = out
    assert hist.loss == old_loss and hist.lr == old_lr and hist.steps_done == 5 and hist.lr[-1] == 0.0
    for a, b in zip(list(old_model.parameters()) + list(old_ema.model.parameters()),
                    list(model.parameters()) + list(ema.model.parameters())):
        assert torch.equal(a, b)


def test_video_denoiser_under_a_time_budget_ends_annealed(monkeypatch):
    """The old loop laid its cosine over ``steps`` and, stopped by the budget, kept most of its rate."""
    from genai_helpers.diffusion.video import train_video_denoiser

    class Clock:                        # every call is one second later: the budget ends after a few steps
        t = 0.0

        def perf_counter(self):
            self.t += 1.0
            return self.t

    monkeypatch.setattr("genai_helpers.training.time", Clock())
    torch.manual_seed(0)
    model = VideoDenoiser(VideoDenoiserConfig(vocab_size=32, channels=(16, 32)))
    ids, mask = _prompts(4)
    null = (torch.full((1, 8), 2), torch.tensor([[True] + [False] * 7]))
    _, hist = train_video_denoiser(model, torch.randn(4, 4, 2, 4, 4), ids, mask, null, NoiseSchedule.make("cosine", 100),
                                   steps=100, batch_size=2, warmup=1, log_every=1, time_budget_s=4)
    assert hist.stopped == "time budget" and hist.steps_done < 10
    assert hist.lr[-1] == 0.0 and hist.lr == sorted(hist.lr, reverse=True)


def test_train_mid_frame_net_on_the_shared_loop_equals_the_old_loop():
    import torch.nn.functional as F
    v, _, _ = make_moving_shapes(40, frames=4, size=8, seed=0)
    clips = v.transpose(1, 2) * 2 - 1
    torch.manual_seed(0)
    old = MidFrameNet(width=8)
    torch.nn.init.normal_(old.out.weight, std=0.05)
    new = MidFrameNet(width=8)
    new.load_state_dict(old.state_dict())
    # the old loop, verbatim: AdamW + CosineAnnealingLR over the steps, no clipping
    prev, mid, nxt = frame_triplets(clips)
    gen = torch.Generator().manual_seed(3)
    opt = torch.optim.AdamW(old.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=12)
    losses = []
    old.train()
    for _ in range(12):
        idx = torch.randint(0, len(prev), (16,), generator=gen)
        loss = F.mse_loss(old(prev[idx], nxt[idx]), mid[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    report = train_mid_frame_net(new, clips, steps=12, batch_size=16, lr=3e-3, seed=3)
    # CosineAnnealingLR computes its rates recursively, the shared schedule in closed form: they agree
    # to ~1e-15 relative, so the losses agree to float32 rounding (they are usually bit-identical)
    assert report["loss"] == pytest.approx(losses, rel=1e-6, abs=1e-7)
    for a, b in zip(old.parameters(), new.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not new.training and not any(p.requires_grad for p in new.parameters())


def test_train_video_feature_net_on_the_shared_loop_equals_the_old_loop():
    import torch.nn.functional as F
    v, _, lab = make_moving_shapes(50, frames=4, size=8, seed=0)
    videos, labels = v.transpose(1, 2) * 2 - 1, label_matrix(lab)
    sizes = tuple(int(m) + 1 for m in labels.max(0).values)
    epochs, bs, seed = 2, 10, 0
    with torch.random.fork_rng(devices=[]):          # the old loop, verbatim
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        old = VideoFeatureNet(3, sizes, width=8)
        order = torch.randperm(len(videos), generator=gen)
        train_idx = order[5:]
        spe = len(train_idx) // bs
        opt = torch.optim.AdamW(old.parameters(), lr=3e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * spe)
        old.train()
        for _ in range(epochs):
            perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
            total = 0.0
            for s in range(spe):
                idx = perm[s * bs:(s + 1) * bs]
                loss = sum(F.cross_entropy(lg, labels[idx][:, h]) for h, lg in enumerate(old(videos[idx])))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
    new = train_video_feature_net(videos, labels, epochs=epochs, batch_size=bs, width=8, seed=seed)
    assert new.train_report["n_val"] == 5
    assert new.train_report["train_loss"] == pytest.approx(total / spe, rel=1e-6)
    for a, b in zip(old.parameters(), new.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


# --- motion: the direction convention, the centroid tracker, caption-matched clips ------------------

@pytest.mark.parametrize("direction", DIRECTIONS)
def test_direction_convention_down_means_growing_row_index(direction):
    v, _, _ = make_moving_shapes(4, frames=8, size=16, seed=0, direction=direction, speed="quickly")
    mass = (v - v[:, :, :, :1, :1]).abs().sum(2)                     # (n, T, H, W): the shape's pixels
    rows = (mass.sum(3) * torch.arange(16.0)).sum(2) / mass.sum((2, 3))
    cols = (mass.sum(2) * torch.arange(16.0)).sum(2) / mass.sum((2, 3))
    d_row, d_col = rows[:, -1] - rows[:, 0], cols[:, -1] - cols[:, 0]
    dx, dy = DIRECTION_STEPS[direction]
    # "down" moves to larger row indices, i.e. lower in an imshow picture; "right" to larger columns
    assert torch.all(d_row * dy > 2) if dy else torch.all(d_row.abs() < 0.5)
    assert torch.all(d_col * dx > 2) if dx else torch.all(d_col.abs() < 0.5)


def test_tracker_reads_real_clips_direction_and_speed():
    v, _, lab = make_moving_shapes(120, frames=8, size=16, seed=3)
    positions, mass = track_centroids(v.transpose(1, 2) * 2 - 1)
    assert positions.shape == (120, 8, 2) and mass.shape == (120, 8) and not positions.isnan().any()
    # the first-frame centre is the generator's start, to a fraction of a pixel (a triangle's centre
    # of area lies a third of its half-height below the centre it is drawn around, so leave it out)
    symmetric = lab["shape"] != SHAPES.index("triangle")
    assert torch.allclose(positions[symmetric, 0], lab["start"][symmetric], atol=0.02)
    velocity, direction = motion_from_track(positions)
    assert torch.equal(direction, lab["direction"])
    speed = velocity.norm(dim=1)
    expected = torch.tensor([SPEEDS[SPEED_NAMES[i]] for i in lab["speed"]])
    assert torch.allclose(speed, expected, atol=0.005)


def test_tracker_marks_still_empty_and_reversed_clips():
    v, _, lab = make_moving_shapes(8, frames=8, size=16, seed=4, direction="down")
    clips = v.transpose(1, 2) * 2 - 1
    _, d_rev = motion_from_track(track_centroids(clips.flip(2))[0])
    assert torch.all(d_rev == DIRECTIONS.index("up"))                 # played backwards, "down" reads as "up"
    frozen = clips[:, :, :1].expand_as(clips)
    _, d_still = motion_from_track(track_centroids(frozen)[0])
    assert torch.all(d_still == -1)
    faded = clips.clone()
    faded[:, :, 2:] = faded[:, :, 2:, :1, :1]                         # the shape vanishes after frame 2
    pos, mass = track_centroids(faded)
    assert pos[:, 2:].isnan().all() and not pos[:, :2].isnan().any() and (mass[:, 2:] < 0.5).all()
    vel, d = motion_from_track(pos)                                   # two frames still give a direction
    assert torch.all(d == DIRECTIONS.index("down"))
    one = pos.clone()
    one[:, 1] = float("nan")
    assert torch.all(motion_from_track(one)[1] == -1) and motion_from_track(one)[0].isnan().all()


def test_motion_validation():
    with pytest.raises(ValueError, match="threshold"):
        track_centroids(torch.zeros(1, 3, 4, 8, 8), threshold=-1)
    with pytest.raises(ValueError, match="min_mass"):
        track_centroids(torch.zeros(1, 3, 4, 8, 8), min_mass=0)
    with pytest.raises(ValueError, match="T >= 2"):
        track_centroids(torch.zeros(1, 3, 1, 8, 8))
    with pytest.raises(ValueError, match="positions"):
        motion_from_track(torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="min_speed"):
        motion_from_track(torch.zeros(2, 4, 2), min_speed=-0.1)


def test_clips_for_captions_follow_their_captions():
    caps = ["a red circle moving down quickly", "a green triangle moving up slowly", "a blue square moving left"]
    v, out_caps, lab = make_clips_for_captions(caps, frames=8, size=16, seed=0)
    assert v.shape == (3, 8, 3, 16, 16) and out_caps == caps
    _, d = motion_from_track(track_centroids(v.transpose(1, 2) * 2 - 1)[0])
    assert [DIRECTIONS[i] for i in d] == ["down", "up", "left"]
    assert lab["speed"][:2].tolist() == [SPEED_NAMES.index("quickly"), SPEED_NAMES.index("slowly")]
    again, _, _ = make_clips_for_captions(caps, frames=8, size=16, seed=0)
    other, _, _ = make_clips_for_captions(caps, frames=8, size=16, seed=1)
    assert torch.equal(v, again) and not torch.equal(v, other)
    with pytest.raises(ValueError, match="captions"):
        make_clips_for_captions([])
    with pytest.raises(ValueError, match="prompt"):
        make_clips_for_captions(["a red circle"])
    with pytest.raises(TypeError, match="keyword"):
        make_clips_for_captions(caps, shape="circle")


def test_add_temporal_layers_starts_as_the_image_model():
    cfg = VideoDenoiserConfig(in_channels=4, channels=(16, 32), vocab_size=20, max_len=6, d_text=32, emb_dim=32,
                              n_heads=2, temporal=False)
    torch.manual_seed(0)
    image = VideoDenoiser(cfg)
    with torch.no_grad():
        for p in image.parameters():
            p.add_(0.05 * torch.randn_like(p))                        # a "trained" model: no zero output layer
    video = add_temporal_layers(image)
    assert video.config.temporal and not image.config.temporal
    x, t = torch.randn(2, 4, 4, 8, 8), torch.tensor([10, 700])
    ids, mask = torch.randint(0, 20, (2, 6)), torch.ones(2, 6, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(video(x, t, ids, mask), image(x, t, ids, mask), atol=1e-6)
    # the temporal layers train: their zero projections get gradients
    video(x, t, ids, mask).square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in video.named_parameters() if ".tattn." in n)
    with pytest.raises(ValueError, match="temporal"):
        add_temporal_layers(video)
    with pytest.raises(TypeError, match="VideoDenoiser"):
        add_temporal_layers(torch.nn.Linear(2, 2))


def test_interpolation_with_wider_gaps():
    clips = torch.arange(3.0).view(1, 1, 3, 1, 1).expand(1, 3, 3, 2, 2)
    out = interpolate_clip(clips, times=2)                            # key frames 4 apart
    assert out.shape[2] == 9 and out[0, 0, :, 0, 0].tolist() == [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2]
    seq = torch.arange(7.0).view(1, 1, 7, 1, 1).expand(2, 3, 7, 1, 1)
    prev, mid, nxt = frame_triplets(seq, gap=3)
    assert prev.shape[0] == 2 and mid[0, 0, 0, 0] == 3 and nxt[0, 0, 0, 0] == 6
    with pytest.raises(ValueError, match="gap"):
        frame_triplets(seq, gap=4)
    with pytest.raises(ValueError, match="times"):
        interpolate_clip(clips, times=0)
    with pytest.raises(ValueError, match="gaps"):
        train_mid_frame_net(MidFrameNet(width=8), seq, steps=1, gaps=())
