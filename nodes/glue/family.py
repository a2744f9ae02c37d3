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


TARGET_PRESETS: dict[str, str] = {
    "cross-attention k/v": r"(^|\.)attn2\.to_(k|v)$",
    "all attention projections": r"(^|\.)(attn\d?\.(to_(q|k|v)|to_out\.0)|(img|txt)_attn\.(qkv|proj)"
                                 r"|(linear1|linear2))$",
    "pattern": "",
}


def target_modules(diffusion_model: nn.Module, preset: str, pattern: str = "") -> dict[str, nn.Linear]:
    """Linear modules of the denoiser selected by a preset or a user regex (ComfyUI names)."""
    regex = pattern.strip() if preset == "pattern" else TARGET_PRESETS.get(preset, "")
    try:
        rx = re.compile(regex)
    except re.error as e:
        raise InputError("target_pattern", f"is not a valid regular expression ({e}).",
                         r"write a Python regex such as attn2\.to_(k|v)$.") from None
    found = {n: m for n, m in diffusion_model.named_modules() if isinstance(m, nn.Linear) and rx.search(n)}
    if not regex or not found:
        raise InputError("targets", f"no linear module of this model matches {regex!r}.",
                         "choose 'all attention projections' (e.g. for FLUX) or write a matching pattern.")
    return found
