"""VQ-VAE (genai_helpers.models.vqvae) and the token-grid prior helpers (models.token_prior)."""
import math

import pytest
import torch
import torch.nn.functional as F

from genai_helpers.models.token_prior import (generation_flops, grid_to_sequence, sample_token_grid,
                                              sequence_to_grid)
from genai_helpers.models.vqvae import (VQVAE, VectorQuantizer, VQVAEConfig, codebook_usage, ema_codebook_update,
                                        kmeans, nearest_codes, straight_through, vq_losses)


def brute_force_nearest(z, codebook):
    out = []
    for row in z.tolist():
        dists = [sum((a - b) ** 2 for a, b in zip(row, code)) for code in codebook.tolist()]
        out.append(min(range(len(dists)), key=lambda i: (dists[i], i)))
    return torch.tensor(out)


def test_nearest_codes_match_a_brute_force_search():
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(200, 5, generator=g), torch.randn(37, 5, generator=g)
    assert torch.equal(nearest_codes(z, codebook), brute_force_nearest(z, codebook))


def test_quantizer_assigns_each_grid_vector_its_nearest_code_and_returns_that_code():
    g = torch.Generator().manual_seed(1)
    vq = VectorQuantizer(16, 3, init="normal")
    z_e = torch.randn(2, 3, 4, 5, generator=g)
    z_q, codes, _, _ = vq(z_e)
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 3)
    assert codes.shape == (2, 4, 5)
    assert torch.equal(codes.reshape(-1), brute_force_nearest(flat, vq.codebook.weight.detach()))
    expected = vq.codebook.weight.detach()[codes].permute(0, 3, 1, 2)
    assert torch.allclose(z_q, expected, atol=1e-6)


def test_straight_through_gradient_equals_the_gradient_at_the_quantised_vectors():
    g = torch.Generator().manual_seed(2)
    vq = VectorQuantizer(8, 4, init="normal")
    z_e = torch.randn(3, 4, 2, 2, generator=g, requires_grad=True)
    weight = torch.randn(3, 4, 2, 2, generator=g)

    def downstream(z):                       # a stand-in for "decoder + reconstruction loss"
        return ((z * weight).sin() ** 2).sum()

    z_q_st, _, _, _ = vq(z_e)
    downstream(z_q_st).backward()
    z_q_leaf = z_q_st.detach().clone().requires_grad_(True)
    downstream(z_q_leaf).backward()
    assert not torch.allclose(z_e.detach(), z_q_leaf.detach())          # quantisation did move the vectors
    assert torch.allclose(z_e.grad, z_q_leaf.grad, atol=1e-6)
    assert vq.codebook.weight.grad is None                               # the downstream loss never reaches the codebook


def test_straight_through_is_identity_backward_and_quantised_forward():
    z_e = torch.tensor([0.3, -1.2], requires_grad=True)
    z_q = torch.tensor([1.0, -1.0])
    out = straight_through(z_e, z_q)
    assert torch.equal(out.detach(), z_q)
    (out * torch.tensor([2.0, 5.0])).sum().backward()
    assert torch.equal(z_e.grad, torch.tensor([2.0, 5.0]))


def test_codebook_and_commitment_losses_on_hand_computed_numbers():
    vq = VectorQuantizer(3, 2)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]]))
    z_e = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).requires_grad_(True)
    # squared distances to the codes: 5, 1, 5 -> code 1 = (1, 1)
    _, codes, cb, commit = vq(z_e)
    assert codes.item() == 1
    assert cb.item() == pytest.approx(0.5)       # mean((1-1)^2, (1-2)^2)
    assert commit.item() == pytest.approx(0.5)
    cb.backward(retain_graph=True)
    assert z_e.grad is None or torch.all(z_e.grad == 0)                  # codebook loss moves only the code
    assert torch.allclose(vq.codebook.weight.grad, torch.tensor([[0.0, 0.0], [0.0, -1.0], [0.0, 0.0]]))
    vq.codebook.weight.grad = None
    commit.backward()
    assert torch.allclose(z_e.grad.view(2), torch.tensor([0.0, 1.0]))    # 2 (z_e - e) / 2
    assert vq.codebook.weight.grad is None


def test_vq_losses_detach_the_right_side():
    z_e = torch.tensor([[2.0, 0.0]], requires_grad=True)
    z_q = torch.tensor([[1.0, 1.0]], requires_grad=True)
    cb, commit = vq_losses(z_e, z_q)
    assert cb.item() == pytest.approx(1.0) and commit.item() == pytest.approx(1.0)
    (cb + 10 * commit).backward()
    assert torch.allclose(z_q.grad, torch.tensor([[-1.0, 1.0]]))         # d/dz_q of cb only
    assert torch.allclose(z_e.grad, torch.tensor([[10.0, -10.0]]))       # 10 * d/dz_e of commit only


def test_vqvae_total_loss_is_reconstruction_plus_codebook_plus_beta_commitment():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(hidden=8, embed_dim=4, codebook_size=16, beta=0.4, init="normal"))
    x = torch.rand(2, 1, 12, 16) * 2 - 1
    out = model(x)
    assert out.recon.shape == x.shape and out.codes.shape == (2, 3, 4) and out.z_e.shape == (2, 4, 3, 4)
    assert out.recon_loss.item() == pytest.approx(F.mse_loss(out.recon, x).item())
    assert out.loss.item() == pytest.approx(out.recon_loss.item() + out.codebook_loss.item()
                                            + 0.4 * out.commitment_loss.item(), rel=1e-6)
    assert torch.equal(model.encode(x), out.codes)
    decoded = model.decode(out.codes)
    assert torch.allclose(decoded, out.recon.clamp(-1, 1), atol=1e-6)


def test_training_steps_reduce_the_reconstruction_error_on_a_fixed_batch():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(hidden=16, embed_dim=4, codebook_size=8, init="normal"))
    blocks = torch.randint(0, 2, (8, 1, 2, 2), generator=torch.Generator().manual_seed(0)).float() * 2 - 1
    x = F.interpolate(blocks, scale_factor=4)                 # piecewise-constant images: a codebook can hold them
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model(x).recon_loss.item()
    for _ in range(100):
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert model(x).recon_loss.item() < 0.3 * first


def test_codebook_usage_counts_dead_codes_and_perplexity_by_hand():
    u = codebook_usage(torch.tensor([[0, 0], [1, 3]]), 4)
    assert u["counts"].tolist() == [2, 1, 0, 1]
    assert (u["used"], u["dead"], u["usage"]) == (3, 1, 0.75)
    # entropy = -(0.5 ln 0.5 + 2 * 0.25 ln 0.25) = 1.5 ln 2
    assert u["perplexity"] == pytest.approx(2 ** 1.5)
    assert codebook_usage(torch.zeros(10, dtype=torch.long), 5)["perplexity"] == pytest.approx(1.0)
    assert codebook_usage(torch.arange(6), 6)["perplexity"] == pytest.approx(6.0)


def test_reset_dead_codes_moves_only_unused_codes_onto_encoder_outputs():
    vq = VectorQuantizer(4, 2)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [50.0, 50.0], [60.0, 60.0]]))
    z = torch.tensor([[0.1, 0.0], [0.9, 0.1], [0.2, -0.1]])
    counts = codebook_usage(nearest_codes(z, vq.codebook.weight.detach()), 4)["counts"]
    assert counts.tolist() == [2, 1, 0, 0]
    before = vq.codebook.weight.detach().clone()
    moved = vq.reset_dead_codes(z, counts, generator=torch.Generator().manual_seed(0))
    after = vq.codebook.weight.detach()
    assert moved == 2
    assert torch.equal(after[:2], before[:2])
    for k in (2, 3):
        assert any(torch.equal(after[k], row) for row in z)
    assert vq.reset_dead_codes(z, torch.ones(4, dtype=torch.long)) == 0


def test_argument_validation_names_the_parameter():
    with pytest.raises(ValueError, match="codebook_size"):
        VQVAEConfig(codebook_size=0)
    with pytest.raises(ValueError, match="beta"):
        VQVAEConfig(beta=-1.0)
    with pytest.raises(TypeError, match="config"):
        VQVAE({"hidden": 8})
    with pytest.raises(ValueError, match="init"):
        VectorQuantizer(4, 2, init="zeros")
    model = VQVAE(VQVAEConfig(hidden=8, embed_dim=4, codebook_size=8))
    with pytest.raises(ValueError, match="channels"):
        model(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.zeros(1, 1, 10, 8))
    with pytest.raises(ValueError, match=r"codes must be in \[0, 8\)"):
        model.decode(torch.full((1, 2, 2), 8))
    with pytest.raises(ValueError, match="dimension"):
        nearest_codes(torch.zeros(3, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"codes must be in \[0, 3\)"):
        codebook_usage(torch.tensor([0, 3]), 3)
    with pytest.raises(TypeError, match="integer"):
        codebook_usage(torch.tensor([0.0]), 3)
    with pytest.raises(ValueError, match="counts"):
        model.quantizer.reset_dead_codes(torch.zeros(5, 4), torch.zeros(3))


def test_ema_codebook_update_matches_a_hand_computation():
    # K = 3 codes in D = 2; counts start at 1 and sums at the codes themselves
    count = torch.tensor([1.0, 1.0, 1.0])
    total_sum = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    codes = torch.tensor([0, 0, 1])                      # code 2 is picked by nobody
    new = ema_codebook_update(count, total_sum, z, codes, decay=0.5, eps=0.1)
    # count = 0.5 * 1 + 0.5 * [2, 1, 0] = [1.5, 1.0, 0.5]; sum = 0.5 * old + 0.5 * [[2, 2], [3, 3], [0, 0]]
    assert count.tolist() == [1.5, 1.0, 0.5]
    assert total_sum.tolist() == [[1.0, 1.0], [2.0, 2.0], [2.5, 2.5]]
    # Laplace smoothing: total 3, N_k = (count_k + 0.1) / (3 + 3 * 0.1) * 3
    n = [(c + 0.1) / 3.3 * 3 for c in (1.5, 1.0, 0.5)]
    expected = torch.tensor([[1.0 / n[0]] * 2, [2.0 / n[1]] * 2, [2.5 / n[2]] * 2])
    assert torch.allclose(new, expected)


def test_ema_quantizer_moves_codes_towards_their_assigned_outputs_without_gradient():
    vq = VectorQuantizer(2, 1, ema_decay=0.9)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0], [10.0]]))
        vq.ema_sum.copy_(vq.codebook.weight)
    assert not vq.codebook.weight.requires_grad
    z_e = torch.full((1, 1, 2, 2), 1.0, requires_grad=True)   # every output is nearest to code 0
    vq.train()
    _, codes, cb_loss, _ = vq(z_e)
    assert codes.eq(0).all() and not cb_loss.requires_grad
    # count_0 = 0.9 + 0.1 * 4 = 1.3, sum_0 = 0.1 * 4 = 0.4; code 1 keeps count 0.9, sum 9
    n0, n1 = [(c + 1e-5) / (2.2 + 2e-5) * 2.2 for c in (1.3, 0.9)]
    assert vq.codebook.weight[0, 0].item() == pytest.approx(0.4 / n0, rel=1e-5)
    assert vq.codebook.weight[1, 0].item() == pytest.approx(9.0 / n1, rel=1e-5)
    vq.eval()                                                     # no update outside training
    before = vq.codebook.weight.clone()
    vq(z_e)
    assert torch.equal(before, vq.codebook.weight)
    # the total loss of an EMA VQ-VAE has no codebook term, and the codebook is not a trained parameter
    model = VQVAE(VQVAEConfig(hidden=8, embed_dim=4, codebook_size=16, beta=0.4, ema_decay=0.99))
    out = model(torch.rand(2, 1, 8, 8) * 2 - 1)
    assert out.loss.item() == pytest.approx(out.recon_loss.item() + 0.4 * out.commitment_loss.item(), rel=1e-6)


def test_kmeans_init_places_every_code_on_the_data():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-5.0, 0.0], [5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
    z = (centres[:, None, :] + 0.1 * torch.randn(4, 50, 2, generator=g)).reshape(-1, 2)
    found = kmeans(z, 4, n_iter=20, generator=torch.Generator().manual_seed(1))
    # each true cluster centre has a centroid within 0.1, and each centroid lies among the data
    assert torch.cdist(centres, found).min(1).values.max() < 0.1
    assert torch.cdist(found, z).min(1).values.max() < 0.2
    # init="kmeans" waits for the first training batch, then every code sits among its encoder outputs
    vq = VectorQuantizer(4, 2, init="kmeans")
    assert not bool(vq.initialized)
    vq.eval()
    vq(z.T.reshape(1, 2, 20, 10))                                  # eval mode: no initialisation
    assert not bool(vq.initialized)
    vq.train()
    torch.manual_seed(0)
    _, codes, _, _ = vq(z.T.reshape(1, 2, 20, 10))
    assert bool(vq.initialized)
    assert torch.cdist(centres, vq.codebook.weight.detach()).min(1).values.max() < 0.1
    assert codebook_usage(codes, 4)["used"] == 4
    # with more codes than rows, every row is reused and no code is left off the data
    few = kmeans(z[:3], 5, n_iter=3, generator=torch.Generator().manual_seed(0))
    assert torch.cdist(few, z[:3]).min(1).values.max() == 0


def test_ema_and_kmeans_arguments_are_validated_by_name():
    with pytest.raises(ValueError, match="ema_decay"):
        VectorQuantizer(4, 2, ema_decay=1.0)
    with pytest.raises(TypeError, match="ema_decay"):
        VectorQuantizer(4, 2, ema_decay="0.99")
    with pytest.raises(ValueError, match="ema_decay"):
        VQVAEConfig(ema_decay=0.0)
    with pytest.raises(ValueError, match="eps"):
        VectorQuantizer(4, 2, ema_decay=0.99, eps=0.0)
    with pytest.raises(TypeError, match="kmeans_iters"):
        VectorQuantizer(4, 2, init="kmeans", kmeans_iters=2.5)
    with pytest.raises(ValueError, match="init"):
        VectorQuantizer(4, 2, init="k-means")
    with pytest.raises(ValueError, match="k must be"):
        kmeans(torch.zeros(5, 2), 0)
    with pytest.raises(ValueError, match="n_iter"):
        kmeans(torch.zeros(5, 2), 2, n_iter=-1)
    with pytest.raises(ValueError, match="z must hold"):
        kmeans(torch.zeros(0, 2), 2)
    with pytest.raises(TypeError, match="z must be"):
        kmeans([[0.0, 1.0]], 2)
    with pytest.raises(ValueError, match="dimension"):
        VectorQuantizer(4, 2).init_from_data(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="decay"):
        ema_codebook_update(torch.ones(2), torch.zeros(2, 1), torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), 1.5)
    with pytest.raises(ValueError, match="shapes"):
        ema_codebook_update(torch.ones(3), torch.zeros(2, 1), torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), 0.9)


def test_grid_sequence_round_trip_and_bos_check():
    codes = torch.arange(12).view(2, 2, 3)
    seq = grid_to_sequence(codes, bos=12)
    assert seq.tolist() == [[12, 0, 1, 2, 3, 4, 5], [12, 6, 7, 8, 9, 10, 11]]
    assert torch.equal(sequence_to_grid(seq, (2, 3)), codes)
    with pytest.raises(ValueError, match="bos"):
        grid_to_sequence(codes, bos=5)
    with pytest.raises(ValueError, match="1 \\+ h\\*w"):
        sequence_to_grid(seq, (3, 3))


class _FixedModel(torch.nn.Module):
    """Logits that favour token (last id + 1) mod K, and give the bos id the largest logit of all."""

    def __init__(self, k):
        super().__init__()
        self.k, self.p = k, torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids):
        B, T = ids.shape
        logits = torch.zeros(B, T, self.k + 1)
        nxt = (ids % self.k + 1) % self.k
        logits.scatter_(2, nxt[..., None], 5.0)
        logits[..., self.k] = 50.0                                       # bos: must never be produced
        return logits


def test_sample_token_grid_never_emits_bos_and_top_p_keeps_only_the_favourite():
    model = _FixedModel(5)
    grids = sample_token_grid(model, 3, (2, 2), codebook_size=5, top_p=0.5,
                              generator=torch.Generator().manual_seed(0), batch_size=2)
    # bos = 5 -> first token (5 % 5 + 1) % 5 = 1, then 2, 3, 4
    assert grids.shape == (3, 2, 2) and grids.tolist() == [[[1, 2], [3, 4]]] * 3
    free = sample_token_grid(model, 64, (1, 3), codebook_size=5, temperature=5.0,
                             generator=torch.Generator().manual_seed(0))
    assert int(free.max()) < 5 and len(torch.unique(free)) > 1


def test_generation_flops_on_hand_computed_numbers():
    cached = generation_flops(2, 1, 1, 1, kv_cache=True)
    # dense 24 * 2 tokens; attention 4 * (1 + 2) key pairs; head 2 * 2
    assert cached == {"dense": 48.0, "attention": 12.0, "head": 4.0, "total": 64.0}
    full = generation_flops(2, 1, 1, 1, kv_cache=False)
    # 1 + 2 = 3 processed tokens; 1 + 4 = 5 query-key pairs
    assert full == {"dense": 72.0, "attention": 20.0, "head": 6.0, "total": 98.0}
    big = generation_flops(784, 4, 128, 256)["total"] / generation_flops(49, 4, 128, 129)["total"]
    assert big > 16
    with pytest.raises(ValueError, match="seq_len"):
        generation_flops(0, 1, 1, 1)


def test_sample_token_grid_with_kv_cache_draws_the_same_grids_as_full_recompute():
    from genai_helpers.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=9, block_size=6, n_layer=1, n_head=2, n_embd=16))
    kwargs = dict(codebook_size=8, top_p=0.95, temperature=1.5, batch_size=3)
    cached = sample_token_grid(model, 5, (2, 3), generator=torch.Generator().manual_seed(4), use_cache=True, **kwargs)
    full = sample_token_grid(model, 5, (2, 3), generator=torch.Generator().manual_seed(4), use_cache=False, **kwargs)
    assert cached.shape == (5, 2, 3) and torch.equal(cached, full)
    assert int(cached.max()) < 8 and len(torch.unique(cached)) > 2


def test_reset_dead_codes_restarts_each_dead_code_on_a_different_encoder_output():
    vq = VectorQuantizer(72, 3)
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    counts = torch.zeros(72, dtype=torch.long)
    counts[:8] = 5                                                        # 64 dead codes, 64 encoder outputs
    assert vq.reset_dead_codes(z, counts, generator=torch.Generator().manual_seed(1)) == 64
    moved = vq.codebook.weight.detach()[8:]
    assert len(torch.unique(moved, dim=0)) == 64                          # no two restarted on the same vector
    assert sorted(map(tuple, moved.tolist())) == sorted(map(tuple, z.tolist()))
    vq2 = VectorQuantizer(10, 3)                                          # more dead codes than outputs:
    assert vq2.reset_dead_codes(z[:4], torch.zeros(10), generator=torch.Generator().manual_seed(2)) == 10
    uses = [sum(torch.equal(row, zi) for row in vq2.codebook.weight.detach()) for zi in z[:4]]
    assert sorted(uses) == [2, 2, 3, 3]                                   # reused as evenly as possible
    with pytest.raises(ValueError, match="z_e"):
        vq2.reset_dead_codes(torch.zeros(0, 3), torch.zeros(10))


def _old_sample_token_grid(model, n, grid_size, *, codebook_size, temperature=1.0, top_k=None, top_p=None,
                           generator=None, batch_size=256, use_cache=True):
    """The loop sample_token_grid had before it ran on sampling.generate (kept to pin its draws)."""
    from genai_helpers.sampling import sample_next_token
    h, w = grid_size
    cached = use_cache and hasattr(model, "new_cache") and hasattr(model, "forward_cached")
    model.eval()
    grids = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        ids = torch.full((b, 1), codebook_size, dtype=torch.long)
        cache = model.new_cache(b) if cached else None
        for _ in range(h * w):
            out = model.forward_cached(ids[:, -1:], cache) if cached else model(ids)
            logits = (out[0] if isinstance(out, tuple) else out)[:, -1, :codebook_size].float()
            nxt = sample_next_token(logits, temperature, top_k, top_p, generator=generator)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
        grids.append(ids[:, 1:].reshape(b, h, w))
    return torch.cat(grids)


@pytest.mark.parametrize("use_cache", [True, False])
def test_sample_token_grid_on_the_one_decode_loop_draws_what_its_own_loop_drew(use_cache):
    from genai_helpers.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=9, block_size=7, n_layer=1, n_head=2, n_embd=16))
    kwargs = dict(codebook_size=8, top_k=6, top_p=0.9, temperature=1.3, batch_size=4, use_cache=use_cache)
    new = sample_token_grid(model, 6, (2, 3), generator=torch.Generator().manual_seed(7), **kwargs)
    old = _old_sample_token_grid(model, 6, (2, 3), generator=torch.Generator().manual_seed(7), **kwargs)
    assert torch.equal(new, old)
    plain = _FixedModel(5)                                              # no step_fn: recomputes the prefix
    new = sample_token_grid(plain, 5, (1, 4), codebook_size=5, temperature=3.0, generator=torch.Generator().manual_seed(1))
    old = _old_sample_token_grid(plain, 5, (1, 4), codebook_size=5, temperature=3.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(new, old)


def test_kmeans_equals_scikit_learns_lloyd_from_the_same_start():
    """The same starting rows and the same number of Lloyd rounds give scikit-learn's centroids."""
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 5.0, 5.0]])
    z = (centres[torch.arange(400) % 5] + torch.randn(400, 3, generator=g)).double()
    start_rows = torch.randperm(400, generator=torch.Generator().manual_seed(3))[:5]
    ours = kmeans(z, 5, n_iter=4, generator=torch.Generator().manual_seed(3))
    ref = sklearn_cluster.KMeans(5, init=z[start_rows].numpy(), n_init=1, max_iter=4, tol=0.0,
                                 algorithm="lloyd").fit(z.numpy())
    assert torch.allclose(ours.double(), torch.from_numpy(ref.cluster_centers_), atol=1e-5)
