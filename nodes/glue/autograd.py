"""Autograd inside ComfyUI: the core training host over a ModelPatcher, VAE and image encoder.

Training runs inside ``guider.sample`` with a custom ``Sampler`` (the idiom of ComfyUI's own
``nodes_train.py``), so ComfyUI loads the model, processes the conditioning for any model family and
applies its wrappers; our loop then calls the guider as ``predict_x0``. Slider deltas are per-item
forward hooks that exist only while training runs; base weights are never written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import comfy.model_management as mm
import comfy.samplers
import torch
from comfy_extras.nodes_custom_sampler import Guider_Basic
from torch import nn


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` on the base weights for the duration; restore each flag exactly.

    Inference tensors (weights loaded inside the executor's inference mode) are left alone: their flag
    cannot be set back outside inference mode, and :func:`trainable_weights` swaps them out anyway.
    """
    flags = [(p, p.requires_grad) for p in module.parameters() if not p.is_inference() and p.requires_grad]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def trainable_weights(*modules: nn.Module) -> Iterator[None]:
    """Let autograd save these modules' weights for backward, without changing them.

    ComfyUI runs nodes under ``torch.inference_mode()``, so weights a loader created there are inference
    tensors, which autograd refuses to save. For the duration, each such parameter/buffer is replaced by
    a normal copy with identical values (no grad); the originals are put back in ``finally``.
    """
    swapped: list[tuple[dict, str, torch.Tensor]] = []
    try:
        with torch.inference_mode(False):
            for module in modules:
                for sub in module.modules():
                    for store in (sub._parameters, sub._buffers):
                        for name, t in list(store.items()):
                            if t is not None and t.is_inference():
                                swapped.append((store, name, t))
                                copy = t.clone()
                                store[name] = nn.Parameter(copy, requires_grad=False) if store is \
                                    sub._parameters else copy
        yield
    finally:
        for store, name, t in reversed(swapped):
            store[name] = t


@contextlib.contextmanager
def cloned_norm_inputs(diffusion_model: nn.Module) -> Iterator[None]:
    """FLUX only: give every LayerNorm a cloned input, so the in-place adds of ``comfy/ldm/flux/layers.py``
    (``img +=``, ``x +=``) cannot overwrite what a LayerNorm saved for backward."""
    handles = []
    if type(diffusion_model).__module__.startswith("comfy.ldm.flux"):
        for m in diffusion_model.modules():
            if isinstance(m, nn.LayerNorm):
                handles.append(m.register_forward_pre_hook(lambda _m, args: (args[0].clone(), *args[1:])))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


CHECKPOINTED = ("input_blocks", "middle_block", "output_blocks", "double_blocks", "single_blocks", "joint_blocks")
"""Top-level block containers of UNets, FLUX and SD3 whose blocks are recomputed in backward when checkpointing."""


@contextlib.contextmanager
def checkpointed_blocks(diffusion_model: nn.Module, on: bool = True) -> Iterator[None]:
    """Recompute each top-level block's activations in backward instead of keeping them (non-reentrant
    ``torch.utils.checkpoint``): memory of one block instead of the whole net, for one more forward.
    UNet blocks are wrapped layer by layer (ResBlock, SpatialTransformer, ...), since ComfyUI's UNet calls them
    one by one; a test counts the recomputation on every family."""
    from torch.utils.checkpoint import checkpoint

    wrapped: list[nn.Module] = []

    def wrap(block: nn.Module) -> None:
        inner = block.forward

        def fresh(*args, **kwargs):  # FLUX blocks add into their inputs in place: give them copies
            args = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
            kwargs = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
            return inner(*args, **kwargs)

        def forward(*args, **kwargs):
            return checkpoint(fresh, *args, use_reentrant=False, **kwargs)

        block.forward = forward
        wrapped.append(block)

    try:
        for name in CHECKPOINTED if on else ():
            holder = getattr(diffusion_model, name, None)
            blocks = holder if isinstance(holder, nn.ModuleList) else [holder] if isinstance(holder, nn.Module) else []
            for block in blocks:
                if isinstance(block, nn.Sequential):  # a UNet's TimestepEmbedSequential never calls its own
                    for layer in block:               # forward (forward_timestep_embed calls the layers): wrap those
                        wrap(layer)
                else:
                    wrap(block)
        yield
    finally:
        for block in wrapped:
            del block.forward  # the instance attribute: the class's forward shows through again


def clone_conditioning(cond: list) -> list:
    """Normal (non-inference) copies of CONDITIONING tensors, so autograd may save them."""
    out = []
    for t, extras in cond:
        extras = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in extras.items()}
        out.append([t.clone(), extras])
    return out


def vae_decode_differentiable(vae, latent_vae_space: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w]`` VAE latents → ``[B, 3, H, W]`` images in [0, 1], keeping the graph."""
    z = latent_vae_space.to(vae.device, vae.vae_dtype)
    return vae.process_output(vae.first_stage_model.decode(z).float())[:, :3]


def encoder_modules(encoder) -> list[nn.Module]:
    """The torch modules of an image encoder (a ComfyUI CLIP_VISION wrapper, open_clip, or a module itself)."""
    if hasattr(encoder, "cv"):
        return [encoder.cv.model]
    if isinstance(getattr(encoder, "model", None), nn.Module):
        return [encoder.model]
    if isinstance(encoder, nn.Module):  # an encoder that is itself a module (ToyWorld's)
        return [encoder]
    return []


class ComfyTrainHost:
    """``TrainHost`` over the guider a sampler receives (x̂0 in model space) plus VAE and encoder."""

    def __init__(self, model_wrap, extra_args: dict, vae, encoder) -> None:
        self.model_wrap, self.extra_args = model_wrap, extra_args
        self.inner = model_wrap.inner_model
        self.vae, self.encoder = vae, encoder

    def predict_x0(self, x_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.model_wrap(x_t, sigma, **self.extra_args)

    def noised(self, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.inner.model_sampling.noise_scaling(sigma, noise.clone(), x0, False)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return vae_decode_differentiable(self.vae, self.inner.process_latent_out(latent))


class _LoopSampler(comfy.samplers.Sampler):
    """A 'sampler' whose sampling is our training loop; returns the latents unchanged."""

    def __init__(self, run: Callable[[ComfyTrainHost, torch.Tensor], None], vae, encoder) -> None:
        self.run, self.vae, self.encoder = run, vae, encoder

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        nets = [model_wrap.inner_model.diffusion_model, self.vae.first_stage_model, *encoder_modules(self.encoder)]
        with trainable_weights(*nets):  # after ComfyUI loaded (and maybe moved) the models
            self.run(ComfyTrainHost(model_wrap, extra_args, self.vae, self.encoder), latent_image.clone())
        return latent_image


def run_in_comfy(model, positive: list, latents_vae: torch.Tensor, vae, encoder,
                 run: Callable[[ComfyTrainHost, torch.Tensor], None], negative: list | None = None,
                 cfg: float = 1.0) -> None:
    """Call ``run(host, latents_model_space)`` inside ComfyUI's sampling context for ``model``.

    ``latents_vae`` are clean latents in the VAE's space (as trajectories store them). The host's x̂0 is the
    positive prediction alone (``negative`` None, ``cfg`` 1: ComfyUI's ``Guider_Basic``) or the guided one,
    uncond + cfg·(cond − uncond), through ComfyUI's ``CFGGuider`` (at cfg 1 ComfyUI skips the negative).
    """
    extra = [vae.patcher] + ([encoder.cv.patcher] if hasattr(encoder, "cv") else [])
    mm.load_models_gpu([model, *extra], force_full_load=True)
    if negative is None:
        if cfg != 1.0:
            raise ValueError(f"guidance {cfg} needs a negative conditioning")
        guider = Guider_Basic(model)
        guider.set_conds(clone_conditioning(positive))
    else:
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(clone_conditioning(positive), clone_conditioning(negative))
        guider.set_cfg(cfg)
    sigmas = torch.tensor([1.0, 0.0])  # unused by the loop; the guider needs a schedule
    noise = torch.zeros_like(latents_vae)
    guider.sample(noise, latents_vae, _LoopSampler(run, vae, encoder), sigmas, seed=0, disable_pbar=True)


def schedule_sigmas(model, steps: int = 30, scheduler: str = "normal", sampler: str | None = None) -> torch.Tensor:
    """The sigmas a KSampler with ``sampler``/``scheduler``/``steps`` visits on ``model``, without the final 0:
    where training re-noises to (the sampler matters only for those that drop the penultimate sigma)."""
    ks = comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler=sampler, scheduler=scheduler,
                                 denoise=1.0, model_options=model.model_options)
    return ks.sigmas[:-1].float().cpu()


FROM_TRAJECTORIES = "from trajectories"
"""Train Sliders' ``renoise_scheduler`` / ``renoise_steps`` 0: re-noise to the trajectories' own schedule."""
FALLBACK_SCHEDULE = ("normal", 30)
"""Where training re-noises when the trajectories do not record how they were sampled."""


def renoise_schedule(traj_config: dict, total_steps: object, scheduler: str = FROM_TRAJECTORIES,
                     steps: int = 0) -> tuple[str, int, str | None]:
    """``(scheduler, steps, sampler)`` training re-noises to: SliderSpace re-noises a stored sample to a step of the
    schedule the model samples with, so by default the trajectories' own scheduler, step count and sampler;
    ``scheduler`` / ``steps`` (non-zero) override either; :data:`FALLBACK_SCHEDULE` where the trajectories do not
    say. The sampler is kept only while both come from the trajectories (it can drop a sigma of their schedule)."""
    own_scheduler, own_steps = traj_config.get("scheduler"), total_steps
    if own_scheduler not in comfy.samplers.KSampler.SCHEDULERS or not isinstance(own_steps, int) or own_steps < 1:
        own_scheduler, own_steps = FALLBACK_SCHEDULE
    picked = (own_scheduler if scheduler == FROM_TRAJECTORIES else scheduler, steps or own_steps)
    sampler = traj_config.get("sampler") if picked == (traj_config.get("scheduler"), total_steps) else None
    return picked[0], picked[1], sampler if sampler in comfy.samplers.KSampler.SAMPLERS else None
