"""Apply Slider Bank in real ComfyUI: gating by sigma, bitwise vanilla when off, composition with LoRAs."""

from __future__ import annotations

import pytest
import torch

from .executor import run_node
from .test_discovery import SIZE, _raises

STEPS = 8


def apply(comfy, model, bank, scales="0:1.5, 2:-1", start=0.0, end=1.0, mult=1.0):
    return run_node("SliderSpaceApplySliderBank", model=model, bank=bank, scales=scales, multiplier=mult,
                    start_percent=start, end_percent=end)[0]  # through ComfyUI's executor, as a server runs it


def sample(comfy, tiny, model, sampler="euler", seed=3):
    """Final latent and the x̂0 of every step (the sampler callback), CFG 5."""
    import comfy.sample as cs

    C = comfy["classes"]
    xs = {}
    with torch.inference_mode():
        pos = C["CLIPTextEncode"]().encode(tiny.clip, "a dog")[0]
        neg = C["CLIPTextEncode"]().encode(tiny.clip, "")[0]
        latent = torch.zeros([1, 4, SIZE // 8, SIZE // 8])
        out = cs.sample(model, cs.prepare_noise(latent, seed), STEPS, 5.0, sampler, "normal", pos, neg, latent,
                        callback=lambda i, x0, x, n: xs.__setitem__(i, x0.clone()), disable_pbar=True, seed=seed)
    return out, xs


def test_zero_scales_or_start_past_end_is_bitwise_vanilla(comfy, tiny, bank):
    vanilla, _ = sample(comfy, tiny, tiny.model)
    for m in (apply(comfy, tiny.model, bank, "0:0, 1:0"), apply(comfy, tiny.model, bank, start=1.0),
              apply(comfy, tiny.model, bank, mult=0.0)):
        assert torch.equal(sample(comfy, tiny, m)[0], vanilla)
    assert not torch.equal(sample(comfy, tiny, apply(comfy, tiny.model, bank))[0], vanilla)


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "euler_ancestral"])
def test_x0_before_start_is_vanilla_and_differs_after(comfy, tiny, bank, sampler):
    from comfy.samplers import KSampler

    start = 0.5
    m = apply(comfy, tiny.model, bank, start=start)
    sigmas = KSampler(tiny.model, STEPS, "cpu", sampler, "normal").sigmas
    sigma_start = tiny.model.get_model_object("model_sampling").percent_to_sigma(start)
    _, van = sample(comfy, tiny, tiny.model, sampler)
    _, ours = sample(comfy, tiny, m, sampler)
    before = [i for i in range(STEPS) if float(sigmas[i]) > sigma_start]
    after = [i for i in range(STEPS) if float(sigmas[i]) <= sigma_start]
    assert before and after, (sigmas, sigma_start)
    for i in before:
        assert torch.equal(van[i], ours[i]), (sampler, i)
    for i in after:
        assert not torch.equal(van[i], ours[i]), (sampler, i)


def test_input_not_mutated_and_reapplying_is_idempotent(comfy, tiny, bank):
    model = tiny.model
    wrappers, weight_wrappers = repr(model.wrappers), repr(model.weight_wrapper_patches)
    once = sample(comfy, tiny, apply(comfy, model, bank))[0]
    again = sample(comfy, tiny, apply(comfy, model, bank))[0]
    twice = sample(comfy, tiny, apply(comfy, apply(comfy, model, bank), bank))[0]  # replaces, never stacks
    assert torch.equal(once, again) and torch.equal(once, twice)
    assert repr(model.wrappers) == wrappers and repr(model.weight_wrapper_patches) == weight_wrappers
    assert torch.equal(sample(comfy, tiny, model)[0], sample(comfy, tiny, tiny.model)[0])


def test_composes_with_loraloader_before_and_after(comfy, tiny, bank):
    from comfy.sd import load_lora_for_models

    from .host import pack_module

    ex = pack_module("sliderspace_core.sliderspace.export")
    other = bank.sliders[1]
    lora = {}
    for name in bank.modules:  # an unrelated stock LoRA on the same modules
        lora[f"diffusion_model.{name}.lora_up.weight"] = other.up[name].flip(0) * 0.5
        lora[f"diffusion_model.{name}.lora_down.weight"] = other.down[name]
    with torch.inference_mode():
        lora_model = load_lora_for_models(tiny.model, None, lora, 1.0, 0)[0]
        after = load_lora_for_models(apply(comfy, tiny.model, bank), None, lora, 1.0, 0)[0]
        bank_lora = ex.bank_to_lora(bank, {0: 1.5, 2: -1.0}, "comfy", "SD15")
        merged = load_lora_for_models(lora_model, None, bank_lora, 1.0, 0)[0]  # analytic sum
    before = apply(comfy, lora_model, bank)
    ref = sample(comfy, tiny, merged)[0]
    for m in (before, after):
        torch.testing.assert_close(sample(comfy, tiny, m)[0], ref, rtol=1e-4, atol=1e-3)
    assert not torch.allclose(ref, sample(comfy, tiny, lora_model)[0])


def test_apply_errors_name_node_and_input(comfy, tiny, bank):
    import copy

    name = "SliderSpace Apply Slider Bank"
    _raises(lambda: apply(comfy, tiny.model, bank, "7:1"), name, "scales")
    _raises(lambda: apply(comfy, tiny.model, bank, "zero:one"), name, "scales")
    _raises(lambda: apply(comfy, tiny.model, bank, start=0.8, end=0.2), name, "start_percent")
    other = copy.copy(bank)
    other.meta = copy.copy(bank.meta)
    other.meta.family = "SDXL"
    _raises(lambda: apply(comfy, tiny.model, other), name, "bank")


def test_inplace_merge_restores_weights_after_an_interrupt_and_matches_the_wrapper_path(comfy, tiny, bank,
                                                                                        monkeypatch):
    import comfy.sample as cs

    from .host import pack_module

    glue = pack_module("nodes.glue.patching")
    dm = tiny.model.model.diffusion_model
    sample(comfy, tiny, tiny.model)  # make ComfyUI load the plain model (undoing any LoRA patched by earlier tests)
    before = {k: v.clone() for k, v in dm.state_dict().items()}
    C = comfy["classes"]
    with torch.inference_mode():
        pos = C["CLIPTextEncode"]().encode(tiny.clip, "a dog")[0]
        neg = C["CLIPTextEncode"]().encode(tiny.clip, "")[0]
        latent = torch.zeros([1, 4, SIZE // 8, SIZE // 8])

        def stop(i, x0, x, n):
            if i == 3:
                raise KeyboardInterrupt("user pressed cancel")

        with pytest.raises(KeyboardInterrupt):
            cs.sample(apply(comfy, tiny.model, bank), cs.prepare_noise(latent, 1), STEPS, 5.0, "euler", "normal",
                      pos, neg, latent, callback=stop, disable_pbar=True)
    assert all(torch.equal(before[k], v) for k, v in dm.state_dict().items())  # restored bit for bit
    inplace = sample(comfy, tiny, apply(comfy, tiny.model, bank, start=0.3))[0]
    monkeypatch.setattr(glue, "MERGEABLE", ())  # as for quantized weights: per-forward weight wrappers
    wrapped_model = apply(comfy, tiny.model, bank, start=0.3)
    assert any(wrapped_model.weight_wrapper_patches.values())
    torch.testing.assert_close(sample(comfy, tiny, wrapped_model)[0], inplace, rtol=1e-5, atol=1e-4)
