"""Chapter 15: the video DiT with 3-D (tubelet) patches."""
import pytest
import torch

from genai_helpers.diffusion.dit import patchify
from genai_helpers.diffusion.schedules import NoiseSchedule
from genai_helpers.diffusion.video import train_video_denoiser
from genai_helpers.diffusion.video_dit import VideoDiT, VideoDiTConfig, patchify_video, unpatchify_video


def _prompt(batch, vocab=20, max_len=8):
    ids = torch.randint(4, vocab, (batch, max_len), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(batch, max_len, dtype=torch.bool)
    mask[:, 5:] = False
    return ids, mask


@pytest.mark.parametrize("patch", [(2, 2, 2), (1, 2, 2), (4, 1, 2), (1, 1, 1)])
def test_patchify_video_round_trip_and_shapes(patch):
    x = torch.randn(3, 4, 4, 8, 8)
    tokens = patchify_video(x, patch)
    grid = (4 // patch[0], 8 // patch[1], 8 // patch[2])
    assert tokens.shape == (3, grid[0] * grid[1] * grid[2], 4 * patch[0] * patch[1] * patch[2])
    assert torch.equal(unpatchify_video(tokens, patch, grid, 4), x)


def test_patchify_video_token_order_by_hand():
    x = torch.arange(2 * 3 * 4 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 4, 6)
    tokens = patchify_video(x, (2, 2, 3))
    # token 0 of clip 1: frames 0-1, rows 0-1, columns 0-2, flattened (frame, row, column, channel)
    assert torch.equal(tokens[1, 0], x[1, :, 0:2, 0:2, 0:3].permute(1, 2, 3, 0).reshape(-1))
    # tokens run column-block fastest, then row block, then frame block: (frame block 1, row 1, column 1)
    gh, gw = 2, 2
    assert torch.equal(tokens[0, 1 * gh * gw + 1 * gw + 1], x[0, :, 2:4, 2:4, 3:6].permute(1, 2, 3, 0).reshape(-1))


def test_patchify_video_with_one_frame_patches_is_the_image_patchify_per_frame():
    x = torch.randn(2, 3, 2, 4, 4)
    tokens = patchify_video(x, (1, 2, 2)).view(2, 2, 4, 12)             # (B, frames, patches per frame, 2*2*3)
    for f in range(2):
        assert torch.equal(tokens[:, f], patchify(x[:, :, f], 2))


def test_patchify_video_rejects_bad_input():
    with pytest.raises(ValueError, match="x"):
        patchify_video(torch.randn(2, 4, 8, 8), (2, 2, 2))
    with pytest.raises(ValueError, match="patch"):
        patchify_video(torch.randn(1, 4, 3, 8, 8), (2, 2, 2))
    with pytest.raises(TypeError, match="patch"):
        patchify_video(torch.randn(1, 4, 4, 8, 8), 2)
    with pytest.raises(ValueError, match="patch"):
        patchify_video(torch.randn(1, 4, 4, 8, 8), (0, 2, 2))
    with pytest.raises(ValueError, match="tokens"):
        unpatchify_video(torch.randn(1, 31, 32), (2, 2, 2), (2, 4, 4), 4)
    with pytest.raises(TypeError, match="grid"):
        unpatchify_video(torch.randn(1, 32, 32), (2, 2, 2), (2, 4), 4)


def test_video_dit_shapes_zero_init_and_config_checks():
    cfg = VideoDiTConfig(vocab_size=20, patch=(2, 2, 2), d_model=32, depth=2, n_heads=4)
    assert cfg.grid == (2, 4, 4) and cfg.n_tokens == 32
    model = VideoDiT(cfg)
    x = torch.randn(3, 4, 4, 8, 8)
    ids, mask = _prompt(3)
    out = model(x, torch.tensor([1, 500, 999]), ids, mask)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))                          # adaLN-Zero + zero head: starts at 0
    with pytest.raises(ValueError, match="patch"):
        VideoDiTConfig(vocab_size=20, frames=4, patch=(3, 2, 2))
    with pytest.raises(ValueError, match="n_heads"):
        VideoDiTConfig(vocab_size=20, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(3, 4, 2, 8, 8), torch.tensor([1, 2, 3]), ids, mask)
    with pytest.raises(ValueError, match="t and ids"):
        model(x, torch.tensor([1, 2]), ids, mask)


def test_video_dit_attends_across_frames_and_places_but_not_across_clips():
    torch.manual_seed(0)
    model = VideoDiT(VideoDiTConfig(vocab_size=20, d_model=32, depth=1, n_heads=4)).eval()
    with torch.no_grad():
        for layer in (model.ada_out, model.head, model.blocks[0].ada):
            torch.nn.init.normal_(layer.weight, std=0.1)
        x = torch.randn(2, 4, 4, 8, 8)
        ids, mask = _prompt(2)
        t = torch.tensor([100, 100])
        y = x.clone()
        y[0, :, 0, 0, 0] += 1.0                                           # one latent pixel of frame 0, clip 0
        changed = (model(y, t, ids, mask) - model(x, t, ids, mask)).abs().amax(dim=1) > 1e-6
    assert bool(changed[0].all())                                         # every frame and place of that clip
    assert not bool(changed[1].any())                                     # nothing of the other clip


def test_video_dit_trains_on_the_video_denoiser_loop():
    torch.manual_seed(0)
    model = VideoDiT(VideoDiTConfig(vocab_size=20, d_model=32, depth=1, n_heads=4))
    latents = torch.randn(16, 4, 4, 8, 8)
    ids, mask = _prompt(16)
    null = (torch.tensor([[3, 0, 0, 0, 0, 0, 0, 0]]), torch.tensor([[True] + [False] * 7]))
    ema, hist = train_video_denoiser(model, latents, ids, mask, null, NoiseSchedule.make("cosine", 100), steps=3,
                                     batch_size=4, warmup=0, log_every=1, seed=0)
    assert hist.steps_done == 3 and all(torch.isfinite(torch.tensor(hist.loss)))
    assert isinstance(ema.model, VideoDiT)
