"""fp8 base weights (issue 18): where Apply Slider Bank and the same mix loaded as a LoRA round.

Apply adds ``ΔW`` to the weight AFTER ComfyUI casts it to the compute dtype (a weight wrapper runs inside
``comfy.ops.cast_bias_weight``), so the fp8 weight is used exactly as stored plus the exact ``ΔW``. A LoRA is
merged when the model loads (``ModelPatcher.patch_weight_to_device``): ``W + ΔW`` is computed in fp32 and
stochastically rounded back to fp8 (``comfy.float.stochastic_rounding``), so every element of the delta is
replaced by a jump to a neighbouring fp8 value. The test measures both against an fp32 twin of the model.
"""

from __future__ import annotations

import torch

from .host import pack_module
from .test_apply import apply, sample

SCALES = {0: 1.5, 2: -1.0}


def fp8_and_fp32_twins(seed: int = 0):
    """The tiny SD1.5 UNet stored in float8_e4m3fn (computing in fp32), and an fp32 copy of the same values."""
    import comfy.model_patcher
    import comfy.supported_models

    from .tiny_models import SD15_TINY_UNET, fill_

    cfg = comfy.supported_models.SD15(dict(SD15_TINY_UNET))
    cfg.set_inference_dtype(torch.float8_e4m3fn, torch.float32)
    fp8 = cfg.get_model({})
    fill_(fp8.diffusion_model, seed)
    fp32 = comfy.supported_models.SD15(dict(SD15_TINY_UNET)).get_model({})
    fp32.diffusion_model.load_state_dict({k: v.float() for k, v in fp8.diffusion_model.state_dict().items()})
    cpu = torch.device("cpu")
    return tuple(comfy.model_patcher.ModelPatcher(m, load_device=cpu, offload_device=cpu) for m in (fp8, fp32))


def rel(a: torch.Tensor, b: torch.Tensor, effect: torch.Tensor) -> float:
    return float((a - b).norm() / effect.norm())


def test_apply_on_fp8_adds_the_exact_delta_and_a_lora_is_rounded_to_fp8(comfy, tiny, bank):
    from comfy.float import stochastic_rounding
    from comfy.sd import load_lora_for_models

    ex = pack_module("sliderspace_core.sliderspace.export")
    m8, m32 = fp8_and_fp32_twins()
    name = bank.modules[0]
    assert m8.get_model_object(f"diffusion_model.{name}").weight.dtype == torch.float8_e4m3fn
    with torch.inference_mode():
        lora = load_lora_for_models(m8, None, ex.bank_to_lora(bank, SCALES, "comfy", "SD15"), 1.0, 0)[0]
    vanilla = sample(comfy, tiny, m32)[0]
    exact = sample(comfy, tiny, apply(comfy, m32, bank, text(SCALES)))[0]  # fp32: W + ΔW, nothing rounded
    effect = exact - vanilla
    ours = sample(comfy, tiny, apply(comfy, m8, bank, text(SCALES)))[0]
    as_lora = sample(comfy, tiny, lora)[0]
    apply_err, lora_err = rel(ours, exact, effect), rel(as_lora, exact, effect)
    # The weight-level cause: the LoRA path's effective delta on one module.
    w = m8.get_model_object(f"diffusion_model.{name}").weight.float()
    delta = bank.sliders[0].delta(name, SCALES[0]) + bank.sliders[2].delta(name, SCALES[2])
    rounded = stochastic_rounding(w + delta, torch.float8_e4m3fn, seed=0).float() - w
    weight_err = float((rounded - delta).norm() / delta.norm())
    print(f"\nfp8: Apply vs exact {apply_err:.2e}, LoRA vs exact {lora_err:.2%} of the slider effect; "
          f"LoRA delta of {name} after fp8 rounding off by {weight_err:.0%}")
    assert apply_err < 1e-4  # Apply on fp8 = the stored fp8 values + the exact delta
    assert lora_err > 10 * apply_err and weight_err > 0.05  # the LoRA path rounds W + ΔW to fp8


def text(scales: dict[int, float]) -> str:
    return ", ".join(f"{i}:{s}" for i, s in scales.items())
