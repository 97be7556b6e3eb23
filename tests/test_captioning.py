"""Chapter 10's captioning pieces: patches, 2-D positions, encoders, the cross-attending decoder,
greedy and beam-search captions."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genai_helpers.data import WordTokenizer
from genai_helpers.models.captioning import (CaptionDecoder, Captioner, CNNEncoder, PatchPositions, ViTEncoder,
                                             block_with_cross_weights, caption_batch, patchify,
                                             sinusoidal_positions_2d, unpatchify)


# ---------------------------------------------------------------------------------- patches

def test_patchify_unpatchify_round_trip_is_exact():
    x = torch.randn(2, 3, 12, 8)
    p = patchify(x, 4)
    assert p.shape == (2, 3 * 2, 3 * 16)
    assert torch.equal(unpatchify(p, 4, (3, 2), channels=3), x)


def test_patchify_matches_unfold_and_a_strided_conv():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    p = patchify(x, 4)
    assert torch.equal(p, F.unfold(x, 4, stride=4).transpose(1, 2))
    conv = nn.Conv2d(3, 5, 4, stride=4)
    lin = nn.Linear(48, 5)
    with torch.no_grad():
        lin.weight.copy_(conv.weight.reshape(5, -1))
        lin.bias.copy_(conv.bias)
    assert torch.allclose(lin(p), conv(x).flatten(2).transpose(1, 2), atol=1e-6)


def test_patch_order_is_raster_row_by_row():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 2:, :2] = 1.0                       # bottom-left 2x2 patch of a 2x2 grid
    p = patchify(x, 2)
    assert p.sum(-1).tolist() == [[0.0, 0.0, 4.0, 0.0]]


def test_patch_validation_names_the_parameter():
    with pytest.raises(ValueError, match="patch_size"):
        patchify(torch.zeros(1, 3, 10, 10), 4)
    with pytest.raises(ValueError, match="images"):
        patchify(torch.zeros(3, 8, 8), 4)
    with pytest.raises(ValueError, match="patches"):
        unpatchify(torch.zeros(1, 5, 48), 4, (2, 2))
    with pytest.raises(TypeError, match="grid"):
        unpatchify(torch.zeros(1, 4, 48), 4, 2)


# -------------------------------------------------------------------------------- positions

def test_2d_sinusoidal_table_hand_computed():
    # d_model = 4: each half has one frequency (1), so entry (r, c) = [sin r, cos r, sin c, cos c].
    t = sinusoidal_positions_2d(3, 2, 4)
    assert t.shape == (6, 4)
    r, c = 2, 1
    expected = torch.tensor([math.sin(r), math.cos(r), math.sin(c), math.cos(c)])
    assert torch.allclose(t[r * 2 + c], expected, atol=1e-6)


def test_2d_table_same_row_shares_first_half_and_dot_depends_only_on_offset():
    R, C, d = 5, 6, 16
    t = sinusoidal_positions_2d(R, C, d).reshape(R, C, d)
    assert torch.equal(t[2, 0, :d // 2], t[2, 5, :d // 2])          # same row -> same row code
    assert torch.equal(t[0, 3, d // 2:], t[4, 3, d // 2:])          # same column -> same column code
    assert not torch.equal(t[0, 0], t[0, 1])
    # offset (1, 2) from two different starting cells gives the same dot product
    a = t[0, 0] @ t[1, 2]
    b = t[3, 2] @ t[4, 4]
    assert torch.allclose(a, b, atol=1e-5)
    # nearer cells are more similar than far ones (here: along a row)
    assert t[2, 2] @ t[2, 3] > t[2, 2] @ t[2, 5]


def test_patch_positions_parameter_counts_and_effect():
    grid, d = (4, 4), 8
    counts = {k: sum(p.numel() for p in PatchPositions(grid, d, k).parameters())
              for k in ("none", "1d-fixed", "1d-learned", "2d-fixed", "2d-learned")}
    assert counts == {"none": 0, "1d-fixed": 0, "1d-learned": 16 * 8, "2d-fixed": 0, "2d-learned": (4 + 4) * 4}
    x = torch.randn(2, 16, d)
    assert torch.equal(PatchPositions(grid, d, "none")(x), x)
    fixed = PatchPositions(grid, d, "2d-fixed")
    assert torch.allclose(fixed(x) - x, sinusoidal_positions_2d(4, 4, d).expand(2, -1, -1), atol=1e-6)
    learned = PatchPositions(grid, d, "2d-learned")
    tab = learned.table().reshape(4, 4, d)
    assert torch.equal(tab[1, 0, :4], learned.row_emb[1]) and torch.equal(tab[3, 2, 4:], learned.col_emb[2])


def test_patch_positions_validation():
    with pytest.raises(ValueError, match="kind"):
        PatchPositions((2, 2), 8, "3d")
    with pytest.raises(ValueError, match="d_model"):
        PatchPositions((2, 2), 6, "2d-fixed")
    with pytest.raises(ValueError, match="x must have shape"):
        PatchPositions((2, 2), 8, "1d-fixed")(torch.zeros(1, 5, 8))


# --------------------------------------------------------------------------------- encoders

def test_cnn_encoder_flattens_its_grid_row_by_row():
    torch.manual_seed(0)
    enc = CNNEncoder(32, d_model=16, channels=(8, 8, 8), positions="none").eval()
    x = torch.rand(2, 3, 32, 32)
    out = enc(x)
    assert out.shape == (2, 16, 16) and enc.grid == (4, 4)
    grid = enc.proj(enc.features(x))                                   # (B, d, 4, 4)
    assert torch.allclose(out[:, 4 * 2 + 3], enc.ln(grid[:, :, 2, 3]), atol=1e-6)


def test_cnn_encoder_adds_fixed_2d_positions_by_default():
    torch.manual_seed(0)
    enc = CNNEncoder(32, d_model=16, channels=(8, 8, 8)).eval()
    assert enc.pos.kind == "2d-fixed"
    x = torch.rand(2, 3, 32, 32)
    seq = enc.proj(enc.features(x)).flatten(2).transpose(1, 2)          # (B, 16, d) before positions
    assert torch.allclose(enc(x), enc.ln(seq + enc.pos.table()), atol=1e-6)


def test_vit_encoder_shapes_and_position_matters():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16)
    flipped = x.flip(-1)
    for kind, sensitive in (("none", False), ("2d-fixed", True)):
        enc = ViTEncoder(16, 4, d_model=16, n_layer=1, n_head=2, positions=kind).eval()
        a, b = enc(x), enc(flipped)
        assert a.shape == (1, 16, 16)
        # Mirroring the image permutes the patches (and mirrors each one). Without positions, the
        # multiset of outputs depends only on the multiset of patches: check on a pure permutation.
        perm = torch.randperm(16)
        p = patchify(x, 4)[:, perm]
        x_perm = unpatchify(p, 4, (4, 4))
        same = torch.allclose(enc(x_perm), a[:, perm], atol=1e-5)
        assert same is (not sensitive)
        assert not torch.allclose(a, b)


def test_encoder_validation():
    with pytest.raises(ValueError, match="patch_size"):
        ViTEncoder(32, 5)
    with pytest.raises(ValueError, match="image_size"):
        CNNEncoder(30, channels=(8, 8))
    with pytest.raises(ValueError, match="images"):
        ViTEncoder(16, 4, d_model=16, n_head=2)(torch.zeros(1, 3, 32, 32))


# ---------------------------------------------------------------------------------- decoder

def _tiny_decoder(vocab=11, d=16):
    torch.manual_seed(0)
    return CaptionDecoder(vocab, d_model=d, n_layer=2, n_head=2, max_len=10, d_context=12).eval()


def test_decoder_is_causal_but_reads_the_image():
    dec = _tiny_decoder()
    memory = torch.randn(2, 5, 12)
    a = torch.randint(0, 11, (2, 7))
    b = a.clone()
    b[:, 4:] = (b[:, 4:] + 3) % 11                                     # change the future words
    la, lb = dec(a, memory), dec(b, memory)
    assert torch.allclose(la[:, :4], lb[:, :4], atol=1e-6)           # the past does not see them
    assert not torch.allclose(la[:, 4:], lb[:, 4:])
    other = dec(a, torch.randn(2, 5, 12))                             # a different image changes every position
    assert (other - la).abs().amax(-1).min() > 1e-4


def test_cross_attention_weights_match_the_block_and_sum_to_one():
    dec = _tiny_decoder()
    x, memory = torch.randn(2, 6, 16), torch.randn(2, 5, 12)
    block = dec.blocks[0]
    y, w = block_with_cross_weights(block, x, memory)
    assert torch.allclose(y, block(x, memory, is_causal=True), atol=1e-5)
    assert w.shape == (2, 2, 6, 5)
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 6), atol=1e-6)
    ids = torch.randint(0, 11, (2, 6))
    logits, maps = dec(ids, memory, need_weights=True)
    assert torch.allclose(logits, dec(ids, memory), atol=1e-5) and len(maps) == 2


def test_decoder_validation():
    dec = _tiny_decoder()
    with pytest.raises(ValueError, match="max_len"):
        dec(torch.zeros(1, 11, dtype=torch.long), torch.zeros(1, 5, 12))
    with pytest.raises(ValueError, match="batch size"):
        dec(torch.zeros(2, 3, dtype=torch.long), torch.zeros(1, 5, 12))
    with pytest.raises(ValueError, match="bos_id"):
        Captioner(CNNEncoder(16, 12, channels=(4, 4)), dec, bos_id=11, eos_id=2)
    with pytest.raises(TypeError, match="decoder"):
        Captioner(CNNEncoder(16, 12, channels=(4, 4)), nn.Linear(2, 2), 2, 2)


# -------------------------------------------------------------------------------- captioner

TEXTS = ["a red circle", "a blue square left of a red circle", "one green triangle"]


def test_caption_batch_shifts_targets_by_one():
    tok = WordTokenizer.train(TEXTS, vocab_size=50)
    ids, targets = caption_batch(["a red circle"], tok, 6)
    a, red, circle, eos, pad = tok.stoi["a"], tok.stoi["red"], tok.stoi["circle"], tok.eos_id, tok.pad_id
    assert ids.tolist() == [[eos, a, red, circle, pad, pad]]
    assert targets.tolist() == [[a, red, circle, eos, -100, -100]]
    with pytest.raises(ValueError, match="max_len"):
        caption_batch(["a blue square left of a red circle"], tok, 5)


def _captioner(vocab, d=16):
    torch.manual_seed(0)
    enc = CNNEncoder(16, d, channels=(8, 8), positions="none")     # (this seed makes some captions end early)
    dec = CaptionDecoder(vocab, d, n_layer=1, n_head=2, max_len=12)
    return Captioner(enc, dec, bos_id=2, eos_id=2)


def test_loss_is_cross_entropy_over_non_padding_targets():
    tok = WordTokenizer.train(TEXTS, vocab_size=50)
    model = _captioner(len(tok)).eval()
    ids, targets = caption_batch(TEXTS, tok, 10)
    images = torch.rand(3, 3, 16, 16)
    logits, loss = model(images, ids, targets)
    keep = targets != -100
    manual = -torch.log_softmax(logits, -1)[keep].gather(-1, targets[keep][:, None]).mean()
    assert torch.allclose(loss, manual, atol=1e-6)


def test_beam_width_one_without_length_penalty_is_greedy():
    model = _captioner(20).eval()
    images = torch.rand(6, 3, 16, 16)
    with torch.no_grad():                    # make <eos> competitive so some captions end early
        model.decoder.head.weight[2] *= 4
    greedy = model.greedy(images, max_len=8)
    assert any(len(g) < 8 for g in greedy), "no caption ended early: the test would not cover <eos> handling"
    for img, g in zip(images, greedy):
        best = model.beam(img, beam_width=1, max_len=8, length_penalty=0.0)[0]
        assert best.tokens == g


def test_beam_search_returns_ranked_hypotheses_with_true_log_probs():
    model = _captioner(20).eval()
    image = torch.rand(3, 16, 16)
    beams = model.beam(image, beam_width=4, max_len=6, length_penalty=0.0)
    assert len(beams) == 4 and [b.score for b in beams] == sorted((b.score for b in beams), reverse=True)
    step = model.step_fn(image)
    for b in beams:                                                   # re-score each hypothesis
        seq = [2] + b.tokens
        logp = sum(torch.log_softmax(step(torch.tensor([seq[:t]])), -1)[0, seq[t]].item() for t in range(1, len(seq)))
        assert logp == pytest.approx(b.log_prob, abs=1e-4)
    with pytest.raises(ValueError, match="max_len"):
        model.beam(image, beam_width=2, max_len=12)
    with pytest.raises(ValueError, match="image"):
        model.step_fn(torch.rand(2, 3, 16, 16))


def test_a_tiny_captioner_learns_to_caption_its_training_images():
    tok = WordTokenizer.train(TEXTS, vocab_size=50)
    model = _captioner(len(tok), d=32)
    torch.manual_seed(1)
    images = torch.rand(3, 3, 16, 16)
    ids, targets = caption_batch(TEXTS, tok, 10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(images, ids, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = [tok.decode(t[:-1]) for t in model.greedy(images, max_len=10)]
    assert out == TEXTS
