"""Sampling runs that capture a block's residual update Δ: activation sets for SAE training, and one map
at one step for concept maps. Sampling is the stock ``comfy.sample.sample`` on a keyed clone."""

from __future__ import annotations

import comfy.model_management as mm
import comfy.sample
import comfy.samplers
import torch

from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.common.schedule import SigmaWindow
from ...sliderspace_core.concepts.activations import COND, UNCOND, ActivationSet, ActivationWriter, subsample_positions
from .family import model_family
from .hooks import CAPTURE_KEY, check_block, with_block_hook
from .sampling import empty_latent, job_callback

WHICH = {"cond": (COND,), "uncond": (UNCOND,), "both": (COND, UNCOND)}


def _latent(model, width: int, height: int) -> torch.Tensor:
    return empty_latent(model, 1, width, height)


def collect_activations(model, positive, negative, block: str, folder: str, samples: int, seed: int, steps: int,
                        cfg: float, sampler_name: str, scheduler: str, width: int, height: int, which: str,
                        start_percent: float, end_percent: float, keep_per_map: int,
                        store_dtype: torch.dtype = torch.float16) -> ActivationSet:
    """Run ``samples`` batch-1 samplings (seed + i) and stream Δ of ``block`` to shards in ``folder``.

    Every model evaluation whose sigma lies in the window contributes, per wanted half, ``keep_per_map``
    seeded locations (0: all) of its map, with provenance (sigma, cond flag, sample, location).
    """
    if which not in WHICH:
        raise InputError("capture", f"is {which!r}.", "choose cond, uncond or both.")
    if samples < 1:
        raise InputError("samples", f"is {samples}.", "collect at least one sample.")
    d = check_block(model, block)
    ms = model.get_model_object("model_sampling")
    window = SigmaWindow.from_percents(ms.percent_to_sigma, start_percent, end_percent)
    latent = _latent(model, width, height)
    state = {"sample": 0, "calls": 0, "writer": None}
    wanted = WHICH[which]

    def on_block(out_rows, in_rows, labels, sigma, grid):
        delta = (out_rows.float() - in_rows.float())
        w = state["writer"]
        if w is None:
            w = state["writer"] = ActivationWriter(
                folder, block, d, grid[0], grid[1], dtype=store_dtype,
                meta={"family": model_family(model), "sampler": sampler_name, "scheduler": scheduler,
                      "steps": str(steps), "cfg": str(cfg), "seed": str(seed), "capture": which,
                      "start_percent": str(start_percent), "end_percent": str(end_percent)})
        per = delta.shape[0] // max(1, len(labels))
        call = state["calls"]
        state["calls"] += 1
        for c, label in enumerate(labels):
            if label not in wanted:
                continue
            for b in range(c * per, (c + 1) * per):
                pos = subsample_positions(delta.shape[1], keep_per_map, seed, state["sample"], call, label)
                w.add(delta[b, pos.to(delta.device)], sigma, label, state["sample"], pos)
        return None

    patched = with_block_hook(model, CAPTURE_KEY, block, on_block, window, needs_input=True)
    run_callback = job_callback(model, samples * steps)
    try:
        for i in range(samples):
            state["sample"], state["calls"] = i, 0
            noise = comfy.sample.prepare_noise(latent, seed + i)
            comfy.sample.sample(patched, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
                                callback=run_callback(i * steps), disable_pbar=True, seed=seed + i)
        if state["writer"] is None:
            raise InputError("start_percent", "no model evaluation fell inside the time window.",
                             "widen start_percent / end_percent.")
        return state["writer"].close()
    except BaseException:  # interrupted or failed: no partial set is left in the output folder
        if state["writer"] is not None:
            state["writer"].abort()
        raise


def capture_map(model, positive, negative, block: str, step: int, seed: int, steps: int, cfg: float,
                sampler_name: str, scheduler: str, width: int, height: int
                ) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor]:
    """Δ rows ``(h*w, d)`` of the cond half at the first evaluation of ``step``, the grid, and the final
    latent of the (batch-1) run."""
    check_block(model, block)
    if not 0 <= step < steps:
        raise InputError("step", f"is {step} but the run has {steps} steps.", f"use 0..{steps - 1} (0 = first).")
    # only the schedule's values are read (to find the step's sigma); ComfyUI computes schedules on the CPU too
    sigmas = comfy.samplers.KSampler(model, steps=steps, device="cpu", sampler=sampler_name,
                                     scheduler=scheduler).sigmas
    target = float(sigmas[step])
    got: dict = {}

    def on_block(out_rows, in_rows, labels, sigma, grid):
        if "rows" in got or abs(sigma - target) > 1e-5 * max(1.0, abs(target)) or COND not in labels:
            return None
        per = out_rows.shape[0] // max(1, len(labels))
        c = labels.index(COND)
        got["rows"] = (out_rows[c * per] - in_rows[c * per]).float().cpu()
        got["grid"] = grid
        return None

    patched = with_block_hook(model, CAPTURE_KEY, block, on_block, None, needs_input=True)
    latent = _latent(model, width, height)
    noise = comfy.sample.prepare_noise(latent, seed)
    out = comfy.sample.sample(patched, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
                              callback=job_callback(model, steps)(0), disable_pbar=True, seed=seed)
    if "rows" not in got:
        raise InputError("step", f"step {step} (sigma {target:.4g}) saw no cond evaluation of {block}.",
                         "choose another step or sampler.")
    return got["rows"], got["grid"], out.to(mm.intermediate_device())
