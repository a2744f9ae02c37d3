"""GPU benchmark: discovery + slider training on FULL-SIZE random SDXL or FLUX-dev weights, through the pack's
nodes in an in-process ComfyUI; reports wall times and peak GPU memory per phase as one JSON line.

    python benchmarks/gpu_families.py --family sdxl        # 1000 trajectories, 32 sliders (the issue's goal)
    python benchmarks/gpu_families.py --family flux        # fp8 weights, gradient checkpointing
    python benchmarks/gpu_families.py --family sdxl --dry-run   # tiny shapes on CPU: checks the script runs

Goals (issue 13): 32 SDXL sliders with 1000 trajectories in < 15 min on one H100-class GPU; FLUX slider training
< 24 GB peak. Weights are random (timing and memory do not depend on their values). The text encoders are
shallow (their output shapes are real; they run once, outside the timed phases); decoding uses a TAESD-style
VAE and embedding a random ViT-B/16 CLIP image tower, as the paper's cheap decoder + encoder.
Needs COMFYUI_PATH (or the provisioned .hosts/comfyui).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.comfy's model builders (the pack itself loads through ComfyUI)

SDXL_FULL = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10], "channel_mult": [1, 2, 4],
    "transformer_depth_middle": 10, "use_linear_in_transformer": True, "context_dim": 2048, "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
FLUX_DEV_FULL = {
    "image_model": "flux", "guidance_embed": True, "in_channels": 16, "out_channels": 16, "vec_in_dim": 768,
    "context_in_dim": 4096, "hidden_size": 3072, "mlp_ratio": 4.0, "num_heads": 24, "depth": 19,
    "depth_single_blocks": 38, "axes_dim": [16, 56, 56], "theta": 10000, "patch_size": 2, "qkv_bias": True,
}
TEXT_FULL_WIDTH = {  # real output widths, one/three layers (the conditioning's values do not matter here)
    "sdxl": {"clip_l_model_config": {"num_hidden_layers": 3}, "clip_g_model_config": {"num_hidden_layers": 3}},
    "flux": {"clip_l_model_config": {"num_hidden_layers": 1}, "t5xxl_model_config": {"num_layers": 1}},
}
DEFAULTS = {  # the settings: distilled few-step sampling (SDXL-DMD2 / FLUX-schnell style), 32 sliders
    "sdxl": {"trajectories": 1000, "steps": 4, "cfg": 1.0, "size": 1024, "sliders": 32, "iterations": 3000,
             "batch": 8, "weights": "fp16", "checkpointing": False},
    "flux": {"trajectories": 200, "steps": 4, "cfg": 1.0, "size": 1024, "sliders": 32, "iterations": 3000,
             "batch": 4, "weights": "fp8", "checkpointing": True},
}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.float8_e4m3fn, "fp32": torch.float32}


def boot(cpu: bool) -> dict:
    """ComfyUI in-process (GPU unless ``cpu``) with this pack loaded by ComfyUI's own loader."""
    import asyncio
    import os

    path = os.environ.get("COMFYUI_PATH") or str(ROOT / ".hosts" / "comfyui")
    sys.path.insert(0, path)
    mod = sys.modules.get("nodes")
    if mod is not None and not str(getattr(mod, "__file__", "")).startswith(path):
        del sys.modules["nodes"]
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = cpu
    comfy.cli_args.args.use_pytorch_cross_attention = True
    comfy.cli_args.args.disable_api_nodes = True
    import comfy.model_management  # noqa: F401  (reads the args above)

    import nodes as comfy_nodes

    if "SliderSpaceTrainSliders" not in comfy_nodes.NODE_CLASS_MAPPINGS:
        assert asyncio.run(comfy_nodes.load_custom_node(str(ROOT))), "ComfyUI failed to load the pack"
    return comfy_nodes.NODE_CLASS_MAPPINGS


@torch.no_grad()
def fill_random_(module: torch.nn.Module, seed: int = 0) -> None:
    """normal(0, 1/√fan_in) for ≥2-D weights, 1 / 0 for norms and biases, in place on the module's device."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    for name, p in module.named_parameters():
        if p.ndim == 0:
            continue
        if p.ndim >= 2:
            cpu = torch.randn(p.shape, generator=g, dtype=torch.float32) / p[0].numel() ** 0.5
            p.copy_(cpu.to(p.device).to(p.dtype))
        elif name.endswith("bias"):
            p.zero_()
        else:
            p.fill_(1.0)


def full_family(family: str, weights: str, device: torch.device):
    """MODEL / CLIP / VAE / CLIP_VISION at full denoiser size (random), on ``device``."""
    import comfy.model_patcher
    import comfy.sd
    import comfy.supported_models

    families, tiny_models = _builders()
    name, unet = ("SDXL", SDXL_FULL) if family == "sdxl" else ("Flux", FLUX_DEV_FULL)
    cfg = getattr(comfy.supported_models, name)(dict(unet))
    compute = torch.float16 if family == "sdxl" else torch.bfloat16
    cfg.set_inference_dtype(DTYPES[weights], compute)
    base = cfg.get_model({}, device=device)
    fill_random_(base.diffusion_model)
    model = comfy.model_patcher.ModelPatcher(base, load_device=device, offload_device=torch.device("cpu"))
    clip = comfy.sd.CLIP(cfg.clip_target({}), model_options=dict(TEXT_FULL_WIDTH[family], dtype=torch.float32))
    tiny_models.fill_(clip.cond_stage_model, 1)
    return model, clip, families.build_vae(name), tiny_models.build_clip_vision_vitb16()


def tiny_family(family: str):
    families, tiny_models = _builders()
    f = families.build_family("SDXL" if family == "sdxl" else "Flux")
    return f.model, f.clip, f.vae, tiny_models.build_clip_vision()


def _builders():
    """tests/comfy's builders, whether this file runs as a script or is imported inside the pack (tests)."""
    if __package__ and "." in __package__:
        from ..tests.comfy import families, tiny_models
    else:
        from tests.comfy import families, tiny_models
    return families, tiny_models


def _out(node_output):
    return node_output.args if hasattr(node_output, "args") else node_output


def run(family: str, dry_run: bool, **kw) -> dict:
    settings = dict(DEFAULTS[family], **{k: v for k, v in kw.items() if v is not None})
    if dry_run:
        settings.update(trajectories=2, steps=2, size=32, sliders=2, iterations=2, batch=2)
    cuda = torch.cuda.is_available() and not dry_run
    _builders()  # before ComfyUI's folder joins sys.path (it has a tests/ of its own)
    C = boot(cpu=not cuda)
    device = torch.device("cuda" if cuda else "cpu")
    t0 = time.perf_counter()
    model, clip, vae, cv = tiny_family(family) if dry_run else full_family(family, settings["weights"], device)
    report = {"family": family, "dry_run": dry_run, "device": torch.cuda.get_device_name() if cuda else "cpu",
              "settings": settings, "build_s": round(time.perf_counter() - t0, 1),
              "denoiser_params_m": round(sum(p.numel() for p in model.model.diffusion_model.parameters()) / 1e6, 1)}
    phases = {}

    def phase(name, fn):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        with torch.inference_mode():
            out = fn()
        if cuda:
            torch.cuda.synchronize()
        phases[name] = {"s": round(time.perf_counter() - t, 1)}
        if cuda:
            phases[name]["peak_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 2)
        return out

    s = settings
    traj, _ = phase("trajectories", lambda: _out(C["SliderSpaceTrajectorySampler"].execute(
        model, "a photo of a person", "", s["trajectories"], 0, s["steps"], s["cfg"], "euler",
        "sgm_uniform" if family == "sdxl" else "simple", s["size"], s["size"], s["batch"], "every step", 1,
        "float16", clip=clip)))
    emb = phase("embed", lambda: _out(C["SliderSpaceClipEmbed"].execute(32, trajectories=traj, vae=vae,
                                                                        clip_vision=cv))[0])
    basis = phase("pca", lambda: _out(C["SliderSpacePCADecompose"].execute(emb, s["sliders"], "auto", 0))[0])
    with torch.inference_mode():
        pos = C["CLIPTextEncode"]().encode(clip, "a photo of a person")[0]
    phase("train", lambda: _out(C["SliderSpaceTrainSliders"].execute(
        model, vae, pos, basis, traj, s["sliders"], s["iterations"], 2e-3, 1, "auto", "", 3, 0, False,
        s["checkpointing"], clip_vision=cv)))
    report["phases"] = phases
    report["discovery_and_training_s"] = round(sum(p["s"] for p in phases.values()), 1)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=("sdxl", "flux"), required=True)
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU (checks the script, measures nothing)")
    for k in ("trajectories", "steps", "size", "sliders", "iterations", "batch"):
        ap.add_argument(f"--{k}", type=int)
    ap.add_argument("--cfg", type=float)
    ap.add_argument("--weights", choices=tuple(DTYPES))
    ap.add_argument("--checkpointing", type=lambda v: v.lower() in ("1", "true", "yes"))
    args = vars(ap.parse_args(argv))
    family, dry = args.pop("family"), args.pop("dry_run")
    print(json.dumps(run(family, dry, **args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
