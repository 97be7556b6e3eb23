"""Our DDPM and DDIM sampling steps against diffusers' schedulers, one process.

    make bench            (or: python benchmarks/bench_diffusion.py)

Both sides get the same ``x_t``, the same noise prediction and the same added noise; the outputs
are checked equal (``allclose``, atol 1e-5) before anything is timed. We time (a) one scheduler
step on a batch of 64 images of 3 x 16 x 16 (chapter 13's size) and 3 x 64 x 64, and (b) a whole
50-step DDIM loop and a 1000-step DDPM loop of scheduler arithmetic only (the noise prediction is a
fixed tensor, so the network's cost, which dominates real sampling, is left out on purpose).
Results go to ``benchmarks/results/diffusion.json``. Nothing is asserted about time.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, write_results  # noqa: E402
from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402
from genai_helpers.diffusion.samplers import ddim_step, ddpm_step, inference_timesteps  # noqa: E402
from genai_helpers.diffusion.schedules import NoiseSchedule  # noqa: E402
from genai_helpers.runtime import seed_everything  # noqa: E402


def main() -> None:
    seed_everything(0)
    device = torch.device("cpu")          # diffusers' scheduler tables live on the CPU here
    ours = NoiseSchedule.make("linear", 1000)
    rows = []
    for shape in [(64, 3, 16, 16), (64, 3, 64, 64)]:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=g)
        eps = torch.randn(shape, generator=g)
        ddpm = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
        ddpm.set_timesteps(1000)
        ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear")
        ddim.set_timesteps(50)
        t_ddim, prev_ddim = int(ddim.timesteps[10]), int(ddim.timesteps[11])
        t_ddpm = 500
        # equality first
        ref = ddpm.step(eps, t_ddpm, x, generator=torch.Generator().manual_seed(5)).prev_sample
        same_noise = torch.randn(shape, generator=torch.Generator().manual_seed(5))
        assert torch.allclose(ddpm_step(eps, t_ddpm, x, ours, noise=same_noise), ref, atol=1e-5), "DDPM step differs"
        ref = ddim.step(eps, t_ddim, x).prev_sample
        assert torch.allclose(ddim_step(eps, t_ddim, x, ours, prev_t=prev_ddim), ref, atol=1e-5), "DDIM step differs"
        timings = {
            "ddpm_step": (best_of(lambda: ddpm_step(eps, t_ddpm, x, ours), repeats=20),   # both draw their noise
                          best_of(lambda: ddpm.step(eps, t_ddpm, x).prev_sample, repeats=20)),
            "ddim_step": (best_of(lambda: ddim_step(eps, t_ddim, x, ours, prev_t=prev_ddim), repeats=20),
                          best_of(lambda: ddim.step(eps, t_ddim, x).prev_sample, repeats=20)),
        }
        for what, (a, b) in timings.items():
            rows.append({"what": what, "shape": list(shape), "ours_ms": a * 1e3, "diffusers_ms": b * 1e3,
                         "ours_over_diffusers_time": a / b})
    # whole loops of scheduler arithmetic at chapter 13's size
    shape = (64, 3, 16, 16)
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(shape, generator=torch.Generator().manual_seed(2))

    def our_loop(n, method):
        ts = inference_timesteps(1000, n).tolist()
        x = x0
        for i, t in enumerate(ts):
            prev = ts[i + 1] if i + 1 < len(ts) else -1
            x = ddim_step(eps, t, x, ours, prev_t=prev) if method == "ddim" else ddpm_step(eps, t, x, ours, prev_t=prev)
        return x

    def ref_loop(sched):
        x = x0
        for t in sched.timesteps:
            x = sched.step(eps, t, x).prev_sample
        return x

    ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear"); ddim.set_timesteps(50)
    ddpm = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear"); ddpm.set_timesteps(1000)
    assert torch.allclose(our_loop(50, "ddim"), ref_loop(ddim), atol=1e-4), "DDIM loops differ"
    loops = {"ddim_50_loop": (best_of(lambda: our_loop(50, "ddim"), repeats=5), best_of(lambda: ref_loop(ddim), repeats=5)),
             "ddpm_1000_loop": (best_of(lambda: our_loop(1000, "ddpm"), repeats=2), best_of(lambda: ref_loop(ddpm), repeats=2))}
    for what, (a, b) in loops.items():
        rows.append({"what": what, "shape": list(shape), "ours_ms": a * 1e3, "diffusers_ms": b * 1e3,
                     "ours_over_diffusers_time": a / b})
    print(f"device={device}  torch={torch.__version__}  threads={torch.get_num_threads()}  (outputs checked equal first)")
    print(f"{'what':>15} {'shape':>18} {'ours ms':>9} {'diffusers ms':>13} {'ours/diffusers':>15}")
    for r in rows:
        print(f"{r['what']:>15} {str(tuple(r['shape'])):>18} {r['ours_ms']:9.3f} {r['diffusers_ms']:13.3f} "
              f"{r['ours_over_diffusers_time']:14.2f}x")
    write_results("diffusion", device, {"note": "scheduler arithmetic only; the noise-prediction network is left out",
                                        "rows": rows})


if __name__ == "__main__":
    main()
