"""The package's layout (issue 14): old import paths still work, every public module declares
``__all__`` with names that exist, the package docstring names every module, by layer."""
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys

import pytest

import genai_helpers


def public_modules() -> list[str]:
    """Every module of the package whose dotted name has no part starting with ``_``."""
    names = ["genai_helpers"]
    for info in pkgutil.walk_packages(genai_helpers.__path__, "genai_helpers."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


MODULES = public_modules()


@pytest.mark.parametrize("old, new", sorted(genai_helpers.MOVED_MODULES.items()))
def test_old_path_imports_the_moved_module_itself(old, new):
    module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__name__ == new and module.__spec__.name == new      # its own spec, not the alias's
    assert sys.modules[old] is module
    parent, _, leaf = old.rpartition(".")
    assert getattr(importlib.import_module(parent), leaf) is module  # `from genai_helpers import lora`


# The names chapters 04, 06 and 14 import from the old paths (their code cells are not changed).
CHAPTER_IMPORTS = {
    "genai_helpers.compose": ["SmartCompose", "TriggeringService", "beam_search_cached", "Candidate",
                              "postprocess", "percentile", "typing_session"],
    "genai_helpers.alignment": ["build_sequences", "sample_responses", "sequence_kl", "token_logprobs", "pad_batch",
                                "sft_example", "sft_loss", "RewardModel", "ranking_loss", "gae_advantages",
                                "kl_penalized_rewards", "masked_whiten", "ppo_policy_loss", "value_loss", "dpo_loss",
                                "sequence_logprob"],
    "genai_helpers.chat_pipeline": ["ChatPipeline", "check_request"],
    "genai_helpers.lora": ["LoRALinear", "count_parameters", "inject_lora", "lora_parameters", "merge_lora",
                           "save_lora", "unmerge_lora"],
}


@pytest.mark.parametrize("old", sorted(CHAPTER_IMPORTS))
def test_chapters_names_import_from_the_old_paths(old):
    module = importlib.import_module(old)
    missing = [name for name in CHAPTER_IMPORTS[old] if not hasattr(module, name)]
    assert not missing


def test_old_path_works_in_a_fresh_interpreter():
    """The alias must not depend on the new module being imported first."""
    code = ("from genai_helpers.compose import SmartCompose; import genai_helpers.lora as l, sys; "
            "assert SmartCompose.__module__ == 'genai_helpers.systems.smart_compose'; "
            "assert l is sys.modules['genai_helpers.finetuning.lora']")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unknown_module_still_fails_to_import():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("genai_helpers.no_such_module")


@pytest.mark.parametrize("name", MODULES)
def test_public_module_declares_all_with_existing_public_names(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} declares no __all__"
    names = list(module.__all__)
    assert len(names) == len(set(names)), f"{name}.__all__ repeats a name"
    assert not [n for n in names if n.startswith("_")], f"{name}.__all__ lists private names"
    missing = [n for n in names if not hasattr(module, n)
               and importlib.util.find_spec(f"{name}.{n}") is None]
    assert not missing, f"{name}.__all__ names what does not exist: {missing}"
    foreign = [n for n in names if hasattr(module, n)
               and (inspect.isclass(getattr(module, n)) or inspect.isfunction(getattr(module, n)))
               and not getattr(module, n).__module__.startswith("genai_helpers")]
    assert not foreign, f"{name}.__all__ lists third-party names: {foreign}"


def test_all_lists_every_public_function_and_class_the_module_defines():
    unlisted = []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (not attr.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
                    and obj.__module__ == name and attr not in module.__all__):
                unlisted.append(f"{name}.{attr}")
    assert not unlisted


def test_package_docstring_names_every_top_level_module_and_subpackage():
    top = {name.split(".")[1] for name in MODULES if name.count(".") >= 1}
    named = set(re.findall(r":mod:`genai_helpers\.(\w+)`", genai_helpers.__doc__))
    assert top - named == set(), f"not in the package docstring: {sorted(top - named)}"
    assert named - top == set(), f"the docstring names modules that do not exist: {sorted(named - top)}"
    for layer in ("Primitives", "Infrastructure", "Models", "Systems", "Data", "Metrics"):
        assert f"**{layer}**" in genai_helpers.__doc__


def test_models_exports_every_model_and_its_config():
    from genai_helpers import models
    from genai_helpers.models import GPT, GPTConfig, gpt

    assert GPT is gpt.GPT and GPTConfig is gpt.GPTConfig
    for name in ("TransformerLM", "TransformerLMConfig", "Seq2SeqTransformer", "Seq2SeqConfig", "Captioner",
                 "DCGANGenerator", "DCGANDiscriminator", "ConvVAE", "VQVAE", "VQVAEConfig", "NGramLM",
                 "HashedNgramClassifier"):
        assert name in models.__all__ and inspect.isclass(getattr(models, name))


def test_the_top_level_holds_only_primitives_and_infrastructure():
    """Whole systems live in subpackages (systems/, finetuning/, rag/, ...), not beside the primitives."""
    top_modules = {name.split(".")[1] for name in MODULES
                   if name.count(".") == 1 and not importlib.util.find_spec(name).submodule_search_locations}
    assert top_modules == {"attention", "positional", "patches", "transformer", "sampling", "embedders",
                           "runtime", "training", "lr_schedules", "training_hooks", "checkpoint", "memory",
                           "distributed", "parallelism", "estimates", "viz", "players", "notebook",
                           "prose_numbers"}


def test_training_still_exports_what_moved_to_lr_schedules_and_training_hooks():
    """Chapters import cosine_schedule from training; chapters 13-15 and older code EMA and every."""
    from genai_helpers import lr_schedules, training, training_hooks
    from genai_helpers.diffusion import denoising

    assert training.cosine_schedule is lr_schedules.cosine_schedule
    assert training.warmup_cosine is lr_schedules.warmup_cosine
    for name in ("EMA", "StepInfo", "every", "unwrap_model"):
        assert getattr(training, name) is getattr(training_hooks, name)
    assert denoising.EMA is training_hooks.EMA


# The layers of the package docstring, as ranks: a module may import from its own rank or below.
# runtime and the argument checks are used everywhere; data and metrics sit between the
# infrastructure and the models (models, fine-tuning and systems use them; they use the loop).
LAYER_RANK = {
    "runtime": 0, "_checks": 0,
    "attention": 1, "positional": 1, "patches": 1, "transformer": 1, "sampling": 1, "embedders": 1,
    "training": 2, "lr_schedules": 2, "training_hooks": 2, "checkpoint": 2, "memory": 2, "distributed": 2,
    "parallelism": 2, "estimates": 2, "viz": 2, "players": 2, "notebook": 2, "prose_numbers": 2,
    "data": 2.5, "metrics": 2.5,
    "models": 3, "diffusion": 3, "finetuning": 3,
    "systems": 4, "rag": 4, "agents": 4, "guardrails": 4, "serving": 4, "speech": 4,
}


def test_modules_import_only_their_own_layer_or_the_layers_below():
    import ast
    from pathlib import Path

    root = Path(genai_helpers.__file__).parent
    assert {p.stem if p.is_file() else p.name for p in root.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()} == set(LAYER_RANK)
    upward = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts == ("__init__",):
            continue                      # the package itself names everything
        source = parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                package = parts[:-1]                      # the package this file is in (or defines)
                base = list(package[:len(package) - (node.level - 1)])
                target = (base + (node.module.split(".") if node.module else []))
                names = [target[0]] if target else [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genai_helpers."):
                names = [node.module.split(".")[1]]
            else:
                continue
            for name in names:
                if name in LAYER_RANK and LAYER_RANK[name] > LAYER_RANK[source]:
                    upward.append(f"{'/'.join(parts)} imports {name}")
    assert not upward
