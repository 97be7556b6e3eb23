"""genai_helpers: the training and inference code behind the book *Generative AI System Design*.

Organised by capability, in layers. A module imports only from its own layer and the layers
listed above it (the runtime switches are used everywhere); data and metrics sit between the
infrastructure and the models, which use them; nothing below the systems imports a system
(tests/test_layout.py checks). The book's API page follows the same groups.

**Primitives** (small, pure, checked against PyTorch and transformers)

- :mod:`genai_helpers.attention`    scaled dot-product and multi-head attention, masks (ch. 01)
- :mod:`genai_helpers.positional`   sinusoidal, learned and rotary positions; diffusion timestep embedding
  (ch. 01, 04, 13)
- :mod:`genai_helpers.patches`      patchify / unpatchify, the one image-to-patch-token layout (ch. 10, 13)
- :mod:`genai_helpers.transformer`  feed-forward, transformer block, mixture of experts, GPT-2 init (ch. 01)
- :mod:`genai_helpers.sampling`     temperature, top-k, top-p, repetition penalty; the one decode loop and
  beam core (ch. 03)
- :mod:`genai_helpers.embedders`    one text-embedder interface: hashing and offline all-MiniLM-L6-v2 (ch. 07, 08)

**Infrastructure** (one place for each cross-cutting concern)

- :mod:`genai_helpers.runtime`         device (CUDA -> MPS -> CPU), seeding, smoke/full mode
- :mod:`genai_helpers.training`        the training loop every model trains with (ch. 01)
- :mod:`genai_helpers.lr_schedules`    the warm-up-cosine learning-rate schedule
- :mod:`genai_helpers.training_hooks`  what a hook of the loop sees; ``every``, EMA weights
- :mod:`genai_helpers.checkpoint`      safetensors checkpoints written atomically
- :mod:`genai_helpers.memory`          activation bytes saved for backward, peak memory, step timing (ch. 02)
- :mod:`genai_helpers.distributed`     gloo process groups from a notebook, ring/hierarchical all-reduce (ch. 02)
- :mod:`genai_helpers.parallelism`     data, tensor and pipeline parallelism, ZeRO accounting, FSDP (ch. 02)
- :mod:`genai_helpers.estimates`       back-of-envelope parameters, memory, FLOPs, GPU-days and cost (ch. 02)
- :mod:`genai_helpers.viz`             the book's figure style, attention heatmaps, image grids, live plots, diagrams
- :mod:`genai_helpers.players`         sweep and animation players that work offline
- :mod:`genai_helpers.notebook`        run metadata, ``record_result``, the stale-output check for chapters
- :mod:`genai_helpers.prose_numbers`   the prose check: a number in a chapter's Markdown must be in an output

**Models** (one readable file each, built from the primitives, trained by the one loop)

- :mod:`genai_helpers.models`      GPT, the small transformer LM, seq2seq, captioners, GAN, VAE, VQ-VAE,
  token prior, n-gram LM and classifier (ch. 01, 03-06, 08-12)
- :mod:`genai_helpers.diffusion`   noise schedules, DDPM/DDIM samplers, guidance, U-Net, DiT, CLIP, VAE;
  video denoiser and frame interpolation (ch. 13-15)
- :mod:`genai_helpers.finetuning`  alignment (SFT, reward model, PPO, DPO; ch. 06) and LoRA / QLoRA (ch. 14)

**Systems** (what a chapter ships around its models)

- :mod:`genai_helpers.systems`     Smart Compose (ch. 04) and the chat pipeline (ch. 06)
- :mod:`genai_helpers.rag`         retrieval-augmented generation over this book:
  ``build_book_index(...).search(q, k)`` (ch. 07)
- :mod:`genai_helpers.agents`      ReAct loop, tools, planners, multi-agent patterns, memory, semantic cache (ch. 08)
- :mod:`genai_helpers.guardrails`  injection rules, PII redaction, tool policy, audit log (ch. 08)
- :mod:`genai_helpers.serving`     batching, paged KV cache, quantisation, pruning, distillation, speculative
  decoding (ch. 09)
- :mod:`genai_helpers.speech`      text-to-speech: espeak-ng data, log-mel, neural codec, dual AR model,
  recogniser (ch. 16)

**Data** -- :mod:`genai_helpers.data`: offline data sources, tokenizers and batching (every chapter)

**Metrics** -- :mod:`genai_helpers.metrics`: text, classification, regression, ranking, A/B-test, image and
video metrics (ch. 03, 05, 10-15)

Moved modules keep their old import paths: ``genai_helpers.compose`` is
:mod:`genai_helpers.systems.smart_compose`, ``genai_helpers.chat_pipeline`` is
:mod:`genai_helpers.systems.chat_pipeline`, ``genai_helpers.alignment`` and ``genai_helpers.lora`` are
:mod:`genai_helpers.finetuning.alignment` and :mod:`genai_helpers.finetuning.lora` (the same module
objects, imported on first use).
"""
import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

from .runtime import get_device, is_smoke, pick, run_mode, seed_everything  # noqa: E402

__all__ = ["MOVED_MODULES", "get_device", "is_smoke", "pick", "record_result", "run_mode", "seed_everything"]

# Old path -> the module's home since the layout by layer (chapters 04, 06 and 14 import the old paths).
MOVED_MODULES = {
    "genai_helpers.compose": "genai_helpers.systems.smart_compose",
    "genai_helpers.chat_pipeline": "genai_helpers.systems.chat_pipeline",
    "genai_helpers.alignment": "genai_helpers.finetuning.alignment",
    "genai_helpers.lora": "genai_helpers.finetuning.lora",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import an old path of :data:`MOVED_MODULES` as the module at its new path (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def __init__(self):
        self._specs = {}

    def create_module(self, spec):
        module = importlib.import_module(MOVED_MODULES[spec.name])
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module):
        # The import system has just set module.__spec__ to the old path's spec: give the module
        # its own back (reload() and pickling use it).
        module.__spec__ = self._specs.pop(module.__name__)


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())


def __getattr__(name):
    # `from genai_helpers import record_result` (chapters record their headline numbers), imported
    # lazily so that `python -m genai_helpers.notebook` does not import its own module twice.
    if name == "record_result":
        from .notebook import record_result
        return record_result
    raise AttributeError(f"module 'genai_helpers' has no attribute {name!r}")
