"""Cutting images into patch tokens and back: the one patchify of the book (chapters 10 and 13).

    from genai_helpers.patches import patchify, unpatchify

    tokens = patchify(images, 4)                        # (B, 3, 32, 32) -> (B, 64, 48)
    images = unpatchify(tokens, 4, grid=(8, 8), channels=3)

Layout (the same in both directions):

- **Patches** are numbered in raster order, row by row: token ``n`` is the patch at grid row
  ``n // cols``, column ``n % cols``; ``N = (H/p)·(W/p)``.
- **Inside a patch** the ``C·p·p`` numbers are ordered ``(channel, row, column)`` by default,
  i.e. ``images[b, :, r·p:(r+1)·p, c·p:(c+1)·p].reshape(-1)``: the order of
  ``F.unfold(images, p, stride=p).transpose(1, 2)`` and of a ``Conv2d(C, d, p, stride=p)`` weight
  flattened to ``(d, C·p·p)``, so a linear patch embedding equals that strided convolution
  (chapter 10 checks both). ``channels_last=True`` orders them ``(row, column, channel)``
  instead, ``images[b, :, r·p:(r+1)·p, c·p:(c+1)·p].permute(1, 2, 0).reshape(-1)``: the layout
  of the reference DiT code (Peebles & Xie), which :class:`genai_helpers.diffusion.dit.DiT`
  keeps so its trained behaviour and chapter 13's by-hand check are unchanged.

The two layouts hold the same numbers in a different order within each token; a model's patch
embedding (and output head) is tied to the layout it was trained with.
"""
from __future__ import annotations

import torch

from ._checks import check_positive_int, check_tensor


def patchify(images: torch.Tensor, patch_size: int, *, channels_last: bool = False) -> torch.Tensor:
    """``(B, C, H, W)`` images -> ``(B, N, C·p·p)`` patch tokens, ``N = (H/p)·(W/p)`` in raster order.

    See the module docstring for the order inside a token (``channels_last``). ``H`` and ``W``
    must be multiples of ``patch_size``.
    """
    check_tensor("images", images, ndim=4)
    check_positive_int("patch_size", patch_size)
    if not isinstance(channels_last, bool):
        raise TypeError(f"channels_last must be a bool, got {type(channels_last).__name__}")
    B, C, H, W = images.shape
    if H % patch_size or W % patch_size:
        raise ValueError(f"patch_size must divide the image height and width ({H}×{W}), got {patch_size}")
    p, gh, gw = patch_size, H // patch_size, W // patch_size
    x = images.reshape(B, C, gh, p, gw, p)
    order = (0, 2, 4, 3, 5, 1) if channels_last else (0, 2, 4, 1, 3, 5)      # (B, gh, gw, [p, p, C] or [C, p, p])
    return x.permute(*order).reshape(B, gh * gw, C * p * p)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int], channels: int = 3, *,
               channels_last: bool = False) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, rows·cols, C·p·p)`` -> ``(B, C, rows·p, cols·p)``.

    ``grid`` is ``(rows, cols)`` of patches; ``channels_last`` must match the one used to patchify.
    """
    check_tensor("patches", patches, ndim=3)
    check_positive_int("patch_size", patch_size)
    check_positive_int("channels", channels)
    if not isinstance(channels_last, bool):
        raise TypeError(f"channels_last must be a bool, got {type(channels_last).__name__}")
    if not (isinstance(grid, (tuple, list)) and len(grid) == 2):
        raise TypeError(f"grid must be a (rows, cols) pair, got {grid!r}")
    gh, gw = (check_positive_int("grid", int(g)) for g in grid)
    B, N, D = patches.shape
    p = patch_size
    if N != gh * gw or D != channels * p * p:
        raise ValueError(f"patches must have shape (B, {gh * gw}, {channels * p * p}) for grid {tuple(grid)}, "
                         f"patch_size {p}, channels {channels}; got {tuple(patches.shape)}")
    if channels_last:
        x = patches.reshape(B, gh, gw, p, p, channels).permute(0, 5, 1, 3, 2, 4)   # (B, C, gh, p, gw, p)
    else:
        x = patches.reshape(B, gh, gw, channels, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, channels, gh * p, gw * p)


__all__ = ["patchify", "unpatchify"]
