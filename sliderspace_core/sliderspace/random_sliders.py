"""Random sparse sliders (SliderSpace §1 step 5): each generation gets k random sliders of a bank.

Batch item ``j`` draws its subset from ``seed + j``, so item ``j`` of a batch equals a single run with
seed ``seed + j``. The scale distribution is configurable (the reference: fixed scale 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..common.errors import InputError

Distribution = Literal["fixed", "uniform"]


@dataclass(frozen=True)
class SparseSpec:
    k: int = 3
    """Sliders per generation (the paper: 3)."""
    distribution: Distribution = "fixed"
    """``fixed``: every slider at ``scale``; ``uniform``: a magnitude in ``[min_scale, scale]``."""
    scale: float = 1.0
    """The fixed scale, or the upper bound of the uniform range."""
    min_scale: float = 0.5
    """Lower bound of the uniform range."""
    random_sign: bool = False
    """Flip each chosen slider's sign at random."""

    def check(self, n_sliders: int) -> None:
        if not 1 <= self.k <= n_sliders:
            raise InputError("k", f"is {self.k} but the bank has {n_sliders} slider(s).",
                             f"choose k between 1 and {n_sliders}.")
        if self.distribution not in ("fixed", "uniform"):
            raise InputError("distribution", f"is {self.distribution!r}.", "use 'fixed' or 'uniform'.")
        if self.distribution == "uniform" and self.min_scale > self.scale:
            raise InputError("min_scale", f"({self.min_scale}) is above scale ({self.scale}).",
                             "make min_scale <= scale.")


def draw_subset(spec: SparseSpec, n_sliders: int, seed: int) -> dict[int, float]:
    """The sliders and scales of one generation, from ``seed`` alone."""
    g = torch.Generator().manual_seed(int(seed) % 2**64)
    idx = torch.randperm(n_sliders, generator=g)[: spec.k].tolist()
    if spec.distribution == "uniform":
        mags = (torch.rand(spec.k, generator=g, dtype=torch.float64) * (spec.scale - spec.min_scale)
                + spec.min_scale).tolist()
    else:
        mags = [spec.scale] * spec.k
    signs = (torch.randint(0, 2, (spec.k,), generator=g) * 2 - 1).tolist() if spec.random_sign else [1] * spec.k
    return {int(i): float(round(m * s, 6)) for i, m, s in zip(idx, mags, signs, strict=True)}


def describe(subsets: list[dict[int, float]], seed: int) -> str:
    """One line per item, in Apply Slider Bank's ``scales`` syntax, to reproduce any image."""
    lines = []
    for j, sub in enumerate(subsets):
        body = ", ".join(f"{i}:{s:g}" for i, s in sorted(sub.items()))
        lines.append(f"item {j} (seed {seed + j}): {body}")
    return "\n".join(lines)
