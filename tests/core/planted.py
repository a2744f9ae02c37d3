"""Planted-dictionary gradients: rows that are sparse mixtures of known unit atoms (ELROND's TopK SAE checks)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

PLANT_SEED = 12345
"""Not 0: the SAE's own init uses seed 0 and the same draw order, so seed 0 would plant its initial atoms."""


def planted_gradients(n: int, d: int = 768, atoms: int = 32, per_row: int = 3, noise: float = 0.1,
                      seed: int = PLANT_SEED) -> tuple[Tensor, Tensor]:
    """(rows (n, d), atoms (atoms, d)): each row = ``per_row`` random atoms with coefficients ±[0.5, 1.5] plus
    Gaussian noise of ``noise`` × the row's norm, then scaled to unit length (as Collect's ``normalize``)."""
    g = torch.Generator().manual_seed(seed)
    dic = torch.nn.functional.normalize(torch.randn(atoms, d, generator=g), dim=1)
    idx = torch.stack([torch.randperm(atoms, generator=g)[:per_row] for _ in range(n)])
    sign = torch.where(torch.rand(n, per_row, generator=g) < 0.5, -1.0, 1.0)
    coef = (0.5 + torch.rand(n, per_row, generator=g)) * sign
    x = (coef[..., None] * dic[idx]).sum(1)
    x = x + noise * x.norm(dim=1, keepdim=True) * torch.randn(n, d, generator=g) / math.sqrt(d)
    return torch.nn.functional.normalize(x, dim=1), dic


def recovery(dic: Tensor, directions: Tensor) -> Tensor:
    """Per planted atom, the best |cos| with any of ``directions`` (0 when there are none)."""
    if directions.shape[0] == 0:
        return torch.zeros(dic.shape[0])
    return (dic @ torch.nn.functional.normalize(directions.float(), dim=1).T).abs().max(1).values
