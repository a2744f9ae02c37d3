"""Per-sample rank-r slider adapters for training: one batched pass trains several sliders at once.

Each batch item ``b`` runs with its own slider ``sel[b]`` at scale ``scale[b]``; for a linear module with
input ``x_b`` the output gains ``scale[b]·(alpha/r)·up[sel[b]] @ down[sel[b]] @ x_b`` — exactly the weight
delta of :class:`~sliderspace_core.sliderspace.bank.Slider`, applied in activation space so every item can differ.
Hooks are attached only for the duration of a ``with adapters.attached(modules):`` block.

Initialisation (the reference's): ``up`` is a random orthonormal column (``rank`` columns) per slider and module
and stays FROZEN; only ``down`` trains. A slider therefore acts from its first step, so ``1 − cos(Δφ, v)`` never
sees a vanishing Δφ (a zero ``up`` makes the first gradient ~1/‖Δφ‖, which floods Adam's second moment).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..common.errors import InputError
from ..common.lowrank import lora_hook, lora_scale
from .bank import Slider


def _key(name: str) -> str:
    return name.replace(".", "__")


def orthonormal_columns(n: int, out_features: int, rank: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, out_features, rank]``: for each of ``n`` sliders, ``rank`` random orthonormal columns (seeded)."""
    q, r = torch.linalg.qr(torch.randn(n, out_features, rank, generator=generator))
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # Haar-uniform, sign fixed


class SliderAdapters(nn.Module):
    """``n`` sliders over the same target modules (``down`` trainable, ``up`` frozen), with per-item selection."""

    def __init__(self, shapes: dict[str, tuple[int, int]], n_sliders: int, rank: int = 1, alpha: float = 1.0,
                 seed: int = 0, frozen_up: bool = True) -> None:
        """``frozen_up`` True: the reference's init (above). False: the earlier init, kept to compare: ``up`` starts
        at 0 and trains with ``down``, so a new slider does nothing (train it with a guarded cosine)."""
        super().__init__()
        self.names = sorted(shapes)
        self.rank, self.alpha, self.n_sliders = rank, float(alpha), n_sliders
        g = torch.Generator().manual_seed(seed)
        self.down = nn.ParameterDict()
        self.up = nn.ParameterDict()
        for name in self.names:
            out_f, in_f = shapes[name]
            if not frozen_up:
                self.down[_key(name)] = nn.Parameter(torch.randn(n_sliders, rank, in_f, generator=g) / in_f**0.5)
                self.up[_key(name)] = nn.Parameter(torch.zeros(n_sliders, out_f, rank))
                continue
            if rank > out_f:
                raise InputError("rank", f"is {rank} but module {name} has only {out_f} outputs.",
                                 f"choose a rank of at most {out_f}.")
            self.down[_key(name)] = nn.Parameter(torch.randn(n_sliders, rank, in_f, generator=g) / in_f**0.5)
            self.up[_key(name)] = nn.Parameter(orthonormal_columns(n_sliders, out_f, rank, g), requires_grad=False)
        self._sel: torch.Tensor | None = None
        self._scale: torch.Tensor | None = None

    @contextlib.contextmanager
    def active(self, sel: torch.Tensor, scale: torch.Tensor) -> Iterator[None]:
        """Within this block, batch item ``b`` uses slider ``sel[b]`` at ``scale[b]``."""
        self._sel, self._scale = sel, scale
        try:
            yield
        finally:
            self._sel = self._scale = None

    def _hook(self, name: str):
        k = _key(name)

        def factors(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
            if self._sel is None:
                return None
            n_items = self._sel.shape[0]
            if x.shape[0] % n_items:
                raise RuntimeError(f"slider adapters: batch {x.shape[0]} is not a multiple of {n_items} items")
            rep = x.shape[0] // n_items  # e.g. cond/uncond stacked by the sampler
            sel, scale = self._sel.repeat(rep), self._scale.repeat(rep)
            down = self.down[k][sel]                                                         # [B, r, in]
            up = self.up[k][sel] * (scale * lora_scale(self.alpha, self.rank)).view(-1, 1, 1)  # [B, out, r]
            return down, up

        return lora_hook(factors)

    @contextlib.contextmanager
    def attached(self, modules: dict[str, nn.Module]) -> Iterator[None]:
        """Register the hooks on ``modules`` (name → module); always removed on exit."""
        missing = set(self.names) - set(modules)
        if missing:
            raise KeyError(f"target modules not found in the model: {sorted(missing)[:3]}")
        handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.names]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def export_sliders(self) -> list[Slider]:
        """The trained factors as bank sliders (detached CPU float32 copies)."""
        out = []
        for i in range(self.n_sliders):
            down = {n: self.down[_key(n)][i].detach().float().cpu().clone() for n in self.names}
            up = {n: self.up[_key(n)][i].detach().float().cpu().clone() for n in self.names}
            out.append(Slider(down=down, up=up, alpha=self.alpha))
        return out
