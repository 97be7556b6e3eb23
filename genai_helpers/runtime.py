"""Cross-cutting runtime settings: device, seeding, run mode, offline hub.

Every chapter starts with the same three lines (see chapter 01, "Setting up")::

    from genai_helpers import runtime
    device = runtime.get_device()        # CUDA -> MPS -> CPU, or $GENAI_DEVICE
    runtime.seed_everything(0)
    MODE = runtime.run_mode()            # "smoke" (CI, seconds) or "full" (published outputs)

This module is the *one* place where these decisions live, so a reader who wants a chapter on
another device, with another seed, or in the other mode changes one thing.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MODE_ENV", "DEVICE_ENV", "VALID_MODES", "VALID_DEVICES", "get_device", "available_devices",
           "seed_everything", "run_mode", "is_smoke", "pick", "set_offline_hub", "RunInfo", "describe"]

MODE_ENV = "GENAI_MODE"
DEVICE_ENV = "GENAI_DEVICE"
VALID_MODES = ("smoke", "full")
VALID_DEVICES = ("cpu", "cuda", "mps")


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the compute device: CUDA, then Apple MPS, then CPU.

    ``prefer`` (or the ``GENAI_DEVICE`` environment variable) overrides the choice; it must be one
    of ``"cpu"``, ``"cuda"``, ``"mps"`` (optionally with an index, e.g. ``"cuda:1"``) and the
    device must exist, otherwise a ``ValueError`` says which devices are available.
    """
    choice = prefer if prefer is not None else os.environ.get(DEVICE_ENV) or None
    if choice is not None:
        if not isinstance(choice, str):
            raise TypeError(f"prefer must be a str such as 'cpu' or 'cuda', got {type(choice).__name__}")
        kind = choice.split(":")[0].lower()
        if kind not in VALID_DEVICES:
            raise ValueError(f"prefer must be one of {VALID_DEVICES} (optionally 'cuda:N'), got {choice!r}")
        if kind not in available_devices():
            raise ValueError(f"prefer={choice!r} but that device is not available here; available: {available_devices()}")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> tuple[str, ...]:
    """Names of the device kinds usable in this process, best first."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    found.append("cpu")
    return tuple(found)


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices) and return a seeded CPU ``torch.Generator``.

    Call it once at the top of a chapter; pass the returned generator to code that should draw
    from its own stream.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def run_mode() -> str:
    """The smoke/full switch, read from ``$GENAI_MODE`` (default ``"full"``).

    ``smoke`` is what CI runs: tiny configs, seconds per chapter. ``full`` produces the outputs
    the published site shows (minutes on two CPU cores, bigger automatically on a GPU).
    """
    mode = os.environ.get(MODE_ENV, "full").strip().lower()
    if mode not in VALID_MODES:
        raise ValueError(f"${MODE_ENV} must be one of {VALID_MODES}, got {mode!r}")
    return mode


def is_smoke() -> bool:
    """True when running in CI's smoke mode."""
    return run_mode() == "smoke"


def pick(smoke, full, gpu=None):
    """Choose a setting by run mode: ``pick(smoke=50, full=3000, gpu=20000)``.

    ``gpu`` (optional) is used in full mode when a CUDA or MPS device is present, so that a
    reader on Colab gets a bigger run automatically.
    """
    if is_smoke():
        return smoke
    if gpu is not None and get_device().type != "cpu":
        return gpu
    return full


def set_offline_hub(offline: bool = True) -> None:
    """Make Hugging Face hub names fail fast instead of retrying the network for a minute.

    Tests and CI call this; readers online leave it alone so ``from_pretrained('gpt2')`` works.
    """
    value = "1" if offline else "0"
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = value


@dataclass(frozen=True)
class RunInfo:
    """What a chapter prints in its first cell."""

    mode: str
    device: str
    torch_version: str
    package_version: str

    def __str__(self) -> str:  # pragma: no cover - formatting only
        return (f"mode={self.mode}  device={self.device}  torch={self.torch_version}  "
                f"genai_helpers={self.package_version}")


def describe(device: torch.device | None = None) -> RunInfo:
    """Summarise mode, device and versions (printed by every chapter's setup cell)."""
    from . import __version__

    dev = device or get_device()
    name = str(dev)
    if dev.type == "cuda":
        name += f" ({torch.cuda.get_device_name(dev)})"
    return RunInfo(run_mode(), name, torch.__version__, __version__)
