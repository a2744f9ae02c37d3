"""Train Sliders re-noises to the trajectories' own sampling sigmas (issue 24 item 3), run by ComfyUI's executor.

SliderSpace re-noises a stored sample to a step of the schedule the model samples with (SDXL-DMD2: exactly its 4
timesteps). The sigmas training uses are read where ComfyUI hands them to the denoiser: a UNet function
wrapper on the MODEL that Train Sliders receives records every sigma it is called at.
"""

from __future__ import annotations

import pytest
import torch

from .executor import Graph
from .test_discovery import SIZE

STEPS = 4


def recording(model, seen: list[torch.Tensor]):
    """``model`` with a UNet function wrapper that records the sigma of every denoiser call."""
    m = model.clone()

    def wrapper(apply_model, args):
        seen.append(args["timestep"].detach().float().cpu().reshape(-1).clone())
        return apply_model(args["input"], args["timestep"], **args["c"])

    m.set_model_unet_function_wrapper(wrapper)
    return m


def sampler_sigmas(model, scheduler: str, steps: int) -> torch.Tensor:
    import comfy.samplers

    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps)[:-1].float()


def run_training(tiny, seen: list, **override):
    """Trajectory Sampler (euler, karras, 4 steps) → CLIP Embed → PCA → Train Sliders on the recording MODEL."""
    g = Graph()
    traj = g.node("SliderSpaceTrajectorySampler", model=tiny.model, clip=tiny.clip, prompts="a dog", negative="",
                  trajectories=3, seed=0, steps=STEPS, cfg=5.0, sampler_name="euler", scheduler="karras",
                  width=SIZE, height=SIZE, batch_size=3, keep_steps="every step", keep_every=1,
                  store_dtype="float32")
    emb = g.node("SliderSpaceClipEmbed", trajectories=traj[0], vae=tiny.vae, clip_vision=tiny.clip_vision,
                 batch_size=16)
    basis = g.node("SliderSpacePCADecompose", embeddings=emb[0], n_components=2, method="auto", seed=0)
    pos = g.node("CLIPTextEncode", clip=tiny.clip, text="a dog")
    bank = g.node("SliderSpaceTrainSliders", model=recording(tiny.model, seen), vae=tiny.vae,
                  clip_vision=tiny.clip_vision, positive=pos[0], basis=basis[0], trajectories=traj[0], n_sliders=1,
                  iterations=3, learning_rate=2e-2, rank=1, targets="cross-attention k/v", target_pattern="",
                  sliders_per_step=1, seed=0, bidirectional=False, gradient_checkpointing=False, cfg=1.0,
                  **override)
    return g.run(bank[0])[0]


def assert_subset(seen: list[torch.Tensor], allowed: torch.Tensor) -> None:
    used = torch.cat(seen)
    assert used.numel() > 0, "the denoiser was never called during training"
    gap = (used[:, None] - allowed[None, :]).abs().min(dim=1).values / used
    assert gap.max() < 1e-4, (f"training re-noised to sigmas {sorted({round(float(s), 4) for s in used})}, "
                              f"not a subset of {[round(float(s), 4) for s in allowed]}")


def test_a_4_step_setup_trains_at_the_samplers_own_sigmas(comfy, tiny):
    """Saved workflows without the optional override inputs still validate; training then re-noises only to the
    trajectories' 4 karras sigmas, and the bank records that schedule."""
    seen: list[torch.Tensor] = []
    bank = run_training(tiny, seen)
    assert_subset(seen, sampler_sigmas(tiny.model, "karras", STEPS))
    assert bank.meta.config["renoise_schedule"] == f"karras {STEPS}"


@pytest.mark.parametrize(("scheduler", "steps", "want"), [("normal", 30, ("normal", 30)),
                                                           ("from trajectories", 6, ("karras", 6))])
def test_the_optional_override_picks_another_schedule(comfy, tiny, scheduler, steps, want):
    seen: list[torch.Tensor] = []
    bank = run_training(tiny, seen, renoise_scheduler=scheduler, renoise_steps=steps)
    assert_subset(seen, sampler_sigmas(tiny.model, *want))
    assert bank.meta.config["renoise_schedule"] == f"{want[0]} {want[1]}"
