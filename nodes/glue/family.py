"""The model family and what follows from it: family name, latent facts, architecture, module shapes,
fingerprint, slider target presets, and ComfyUI's diffusers name maps.

The name maps come from ComfyUI itself (``comfy.utils.unet_to_diffusers`` / ``flux_to_diffusers``), the
same tables its LoRA loader uses, so exported keys match what LoraLoader looks up.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import comfy.utils
from torch import nn

from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.sliderspace.bank import SliderBank, check_bank_fits, family_group, fingerprint_state
from ...sliderspace_core.sliderspace.export import UNET_GROUPS, DiffusersNames, Target
from ...sliderspace_core.sliderspace.trajectories import LatentFacts


def model_family(model) -> str:
    """ComfyUI model-config class name of a MODEL (``SD15``, ``SDXL``, ``Flux``, ...)."""
    return type(model.model.model_config).__name__


def latent_facts(model) -> LatentFacts:
    """Family, latent format and channel count of a MODEL's latents (what decoding them needs)."""
    fmt = model.get_model_object("latent_format")
    return LatentFacts(family=model_family(model), latent_format=type(fmt).__name__,
                       channels=int(fmt.latent_channels))


def model_architecture(model) -> dict:
    """The JSON-storable part of the model's ``unet_config`` (enough to rebuild ComfyUI's name maps)."""
    out = {}
    for k, v in model.model.model_config.unet_config.items():
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError):
            continue
        out[str(k)] = v
    return out


def module_shapes(model, modules: Iterable[str] | None = None) -> dict[str, tuple[int, int]]:
    """``(out_features, in_features)`` of the diffusion model's 2-D weights, by ComfyUI module name."""
    wanted = None if modules is None else set(modules)
    out = {}
    for name, mod in model.model.diffusion_model.named_modules():
        w = getattr(mod, "weight", None)
        if (wanted is None or name in wanted) and w is not None and len(w.shape) == 2:
            out[name] = (int(w.shape[0]), int(w.shape[1]))
    return out


def model_fingerprint(model, modules: Iterable[str]) -> str:
    """:func:`fingerprint_state` of the base weights of ``modules`` (LoRA patches not applied)."""
    root = model.model.diffusion_model
    return fingerprint_state([(m, root.get_submodule(m).weight) for m in modules])


def model_facts(model, modules: Iterable[str]) -> dict:
    """``family``, ``architecture`` and ``model_fingerprint`` to store in a new bank's ``BankMeta``."""
    modules = list(modules)
    return {"family": model_family(model), "architecture": model_architecture(model),
            "model_fingerprint": model_fingerprint(model, modules)}


def check_bank_for_model(bank: SliderBank, model) -> None:
    """Raise ``InputError('bank', ...)`` unless ``bank`` fits ``model`` (family and module shapes)."""
    check_bank_fits(bank, module_shapes(model, bank.modules), model_family(model))


def diffusers_names(family: str, architecture: dict) -> DiffusersNames | None:
    """ComfyUI module name → diffusers module(s), from ComfyUI's own tables; None when it has none."""
    group = family_group(family)
    names: dict[str, list[Target]] = {}
    if group in UNET_GROUPS and "num_res_blocks" in architecture:
        table = comfy.utils.unet_to_diffusers(dict(architecture))
        for diff, ldm in sorted(table.items()):
            if diff.endswith(".weight") and ldm.endswith(".weight"):
                names.setdefault(ldm[: -len(".weight")], [Target(diff[: -len(".weight")])])
        return names
    if group == "flux" and "hidden_size" in architecture:
        table = comfy.utils.flux_to_diffusers(dict(architecture), output_prefix="")
        for diff, to in sorted(table.items()):
            key, offset, *convert = (to, None) if isinstance(to, str) else to
            if convert or not (diff.endswith(".weight") and key.endswith(".weight")):
                continue  # a converted weight (e.g. swapped halves) has no LoRA-equivalent name
            if offset is not None and offset[0] != 0:
                continue  # only row splits are LoRA-expressible
            start, rows = (0, None) if offset is None else (int(offset[1]), int(offset[2]))
            names.setdefault(key[: -len(".weight")], []).append(Target(diff[: -len(".weight")], start, rows))
        return names
    return None


AUTO = "auto"
FLUX_ATTENTION = "FLUX attention: double qkv/proj + single linear1/linear2"
SD3_ATTENTION = "SD3 joint-block attention: qkv/proj"
TARGET_PRESETS: dict[str, str] = {
    AUTO: "",  # resolved per family by AUTO_PRESETS
    "cross-attention k/v": r"(^|\.)attn2\.to_(k|v)$",
    "all attention projections": r"(^|\.)(attn\d?\.(to_(q|k|v)|to_out\.0|qkv|proj)|(img|txt)_attn\.(qkv|proj)"
                                 r"|(linear1|linear2))$",
    FLUX_ATTENTION: r"(^|\.)(double_blocks\.\d+\.(img|txt)_attn\.(qkv|proj)|single_blocks\.\d+\.linear(1|2))$",
    SD3_ATTENTION: r"(^|\.)joint_blocks\.\d+\.(x_block|context_block)\.attn2?\.(qkv|proj)$",
    "pattern": "",
}
"""Slider targets by ComfyUI module name. FLUX's fused weights carry ONE rank-r slider each (q/k/v of a double
block share ``qkv``; a single block's ``linear1`` holds q, k, v and the MLP input, ``linear2`` the attention
output and MLP output): a rank-1 slider there equals rank-1 sliders on diffusers' ``to_q``/``to_k``/``to_v``
(/``proj_mlp``) with one shared input direction, which is how it is exported (README: the fused-qkv decision)."""

AUTO_PRESETS: dict[str, str] = {
    "sd1": "cross-attention k/v", "sd2": "cross-attention k/v", "sdxl": "cross-attention k/v",
    "sdxl_refiner": "cross-attention k/v", "flux": FLUX_ATTENTION, "sd3": SD3_ATTENTION,
}
"""What ``auto`` means per family group: the reference's choices (SDXL: cross-attention k/v; FLUX: every
attention projection of double and single blocks) and SD3's joint-block attention."""


def resolve_preset(preset: str, family: str) -> str:
    """The preset ``auto`` stands for on ``family`` (other presets are returned unchanged). A family without
    an entry gets the first of cross-attention k/v and all attention projections that its model has
    (:func:`target_modules` checks the match)."""
    if preset != AUTO:
        return preset
    return AUTO_PRESETS.get(family_group(family), "")


def target_modules(diffusion_model: nn.Module, preset: str, pattern: str = "",
                   family: str = "") -> dict[str, nn.Linear]:
    """Linear modules of the denoiser selected by a preset or a user regex (ComfyUI names).

    ``preset`` ``auto`` resolves by ``family`` (a ComfyUI model-config name, :func:`model_family`).
    """
    if preset not in TARGET_PRESETS:
        raise InputError("targets", f"{preset!r} is not a target preset.", f"choose one of {list(TARGET_PRESETS)}.")
    if preset == AUTO and not resolve_preset(preset, family):
        for fallback in ("cross-attention k/v", "all attention projections"):
            if _linear_matches(diffusion_model, TARGET_PRESETS[fallback]):
                preset = fallback
                break
    preset = resolve_preset(preset, family)
    regex = pattern.strip() if preset == "pattern" else TARGET_PRESETS.get(preset, "")
    try:
        re.compile(regex)
    except re.error as e:
        raise InputError("target_pattern", f"is not a valid regular expression ({e}).",
                         r"write a Python regex such as attn2\.to_(k|v)$.") from None
    found = _linear_matches(diffusion_model, regex) if regex else {}
    if not found:
        raise InputError("targets", f"no linear module of this {family or 'model'} matches {regex!r}.",
                         f"choose '{AUTO}' (the family's preset), 'all attention projections', or write a "
                         "matching pattern.")
    return found


def _linear_matches(diffusion_model: nn.Module, regex: str) -> dict[str, nn.Linear]:
    rx = re.compile(regex)
    return {n: m for n, m in diffusion_model.named_modules() if isinstance(m, nn.Linear) and rx.search(n)}
