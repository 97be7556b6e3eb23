"""Chapter 10's visual question answering: questions from scene objects, the VQA model and its blind baseline."""
import pytest
import torch

from genai_helpers.data import WordTokenizer, make_scenes
from genai_helpers.data.procedural import SceneObject
from genai_helpers.data.vqa import QUESTION_TYPES, make_vqa, relation_word
from genai_helpers.models.captioning import CaptionDecoder, CNNEncoder
from genai_helpers.models.vqa import VQAModel, question_batch


def test_make_vqa_answers_are_read_off_the_scene():
    _, _, objs = make_scenes(60, size=32, seed=3)
    qa = make_vqa(objs, seed=0)
    assert len(qa) == len(qa.answers) == len(qa.types) == len(qa.scene)
    assert set(qa.types) == set(QUESTION_TYPES)
    for q, a, t, i in zip(qa.questions, qa.answers, qa.types, qa.scene):
        scene = objs[i]
        if t == "colour":
            shape = q.split()[-1]
            assert [o.colour for o in scene if o.shape == shape] == [a]
        elif t == "shape":
            colour = q.split()[-2]
            assert [o.shape for o in scene if o.colour == colour] == [a]
        else:
            assert len(scene) == 2 and a in ("left", "right", "above", "below")
            w = q.split()
            first = next(o for o in scene if (o.colour, o.shape) == (w[3], w[4]))
            second = next(o for o in scene if (o.colour, o.shape) == (w[7], w[8]))
            assert relation_word(first, second) == a
    assert make_vqa(objs, seed=0).questions == qa.questions                 # deterministic


def test_relation_word_follows_the_larger_offset():
    a, b = SceneObject("circle", "red", "small", 0.2, 0.5), SceneObject("square", "blue", "small", 0.8, 0.45)
    assert relation_word(a, b) == "left" and relation_word(b, a) == "right"
    c = SceneObject("square", "blue", "small", 0.25, 0.9)
    assert relation_word(a, c) == "above" and relation_word(c, a) == "below"


def test_make_vqa_rejects_bad_input():
    with pytest.raises(TypeError, match="objects"):
        make_vqa([["red circle"]])
    with pytest.raises(TypeError, match="seed"):
        make_vqa([[SceneObject("circle", "red", "small", 0.5, 0.5)]], seed=0.5)


def _setup():
    _, _, objs = make_scenes(20, size=16, seed=1)
    qa = make_vqa(objs)
    tok = WordTokenizer.train(qa.questions + qa.answers, vocab_size=100)
    answers = sorted(set(qa.answers))
    return qa, tok, [tok.stoi[a] for a in answers]


def test_question_batch_pads_and_counts():
    qa, tok, _ = _setup()
    ids, lengths = question_batch(qa.questions[:3], tok, 12)
    assert ids.shape == (3, 12) and lengths.tolist() == [len(q.split()) + 1 for q in qa.questions[:3]]
    assert (ids[:, 0] == tok.eos_id).all() and ids[0, lengths[0]:].eq(tok.pad_id).all()
    with pytest.raises(ValueError, match="max_len"):
        question_batch(qa.questions[:1], tok, 3)
    with pytest.raises(TypeError, match="questions"):
        question_batch("what", tok, 12)


def test_vqa_model_reads_the_last_question_token_and_the_image():
    torch.manual_seed(0)
    qa, tok, answer_ids = _setup()
    model = VQAModel(CNNEncoder(16, 16, channels=(8, 8)), CaptionDecoder(len(tok), 16, n_layer=1, n_head=2, max_len=12),
                     answer_ids).eval()
    ids, lengths = question_batch(qa.questions[:4], tok, 12)
    images = torch.rand(4, 3, 16, 16)
    out = model(images, ids, lengths)
    assert out.shape == (4, len(answer_ids))
    full = model.decoder(ids, model.encoder(images))
    assert torch.allclose(out, full[torch.arange(4), lengths - 1][:, answer_ids], atol=1e-6)
    padded = ids.clone(); padded[padded == tok.pad_id] = 5                   # padding after the question is never read
    assert torch.allclose(out, model(images, padded, lengths), atol=1e-6)
    assert not torch.allclose(out, model(torch.rand(4, 3, 16, 16), ids, lengths), atol=1e-4)
    assert model.predict(images, ids, lengths).shape == (4,)


def test_blind_model_ignores_the_image_and_trains():
    torch.manual_seed(0)
    qa, tok, answer_ids = _setup()
    model = VQAModel(None, CaptionDecoder(len(tok), 16, n_layer=1, n_head=2, max_len=12), answer_ids)
    ids, lengths = question_batch(qa.questions, tok, 12)
    targets = torch.tensor([answer_ids.index(tok.stoi[a]) for a in qa.answers])
    assert model.blind and torch.equal(model(None, ids, lengths), model(torch.rand(len(ids), 3, 16, 16), ids, lengths))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model(None, ids, lengths, targets)[1].item()
    for _ in range(20):
        opt.zero_grad(); loss = model(None, ids, lengths, targets)[1]; loss.backward(); opt.step()
    assert loss.item() < first


def test_vqa_model_validation():
    _, tok, answer_ids = _setup()
    dec = CaptionDecoder(len(tok), 16, n_layer=1, n_head=2, max_len=12)
    with pytest.raises(TypeError, match="decoder"):
        VQAModel(None, torch.nn.Linear(2, 2), answer_ids)
    with pytest.raises(ValueError, match="answer_ids"):
        VQAModel(None, dec, [answer_ids[0]])
    with pytest.raises(ValueError, match="answer_ids"):
        VQAModel(None, dec, [0, len(tok)])
    model = VQAModel(None, dec, answer_ids)
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="lengths"):
        model(None, ids, torch.tensor([1, 6]))
    with pytest.raises(ValueError, match="lengths"):
        model(None, ids, torch.tensor([1]))
