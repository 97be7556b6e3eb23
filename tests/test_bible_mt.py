"""Chapter 5's shipped translator (genai_helpers/models/bible_mt/) and what it added to the seq2seq
model: ``no_repeat_ngram_size`` in greedy and beam decoding, ``decode(..., last_only=True)``."""
import math
import shutil

import pytest
import torch

from genai_helpers.checkpoint import file_sha256
from genai_helpers.models import bible_mt
from genai_helpers.models.bible_mt import pretrain
from genai_helpers.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer


def tiny(seed=0, vocab=12):
    """A small random model whose greedy output loops (large random weights, few tokens): the case
    ``no_repeat_ngram_size`` is for."""
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(vocab, vocab, d_model=32, n_heads=4, n_encoder_layers=1, n_decoder_layers=2, dropout=0.0,
                        max_len=40, share_embeddings=True)
    m = Seq2SeqTransformer(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    return m


SRC = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 3, 0, 0], [4, 3, 0, 0, 0]])     # right-padded with <pad> = 0


def ngrams(seq, n):
    return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]


def has_repeat(seq, n):
    grams = ngrams(seq, n)
    return len(grams) != len(set(grams))


@torch.no_grad()
def reference_greedy(model, src, max_len, n=0):
    """Greedy decoding written the plain way: the full decoder output (no ``last_only``), one row at a
    time, and a token banned when it would complete an n-gram already in the row's output."""
    c = model.config
    outs = []
    for row in src:
        s = row[None]
        mask = model.source_mask(s)
        memory = model.encode(s, mask)
        out = []
        for _ in range(max_len):
            ys = torch.tensor([[c.bos_id, *out]])
            logits = model.decode(ys, memory, mask)[0, -1].clone()
            logits[c.pad_id] = float("-inf")
            if n and len(out) >= n:
                seen = set(ngrams(out, n))
                for tok in range(logits.shape[0]):
                    if (*out[len(out) - n + 1:], tok) in seen:
                        logits[tok] = float("-inf")
            tok = int(logits.argmax())
            if tok == c.eos_id:
                break
            out.append(tok)
        outs.append(out)
    return outs


# ------------------------------------------------------------------ no_repeat_ngram_size

@pytest.mark.parametrize("n", [2, 3])
def test_greedy_no_repeat_ngram_size_leaves_no_repeated_ngram(n):
    m = tiny()
    plain = m.greedy_decode(SRC, 30)
    assert any(has_repeat(o, n) for o in plain)            # the untrained model loops: the test is not vacuous
    out = m.greedy_decode(SRC, 30, no_repeat_ngram_size=n)
    assert len(out) == len(SRC) and all(out)
    for o in out:
        assert not has_repeat(o, n), o
    # the same tokens as the plain, one-row-at-a-time reference: only repeating tokens are banned
    assert out == reference_greedy(m, SRC, 30, n)


def test_greedy_with_no_repeat_zero_is_the_old_greedy():
    m = tiny(seed=1)
    default = m.greedy_decode(SRC, 25)
    assert m.greedy_decode(SRC, 25, no_repeat_ngram_size=0) == default
    assert default == reference_greedy(m, SRC, 25)


def test_beam_decode_with_no_repeat_3_has_no_repeated_trigram():
    m = tiny()
    plain = m.beam_decode(SRC[:1], beam_width=4, max_len=30, num_return=4)
    assert any(has_repeat(b.tokens, 3) for b in plain)
    beams = m.beam_decode(SRC[:1], beam_width=4, max_len=30, num_return=4, no_repeat_ngram_size=3)
    assert len(beams) == 4
    for b in beams:
        assert b.tokens and not has_repeat(b.tokens, 3), b.tokens
        assert math.isfinite(b.log_prob)
    # n = 0 is the old beam search
    assert [b.tokens for b in m.beam_decode(SRC[:1], 4, 30, num_return=4, no_repeat_ngram_size=0)] == \
        [b.tokens for b in plain]


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (2.0, TypeError), ("3", TypeError), (True, TypeError),
                                        (None, TypeError)])
def test_bad_no_repeat_ngram_size_is_refused_by_name(bad, error):
    m = tiny()
    with pytest.raises(error, match="no_repeat_ngram_size"):
        m.greedy_decode(SRC, 5, no_repeat_ngram_size=bad)
    with pytest.raises(error, match="no_repeat_ngram_size"):
        m.beam_decode(SRC[:1], 2, 5, no_repeat_ngram_size=bad)


def test_decode_last_only_is_the_last_position_of_the_full_decode():
    m = tiny(seed=2)
    mask = m.source_mask(SRC)
    memory = m.encode(SRC, mask)
    tgt_in = torch.tensor([[1, 5, 6, 7], [1, 4, 0, 0], [1, 3, 3, 9]])
    full = m.decode(tgt_in, memory, mask)
    last = m.decode(tgt_in, memory, mask, last_only=True)
    assert full.shape == (3, 4, 12) and last.shape == (3, 1, 12)
    assert torch.allclose(last, full[:, -1:], atol=1e-6)


# ------------------------------------------------------------------ the shipped translator

@pytest.fixture(scope="module")
def mt():
    return bible_mt.load_translator("cpu", download=False)


def test_load_translator_offline_restores_the_tied_embedding(mt):
    m = mt.model
    assert isinstance(m, Seq2SeqTransformer) and not m.training
    assert mt.device == torch.device("cpu")
    assert m.src_embed.weight is m.tgt_embed.weight
    assert mt.no_repeat_ngram_size == bible_mt.manifest()["no_repeat_ngram_size"]
    assert len(mt.vocab) == m.config.src_vocab_size == m.config.tgt_vocab_size


def test_shipped_weights_are_int8_stored_once_and_match_the_manifest():
    from safetensors import safe_open

    man = bible_mt.manifest()
    assert man["sha256"] == file_sha256(bible_mt.MT_DIR / bible_mt.WEIGHTS)
    assert man["tokenizer_sha256"] == file_sha256(bible_mt.MT_DIR / bible_mt.TOKENIZER)
    with safe_open(str(bible_mt.MT_DIR / bible_mt.WEIGHTS), "pt") as f:
        keys = set(f.keys())
        dtypes = {str(f.get_tensor(k).dtype) for k in keys}
    assert "tgt_embed.weight" in keys and "src_embed.weight" not in keys        # tied: stored once
    assert "tgt_embed.weight.scales" in keys and dtypes == {"torch.int8", "torch.float16"}


def test_manifest_config_builds_a_model_of_the_manifest_size():
    man = bible_mt.manifest()
    model = Seq2SeqTransformer(Seq2SeqConfig(**man["config"]))
    assert model.num_parameters() == man["params"]
    assert man["config"]["share_embeddings"] is True


def test_translate_one_sentence(mt):
    out = mt.translate(["Jesus wept."])
    assert isinstance(out, list) and len(out) == 1
    assert isinstance(out[0], str) and out[0].strip()
    assert "Jesús" in out[0]                                 # trained weights, not a random model
    assert mt.translate([]) == []


SENTENCES = ["Jesus wept.", "God is love.", "In the beginning God created the heaven and the earth.",
             "And the LORD said unto Moses, Go in unto Pharaoh, and tell him.", "Love your enemies.",
             "The LORD is my shepherd; I shall not want."]


def test_batched_greedy_translation_equals_one_sentence_at_a_time(mt):
    one = [mt.translate([s])[0] for s in SENTENCES]
    assert mt.translate(SENTENCES) == one                                 # one padded batch
    assert mt.translate(SENTENCES, batch_size=4) == one                   # two batches, reordered by length
    assert mt.translate(SENTENCES, no_repeat_ngram_size=3) == [mt.translate([s], no_repeat_ngram_size=3)[0]
                                                               for s in SENTENCES]


def test_translate_with_beam_search(mt):
    out = mt.translate(["God is love."], beam_width=2)
    assert len(out) == 1 and isinstance(out[0], str) and out[0].strip()


def test_translate_refuses_bad_arguments(mt):
    with pytest.raises(TypeError):
        mt.translate("a string")
    with pytest.raises(TypeError):
        mt.translate(["fine", 3])
    with pytest.raises(ValueError, match="beam_width"):
        mt.translate(["God is love."], beam_width=0)
    with pytest.raises(ValueError, match="batch_size"):
        mt.translate(["God is love."], batch_size=0)
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        mt.translate(["God is love."], no_repeat_ngram_size=-1)


def copy_package_files(dest):
    for name in (bible_mt.WEIGHTS, bible_mt.TOKENIZER, bible_mt.MANIFEST, bible_mt.HISTORY, bible_mt.SWEEP):
        shutil.copy(bible_mt.MT_DIR / name, dest / name)


def test_a_corrupted_weights_file_is_refused(tmp_path, monkeypatch):
    copy_package_files(tmp_path)
    path = tmp_path / bible_mt.WEIGHTS
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01                              # one bit of one weight
    path.write_bytes(bytes(data))
    monkeypatch.setattr(bible_mt, "MT_DIR", tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        bible_mt.load_translator("cpu", download=False)


def test_intact_copies_load_from_another_folder(tmp_path, monkeypatch):
    copy_package_files(tmp_path)
    monkeypatch.setattr(bible_mt, "MT_DIR", tmp_path)
    assert bible_mt.load_translator("cpu", download=False).model.num_parameters() == bible_mt.manifest()["params"]


def test_missing_files_say_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.setattr(bible_mt, "MT_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="pretrain"):
        bible_mt.load_translator("cpu", download=False)


# ------------------------------------------------------------------ training record and recipe

def test_lr_factor_warms_up_then_decays_to_the_floor():
    warmup, floor = 0.03, 0.05
    assert pretrain._lr_factor(0.0) == 0.0
    assert pretrain._lr_factor(warmup / 2) == pytest.approx(0.5)
    assert pretrain._lr_factor(warmup) == pytest.approx(1.0)
    assert pretrain._lr_factor(1.0) == pytest.approx(floor)
    assert pretrain._lr_factor(1.2) == pytest.approx(floor)              # past the budget: stays at the floor
    after = [pretrain._lr_factor(warmup + (1 - warmup) * k / 200) for k in range(201)]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert after[0] > after[100] > after[-1]
    before = [pretrain._lr_factor(warmup * k / 20) for k in range(21)]
    assert all(a < b for a, b in zip(before, before[1:]))


def test_history_holds_the_training_curve():
    h = bible_mt.history()
    for key in ("step", "train_loss", "eval_step", "valid_loss", "valid_bleu"):
        assert key in h and h[key]
    assert len(h["eval_step"]) == len(h["valid_bleu"]) == len(h["valid_loss"])
    assert len(h["step"]) == len(h["train_loss"])
    assert h["eval_step"] == sorted(h["eval_step"]) and h["eval_step"][-1] == bible_mt.manifest()["steps"]
    assert all(0 <= b <= 100 for b in h["valid_bleu"])


def test_the_shipped_run_is_the_sweeps_best_on_validation():
    s = bible_mt.sweep_summary()
    man = bible_mt.manifest()
    assert {"chosen", "runs"} <= set(s)
    assert {r["name"] for r in s["runs"]} == set(pretrain.RUNS)
    best = max(s["runs"], key=lambda r: r["valid_bleu"])          # selection on validation, never test
    assert s["chosen"] == best["name"] == man["run"]
    assert "validation" in s["chosen_by"]
    assert man["valid_bleu"] == best["valid_bleu"] and man["steps"] == best["steps"]
    # the decoding setting too was chosen on validation BLEU
    by_n = best["valid_bleu_by_no_repeat_ngram"]
    assert int(max(by_n, key=by_n.get)) == best["no_repeat_ngram_size"] == man["no_repeat_ngram_size"]
    assert best["history"] == bible_mt.history()


def test_model_config_of_every_run_is_the_size_the_sweep_recorded():
    s = bible_mt.sweep_summary()
    vocab = bible_mt.manifest()["config"]["src_vocab_size"]
    for r in s["runs"]:
        cfg = pretrain.model_config(vocab, {**r["run"], "layers": tuple(r["run"]["layers"])})
        assert cfg.share_embeddings and cfg.dropout == r["run"]["dropout"]
        assert Seq2SeqTransformer(cfg).num_parameters() == r["params"]
    chosen = next(r for r in s["runs"] if r["name"] == s["chosen"])
    from dataclasses import asdict
    assert asdict(pretrain.model_config(vocab, {**chosen["run"], "layers": tuple(chosen["run"]["layers"])})) == \
        bible_mt.manifest()["config"]


def test_the_shipped_files_are_package_data():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["genai_helpers.models.bible_mt"]
    assert "*.json" in patterns and "*.safetensors" in patterns
