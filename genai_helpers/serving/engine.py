"""A batched decoding engine over the book's GPT, with one KV-cache *slot* per request (chapter 09).

``model.forward_cached`` assumes every row of a batch has the same length. A server mixes
requests of different lengths that start and finish at different times, so :class:`BatchEngine`
keeps per-slot lengths: a request is prefilled alone (through the model's own ``forward_cached``)
and copied into a free slot; then every decoding step feeds one token per active slot, each at
its own position, and attention masks out the unused tail of every slot. Active slots are kept
packed at the front (a finished request's slot is filled by the last active one), so a step only
touches ``cache[:active]``.

Every position encoding of the book's GPT works: learned positions are added per row, rotary
tables (the book LM's RoPE) are built for each row's own position, and the sinusoidal table is
indexed per row. The engine runs the model's own
blocks (:class:`genai_helpers.models.gpt.Block`), giving each an explicit attention mask and a
slot store in place of a :class:`~genai_helpers.models.gpt.KVCache`: what is written here is only
where each row's new key goes and which keys it may see. Tests check its logits against
``model(...)``. Call ``model.eval()`` first (dropout would otherwise apply, as in ``model``).
"""
from __future__ import annotations


import torch

from .._checks import check_positive_int
from ..positional import rope_cos_sin, sinusoidal_positions

__all__ = ["BatchEngine"]


class _SlotStore:
    """What a GPT block needs from a cache, over the engine's slots: ``update(layer, k, v)`` writes
    each row's new key/value ``(A, H, 1, hd)`` at that row's own position and returns the keys and
    values of the active slots ``(A, H, L, hd)`` (the unused tail is masked by the caller)."""

    def __init__(self, engine: "BatchEngine", pos: torch.Tensor, L: int):
        self.engine, self.pos, self.L = engine, pos, L
        self.rows = torch.arange(pos.numel(), device=pos.device)

    def update(self, layer: int, k_new: torch.Tensor, v_new: torch.Tensor):
        A, e = self.rows.numel(), self.engine
        e.k[layer][self.rows, :, self.pos] = k_new[:, :, 0]
        e.v[layer][self.rows, :, self.pos] = v_new[:, :, 0]
        return e.k[layer][:A, :, :self.L], e.v[layer][:A, :, :self.L]


class BatchEngine:
    """``BatchEngine(model, max_batch, max_len)``: slots ``0..max_batch-1`` of ``max_len`` tokens each.

    ``add(prompt, prefix_cache=None) -> (slot, logits (V,))`` prefills a request into the next free slot;
    ``add_cache(cache) -> slot`` places a request prefilled elsewhere (chunked prefill);
    ``step(tokens (A,)) -> logits (A, V)`` appends one token to each of the ``A`` active slots;
    ``remove(slot)`` frees a slot (the last active slot moves into it; returns its old index or None).
    """

    def __init__(self, model, max_batch: int, max_len: int | None = None):
        cfg = model.config
        if cfg.pos_encoding not in ("learned", "rope", "sinusoidal"):
            raise ValueError(f"BatchEngine supports pos_encoding 'learned', 'rope' or 'sinusoidal', "
                             f"got {cfg.pos_encoding!r}")
        self.model, self.cfg = model, cfg
        self.max_batch = check_positive_int("max_batch", max_batch)
        self.max_len = check_positive_int("max_len", max_len or cfg.block_size)
        if self.max_len > cfg.block_size:
            raise ValueError(f"max_len must be <= block_size={cfg.block_size}, got {self.max_len}")
        p = model.transformer.wte.weight
        shape = (max_batch, cfg.kv_heads, self.max_len, cfg.head_dim)   # the cache keeps the key/value heads
        self.k = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in range(cfg.n_layer)]
        self.lengths = torch.zeros(max_batch, dtype=torch.long, device=p.device)
        self.active = 0
        self.last_cached = self.last_computed = 0        # prompt tokens reused / run by the last add
        self._sin = (sinusoidal_positions(self.max_len, cfg.n_embd, cfg.rope_base).to(p.device, p.dtype)
                     if cfg.pos_encoding == "sinusoidal" else None)

    def _embed(self, tokens: torch.Tensor, pos: torch.Tensor):
        """Embeddings ``(A, 1, C)`` of one new token per row at that row's own position, and the
        rotary tables ``(A, 1, 1, hd)`` (broadcast over heads) when the model uses RoPE."""
        cfg, tr = self.cfg, self.model.transformer
        x, rope = tr.wte(tokens) * cfg.token_scale, None          # as GPT._embed (sinusoidal: sqrt(d) by default)
        if cfg.pos_encoding == "learned":
            x = x + tr.wpe(pos)
        elif cfg.pos_encoding == "sinusoidal":
            x = x + self._sin[pos]
        else:
            cos, sin = rope_cos_sin(pos, cfg.head_dim, cfg.rope_base, dtype=x.dtype)
            rope = (cos[:, None, None, :], sin[:, None, None, :])
        return x[:, None], rope

    @torch.no_grad()
    def add(self, prompt: torch.Tensor, prefix_cache=None) -> tuple[int, torch.Tensor]:
        """Prefill ``prompt`` into the next free slot. With a
        :class:`~genai_helpers.serving.prefix_cache.PrefixKVCache`, the keys and values of its longest
        cached prefix are copied in and the model runs only on the rest (``last_computed`` tokens);
        the prompt's full blocks are then cached for later requests."""
        if self.active >= self.max_batch:
            raise RuntimeError(f"all {self.max_batch} slots are busy")
        prompt = prompt.reshape(-1).to(self.lengths.device)
        T = prompt.numel()
        if not 1 <= T < self.max_len:
            raise ValueError(f"prompt length must be in [1, max_len={self.max_len}), got {T}")
        cache = self.start_cache(prompt, prefix_cache)
        logits = self.model.forward_cached(prompt[cache.length:][None], cache)[0, -1]
        self.last_computed = T - self.last_cached
        if prefix_cache is not None:
            prefix_cache.insert(prompt.tolist(), [k[0] for k in cache.k], [v[0] for v in cache.v])
        return self.add_cache(cache), logits

    def start_cache(self, prompt: torch.Tensor, prefix_cache=None):
        """A one-row KV cache for ``prompt`` holding its longest cached prefix (empty without a
        prefix cache); ``last_cached`` is set to that prefix's length."""
        T = prompt.numel()
        cache = self.model.new_cache(1, max_len=T)
        n = 0
        if prefix_cache is not None:
            n, blocks = prefix_cache.lookup(prompt.tolist())
            if n:
                for layer in range(self.cfg.n_layer):
                    cache.k[layer][0, :, :n] = torch.cat([b[0][layer] for b in blocks], dim=1)
                    cache.v[layer][0, :, :n] = torch.cat([b[1][layer] for b in blocks], dim=1)
                cache.length = n
        self.last_cached = n
        return cache

    def add_cache(self, cache) -> int:
        """Put a request whose prompt is already in ``cache`` (a one-row
        :class:`~genai_helpers.models.gpt.KVCache`, for example filled chunk by chunk) into the next
        free slot; returns the slot."""
        if self.active >= self.max_batch:
            raise RuntimeError(f"all {self.max_batch} slots are busy")
        T = cache.length
        if cache.batch_size != 1 or not 1 <= T < self.max_len:
            raise ValueError(f"cache must hold one row of 1 to {self.max_len - 1} tokens, got "
                             f"{cache.batch_size} rows of {T}")
        slot = self.active
        for layer in range(self.cfg.n_layer):
            self.k[layer][slot, :, :T] = cache.k[layer][0, :, :T]
            self.v[layer][slot, :, :T] = cache.v[layer][0, :, :T]
        self.lengths[slot] = T
        self.active += 1
        return slot

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        A = self.active
        tokens = tokens.reshape(-1).to(self.lengths.device)
        if tokens.numel() != A or A == 0:
            raise ValueError(f"tokens must hold one id per active slot ({A}), got {tokens.numel()}")
        pos = self.lengths[:A]
        if int(pos.max()) >= self.max_len:
            raise RuntimeError(f"a slot is full (max_len={self.max_len})")
        tr = self.model.transformer
        x, rope = self._embed(tokens, pos)                                 # (A, 1, C): one new token per slot
        L = int(pos.max()) + 1
        mask = (torch.arange(L, device=pos.device)[None, :] <= pos[:, None])[:, None, None, :]   # (A, 1, 1, L)
        store = _SlotStore(self, pos, L)
        for layer, block in enumerate(tr.h):
            x = block(x, rope=rope, cache=store, layer=layer, attn_mask=mask)   # the model's own block
        self.lengths[:A] += 1
        return self.model.lm_head(tr.ln_f(x[:, 0]))

    def remove(self, slot: int) -> int | None:
        """Free ``slot``; the last active slot moves into it. Returns the moved slot's old index."""
        if not 0 <= slot < self.active:
            raise ValueError(f"slot must be an active slot in [0, {self.active}), got {slot}")
        last = self.active - 1
        moved = None
        if slot != last:
            n = int(self.lengths[last])
            for layer in range(self.cfg.n_layer):
                self.k[layer][slot, :, :n] = self.k[layer][last, :, :n]
                self.v[layer][slot, :, :n] = self.v[layer][last, :, :n]
            self.lengths[slot] = n
            moved = last
        self.lengths[last] = 0
        self.active -= 1
        return moved
