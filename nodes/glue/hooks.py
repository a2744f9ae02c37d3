"""Block capture and steering through ComfyUI's patching (COMFYUI_HOST "Block capture and steering").

On a clone, ONE keyed ``WrappersMP.DIFFUSION_MODEL`` wrapper per use registers forward hooks on the
chosen block for the duration of one diffusion-model call and removes them in ``finally`` — nothing is
left behind after sampling, also when a hook raises. ``transformer_options["cond_or_uncond"]`` labels
the batch chunks (0 cond, 1 uncond) and ``transformer_options["sigmas"]`` gives the sigma. The block
input is cloned in a pre-hook (FLUX adds in place), so Δ = output − input is exact.

Blocks are seen as rows ``(batch, locations, d)`` on a ``height x width`` grid: a UNet
SpatialTransformer's NCHW map; a FLUX double block's image stream; a FLUX single block's image tokens
(rows ``[txt_len : txt_len + h*w]``).
"""

from __future__ import annotations

from collections.abc import Callable

import comfy.patcher_extension
import torch

from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.common.schedule import SigmaWindow
from .family import model_family
from .patching import PACK_KEY

DIFFUSION = comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL
CAPTURE_KEY = f"{PACK_KEY}:sae_capture"
KINDS = {"SpatialTransformer": "unet", "DoubleStreamBlock": "double", "SingleStreamBlock": "single"}

KNOWN_BLOCKS: dict[str, dict[str, str]] = {
    "SD15": {"input_blocks.8.1": "down_blocks.2.attentions.1", "middle_block.1": "mid_block (layout)",
             "output_blocks.3.1": "up_blocks.1.attentions.0"},
    "SDXL": {"input_blocks.8.1": "composition: down_blocks.2.attentions.1", "middle_block.1": "mid_block",
             "output_blocks.0.1": "up_blocks.0.attentions.0", "output_blocks.1.1": "style: up_blocks.0.attentions.1"},
    "ToyWorld": {"input_blocks.5.1": "8×8 down", "middle_block.1": "mid_block (layout)",
                 "output_blocks.0.1": "8×8 up", "output_blocks.1.1": "16×16 up"},
}
"""The blocks the papers name, per model family (ComfyUI path → label)."""

BlockFn = Callable[[torch.Tensor, "torch.Tensor | None", list, float, tuple[int, int]], "torch.Tensor | None"]
"""``fn(out_rows, in_rows or None, cond_or_uncond, sigma, (height, width))`` → new out rows, or None (keep)."""


def list_blocks(model) -> list[tuple[str, int, str]]:
    """``(path, width, label)`` of every transformer block of the MODEL's diffusion model, in model order."""
    known = KNOWN_BLOCKS.get(model_family(model), {})
    out = []
    for name, mod in model.model.diffusion_model.named_modules():
        kind = KINDS.get(type(mod).__name__)
        if kind is None:
            continue
        width = getattr(mod, "in_channels", None) or getattr(mod, "hidden_size", None) or mod.hidden_dim
        out.append((name, int(width), known.get(name, "")))
    return out


def describe_blocks(model) -> str:
    rows = list_blocks(model)
    return "\n".join(f"{p}  (width {w}){'  [' + lab + ']' if lab else ''}" for p, w, lab in rows)


def check_block(model, block: str, input_name: str = "block") -> int:
    """The width of ``block`` in the MODEL, or an InputError listing the blocks it has."""
    for path, width, _ in list_blocks(model):
        if path == block.strip():
            return width
    names = ", ".join(p for p, _, _ in list_blocks(model)[:40]) or "none"
    raise InputError(input_name, f"the {model_family(model)} model has no transformer block {block!r}.",
                     f"use one of: {names} (the SAE List Blocks node lists them with their names).")


def _options(args: tuple, kwargs: dict) -> dict:
    if isinstance(kwargs.get("transformer_options"), dict):
        return kwargs["transformer_options"]
    for a in reversed(args):  # UNet: (x, t, context, y, control, opts); FLUX: (..., control, opts)
        if isinstance(a, dict):
            return a
    return {}


class _View:
    """How one call's block tensors become rows and back."""

    def __init__(self, kind: str, x: torch.Tensor, context: torch.Tensor | None) -> None:
        self.kind = kind
        h, w = int(x.shape[-2]), int(x.shape[-1])  # the latent's; a UNet block's own grid is read in rows()
        if kind != "unet":  # FLUX patchifies 2x2
            h, w = (h + 1) // 2, (w + 1) // 2
        self.grid = (h, w)
        self.txt = int(context.shape[1]) if context is not None and kind == "single" else 0

    def rows(self, t):
        if self.kind == "unet":  # the block's own map: below the latent's size in every level but the first
            b, c = t.shape[:2]
            self.grid = (int(t.shape[-2]), int(t.shape[-1]))
            return t.reshape(b, c, -1).transpose(1, 2)
        if self.kind == "double":
            return t[0] if isinstance(t, tuple) else t
        return t[:, self.txt: self.txt + self.grid[0] * self.grid[1]]

    def put(self, out, rows: torch.Tensor):
        if self.kind == "unet":
            return rows.transpose(1, 2).reshape(out.shape).contiguous()
        if self.kind == "double":
            return (rows, *out[1:]) if isinstance(out, tuple) else rows
        new = out.clone()
        new[:, self.txt: self.txt + rows.shape[1]] = rows
        return new


class BlockHook:
    """The DIFFUSION_MODEL wrapper: hooks ``block`` for one call when the sigma is in ``window``."""

    def __init__(self, block: str, fn: BlockFn, window: SigmaWindow | None = None, needs_input: bool = True) -> None:
        self.block, self.fn, self.window, self.needs_input = block, fn, window, needs_input

    def wrapper(self, executor, *args, **kwargs):
        opts = _options(args, kwargs)
        sig = opts.get("sigmas")
        sigma = float(sig.max()) if isinstance(sig, torch.Tensor) else float("nan")
        if self.window is not None and not self.window.contains(sigma):
            return executor(*args, **kwargs)
        module = executor.class_obj.get_submodule(self.block)
        context = args[2] if len(args) > 2 and isinstance(args[2], torch.Tensor) else kwargs.get("context")
        view = _View(KINDS[type(module).__name__], args[0], context)
        labels = list(opts.get("cond_or_uncond", [0]))
        held: dict[str, torch.Tensor] = {}

        def pre(mod, a, kw):
            x = a[0] if a else (kw.get("img") if "img" in kw else kw.get("x"))
            held["in"] = view.rows(x).clone()

        def post(mod, a, kw, out):
            rows = view.rows(out)  # sets view.grid for a UNet block
            new = self.fn(rows, held.pop("in", None), labels, sigma, view.grid)
            return None if new is None else view.put(out, new)

        handles = [module.register_forward_pre_hook(pre, with_kwargs=True)] if self.needs_input else []
        handles.append(module.register_forward_hook(post, with_kwargs=True))
        try:
            return executor(*args, **kwargs)
        finally:
            for h in handles:
                h.remove()


def with_block_hook(model, key: str, block: str, fn: BlockFn, window: SigmaWindow | None = None,
                    needs_input: bool = True):
    """A clone of ``model`` with this key's earlier wrapper replaced by one hooking ``block``."""
    m = model.clone()
    m.remove_wrappers_with_key(DIFFUSION, key)
    m.add_wrapper_with_key(DIFFUSION, key, BlockHook(block, fn, window, needs_input).wrapper)
    return m


def without_key(model, key: str):
    """A clone of ``model`` without this key's wrapper (the vanilla path of a node that is off)."""
    m = model.clone()
    m.remove_wrappers_with_key(DIFFUSION, key)
    return m


def steer_key(application: str) -> str:
    """The wrapper key of one SAE Steer application: ``application`` names the node (its node id in a
    prompt), so the same node applied again replaces its own steer (at whatever block) while other nodes'
    steers, at the same block or others, stay and compose in chain order (each block hook sees the output the
    steers before it left)."""
    return f"{PACK_KEY}:sae_steer:{application}"
