"""Diffusion models for text-to-image and text-to-video (chapters 13-15): schedules, samplers,
guidance, denoisers, CLIP, VAEs.

* :mod:`.schedules` — linear and cosine noise schedules, their tables, the forward process
* :mod:`.samplers` — DDPM and DDIM steps (equal to diffusers' schedulers) and the sampling loop
* :mod:`.guidance` — classifier-free guidance
* :mod:`.unet` — a small U-Net with time embedding and cross-attention to prompt tokens
* :mod:`.dit` — a small Diffusion Transformer (patchify, adaLN-Zero blocks, unpatchify)
* :mod:`.clip` — a CLIP-style text-image encoder trained contrastively, and CLIPScore
* :mod:`.denoising` — the noise-prediction loss, prompt dropout, the prompt bank, and
  ``train_denoiser`` (the one training loop, :mod:`genai_helpers.training`, with EMA weights from
  :mod:`genai_helpers.training_hooks`)
* :mod:`.vae` — a small VAE for the latent-diffusion idea
* :mod:`.video` — chapter 15's video VAE, temporal convolution and attention, the video denoiser
* :mod:`.video_dit` — chapter 15's video DiT: 3-D (tubelet) patchify and a transformer over space-time tokens
* :mod:`.interpolation` — frame interpolation: linear blend and a small mid-frame network (ch. 15)
"""
from .guidance import classifier_free_guidance, guided_eps_fn  # noqa: F401
from .samplers import ddim_step, ddpm_step, inference_timesteps, predict_x0, sample  # noqa: F401
from .schedules import NoiseSchedule, cosine_betas, linear_betas  # noqa: F401

__all__ = ["classifier_free_guidance", "guided_eps_fn", "ddim_step", "ddpm_step", "inference_timesteps",
           "predict_x0", "sample", "NoiseSchedule", "cosine_betas", "linear_betas"]
