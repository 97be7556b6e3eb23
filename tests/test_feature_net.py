"""The book's feature network (stand-in for Inception-v3): FID sanity, perceptual distance, validation."""
import pytest
import torch

from genai_helpers.data.procedural import make_faces
from genai_helpers.metrics.feature_net import (FeatureNet, generator_scores, image_features, perceptual_distance,
                                               train_feature_net)
from genai_helpers.metrics.image import fid_from_features


def _attrs(a):
    return torch.stack([a[k] for k in sorted(a)], 1)


@pytest.fixture(scope="module")
def faces():
    x, a = make_faces(640, 16, seed=1)
    return x * 2 - 1, _attrs(a)


@pytest.fixture(scope="module")
def net(faces):
    x, y = faces
    return train_feature_net(x, y, epochs=3, batch_size=64, width=8, seed=0)


def test_train_report_and_frozen_eval_mode(net):
    assert not net.training
    assert all(not p.requires_grad for p in net.parameters())
    assert net.kind == "multi_head" and len(net.head_sizes) == 8
    r = net.train_report
    assert r["n_val"] == 64 and r["n_train"] == 576
    assert 0 <= r["val_accuracy"] <= 1 and len(r["val_accuracy_per_head"]) == 8
    # skin tone (5 classes) is an easy colour cue: above the 20 % chance level after 3 epochs (64 validation
    # faces, so a standard error of about 0.06: the bound sits two of them above chance)
    skin = sorted(["face_shape", "skin_tone", "eyes", "mouth", "hair", "hair_colour", "glasses", "age"]).index("skin_tone")
    assert r["val_accuracy_per_head"][skin] > 0.3


def test_training_is_deterministic_under_the_seed(faces):
    x, y = faces[0][:200], faces[1][:200]
    state = torch.random.get_rng_state()
    a = train_feature_net(x, y, epochs=1, batch_size=50, width=4, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())          # global RNG untouched
    b = train_feature_net(x, y, epochs=1, batch_size=50, width=4, seed=3)
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(p, q)


def test_fid_real_vs_real_is_small_and_real_vs_noise_is_large(net, faces):
    x = faces[0]
    fresh = make_faces(640, 16, seed=2)[0] * 2 - 1
    noise = torch.rand_like(fresh) * 2 - 1
    f_real, f_fresh, f_noise = image_features(net, x), image_features(net, fresh), image_features(net, noise)
    assert f_real.shape == (640, net.feature_dim) and f_real.dtype == torch.float64
    same = fid_from_features(f_real, f_fresh)
    far = fid_from_features(f_real, f_noise)
    assert same < 0.1 * far
    scores = generator_scores(net, x, fresh)
    assert scores["fid"] == pytest.approx(same, rel=1e-9)
    cached = generator_scores(net, None, fresh, real_features=f_real)
    assert cached["fid"] == pytest.approx(same, rel=1e-9) and cached["kid"] == scores["kid"]
    noisy = generator_scores(net, x, noise)
    assert noisy["fid"] > scores["fid"] and noisy["kid"] > scores["kid"]
    assert set(scores) >= {"fid", "kid", "kid_std", "inception_score", "is_std", "is_per_head"}
    assert 1 <= scores["inception_score"] <= max(net.head_sizes)


def test_single_head_and_multi_label_probabilities():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60, 1, 8, 8, generator=g) * 2 - 1
    single = train_feature_net(x, torch.arange(60) % 3, epochs=1, batch_size=20, width=4, val_fraction=0.0)
    p = single.class_probs(x)
    assert p.shape == (60, 3) and torch.allclose(p.sum(1), torch.ones(60))
    assert single.train_report["val_accuracy"] is None
    assert single.predict(x).shape == (60,)
    multi = train_feature_net(x, (torch.rand(60, 4, generator=g) > 0.5).float(), epochs=1, batch_size=20, width=4)
    q = multi.class_probs(x)
    assert q.shape == (60, 4) and ((q > 0) & (q < 1)).all()
    assert len(generator_scores(multi, x, x.flip(0))["is_per_head"]) == 4


def test_perceptual_distance_zero_for_identical_symmetric_and_differentiable(net, faces):
    x = faces[0][:16]
    y = faces[0][16:32]
    assert torch.allclose(perceptual_distance(net, x, x), torch.zeros(16), atol=1e-6)
    d_xy, d_yx = perceptual_distance(net, x, y), perceptual_distance(net, y, x)
    assert d_xy.shape == (16,) and torch.allclose(d_xy, d_yx) and (d_xy > 0).all()
    # a slightly perturbed copy is closer than a different face
    near = perceptual_distance(net, x, (x + 0.02 * torch.randn_like(x)).clamp(-1, 1))
    assert (near < d_xy).float().mean() > 0.8
    z = y.clone().requires_grad_(True)
    perceptual_distance(net, x, z).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_argument_validation(net, faces):
    x, y = faces
    with pytest.raises(TypeError, match="images"):
        train_feature_net(x.numpy(), y)
    with pytest.raises(ValueError, match="8x8"):
        train_feature_net(torch.zeros(10, 3, 4, 4), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="one row per image"):
        train_feature_net(x, y[:5])
    with pytest.raises(ValueError, match="0/1"):
        train_feature_net(x, torch.rand(len(x), 3))
    with pytest.raises(ValueError, match="epochs"):
        train_feature_net(x, y, epochs=0)
    with pytest.raises(ValueError, match="val_fraction"):
        train_feature_net(x, y, val_fraction=0.7)
    with pytest.raises(TypeError, match="net"):
        image_features(torch.nn.Linear(2, 2), x)
    with pytest.raises(ValueError, match="channels"):
        image_features(net, x[:, :1])
    with pytest.raises(ValueError, match="same shape"):
        perceptual_distance(net, x[:4], x[:5])
    with pytest.raises(ValueError, match="kind"):
        FeatureNet(3, (2,), kind="other")


def test_training_on_the_shared_loop_equals_the_old_loop(faces):
    """train_feature_net now runs on genai_helpers.training.train; its old loop (verbatim here) trained the same."""
    import torch.nn.functional as F
    x, y = faces[0][:120], faces[1][:120]
    epochs, bs, seed = 2, 25, 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        sizes = tuple(int(m) + 1 for m in y.max(0).values)
        old = FeatureNet(3, sizes, kind="multi_head", width=4)
        order = torch.randperm(len(x), generator=gen)
        train_idx = order[12:]
        spe = len(train_idx) // bs
        opt = torch.optim.AdamW(old.parameters(), lr=2e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * spe)
        old.train()
        for _ in range(epochs):
            perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
            total = 0.0
            for s in range(spe):
                idx = perm[s * bs:(s + 1) * bs]
                logits = old(x[idx])
                loss = sum(F.cross_entropy(part, y[idx][:, h]) for h, part in enumerate(old.split_logits(logits)))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
    new = train_feature_net(x, y, epochs=epochs, batch_size=bs, width=4, seed=seed)
    # rates: CosineAnnealingLR's recursion vs the shared closed form differ by ~1e-15 relative
    assert new.train_report["train_loss"] == pytest.approx(total / spe, rel=1e-6)
    for a, b in zip(old.state_dict().values(), new.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-7)
