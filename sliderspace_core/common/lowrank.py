"""Low-rank weight edits, defined once: the LoRA scale ``alpha / rank``, merged factors of several edits,
the per-batch-item low-rank forward hook, and merge-into-weights with an exact (bitwise) unmerge.

A low-rank edit of a linear module is ``ΔW = c · up @ down`` with ``up [out, r]``, ``down [r, in]`` and
``c = scale · alpha / r``. SliderSpace sliders, exported LoRAs and (later) other systems' weight edits
all use these helpers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

Factors = tuple[torch.Tensor, torch.Tensor]
"""``(up [out, R], down [R, in])`` with every scale folded into ``up``: ``ΔW = up @ down``."""


def lora_scale(alpha: float, rank: int) -> float:
    """The LoRA convention: a rank-``rank`` edit with ``alpha`` acts at ``alpha / rank``."""
    return float(alpha) / int(rank)


def concat_factors(edits: Iterable[tuple[torch.Tensor, torch.Tensor, float]],
                   dtype: torch.dtype = torch.float32) -> Factors:
    """One ``(up, down)`` pair from edits ``(up_i, down_i, c_i)``: ``up @ down = Σ_i c_i · up_i @ down_i``.

    The ranks add up (``R = Σ r_i``); the product is exact up to ``dtype``.
    """
    ups, downs = [], []
    for up, down, c in edits:
        ups.append(up.float() * c)
        downs.append(down.float())
    return torch.cat(ups, dim=1).to(dtype), torch.cat(downs, dim=0).to(dtype)


def dense(factors: Factors, like: torch.Tensor) -> torch.Tensor:
    """``up @ down`` computed in float32 on ``like``'s device, cast to ``like``'s dtype."""
    up, down = factors
    return (up.to(like.device, torch.float32) @ down.to(like.device, torch.float32)).to(like.dtype)


def per_item_lora(x: torch.Tensor, down: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``Δy_b = up_b @ (down_b @ x_b)`` for a batch of per-item low-rank factors.

    ``x``: ``[B, ..., in]``; ``down``: ``[B, R, in]``; ``up``: ``[B, out, R]`` (scales folded in).
    """
    xb = x.reshape(x.shape[0], -1, x.shape[-1]).to(down.dtype)
    h = torch.einsum("bli,bri->blr", xb, down)
    return torch.einsum("blr,bor->blo", h, up).reshape(*x.shape[:-1], up.shape[1])


def lora_hook(factors_for: Callable[[torch.Tensor], Factors | None]):
    """A forward hook adding a per-item low-rank edit to a linear module's output.

    ``factors_for(x)`` returns ``(down [B, R, in], up [B, out, R])`` for the input batch ``x`` (one row per
    batch item), or ``None`` to leave the output unchanged.
    """

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        x = inputs[0]
        f = factors_for(x)
        if f is None:
            return None
        down, up = f
        return output + per_item_lora(x, down.to(x.device), up.to(x.device)).reshape(output.shape).to(output.dtype)

    return hook


class WeightMerge:
    """Adds low-rank edits into weights IN PLACE, keeping backups; :meth:`restore` copies the originals
    back bit for bit. Zero cost per forward while merged; exact after restore whatever the dtype."""

    def __init__(self) -> None:
        self.backup: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def merged(self) -> bool:
        return bool(self.backup)

    @torch.no_grad()
    def merge(self, weights: Mapping[str, torch.Tensor], *edit_sets: Mapping[str, Factors]) -> None:
        """``weights[name] += up @ down`` for every edit, the sets added in order (a weight edited by several
        sets gets each one's dense delta in turn). A second merge first restores the originals."""
        self.restore()
        for edits in edit_sets:
            for name, factors in edits.items():
                w = weights[name]
                if name not in self.backup:
                    self.backup[name] = (w, w.detach().clone())
                w.add_(dense(factors, w))

    @torch.no_grad()
    def restore(self) -> None:
        for w, original in self.backup.values():
            w.copy_(original)
        self.backup.clear()
