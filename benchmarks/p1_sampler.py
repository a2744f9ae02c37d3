"""P1: Trajectory Sampler (x̂0 kept at every step) vs a plain KSampler, same model and settings."""

from __future__ import annotations

import torch

from benchmarks.common import Result, check, interleaved_times

GOAL = "<= 1.05"


def run(quick: bool) -> list[Result]:
    from tests.comfy import tiny_models
    from tests.comfy.host import boot

    C = boot()["classes"]
    tiny = tiny_models.build()
    n, steps, size = (4, 4, 64) if quick else (8, 12, 64)
    text = "a photo of a dog"

    def ours():
        with torch.inference_mode():
            C["SliderSpaceTrajectorySampler"].execute(tiny.model, text, "", n, 0, steps, 7.0, "euler",
                                                      "normal", size, size, n, "every step", 1, "float16",
                                                      clip=tiny.clip)

    def stock():
        with torch.inference_mode():
            pos = C["CLIPTextEncode"]().encode(tiny.clip, text)[0]
            neg = C["CLIPTextEncode"]().encode(tiny.clip, "")[0]
            latent = C["EmptyLatentImage"]().generate(size, size, n)[0]
            C["KSampler"]().sample(tiny.model, 0, steps, 7.0, "euler", "normal", pos, neg, latent)

    t = interleaved_times({"ours": ours, "stock": stock}, repeats=2 if quick else 8)
    ratio = t["ours"] / t["stock"]
    note = (f"{n} trajectories x {steps} steps at {size}px, batch {n}, tiny SD1.5-shaped UNet, CPU; "
            f"ours {t['ours']:.2f}s, KSampler {t['stock']:.2f}s (best of runs, interleaved)")
    return [Result("P1", "Trajectory Sampler time / plain KSampler time (no decode)", ratio, GOAL,
                   check(ratio, GOAL), note)]
