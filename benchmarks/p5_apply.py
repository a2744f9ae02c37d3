"""P5: sampling with 32 active sliders (Apply Slider Bank) vs plain sampling, same settings."""

from __future__ import annotations

import torch

from benchmarks.common import Result, check, interleaved_times

GOAL = "<= 1.03"


def run(quick: bool) -> list[Result]:
    from tests.comfy import tiny_models
    from tests.comfy.host import boot, pack_module

    C = boot()["classes"]
    ad, bk = pack_module("sliderspace_core.sliderspace.adapters"), pack_module("sliderspace_core.sliderspace.bank")
    bg = pack_module("nodes.glue.family")
    tiny = tiny_models.build()
    modules = bg.target_modules(tiny.model.model.diffusion_model, "all attention projections")
    n = 32
    adapters = ad.SliderAdapters({k: (m.out_features, m.in_features) for k, m in modules.items()}, n, seed=1)
    with torch.no_grad():
        for p in adapters.up.values():
            p.normal_(0, 0.01)
    bank = bk.SliderBank(adapters.export_sliders(), bk.BankMeta(**bg.model_facts(tiny.model, modules)))
    scales = ", ".join(f"{i}:{(-1) ** i * 0.5}" for i in range(n))
    steps, size, batch = (4, 64, 1) if quick else (12, 128, 2)
    with torch.inference_mode():
        slid = C["SliderSpaceApplySliderBank"].execute(tiny.model, bank, scales, 1.0, 0.0, 1.0).args[0]
        pos = C["CLIPTextEncode"]().encode(tiny.clip, "a dog")[0]
        neg = C["CLIPTextEncode"]().encode(tiny.clip, "")[0]
        latent = C["EmptyLatentImage"]().generate(size, size, batch)[0]

    def go(model):
        def f():
            with torch.inference_mode():
                C["KSampler"]().sample(model, 0, steps, 7.0, "euler", "normal", pos, neg, latent)
        return f

    t = interleaved_times({"sliders": go(slid), "plain": go(tiny.model)}, repeats=2 if quick else 5)
    ratio = t["sliders"] / t["plain"]
    note = (f"{n} sliders active from step 0 on {len(modules)} attention projections (tiny SD1.5-shaped UNet, "
            f"{size}px, batch {batch}, {steps} steps, CFG 7, CPU); {t['sliders']:.2f}s vs {t['plain']:.2f}s")
    return [Result("P5", "sampling with 32 active sliders / plain sampling", ratio, GOAL, check(ratio, GOAL), note)]
