"""A1: sampling with an SAE steer / plain sampling; A2: sampling with block capture (streamed to shards) /
plain sampling, plus activations captured per second. Tiny SD1.5-shaped UNet, same settings."""

from __future__ import annotations

import tempfile

import torch

from benchmarks.common import Result, check, interleaved_times

GOAL_A1 = "<= 1.05"
GOAL_A2 = "<= 1.15"


def run(quick: bool) -> list[Result]:
    from tests.comfy import tiny_models
    from tests.comfy.host import boot, pack_module

    C = boot()["classes"]
    topk, sae_mod = pack_module("sliderspace_core.decompose.topk_sae"), pack_module("sliderspace_core.concepts.sae")
    capture = pack_module("nodes.glue.capture")
    tiny = tiny_models.build()
    block = "middle_block.1"
    sae = topk.TopKSAE.create(320, topk.TopKSAEConfig(k=10, n_latents=1280, seed=0))
    csae = sae_mod.ConceptSAE(sae, block, torch.ones(1280), torch.ones(1280))
    steps, size, samples = (4, 64, 1) if quick else (12, 128, 2)
    with torch.inference_mode():
        steered = C["SliderSpaceSAESteer"].execute(tiny.model, csae, "1:8, 7:-4, 50:6, 900:3", "global", "cond",
                                                   "feature mean (sdxl-unbox)", 0.0, 1.0, True, None).args[0]
        pos = C["CLIPTextEncode"]().encode(tiny.clip, "a dog")[0]
        neg = C["CLIPTextEncode"]().encode(tiny.clip, "")[0]
        latent = C["EmptyLatentImage"]().generate(size, size, 1)[0]
    rows = {}

    def plain(model):
        def f():
            with torch.inference_mode():
                for i in range(samples):
                    C["KSampler"]().sample(model, i, steps, 7.0, "euler", "normal", pos, neg, latent)
        return f

    def captured():
        with tempfile.TemporaryDirectory() as d, torch.inference_mode():
            s = capture.collect_activations(tiny.model, pos, neg, block, d + "/set", samples, 0, steps, 7.0, "euler",
                                            "normal", size, size, "both", 0.0, 1.0, 64)
            rows["n"] = s.rows

    t = interleaved_times({"steer": plain(steered), "plain": plain(tiny.model), "capture": captured},
                          repeats=2 if quick else 5)
    a1, a2 = t["steer"] / t["plain"], t["capture"] / t["plain"]
    setting = f"tiny SD1.5-shaped UNet, {size}px, {samples} x batch 1, {steps} steps, CFG 7, euler, CPU"
    return [
        Result("A1", "sampling with SAE steer (4 features, global) / plain", a1, GOAL_A1, check(a1, GOAL_A1),
               f"{setting}; block {block}; {t['steer']:.2f}s vs {t['plain']:.2f}s"),
        Result("A2", "sampling with block capture (shards) / plain", a2, GOAL_A2, check(a2, GOAL_A2),
               f"{setting}; both halves, 64 locations/map kept, float16 shards; {t['capture']:.2f}s vs "
               f"{t['plain']:.2f}s; {rows['n'] / t['capture']:.0f} rows/s captured"),
    ]
