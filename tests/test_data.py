"""Offline text data, the word tokenizer and reproducible batches."""
import pytest
import torch

from genai_helpers.data import WordTokenizer, find_fortunes_dir, load_fortunes, split_documents, window_batch_fn


def test_tokenizer_round_trips_known_words_and_maps_unknown_to_unk():
    tok = WordTokenizer.train(["the cat sat on the mat.", "the dog sat."], vocab_size=10)
    assert tok.itos[:4] == ["<pad>", "<unk>", "<eos>", "<mask>"]
    assert tok.itos[4] == "the"                              # most frequent first
    assert tok.decode(tok.encode("The cat sat.")) == "the cat sat."
    assert tok.encode("zebra") == [tok.unk_id]
    assert tok.encode_corpus(["the cat", "sat"]).tolist() == tok.encode("the cat") + [2] + tok.encode("sat") + [2]
    with pytest.raises(ValueError, match="vocab_size"):
        WordTokenizer.train(["a"], vocab_size=3)


def test_split_is_a_seeded_partition():
    docs = [f"doc {i}" for i in range(100)]
    a = split_documents(docs, seed=1)
    assert a == split_documents(docs, seed=1)
    assert sorted(sum(a, [])) == sorted(docs)
    assert [len(x) for x in a] == [90, 5, 5]
    with pytest.raises(ValueError, match="fractions"):
        split_documents(docs, (0.5, 0.5, 0.5))


def test_window_batches_are_a_pure_function_of_the_index_and_shifted_by_one():
    stream = torch.arange(1000)
    fn = window_batch_fn(stream, batch_size=4, block_size=8, seed=3)
    x, y = fn(5)
    assert torch.equal(x, fn(5)[0]) and not torch.equal(x, fn(6)[0])
    assert torch.equal(y, x + 1)
    with pytest.raises(ValueError, match="block_size"):
        window_batch_fn(torch.arange(5), 2, 8)


def test_fortunes_corpus_loads_when_installed():
    try:
        find_fortunes_dir()
    except FileNotFoundError:
        pytest.skip("the fortunes package is not installed here (CI installs it)")
    docs = load_fortunes()
    assert len(docs) > 5000 and all(len(d.split()) >= 4 for d in docs)


def test_missing_corpus_error_names_every_way_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes.*brew install fortune.*GENAI_FORTUNES_DIR"):
        find_fortunes_dir(tmp_path)


def test_one_pad_batch_serves_translation_and_alignment():
    from genai_helpers.finetuning import alignment
    from genai_helpers.data import batching, translation

    assert translation.pad_batch is alignment.pad_batch is batching.pad_batch
    assert translation.PAD == batching.DEFAULT_PAD_VALUE == 0          # chapter 05 pads with its <pad> id by default
    rows = [[5, 6, 7], [8], []]
    assert batching.pad_batch(rows).tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert batching.pad_batch(rows, -100).tolist() == [[5, 6, 7], [8, -100, -100], [-100, -100, -100]]
    assert batching.pad_batch(rows, pad_value=3).dtype == torch.long
    assert batching.pad_batch([[], []]).shape == (2, 1)                  # never a zero-width batch
    assert batching.pad_batch([torch.tensor([1, 2]), (3,)]).tolist() == [[1, 2], [3, 0]]


def test_pad_batch_names_its_bad_arguments():
    from genai_helpers.data.batching import pad_batch

    with pytest.raises(ValueError, match="seqs"):
        pad_batch([])
    with pytest.raises(TypeError, match="seqs"):
        pad_batch("abc")
    with pytest.raises(TypeError, match="pad_value"):
        pad_batch([[1]], pad_value=0.5)
