"""Quantisation for inference: bf16, int8 and int4 weights (chapter 09).

Three ways to make a trained model smaller, each measured in the chapter for memory (bytes of
its saved state), speed and perplexity change:

- :func:`to_bf16` — every weight and activation in bfloat16 (8-bit exponent, 7-bit mantissa).
- :func:`quantize_int8_dynamic` — PyTorch's dynamic quantisation: int8 weights, activations
  quantised on the fly per batch, int8 matmuls (``torch.ao.quantization.quantize_dynamic``).
- :func:`quantize_weights` with ``bits=8`` (per-output-channel scales) or ``bits=4`` (one scale per
  group of ``group_size`` input columns, two 4-bit values packed in a byte) — *weight-only*:
  activations stay float and weights are dequantised for the matmul. This is what LLM serving
  uses most (GPTQ/AWQ-style formats), because memory bandwidth, not arithmetic, limits decoding.

Symmetric rounding: ``q = round(w / s)`` clipped to ``[-(2^(b-1)), 2^(b-1) - 1]`` with
``s = max|w| / (2^(b-1) - 1)`` over the channel or group, and ``w ≈ q * s``.
"""
from __future__ import annotations

import copy
import io
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int

__all__ = ["state_bytes", "to_bf16", "quantize_int8_dynamic", "quantize_tensor", "dequantize", "pack_int4",
           "unpack_int4", "Int8WeightOnlyLinear", "Int4WeightOnlyLinear", "quantize_weights", "quantization_error"]


def state_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` — the model's size on disk and, near enough, in
    memory. Works for float, dynamically quantised and weight-only quantised models alike."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def to_bf16(model: nn.Module) -> nn.Module:
    """A bfloat16 copy of ``model`` (the original is left untouched)."""
    return copy.deepcopy(model).to(torch.bfloat16)


def quantize_int8_dynamic(model: nn.Module) -> nn.Module:
    """An int8 dynamically quantised copy: every ``nn.Linear`` becomes a quantised linear with int8
    weights (per-tensor scale) and activations quantised per batch at run time. CPU only.

    ``torch.ao.quantization`` is deprecated in recent PyTorch (it moves to ``torchao``) but still works;
    its deprecation warnings are silenced here.
    """
    from torch.ao.quantization import quantize_dynamic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model).float().cpu(), {nn.Linear}, dtype=torch.qint8)


def quantize_tensor(w: torch.Tensor, bits: int, group_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantisation of a 2-D weight ``(out, in)``.

    Returns integer codes ``q`` (int8 tensor of the same shape, values in ``[-2^(b-1), 2^(b-1)-1]``)
    and ``scales``: shape ``(out,)`` per output channel when ``group_size`` is None, else
    ``(out, in // group_size)`` — one per group of input columns. ``dequantize(q, scales)`` ≈ ``w``.
    """
    if bits not in (2, 3, 4, 8):
        raise ValueError(f"bits must be one of 2, 3, 4, 8, got {bits}")
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D (out, in), got shape {tuple(w.shape)}")
    qmax = 2 ** (bits - 1) - 1
    w = w.detach().float()
    if group_size is None:
        scales = w.abs().amax(dim=1).clamp(min=1e-12) / qmax
        q = torch.round(w / scales[:, None]).clamp(-qmax - 1, qmax)
    else:
        check_positive_int("group_size", group_size)
        if w.shape[1] % group_size:
            raise ValueError(f"group_size must divide the input width {w.shape[1]}, got {group_size}")
        g = w.reshape(w.shape[0], -1, group_size)
        scales = g.abs().amax(dim=2).clamp(min=1e-12) / qmax
        q = torch.round(g / scales[..., None]).clamp(-qmax - 1, qmax).reshape_as(w)
    return q.to(torch.int8), scales


def dequantize(q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Float weights from codes and scales (see :func:`quantize_tensor`)."""
    if scales.ndim == 1:
        return q.float() * scales[:, None]
    group = q.shape[1] // scales.shape[1]
    return (q.float().reshape(q.shape[0], -1, group) * scales[..., None]).reshape(q.shape)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Two signed 4-bit codes per byte: ``(out, in)`` int8 in [-8, 7] -> ``(out, in // 2)`` uint8."""
    u = (q.to(torch.int16) + 8).to(torch.uint8)
    return u[:, 0::2] | (u[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: ``(out, in // 2)`` uint8 -> ``(out, in)`` int8 in [-8, 7]."""
    lo = (packed & 0x0F).to(torch.int8) - 8
    hi = (packed >> 4).to(torch.int8) - 8
    return torch.stack([lo, hi], dim=-1).reshape(packed.shape[0], -1)


class Int8WeightOnlyLinear(nn.Module):
    """``nn.Linear`` with int8 weights and one float scale per output channel; activations stay
    float. Uses PyTorch's CPU kernel ``torch._weight_int8pack_mm`` when present, else dequantises."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        q, s = quantize_tensor(linear.weight, 8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("qweight", q)
        self.register_buffer("scales", s.to(torch.float32))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()
        if x2.device.type == "cpu" and hasattr(torch, "_weight_int8pack_mm"):
            y = torch._weight_int8pack_mm(x2.contiguous(), self.qweight, self.scales)
        else:
            y = x2 @ dequantize(self.qweight, self.scales).T
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)


class Int4WeightOnlyLinear(nn.Module):
    """``nn.Linear`` with 4-bit weights packed two per byte and a float scale per group of
    ``group_size`` input columns. The forward unpacks and dequantises, then multiplies in float:
    a quarter of the weight memory of float32... but not faster on a CPU without an int4 kernel."""

    def __init__(self, linear: nn.Linear, group_size: int = 32):
        super().__init__()
        q, s = quantize_tensor(linear.weight, 4, group_size)
        if linear.in_features % 2:
            raise ValueError(f"int4 packing needs an even input width, got {linear.in_features}")
        self.in_features, self.out_features, self.group_size = linear.in_features, linear.out_features, group_size
        self.register_buffer("packed", pack_int4(q))
        self.register_buffer("scales", s.to(torch.float16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def weight_float(self) -> torch.Tensor:
        return dequantize(unpack_int4(self.packed), self.scales.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.float(), self.weight_float(), self.bias).to(x.dtype)


def quantize_weights(model: nn.Module, bits: int = 8, *, group_size: int = 32, skip: tuple[str, ...] = ()) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers hold int8 (``bits=8``, per channel) or packed
    int4 (``bits=4``, per group of ``group_size``) weights. Modules whose qualified name contains a
    string in ``skip`` stay float. A weight *tied* to an embedding (GPT's ``lm_head``) is quantised as
    a linear layer; the embedding keeps its float copy, so ties are broken in the copy."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    model = copy.deepcopy(model).float()
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and not any(s in full for s in skip):
                new = Int8WeightOnlyLinear(child) if bits == 8 else Int4WeightOnlyLinear(child, group_size)
                setattr(module, child_name, new)
    return model


def quantization_error(w: torch.Tensor, bits: int, group_size: int | None = None) -> float:
    """Relative Frobenius error ``||w - deq(q(w))|| / ||w||`` of :func:`quantize_tensor`."""
    q, s = quantize_tensor(w, bits, group_size)
    return float((w.float() - dequantize(q, s)).norm() / w.float().norm())
