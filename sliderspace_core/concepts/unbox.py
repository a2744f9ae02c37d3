"""Import sdxl-unbox SAEs (Surkov et al., MIT): their checkpoint folder → a :class:`ConceptSAE`.

Layout (METHODS §3.5)::

    <hookpoint>_k10_hidden5120_auxk256_bs4096_lr0.0001/final/
        config.json       n_dirs_local, d_model, k, auxk, dead_steps_threshold
        state_dict.pth    {"state_dict": {encoder.weight (n, d), decoder.weight (d, n), pre_bias (d),
                                          latent_bias (n), stats_last_nonzero (n)}}
        mean.pt, std.pt   (n,) per-feature statistics

``.pth`` / ``.pt`` files are pickles: they are read ONLY with ``torch.load(weights_only=True)``, which
refuses any pickle that would build an object other than tensors and plain containers (a pickle that
would run code raises, and the import fails with an InputError). Hookpoints are diffusers names; SD1.x
and SDXL UNets both have two res blocks per level, so the ComfyUI path follows by counting:
``down_blocks.i.attentions.j → input_blocks.(1 + 3i + j).1``, ``mid_block.attentions.0 → middle_block.1``,
``up_blocks.i.attentions.j → output_blocks.(3i + j).1`` (SDXL: down_blocks.2.attentions.1 →
input_blocks.8.1, up_blocks.0.attentions.1 → output_blocks.1.1; SD1.x: up_blocks.1.attentions.0 →
output_blocks.3.1). The width is checked against the model's block when the SAE is used.
"""

from __future__ import annotations

import json
import os
import re

import torch
from torch import Tensor

from ..common.errors import InputError
from ..decompose.topk_sae import TopKSAE, TopKSAEConfig
from .sae import ConceptSAE

_FOLDER = re.compile(r"^(?P<hook>.+?)_k(?P<k>\d+)_hidden(?P<n>\d+)_auxk(?P<auxk>\d+)_bs(?P<bs>\d+)"
                     r"_lr(?P<lr>[0-9.e-]+)$")
_DOWN = re.compile(r"^down_blocks\.(\d+)\.attentions\.(\d+)$")
_UP = re.compile(r"^up_blocks\.(\d+)\.attentions\.(\d+)$")
CONFIG_KEYS = ("n_dirs_local", "d_model", "k", "auxk", "dead_steps_threshold")
FIX = "choose the '<hookpoint>_k.._hidden.._auxk.._bs.._lr..' folder (or its 'final' folder) of an sdxl-unbox SAE."


def comfy_block(hookpoint: str, input_name: str = "folder") -> str:
    """The ComfyUI UNet path of a diffusers attention hookpoint (``unet.`` prefix optional)."""
    name = hookpoint[5:] if hookpoint.startswith("unet.") else hookpoint
    if name == "mid_block.attentions.0":
        return "middle_block.1"
    if m := _DOWN.match(name):
        return f"input_blocks.{1 + 3 * int(m[1]) + int(m[2])}.1"
    if m := _UP.match(name):
        return f"output_blocks.{3 * int(m[1]) + int(m[2])}.1"
    raise InputError(input_name, f"hookpoint {hookpoint!r} is not a UNet attention block.",
                     "use an SAE on down_blocks.i.attentions.j, mid_block.attentions.0 or up_blocks.i.attentions.j.")


def _torch_load(path: str, input_name: str) -> object:
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise InputError(input_name, f"{name!r} is missing.", FIX)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses code-running pickles with UnpicklingError (and others)
        raise InputError(input_name, f"{name!r} could not be read safely ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''}); only tensors and plain "
                         "containers are accepted, never pickled code.",
                         "use a genuine sdxl-unbox checkpoint; never load files from untrusted sources.") from None


def _tensor(obj: object, key: str, shape: tuple[int, ...], input_name: str) -> Tensor:
    if not isinstance(obj, Tensor):
        raise InputError(input_name, f"{key} is missing or not a tensor.", FIX)
    if tuple(obj.shape) != shape:
        raise InputError(input_name, f"{key} has shape {tuple(obj.shape)}; config.json implies {shape}.",
                         "use the config.json that belongs to this checkpoint.")
    t = obj.detach().float()
    if not bool(torch.isfinite(t).all()):
        raise InputError(input_name, f"{key} contains NaN or infinite values.", FIX)
    return t


def resolve_folder(path: str, input_name: str = "folder") -> tuple[str, str]:
    """``(final_folder, run_folder_name)`` for a run folder or its ``final`` subfolder."""
    path = os.path.abspath(os.path.expanduser(path.strip()))
    if not os.path.isdir(path):
        raise InputError(input_name, f"{path!r} is not a folder.", FIX)
    if os.path.isfile(os.path.join(path, "config.json")) and os.path.basename(path) == "final":
        return path, os.path.basename(os.path.dirname(path))
    if os.path.isfile(os.path.join(path, "final", "config.json")):
        return os.path.join(path, "final"), os.path.basename(path)
    raise InputError(input_name, f"{path!r} holds no final/config.json.", FIX)


def load_unbox(path: str, input_name: str = "folder") -> ConceptSAE:
    """Read an sdxl-unbox SAE folder (see the module doc) into a :class:`ConceptSAE`."""
    final, run = resolve_folder(path, input_name)
    m = _FOLDER.match(run)
    if m is None:
        raise InputError(input_name, f"folder name {run!r} is not '<hookpoint>_k.._hidden.._auxk.._bs.._lr..'.", FIX)
    block = comfy_block(m["hook"], input_name)
    try:
        with open(os.path.join(final, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        values = {k: int(cfg[k]) for k in CONFIG_KEYS}
    except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError):
        raise InputError(input_name, f"config.json must be JSON with integer {', '.join(CONFIG_KEYS)}.", FIX) from None
    n, d = values["n_dirs_local"], values["d_model"]
    if n < 1 or d < 1 or not 1 <= values["k"] <= n:
        raise InputError(input_name, f"config.json has n_dirs_local={n}, d_model={d}, k={values['k']}.", FIX)
    blob = _torch_load(os.path.join(final, "state_dict.pth"), input_name)
    sd = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(sd, dict):
        raise InputError(input_name, "state_dict.pth holds no state_dict dictionary.", FIX)
    W_enc = _tensor(sd.get("encoder.weight"), "encoder.weight", (n, d), input_name)
    W_dec = _tensor(sd.get("decoder.weight"), "decoder.weight", (d, n), input_name).T.contiguous()
    b_pre = _tensor(sd.get("pre_bias"), "pre_bias", (d,), input_name)
    b_lat = _tensor(sd.get("latent_bias"), "latent_bias", (n,), input_name)
    stats = [_tensor(_torch_load(os.path.join(final, f), input_name), f, (n,), input_name)
             for f in ("mean.pt", "std.pt")]
    try:
        config = TopKSAEConfig(k=values["k"], n_latents=n, auxk=values["auxk"] or None,
                               dead_steps_threshold=max(1, values["dead_steps_threshold"]), lr=float(m["lr"]),
                               batch_size=int(m["bs"]))
        sae = TopKSAE.from_weights(W_enc, b_lat, W_dec, b_pre, config)
    except (ValueError, OverflowError) as e:  # a bad lr/bs in the folder name or auxk in config.json
        problem = e.problem if isinstance(e, InputError) else str(e)
        raise InputError(input_name, f"{run!r}: its settings are invalid ({problem}).", FIX) from None
    sae.metadata = {"imported_from": run}
    return ConceptSAE(sae, block, stats[0], stats[1], f"sdxl-unbox:{m['hook']}")
