"""P2: latents decoded + embedded per second: CLIP Embed vs stock VAEDecode → CLIPVisionEncode."""

from __future__ import annotations

import torch

from benchmarks.common import Result, check, interleaved_times

GOAL = ">= 1.5"


def run(quick: bool) -> list[Result]:
    from tests.comfy import tiny_models
    from tests.comfy.host import boot, pack_module

    C = boot()["classes"]
    traj_mod = pack_module("sliderspace_core.sliderspace.trajectories")
    n, lat = (4, 8) if quick else (4, 16)  # 16x16 latents = 128 px images
    vae = tiny_models.build_vae() if quick else tiny_models.build_sd_vae()
    cv = tiny_models.build_clip_vision() if quick else tiny_models.build_clip_vision_vitb16()
    latents = torch.randn(n, 4, lat, lat, generator=torch.Generator().manual_seed(0))
    traj = traj_mod.Trajectories(latents[:, None].half(), torch.tensor([0]), torch.tensor([1.0]), 1, ["p"],
                                 torch.zeros(n, dtype=torch.long), list(range(n)),
                                 traj_mod.LatentFacts("SD15", "SD15", 4))
    stock_latents = {"samples": traj.x0[:, 0].float()}

    def ours():
        with torch.inference_mode():
            C["SliderSpaceClipEmbed"].execute(n, trajectories=traj, vae=vae, clip_vision=cv)

    def stock():
        with torch.inference_mode():
            images = C["VAEDecode"]().decode(vae, stock_latents)[0]
            enc = C["CLIPVisionEncode"]
            out = enc.execute(cv, images, "center") if hasattr(enc, "execute") else enc().encode(cv, images, "center")
            return out

    t = interleaved_times({"ours": ours, "stock": stock}, repeats=1 if quick else 3)
    speedup = t["stock"] / t["ours"]
    note = (f"{n} latents {lat}x{lat} -> {lat * 8}px, {'TAESD + tiny CLIP' if quick else 'SD VAE + ViT-B/16'}; "
            f"ours {n / t['ours']:.2f} img/s, stock {n / t['stock']:.2f} img/s")
    return [Result("P2", "images decoded+embedded per second, ours / stock VAEDecode->CLIPVisionEncode",
                   speedup, GOAL, check(speedup, GOAL), note)]
