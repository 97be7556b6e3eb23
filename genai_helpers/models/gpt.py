"""A GPT-2-style decoder-only language model with a KV cache (chapter 04; reused in 06 and 09).

    from genai_helpers.models.gpt import GPT, GPTConfig, KVCache

    model = GPT(GPTConfig(vocab_size=5000, block_size=128, n_layer=4, n_head=4, n_embd=128))
    logits, loss = model(idx, targets)                  # idx (B, T) ids -> logits (B, T, V)
    out = model.generate(idx, 20, temperature=0)        # greedy, with a KV cache

Architecture (nanoGPT naming, GPT-2 layout): token embedding (+ learned or sinusoidal position
vectors) -> ``n_layer`` pre-LayerNorm blocks (``ln_1 -> attn.c_attn -> F.scaled_dot_product_attention
-> attn.c_proj``, ``ln_2 -> mlp.c_fc -> GELU(tanh) -> mlp.c_proj``) -> ``ln_f`` -> ``lm_head``
(tied to the token embedding by default). LayerNorm eps is 1e-5, as in GPT-2.

Three position encodings (``GPTConfig.pos_encoding``):

- ``"learned"``: one trained vector per position (GPT-2). Cannot go past ``block_size``.
- ``"sinusoidal"``: the fixed table of :func:`genai_helpers.positional.sinusoidal_positions`,
  added to the token embeddings scaled by sqrt(n_embd) (as in the original transformer, so the
  table does not drown them); defined for any position. ``GPTConfig.embed_scale`` sets the factor
  on the token vectors for any encoding (chapter 04 gives all three the same one to compare them).
- ``"rope"``: rotary position embedding. Queries and keys of every head are rotated by an angle
  proportional to their position (:func:`~genai_helpers.positional.apply_rope`, importable from
  here too), so the score ``q_m · k_n`` depends only on the offset ``m - n``. Nothing is added to
  the embeddings.

Sinusoidal and RoPE models accept sequences longer than ``block_size`` in :meth:`GPT.forward`
(chapter 04 measures how well they extrapolate); :meth:`GPT.generate` always crops the context to
the last ``block_size`` tokens, like nanoGPT.

The KV cache (:class:`KVCache`) stores each layer's keys and values so that generating one more
token costs one token's worth of compute: :meth:`GPT.forward_cached` feeds only the *new* tokens.
Keys are stored after the rotary rotation, so cached and uncached runs give the same logits.

Decoding is the package's one loop and one beam core: :meth:`GPT.generate` runs
:func:`genai_helpers.sampling.generate` over :meth:`GPT.step_fn` (a :class:`GPTStep`, which
feeds the cache and projects only the last position through ``lm_head``), and
:func:`genai_helpers.systems.smart_compose.beam_search_cached` runs :func:`genai_helpers.sampling.beam_search`
over the same step function with its cache-reorder hook. Weights start as GPT-2's
(:func:`genai_helpers.transformer.gpt2_init`). The blocks take an explicit attention mask, so the
serving engine of chapter 09 runs them over its own cache slots.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import sampling
from .._checks import check_positive_int, check_probability, check_tensor
from ..positional import apply_rope, rope_cos_sin, sinusoidal_positions   # RoPE lives in positional; re-exported
from ..transformer import gpt2_init

__all__ = ["POS_ENCODINGS", "ACTIVATIONS", "GPTConfig", "KVCache", "CausalSelfAttention", "MLP", "Block", "GPT",
           "GPTStep", "mha_to_gqa"]

POS_ENCODINGS = ("learned", "sinusoidal", "rope")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
#: GELU variants (``F.gelu``'s ``approximate``): GPT-2 and its checkpoints use the tanh form; the
#: exact erf form is nanoGPT's and BERT's, and about 3x cheaper on CPUs (benchmarks/bench_gpt.py).
ACTIVATIONS = {"gelu_tanh": "tanh", "gelu": "none"}
_HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}


@dataclass
class GPTConfig:
    """Sizes of a :class:`GPT`. ``n_embd`` must be divisible by ``n_head``; for ``"rope"`` and
    ``"sinusoidal"`` the head size / ``n_embd`` must be even."""

    vocab_size: int
    block_size: int = 256            # longest context trained on (and kept by generate)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True                # biases in Linear layers and LayerNorms (GPT-2: True)
    pos_encoding: str = "learned"    # "learned" | "sinusoidal" | "rope"
    tie_weights: bool = True         # lm_head.weight is the token embedding
    rope_base: float = 10000.0       # RoPE (and sinusoidal) frequency base
    activation: str = "gelu_tanh"    # "gelu_tanh" (GPT-2's gelu_new) | "gelu" (exact erf, nanoGPT/BERT)
    n_kv_head: int | None = None     # key/value heads: None = n_head (multi-head); 1 = multi-query; else grouped
    embed_scale: float | None = None # token vectors are multiplied by this; None = sqrt(n_embd) for sinusoidal, else 1

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check_positive_int(name, getattr(self, name))
        check_probability("dropout", self.dropout)
        if not isinstance(self.bias, bool):
            raise TypeError(f"bias must be a bool, got {type(self.bias).__name__}")
        if not isinstance(self.tie_weights, bool):
            raise TypeError(f"tie_weights must be a bool, got {type(self.tie_weights).__name__}")
        if self.pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"pos_encoding must be one of {POS_ENCODINGS}, got {self.pos_encoding!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head must divide n_embd ({self.n_embd}), got n_head={self.n_head}")
        if self.pos_encoding == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rope needs an even head size n_embd/n_head, got {self.n_embd // self.n_head}")
        if self.pos_encoding == "sinusoidal" and self.n_embd % 2:
            raise ValueError(f"sinusoidal positions need an even n_embd, got {self.n_embd}")
        if not isinstance(self.rope_base, (int, float)) or isinstance(self.rope_base, bool) or not self.rope_base > 1:
            raise ValueError(f"rope_base must be a float > 1, got {self.rope_base!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}")
        if self.embed_scale is not None and (not isinstance(self.embed_scale, (int, float))
                                             or isinstance(self.embed_scale, bool) or not self.embed_scale > 0):
            raise ValueError(f"embed_scale must be a number > 0 or None, got {self.embed_scale!r}")
        if self.n_kv_head is not None:
            check_positive_int("n_kv_head", self.n_kv_head)
            if self.n_head % self.n_kv_head:
                raise ValueError(f"n_kv_head must divide n_head={self.n_head}, got n_kv_head={self.n_kv_head}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def token_scale(self) -> float:
        """Factor applied to the token vectors, which is ``embed_scale`` when set, else sqrt(n_embd)
        for ``"sinusoidal"`` (so the [-1, 1] table does not drown them) and 1 otherwise."""
        if self.embed_scale is not None:
            return float(self.embed_scale)
        return math.sqrt(self.n_embd) if self.pos_encoding == "sinusoidal" else 1.0

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads, ``n_kv_head``, or ``n_head`` when it is None (multi-head attention)."""
        return self.n_kv_head or self.n_head


# --------------------------------------------------------------------------------------------
# KV cache
# --------------------------------------------------------------------------------------------
class KVCache:
    """Per-layer keys and values of the tokens seen so far.

    ``k[l]`` and ``v[l]`` are ``(B, n_head, capacity, head_dim)``; the first ``length`` positions
    are filled. With ``max_len`` the buffers are preallocated once; without, they grow by
    concatenation. :meth:`GPT.forward_cached` appends to it.
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, head_dim: int, max_len: int | None = None,
                 device=None, dtype=None):
        check_positive_int("n_layer", n_layer)
        check_positive_int("batch_size", batch_size)
        check_positive_int("n_head", n_head)
        check_positive_int("head_dim", head_dim)
        if max_len is not None:
            check_positive_int("max_len", max_len)
        self.batch_size, self.n_head, self.head_dim, self.max_len = batch_size, n_head, head_dim, max_len
        dtype = dtype or torch.get_default_dtype()
        cap = max_len or 0
        self.k = [torch.zeros(batch_size, n_head, cap, head_dim, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(batch_size, n_head, cap, head_dim, device=device, dtype=dtype) for _ in range(n_layer)]
        self.length = 0

    def reset(self) -> None:
        """Forget every stored token (buffers are kept)."""
        self.length = 0
        if self.max_len is None:
            self.k = [k[:, :, :0] for k in self.k]
            self.v = [v[:, :, :0] for v in self.v]

    def crop(self, length: int) -> None:
        """Keep only the first ``length`` stored tokens (``0 <= length <= self.length``): the cache
        of a prefix of what it held. With ``max_len`` the buffers are kept and later writes
        overwrite the rest."""
        check_positive_int("length", length, minimum=0)
        if length > self.length:
            raise ValueError(f"length must be <= the stored length {self.length}, got {length}")
        self.length = length
        if self.max_len is None:
            self.k = [k[:, :, :length] for k in self.k]
            self.v = [v[:, :, :length] for v in self.v]

    def copy(self, max_len: int | None = None) -> "KVCache":
        """An independent copy (its own buffers): writing to one leaves the other unchanged.
        ``max_len``: preallocate the copy with this capacity (``>= length``) and copy only the
        stored tokens; by default the copy has the original's capacity (or grows, like it)."""
        new = object.__new__(KVCache)
        new.__dict__.update(self.__dict__)
        if max_len is None:
            new.k, new.v = [k.clone() for k in self.k], [v.clone() for v in self.v]
            return new
        check_positive_int("max_len", max_len)
        if max_len < self.length:
            raise ValueError(f"max_len must be >= the stored length {self.length}, got {max_len}")
        n = self.length

        def buffer(t: torch.Tensor) -> torch.Tensor:
            out = t.new_zeros(t.shape[0], t.shape[1], max_len, t.shape[3])
            out[:, :, :n] = t[:, :, :n]
            return out

        new.k, new.v, new.max_len = [buffer(k) for k in self.k], [buffer(v) for v in self.v], max_len
        return new

    def nbytes(self) -> int:
        """Bytes held by the key and value buffers (capacity, not just the filled part)."""
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def update(self, layer: int, k_new: torch.Tensor, v_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``(B, n_head, t, head_dim)`` new keys/values of ``layer`` after the stored ones;
        return all keys/values so far ``(B, n_head, length + t, head_dim)``. The caller advances
        ``length`` once per forward pass (after the last layer)."""
        start, t = self.length, k_new.shape[2]
        if k_new.shape[0] != self.batch_size:
            raise ValueError(f"cache holds batch_size={self.batch_size}, got keys for {k_new.shape[0]} rows")
        if self.max_len is not None:
            if start + t > self.max_len:
                raise ValueError(f"KV cache is full: max_len={self.max_len}, have {start}, adding {t}")
            self.k[layer][:, :, start:start + t] = k_new
            self.v[layer][:, :, start:start + t] = v_new
            return self.k[layer][:, :, :start + t], self.v[layer][:, :, :start + t]
        self.k[layer] = torch.cat([self.k[layer][:, :, :start], k_new], dim=2)
        self.v[layer] = torch.cat([self.v[layer][:, :, :start], v_new], dim=2)
        return self.k[layer], self.v[layer]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` ``(B',)`` of the batch (beam search: which beams survive).
        ``batch_size`` becomes ``len(index)``."""
        check_tensor("index", index, ndim=1)
        self.k = [k.index_select(0, index.to(k.device)) for k in self.k]
        self.v = [v.index_select(0, index.to(v.device)) for v in self.v]
        self.batch_size = int(index.numel())

    def __repr__(self) -> str:
        return (f"KVCache(layers={len(self.k)}, batch={self.batch_size}, length={self.length}, "
                f"max_len={self.max_len}, {self.nbytes() / 2**20:.2f} MiB)")


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with fused ``c_attn`` (q, k, v) and output ``c_proj``.

    With ``config.n_kv_head = G < n_head`` (grouped-query attention; ``G = 1`` is multi-query),
    ``c_attn`` makes ``n_head`` query heads but only ``G`` key and value heads, each shared by
    ``n_head / G`` consecutive query heads; the cache stores the ``G`` heads only.

    ``x`` ``(B, T, C)``; ``rope`` the ``(cos, sin)`` tables ``(T, hd)`` of the new tokens'
    positions; ``cache`` anything with ``update(layer, k, v)``
    returning all keys/values so far (a :class:`KVCache`, or the serving engine's slots).
    ``attn_mask``, when given, is used as is (bool, ``True`` = may attend, broadcastable to
    ``(B, n_head, T, keys)``) instead of the causal mask derived from ``cache.length``: how the
    serving engine attends over slots of different lengths.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim, self.dropout = config.n_head, config.head_dim, config.dropout
        self.n_kv = config.kv_heads
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * self.n_kv * self.head_dim, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None, layer: int = 0, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        kv = self.n_kv * self.head_dim
        q, k, v = self.c_attn(x).split([C, kv, kv], dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)                 # (B, H, T, hd)
        k, v = (t.view(B, T, self.n_kv, self.head_dim).transpose(1, 2) for t in (k, v))   # (B, G, T, hd)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        past = 0
        if cache is not None:
            past = cache.length if attn_mask is None else None
            k, v = cache.update(layer, k, v)                                  # (B, G, past + T, hd)
        if self.n_kv != self.n_head:                                          # each key head serves a group
            k, v = (t.repeat_interleave(self.n_head // self.n_kv, dim=1) for t in (k, v))
        drop = self.dropout if self.training else 0.0
        if attn_mask is not None:                                             # the caller's mask, as is
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
        elif past == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        elif T == 1:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)     # one new token sees everything
        else:                                                                 # new token i sees keys 0..past+i
            allowed = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=drop)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.approximate = ACTIVATIONS[config.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``.

    ``rope``, ``cache``, ``layer`` and ``attn_mask`` go to :class:`CausalSelfAttention`: explicit
    positions and masks, so a caller with its own cache layout (the serving engine of chapter 09)
    runs the block instead of copying it.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, rope=None, cache=None, layer=0, attn_mask=None):
        x = x + self.attn(self.ln_1(x), rope=rope, cache=cache, layer=layer, attn_mask=attn_mask)
        return x + self.mlp(self.ln_2(x))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
class GPT(nn.Module):
    """GPT-2-style language model; see the module docstring."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = c = config
        modules = dict(wte=nn.Embedding(c.vocab_size, c.n_embd), drop=nn.Dropout(c.dropout),
                       h=nn.ModuleList(Block(c) for _ in range(c.n_layer)),
                       ln_f=nn.LayerNorm(c.n_embd, eps=1e-5, bias=c.bias))
        if c.pos_encoding == "learned":
            modules["wpe"] = nn.Embedding(c.block_size, c.n_embd)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        if c.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight
        self._sin_table: torch.Tensor | None = None
        gpt2_init(self, n_layer=c.n_layer)                            # N(0, 0.02²); residual c_proj scaled

    # ---- helpers --------------------------------------------------------------------------
    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of (unique) parameters; ``exclude_embeddings`` drops the token and position
        embeddings (and an untied ``lm_head``)."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_weights:
                n -= self.lm_head.weight.numel()
        return n

    def new_cache(self, batch_size: int, max_len: int | None = None, device=None, dtype=None) -> KVCache:
        """An empty :class:`KVCache` for this model (on the model's device/dtype by default)."""
        p = self.transformer.wte.weight
        return KVCache(self.config.n_layer, batch_size, self.config.kv_heads, self.config.head_dim, max_len,
                       device=device or p.device, dtype=dtype or p.dtype)

    def _check_idx(self, idx) -> torch.Tensor:
        check_tensor("idx", idx, ndim=2)
        if idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"idx must hold integer token ids, got {idx.dtype}")
        if idx.shape[1] == 0:
            raise ValueError("idx must contain at least one token per row, got shape (B, 0)")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise ValueError(f"idx must be ids in [0, vocab_size={self.config.vocab_size}), got range "
                             f"[{int(idx.min())}, {int(idx.max())}]")
        return idx

    def _embed(self, idx: torch.Tensor, offset: int):
        """Token (+ position) embeddings of ``idx`` at positions ``offset..offset+T``; RoPE tables."""
        c, T = self.config, idx.shape[1]
        x = self.transformer.wte(idx)
        if c.token_scale != 1.0:
            x = x * c.token_scale
        rope = None
        if c.pos_encoding == "learned":
            if offset + T > c.block_size:
                raise ValueError(f"learned positions stop at block_size={c.block_size}; got positions up to "
                                 f"{offset + T} (sinusoidal and rope models accept longer inputs)")
            x = x + self.transformer.wpe(torch.arange(offset, offset + T, device=idx.device))
        elif c.pos_encoding == "sinusoidal":
            need = offset + T
            if self._sin_table is None or self._sin_table.shape[0] < need or self._sin_table.device != idx.device:
                size = max(need, 2 * c.block_size)
                self._sin_table = sinusoidal_positions(size, c.n_embd, c.rope_base).to(idx.device)
            # Token vectors were scaled above (by default sqrt(n_embd), Vaswani et al. 2017, sec. 3.4):
            # otherwise the [-1, 1] table drowns token embeddings initialised with std 0.02.
            x = x + self._sin_table[offset:offset + T].to(x.dtype)
        else:
            pos = torch.arange(offset, offset + T, device=idx.device)
            rope = rope_cos_sin(pos, c.head_dim, c.rope_base, dtype=x.dtype)
        return self.transformer.drop(x), rope

    # ---- forward passes -------------------------------------------------------------------
    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """``idx`` ``(B, T)`` ids -> ``(logits (B, T, V), loss or None)``.

        ``targets`` ``(B, T)`` ids (``-100`` = ignored) gives the mean next-token cross-entropy
        (nats). Learned positions need ``T <= block_size``; the other two accept any ``T``.
        """
        self._check_idx(idx)
        logits = self.lm_head(self._hidden(idx))
        loss = None
        if targets is not None:
            check_tensor("targets", targets, ndim=2)
            if targets.shape != idx.shape:
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1).long(),
                                   ignore_index=-100)
        return logits, loss

    def forward_cached(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feed only the NEW tokens ``idx`` ``(B, t)``; their keys/values are appended to ``cache``.

        Returns logits ``(B, t, V)``, equal (to float rounding) to the last ``t`` positions of
        ``forward`` on the whole sequence. ``cache.length`` grows by ``t``.
        """
        self._check_idx(idx)
        self._check_cache(cache)
        return self.lm_head(self._hidden(idx, cache))

    def _check_cache(self, cache) -> KVCache:
        if not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache (model.new_cache(...)), got {type(cache).__name__}")
        if len(cache.k) != self.config.n_layer or cache.n_head != self.config.kv_heads or cache.head_dim != self.config.head_dim:
            raise ValueError("cache was made for a different model shape (use model.new_cache)")
        return cache

    def _hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Embeddings -> every block -> ``ln_f``: final hidden states ``(B, T, n_embd)`` of ``idx``
        (at positions ``cache.length..`` and appended to ``cache`` when one is given)."""
        x, rope = self._embed(idx, 0 if cache is None else cache.length)
        for i, block in enumerate(self.transformer.h):
            x = block(x, rope=rope, cache=cache, layer=i)
        if cache is not None:
            cache.length += idx.shape[1]
        return self.transformer.ln_f(x)

    def next_token_logits(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits ``(B, V)`` of the token after ``idx`` ``(B, T)``: only the last position goes
        through ``lm_head`` (a ``V x n_embd`` matmul per position, the largest in a small model).

        With ``cache``, ``idx`` are the NEW tokens, as in :meth:`forward_cached`.
        """
        self._check_idx(idx)
        if cache is not None:
            self._check_cache(cache)
        return self.lm_head(self._hidden(idx, cache)[:, -1])

    @torch.no_grad()
    def attention_weights(self, idx: torch.Tensor) -> torch.Tensor:
        """Softmax attention probabilities of every layer and head on ``idx`` ``(B, T)``:
        ``(n_layer, B, n_head, T, T)``, row ``i`` of a head = where query ``i`` looks (rows sum to 1,
        the upper triangle is 0). Computed as the forward pass computes them: ``ln_1 -> c_attn``,
        RoPE on ``q`` and ``k``, the causal mask, scale ``1/sqrt(head_dim)``. Runs in eval mode
        (the previous mode is restored), without gradients. Chapter 01 reads the heads with it.
        """
        self._check_idx(idx)
        was_training = self.training
        self.eval()
        try:
            B, T = idx.shape
            C, H, hd, G = self.config.n_embd, self.config.n_head, self.config.head_dim, self.config.kv_heads
            x, rope = self._embed(idx, 0)
            allowed = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
            maps = []
            for i, block in enumerate(self.transformer.h):
                q, k, _ = block.attn.c_attn(block.ln_1(x)).split([C, G * hd, G * hd], dim=2)
                q = q.view(B, T, H, hd).transpose(1, 2)                                   # (B, H, T, hd)
                k = k.view(B, T, G, hd).transpose(1, 2).repeat_interleave(H // G, dim=1)
                if rope is not None:
                    q, k = apply_rope(q, *rope), apply_rope(k, *rope)
                scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)                        # (B, H, T, T)
                maps.append(torch.softmax(scores.float().masked_fill(~allowed, float("-inf")), dim=-1))
                x = block(x, rope=rope, layer=i)
            return torch.stack(maps)                                                      # (L, B, H, T, T)
        finally:
            self.train(was_training)

    def step_fn(self, batch_size: int, use_cache: bool = True, max_len: int | None = None) -> "GPTStep":
        """A :class:`GPTStep` over this model: the step function that :meth:`generate`,
        :func:`genai_helpers.sampling.beam_search` and Smart Compose's cached beam search run."""
        return GPTStep(self, batch_size, use_cache=use_cache, max_len=max_len)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, repetition_penalty: float = 1.0, use_cache: bool = True,
                 eos_token_id: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Append up to ``max_new_tokens`` tokens to ``idx`` ``(B, T)``; returns ``(B, T + new)``.

        The loop is :func:`genai_helpers.sampling.generate` over :meth:`step_fn`: each step draws
        with :func:`~genai_helpers.sampling.sample_next_token` (repetition penalty -> temperature
        -> top-k -> top-p; ``temperature=0`` is greedy). The context is cropped to the last
        ``block_size`` tokens. ``use_cache=True`` feeds one token per step through the KV cache
        (when the window slides past ``block_size`` the cache is rebuilt from the cropped window,
        so both paths see the same context and pick the same tokens); ``use_cache=False``
        recomputes the context every step but projects only its last position through
        ``lm_head``. Rows that produced ``eos_token_id`` keep emitting it; generation stops when
        all rows have. Runs in eval mode (the previous mode is restored).
        """
        self._check_idx(idx)
        check_positive_int("max_new_tokens", max_new_tokens, minimum=0)
        if eos_token_id is not None:
            check_positive_int("eos_token_id", eos_token_id, minimum=0)
        if not isinstance(use_cache, bool):
            raise TypeError(f"use_cache must be a bool, got {type(use_cache).__name__}")
        was_training = self.training
        self.eval()
        try:
            return sampling.generate(self.step_fn(idx.shape[0], use_cache=use_cache), idx, max_new_tokens,
                                     eos_id=eos_token_id, generator=generator, temperature=temperature, top_k=top_k,
                                     top_p=top_p, repetition_penalty=repetition_penalty)
        finally:
            self.train(was_training)

    # ---- Hugging Face conversion ----------------------------------------------------------
    _TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")

    @classmethod
    def from_hf_gpt2(cls, hf_model) -> "GPT":
        """Copy a ``transformers.GPT2LMHeadModel`` into a :class:`GPT` (learned positions).

        GPT-2's ``Conv1D`` stores weights as ``(in, out)``; ``nn.Linear`` as ``(out, in)``, so those
        four matrices are transposed. Logits agree to about 1e-5.
        """
        hf_cfg = getattr(hf_model, "config", None)
        if hf_cfg is None or getattr(hf_cfg, "model_type", None) != "gpt2":
            raise TypeError(f"hf_model must be a transformers GPT2LMHeadModel, got {type(hf_model).__name__}")
        act = getattr(hf_cfg, "activation_function", "gelu_new")
        if act not in _HF_ACTIVATIONS:
            raise ValueError(f"only GELU GPT-2 models convert ({sorted(_HF_ACTIVATIONS)}); activation_function={act!r}")
        if getattr(hf_cfg, "scale_attn_by_inverse_layer_idx", False) or getattr(hf_cfg, "reorder_and_upcast_attn", False):
            raise ValueError("scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported")
        n_inner = getattr(hf_cfg, "n_inner", None)
        if n_inner not in (None, 4 * hf_cfg.n_embd):
            raise ValueError(f"only n_inner = 4 * n_embd is supported, got {n_inner}")
        cfg = GPTConfig(vocab_size=hf_cfg.vocab_size, block_size=hf_cfg.n_positions, n_layer=hf_cfg.n_layer,
                        n_head=hf_cfg.n_head, n_embd=hf_cfg.n_embd, dropout=0.0, bias=True, pos_encoding="learned",
                        tie_weights=bool(getattr(hf_cfg, "tie_word_embeddings", True)),
                        activation=_HF_ACTIVATIONS[act])
        model = cls(cfg)
        sd_hf = hf_model.state_dict()
        own = model.state_dict()
        with torch.no_grad():
            for name, tensor in own.items():
                src = sd_hf[name]
                if name.endswith(cls._TRANSPOSED):
                    src = src.t()
                if src.shape != tensor.shape:
                    raise ValueError(f"shape mismatch for {name}: {tuple(src.shape)} vs {tuple(tensor.shape)}")
                tensor.copy_(src)
        return model

    def to_hf_gpt2(self):
        """The same weights as a ``transformers.GPT2LMHeadModel`` (learned positions, bias=True only)."""
        from transformers import GPT2Config, GPT2LMHeadModel

        c = self.config
        if c.pos_encoding != "learned" or not c.bias or c.kv_heads != c.n_head:
            raise ValueError(f"to_hf_gpt2 needs pos_encoding='learned', bias=True and multi-head attention, got "
                             f"pos_encoding={c.pos_encoding!r}, bias={c.bias}, n_kv_head={c.n_kv_head}")
        hf_cfg = GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
                            n_head=c.n_head,
                            activation_function="gelu_new" if c.activation == "gelu_tanh" else "gelu", resid_pdrop=c.dropout,
                            embd_pdrop=c.dropout, attn_pdrop=c.dropout, layer_norm_epsilon=1e-5,
                            tie_word_embeddings=c.tie_weights, bos_token_id=None, eos_token_id=None)
        hf = GPT2LMHeadModel(hf_cfg)
        sd = {}
        for name, tensor in self.state_dict().items():
            sd[name] = tensor.t().contiguous() if name.endswith(self._TRANSPOSED) else tensor.clone()
        missing, unexpected = hf.load_state_dict(sd, strict=False)
        missing = [m for m in missing if not m.endswith(".attn.bias") and not m.endswith(".attn.masked_bias")]
        if missing or unexpected:
            raise RuntimeError(f"conversion failed: missing {missing}, unexpected {unexpected}")
        return hf.eval()

    def to_hf_neox(self):
        """The same weights as a ``transformers.GPTNeoXForCausalLM`` (RoPE, multi-head attention).

        GPT-NeoX is the Hugging Face layout closest to a RoPE GPT: rotate-half rotary embeddings on
        the whole head (``partial_rotary_factor=1``), sequential residuals
        (``use_parallel_residual=False``), LayerNorm eps 1e-5. Three differences are bridged: NeoX
        fuses q, k, v per head (``[q_h, k_h, v_h]`` for each head h; ours is ``[q | k | v]``), so
        ``c_attn``'s rows are regrouped; its MLP and LayerNorms always have biases, which are set to
        zero when ``bias=False``; its ``lm_head`` is a copy of the tied embedding. Logits agree to
        about 1e-6 (the rotary tables differ in the last float bits).
        """
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        c = self.config
        if c.pos_encoding != "rope" or c.kv_heads != c.n_head or c.token_scale != 1.0:
            raise ValueError(f"to_hf_neox needs pos_encoding='rope', multi-head attention and embed_scale 1, got "
                             f"pos_encoding={c.pos_encoding!r}, n_kv_head={c.n_kv_head}, embed_scale={c.embed_scale}")
        act = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}[c.activation]
        hf_cfg = GPTNeoXConfig(vocab_size=c.vocab_size, hidden_size=c.n_embd, num_hidden_layers=c.n_layer,
                               num_attention_heads=c.n_head, intermediate_size=4 * c.n_embd, hidden_act=act,
                               max_position_embeddings=c.block_size, layer_norm_eps=1e-5,
                               use_parallel_residual=False, attention_bias=c.bias, tie_word_embeddings=False,
                               rotary_pct=1.0, rotary_emb_base=float(c.rope_base), hidden_dropout=0.0,
                               attention_dropout=0.0, bos_token_id=None, eos_token_id=None, pad_token_id=None)
        hf = GPTNeoXForCausalLM(hf_cfg)
        hd, H, C = c.head_dim, c.n_head, c.n_embd

        def per_head(t: torch.Tensor) -> torch.Tensor:       # [q | k | v] rows -> [q_h, k_h, v_h] per head
            return t.reshape(3, H, hd, *t.shape[1:]).transpose(0, 1).reshape(3 * C, *t.shape[1:])

        src = self.state_dict()
        dst = hf.state_dict()
        new = {"gpt_neox.embed_in.weight": src["transformer.wte.weight"],
               "lm_head.weight": src["lm_head.weight"] if "lm_head.weight" in src else src["transformer.wte.weight"]}
        pairs = {"input_layernorm": "ln_1", "post_attention_layernorm": "ln_2", "attention.dense": "attn.c_proj",
                 "mlp.dense_h_to_4h": "mlp.c_fc", "mlp.dense_4h_to_h": "mlp.c_proj"}
        for i in range(c.n_layer):
            ours, theirs = f"transformer.h.{i}.", f"gpt_neox.layers.{i}."
            new[theirs + "attention.query_key_value.weight"] = per_head(src[ours + "attn.c_attn.weight"])
            if c.bias:
                new[theirs + "attention.query_key_value.bias"] = per_head(src[ours + "attn.c_attn.bias"])
            for hf_name, our_name in pairs.items():
                for kind in ("weight", "bias"):
                    key = theirs + f"{hf_name}.{kind}"
                    if key in dst:
                        new[key] = src.get(ours + f"{our_name}.{kind}", torch.zeros_like(dst[key]))
        for kind in ("weight", "bias"):
            key = f"gpt_neox.final_layer_norm.{kind}"
            new[key] = src.get(f"transformer.ln_f.{kind}", torch.zeros_like(dst[key]))
        missing = [k for k in dst if k not in new]
        if missing:
            raise RuntimeError(f"conversion failed: no source for {missing}")
        for k, v in new.items():
            if v.shape != dst[k].shape:
                raise RuntimeError(f"conversion failed: {k} has shape {tuple(v.shape)}, expected {tuple(dst[k].shape)}")
        hf.load_state_dict({k: v.detach().clone() for k, v in new.items()}, strict=True)
        return hf.to(self.transformer.wte.weight.device).eval()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items() if not (k == "n_kv_head" and v is None))



def mha_to_gqa(model: GPT, n_kv_head: int) -> GPT:
    """A copy of multi-head ``model`` with ``n_kv_head`` key/value heads (grouped-query attention),
    initialised as in Ainslie et al. (2023): each group's key and value projections are the mean of
    its ``n_head / n_kv_head`` heads' projections; everything else is copied. The copy is close to
    the original, not equal to it: a short fine-tune ("uptraining") recovers the rest."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a GPT, got {type(model).__name__}")
    c = model.config
    if c.kv_heads != c.n_head:
        raise ValueError(f"model must use multi-head attention (n_kv_head None or {c.n_head}), got {c.n_kv_head}")
    new_cfg = GPTConfig(**{**asdict(c), "n_kv_head": n_kv_head})          # validates n_kv_head
    out = GPT(new_cfg).to(device=model.transformer.wte.weight.device, dtype=model.transformer.wte.weight.dtype)
    src = model.state_dict()
    G, H, hd, C = new_cfg.kv_heads, c.n_head, c.head_dim, c.n_embd

    def pool(t: torch.Tensor) -> torch.Tensor:        # rows of H heads (H*hd, ...) -> rows of G heads (G*hd, ...)
        return t.reshape(G, H // G, hd, *t.shape[1:]).mean(1).reshape(G * hd, *t.shape[1:])

    with torch.no_grad():
        for name, tensor in out.state_dict().items():
            if name.endswith("attn.c_attn.weight") or name.endswith("attn.c_attn.bias"):
                q, k, v = src[name].split(C, dim=0)
                tensor.copy_(torch.cat([q, pool(k), pool(v)], dim=0))
            else:
                tensor.copy_(src[name])
    return out.train(model.training)

# --------------------------------------------------------------------------------------------
# Step function for the decode loop and beam search
# --------------------------------------------------------------------------------------------
class GPTStep:
    """``step(ids (B, T)) -> next-token logits (B, V)`` (float32) over a :class:`GPT`.

    The step function of :func:`genai_helpers.sampling.generate` and
    :func:`genai_helpers.sampling.beam_search` (``reorder=step.reorder``). The context is cropped
    to the last ``block_size`` tokens. With ``use_cache`` each call feeds only the tokens the KV
    cache has not seen (so every call must extend the previous call's sequences, as the decode
    loop and beam search do); when the window slides past ``block_size`` the cache is rebuilt from
    the cropped window. Without, each call recomputes the cropped context. Either way only the
    last position goes through ``lm_head``. :meth:`reorder` keeps rows ``index`` of the cache
    (beam search: the surviving beams' parents). Runs under ``torch.no_grad``; the caller sets
    eval mode.

    ``cache``: start from a :class:`KVCache` that already holds the first ``cache.length`` tokens
    of the sequences (Smart Compose keeps the typed prefix's cache between keystrokes); the first
    call must then bring at least one token more. The step writes into it.
    """

    def __init__(self, model: GPT, batch_size: int, *, use_cache: bool = True, max_len: int | None = None,
                 cache: KVCache | None = None):
        if not isinstance(model, GPT):
            raise TypeError(f"model must be a GPT, got {type(model).__name__}")
        if not isinstance(use_cache, bool):
            raise TypeError(f"use_cache must be a bool, got {type(use_cache).__name__}")
        self.model = model
        if cache is not None:
            if not use_cache:
                raise ValueError("cache given with use_cache=False")
            model._check_cache(cache)
            if cache.batch_size != batch_size:
                raise ValueError(f"cache holds batch_size={cache.batch_size}, expected batch_size={batch_size}")
            self.cache = cache
        else:
            self.cache = model.new_cache(batch_size, max_len=max_len) if use_cache else None
        self.fed = 0 if self.cache is None else self.cache.length   # tokens of the sequences the cache holds

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        bs = self.model.config.block_size
        if self.cache is None:
            return self.model.next_token_logits(ids[:, -bs:]).float()
        if ids.shape[1] > bs:                          # window slides: rebuild the cache from the crop
            self.cache.reset()
            logits = self.model.next_token_logits(ids[:, -bs:], self.cache)
        else:
            logits = self.model.next_token_logits(ids[:, self.fed:], self.cache)
        self.fed = ids.shape[1]
        return logits.float()

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` ``(B',)`` of the cache (a no-op without one)."""
        if self.cache is not None:
            self.cache.reorder(index)
