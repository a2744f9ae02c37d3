"""Export a mix of sliders at chosen scales as ONE stock LoRA file (SliderSpace §1 step 5, offline).

Sliders ``i`` with scales ``s_i`` merge per module into one LoRA of rank ``R = Σ r_i``: the rank-r factors
are concatenated with ``c_i = s_i · alpha_i / r_i`` folded into ``up``, and the file's alpha is ``R`` so
that ``alpha / rank = 1``. Then ``ΔW = U D = Σ_i s_i ΔW_i`` exactly (up to the chosen dtype).

Key formats (all read by ComfyUI's stock LoraLoader, see COMFYUI_HOST.md "LoRA key formats"):

- ``comfy``: ``diffusion_model.<module>.lora_up.weight / .lora_down.weight / .alpha`` — any family.
- ``kohya``: ``lora_unet_<name with _>.lora_up.weight / .lora_down.weight / .alpha`` — as kohya's
  sd-scripts name them: diffusers module names for SD1/SD2, ComfyUI (LDM) names for SDXL, BFL names for
  FLUX.
- ``peft``: diffusers module names. FLUX: ``transformer.<name>.lora_A.weight / .lora_B.weight`` with fused
  ``qkv``/``linear1`` weights split into their diffusers projections. UNets: ``unet.<name>`` in the diffusers
  attention-processor spelling (``….attn2.processor.to_k_lora.down.weight``, others ``….lora.down.weight``):
  ComfyUI maps diffusers UNet attention keys only in that spelling, and diffusers converts it to PEFT on
  load (``load_lora_adapter`` / ``load_lora_weights``). No alpha key: both hosts then use scale 1.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import torch

from ..common.errors import InputError
from ..common.lowrank import Factors, concat_factors, lora_scale
from ..common.safefile import write_safetensors
from .bank import FORMAT_VERSION, SliderBank, family_group

KeyFormat = Literal["comfy", "kohya", "peft"]
KEY_FORMATS: tuple[str, ...] = ("comfy", "kohya", "peft")
UNET_GROUPS = ("sd1", "sd2", "sdxl", "sdxl_refiner")
DIFFUSERS_NAMED_GROUPS = ("sd1", "sd2")
"""Groups whose kohya files use diffusers module names (the others use the ComfyUI/LDM names)."""


class Target(NamedTuple):
    """One diffusers module that holds rows ``[start, start + rows)`` of a ComfyUI weight."""

    name: str
    start: int = 0
    rows: int | None = None
    """``None``: all rows (the module is the whole weight)."""


DiffusersNames = Mapping[str, Sequence[Target]]
"""ComfyUI module name → its diffusers module(s); built from ComfyUI's own maps by ``nodes/bank_glue.py``."""


def key_formats(family: str) -> tuple[str, ...]:
    """The key formats :func:`bank_to_lora` can write for models of ``family``."""
    g = family_group(family)
    return KEY_FORMATS if g in UNET_GROUPS or g == "flux" else ("comfy",)


def merge_sliders(bank: SliderBank, scales: Mapping[int, float],
                  dtype: torch.dtype = torch.float32) -> dict[str, Factors]:
    """Module → ``(up [out, R], down [R, in])`` with ``up @ down = Σ_i s_i ΔW_i`` (zero scales dropped).

    The bank itself is validated where it enters (load, train, label); here only the scales are checked.
    """
    for i, s in scales.items():
        if not 0 <= int(i) < len(bank):
            raise InputError("scales", f"slider index {i} is out of range: the bank has {len(bank)} "
                             "slider(s).", f"use indices 0..{len(bank) - 1}.")
        if not math.isfinite(float(s)):
            raise InputError("scales", f"slider {i} has a non-finite scale {s}.", "use finite numbers.")
    chosen = [(int(i), float(s)) for i, s in sorted(scales.items()) if float(s) != 0.0]
    if not chosen:
        raise InputError("scales", "select no slider with a non-zero scale: the LoRA would do nothing.",
                         "give at least one 'index:scale' with scale ≠ 0, e.g. '0:1.5'.")
    sliders = [(bank.sliders[i], s) for i, s in chosen]
    return {m: concat_factors(((sl.up[m], sl.down[m], s * lora_scale(sl.alpha, sl.down[m].shape[0]))
                               for sl, s in sliders), dtype) for m in bank.modules}


_ATTN_PROJ = re.compile(r"^(.+\.attn\d*)\.(to_q|to_k|to_v|to_out\.0)$")


def _unet_processor_stem(name: str) -> str:
    """``unet.<name>`` in diffusers' attention-processor spelling (``….attn2.processor.to_k_lora``)."""
    m = _ATTN_PROJ.match(name)
    return f"unet.{m[1]}.processor.{m[2].removesuffix('.0')}_lora" if m else f"unet.{name}.lora"


def _targets(module: str, out_features: int, names: DiffusersNames | None, key_format: str,
             family: str) -> list[tuple[str, int, int]]:
    """(diffusers name, row start, row count) covering every row of ``module`` exactly once."""
    if names is None:
        raise InputError("model", f"{key_format} names for a {family} model need the model's architecture, "
                         "which this bank does not record.",
                         "connect the MODEL the bank was trained on, or export with key_format 'comfy'.")
    targets = names.get(module)
    if not targets:
        raise InputError("key_format", f"module {module!r} has no diffusers name in this {family} model.",
                         "export with key_format 'comfy' (it works for every module).")
    spans = sorted((t.start, out_features - t.start if t.rows is None else t.rows, t.name) for t in targets)
    row = 0
    for start, rows, _ in spans:
        if start != row or rows <= 0:
            break
        row += rows
    if row != out_features:
        raise InputError("key_format", f"module {module!r} ({out_features} rows) is not covered exactly by "
                         f"its diffusers modules {[t.name for t in targets]}.",
                         "export with key_format 'comfy' (it works for every module).")
    return [(name, start, rows) for start, rows, name in spans]


def _pair(stem: str, up: torch.Tensor, down: torch.Tensor, style: str) -> dict[str, torch.Tensor]:
    """The keys of one LoRA pair: ``kohya`` (with alpha = rank), ``peft`` (lora_A/B) or ``procs``."""
    if style == "kohya":
        return {f"{stem}.lora_up.weight": up, f"{stem}.lora_down.weight": down,
                f"{stem}.alpha": torch.tensor(float(down.shape[0]))}
    if style == "peft":
        return {f"{stem}.lora_B.weight": up, f"{stem}.lora_A.weight": down}
    return {f"{stem}.up.weight": up, f"{stem}.down.weight": down}


def bank_to_lora(bank: SliderBank, scales: Mapping[int, float], key_format: KeyFormat, family: str,
                 diffusers_names: DiffusersNames | None = None,
                 dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The LoRA state dict of ``Σ_i scales[i] · slider_i`` in ``key_format`` for a ``family`` model."""
    if key_format not in key_formats(family):
        raise InputError("key_format", f"{key_format!r} is not available for {family or 'unknown'} models "
                         f"(available: {', '.join(key_formats(family))}).", "choose key_format 'comfy'.")
    merged = merge_sliders(bank, scales, dtype)
    group = family_group(family)
    out: dict[str, torch.Tensor] = {}
    for module, (up, down) in merged.items():
        if key_format == "comfy":
            out.update(_pair(f"diffusion_model.{module}", up, down, "kohya"))
        elif key_format == "kohya" and group not in DIFFUSERS_NAMED_GROUPS:
            out.update(_pair("lora_unet_" + module.replace(".", "_"), up, down, "kohya"))
        else:
            for name, start, rows in _targets(module, up.shape[0], diffusers_names, key_format, family):
                part = up[start:start + rows]
                if key_format == "kohya":
                    out.update(_pair("lora_unet_" + name.replace(".", "_"), part, down, "kohya"))
                elif group == "flux":
                    out.update(_pair(f"transformer.{name}", part, down, "peft"))
                else:
                    out.update(_pair(_unet_processor_stem(name), part, down, "procs"))
    return {k: v.contiguous() for k, v in out.items()}


def lora_metadata(bank: SliderBank, scales: Mapping[int, float], key_format: str) -> dict[str, str]:
    """Provenance of an exported LoRA (safetensors metadata; ignored by loaders)."""
    info = {"format_version": FORMAT_VERSION, "key_format": key_format, "family": bank.meta.family,
            "model_fingerprint": bank.meta.model_fingerprint, "encoder_id": bank.meta.encoder_id,
            "prompts": list(bank.meta.prompts),
            "sliders": [{"index": int(i), "scale": float(s), "label": bank.sliders[int(i)].label}
                        for i, s in sorted(scales.items()) if 0 <= int(i) < len(bank)]}
    return {"sliderspace_export": json.dumps(info, ensure_ascii=False)}


def save_lora(tensors: Mapping[str, torch.Tensor], path: str, metadata: Mapping[str, str] | None = None,
              overwrite: bool = False) -> None:
    """Write a LoRA state dict as safetensors, atomically (nothing half-written on failure)."""
    bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
    if bad:
        raise InputError("bank", f"the LoRA tensor {bad[0]!r} holds NaN/Inf values.",
                         "check the bank (re-train it) and the scales.")
    write_safetensors(tensors, path, dict(metadata or {}), overwrite=overwrite, input_name="filename")
