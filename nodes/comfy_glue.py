"""The one module that talks to ComfyUI internals: sampling, decoding, CLIP vision, progress.

Everything here adapts ComfyUI objects to the protocols of ``sliderspace_core``; the algorithms
stay in the core.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import comfy.model_management as mm
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch
from comfy.ldm.modules.attention import optimized_attention_for_device

from ..sliderspace_core.errors import InputError
from ..sliderspace_core.trajectories import LatentFacts, Trajectories, TrajectoryBuffer, plan_batches

SEED_MOD = 2**64


@contextlib.contextmanager
def node_errors(node: str) -> Iterator[None]:
    """Attribute core :class:`InputError` s to ``node`` so the message names it."""
    try:
        yield
    except InputError as e:
        if e.node is None:
            raise e.for_node(node) from None
        raise


class Progress:
    """A ComfyUI progress bar that also honours the interrupt button at every update."""

    def __init__(self, total: int) -> None:
        self.total = max(1, int(total))
        self.bar = comfy.utils.ProgressBar(self.total)

    def __call__(self, done: int, total: int | None = None, preview: object = None) -> None:
        mm.throw_exception_if_processing_interrupted()
        self.bar.update_absolute(done, total or self.total, preview)


def encode_text(clip, text: str) -> list:
    """CONDITIONING for ``text``, as the stock CLIPTextEncode node builds it."""
    tokens = clip.tokenize(text)
    return clip.encode_from_tokens_scheduled(tokens)


def latent_facts(model) -> LatentFacts:
    fmt = model.get_model_object("latent_format")
    return LatentFacts(family=type(model.model.model_config).__name__, latent_format=type(fmt).__name__,
                       channels=int(fmt.latent_channels))


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
    sigmas = ksampler.sigmas.detach().float().cpu()
    previewer = latent_preview.get_previewer(model.load_device, model.model.latent_format)
    progress = Progress(n * steps)
    seeds = [(seed + i) % SEED_MOD for i in range(n)]
    buffer: TrajectoryBuffer | None = None
    finals: torch.Tensor | None = None
    done = 0
    for batch in batches:
        empty = torch.zeros([len(batch), 4, height // 8, width // 8])
        latent_image = comfy.sample.fix_empty_latent_channels(model, empty)
        noise = torch.cat([comfy.sample.prepare_noise(latent_image[:1], seeds[i]) for i in batch])
        if buffer is None:
            buffer = TrajectoryBuffer(n, keep, tuple(latent_image.shape[1:]), store_dtype)
        base = done

        def callback(step: int, x0: torch.Tensor, x: torch.Tensor, total: int, batch=batch, base=base,
                     buffer: TrajectoryBuffer = buffer) -> None:
            if buffer.wants(step):
                buffer.put(batch, step, model.model.process_latent_out(x0))
            preview = previewer.decode_latent_to_preview_image("JPEG", x0) if previewer else None
            progress(base + (step + 1) * len(batch), None, preview)

        samples = ksampler.sample(noise, positive[batch[0] % len(prompts)], negative, cfg=cfg,
                                  latent_image=latent_image, callback=callback, disable_pbar=True,
                                  seed=seeds[batch[0]])
        samples = samples.to(mm.intermediate_device())
        if finals is None:
            finals = torch.empty((n, *samples.shape[1:]), dtype=samples.dtype)
        finals[torch.as_tensor(batch)] = samples.cpu()
        done += steps * len(batch)
        progress(done)
    assert buffer is not None and finals is not None
    if not buffer.complete():
        raise RuntimeError("the sampler skipped some kept steps; this sampler's callback is not per-step")
    keep_t = torch.as_tensor(keep, dtype=torch.long)
    traj = Trajectories(x0=buffer.x0, steps=keep_t, sigmas=sigmas[keep_t], total_steps=steps, prompts=prompts,
                        prompt_index=torch.arange(n) % len(prompts), seeds=seeds, latent=latent_facts(model),
                        config={"sampler": sampler_name, "scheduler": scheduler, "cfg": cfg, "steps": steps,
                                "width": width, "height": height, "seed": seed})
    return traj, finals


def vae_decoder(vae, facts: LatentFacts | None, channels: int):
    """A ``decode(latents) -> images [B, H, W, 3] in [0, 1]`` function over a ComfyUI VAE.

    Refuses latents the VAE cannot decode (another family's channel count) with a clear error.
    """
    vae_ch = int(getattr(vae, "latent_channels", channels))
    if vae_ch != channels:
        fam = f" from a {facts.family} model" if facts else ""
        raise InputError("vae", f"the trajectories hold {channels}-channel latents{fam}, but this VAE decodes "
                         f"{vae_ch}-channel latents (another model family).",
                         "connect the VAE of the checkpoint whose MODEL sampled the trajectories.")

    def decode(latents: torch.Tensor) -> torch.Tensor:
        latents = latents.float()
        if latents.ndim == 4:  # channels-last convolutions: same result to ~1e-5, ~10 % faster on CPU
            latents = latents.contiguous(memory_format=torch.channels_last)
        images = vae.decode(latents)
        if images.ndim == 5:  # video VAEs return [B, T, H, W, C]; embed every frame
            images = images.reshape(-1, *images.shape[-3:])
        return images[..., :3]

    return decode


class ClipVisionEncoder:
    """ComfyUI CLIP_VISION as a core ``ImageEncoder``: same weights, the core's preprocessing.

    Calls the projection model directly instead of ``encode_image`` because that path rounds pixels
    to 8 bits (not differentiable) and returns hidden states we do not need.
    """

    def __init__(self, clip_vision) -> None:
        self.cv = clip_vision
        self.image_size = int(clip_vision.image_size)
        self.mean = tuple(clip_vision.image_mean)
        self.std = tuple(clip_vision.image_std)
        self.encoder_id = self._fingerprint()

    def _fingerprint(self) -> str:
        sd = self.cv.model.state_dict()
        h = hashlib.sha1()
        for k in sorted(sd)[:8]:
            h.update(k.encode())
            h.update(sd[k].detach().float().flatten()[:256].cpu().numpy().tobytes())
        return f"comfy_clip_vision:{type(self.cv.model).__name__}:{self.image_size}:{h.hexdigest()[:12]}"

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Projected image embeddings; out-of-place so autograd works (CLIPLayer adds in place)."""
        mm.load_model_gpu(self.cv.patcher)
        model = self.cv.model
        pixels = pixels.to(self.cv.load_device)
        vm = getattr(model, "vision_model", None)
        if vm is None or not hasattr(vm, "encoder"):  # e.g. DINOv2: no in-place trap known; use it as is
            return model(pixel_values=pixels, intermediate_output=-2)[2]
        x = vm.pre_layrnorm(vm.embeddings(pixels))
        attention = optimized_attention_for_device(x.device, mask=False, small_input=True)
        for layer in vm.encoder.layers:
            x = x + layer.self_attn(layer.layer_norm1(x), None, attention)
            x = x + layer.mlp(layer.layer_norm2(x))
        pooled = vm.post_layernorm(x) if vm.output_layernorm else vm.post_layernorm(x[:, 0, :])
        out = model.visual_projection(pooled)
        return out.mean(dim=1) if out.ndim == 3 else out  # SigLIP towers pool over tokens


def pick_encoder(clip_vision, encoder):
    """The one connected image encoder (a ComfyUI CLIP_VISION or the pack's open_clip encoder)."""
    if clip_vision is not None and encoder is not None:
        raise InputError("encoder", "both clip_vision and encoder are connected.", "connect only one of them.")
    if clip_vision is not None:
        return ClipVisionEncoder(clip_vision)
    if encoder is not None:
        return encoder
    raise InputError("clip_vision", "no image encoder is connected.",
                     "connect a CLIP_VISION (Load CLIP Vision) or an open_clip encoder.")
