"""Sampling through ComfyUI: text encoding, trajectories that keep x̂0 at every step, and slider grids.

Per-step callbacks chain ``latent_preview.prepare_callback``, so the UI shows its usual progress and
preview while the pack keeps what it needs.
"""

from __future__ import annotations

import comfy.model_management as mm
import comfy.sample
import comfy.samplers
import latent_preview
import torch

from ...sliderspace_core.sliderspace.export import merge_sliders
from ...sliderspace_core.sliderspace.grid import ZERO, Cell
from ...sliderspace_core.sliderspace.trajectories import Trajectories, TrajectoryBuffer, plan_batches
from .encoders import vae_decoder
from .family import latent_facts
from .patching import apply_deltas

SEED_MOD = 2**64



def empty_latent(model, batch: int, width: int, height: int) -> torch.Tensor:
    """Zeros of the MODEL's latent shape for ``width × height`` images (as Empty Latent Image, then
    ``fix_empty_latent_channels``); pixel-space models (``spacial_downscale_ratio`` 1) get full size."""
    ratio = int(getattr(model.get_model_object("latent_format"), "spacial_downscale_ratio", 8))
    empty = torch.zeros([batch, 4, max(1, height // ratio), max(1, width // ratio)])
    return comfy.sample.fix_empty_latent_channels(model, empty)

def job_callback(model, total_steps: int):
    """Per-step callbacks for a job of several sampler runs, over ONE ``latent_preview.prepare_callback``.

    ``job_callback(model, total)(base, keep)`` is the callback of the run whose steps start at ``base``: it
    calls ``keep(step, x0)`` (if given), honours interrupt, and advances ComfyUI's progress bar and live
    preview to ``base + step + 1`` of ``total_steps``.
    """
    preview = latent_preview.prepare_callback(model, total_steps)

    def for_run(base: int, keep=None):
        def callback(step: int, x0: torch.Tensor, x: torch.Tensor, total: int) -> None:
            if keep is not None:
                keep(step, x0)
            mm.throw_exception_if_processing_interrupted()
            preview(base + step, x0, x, total_steps)

        return callback

    return for_run


def encode_text(clip, text: str) -> list:
    """CONDITIONING for ``text``, as the stock CLIPTextEncode node builds it."""
    tokens = clip.tokenize(text)
    return clip.encode_from_tokens_scheduled(tokens)


def sample_trajectories(model, positive: list[list], negative: list, prompts: list[str], n: int, seed: int,
                        steps: int, cfg: float, sampler_name: str, scheduler: str, width: int, height: int,
                        batch_size: int, keep: list[int], store_dtype: torch.dtype = torch.float16,
                        ) -> tuple[Trajectories, torch.Tensor]:
    """Run ``n`` trajectories and keep x̂0 (VAE latent space) at the ``keep`` steps.

    ``positive[p]`` is the conditioning of ``prompts[p]``. Trajectory ``i`` uses prompt ``i % P`` and
    the noise a batch-1 KSampler would draw with seed ``seed + i``. Returns the trajectories and the
    final latents ``[n, C, h, w]`` in trajectory order.
    """
    batches = plan_batches(n, len(prompts), batch_size)
    ksampler = comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler=sampler_name,
                                       scheduler=scheduler, denoise=1.0, model_options=model.model_options)
    sigmas = ksampler.sigmas.detach().float().cpu()  # trajectory metadata: the trajectories type keeps it on the CPU
    run_callback = job_callback(model, len(batches) * steps)
    seeds = [(seed + i) % SEED_MOD for i in range(n)]
    buffer: TrajectoryBuffer | None = None
    finals: torch.Tensor | None = None
    for b, batch in enumerate(batches):
        latent_image = empty_latent(model, len(batch), width, height)
        noise = torch.cat([comfy.sample.prepare_noise(latent_image[:1], seeds[i]) for i in batch])
        if buffer is None:
            buffer = TrajectoryBuffer(n, keep, tuple(latent_image.shape[1:]), store_dtype)

        def keep_x0(step: int, x0: torch.Tensor, batch=batch, buffer: TrajectoryBuffer = buffer) -> None:
            if buffer.wants(step):
                buffer.put(batch, step, model.model.process_latent_out(x0))

        samples = ksampler.sample(noise, positive[batch[0] % len(prompts)], negative, cfg=cfg,
                                  latent_image=latent_image, callback=run_callback(b * steps, keep_x0),
                                  disable_pbar=True, seed=seeds[batch[0]])
        samples = samples.to(mm.intermediate_device())  # the LATENT output lives where ComfyUI keeps latents
        if finals is None:
            finals = torch.empty((n, *samples.shape[1:]), dtype=samples.dtype, device=samples.device)
        finals[torch.as_tensor(batch, device=samples.device)] = samples
    assert buffer is not None and finals is not None
    if not buffer.complete():
        raise RuntimeError("the sampler skipped some kept steps; this sampler's callback is not per-step")
    keep_t = torch.as_tensor(keep, dtype=torch.long)
    traj = Trajectories(x0=buffer.x0, steps=keep_t, sigmas=sigmas[keep_t], total_steps=steps, prompts=prompts,
                        prompt_index=torch.arange(n) % len(prompts), seeds=seeds, latent=latent_facts(model),
                        config={"sampler": sampler_name, "scheduler": scheduler, "cfg": cfg, "steps": steps,
                                "width": width, "height": height, "seed": seed})
    return traj, finals


def render_cells(model, vae, bank, cells: list[Cell], positive, negative, seed: int, steps: int, cfg: float,
                 sampler_name: str, scheduler: str, width: int, height: int,
                 start_percent: float, end_percent: float = 1.0) -> dict[Cell, torch.Tensor]:
    """Sample and decode every cell from the SAME noise; ``ZERO`` is the model without sliders; sliders act in the
    sigma window ``start_percent``–``end_percent`` (as Apply Slider Bank).

    Returns ``Cell → [H, W, 3]`` images (first frame for video VAEs).
    """
    latent = empty_latent(model, 1, width, height).to(mm.intermediate_device())
    noise = comfy.sample.prepare_noise(latent, seed)
    vae_decoder(vae, None, int(latent.shape[1]))  # refuses a VAE of another model family
    run_callback = job_callback(model, len(cells) * steps)
    out: dict[Cell, torch.Tensor] = {}
    for k, cell in enumerate(cells):
        deltas = {}
        if cell != ZERO:
            deltas = merge_sliders(bank, {cell.slider: cell.scale})
        patched = apply_deltas(model, deltas, start_percent, end_percent, tag="grid")
        samples = comfy.sample.sample(patched, noise, steps, cfg, sampler_name, scheduler, positive, negative,
                                      latent, callback=run_callback(k * steps), disable_pbar=True, seed=seed)
        images = vae.decode(samples)  # as stock VAEDecode does, so the zero cell matches it bit for bit
        out[cell] = images.reshape(-1, *images.shape[-3:])[0, ..., :3].float().cpu()
    return out
