"""Concept maps (METHODS §3.3): each feature's activation over the block's grid, for its top features.

``concept_maps`` encodes one map of Δ rows (height x width locations) and ranks features by their
activation mass (the sum of their codes over the locations); ``heatmap_grid`` draws the maps as a
labelled IMAGE — a heatmap row, and an overlay row on the decoded image when one is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.drawing import compose_grid
from ..common.errors import InputError
from ..decompose.topk_sae import TopKSAE

# A perceptual dark-to-bright ramp (close to "inferno"): black, purple, red, orange, pale yellow.
_RAMP = torch.tensor([[0.0, 0.0, 0.02], [0.34, 0.06, 0.43], [0.73, 0.21, 0.33], [0.98, 0.55, 0.04],
                      [0.99, 1.0, 0.64]])


@dataclass
class ConceptMaps:
    """The top features of one map of block activations."""

    ids: list[int]
    """Feature ids, most activation mass first."""
    mass: list[float]
    """Each feature's summed code over the grid (same order)."""
    maps: Tensor
    """(top, height, width) codes over the grid, float32."""
    total_mass: float
    """Summed codes of all features over the grid (mass shares are relative to it)."""

    def text(self) -> str:
        lines = [f"feature {i}: mass {m:.4g} ({100 * m / max(self.total_mass, 1e-30):.1f} %)"
                 for i, m in zip(self.ids, self.mass, strict=True)]
        return "\n".join(lines)


def concept_maps(sae: TopKSAE, rows: Tensor, height: int, width: int, top: int = 8,
                 features: list[int] | None = None) -> ConceptMaps:
    """Codes of ``rows`` (height*width, d) over the grid; the ``top`` features by mass, or ``features``."""
    if rows.shape[0] != height * width:
        raise InputError("activations", f"{rows.shape[0]} rows do not fill a {height}x{width} grid.",
                         "pass one map of the block (all its locations).")
    if top < 1:
        raise InputError("top", f"is {top}.", "show at least one feature.")
    with torch.no_grad():
        z = sae.encode(rows.to(sae.W_enc.device, torch.float32)).float().cpu()  # (hw, n)
    mass = z.sum(0)
    if features:
        for f in features:
            if not 0 <= f < sae.n_latents:
                raise InputError("features", f"feature {f} is out of range: the SAE has {sae.n_latents}.",
                                 f"use ids 0..{sae.n_latents - 1}.")
        ids = list(features)
    else:
        ids = mass.topk(min(top, sae.n_latents)).indices.tolist()
    maps = z[:, ids].T.reshape(len(ids), height, width)
    return ConceptMaps(ids, [float(mass[i]) for i in ids], maps, float(mass.sum()))


def colorize(m: Tensor, vmax: float | None = None) -> Tensor:
    """(h, w) values → (h, w, 3) colours on the ramp, 0 → black, ``vmax`` (default: the max) → pale yellow."""
    hi = float(m.max()) if vmax is None else vmax
    t = (m / hi).clamp(0, 1) if hi > 0 else torch.zeros_like(m)
    pos = t * (len(_RAMP) - 1)
    lo = pos.floor().long().clamp(max=len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    return _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac


def upsample(m: Tensor, height: int, width: int) -> Tensor:
    """(h, w) map → (height, width), nearest (each grid location stays a visible square)."""
    return F.interpolate(m[None, None].float(), size=(height, width), mode="nearest")[0, 0]


def heatmap_grid(cm: ConceptMaps, image: Tensor | None = None, cell: int = 128, alpha: float = 0.6) -> Tensor:
    """IMAGE [1, H, W, 3]: one column per feature (labelled id and mass share); a heatmap row, plus an
    overlay row on ``image`` ([H, W, 3] in [0, 1]) when given. Each map is scaled to its own maximum."""
    if image is not None:
        h, w = int(image.shape[0]), int(image.shape[1])
    else:
        gh, gw = cm.maps.shape[1:]
        s = max(1, round(cell / max(gh, gw)))
        h, w = gh * s, gw * s
    cells: dict[tuple[int, int], Tensor] = {}
    for c in range(len(cm.ids)):
        heat = colorize(upsample(cm.maps[c], h, w))
        cells[(0, c)] = heat
        if image is not None:
            weight = upsample(cm.maps[c], h, w)
            weight = (weight / weight.max().clamp_min(1e-30))[..., None] * alpha
            cells[(1, c)] = image[..., :3].float().cpu() * (1 - weight) + heat * weight
    cols = [f"#{i}  {100 * m / max(cm.total_mass, 1e-30):.0f}%" for i, m in zip(cm.ids, cm.mass, strict=True)]
    rows = ["heatmap"] + (["overlay"] if image is not None else [])
    return compose_grid(cells, rows, cols)
