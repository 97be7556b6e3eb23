"""The book LM: shipped weights load offline and match their manifest; tokenizer; bits per byte."""
import json
import math
import shutil

import pytest
import torch

from genai_helpers.models import book_lm
from genai_helpers.models.book_lm import (BOOK_LM_DIR, BookTokenizer, bits_per_byte, load_book_lm, load_tokenizer,
                                          manifest, narrative_text, token_nll)


@pytest.fixture(scope="module")
def lm():
    return load_book_lm()


def test_shipped_files_and_manifest():
    man = manifest()
    for key in ("config", "sha256", "training", "data", "loss", "bits_per_byte", "ngram", "params"):
        assert key in man, key
    weights = BOOK_LM_DIR / book_lm.WEIGHTS
    assert weights.stat().st_size <= 40 * 2 ** 20
    assert man["data"]["tokenizer_sha256"] == book_lm._sha256(BOOK_LM_DIR / book_lm.TOKENIZER)
    assert man["training"]["tokens_seen"] > 0 and man["training"]["seconds"] <= 60 * 60


def test_tokenizer_round_trips_anything():
    tok = load_tokenizer()
    for s in ["The cat sat on the mat.", "naïve café — 東京 🙂", "  tabs\tand\nnewlines  ", "x" * 300, ""]:
        assert tok.decode(tok.encode(s)) == s
    assert tok.vocab_size == manifest()["config"]["vocab_size"]
    assert tok.decode([tok.eot_id]) == book_lm.EOT
    with pytest.raises(TypeError, match="text"):
        tok.encode(b"bytes")


def test_load_checks_hash(tmp_path):
    for name in (book_lm.WEIGHTS, book_lm.TOKENIZER, book_lm.MANIFEST):
        shutil.copy(BOOK_LM_DIR / name, tmp_path / name)
    data = bytearray((tmp_path / book_lm.WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / book_lm.WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_book_lm(folder=tmp_path)


def test_missing_weights_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="make pretrain"):
        load_book_lm(folder=tmp_path, download=False)


def test_generate_api(lm):
    model, tok = lm
    ids = torch.tensor([tok.encode("The river")])
    g = torch.Generator().manual_seed(0)
    out = model.generate(ids, 12, temperature=0.8, top_p=0.9, top_k=50, repetition_penalty=1.2, generator=g)
    assert out.shape == (1, ids.shape[1] + 12)
    assert tok.decode(out[0].tolist()).startswith("The river")
    greedy = model.generate(ids, 8, temperature=0.0)
    assert torch.equal(greedy, model.generate(ids, 8, temperature=0.0, use_cache=False))


def test_token_nll_matches_one_forward_and_bits_per_byte(lm):
    model, tok = lm
    text = "A short sentence about the sea."
    ids = [tok.eot_id] + tok.encode(text)
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids]))
    ref = -torch.log_softmax(logits[0, :-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    got = token_nll(model, tok.encode(text), bos=tok.eot_id)
    assert torch.allclose(got, ref, atol=1e-5)
    assert bits_per_byte(model, tok, text) == pytest.approx(float(ref.sum()) / math.log(2) / len(text.encode()))


def test_token_nll_long_text_scores_every_token_once(lm):
    model, tok = lm
    ids = tok.encode(narrative_text()[:3000])
    T = model.config.block_size
    assert len(ids) > 2 * T
    nll = token_nll(model, ids, bos=tok.eot_id)
    assert nll.shape == (len(ids),) and torch.isfinite(nll).all()
    # with stride = 1 token... too slow; a stride of a full window gives the same first window
    nll_full = token_nll(model, ids, bos=tok.eot_id, stride=T)
    assert torch.allclose(nll[:T - 1], nll_full[:T - 1], atol=1e-5)
    with pytest.raises(ValueError, match="stride"):
        token_nll(model, ids, stride=T + 1)


def test_bits_per_byte_rejects_empty(lm):
    with pytest.raises(ValueError, match="text"):
        bits_per_byte(*lm, "")


def test_shipped_quality_matches_manifest(lm):
    """The narrative prose scores as the manifest says (the weights are the ones it describes)."""
    model, tok = lm
    assert bits_per_byte(model, tok, narrative_text()) == pytest.approx(manifest()["bits_per_byte"]["narrative"],
                                                                       abs=1e-3)


def test_narrative_text_is_held_out():
    text = narrative_text()
    assert 10_000 < len(text) < 40_000 and "%%" not in text and not text.startswith("#")


def test_tokenizer_training_small():
    tok = BookTokenizer.train(["hello world " * 50, "the quick brown fox"], vocab_size=300)
    assert tok.decode(tok.encode("hello fox")) == "hello fox"
    with pytest.raises(ValueError, match="vocab_size"):
        BookTokenizer.train(["x"], vocab_size=10)


def test_flops_per_token_matches_flop_counter():
    """The matmul part of flops_per_token is exactly what torch's FLOP counter counts for forward +
    backward (it does not count the fused attention kernel, so the attention term is added by hand)."""
    from torch.utils.flop_counter import FlopCounterMode
    from genai_helpers.models.book_lm.pretrain import flops_per_token, model_config, steps_for
    from genai_helpers.models.gpt import GPT
    c = model_config(2, 64, 4)
    m = GPT(c)
    x = torch.randint(0, c.vocab_size, (2, c.block_size))
    with FlopCounterMode(display=False) as fc:
        _, loss = m(x, x)
        loss.backward()
    attention = 3 * 2 * c.n_layer * c.block_size * c.n_embd
    assert fc.get_total_flops() / x.numel() == flops_per_token(c) - attention
    assert steps_for(c, flops_per_token(c) * 32 * c.block_size * 10) == 10


def test_shipped_size_is_the_one_the_sweep_picks():
    """make pretrain trains the shape pretrain.choose_size reads off the shipped sweep at its budget."""
    from genai_helpers.models.book_lm import artifact
    from genai_helpers.models.book_lm.pretrain import BUDGET_FLOPS, SIZES, choose_size
    man = manifest()
    sweep = json.loads(artifact("scaling_sweep.json").read_text())
    choice = choose_size(sweep, BUDGET_FLOPS["cpu"], man["data"]["tokens"]["train"]["tokens"])
    assert choice["shape"] == SIZES["cpu"] == {k: man["config"][k] for k in ("n_layer", "n_embd", "n_head")}
    assert man["training"]["budget_flops"] == BUDGET_FLOPS["cpu"]


def test_gpu_size_loads_from_int8_and_beats_the_cpu_model():
    """The gpu size (trained on a lent GPU, stored as weight-only int8) loads offline, matches its
    manifest, and its bits per byte on the held-out narrative reproduce the manifest's and beat the
    chapters' model."""
    man = manifest(size="gpu")
    assert (BOOK_LM_DIR / "book_lm-gpu.safetensors").stat().st_size == man["bytes"] <= 40 * 2 ** 20
    model, tok = load_book_lm(size="gpu")
    assert model.num_parameters() == man["params"]
    bpb = bits_per_byte(model, tok, narrative_text())
    assert math.isclose(bpb, man["loss_fp16_vs_int8_cpu"]["int8"]["narrative_bits_per_byte"], rel_tol=1e-3)
    assert bpb < manifest()["bits_per_byte"]["narrative"] - 0.1
    with pytest.raises(ValueError, match="size"):
        load_book_lm(size="huge")


def test_int8_storage_round_trips(tmp_path):
    from genai_helpers.models.book_lm.gpu_sweep import save_int8
    g = torch.Generator().manual_seed(0)
    state = {"w": torch.randn(8, 128, generator=g), "ln": torch.randn(128, generator=g)}
    save_int8(state, tmp_path / "x.safetensors")
    back = book_lm._read_weights(tmp_path / "x.safetensors")
    assert set(back) == {"w", "ln"}
    assert torch.allclose(back["w"], state["w"], atol=state["w"].abs().max().item() / 127)
    assert torch.allclose(back["ln"], state["ln"], atol=1e-2)


def test_int8_codec_equals_the_serving_quantizer():
    from genai_helpers.serving.quantization import dequantize, quantize_tensor
    w = torch.randn(16, 256, generator=torch.Generator().manual_seed(1))
    q, s = book_lm.int8_quantize(w, 64)
    q_ref, s_ref = quantize_tensor(w, 8, 64)
    assert torch.equal(q, q_ref) and torch.allclose(s, s_ref)
    assert torch.allclose(book_lm.int8_dequantize(q, s), dequantize(q_ref, s_ref))
    with pytest.raises(ValueError, match="group_size"):
        book_lm.int8_quantize(torch.randn(4, 100), 64)
