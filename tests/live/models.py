"""Model files for the live tiers (e2e, browser), generated at test time and never committed.

Builds, under the ordinary file names the example workflows use:

- ``checkpoints/v1-5-pruned-emaonly.safetensors`` — a full checkpoint (tiny SD1.5-shaped UNet, full-size
  random CLIP-L, TAESD), fp16, ~289 MB, loaded by the stock Load Checkpoint;
- ``clip_vision/clip_vision_vit_l14.safetensors`` — a random full ViT-L/14 image tower (~600 MB fp16), which
  the stock Load CLIP Vision detects as ViT-L;
- ``sliderspace/sliderspace_bank_00001.safetensors`` — a random, labelled 4-slider bank over that
  checkpoint's cross-attention k/v (no training: the live tiers test plumbing, the comfy tier tests training),
  and ``sliderspace/dog_sliders.safetensors``, a 2-slider one (the widget must follow the bank's size).

Run as ``python -m tests.live.models DIR`` (needs COMFYUI_PATH). Files are built under a temp name and
renamed, so a cache folder never holds a half-written file; existing files are reused.
"""

from __future__ import annotations

import os
import pathlib
import sys

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
CLIP_VISION = "clip_vision_vit_l14.safetensors"
BANK = "sliderspace_bank_00001.safetensors"
BANK_LABELS = ["smile", "older", "sunny", "painterly"]
BANK_SMALL = "dog_sliders.safetensors"
BANK_SMALL_LABELS = ["fluffy", "running"]
FILES = {"checkpoints": CHECKPOINT, "clip_vision": CLIP_VISION}
BANKS = {BANK: BANK_LABELS, BANK_SMALL: BANK_SMALL_LABELS}


def missing(root: pathlib.Path) -> list[str]:
    """The files of :data:`FILES` and :data:`BANKS` not yet under ``root``."""
    want = [f"{d}/{n}" for d, n in FILES.items()] + [f"sliderspace/{n}" for n in BANKS]
    return [f for f in want if not (root / f).is_file()]


def _tmp(path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def _half(sd: dict) -> dict:
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}


def build_checkpoint(path: pathlib.Path) -> None:
    import comfy.sd
    import comfy.supported_models
    import comfy.utils

    from ..comfy import tiny_models as tm

    model = tm.build_model(seed=0)
    clip = comfy.sd.CLIP(comfy.supported_models.SD15(dict(tm.SD15_TINY_UNET)).clip_target())
    tm.fill_(clip.cond_stage_model, seed=1)  # full-size CLIP-L: a partial one gives NaN through the loader
    vae = tm.build_vae(seed=2)
    sd = model.model.state_dict_for_saving(clip.get_sd(), vae.get_sd(), None)
    tmp = _tmp(path)
    comfy.utils.save_torch_file(_half(sd), str(tmp))
    os.replace(tmp, path)


def build_clip_vision(path: pathlib.Path) -> None:
    import comfy.clip_vision
    import comfy.utils

    from ..comfy import tiny_models as tm

    cfg = os.path.join(os.path.dirname(comfy.clip_vision.__file__), "clip_vision_config_vitl.json")
    cv = comfy.clip_vision.ClipVisionModel(cfg)
    tm.fill_(cv.model, seed=3)
    tmp = _tmp(path)
    comfy.utils.save_torch_file(_half(cv.get_sd()), str(tmp))
    os.replace(tmp, path)


def build_bank(path: pathlib.Path, checkpoint: pathlib.Path, labels: list[str], seed: int) -> None:
    import comfy.sd
    import torch

    from ..comfy.host import pack_module

    ad, bk = pack_module("sliderspace_core.sliderspace.adapters"), pack_module("sliderspace_core.sliderspace.bank")
    bg = pack_module("nodes.glue.family")
    model = comfy.sd.load_checkpoint_guess_config(str(checkpoint), output_vae=False, output_clip=False)[0]
    modules = bg.target_modules(model.model.diffusion_model, "cross-attention k/v")
    shapes = {n: (m.out_features, m.in_features) for n, m in modules.items()}
    adapters = ad.SliderAdapters(shapes, len(labels), seed=seed)
    with torch.no_grad():
        for p in adapters.up.values():
            p.normal_(0, 0.2, generator=torch.Generator().manual_seed(seed + 1))
    sliders = adapters.export_sliders()
    for s, label in zip(sliders, labels, strict=True):
        s.label = label
    bank = bk.SliderBank(sliders, bk.BankMeta(**bg.model_facts(model, modules),
                                              config={"generated_by": "tests/live/models.py (random, untrained)"}))
    tmp = _tmp(path)
    bk.save_bank(bank, str(tmp))
    os.replace(tmp, path)


def ensure(root: pathlib.Path) -> None:
    """Build whatever of :data:`FILES` is missing under ``root`` (ComfyUI imported in this process)."""
    from ..comfy.host import boot

    boot()
    ckpt = root / "checkpoints" / CHECKPOINT
    if not ckpt.is_file():
        build_checkpoint(ckpt)
    cv = root / "clip_vision" / CLIP_VISION
    if not cv.is_file():
        build_clip_vision(cv)
    for seed, (name, labels) in enumerate(BANKS.items()):
        bank = root / "sliderspace" / name
        if not bank.is_file():
            build_bank(bank, ckpt, labels, seed=7 + 2 * seed)


if __name__ == "__main__":
    target = pathlib.Path(sys.argv[1]).resolve()
    if missing(target):
        ensure(target)
    print("models ready:", *(f"{d}/{n}" for d, n in FILES.items()), *BANKS)
