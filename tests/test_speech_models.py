"""Chapter 16's models: residual VQ, the codec, the dual AR TTS model, streaming and the shipped weights."""
import json
import shutil

import numpy as np
import pytest
import torch

from genai_helpers.speech import codec as C
from genai_helpers.speech import features
from genai_helpers.speech import tts as T
from genai_helpers.speech import weights as W


def test_residual_vq_picks_nearest_codes_of_the_residuals():
    torch.manual_seed(0)
    rvq = C.ResidualVQ(3, 16, 4).eval()
    rvq.codebooks.copy_(torch.randn(3, 16, 4))
    z = torch.randn(2, 5, 4)
    q, codes, _ = rvq(z)
    residual = z.reshape(-1, 4)
    for k in range(3):
        idx = torch.cdist(residual, rvq.codebooks[k]).argmin(-1)
        assert torch.equal(idx, codes.reshape(-1, 3)[:, k])
        residual = residual - rvq.codebooks[k][idx]
    assert torch.allclose(q, rvq.decode(codes), atol=1e-6)
    # more codebooks never leave a larger error than fewer on these vectors' own codebooks
    errs = [(z - rvq.decode(codes[..., :k])).norm() for k in range(1, 4)]
    assert errs[0] >= errs[-1]


def test_residual_vq_rejects_bad_arguments():
    rvq = C.ResidualVQ(2, 8, 4)
    with pytest.raises(ValueError, match="n_q"):
        rvq(torch.randn(1, 3, 4), n_q=3)
    with pytest.raises(ValueError, match="decay"):
        C.ResidualVQ(2, 8, 4, decay=1.5)
    with pytest.raises(ValueError, match="codes"):
        rvq.decode(torch.zeros(1, 3, 5, dtype=torch.long))


def test_codec_shapes_and_frame_count():
    codec = C.Codec(C.CodecConfig(n_codebooks=2, codebook_size=8, dim=8, channels=16)).eval()
    for n in (4000, 4100, 16000):
        wave = torch.randn(n) * 0.1
        codes = codec.encode(wave)
        assert codes.shape == (1, codec.n_frames(n), 2)
        out = codec.decode(codes, n)
        assert out.shape == (1, n)
    assert C.CodecConfig().bitrate(4) == pytest.approx(31.25 * 8 * 4)
    with pytest.raises(ValueError, match="n_codebooks"):
        C.CodecConfig(n_codebooks=0)


def test_codec_training_runs_and_rejects_bad_steps():
    waves = [np.random.default_rng(i).normal(0, 0.1, 8000).astype(np.float32) for i in range(3)]
    cfg = C.CodecConfig(n_codebooks=2, codebook_size=8, dim=8, channels=16)
    codec, hist = C.train_codec(waves, cfg, steps=2, batch_size=2, crop_seconds=0.25, progress=False)
    assert len(hist) == 2 and all(np.isfinite(h["loss"]) for h in hist)
    with pytest.raises(ValueError, match="steps"):
        C.train_codec(waves, cfg, steps=0)
    with pytest.raises(ValueError, match="waves"):
        C.train_codec([], cfg, steps=1)


SMALL = T.TTSConfig(n_codebooks=3, codebook_size=16, d_slow=32, n_slow_layers=2, d_fast=16, n_fast_layers=1,
                    n_heads=2, n_progress=4)


def _items(n=3, frames=7):
    g = torch.Generator().manual_seed(0)
    texts = ["it is one", "set an alarm", "the train"]
    return [(texts[i % 3], i % 4, i % 3, torch.randint(0, 16, (frames + i, 3), generator=g)) for i in range(n)]


def test_encode_text_and_config_validation():
    assert T.encode_text("Ab c") == [2, 3, 1, 4]
    with pytest.raises(ValueError, match="bad characters"):
        T.encode_text("it is 5")
    with pytest.raises(TypeError):
        T.encode_text(5)
    with pytest.raises(ValueError, match="divisible"):
        T.TTSConfig(d_slow=30, n_heads=4)


def test_padding_in_a_batch_does_not_change_an_utterance_logits():
    torch.manual_seed(0)
    model = T.DualARTTS(SMALL).eval()
    items = _items()
    batch = T.make_batch(items, 3)
    alone = T.make_batch(items[:1], 3)
    with torch.no_grad():
        a = model(**{k: batch[k] for k in ("text_ids", "text_len", "voice", "speed", "codes", "n_frames")})
        b = model(**{k: alone[k] for k in ("text_ids", "text_len", "voice", "speed", "codes", "n_frames")})
    T0 = items[0][3].shape[0]
    assert torch.allclose(a[0, :T0], b[0, :T0], atol=1e-4)


def test_cached_generation_matches_the_teacher_forced_forward():
    """Greedy generation with the key/value cache picks, at every frame, the argmax of the full forward."""
    torch.manual_seed(0)
    model = T.DualARTTS(SMALL).eval()
    text = "set an alarm"
    codes = model.generate(text, 1, 2, 6, temperature=0)
    b = T.make_batch([(text, 1, 2, codes)], 3)
    with torch.no_grad():
        logits = model(b["text_ids"], b["text_len"], b["voice"], b["speed"], b["codes"], b["n_frames"])
    assert torch.equal(logits[0].argmax(-1), codes)


def test_generate_and_synthesize_reject_bad_arguments():
    model = T.DualARTTS(SMALL).eval()
    with pytest.raises(ValueError, match="n_frames"):
        model.generate("it is one", 0, 0, 0)
    with pytest.raises(ValueError, match="voice"):
        model.generate("it is one", 9, 0, 3)
    codec = C.Codec(C.CodecConfig(n_codebooks=3, codebook_size=16, dim=8, channels=16)).eval()
    with pytest.raises(ValueError, match="chunk_frames"):
        T.synthesize(model, codec, "it is one", 0, 0, 4, chunk_frames=0)


def test_streamed_audio_equals_the_one_shot_decode_with_enough_lookahead():
    torch.manual_seed(0)
    model = T.DualARTTS(SMALL).eval()
    codec = C.Codec(C.CodecConfig(n_codebooks=3, codebook_size=16, dim=8, channels=16)).eval()
    whole, info = T.synthesize(model, codec, "the train", 0, 1, 20, seed=3)
    streamed, sinfo = T.synthesize(model, codec, "the train", 0, 1, 20, seed=3, chunk_frames=4, lookahead=8)
    assert len(sinfo["chunks"]) > 1 and streamed.shape == whole.shape
    assert torch.allclose(streamed, whole, atol=1e-5)
    assert sinfo["first_audio_s"] <= sinfo["seconds"]
    for ahead in (0, 1):          # less lookahead: not equal, but never a sample lost or repeated
        short, _ = T.synthesize(model, codec, "the train", 0, 1, 20, seed=3, chunk_frames=4, lookahead=ahead)
        assert short.shape == whole.shape


def test_tts_training_lowers_the_loss_on_a_fixed_batch():
    items = _items(2, 5)
    model, hist = T.train_tts(items, SMALL, steps=30, batch_size=2, lr=3e-3, progress=False)
    assert hist[-1]["loss"] < hist[0]["loss"]
    with pytest.raises(ValueError, match="steps"):
        T.train_tts(items, SMALL, steps=0)


def test_duration_model_recovers_a_linear_rule():
    texts = ["it is one", "the train to oslo", "set an alarm for nine", "on monday"] * 3
    voices = ["en-us", "en-us+f3", "en-gb-x-rp", "en-gb-scotland+f2"] * 3
    speeds = [140] * 4 + [175] * 4 + [210] * 4
    frames = [round(2 * len(t) * 175 / s + 3) for t, s in zip(texts, speeds)]
    dur = T.fit_duration_model(texts, voices, speeds, frames)
    assert all(abs(dur.predict(t, v, s) - f) <= 1 for t, v, s, f in zip(texts, voices, speeds, frames))
    with pytest.raises(ValueError):
        T.fit_duration_model([], [], [], [])


@pytest.fixture
def shipped():
    if not (W.WEIGHTS_DIR / "manifest.json").is_file():
        pytest.skip("the speech weights are not built (make pretrain-speech)")
    return W.WEIGHTS_DIR


def test_shipped_weights_load_and_match_their_manifest(shipped):
    man = W.manifest()
    assert {"codec", "tts", "asr"} <= set(man["stages"])
    codec = W.load_codec()
    rec = W.load_recognizer()
    assert not rec.training
    model, dur = W.load_tts()
    assert model.config.n_codebooks <= codec.config.n_codebooks
    assert dur.predict("it is one ten in oslo", "en-us", 175) > 10
    assert len(W.history("codec")) == man["stages"]["codec"]["steps"]


def test_a_damaged_weights_file_is_refused(shipped, tmp_path):
    for f in shipped.iterdir():
        shutil.copy(f, tmp_path / f.name)
    p = tmp_path / "codec.safetensors"
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        W.load_codec(tmp_path)


def test_missing_weights_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrain-speech"):
        W.load_codec(tmp_path, download=False)
    with pytest.raises(ValueError, match="stage"):
        W.history("vocoder")


def test_slot_words_and_matched_words():
    import random

    from genai_helpers.speech import data
    from genai_helpers.speech.recognizer import matched_words
    s = "it is one fifteen in rome"
    assert data.slot_mask(s) == [False, False, True, True, False, True]
    other = data.resample_slots(s, random.Random(0))
    assert [w for w, slot in zip(other.split(), data.slot_mask(s)) if not slot] == ["it", "is", "in"]
    with pytest.raises(ValueError, match="domain"):
        data.slot_mask("hello world")
    assert matched_words(s, "it is ten five in") == [True, True, False, False, True, False]
    assert matched_words("a b c", "x a c") == [True, False, True]
    assert matched_words("a b", "") == [False, False]
