"""Argument checks of the diffusion sampler and the prompt bank (chapter 13): a wrong argument
fails loudly, naming itself, instead of silently changing a result."""
import pytest
import torch

from genai_helpers.diffusion.denoising import PromptBank
from genai_helpers.diffusion.samplers import sample
from genai_helpers.diffusion.schedules import NoiseSchedule


def zero_eps(x, t):
    return torch.zeros_like(x)


def test_eta_is_refused_for_ddpm_and_the_random_stream_is_untouched():
    schedule = NoiseSchedule.make("linear", 50)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"eta.*ddim.*ddpm|eta.*'ddpm'"):
        sample(zero_eps, (2, 1, 4, 4), schedule, method="ddpm", steps=10, generator=g, eta=0.5)
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=torch.Generator().manual_seed(0)))
    x, _ = sample(zero_eps, (2, 1, 4, 4), schedule, method="ddpm", steps=10, generator=torch.Generator().manual_seed(0))
    y, _ = sample(zero_eps, (2, 1, 4, 4), schedule, method="ddpm", steps=10, generator=torch.Generator().manual_seed(0),
                  eta=0.0)
    assert torch.equal(x, y)                               # eta=0 (the default) is still accepted
    sample(zero_eps, (2, 1, 4, 4), schedule, method="ddim", steps=5, eta=1.0)
    with pytest.raises(ValueError, match="eta"):
        sample(zero_eps, (2, 1, 4, 4), schedule, method="ddim", steps=5, eta=1.5)


def bank():
    prompts = ["", "a blue square", "a red circle"]
    return PromptBank(prompts, torch.zeros(3, 2, 4), torch.ones(3, 2, dtype=torch.bool), torch.zeros(3, 4))


def test_prompt_bank_ids_names_the_unknown_prompt_and_lists_the_known_ones():
    b = bank()
    assert b.ids(["a red circle", "", "a red circle"]).tolist() == [2, 0, 2]
    with pytest.raises(ValueError) as err:
        b.ids(["a red circle", "a green star"])
    msg = str(err.value)
    assert "'a green star'" in msg and "'a blue square'" in msg and "'a red circle'" in msg
    with pytest.raises(TypeError, match="prompts"):
        b.ids("a red circle")                              # a bare string would be read letter by letter
