"""Diffusion package (chapter 13): schedules, DDPM/DDIM steps against diffusers, guidance, models, CLIP."""
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from genai_helpers.data.shapes import COLOURS, SHAPES, class_prompt, make_shapes, shape_prompt
from genai_helpers.data.text import WordTokenizer
from genai_helpers.diffusion.clip import CLIP, clip_loss, clip_score, encode_prompts
from genai_helpers.diffusion.denoising import EMA, PromptBank, denoising_loss, drop_prompts, train_denoiser
from genai_helpers.diffusion.dit import DiT, DiTConfig, patchify, unpatchify
from genai_helpers.diffusion.guidance import classifier_free_guidance, guided_eps_fn
from genai_helpers.diffusion.samplers import ddim_step, ddpm_step, inference_timesteps, sample
from genai_helpers.diffusion.schedules import NoiseSchedule, cosine_betas, linear_betas
from genai_helpers.diffusion.unet import UNet, UNetConfig, timestep_embedding
from genai_helpers.diffusion.vae import VAE, vae_loss

DIFFUSERS_NAME = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_schedule_tables_equal_diffusers(name):
    ours = NoiseSchedule.make(name, 1000)
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAME[name])
    assert torch.equal(ours.betas, ref.betas)
    assert torch.equal(ours.alphas_cumprod, ref.alphas_cumprod)


def test_schedule_hand_values():
    b = linear_betas(5, 0.1, 0.5)
    assert torch.allclose(b, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]))
    s = NoiseSchedule("linear", b)
    assert math.isclose(float(s.alphas_cumprod[1]), 0.9 * 0.8, rel_tol=1e-6)
    c = cosine_betas(2, s=0.0)                     # alpha_bar(1/2) = cos(pi/4)^2 = 1/2, alpha_bar(1) = 0 -> capped
    assert math.isclose(float(c[0]), 0.5, rel_tol=1e-6) and math.isclose(float(c[1]), 0.999, rel_tol=1e-6)
    row = NoiseSchedule.make("linear", 1000).table([999])[0]
    assert math.isclose(row["signal_scale"] ** 2 + row["noise_scale"] ** 2, 1.0, rel_tol=1e-9)
    with pytest.raises(ValueError, match="name"):
        NoiseSchedule.make("quadratic")
    with pytest.raises(ValueError, match="beta_start"):
        linear_betas(10, 0.5, 0.1)


def test_add_noise_equals_diffusers_and_hand_formula():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    ours = NoiseSchedule.make("cosine")
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    assert torch.allclose(ours.add_noise(x0, noise, t), ref.add_noise(x0, noise, t), atol=1e-6)
    ab = ours.alphas_cumprod[500]
    assert torch.allclose(ours.add_noise(x0, noise, t)[2], ab.sqrt() * x0[2] + (1 - ab).sqrt() * noise[2], atol=1e-6)
    with pytest.raises(ValueError, match="t must"):
        ours.add_noise(x0, noise, torch.tensor([0, 1, 2, 1000]))


def _fake_eps(x, t):
    return torch.tanh(x * 0.7 + 0.001 * t.float().view(-1, 1, 1, 1))


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [1000, 50, 7])
def test_ddpm_steps_equal_diffusers_step_for_step(name, steps):
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAME[name])
    ref.set_timesteps(steps)
    ours = NoiseSchedule.make(name, 1000)
    assert torch.equal(inference_timesteps(1000, steps), ref.timesteps)
    x_ref = x_ours = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    ts = ref.timesteps.tolist()
    for i, t in enumerate(ts[:60]):                  # the first 60 steps and (below) the last ones
        x_ref, x_ours = _compare_ddpm_step(ref, ours, ts, i, t, x_ref, x_ours)
    for i, t in list(enumerate(ts))[-5:]:
        x_ref, x_ours = _compare_ddpm_step(ref, ours, ts, i, t, x_ref, x_ours)


def _compare_ddpm_step(ref, ours, ts, i, t, x_ref, x_ours):
    eps = _fake_eps(x_ref, torch.tensor([t]))
    out_ref = ref.step(eps, t, x_ref, generator=torch.Generator().manual_seed(100 + i)).prev_sample
    noise = torch.randn(x_ref.shape, generator=torch.Generator().manual_seed(100 + i))
    prev_t = ts[i + 1] if i + 1 < len(ts) else -1
    out = ddpm_step(_fake_eps(x_ours, torch.tensor([t])), t, x_ours, ours, prev_t=prev_t, noise=noise)
    assert torch.allclose(out, out_ref, atol=1e-5), f"step t={t}"
    return out_ref, out_ref                          # continue both chains from the same point


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("steps,eta", [(50, 0.0), (10, 0.0), (20, 0.5)])
def test_ddim_steps_equal_diffusers_step_for_step(name, steps, eta):
    ref = DDIMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAME[name])
    ref.set_timesteps(steps)
    ours = NoiseSchedule.make(name, 1000)
    assert torch.equal(inference_timesteps(1000, steps), ref.timesteps)
    x_ref = x_ours = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    ts = ref.timesteps.tolist()
    for i, t in enumerate(ts):
        noise = torch.randn(x_ref.shape, generator=torch.Generator().manual_seed(7 + i))
        out_ref = ref.step(_fake_eps(x_ref, torch.tensor([t])), t, x_ref, eta=eta, variance_noise=noise).prev_sample
        prev_t = ts[i + 1] if i + 1 < len(ts) else -1
        out = ddim_step(_fake_eps(x_ours, torch.tensor([t])), t, x_ours, ours, prev_t=prev_t, eta=eta, noise=noise)
        assert torch.allclose(out, out_ref, atol=1e-5), f"step t={t}"
        x_ours = out
        x_ref = out_ref


def test_sample_loop_equals_diffusers_loop_ddim():
    ours = NoiseSchedule.make("linear", 1000)
    ref = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    ref.set_timesteps(25)
    x_ours, _ = sample(_fake_eps, (2, 3, 4, 4), ours, method="ddim", steps=25, generator=torch.Generator().manual_seed(3))
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    for t in ref.timesteps:
        x = ref.step(_fake_eps(x, t.view(1)), t, x).prev_sample
    assert torch.allclose(x_ours, x, atol=1e-5)


def test_sampler_argument_checks():
    s = NoiseSchedule.make("linear", 100)
    x = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="method"):
        sample(_fake_eps, x.shape, s, method="euler")
    with pytest.raises(ValueError, match="num_inference_steps"):
        inference_timesteps(100, 101)
    with pytest.raises(ValueError, match="prev_t"):
        ddim_step(x, 10, x, s, prev_t=10)
    with pytest.raises(ValueError, match="eps"):
        ddpm_step(torch.zeros(1, 3, 4, 5), 10, x, s)


def test_guidance_scale_zero_is_unconditional_and_one_is_conditional():
    g = torch.Generator().manual_seed(0)
    e_u, e_c = torch.randn(3, 3, 4, 4, generator=g), torch.randn(3, 3, 4, 4, generator=g)
    assert torch.equal(classifier_free_guidance(e_u, e_c, 0.0), e_u)
    assert torch.allclose(classifier_free_guidance(e_u, e_c, 1.0), e_c)
    assert torch.allclose(classifier_free_guidance(e_u, e_c, 3.0), e_u + 3 * (e_c - e_u))

    def model(x, t, pooled):                         # a toy "model" whose output depends on the prompt
        return x * pooled.view(-1, 1, 1, 1)
    x, t = torch.randn(2, 1, 2, 2, generator=g), torch.tensor([5, 5])
    cond, null = {"pooled": torch.tensor([2.0, 3.0])}, {"pooled": torch.tensor([0.5, 0.5])}
    for scale in (0, 1, 2.5):                       # the batched path agrees with the two separate calls
        out = guided_eps_fn(model, cond, null, scale)(x, t)
        assert torch.allclose(out, classifier_free_guidance(model(x, t, **null), model(x, t, **cond), scale))
    batched = guided_eps_fn(model, cond, null, 0.5)(x, t)
    assert torch.allclose(batched, model(x, t, **null) + 0.5 * (model(x, t, **cond) - model(x, t, **null)))
    with pytest.raises(ValueError, match="scale"):
        classifier_free_guidance(e_u, e_c, -1.0)


def test_timestep_embedding_hand_values():
    e = timestep_embedding(torch.tensor([0, 3]), 4, max_period=100.0)
    # frequencies 1 and 100**(-1/2) = 0.1
    assert torch.allclose(e[0], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert torch.allclose(e[1], torch.tensor([math.cos(3), math.cos(0.3), math.sin(3), math.sin(0.3)]))


def _cond(B=2, L=5, d=16):
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 3:] = False
    return {"context": torch.randn(B, L, d, generator=g), "context_mask": mask, "pooled": torch.randn(B, d, generator=g)}


def test_unet_shapes_zero_init_and_prompt_sensitivity():
    torch.manual_seed(0)
    net = UNet(UNetConfig(channels=(16, 32), attention_levels=(False, True), d_text=16, emb_dim=32))
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 900])
    assert torch.equal(net(x, t, **_cond()), torch.zeros(2, 3, 8, 8))       # zero-initialised output layer
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    c1, c2 = _cond(), _cond()
    c2["context"] = c2["context"] + 1.0
    assert not torch.allclose(net(x, t, **c1), net(x, t, **c2))             # cross-attention sees the prompt
    c3 = _cond()
    c3["context"][0, 3:] = 99.0                                              # padded tokens are ignored
    assert torch.allclose(net(x, t, **c1)[0], net(x, t, **c3)[0], atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(2, 3, 7, 7), t, **c1)


def test_patchify_roundtrip_and_layout():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    p = patchify(x, 2)
    assert p.shape == (2, 4, 12)
    assert torch.equal(p[0, 1].view(2, 2, 3).permute(2, 0, 1), x[0, :, 0:2, 2:4])   # second patch: top-right
    assert torch.equal(unpatchify(p, 2, 3, 4, 4), x)
    with pytest.raises(ValueError, match="patch"):
        patchify(x, 3)


def test_dit_starts_as_zero_and_depends_on_condition():
    torch.manual_seed(0)
    net = DiT(DiTConfig(image_size=8, patch=2, d_model=32, depth=2, n_heads=4, d_text=16))
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([1, 500])
    assert torch.equal(net(x, t, **_cond()), torch.zeros(2, 3, 8, 8))       # adaLN-Zero: output layer zero
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    a, b = _cond(), _cond()
    b["pooled"] = b["pooled"] + 1
    assert not torch.allclose(net(x, t, **a), net(x, t, **b))


def test_shapes_data_and_prompts():
    x, caps, labels = make_shapes(36, size=16, seed=0)
    assert x.shape == (36, 3, 16, 16) and 0 <= float(x.min()) and float(x.max()) <= 1
    for c, s, k in zip(caps, labels["shape"], labels["colour"]):
        assert SHAPES[s] in c and COLOURS[k] in c
    assert torch.equal(labels["label"], labels["shape"] * 6 + labels["colour"])
    assert class_prompt(7) == shape_prompt("square", "green") == "a green square"
    x2, caps2, _ = make_shapes(36, size=16, seed=0)
    assert torch.equal(x, x2) and caps == caps2
    red = make_shapes(8, seed=1, colour="red")[0]
    centre = red[:, :, 6:10, 6:10].mean((0, 2, 3))
    assert centre[0] > 0.6 and centre[1] < 0.3                              # the middle of the shape is red
    with pytest.raises(ValueError, match="shape"):
        make_shapes(2, shape="star")


def _tiny_clip():
    tok = WordTokenizer.train([shape_prompt(s, c, k) for s in SHAPES for c in COLOURS for k in range(4)], 64)
    return CLIP(tok, embed_dim=16, d_text=16)


def test_encode_prompts_and_clip_loss():
    clip = _tiny_clip()
    ids, mask = encode_prompts(clip.tokenizer, ["a red circle", ""], 8)
    assert ids[0, 3] == clip.tokenizer.eos_id and mask[0].sum() == 4
    assert ids[1, 0] == clip.tokenizer.eos_id and mask[1].sum() == 1
    with pytest.raises(ValueError, match="max_len"):
        encode_prompts(clip.tokenizer, ["a red circle on a dark background"], 4)
    e = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    perfect = clip_loss(e, e, 100.0)
    assert float(perfect) < 1e-3                                           # matching pairs, sharp logits
    logits = 2.0 * e @ e.T
    expected = (torch.nn.functional.cross_entropy(logits, torch.arange(4)) + torch.nn.functional.cross_entropy(logits.T, torch.arange(4))) / 2
    assert torch.allclose(clip_loss(e, e, 2.0), expected)


def test_clip_learns_and_clipscore_prefers_true_captions():
    torch.manual_seed(0)
    x, caps, labels = make_shapes(192, size=16, seed=0)
    clip = _tiny_clip()
    opt = torch.optim.AdamW(clip.parameters(), lr=3e-3)
    for step in range(60):
        idx = torch.randint(0, 192, (64,))
        img, txt = clip.embed_images(x[idx] * 2 - 1), clip.embed_text([caps[i] for i in idx])
        loss = clip_loss(img, txt, clip.logit_scale.exp(), targets=labels["label"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    true = clip_score(clip, x[:64] * 2 - 1, caps[:64])
    wrong = clip_score(clip, x[:64] * 2 - 1, [class_prompt(int((l + 7) % 18)) for l in labels["label"][:64]])
    assert true.shape == (64,) and float(true.min()) >= 0 and float(true.max()) <= 100
    assert float(true.mean()) > float(wrong.mean()) + 5


def test_prompt_bank_dropout_ema_and_training_step():
    clip = _tiny_clip()
    bank = PromptBank.encode(clip, ["a red circle", "a blue square", "a red circle"])
    assert bank.prompts[0] == "" and len(bank.prompts) == 3 and bank.context.shape[0] == 3
    idx = torch.ones(1000, dtype=torch.long)
    dropped = drop_prompts(idx, 0.2, torch.Generator().manual_seed(0))
    assert 150 < int((dropped == 0).sum()) < 250
    lin = torch.nn.Linear(2, 1)
    ema = EMA(lin, decay=0.5)
    w0 = ema.model.weight.clone()
    with torch.no_grad():
        lin.weight.add_(1.0)
    ema.update(lin)                                  # decay min(0.5, 2/11) = 2/11
    assert torch.allclose(ema.model.weight, w0 + (1 - 2 / 11) * 1.0)
    net = UNet(UNetConfig(channels=(16, 32), attention_levels=(False, True), d_text=16, emb_dim=32))
    x = torch.rand(16, 3, 8, 8) * 2 - 1
    s = NoiseSchedule.make("cosine", 100)
    loss = denoising_loss(net, x, bank.take(torch.ones(16, dtype=torch.long)), s, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and 0.5 < loss.item() < 2.0                      # zero-init model predicts 0: loss ~ E[eps^2] = 1
    ema, hist = train_denoiser(net, x, torch.ones(16, dtype=torch.long), bank, s, steps=3, batch_size=8, warmup=1, log_every=1)
    assert hist.steps_done == 3 and len(hist.loss) == 3 and ema.updates == 3


def test_vae_shapes_and_loss():
    torch.manual_seed(0)
    vae = VAE(in_channels=3, latent_channels=4, width=16)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    mean, logvar = vae.encode(x)
    assert mean.shape == (2, 4, 4, 4) and logvar.shape == mean.shape
    recon, mean, logvar = vae(x)
    assert recon.shape == x.shape
    loss, parts = vae_loss(recon, x, mean, logvar, beta=0.1)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum((1, 2, 3)).mean() / x[0].numel()
    assert torch.allclose(parts["kl"], kl) and torch.allclose(loss, parts["recon"] + 0.1 * kl)


def test_min_snr_weighting_by_hand():
    s = NoiseSchedule.make("cosine", 100)
    x0 = torch.rand(6, 3, 4, 4) * 2 - 1
    zero = lambda x, t, **kw: torch.zeros_like(x)                      # noqa: E731
    loss = denoising_loss(zero, x0, {}, s, torch.Generator().manual_seed(0), min_snr_gamma=5.0)
    g = torch.Generator().manual_seed(0)                               # replay the draws
    t = torch.randint(0, 100, (6,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    snr = s.alphas_cumprod[t] / (1 - s.alphas_cumprod[t])
    expected = (noise.pow(2).mean((1, 2, 3)) * torch.minimum(snr, torch.tensor(5.0)) / snr).mean()
    assert torch.allclose(loss, expected)
    plain = denoising_loss(zero, x0, {}, s, torch.Generator().manual_seed(0))
    assert torch.allclose(plain, noise.pow(2).mean())
    with pytest.raises(ValueError, match="min_snr_gamma"):
        denoising_loss(zero, x0, {}, s, min_snr_gamma=0.0)


def test_flat_background_option():
    x, _, _ = make_shapes(4, size=16, seed=0, background=(0.1, 0.1))
    assert torch.allclose(x[:, :, 0, 0], torch.full((4, 3), 0.1))     # corners are background
    with pytest.raises(ValueError, match="background"):
        make_shapes(2, background=(0.5, 0.9))


def _old_train_denoiser(model, images, prompt_idx, bank, schedule, *, steps, batch_size, lr, warmup, p_uncond,
                        ema_decay, seed, log_every, min_snr_gamma, weight_decay=0.0):
    """The loop train_denoiser ran before it moved onto the shared training loop (issue 14), verbatim."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    ema, losses, lrs, running = EMA(model, ema_decay), [], [], []
    model.train()
    for step in range(steps):
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=gen)
        cond = bank.take(drop_prompts(prompt_idx[idx], p_uncond, gen))
        loss = denoising_loss(model, images[idx], cond, schedule, gen, min_snr_gamma)
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


def test_train_denoiser_on_the_shared_loop_equals_the_old_loop_bit_for_bit():
    clip = _tiny_clip()
    bank = PromptBank.encode(clip, ["a red circle", "a blue square"])
    x = torch.rand(16, 3, 8, 8) * 2 - 1
    idx = torch.arange(16) % 3
    s = NoiseSchedule.make("cosine", 100)
    kw = dict(steps=7, batch_size=8, lr=2e-3, warmup=3, p_uncond=0.3, ema_decay=0.9, seed=4, log_every=2, min_snr_gamma=5.0)
    out = []
    for fn in (_old_train_denoiser, train_denoiser):
        torch.manual_seed(0)
        net = UNet(UNetConfig(channels=(16, 32), attention_levels=(False, True), d_text=16, emb_dim=32))
        torch.nn.init.normal_(net.conv_out.weight, std=0.05)          # so every layer gets a gradient
        out.append((net, fn(net, x, idx, bank, s, **kw)))
    (old_net, (old_ema, old_loss, old_lr)), (net, (ema, hist)) = out
    assert hist.loss == old_loss and hist.lr == old_lr and hist.step == [2, 4, 6, 7] and hist.steps_done == 7
    assert hist.lr[-1] == 0.0
    for a, b in zip(list(old_net.parameters()) + list(old_ema.model.parameters()),
                    list(net.parameters()) + list(ema.model.parameters())):
        assert torch.equal(a, b)


def _loud_eps(x, t):                      # a noise prediction whose x0 estimate leaves [-1, 1]
    return -1.5 * torch.tanh(x * 0.7 + 0.001 * t.float().view(-1, 1, 1, 1))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_clipped_eps_equals_diffusers_use_clipped_model_output(eta):
    ref = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
    ref.set_timesteps(20)
    ours = NoiseSchedule.make("linear", 1000)
    x_ref = x_ours = x_plain = 2 * torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    ts = ref.timesteps.tolist()
    differs = False
    for i, t in enumerate(ts):
        noise = torch.randn(x_ref.shape, generator=torch.Generator().manual_seed(50 + i))
        prev_t = ts[i + 1] if i + 1 < len(ts) else -1
        x_ref = ref.step(_loud_eps(x_ref, torch.tensor([t])), t, x_ref, eta=eta, use_clipped_model_output=True,
                         variance_noise=noise).prev_sample
        plain = ddim_step(_loud_eps(x_ours, torch.tensor([t])), t, x_ours, ours, prev_t=prev_t, eta=eta, noise=noise)
        x_ours = ddim_step(_loud_eps(x_ours, torch.tensor([t])), t, x_ours, ours, prev_t=prev_t, eta=eta, noise=noise,
                           clipped_eps=True)
        assert torch.allclose(x_ours, x_ref, atol=1e-4), f"step t={t}"
        differs |= not torch.allclose(plain, x_ours, atol=1e-4)
    assert differs                                            # the clip did bite, so the control matters
    with pytest.raises(ValueError, match="clipped_eps"):
        sample(_fake_eps, (1, 3, 4, 4), ours, method="ddpm", steps=5, clipped_eps=True)


@pytest.mark.parametrize("method", ["ddim", "ddpm"])
def test_dynamic_thresholding_equals_diffusers(method):
    Sched = DDIMScheduler if method == "ddim" else DDPMScheduler
    ref = Sched(num_train_timesteps=1000, beta_schedule="linear", thresholding=True, dynamic_thresholding_ratio=0.9,
                sample_max_value=1.5)
    ref.set_timesteps(10)
    ours = NoiseSchedule.make("linear", 1000)
    x_ref = x_ours = 2 * torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    ts = ref.timesteps.tolist()
    for i, t in enumerate(ts):
        noise = torch.randn(x_ref.shape, generator=torch.Generator().manual_seed(80 + i))
        prev_t = ts[i + 1] if i + 1 < len(ts) else -1
        if method == "ddim":
            x_ref = ref.step(_loud_eps(x_ref, torch.tensor([t])), t, x_ref).prev_sample
            x_ours = ddim_step(_loud_eps(x_ours, torch.tensor([t])), t, x_ours, ours, prev_t=prev_t, clip=1.5, threshold=0.9)
        else:
            x_ref = ref.step(_loud_eps(x_ref, torch.tensor([t])), t, x_ref,
                             generator=None if t == 0 else torch.Generator().manual_seed(80 + i)).prev_sample
            x_ours = ddpm_step(_loud_eps(x_ours, torch.tensor([t])), t, x_ours, ours, prev_t=prev_t, clip=1.5,
                               threshold=0.9, noise=torch.randn(x_ours.shape, generator=torch.Generator().manual_seed(80 + i)))
        assert torch.allclose(x_ours, x_ref, atol=1e-4), f"step t={t}"
    with pytest.raises(ValueError, match="threshold"):
        ddim_step(x_ours, 10, x_ours, ours, prev_t=5, threshold=1.5)


def test_guidance_rescale_equals_diffusers_rescale_noise_cfg():
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg
    from genai_helpers.diffusion.guidance import classifier_free_guidance
    g = torch.Generator().manual_seed(6)
    e_u, e_c = torch.randn(3, 3, 8, 8, generator=g), torch.randn(3, 3, 8, 8, generator=g)
    for phi in (0.0, 0.7, 1.0):
        ref = rescale_noise_cfg(e_u + 5.0 * (e_c - e_u), e_c, guidance_rescale=phi)
        assert torch.allclose(classifier_free_guidance(e_u, e_c, 5.0, rescale=phi), ref, atol=1e-6)
    out = classifier_free_guidance(e_u, e_c, 5.0, rescale=1.0)
    assert torch.allclose(out.std(dim=(1, 2, 3)), e_c.std(dim=(1, 2, 3)), atol=1e-5)
    with pytest.raises(ValueError, match="rescale"):
        classifier_free_guidance(e_u, e_c, 5.0, rescale=1.5)


def test_diffusers_schedulers_run_on_our_schedule_and_ddim_matches_ours():
    from genai_helpers.diffusion.samplers import diffusers_scheduler, sample_with_scheduler
    ours = NoiseSchedule.make("cosine", 1000)
    a, _ = sample(_fake_eps, (2, 3, 4, 4), ours, method="ddim", steps=15, clip=None,
                  generator=torch.Generator().manual_seed(9))
    b, info = sample_with_scheduler(_fake_eps, (2, 3, 4, 4), diffusers_scheduler("ddim", ours, clip=None), steps=15,
                                    generator=torch.Generator().manual_seed(9))
    assert torch.allclose(a, b, atol=1e-4) and len(info["timesteps"]) == 15
    a1, _ = sample(_loud_eps, (2, 3, 4, 4), ours, method="ddim", steps=15, generator=torch.Generator().manual_seed(9))
    b1, _ = sample_with_scheduler(_loud_eps, (2, 3, 4, 4), diffusers_scheduler("ddim", ours), steps=15,
                                  generator=torch.Generator().manual_seed(9))
    assert torch.allclose(a1, b1, atol=1e-4)                     # both clip x0 to [-1, 1] by default
    assert diffusers_scheduler("dpm++2m", ours).config.thresholding
    c, _ = sample_with_scheduler(_fake_eps, (2, 3, 4, 4), diffusers_scheduler("dpm++2m", ours), steps=15,
                                 generator=torch.Generator().manual_seed(9))
    assert c.shape == a.shape and torch.isfinite(c).all()
    with pytest.raises(ValueError, match="name"):
        diffusers_scheduler("euler", ours)
