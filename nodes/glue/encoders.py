"""Images for the core: decoding latents with a ComfyUI VAE, CLIP_VISION as a core ``ImageEncoder``, and the
pack's open_clip encoder under ComfyUI's memory management."""

from __future__ import annotations

import hashlib
import weakref

import comfy.model_management as mm
import comfy.model_patcher
import torch
from comfy.ldm.modules.attention import optimized_attention_for_device

from ...sliderspace_core.common.encoders import OpenClipEncoder
from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.sliderspace.trajectories import LatentFacts


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


class ManagedOpenClip:
    """An open_clip encoder that ComfyUI loads to its text-encoder device before each use and may offload when
    it needs room, as it does CLIP_VISION (without it the tower would run wherever it was loaded: the CPU)."""

    def __init__(self, encoder: OpenClipEncoder) -> None:
        self.inner, self.model = encoder, encoder.model  # .model: training freezes the tower's weights
        self.encoder_id, self.image_size, self.mean, self.std = (encoder.encoder_id, encoder.image_size,
                                                                 encoder.mean, encoder.std)
        self.patcher = comfy.model_patcher.ModelPatcher(encoder.model, load_device=mm.text_encoder_device(),
                                                        offload_device=mm.text_encoder_offload_device())

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        mm.load_model_gpu(self.patcher)
        return self.inner.embed_pixels(pixels)


_MANAGED: weakref.WeakKeyDictionary[OpenClipEncoder, ManagedOpenClip] = weakref.WeakKeyDictionary()


def managed(encoder: OpenClipEncoder) -> ManagedOpenClip:
    """The one ComfyUI-managed wrapper of ``encoder`` (one patcher per encoder object, however often it runs)."""
    if encoder not in _MANAGED:
        _MANAGED[encoder] = ManagedOpenClip(encoder)
    return _MANAGED[encoder]


def pick_encoder(clip_vision, encoder):
    """The one connected image encoder (a ComfyUI CLIP_VISION or the pack's open_clip encoder)."""
    if clip_vision is not None and encoder is not None:
        raise InputError("encoder", "both clip_vision and encoder are connected.", "connect only one of them.")
    if clip_vision is not None:
        return ClipVisionEncoder(clip_vision)
    if encoder is not None:
        return managed(encoder) if isinstance(encoder, OpenClipEncoder) else encoder
    raise InputError("clip_vision", "no image encoder is connected.",
                     "connect a CLIP_VISION (Load CLIP Vision) or an open_clip encoder.")
