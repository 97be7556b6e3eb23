"""Device choice, seeding, the smoke/full switch and the offline-hub setting."""
import random

import numpy as np
import pytest
import torch

from genai_helpers import runtime


def test_default_device_is_the_best_available(monkeypatch):
    monkeypatch.delenv("GENAI_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if runtime._mps_available() else "cpu")
    assert runtime.get_device().type == expected


def test_device_order_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.delenv("GENAI_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: True)
    assert runtime.get_device().type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.get_device().type == "cuda"


def test_device_override_by_argument_and_environment(monkeypatch):
    monkeypatch.setenv("GENAI_DEVICE", "cpu")
    assert runtime.get_device() == torch.device("cpu")
    monkeypatch.delenv("GENAI_DEVICE")
    assert runtime.get_device("cpu") == torch.device("cpu")


def test_device_override_rejects_unknown_or_missing_devices(monkeypatch):
    with pytest.raises(ValueError, match="prefer"):
        runtime.get_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="not available"):
        runtime.get_device("cuda")
    with pytest.raises(TypeError, match="prefer"):
        runtime.get_device(3)


def test_seed_everything_makes_all_generators_repeat():
    runtime.seed_everything(7)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    g = runtime.seed_everything(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    assert torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=torch.Generator().manual_seed(7)))
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(-1)


def test_run_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("GENAI_MODE", "smoke")
    assert runtime.run_mode() == "smoke" and runtime.is_smoke()
    assert runtime.pick(smoke=1, full=2) == 1
    monkeypatch.setenv("GENAI_MODE", "full")
    monkeypatch.setattr(runtime, "get_device", lambda: torch.device("cpu"))
    assert runtime.pick(smoke=1, full=2, gpu=3) == 2
    monkeypatch.setattr(runtime, "get_device", lambda: torch.device("cuda"))
    assert runtime.pick(smoke=1, full=2, gpu=3) == 3
    monkeypatch.setenv("GENAI_MODE", "fast")
    with pytest.raises(ValueError, match="GENAI_MODE"):
        runtime.run_mode()


def test_set_offline_hub_sets_the_hub_variables(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    runtime.set_offline_hub()
    import os
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
