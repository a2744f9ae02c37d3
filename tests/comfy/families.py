"""Tiny random models of every family the pack supports, built from ComfyUI's own model configs.

One builder for the tests (and the P6 benchmark): ``build_family("SD15" | "SDXL" | "Flux" | "SD3")`` gives
the family's denoiser (``comfy.supported_models.<family>(tiny unet_config)``), its real ComfyUI text
encoder with tiny depth (SDXL: CLIP-L ‖ CLIP-G → cond [1, 77, 2048] + pooled 1280, size conditioning by
the model class; FLUX: a narrow CLIP-L's pooled vector + a tiny T5 context + the guidance embedding; SD3:
CLIP-L ‖ CLIP-G padded to 4096 + pooled 2048, as ComfyUI runs SD3 without T5) and a TAESD-style VAE with the family's
latent channels and scale/shift (4 for SD1.5/SDXL, 16 for FLUX/SD3), as ComfyUI's ``load_taesd`` sets
them. Every parameter AND buffer is filled (ComfyUI ops skip weight init).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tiny_models import SD15_TINY_UNET, fill_

SDXL_TINY_UNET = {  # SDXL's context/adm sizes and linear projections; tiny channels and depth
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4,
    "model_channels": 64, "num_res_blocks": [1, 1], "transformer_depth": [0, 1], "channel_mult": [1, 2],
    "transformer_depth_middle": 1, "use_linear_in_transformer": True, "context_dim": 2048,
    "num_head_channels": 64, "transformer_depth_output": [0, 0, 1, 1], "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
FLUX_TINY = {  # FLUX-dev layout (mlp_ratio 4, guidance embed, qkv bias), hidden 64, one block of each kind
    "image_model": "flux", "guidance_embed": True, "in_channels": 16, "out_channels": 16, "vec_in_dim": 32,
    "context_in_dim": 64, "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2, "depth": 1,
    "depth_single_blocks": 1, "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 2, "qkv_bias": True,
}
SD3_TINY = {  # SD3 MMDiT layout (16 channels, patch 2, pooled 2048, context 4096); depth 2 → hidden 128
    "in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 2, "input_size": None,
    "pos_embed_scaling_factor": None, "pos_embed_max_size": 8, "num_patches": 64, "adm_in_channels": 2048,
    "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 128}},
    "qk_norm": None, "x_block_self_attn_layers": [],
}
UNETS = {"SD15": SD15_TINY_UNET, "SDXL": SDXL_TINY_UNET, "Flux": FLUX_TINY, "SD3": SD3_TINY}
FAMILIES = tuple(UNETS)
LATENT_CHANNELS = {"SD15": 4, "SDXL": 4, "Flux": 16, "SD3": 16}
TAESD_SCALE_SHIFT = {"SD15": (0.18215, 0.0), "SDXL": (0.13025, 0.0), "Flux": (0.3611, 0.1159),
                     "SD3": (1.5305, 0.0609)}  # what ComfyUI's load_taesd sets for taesd / taesdxl / taef1 / taesd3
ONE_LAYER = {"num_hidden_layers": 1}
THREE_THIN = {"num_hidden_layers": 3, "intermediate_size": 64}  # the penultimate layer (SDXL/SD3) needs 3
TEXT_OPTIONS = {  # ComfyUI's own text encoders at full width, shallow (T5 also narrow: FLUX's tiny context is 64)
    "SD15": {"clip_l_model_config": ONE_LAYER},
    "SDXL": {"clip_l_model_config": THREE_THIN, "clip_g_model_config": THREE_THIN},
    "Flux": {"clip_l_model_config": {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
                                     "num_attention_heads": 2},  # pooled = CLIP-L's width: FLUX's tiny vec_in_dim
             "t5xxl_model_config": {"d_model": 64, "d_ff": 128, "d_kv": 32, "num_heads": 2, "num_layers": 1}},
    "SD3": {"clip_l_model_config": THREE_THIN, "clip_g_model_config": THREE_THIN},
}


def model_config(family: str, dtype: torch.dtype | None = None):
    import comfy.supported_models

    cfg = getattr(comfy.supported_models, family)(dict(UNETS[family]))
    if dtype is not None:
        cfg.set_inference_dtype(dtype, torch.float32)
    return cfg


def build_model(family: str, seed: int = 0, dtype: torch.dtype | None = None):
    """The family's denoiser as a ``ModelPatcher`` (``dtype``: the stored weight dtype, e.g. fp8)."""
    import comfy.model_patcher

    base = model_config(family, dtype).get_model({})
    dm = base.diffusion_model
    fill_(dm, seed)
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for _, b in dm.named_buffers():  # e.g. SD3's pos_embed: torch.empty in the constructor
            if b.is_floating_point() and b.ndim >= 2:
                b.copy_(torch.randn(b.shape, generator=g) * 0.02)
    dm.eval()
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)


def build_clip(family: str, seed: int = 1):
    """The family's real ComfyUI text encoder (``comfy.sd.CLIP``), shallow, random, fp32."""
    import comfy.sd

    target = model_config(family).clip_target({})
    if family == "SD3":  # the config's detection finds no weights in an empty dict: CLIP-L + CLIP-G, no T5
        import comfy.text_encoders.sd3_clip as sd3

        target.clip = sd3.sd3_clip(clip_l=True, clip_g=True, t5=False)
    options = dict(TEXT_OPTIONS[family], dtype=torch.float32)
    clip = comfy.sd.CLIP(target, model_options=options)
    fill_(clip.cond_stage_model, seed)
    return clip


def build_vae(family: str, seed: int = 2):
    """A TAESD-style VAE with the family's latent channels and scale/shift (as ComfyUI's load_taesd)."""
    import comfy.sd
    import comfy.taesd.taesd

    t = comfy.taesd.taesd.TAESD(latent_channels=LATENT_CHANNELS[family])
    fill_(t, seed)
    sd = t.state_dict()
    scale, shift = TAESD_SCALE_SHIFT[family]
    sd["vae_scale"], sd["vae_shift"] = torch.tensor(scale), torch.tensor(shift)
    return comfy.sd.VAE(sd=sd)


@dataclass
class Family:
    name: str
    model: object   # ModelPatcher
    clip: object    # comfy.sd.CLIP
    vae: object     # comfy.sd.VAE (TAESD-style, family channels)

    def encode(self, text: str, **extra) -> list:
        """CONDITIONING as stock CLIPTextEncode builds it, with ``extra`` values set on it (e.g. FLUX
        ``guidance``, SDXL ``width``/``height``), as the stock FluxGuidance / CLIPTextEncodeSDXL nodes do."""
        tokens = self.clip.tokenize(text)
        cond = self.clip.encode_from_tokens_scheduled(tokens)
        if extra:
            import node_helpers

            cond = node_helpers.conditioning_set_values(cond, extra)
        return cond


def build_family(family: str, seed: int = 0) -> Family:
    return Family(family, build_model(family, seed), build_clip(family, seed + 1), build_vae(family, seed + 2))
