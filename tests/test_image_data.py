"""Image data: the Fashion-MNIST loader's sources and errors, and the procedural generators."""
import gzip
import struct

import numpy as np
import pytest
import torch

from genai_helpers.data import images as fm
from genai_helpers.data.procedural import FACE_ATTRIBUTES, SceneObject, make_faces, make_scenes, scene_captions


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 4)):
        img, lab = fm.FASHION_FILES[split]
        _write_idx(tmp_path / img, rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / lab, np.arange(n) % 10)
    return tmp_path


def test_loader_reads_a_named_folder_scaled_to_unit_range(fake_fashion):
    x, y = fm.load_fashion_mnist("test", root=fake_fashion)
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert y.tolist() == [0, 1, 2, 3]
    x, _ = fm.load_fashion_mnist("train", root=fake_fashion, limit=2)
    assert x.shape[0] == 2


def test_loader_error_names_all_three_ways_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        fm.load_fashion_mnist("train", root=tmp_path)
    message = str(err.value)
    assert "root=" in message and "apt-get install dataset-fashion-mnist" in message and "download=True" in message


def test_loader_rejects_bad_arguments_and_corrupt_files(fake_fashion, tmp_path):
    with pytest.raises(ValueError, match="split"):
        fm.load_fashion_mnist("validation", root=fake_fashion)
    with pytest.raises(ValueError, match="limit"):
        fm.load_fashion_mnist("train", root=fake_fashion, limit=0)
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")            # says 5 values, holds 2
    with pytest.raises(ValueError, match="truncated"):
        fm.read_idx(bad)


def test_real_fashion_mnist_when_installed():
    try:
        fm.find_fashion_mnist(split="test")
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed here (CI installs dataset-fashion-mnist)")
    x, y = fm.load_fashion_mnist("test")
    assert x.shape == (10000, 1, 28, 28) and torch.bincount(y).tolist() == [1000] * 10


def test_faces_are_seeded_and_honour_fixed_attributes():
    a, attrs = make_faces(6, 32, seed=1, glasses=1)
    b, _ = make_faces(6, 32, seed=1, glasses=1)
    assert torch.equal(a, b) and a.shape == (6, 3, 32, 32)
    assert attrs["glasses"].tolist() == [1] * 6
    assert set(attrs) == set(FACE_ATTRIBUTES)
    with_glasses, _ = make_faces(1, 32, seed=5, glasses=1)
    without, _ = make_faces(1, 32, seed=5, glasses=0)
    assert not torch.equal(with_glasses, without), "the attribute must change the picture"
    with pytest.raises(ValueError, match="glasses"):
        make_faces(2, 32, glasses=2)
    with pytest.raises(ValueError, match="size"):
        make_faces(2, 8)


def test_scene_captions_state_the_true_relation():
    left = SceneObject("circle", "red", "small", 0.2, 0.5)
    right = SceneObject("square", "blue", "large", 0.8, 0.5)
    caps = scene_captions([left, right])
    assert caps[0] == "a small red circle left of a large blue square"
    assert caps[1] == "a large blue square right of a small red circle"
    top, bottom = SceneObject("triangle", "green", "small", 0.5, 0.2), SceneObject("circle", "white", "small", 0.5, 0.8)
    assert scene_captions([top, bottom])[0] == "a small green triangle above a small white circle"


def test_scenes_draw_each_object_in_its_colour_where_it_stands():
    imgs, caps, objs = make_scenes(20, 32, seed=3)
    assert imgs.shape == (20, 3, 32, 32) and len(caps) == 20 and all(len(c) == 4 for c in caps)
    from genai_helpers.data.procedural import SCENE_COLOURS
    for img, scene in zip(imgs, objs):
        for o in scene:
            px = img[:, int(o.y * 32), int(o.x * 32)]
            assert torch.allclose(px, torch.tensor(SCENE_COLOURS[o.colour]) / 255, atol=0.02), (o, px)
