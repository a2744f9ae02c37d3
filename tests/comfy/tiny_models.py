"""Tiny random models of real ComfyUI classes, built in the test (recipes: COMFYUI_HOST.md)."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass

import torch

SD15_TINY_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [1], "transformer_depth": [1], "channel_mult": [1], "transformer_depth_middle": 1,
    "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8,
    "transformer_depth_output": [1, 1], "use_temporal_attention": False, "use_temporal_resblock": False,
}

CLIP_VISION_TINY = {
    "attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": 128,
    "image_size": 64, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 256,
    "layer_norm_eps": 1e-05, "model_type": "clip_vision_model", "num_attention_heads": 4, "num_channels": 3,
    "num_hidden_layers": 2, "patch_size": 16, "projection_dim": 64, "torch_dtype": "float32",
}


def fill_(module: torch.nn.Module, seed: int) -> None:
    """ComfyUI ops skip init: give EVERY parameter a value (a missed one gives NaN)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 0:
                continue  # TAESD vae_scale / vae_shift keep 1 and 0
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)


@dataclass
class Tiny:
    model: object      # ModelPatcher (SD15-shaped UNet)
    clip: object       # comfy.sd.CLIP with a 1-layer CLIP-L
    vae: object        # comfy.sd.VAE holding TAESD
    clip_vision: object  # comfy.clip_vision.ClipVisionModel, 64 px


def build_model(seed: int = 0):
    import comfy.model_patcher
    import comfy.supported_models

    cfg = comfy.supported_models.SD15(dict(SD15_TINY_UNET))
    base = cfg.get_model({})
    fill_(base.diffusion_model, seed)
    base.diffusion_model.eval()
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"),
                                            offload_device=torch.device("cpu"))


def build_clip(seed: int = 1):
    import comfy.sd
    import comfy.supported_models

    target = comfy.supported_models.SD15(dict(SD15_TINY_UNET)).clip_target()
    clip = comfy.sd.CLIP(target, model_options={"clip_l_model_config": {"num_hidden_layers": 1}})
    fill_(clip.cond_stage_model, seed)
    return clip


def build_vae(seed: int = 2, latent_channels: int = 4):
    import comfy.sd
    import comfy.taesd.taesd

    t = comfy.taesd.taesd.TAESD(latent_channels=latent_channels)
    fill_(t, seed)
    return comfy.sd.VAE(sd=t.state_dict())


def build_clip_vision(seed: int = 3):
    import comfy.clip_vision

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(CLIP_VISION_TINY, f)
    cv = comfy.clip_vision.ClipVisionModel(f.name)
    fill_(cv.model, seed)
    return cv


def build() -> Tiny:
    return Tiny(build_model(), build_clip(), build_vae(), build_clip_vision())


def build_sd_vae(seed: int = 4):
    """A random full-size SD1.x VAE (83 M parameters), as ComfyUI loads one."""
    import comfy.ldm.models.autoencoder
    import comfy.sd

    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    ae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    fill_(ae, seed)
    return comfy.sd.VAE(sd=ae.state_dict())


def build_clip_vision_vitb16(seed: int = 5):
    """A random ViT-B/16 CLIP image tower at 224 px (86 M parameters)."""
    import comfy.clip_vision

    cfg = dict(CLIP_VISION_TINY, hidden_size=768, image_size=224, intermediate_size=3072, num_attention_heads=12,
               num_hidden_layers=12, patch_size=16, projection_dim=512)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
    cv = comfy.clip_vision.ClipVisionModel(f.name)
    fill_(cv.model, seed)
    return cv
