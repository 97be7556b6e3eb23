"""The encoder-decoder transformer and the translation data (chapter 05)."""
import random

import pytest
import torch

from genai_helpers.data import translation as T
from genai_helpers.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from genai_helpers.sampling import beam_search


def tiny(share=False, src_vocab=23, tgt_vocab=19, seed=0, **kw):
    torch.manual_seed(seed)
    if share:
        tgt_vocab = src_vocab
    cfg = Seq2SeqConfig(src_vocab, tgt_vocab, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2,
                        dropout=0.0, max_len=40, share_embeddings=share, **kw)
    m = Seq2SeqTransformer(cfg).eval()
    # Larger random weights than the 0.02 init, so untrained decoding is not all ties.
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    return m


def src_batch():
    return torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0], [13, 14, 0, 0, 0]])


# ------------------------------------------------------------------------------- model

def test_cross_attention_shapes_and_rows_sum_to_one_over_real_tokens():
    m = tiny()
    src = src_batch()
    tgt_in = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 0], [1, 4, 0, 0]])
    maps = m.cross_attention(src, tgt_in)
    assert len(maps) == 2
    for w in maps:
        assert w.shape == (3, 4, 4, 5)                       # (B, heads, T, S)
        assert torch.allclose(w.sum(-1), torch.ones(3, 4, 4), atol=1e-5)
        assert float(w[1, :, :, 3:].abs().max()) == 0.0      # padding keys get no weight
        assert float(w[2, :, :, 2:].abs().max()) == 0.0
    logits, loss = m(src, tgt_in)
    assert logits.shape == (3, 4, 19) and loss is None


def test_cross_attention_path_matches_forward():
    """The block-by-block re-run used for the weights computes the same decoder as forward()."""
    m = tiny()
    src, tgt_in = src_batch(), torch.tensor([[1, 5, 6], [1, 8, 9], [1, 4, 3]])
    logits, _ = m(src, tgt_in)
    mask = m.source_mask(src)
    assert torch.allclose(logits, m.decode(tgt_in, m.encode(src), mask), atol=1e-6)


def test_padding_does_not_change_outputs():
    m = tiny()
    src = torch.tensor([[5, 6, 7]])
    padded = torch.tensor([[5, 6, 7, 0, 0, 0, 0]])
    tgt_in = torch.tensor([[1, 9, 10, 11]])
    a, _ = m(src, tgt_in)
    b, _ = m(padded, tgt_in)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(m.encode(src)[0], m.encode(padded)[0, :3], atol=1e-5)
    # A target padded on the right leaves the real positions unchanged (causal mask).
    c, _ = m(src, torch.tensor([[1, 9, 10, 11, 0, 0]]))
    assert torch.allclose(a, c[:, :4], atol=1e-5)
    # Batched greedy decoding with padding gives each sentence's own result.
    batch = src_batch()
    together = m.greedy_decode(batch, max_len=8)
    alone = [m.greedy_decode(batch[i:i + 1, :int((batch[i] != 0).sum())], max_len=8)[0] for i in range(3)]
    assert together == alone


def test_decoder_is_causal():
    m = tiny()
    src = torch.tensor([[5, 6, 7]])
    a, _ = m(src, torch.tensor([[1, 9, 10, 11]]))
    b, _ = m(src, torch.tensor([[1, 9, 10, 15]]))            # change only the last target token
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-6)
    assert not torch.allclose(a[:, 3], b[:, 3])


def test_loss_ignores_padding_and_matches_cross_entropy():
    m = tiny()
    src = src_batch()
    tgt_in = torch.tensor([[1, 5, 6], [1, 8, 0], [1, 4, 0]])
    tgt_out = torch.tensor([[5, 6, 2], [8, 2, 0], [4, 2, 0]])
    logits, loss = m(src, tgt_in, tgt_out)
    keep = tgt_out != 0
    manual = torch.nn.functional.cross_entropy(logits[keep], tgt_out[keep])
    assert torch.allclose(loss, manual)


def test_beam_width_one_is_greedy():
    for seed in range(4):
        m = tiny(seed=seed)
        for i in range(3):
            row = src_batch()[i]
            src = row[row != 0][None]
            greedy = m.greedy_decode(src, max_len=10)[0]
            beam = m.beam_decode(src, beam_width=1, max_len=10, length_penalty=0.0)[0]
            assert beam.tokens == greedy


def test_beam_search_finds_at_least_the_greedy_log_prob():
    m = tiny(seed=3)
    src = torch.tensor([[5, 6, 7, 8]])
    greedy = m.greedy_decode(src, max_len=12)[0]
    best = m.beam_decode(src, beam_width=5, max_len=12, length_penalty=0.0)[0]
    assert best.log_prob >= m.sequence_log_prob(src, greedy) - 1e-6
    # the score it reports is the model's own log-probability of that output
    if len(best.tokens) < 12:
        assert abs(best.log_prob - m.sequence_log_prob(src, best.tokens)) < 1e-4


def test_beam_decode_matches_generic_beam_search():
    m = tiny(seed=1)
    src = torch.tensor([[5, 6, 7]])
    memory, mask = m.encode(src), m.source_mask(src)

    def step(ids):
        logits = m.decode(ids, memory.expand(len(ids), -1, -1), mask.expand(len(ids), -1))[:, -1]
        logits[:, m.config.pad_id] = float("-inf")
        return logits

    ref = beam_search(step, [1], 3, 10, eos_id=2, length_penalty=1.0, num_return=3)
    ours = m.beam_decode(src, beam_width=3, max_len=10, length_penalty=1.0, num_return=3)
    assert [b.tokens for b in ours] == [[t for t in b.tokens if t != 2] for b in ref]


def test_shared_and_separate_embeddings():
    shared, separate = tiny(share=True), tiny(share=False)
    assert shared.src_embed is shared.tgt_embed
    assert separate.src_embed is not separate.tgt_embed
    n_shared = shared.num_parameters()
    assert tiny(share=False, tgt_vocab=23).num_parameters() - n_shared == 23 * 32


def test_learns_to_reverse_a_sequence():
    torch.manual_seed(0)
    m = Seq2SeqTransformer(Seq2SeqConfig(12, 12, d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1,
                                         dropout=0.0, max_len=16))
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        seqs = torch.randint(5, 12, (32, 4), generator=g).tolist()
        src, tgt_in, tgt_out = T.seq2seq_batch(seqs, [s[::-1] for s in seqs])
        _, loss = m(src, tgt_in, tgt_out)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    tests = torch.randint(5, 12, (20, 4), generator=g)
    out = m.greedy_decode(tests, max_len=6)
    assert sum(o == t.tolist()[::-1] for o, t in zip(out, tests)) >= 15   # chance: about 0


def test_embed_init_std_option():
    def table(**kw):
        torch.manual_seed(0)
        cfg = Seq2SeqConfig(400, 300, d_model=64, n_heads=4, max_len=16, **kw)
        return Seq2SeqTransformer(cfg)
    default, scaled = table(), table(embed_init_std=64 ** -0.5)
    for m, std in ((default, 0.02), (scaled, 0.125)):
        for w in (m.src_embed.weight, m.tgt_embed.weight):     # 25,600 and 19,200 draws
            assert abs(float(w.detach().std()) - std) < 0.03 * std
    # only the embeddings change: every other weight is drawn identically
    emb = {"src_embed.weight", "tgt_embed.weight"}
    sd, ss = default.state_dict(), scaled.state_dict()
    assert all(torch.equal(sd[k], ss[k]) for k in sd if k not in emb)
    # with the sqrt(d) input scaling, the scaled init gives unit-variance token vectors
    x = scaled.src_embed.weight.detach() * 64 ** 0.5
    assert abs(float(x.pow(2).mean()) - 1.0) < 0.05
    with pytest.raises(ValueError, match="embed_init_std"):
        Seq2SeqConfig(10, 10, embed_init_std=0.0)
    with pytest.raises(TypeError, match="embed_init_std"):
        Seq2SeqConfig(10, 10, embed_init_std="big")


def test_validation_errors():
    with pytest.raises(ValueError, match="n_heads"):
        Seq2SeqConfig(10, 10, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="share_embeddings"):
        Seq2SeqConfig(10, 12, share_embeddings=True)
    with pytest.raises(ValueError, match="different"):
        Seq2SeqConfig(10, 10, pad_id=0, bos_id=0)
    with pytest.raises(TypeError, match="config"):
        Seq2SeqTransformer({"src_vocab_size": 3})
    m = tiny()
    with pytest.raises(ValueError, match="src ids"):
        m.encode(torch.tensor([[5, 99]]))
    with pytest.raises(TypeError, match="integer"):
        m.encode(torch.tensor([[5.0, 6.0]]))
    with pytest.raises(ValueError, match="one sentence"):
        m.beam_decode(src_batch(), beam_width=2, max_len=10)
    with pytest.raises(ValueError, match="beam_width"):
        m.beam_decode(torch.tensor([[5, 6]]), beam_width=0, max_len=10)
    with pytest.raises(ValueError, match="max_len"):
        m.greedy_decode(torch.tensor([[5, 6]]), max_len=100)


# ------------------------------------------------------------------------------- data

def test_synthetic_grammar_by_hand():
    p = T.compose("dog", "chase", "cat", subject_adjectives=["big"], object_adjectives=["small"],
                  object_definite=False, past=True, place="park")
    assert p.source == "the big dog chased a small cat in the park ."
    assert p.target == "sadrode wuroko gor misata lin kurmi ."
    p = T.compose("child", "see", "fox", subject_plural=True, object_plural=True, negated=True,
                  subject_adjectives=["old", "happy"], place="river", preposition="near")
    assert p.source == "the old happy children do not see the foxes near the river ."
    assert p.target == "fluvipa nemienko joli tesh vulpaenta vidrane ."
    assert T.compose("cat", "see", "dog").source == "the cat sees the dog ."
    with pytest.raises(ValueError, match="verb"):
        T.compose("cat", "eat", "dog")
    with pytest.raises(ValueError, match="noun"):
        T.compose("zebra", "see", "dog")


def test_random_pairs_follow_the_grammar():
    rng = random.Random(0)
    for _ in range(300):
        p = T.synthetic_pair(rng)
        en, xx = p.source.split(), p.target.split()
        assert en[-1] == xx[-1] == "."
        assert xx[-2].endswith(("ra", "mi", "rane", "mine"))     # the verb comes last (SOV)
        assert xx[0].endswith(("de", "pa", "sul")) == any(w in en for w in ("in", "near", "behind"))
        assert "the" not in xx and "a" not in xx
        assert xx[0].endswith("ko") or xx[1].endswith("ko")       # the subject comes first (after a place)


def test_synthetic_splits_are_fixed_and_disjoint():
    a = T.synthetic_splits(300, 50, 80, n_mono=100, seed=0)
    b = T.synthetic_splits(900, 20, 80, n_mono=10, seed=0)
    assert [p.source for p in a["test"]] == [p.source for p in b["test"]]     # test depends on n_test only
    test = {p.source for p in a["test"]}
    assert not test & {p.source for p in a["train"] + a["valid"]}
    assert not test & set(a["mono_source"])
    assert len({p.source for p in a["train"]}) == 300
    with pytest.raises(ValueError, match="n_train"):
        T.synthetic_splits(0)


def test_word_vocab_round_trip_and_specials():
    v = T.WordVocab.build(["the dog sees a cat .", "wuroko misata vidra ."])
    assert v.itos[:5] == list(T.SPECIALS)
    ids = v.encode("the dog sees a cat .")
    assert v.decode(ids) == "the dog sees a cat."
    assert v.encode("the zebra")[1] == T.UNK
    assert v.decode([T.BOS, *ids, T.EOS, T.PAD]) == "the dog sees a cat."
    with pytest.raises(ValueError, match="special"):
        T.WordVocab(["a", "b"])


def test_subword_vocab_round_trip():
    texts = ["In the beginning, God created the heavens and the earth.",
             "EN el principio crió Dios los cielos y la tierra."] * 20
    v = T.SubwordVocab.train(texts, vocab_size=120)
    assert [v.tokenizer.id_to_token(i) for i in range(5)] == list(T.SPECIALS)
    for t in texts[:2]:
        assert v.decode(v.encode(t)) == t


def test_mask_spans_hides_spans_behind_single_masks():
    rng = random.Random(0)
    ids = list(range(10, 30))
    out = T.mask_spans(ids, rng, mask_ratio=0.3, max_span=3)
    assert T.MASK in out
    assert all(not (a == b == T.MASK) for a, b in zip(out, out[1:]))     # one mask per span
    kept = [t for t in out if t != T.MASK]
    assert kept == [t for t in ids if t in kept]                          # order kept
    assert len(ids) - len(kept) >= round(0.3 * len(ids))
    assert T.mask_spans(ids, rng, mask_ratio=0.0) == ids


def test_batches_shift_targets():
    src, tgt_in, tgt_out = T.seq2seq_batch([[5, 6], [7]], [[8, 9, 10], [11]])
    assert src.tolist() == [[5, 6], [7, 0]]
    assert tgt_in.tolist() == [[1, 8, 9, 10], [1, 11, 0, 0]]
    assert tgt_out.tolist() == [[8, 9, 10, 2], [11, 2, 0, 0]]
    fn = T.PairBatches([[5], [6]], [[7], [8]], batch_size=4, seed=0)
    assert [t.tolist() for t in fn(3)] == [t.tolist() for t in fn(3)]   # pure in i
    d = T.DenoisingBatches([list(range(5, 15))], batch_size=2, seed=0)
    s, ti, to = d(0)
    assert to[0].tolist() == list(range(5, 15)) + [2]


def test_parse_imp_and_clean_markup():
    text = ("$$$[ Module Heading ]\nintro\n$$$Genesis 1:0\nheading\n$$$Genesis 1:1\n"
            '<w lemma="strong:H7225">In</w> the beginning, <w>God</w><note placement="foot">a note</note>'
            '<w>created</w> the earth &amp; sky .\n$$$Genesis 1:2\n\n')
    verses = T.parse_imp(text)
    assert verses == {"Genesis 1:1": "In the beginning, God created the earth & sky."}


def test_bible_pairs_when_installed(tmp_path):
    if not T.bible_available():
        with pytest.raises(FileNotFoundError, match="apt-get install sword-text-web"):
            T.export_bible("engWEB2015eb", cache_dir=tmp_path)
        pytest.skip("SWORD Bibles not installed")
    pairs = T.load_bible_pairs()
    assert len(pairs) > 30000
    by_ref = {p.ref: p for p in pairs}
    assert by_ref["John 11:35"].source.startswith("Jesus wept")
    assert "Jesús" in by_ref["John 11:35"].target
    split = T.split_by_reference(pairs)
    assert sum(map(len, split.values())) == len(pairs)
    assert not {p.ref for p in split["test"]} & {p.ref for p in split["train"]}
    with pytest.raises(ValueError, match="module"):
        T.export_bible("../etc/passwd")
