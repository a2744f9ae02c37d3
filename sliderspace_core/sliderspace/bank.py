"""The slider bank: named rank-1 (rank-r) adapters with independent scales (SliderSpace §1 step 4).

A *slider* is one direction: per target module ``m`` it holds LoRA factors ``down[m]`` (``[r, in]``) and
``up[m]`` (``[out, r]``); applied at scale ``s`` it changes that module's weight by
``s * (alpha / r) * up[m] @ down[m]``. Module names are the ComfyUI diffusion-model names without the
``diffusion_model.`` prefix (e.g. ``input_blocks.1.1.transformer_blocks.0.attn2.to_k``).
A *bank* is a list of sliders plus metadata saying which model, encoder and basis they belong to.

On disk a bank is ONE safetensors file: tensors ``slider.{i}.{module}.down``, ``slider.{i}.{module}.up``,
``slider.{i}.direction`` and, in the safetensors metadata, ``format``, ``format_version`` and ``bank``
(JSON: family, fingerprint, encoder, prompts, config, architecture, per-slider label/alpha/variance/
alignment). Loading never unpickles anything and refuses damaged or foreign files with an
:class:`InputError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from ..common.errors import InputError
from ..common.lowrank import lora_scale
from ..common.safefile import FLOATS, read_header, sanitize_name, write_safetensors
from ..common.textspec import finite_number, parse_indexed

__all__ = ["FORMAT_VERSION", "Slider", "BankMeta", "SliderBank", "family_group", "check_bank",
           "check_bank_fits", "save_bank", "load_bank", "read_bank_info", "parse_scales", "fingerprint_state",
           "sanitize_name"]

FORMAT_VERSION = 1
FORMAT_NAME = "sliderspace.slider_bank"

FAMILY_GROUPS: dict[str, str] = {
    "SD15": "sd1", "SD15_instructpix2pix": "sd1",
    "SD20": "sd2", "SD21UnclipL": "sd2", "SD21UnclipH": "sd2",
    "SDXL": "sdxl", "SDXL_instructpix2pix": "sdxl", "SSD1B": "sdxl", "Segmind_Vega": "sdxl",
    "KOALA_700M": "sdxl", "KOALA_1B": "sdxl", "SDXLRefiner": "sdxl_refiner",
    "Flux": "flux", "FluxSchnell": "flux", "FluxInpaint": "flux",
    "SD3": "sd3",
}
"""ComfyUI model-config class name → weight-compatible group (a bank fits every family of its group)."""


def family_group(family: str) -> str:
    """The compatibility group of a ComfyUI model family (the family itself when not listed)."""
    return FAMILY_GROUPS.get(family, family)


@dataclass
class Slider:
    """One direction: its LoRA factors per module and where it came from."""

    down: dict[str, torch.Tensor]
    """Module name → ``[rank, in_features]``."""
    up: dict[str, torch.Tensor]
    """Module name → ``[out_features, rank]``."""
    alpha: float = 1.0
    """LoRA alpha: the slider acts at ``scale · alpha / rank``."""
    label: str = ""
    """A human name (Label Bank); shown in grids, banks and exported LoRAs."""
    direction: torch.Tensor | None = None
    """The basis vector ``v_i`` (embedding space) this slider was trained towards."""
    variance: float = 0.0
    """Explained variance of that basis component."""
    alignment: float | None = None
    """Median cos(Δφ, v) on held-out samples after training (None if not measured)."""

    @property
    def rank(self) -> int:
        return int(next(iter(self.down.values())).shape[0])

    def delta(self, module: str, scale: float = 1.0) -> torch.Tensor:
        """``ΔW`` of ``module`` at ``scale`` (float32)."""
        up, down = self.up[module].float(), self.down[module].float()
        return (scale * lora_scale(self.alpha, down.shape[0])) * (up @ down)


@dataclass
class BankMeta:
    """What a bank belongs to; checked on load and on apply."""

    family: str = ""
    """Model family (ComfyUI model-config class name, e.g. ``SD15``, ``SDXL``, ``Flux``)."""
    model_fingerprint: str = ""
    """``fingerprint_state`` of the target base weights (tells 'same base model?')."""
    encoder_id: str = ""
    """The image encoder the basis (and so the slider objective) was computed with."""
    prompts: list[str] = field(default_factory=list)
    """The prompts whose trajectories were sampled."""
    config: dict = field(default_factory=dict)
    """Training configuration and seed."""
    format_version: int = FORMAT_VERSION
    """Bank file format version (checked on load)."""
    architecture: dict = field(default_factory=dict)
    """The model's ComfyUI ``unet_config`` (JSON values); export needs it for diffusers/kohya names."""


@dataclass
class SliderBank:
    sliders: list[Slider]
    """The sliders, in basis order (slider i was trained towards component i)."""
    meta: BankMeta = field(default_factory=BankMeta)
    """What the bank belongs to."""

    def __len__(self) -> int:
        return len(self.sliders)

    @property
    def modules(self) -> list[str]:
        return sorted(self.sliders[0].down) if self.sliders else []

    def __repr__(self) -> str:
        return (f"SliderBank({len(self)} sliders over {len(self.modules)} modules, "
                f"family={self.meta.family!r}, encoder={self.meta.encoder_id!r})")


# ----------------------------------------------------------------------------------------------- checks

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_bank(bank: SliderBank, input_name: str = "bank") -> None:
    """Raise :class:`InputError` unless every slider has finite, consistently shaped factors."""
    if not isinstance(bank, SliderBank) or not bank.sliders:
        raise InputError(input_name, "holds no sliders.",
                         "train sliders first (Train Sliders) or load a bank file.")
    fix = "re-train the bank or load an undamaged bank file."
    modules = set(bank.sliders[0].down)
    shapes: dict[str, tuple[int, int]] = {}
    dims: set[int] = set()
    for i, s in enumerate(bank.sliders):
        if not s.down or set(s.down) != modules or set(s.up) != modules:
            raise InputError(input_name, f"slider {i} targets other modules than slider 0 (every slider of a "
                             "bank must adapt the same modules).", fix)
        if not (math.isfinite(s.alpha) and s.alpha != 0) or not math.isfinite(s.variance) or (
                s.alignment is not None and not math.isfinite(s.alignment)):
            raise InputError(input_name, f"slider {i} has a non-finite or zero alpha, variance or alignment.",
                             fix)
        for m in sorted(modules):
            d, u = s.down[m], s.up[m]
            if d.ndim != 2 or u.ndim != 2 or d.shape[0] < 1 or d.shape[0] != u.shape[1]:
                raise InputError(input_name, f"slider {i} module {m}: inconsistent shapes down "
                                 f"{tuple(d.shape)} / up {tuple(u.shape)} (need [r, in] and [out, r]).", fix)
            io_shape = (int(u.shape[0]), int(d.shape[1]))
            if shapes.setdefault(m, io_shape) != io_shape:
                raise InputError(input_name, f"slider {i} module {m} is {io_shape[0]}×{io_shape[1]} but "
                                 f"other sliders have {shapes[m][0]}×{shapes[m][1]}.", fix)
            for part, t in (("down", d), ("up", u)):
                if t.dtype not in _FLOAT_DTYPES or not torch.isfinite(t).all():
                    raise InputError(input_name, f"slider {i} module {m} '{part}' holds NaN/Inf or non-float "
                                     "values.", fix)
        if s.direction is not None:
            v = s.direction
            if v.ndim != 1 or v.dtype not in _FLOAT_DTYPES or not torch.isfinite(v).all():
                raise InputError(input_name, f"slider {i} direction must be a finite 1-D vector.", fix)
            dims.add(int(v.shape[0]))
    if len(dims) > 1:
        raise InputError(input_name, f"the slider directions have different lengths {sorted(dims)}.", fix)


def check_bank_fits(bank: SliderBank, module_shapes: Mapping[str, tuple[int, int]], family: str) -> None:
    """Raise ``InputError('bank', ...)`` unless ``bank`` was made for a model like this one.

    ``module_shapes`` maps the model's module names to ``(out_features, in_features)``.
    """
    if bank.meta.family and family and family_group(bank.meta.family) != family_group(family):
        raise InputError("bank", f"was trained on a {bank.meta.family} model, but this model is {family}.",
                         f"connect a {bank.meta.family} model, or train a bank on this model.")
    missing = [m for m in bank.modules if m not in module_shapes]
    if missing:
        raise InputError("bank", f"targets {len(missing)} module(s) this model does not have, e.g. "
                         f"{missing[0]!r}.", "connect the model the bank was trained on (same architecture).")
    s = bank.sliders[0]
    for m in bank.modules:
        want = (int(s.up[m].shape[0]), int(s.down[m].shape[1]))
        have = tuple(int(x) for x in module_shapes[m])
        if want != have:
            raise InputError("bank", f"module {m!r} is {want[0]}×{want[1]} in the bank but "
                             f"{have[0]}×{have[1]} in this model.",
                             "connect the model the bank was trained on (same architecture).")


# ------------------------------------------------------------------------------------------------- files

def save_bank(bank: SliderBank, path: str, overwrite: bool = False) -> None:
    """Save ``bank`` as one safetensors file (validated first; nothing is written on failure)."""
    check_bank(bank, "bank")
    tensors: dict[str, torch.Tensor] = {}
    sliders = []
    for i, s in enumerate(bank.sliders):
        for m in bank.modules:
            tensors[f"slider.{i}.{m}.down"] = s.down[m]
            tensors[f"slider.{i}.{m}.up"] = s.up[m]
        if s.direction is not None:
            tensors[f"slider.{i}.direction"] = s.direction
        sliders.append({"label": s.label, "alpha": s.alpha, "variance": s.variance, "alignment": s.alignment,
                        "has_direction": s.direction is not None})
    m = bank.meta
    doc = {"family": m.family, "model_fingerprint": m.model_fingerprint, "encoder_id": m.encoder_id,
           "prompts": list(m.prompts), "config": m.config, "architecture": m.architecture,
           "modules": bank.modules, "sliders": sliders}
    try:
        text = json.dumps(doc, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise InputError("bank", f"its metadata cannot be stored as JSON ({e}).",
                         "keep config/prompts to plain numbers, strings, lists and dicts.") from None
    write_safetensors(tensors, path, {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                                      "bank": text}, overwrite=overwrite)


def _sliders_from(doc: dict, tensors: dict[str, torch.Tensor], name: str,
                  input_name: str) -> tuple[list[Slider], set[str]]:
    """Sliders described by the metadata ``doc``; also returns the tensor keys they use."""
    seen: set[str] = set()
    sliders = []

    def take(key: str) -> torch.Tensor:
        if key not in tensors:
            raise InputError(input_name, f"{name!r} misses tensor {key!r}.",
                             "save the bank again; the file is incomplete or was edited.")
        seen.add(key)
        return tensors[key]

    modules = [str(m) for m in doc["modules"]]
    for i, spec in enumerate(doc["sliders"]):
        down = {m: take(f"slider.{i}.{m}.down") for m in modules}
        up = {m: take(f"slider.{i}.{m}.up") for m in modules}
        direction = take(f"slider.{i}.direction") if spec.get("has_direction") else None
        alignment = spec.get("alignment")
        sliders.append(Slider(down=down, up=up, alpha=float(spec["alpha"]), label=str(spec.get("label", "")),
                              direction=direction, variance=float(spec.get("variance", 0.0)),
                              alignment=None if alignment is None else float(alignment)))
    return sliders, seen


def _described_keys(doc: dict) -> set[str]:
    """The tensor names the bank metadata ``doc`` says the file holds."""
    modules = [str(m) for m in doc["modules"]]
    keys: set[str] = set()
    for i, spec in enumerate(doc["sliders"]):
        keys.update(f"slider.{i}.{m}.{side}" for m in modules for side in ("down", "up"))
        if spec.get("has_direction"):
            keys.add(f"slider.{i}.direction")
    return keys


_DAMAGED = (KeyError, ValueError, TypeError, AttributeError, OverflowError, RecursionError)
"""What parsing a damaged bank document can raise (JSON values of the wrong type, size or depth)."""


def read_bank_info(path: str, input_name: str = "file") -> dict:
    """What a bank file says about itself, from its safetensors header only (no tensor is read).

    Returns ``{"n_sliders", "labels", "family", "encoder_id", "prompts", "format_version"}``; what the
    slider-bank widget needs to draw one labelled slider per direction. The metadata is checked against
    the tensors the header lists (a bank claiming more or fewer sliders than it holds is refused).
    """
    name = os.path.basename(path)
    header = read_header(path, input_name, FLOATS)
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT_NAME:
        raise InputError(input_name, f"{name!r} is not a SliderSpace slider bank.",
                         "choose a bank saved by Save Slider Bank.")
    try:
        doc = json.loads(meta["bank"])
        sliders = [dict(s) for s in doc["sliders"]]
        described = _described_keys(doc)
        info = {"n_sliders": len(sliders), "labels": [str(s.get("label", "")) for s in sliders],
                "family": str(doc.get("family", "")), "encoder_id": str(doc.get("encoder_id", "")),
                "prompts": [str(p) for p in doc.get("prompts", [])],
                "format_version": int(meta.get("format_version", 0))}
    except _DAMAGED as e:
        raise InputError(input_name, f"{name!r} has damaged bank metadata ({type(e).__name__}: {e}).",
                         "save the bank again with Save Slider Bank.") from None
    held = set(header) - {"__metadata__"}
    missing, extra = sorted(described - held), sorted(held - described)
    if not sliders or missing or extra:
        what = (f"misses tensor {missing[0]!r}" if missing else
                f"holds tensor {extra[0]!r} it does not describe" if extra else "describes no sliders")
        raise InputError(input_name, f"{name!r}: its metadata lists {len(sliders)} slider(s) but the file {what} "
                         f"({len(held)} tensors, {len(described)} described).",
                         "save the bank again with Save Slider Bank; the file was edited or is incomplete.")
    return info


def load_bank(path: str, input_name: str = "file") -> SliderBank:
    """Load and validate a bank saved by :func:`save_bank`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    name = os.path.basename(path)
    header = read_header(path, input_name, FLOATS)
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT_NAME or "format_version" not in meta:
        raise InputError(input_name, f"{name!r} is not a SliderSpace slider bank (no format version in "
                         "its metadata).", "load LoRA files with LoraLoader; banks come from Save Slider "
                         "Bank.")
    try:
        version = int(meta["format_version"])
    except ValueError:
        raise InputError(input_name, f"{name!r} has an invalid format version {meta['format_version']!r}.",
                         "save the bank again with Save Slider Bank.") from None
    if version > FORMAT_VERSION or version < 1:
        raise InputError(input_name, f"{name!r} has bank format version {version}; this SliderSpace "
                         f"reads version {FORMAT_VERSION}.", "update the SliderSpace node pack.")
    try:
        doc = json.loads(meta["bank"])
        tensors = load_file(path)
        sliders, seen = _sliders_from(doc, tensors, name, input_name)
    except InputError:
        raise
    except (*_DAMAGED, SafetensorError) as e:
        raise InputError(input_name, f"{name!r} could not be read as a slider bank "
                         f"({type(e).__name__}: {e}).", "save the bank again.") from None
    extra = sorted(set(tensors) - seen)
    if extra:
        raise InputError(input_name, f"{name!r} holds {len(extra)} tensor(s) the bank does not describe, "
                         f"e.g. {extra[0]!r}.", "save the bank again; the file was edited.")
    bank = SliderBank(sliders, BankMeta(
        family=str(doc.get("family", "")), model_fingerprint=str(doc.get("model_fingerprint", "")),
        encoder_id=str(doc.get("encoder_id", "")), prompts=list(doc.get("prompts", [])),
        config=dict(doc.get("config", {})), format_version=version,
        architecture=dict(doc.get("architecture", {}))))
    check_bank(bank, input_name)
    return bank


# ---------------------------------------------------------------------------------- names, scales, hashes

def parse_scales(text: str, n_sliders: int) -> dict[int, float]:
    """Parse ``"0:1.5, 3:-2"`` (commas, semicolons or new lines between entries) → ``{0: 1.5, 3: -2.0}``."""
    fix = (f"write entries 'index:scale' separated by commas, e.g. '0:1.5, 3:-2', with index "
           f"0..{n_sliders - 1}.")
    return parse_indexed(text, n_sliders, "scales", lambda raw, entry: finite_number(raw, "scales",
                         f"entry {entry!r}", fix), fix, what="index:scale", single_token=True)


def fingerprint_state(named: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
                      samples: int = 1024) -> str:
    """A short stable hash of named weights: names, shapes and ``samples`` evenly spaced values each.

    Values are rounded to bfloat16 first, so fp32/fp16/bf16 copies of one model agree (informational:
    it tells "same base model?", it is no integrity check).
    """
    items = sorted(named.items() if isinstance(named, Mapping) else named, key=lambda kv: kv[0])
    h = hashlib.sha256()
    for key, t in items:
        flat = t.detach().reshape(-1)
        n = flat.numel()
        if n > samples:
            idx = torch.arange(samples, dtype=torch.long, device=flat.device) * (n - 1) // (samples - 1)
            flat = flat[idx]
        h.update(f"{key}:{tuple(t.shape)};".encode())
        h.update(flat.float().to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes())
    return h.hexdigest()[:16]
