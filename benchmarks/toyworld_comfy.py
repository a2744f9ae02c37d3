"""ToyWorld loaded in real ComfyUI for the F5–F11 rows: boot once, load through the pack's Load ToyWorld node,
encode with stock CLIP Text Encode, sample with ComfyUI's own sampler.

``sample`` calls ``comfy.sample.sample`` (what KSampler calls) with ToyWorld's per-seed noise, scaled so the
run starts where ToyWorld's native Euler sampler starts (tests/comfy/test_toyworld_comfy.py checks the two
agree to 1e-4): seed ``s`` gives the same image here as in the SliderSpace F rows (``toyworld.host``), so
rows of the two systems are measured on the same images.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch

STEPS, CFG, SIZE = 16, 2.0, 32
SAMPLER, SCHEDULER = "euler", "karras"
"""ToyWorld's defaults: 32×32, 16 Euler/Karras steps, guidance 2."""


@cache
def nodes() -> dict:
    """ComfyUI's node classes with the pack loaded (ComfyUI from COMFYUI_PATH, CPU, one thread)."""
    from tests.comfy.host import boot

    torch.set_num_threads(1)
    return boot()["classes"]


def out(node_output) -> tuple:
    return tuple(node_output.args) if hasattr(node_output, "args") else tuple(node_output)


@cache
def world() -> tuple:
    """``(MODEL, CLIP, VAE, encoder)`` from the Load ToyWorld node."""
    with torch.inference_mode():
        return out(nodes()["SliderSpaceLoadToyWorld"].execute())


def encode(text: str) -> list:
    """Stock CLIP Text Encode on ToyWorld's CLIP (the negative is ``encode("")``)."""
    with torch.inference_mode():
        return nodes()["CLIPTextEncode"]().encode(world()[1], text)[0]


def sample(model, positive: list, negative: list, seeds: Sequence[int], cfg: float = CFG, steps: int = STEPS,
           batch: int = 64) -> torch.Tensor:
    """Final images ``[B, 3, 32, 32]`` in [0, 1]; item i from ``seeds[i]`` (ToyWorld's seed noise).

    ``positive`` may carry one conditioning per item (batch = len(seeds)); then it is sampled in one call.
    """
    import comfy.sample

    from toyworld.host import karras_sigmas, seed_noise

    vae = world()[2]
    sigma_max = float(karras_sigmas(steps)[0])
    per_item = int(positive[0][0].shape[0]) > 1
    chunks = [list(seeds)] if per_item else [list(seeds[i:i + batch]) for i in range(0, len(seeds), batch)]
    images = []
    with torch.inference_mode():
        for chunk in chunks:
            noise = seed_noise(chunk) * sigma_max / (1 + sigma_max**2) ** 0.5
            z = comfy.sample.sample(model, noise, steps, cfg, SAMPLER, SCHEDULER, positive, negative,
                                    torch.zeros_like(noise), disable_pbar=True, seed=0)
            images.append(vae.decode(z).reshape(-1, SIZE, SIZE, 3).movedim(-1, 1).float().clamp(0, 1))
    return torch.cat(images)
