"""Train chapter 16's speech models once and ship their weights: ``make pretrain-speech``.

Three stages, each skipped when its weights already exist (delete a file to redo its stage):

1. ``codec``  the neural codec (:mod:`genai_helpers.speech.codec`) on the train split's audio;
2. ``tts``    the dual autoregressive model (:mod:`genai_helpers.speech.tts`) on the codec's tokens;
3. ``asr``    the word recogniser (:mod:`genai_helpers.speech.recognizer`), the chapter's yardstick
   for intelligibility, on the same audio (never on anything a model synthesised).

Weights go to ``genai_helpers/speech/weights/`` as fp16 safetensors, written atomically, with
``manifest.json`` (configs, data, steps, seconds, machine, final losses, sha256 of each file) and
the training histories, which chapter 16 plots. About an hour on 2 CPU cores.

    python -m genai_helpers.speech.pretrain [--stage codec|tts|asr|all] [--codec-steps N] [--tts-steps N]
                                            [--asr-steps N]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import torch

from ..checkpoint import write_atomic
from . import codec as codec_mod
from . import data
from .weights import _sha256

__all__ = ["WEIGHTS_DIR", "TRAIN_UTTERANCES", "SEED", "save_fp16", "train_codec_stage", "train_asr_stage", "main"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"
#: Utterances of the train split (``data.make_split``) that every stage trains on.
TRAIN_UTTERANCES = 1500
SEED = 0


def save_fp16(module: torch.nn.Module, path: Path) -> str:
    """fp16 safetensors of ``module``'s floating-point state (integer/bool buffers kept), atomically."""
    from safetensors.torch import save_file
    sd = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
          for k, v in module.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(sd, str(tmp))
    os.replace(tmp, path)
    return _sha256(path)


def _manifest(folder: Path) -> dict:
    p = folder / MANIFEST
    return json.loads(p.read_text()) if p.is_file() else {"name": "speech", "stages": {}}


def _write_manifest(folder: Path, man: dict) -> None:
    write_atomic(folder / MANIFEST, json.dumps(man, indent=1, sort_keys=True))


def _machine() -> dict:
    return {"device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "platform": platform.platform()}


def train_codec_stage(folder: Path, steps: int) -> None:
    utts = data.make_split("train", TRAIN_UTTERANCES, SEED)
    cfg = codec_mod.CodecConfig()
    t0 = time.time()
    model, history = codec_mod.train_codec([u.wave for u in utts], cfg, steps=steps, seed=SEED)
    seconds = time.time() - t0
    folder.mkdir(parents=True, exist_ok=True)
    sha = save_fp16(model, folder / "codec.safetensors")
    write_atomic(folder / "codec_history.json", json.dumps(history))
    man = _manifest(folder)
    man["stages"]["codec"] = {"file": "codec.safetensors", "sha256": sha, "config": dataclasses.asdict(cfg),
                              "steps": steps, "seconds": round(seconds, 1), "machine": _machine(),
                              "data": {"split": "train", "n": TRAIN_UTTERANCES, "seed": SEED,
                                       "voices": list(data.VOICES), "speeds": list(data.SPEEDS)},
                              "final_loss": sum(h["loss"] for h in history[-50:]) / min(50, len(history))}
    _write_manifest(folder, man)
    print(f"codec: {steps} steps in {seconds:.0f} s -> {folder / 'codec.safetensors'}")


def train_asr_stage(folder: Path, steps: int) -> None:
    from . import recognizer
    utts = data.make_split("train", TRAIN_UTTERANCES, SEED)
    t0 = time.time()
    model, history = recognizer.train_recognizer(utts, steps=steps, seed=SEED, progress=False)
    seconds = time.time() - t0
    folder.mkdir(parents=True, exist_ok=True)
    sha = save_fp16(model, folder / "asr.safetensors")
    write_atomic(folder / "asr_history.json", json.dumps(history))
    man = _manifest(folder)
    man["stages"]["asr"] = {"file": "asr.safetensors", "sha256": sha, "config": recognizer.DEFAULT_CONFIG,
                            "steps": steps, "seconds": round(seconds, 1), "machine": _machine(),
                            "data": {"split": "train", "n": TRAIN_UTTERANCES, "seed": SEED},
                            "final_loss": history[-1]["loss"]}
    _write_manifest(folder, man)
    print(f"asr: {steps} steps in {seconds:.0f} s -> {folder / 'asr.safetensors'}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("codec", "tts", "asr", "all"), default="all")
    ap.add_argument("--codec-steps", type=int, default=1500)
    ap.add_argument("--tts-steps", type=int, default=2000)
    ap.add_argument("--asr-steps", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = ap.parse_args(argv)
    if args.stage in ("codec", "all") and not (args.out / "codec.safetensors").is_file():
        train_codec_stage(args.out, args.codec_steps)
    if args.stage in ("tts", "all") and not (args.out / "tts.safetensors").is_file():
        from . import tts
        tts.train_tts_stage(args.out, args.tts_steps)
    if args.stage in ("asr", "all") and not (args.out / "asr.safetensors").is_file():
        train_asr_stage(args.out, args.asr_steps)


if __name__ == "__main__":
    main()
