"""Back-of-envelope numbers for training and serving transformers (chapter 02, §2.11-2.13).

Every function is a formula you can do on paper; chapter 02 checks them against real models:

- :func:`transformer_params` — ``12·L·d²`` per-layer weights plus biases, LayerNorms and
  embeddings; *exact* for ``genai_helpers.models.TransformerLM`` and GPT-2.
- :func:`activation_bytes` — what a training step saves for backward, from a hand count of the
  pre-norm block (16 values of width ``d`` per token per layer, plus the log-softmax of the logits).
- :func:`training_memory` — weights + gradients + optimizer state + activations.
- :func:`inference_memory` — weights + KV cache.
- :func:`training_flops` (``6·P·T``), :func:`chinchilla_tokens` (``≈ 20·P``),
  :func:`training_time` (GPU-days and cost from a table of GPUs).
- :func:`training_flops_with_attention` (``6·P·N`` plus attention's ``12·L·T·d`` per token), which
  chapter 02 checks against ``torch.utils.flop_counter.FlopCounterMode``.
- Scaling-law fits for an IsoFLOP sweep (Hoffmann et al., 2022, approach 2):
  :func:`isoflop_minimum` (a parabola in ``ln(params)`` for one compute budget, its vertex ``N*``)
  and :func:`power_law_fit` (``y = k·x^a`` by least squares in log-log, e.g. ``N* ∝ C^a``).

Assumptions are arguments with defaults, never hidden: mixed-precision Adam keeps 16 bytes per
parameter (2 bf16 weights + 2 bf16 gradients + 4 fp32 master weights + 4 + 4 for Adam's two
moments); model FLOP utilisation (MFU) defaults to 0.4; GPU peak numbers are dense bf16 tensor-core
throughput from the vendor data sheets, and prices are illustrative hourly rates you should replace.
"""
from __future__ import annotations

from dataclasses import dataclass

from ._checks import check_positive_int

__all__ = ["GPU", "GPUS", "ADAM_MIXED_PRECISION_BYTES", "transformer_params", "activation_bytes", "training_memory",
           "kv_cache_bytes", "inference_memory", "training_flops", "chinchilla_tokens", "training_time",
           "gpus_to_hold", "training_flops_with_attention", "isoflop_minimum", "power_law_fit", "fit_scaling_law"]


@dataclass(frozen=True)
class GPU:
    name: str
    peak_tflops_bf16: float      # dense (no sparsity) bf16 tensor-core peak, TFLOP/s
    memory_gb: float             # on-board memory, GB (1e9 bytes)
    usd_per_hour: float          # illustrative rental price; replace with your own


# NVIDIA data sheets: A100 SXM 312 TFLOP/s bf16 dense, 80 GB; H100 SXM 989 TFLOP/s bf16 dense, 80 GB.
GPUS = {
    "A100-80GB": GPU("A100-80GB", 312.0, 80.0, 1.8),
    "H100-SXM": GPU("H100-SXM", 989.0, 80.0, 3.0),
}

ADAM_MIXED_PRECISION_BYTES = 16   # 2 (bf16 weight) + 2 (bf16 grad) + 4 (fp32 master) + 4 + 4 (Adam m, v)


def _positive(name: str, value, *, allow_zero: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def transformer_params(n_layer: int, d_model: int, vocab_size: int, block_size: int = 0, *,
                       d_ff: int | None = None, bias: bool = True, tied_embeddings: bool = True) -> dict[str, int]:
    """Parameter count of a GPT-style decoder, by part; ``"total"`` is the sum.

    Per layer: attention ``4·d²`` (+``4d`` biases), feed-forward ``2·d·d_ff`` (+``d_ff + d``), two
    LayerNorms ``4d``. With ``d_ff = 4d`` that is ``12·d² + 13·d``. Plus token embeddings
    ``vocab·d`` (shared with the output head when ``tied_embeddings``), learned positions
    ``block_size·d`` (0 for sinusoidal/rotary), and the final LayerNorm ``2d``.
    """
    for name, v in (("n_layer", n_layer), ("d_model", d_model), ("vocab_size", vocab_size)):
        check_positive_int(name, v)
    check_positive_int("block_size", block_size, minimum=0)
    d_ff = 4 * d_model if d_ff is None else check_positive_int("d_ff", d_ff)
    d = d_model
    attn = 4 * d * d + (4 * d if bias else 0)
    ffn = 2 * d * d_ff + ((d_ff + d) if bias else 0)
    norms = 4 * d
    per_layer = attn + ffn + norms
    parts = {
        "per_layer": per_layer,
        "layers": n_layer * per_layer,
        "token_embedding": vocab_size * d,
        "position_embedding": block_size * d,
        "final_norm": 2 * d,
        "output_head": 0 if tied_embeddings else vocab_size * d,
    }
    parts["total"] = sum(v for k, v in parts.items() if k != "per_layer")
    return parts


def activation_bytes(batch_size: int, seq_len: int, d_model: int, n_layer: int, vocab_size: int, *,
                     bytes_per_value: float = 4, gradient_checkpointing: bool = False,
                     values_per_layer: int = 16) -> float:
    """Bytes of activations a training step saves for backward (no dropout, fused attention).

    Per token and layer the pre-norm block keeps ``values_per_layer·d`` values (block input, LN
    output, q, k, v, attention output, residual, LN output, 4d before and 4d after GELU = 16d).
    Outside the layers: the final LayerNorm's input and output (2d) and the log-softmax of the
    logits (``vocab`` values, kept in fp32 by autocast). With ``gradient_checkpointing`` a layer
    keeps only its input (``d``); during backward one layer's ``16d`` is recomputed and held
    briefly on top of this. Without fused attention add ``n_head·seq_len`` values per token per
    layer for the attention probabilities.
    """
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len), ("d_model", d_model),
                    ("n_layer", n_layer), ("vocab_size", vocab_size), ("values_per_layer", values_per_layer)):
        check_positive_int(name, v)
    _positive("bytes_per_value", bytes_per_value)
    per_layer = 1 if gradient_checkpointing else values_per_layer
    tokens = batch_size * seq_len
    return tokens * ((n_layer * per_layer + 2) * d_model * bytes_per_value + vocab_size * 4)


def training_memory(n_params: int, *, bytes_per_param: float = ADAM_MIXED_PRECISION_BYTES,
                    activation: float = 0.0) -> dict[str, float]:
    """Training memory in bytes: model state (weights, gradients, optimizer) plus activations.

    ``bytes_per_param`` = 16 for mixed-precision Adam (see module docstring); 16 also for fp32 Adam
    (4 weight + 4 grad + 4 + 4 moments). ``activation`` comes from :func:`activation_bytes`.
    """
    check_positive_int("n_params", n_params)
    _positive("bytes_per_param", bytes_per_param)
    _positive("activation", activation, allow_zero=True)
    state = n_params * bytes_per_param
    return {"model_state": state, "activations": activation, "total": state + activation}


def kv_cache_bytes(batch_size: int, seq_len: int, n_layer: int, d_model: int, *, n_kv_heads: int | None = None,
                   n_heads: int | None = None, bytes_per_value: float = 2) -> float:
    """Bytes of the KV cache: ``2 (K and V) · n_layer · batch · seq · d_kv · bytes``.

    ``d_kv = d_model`` for multi-head attention; with grouped-query attention pass ``n_heads`` and
    ``n_kv_heads`` and ``d_kv = d_model · n_kv_heads / n_heads``.
    """
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len), ("n_layer", n_layer), ("d_model", d_model)):
        check_positive_int(name, v)
    _positive("bytes_per_value", bytes_per_value)
    d_kv = d_model
    if n_kv_heads is not None or n_heads is not None:
        if n_kv_heads is None or n_heads is None:
            raise ValueError("n_kv_heads and n_heads must be given together")
        check_positive_int("n_heads", n_heads)
        check_positive_int("n_kv_heads", n_kv_heads)
        if n_heads % n_kv_heads:
            raise ValueError(f"n_kv_heads must divide n_heads ({n_heads}), got {n_kv_heads}")
        d_kv = d_model * n_kv_heads // n_heads
    return 2 * n_layer * batch_size * seq_len * d_kv * bytes_per_value


def inference_memory(n_params: int, *, bytes_per_param: float = 2, kv_cache: float = 0.0) -> dict[str, float]:
    """Serving memory in bytes: weights (bf16 = 2 bytes/param by default) plus the KV cache."""
    check_positive_int("n_params", n_params)
    _positive("bytes_per_param", bytes_per_param)
    _positive("kv_cache", kv_cache, allow_zero=True)
    weights = n_params * bytes_per_param
    return {"weights": weights, "kv_cache": kv_cache, "total": weights + kv_cache}


def training_flops(n_params: float, n_tokens: float) -> float:
    """``6·P·T``: 2 FLOPs per parameter per token forward, 4 backward (attention's ``T²`` ignored)."""
    _positive("n_params", n_params)
    _positive("n_tokens", n_tokens)
    return 6.0 * n_params * n_tokens


def chinchilla_tokens(n_params: float, tokens_per_param: float = 20.0) -> float:
    """Compute-optimal training tokens, ``≈ 20·P`` (Hoffmann et al., 2022)."""
    _positive("n_params", n_params)
    _positive("tokens_per_param", tokens_per_param)
    return tokens_per_param * n_params


def training_time(flops: float, gpu: str | GPU = "H100-SXM", n_gpus: int = 1, mfu: float = 0.4) -> dict[str, float]:
    """GPU-hours, GPU-days, wall-clock days on ``n_gpus`` and cost in USD for ``flops`` of training.

    Achieved throughput = ``mfu × peak``; ``mfu`` (model FLOP utilisation) is in ``(0, 1]``;
    0.3–0.5 is typical of well-tuned large runs.
    """
    _positive("flops", flops)
    check_positive_int("n_gpus", n_gpus)
    if isinstance(gpu, str):
        if gpu not in GPUS:
            raise ValueError(f"gpu must be one of {sorted(GPUS)} or a GPU, got {gpu!r}")
        gpu = GPUS[gpu]
    if not isinstance(gpu, GPU):
        raise TypeError(f"gpu must be a str or GPU, got {type(gpu).__name__}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    seconds = flops / (gpu.peak_tflops_bf16 * 1e12 * mfu)
    gpu_hours = seconds / 3600
    return {"gpu_hours": gpu_hours, "gpu_days": gpu_hours / 24, "wall_days": gpu_hours / 24 / n_gpus,
            "cost_usd": gpu_hours * gpu.usd_per_hour}


def gpus_to_hold(n_bytes: float, gpu: str | GPU = "H100-SXM") -> int:
    """Fewest GPUs whose memory together holds ``n_bytes`` (no room left for anything else)."""
    import math

    _positive("n_bytes", n_bytes)
    gpu = GPUS[gpu] if isinstance(gpu, str) and gpu in GPUS else gpu
    if not isinstance(gpu, GPU):
        raise ValueError(f"gpu must be one of {sorted(GPUS)} or a GPU, got {gpu!r}")
    return max(1, math.ceil(n_bytes / (gpu.memory_gb * 1e9)))


def training_flops_with_attention(n_params: float, n_tokens: float, n_layer: int, seq_len: int, d_attn: int, *,
                                  causal: bool = False) -> float:
    """Training FLOPs ``6·P·N + 12·L·T·d_attn·N`` for ``N`` tokens in sequences of ``seq_len = T`` (chapter 02).

    ``6·P·N`` counts the matrix multiplies with weights (2 FLOPs per parameter per token forward,
    4 backward), so ``n_params`` should be the weights that multiply activations: every matrix,
    including the output head (tied or not), not the embedding lookup or LayerNorm gains. Attention
    adds two products per layer that hold no parameters, ``QKᵀ`` and ``A·V``: ``2·T·d_attn`` FLOPs
    each per token forward, times three for forward and backward, hence ``12·L·T·d_attn`` per token
    (``12·L·T²·d_attn`` per sequence; Hoffmann et al. 2022, appendix F, count the same). A plain
    matrix multiply computes the masked half of the causal score matrix too; ``causal=True`` halves
    the attention term, counting only the useful half (what ``make pretrain`` budgets with).
    """
    _positive("n_params", n_params)
    _positive("n_tokens", n_tokens)
    for name, v in (("n_layer", n_layer), ("seq_len", seq_len), ("d_attn", d_attn)):
        check_positive_int(name, v)
    attention = 12.0 * n_layer * seq_len * d_attn * n_tokens
    return 6.0 * n_params * n_tokens + (attention / 2 if causal else attention)


def _positive_array(name: str, values, minimum_length: int):
    import numpy as np

    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}") from None
    if arr.ndim != 1 or arr.size < minimum_length:
        raise ValueError(f"{name} must be a 1-d sequence of at least {minimum_length} numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must hold finite numbers > 0")
    return arr


def isoflop_minimum(params, losses) -> dict:
    """The compute-optimal size of one IsoFLOP curve: fit ``loss = a·x² + b·x + c``, ``x = ln(params)``.

    ``params`` and ``losses``: one value per model trained with the same FLOP budget (at least
    three, all > 0). Returns ``params_opt`` (``N* = exp(-b / 2a)``, the vertex), ``loss_opt`` (the
    fitted loss there), ``coefficients`` ``(a, b, c)``, ``inside`` (whether ``N*`` lies within the
    sizes tried: outside, the vertex is an extrapolation) and ``residual_rms`` (0 for three points,
    which a parabola always fits exactly). Raises ``ValueError`` when the fitted curve has no
    minimum (``a <= 0``: the losses do not turn up on either side).
    """
    import numpy as np

    n = _positive_array("params", params, 3)
    y = _positive_array("losses", losses, 3)
    if n.size != y.size:
        raise ValueError(f"params and losses must have the same length, got {n.size} and {y.size}")
    if np.unique(n).size < 3:
        raise ValueError("params must hold at least three different sizes")
    x = np.log(n)
    a, b, c = np.polyfit(x, y, 2)
    if a <= 0:
        raise ValueError(f"the fitted parabola opens downward (a = {a:.3g}): these losses have no minimum in "
                         f"ln(params); the sizes tried do not bracket the optimum")
    x_opt = -b / (2 * a)
    fit = np.polyval((a, b, c), x)
    return {"params_opt": float(np.exp(x_opt)), "loss_opt": float(np.polyval((a, b, c), x_opt)),
            "coefficients": (float(a), float(b), float(c)), "inside": bool(x.min() <= x_opt <= x.max()),
            "residual_rms": float(np.sqrt(np.mean((fit - y) ** 2)))}


def power_law_fit(x, y) -> dict:
    """Least-squares fit of ``y = k·x^a`` in log-log (``ln y = a·ln x + ln k``), e.g. ``N* ∝ C^a``.

    ``x``, ``y``: at least two positive numbers each, same length, two different ``x``. Returns
    ``exponent`` (a), ``coefficient`` (k), ``exponent_stderr`` (the slope's standard error, ``nan``
    with two points: a line through two points has no error estimate) and ``n`` (points used).
    ``k·x**a`` predicts ``y`` at a new ``x``.
    """
    import math

    import numpy as np

    lx = np.log(_positive_array("x", x, 2))
    ly = np.log(_positive_array("y", y, 2))
    if lx.size != ly.size:
        raise ValueError(f"x and y must have the same length, got {lx.size} and {ly.size}")
    if np.unique(lx).size < 2:
        raise ValueError("x must hold at least two different values")
    a, log_k = np.polyfit(lx, ly, 1)
    stderr = math.nan
    if lx.size > 2:
        resid = ly - (a * lx + log_k)
        stderr = float(np.sqrt(np.sum(resid ** 2) / (lx.size - 2) / np.sum((lx - lx.mean()) ** 2)))
    return {"exponent": float(a), "coefficient": float(np.exp(log_k)), "exponent_stderr": stderr, "n": int(lx.size)}


def fit_scaling_law(params, tokens, losses, *, inits: int = 64, steps: int = 400, seed: int = 0) -> dict:
    """Fit Chinchilla's parametric loss ``L(N, D) = E + A / N^alpha + B / D^beta`` (approach 3 of
    Hoffmann et al. 2022) to runs of different sizes ``N`` (``params``) and token counts ``D``.

    Minimises the Huber loss (delta 1e-3) of the log-loss residuals over ``(ln A, ln B, ln E, alpha,
    beta)`` with L-BFGS from ``inits`` starting points on a grid-like random draw (seeded), as the
    paper does, and keeps the best. Needs at least five runs. Returns the five values, ``predict``
    (a function ``(N, D) -> loss``) and ``residual_rms`` (of the log-losses). Unlike an IsoFLOP
    parabola it uses every run, also at budgets whose minimum the sizes tried do not bracket; with
    few runs the exponents are loosely determined, so read them with the residuals.
    """
    import math

    import torch

    n = torch.tensor(_positive_array("params", params, 5), dtype=torch.float64)
    d = torch.tensor(_positive_array("tokens", tokens, 5), dtype=torch.float64)
    y = torch.tensor(_positive_array("losses", losses, 5), dtype=torch.float64)
    if not (n.numel() == d.numel() == y.numel()):
        raise ValueError(f"params, tokens and losses must have the same length, got {n.numel()}, {d.numel()}, {y.numel()}")
    if inits < 1 or steps < 1:
        raise ValueError(f"inits and steps must be >= 1, got {inits} and {steps}")
    ln_n, ln_d, ln_y = n.log(), d.log(), y.log()
    g = torch.Generator().manual_seed(seed)

    def objective(theta):
        a, b, e, alpha, beta = theta
        pred = torch.logsumexp(torch.stack([a - alpha * ln_n, b - beta * ln_d, e.expand_as(ln_n)]), dim=0)
        return torch.nn.functional.huber_loss(pred, ln_y, delta=1e-3, reduction="sum")

    best = None
    for _ in range(inits):
        start = torch.tensor([torch.empty(1).uniform_(0, 25, generator=g).item(),
                              torch.empty(1).uniform_(0, 25, generator=g).item(),
                              torch.empty(1).uniform_(-1, 1.5, generator=g).item(),
                              torch.empty(1).uniform_(0.05, 1.0, generator=g).item(),
                              torch.empty(1).uniform_(0.05, 1.0, generator=g).item()], dtype=torch.float64)
        theta = start.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([theta], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = objective(theta)
            loss.backward()
            return loss

        try:
            opt.step(closure)
        except RuntimeError:
            continue
        with torch.no_grad():
            value = float(objective(theta))
        if math.isfinite(value) and (best is None or value < best[0]):
            best = (value, theta.detach().clone())
    if best is None:
        raise ValueError("the fit did not converge from any starting point")
    a, b, e, alpha, beta = best[1].tolist()
    A, B, E = math.exp(a), math.exp(b), math.exp(e)

    def predict(N, D):
        return E + A / N ** alpha + B / D ** beta

    resid = [math.log(predict(float(ni), float(di))) - math.log(float(yi)) for ni, di, yi in zip(n, d, y)]
    return {"E": E, "A": A, "alpha": alpha, "B": B, "beta": beta, "predict": predict,
            "residual_rms": math.sqrt(sum(r * r for r in resid) / len(resid))}
