"""Checkpoints as a single ``.safetensors`` file, written atomically.

One file holds the model weights, the optimizer and scheduler state, the RNG states and a JSON
blob of training metadata (step, history, ...). It is written to a temporary file in the same
folder, flushed to disk and renamed over the target, so a run killed mid-write never leaves a
half-written checkpoint behind. Loading it back and continuing gives the same result as never
stopping (``tests/test_training.py`` checks this).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

__all__ = ["save_checkpoint", "load_checkpoint", "write_atomic", "file_sha256"]

_META_KEY = "genai_helpers"


def _dedupe(prefix: str, tensors: dict[str, torch.Tensor], out: dict, aliases: dict) -> None:
    """Copy tensors into ``out`` under ``prefix``; tensors sharing storage (tied weights) once."""
    seen: dict[tuple[int, int, tuple], str] = {}
    for name, t in tensors.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)) if t.numel() else None
        full = prefix + name
        if key is not None and key in seen:
            aliases[full] = seen[key]
            continue
        if key is not None:
            seen[key] = full
        out[full] = t.detach().to("cpu").contiguous().clone()


def _split_optimizer(state: dict) -> tuple[dict, dict]:
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value
            else:
                plain["state"].setdefault(str(pid), {})[name] = value
    return tensors, plain


def _join_optimizer(tensors: dict, plain: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in plain["state"].items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer=None, scheduler=None,
                    *, step: int = 0, extra: dict | None = None, rng: bool = True) -> Path:
    """Write model (+ optimizer, scheduler, RNG) state to ``path`` atomically; return the path.

    ``extra`` must be JSON-serialisable (e.g. the loss history).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path must end in .safetensors, got {str(path)!r}")
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    _dedupe("model.", model.state_dict(), tensors, aliases)
    meta: dict = {"step": int(step), "extra": extra or {}, "aliases": aliases}
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _split_optimizer(optimizer.state_dict())
        _dedupe("optim.", opt_tensors, tensors, aliases)
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    if rng:
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = s
        np_state = np.random.get_state()
        tensors["rng.numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
        meta["rng"] = {"python": random.getstate(), "numpy": [np_state[0], *np_state[2:]]}
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, save(tensors, metadata={_META_KEY: json.dumps(meta)}))


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer=None, scheduler=None,
                    *, rng: bool = True, map_location: str | torch.device = "cpu") -> dict:
    """Restore what :func:`save_checkpoint` wrote; return ``{"step": ..., "extra": ...}``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()[_META_KEY])
    tensors = load_file(str(path), device=str(map_location))
    for alias, target in meta["aliases"].items():
        tensors[alias] = tensors[target]
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(model_state, strict=True)
    if optimizer is not None:
        if "optimizer" not in meta:
            raise ValueError(f"optimizer given but {str(path)!r} holds no optimizer state")
        opt_tensors = {k[len("optim."):]: v for k, v in tensors.items() if k.startswith("optim.")}
        optimizer.load_state_dict(_join_optimizer(opt_tensors, meta["optimizer"]))
    if scheduler is not None:
        if "scheduler" not in meta:
            raise ValueError(f"scheduler given but {str(path)!r} holds no scheduler state")
        scheduler.load_state_dict(meta["scheduler"])
    if rng and "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].cpu())
        cuda_states = [tensors[f"rng.cuda.{i}"].cpu() for i in range(torch.cuda.device_count())
                       if f"rng.cuda.{i}" in tensors]
        if cuda_states:
            torch.cuda.set_rng_state_all(cuda_states)
        py = meta["rng"]["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        kind, pos, has_gauss, cached = meta["rng"]["numpy"]
        np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    return {"step": meta["step"], "extra": meta["extra"]}


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` the way checkpoints are written: a
    temporary file in the same folder, flushed to disk, then ``os.replace`` over the target. A
    crash leaves the old file or the new one, never half of one. Returns ``path``."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes or str, got {type(data).__name__}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)       # mkstemp makes 0600; give the file a normal file's mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of the file at ``path``, read in 1 MiB chunks (shipped weights carry it
    in their manifests)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
