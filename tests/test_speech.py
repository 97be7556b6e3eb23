"""Chapter 16's speech package: espeak-ng data, features checked against librosa, the word recogniser."""
import io
import wave

import numpy as np
import pytest
import torch

from genai_helpers.speech import data, features, recognizer

needs_espeak = pytest.mark.skipif(not data.espeak_available(), reason="espeak-ng is not installed")
SENTENCE = "the train to oslo leaves from platform four at nine fifteen"


def chirp(seconds=1.0, seed=0):
    """A deterministic test signal with structure at every frequency: a sweep plus a little noise."""
    t = np.arange(int(seconds * data.SAMPLE_RATE)) / data.SAMPLE_RATE
    rng = np.random.default_rng(seed)
    return (0.5 * np.sin(2 * np.pi * (100 + 3000 * t) * t) + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


# ----------------------------------------------------------------------------------------- data

@needs_espeak
def test_speak_returns_float32_audio_in_range_and_voices_differ():
    a = data.speak(SENTENCE, "en-us", 175)
    b = data.speak(SENTENCE, "en-gb-scotland+f2", 175)
    for w in (a, b):
        assert w.dtype == np.float32 and w.ndim == 1
        assert np.abs(w).max() <= 1.0 and np.abs(w).max() > 0.05
        assert 1.0 < len(w) / data.SAMPLE_RATE < 8.0, "a 12-word sentence lasts a few seconds"
    assert len(a) != len(b) or not np.allclose(a, b)
    assert not np.allclose(features.log_mel(a).mean(1), features.log_mel(b).mean(1), atol=0.5)


@needs_espeak
def test_slower_speech_is_longer():
    assert len(data.speak(SENTENCE, "en-us", 140)) > len(data.speak(SENTENCE, "en-us", 210))


@pytest.mark.parametrize("kwargs, error", [
    ({"text": ""}, ValueError), ({"text": "   "}, ValueError), ({"text": 5}, TypeError),
    ({"voice": "klingon"}, ValueError), ({"voice": 3}, TypeError),
    ({"speed": 1000}, ValueError), ({"speed": "fast"}, TypeError), ({"speed": True}, TypeError),
])
def test_speak_rejects_bad_arguments(kwargs, error):
    args = {"text": "hello", "voice": "en-us", "speed": 175, **kwargs}
    with pytest.raises(error):
        data.speak(**args)


def test_sentence_splits_are_disjoint_and_use_only_domain_words():
    splits = {s: data.sentences(s, n, seed=0) for s, n in (("train", 400), ("dev", 60), ("test", 60))}
    for s, sents in splits.items():
        assert len(set(sents)) == len(sents), f"{s} sentences repeat"
        assert all(w in data.WORDS for t in sents for w in t.split())
    assert not set(splits["train"]) & set(splits["test"])
    assert not set(splits["train"]) & set(splits["dev"])
    assert not set(splits["dev"]) & set(splits["test"])
    assert data.sentences("test", 20, seed=0) == splits["test"][:20], "a prefix of a longer draw"
    with pytest.raises(ValueError):
        data.sentences("validation", 5)
    with pytest.raises(ValueError):
        data.sentences("train", 0)


@needs_espeak
def test_make_split_is_deterministic_and_its_cache_returns_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path)
    a = data.make_split("dev", 3, seed=1, cache=False)
    b = data.make_split("dev", 3, seed=1)                   # writes the cache
    c = data.make_split("dev", 3, seed=1)                   # reads it
    assert len(list(tmp_path.glob("*.npz"))) == 1
    for x, y, z in zip(a, b, c):
        assert x.text == y.text == z.text and x.voice == y.voice == z.voice and x.speed == y.speed == z.speed
        assert x.voice in data.VOICES and x.speed in data.SPEEDS
        np.testing.assert_array_equal(x.wave, y.wave)
        np.testing.assert_array_equal(y.wave, z.wave)
    assert [u.text for u in a] == data.sentences("dev", 3, seed=1)


# ----------------------------------------------------------------------------------------- features

def test_mel_filterbank_equals_librosa():
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=80)
    np.testing.assert_allclose(features.mel_filterbank().numpy(), ref, atol=1e-6)


def test_log_mel_and_mfcc_equal_librosa():
    librosa = pytest.importorskip("librosa")
    y = chirp()
    ref = np.log(np.maximum(librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=256, n_mels=80,
                                                           power=2.0), 1e-5))
    ours = features.log_mel(y)
    assert ours.shape == (80, len(y) // 256 + 1)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-3)
    np.testing.assert_allclose(features.mfcc(ours, 13).numpy(), librosa.feature.mfcc(S=ref, n_mfcc=13), atol=1e-3)


def test_dtw_path_matches_librosa():
    librosa = pytest.importorskip("librosa")
    cost = np.random.default_rng(0).random((17, 23))
    _, wp = librosa.sequence.dtw(C=cost)
    assert features.dtw_path(cost) == [tuple(map(int, p)) for p in wp[::-1]]
    assert features.dtw_path(np.zeros((1, 1))) == [(0, 0)]


def test_istft_inverts_stft():
    x = chirp(0.5)
    y = features.istft(features.stft(x), length=len(x))
    np.testing.assert_allclose(y.numpy(), x, atol=1e-5)


def test_griffin_lim_recovers_a_consistent_phase():
    x = torch.from_numpy(chirp(0.5))
    mag = features.stft(x).abs()
    def spectral_error(n_iter):
        y = features.griffin_lim(mag, n_iter=n_iter, length=len(x))
        return float((features.stft(y).abs() - mag).norm() / mag.norm())
    assert spectral_error(32) < 0.5 * spectral_error(1)


@needs_espeak
def test_mel_cepstral_distortion_is_zero_for_itself_and_larger_across_voices():
    a = data.speak(SENTENCE, "en-us", 175)
    slower = data.speak(SENTENCE, "en-us", 140)
    other = data.speak(SENTENCE, "en-us+f3", 175)
    assert features.mel_cepstral_distortion(a, a) == 0.0
    same_voice, other_voice = features.mel_cepstral_distortion(a, slower), features.mel_cepstral_distortion(a, other)
    assert 0 < same_voice < other_voice


def test_wav_bytes_parse_and_audio_html_embeds_them():
    x = chirp(0.25)
    with wave.open(io.BytesIO(features.wav_bytes(x))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, len(x))
        pcm = np.frombuffer(w.readframes(len(x)), dtype="<i2") / 32767
    np.testing.assert_allclose(pcm, x, atol=1e-4)
    html = features.audio_html(x, label="a <chirp>", fmt="wav")
    assert "data:audio/wav;base64," in html and "a &lt;chirp&gt;" in html
    assert "data:audio/mpeg;base64," in features.audio_html(x) or "data:audio/wav;base64," in features.audio_html(x)
    with pytest.raises(ValueError):
        features.audio_html(x, fmt="ogg")


@pytest.mark.parametrize("call, error", [
    (lambda: features.stft([0.0, 1.0]), TypeError),
    (lambda: features.stft(np.zeros((2, 2, 2), np.float32)), ValueError),
    (lambda: features.mel_filterbank(n_mels=0), ValueError),
    (lambda: features.mel_filterbank(fmin=9000.0), ValueError),
    (lambda: features.griffin_lim(torch.ones(513, 4), n_iter=0), ValueError),
    (lambda: features.griffin_lim(torch.ones(513, 4), momentum=1.0), ValueError),
    (lambda: features.dtw_path(np.zeros((0, 3))), ValueError),
    (lambda: features.wav_bytes("loud"), TypeError),
])
def test_features_reject_bad_inputs(call, error):
    with pytest.raises(error):
        call()


# ----------------------------------------------------------------------------------------- recogniser

@pytest.mark.parametrize("ref, hyp, expected", [
    ("the train to oslo", "the train to oslo", (0, 4)),
    ("the train to oslo", "the train to rome", (1, 4)),          # substitution
    ("the train to oslo", "the train to to oslo", (1, 4)),       # insertion
    ("the train to oslo", "the train oslo", (1, 4)),             # deletion
    ("the train to oslo", "", (4, 4)),                           # nothing recognised
    ("a b c", "b c d", (2, 3)),                                  # delete a, insert d
    ("a b c", "c b a", (2, 3)),                                  # two substitutions beat a reordering
    ("", "a b", (2, 0)),
    ("  it   is  ", "it is", (0, 2)),                            # whitespace does not count
])
def test_word_errors_hand_cases(ref, hyp, expected):
    assert recognizer.word_errors(ref, hyp) == expected


def test_word_error_rate_pools_edits_over_the_corpus():
    assert recognizer.word_error_rate(["a b c d", "e f"], ["a x c d", ""]) == pytest.approx(3 / 6)
    assert recognizer.word_error_rate(["a"], ["b c d"]) == 3.0, "insertions can push WER above 1"
    assert recognizer.word_error_rate(["it is nine"], ["it is nine"]) == 0.0


@pytest.mark.parametrize("refs, hyps, error", [
    ([], [], ValueError), (["a"], ["a", "b"], ValueError), ("a b", "a b", TypeError),
    ([""], ["a"], ValueError), ([1], ["a"], TypeError), (["a"], [None], TypeError),
])
def test_word_error_rate_rejects_bad_arguments(refs, hyps, error):
    with pytest.raises(error):
        recognizer.word_error_rate(refs, hyps)


def test_vocabulary_is_blank_then_the_domain_words():
    assert recognizer.VOCAB[0] == "<blank>" and recognizer.VOCAB[1:] == data.WORDS
    assert recognizer.VOICES == data.VOICES


def untrained():
    torch.manual_seed(0)
    return recognizer.WordRecognizer().eval()


def test_model_is_small_and_shapes_follow_the_docstring():
    model = untrained()
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    x = torch.randn(3, 80, 101) - 6
    logits, out_lengths, voice_logits = model(x, torch.tensor([101, 60, 7]))
    assert logits.shape == (3, 26, len(recognizer.VOCAB)) and voice_logits.shape == (3, len(data.VOICES))
    assert out_lengths.tolist() == [26, 15, 2]
    emb = model.embed(x)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))


def test_transcribe_returns_vocabulary_words_for_waves_and_logmels_alike():
    model = untrained()
    waves = [chirp(1.0, seed=s) for s in range(3)]
    hyps = recognizer.transcribe(model, waves)
    assert len(hyps) == 3 and all(w in recognizer.VOCAB[1:] for h in hyps for w in h.split())
    assert recognizer.transcribe(model, [features.log_mel(w) for w in waves]) == hyps
    assert recognizer.transcribe(model, [torch.from_numpy(waves[1])]) == hyps[1:2]


def test_speaker_similarity_of_an_utterance_with_itself_is_one():
    model = untrained()
    waves = [chirp(0.8, seed=s) for s in range(2)]
    assert recognizer.speaker_similarity(model, waves, waves) == pytest.approx(1.0, abs=1e-5)
    assert recognizer.speaker_embeddings(model, waves).shape == (2, 64)
    assert 0.0 <= recognizer.voice_accuracy(model, waves, ["en-us", "en-us+f3"]) <= 1.0


@pytest.mark.parametrize("call, error", [
    (lambda m: recognizer.transcribe(m, np.zeros(16000, np.float32)), TypeError),
    (lambda m: recognizer.transcribe(m, []), ValueError),
    (lambda m: recognizer.transcribe(m, [np.zeros((3, 3), np.float32)]), ValueError),
    (lambda m: recognizer.transcribe(m, ["hello"]), TypeError),
    (lambda m: recognizer.transcribe("model", [np.zeros(16000, np.float32)]), TypeError),
    (lambda m: recognizer.voice_accuracy(m, [np.zeros(16000, np.float32)], ["en-us", "en-us"]), ValueError),
    (lambda m: recognizer.voice_accuracy(m, [np.zeros(16000, np.float32)], ["klingon"]), ValueError),
    (lambda m: recognizer.speaker_similarity(m, [np.zeros(16000, np.float32)], []), ValueError),
    (lambda m: m(torch.zeros(1, 40, 10)), ValueError),
    (lambda m: m(torch.zeros(2, 80, 10), torch.tensor([10, 11])), ValueError),
])
def test_recognizer_functions_reject_bad_arguments(call, error):
    with pytest.raises(error):
        call(untrained())


def fake_utterances(n=4):
    """Utterances whose 'audio' is a chirp: enough to exercise argument checks without espeak-ng."""
    return [data.Utterance("it is nine five in oslo", "en-us", 175, chirp(2.0, seed=i)) for i in range(n)]


@pytest.mark.parametrize("kwargs, error", [
    ({"steps": 0}, ValueError), ({"steps": 1.5}, TypeError), ({"batch_size": 0}, ValueError),
    ({"lr": 0.0}, ValueError), ({"lr": "fast"}, TypeError), ({"seed": -1}, ValueError),
    ({"utterances": []}, ValueError), ({"utterances": "hello"}, TypeError), ({"utterances": [1, 2]}, TypeError),
    ({"utterances": [data.Utterance("hello world", "en-us", 175, chirp(1.0))]}, ValueError),
    ({"utterances": [data.Utterance("it is nine", "klingon", 175, chirp(1.0))]}, ValueError),
])
def test_train_recognizer_rejects_bad_arguments(kwargs, error):
    args = {"utterances": fake_utterances(), "steps": 1, "progress": False, **kwargs}
    with pytest.raises(error):
        recognizer.train_recognizer(args.pop("utterances"), **args)


def test_training_is_deterministic_given_the_seed():
    utts = fake_utterances()
    runs = [recognizer.train_recognizer(utts, steps=3, batch_size=4, seed=s, progress=False)[1] for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert set(runs[0][-1]) == {"step", "loss", "ctc", "voice"} and runs[0][-1]["step"] == 3


@needs_espeak
def test_a_short_training_run_lowers_the_loss_on_espeak_speech(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path)
    utts = data.make_split("train", 40, seed=0, cache=False)
    model, history = recognizer.train_recognizer(utts, steps=30, batch_size=8, progress=False)
    assert [h["step"] for h in history] == [10, 20, 30]
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    assert history[-1]["voice"] < history[0]["voice"]
    hyps = recognizer.transcribe(model, [u.wave for u in utts[:8]])
    assert all(w in data.WORDS for h in hyps for w in h.split())
    assert not model.training
