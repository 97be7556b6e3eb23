"""Load chapter 16's shipped speech models: the codec, the dual AR TTS model and the recogniser.

``make pretrain-speech`` (:mod:`genai_helpers.speech.pretrain`) writes them to
``genai_helpers/speech/weights/`` with a manifest; these loaders check each file's sha256 against it.
On Colab, where the package may be installed without the weights, they are fetched from the book's
repository; elsewhere a missing file raises ``FileNotFoundError`` that says how to make it.
"""
from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

import torch

from ..checkpoint import file_sha256 as _sha256
from .codec import Codec, CodecConfig
from .tts import DualARTTS, DurationModel, TTSConfig

__all__ = ["WEIGHTS_DIR", "manifest", "history", "load_codec", "load_tts", "load_recognizer"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_ENV = "GENAI_SPEECH_WEIGHTS_DIR"
REPO_RAW = "https://raw.githubusercontent.com/genai-system-design/genai-book/main/genai_helpers/speech/weights"
MANIFEST = "manifest.json"


def _folder(folder=None) -> Path:
    return Path(folder or os.environ.get(WEIGHTS_ENV) or WEIGHTS_DIR)


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"{path} does not exist. Make the speech models with `make pretrain-speech` (about "
                             f"25 minutes on 2 CPU cores), or download {REPO_RAW}/{path.name} into {path.parent} "
                             f"(the loaders do it on Colab, or with download=True).")


def _fetch(folder: Path, name: str, download: bool | None) -> Path:
    path = folder / name
    if download is None:
        download = "google.colab" in sys.modules
    if not path.is_file() and download:
        folder.mkdir(parents=True, exist_ok=True)
        urllib.request.urlretrieve(f"{REPO_RAW}/{name}", path)
    if not path.is_file():
        raise _missing(path)
    return path


def manifest(folder=None, download: bool | None = None) -> dict:
    """The manifest: per stage its config, data, steps, seconds, machine, final loss and sha256."""
    return json.loads(_fetch(_folder(folder), MANIFEST, download).read_text())


def history(stage: str, folder=None, download: bool | None = None) -> list[dict]:
    """The training history of ``stage`` ("codec", "tts" or "asr"): one dict per logged step."""
    if stage not in ("codec", "tts", "asr"):
        raise ValueError(f"stage must be 'codec', 'tts' or 'asr', got {stage!r}")
    return json.loads(_fetch(_folder(folder), f"{stage}_history.json", download).read_text())




def _load(stage: str, module: torch.nn.Module, folder, download, check_hash: bool) -> dict:
    from safetensors.torch import load_file
    folder = _folder(folder)
    entry = manifest(folder, download)["stages"].get(stage)
    if entry is None:
        raise _missing(folder / f"{stage}.safetensors")
    path = _fetch(folder, entry["file"], download)
    if check_hash and _sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match the sha256 in {folder / MANIFEST}: damaged or from another run; "
                         f"re-download it or run `make pretrain-speech`")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
    module.load_state_dict(state)
    module.eval()
    return entry


def load_codec(folder=None, *, download: bool | None = None, check_hash: bool = True) -> Codec:
    """The shipped :class:`~genai_helpers.speech.codec.Codec`, in eval mode on the CPU."""
    entry = manifest(folder, download)["stages"].get("codec")
    if entry is None:
        raise _missing(_folder(folder) / "codec.safetensors")
    codec = Codec(CodecConfig(**entry["config"]))
    _load("codec", codec, folder, download, check_hash)
    return codec


def load_tts(folder=None, *, download: bool | None = None, check_hash: bool = True) -> tuple[DualARTTS, DurationModel]:
    """The shipped dual AR model and its duration model, in eval mode on the CPU."""
    entry = manifest(folder, download)["stages"].get("tts")
    if entry is None:
        raise _missing(_folder(folder) / "tts.safetensors")
    model = DualARTTS(TTSConfig(**entry["config"]))
    _load("tts", model, folder, download, check_hash)
    return model, DurationModel(entry["duration_model"])


def load_recognizer(folder=None, *, download: bool | None = None, check_hash: bool = True):
    """The shipped :class:`~genai_helpers.speech.recognizer.WordRecognizer`, in eval mode on the CPU."""
    from .recognizer import WordRecognizer
    entry = manifest(folder, download)["stages"].get("asr")
    if entry is None:
        raise _missing(_folder(folder) / "asr.safetensors")
    model = WordRecognizer(**entry["config"])
    _load("asr", model, folder, download, check_hash)
    return model
