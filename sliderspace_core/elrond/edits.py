"""Applying ELROND directions (METHODS §2 step 7): add strength·u to a token's conditioning rows.

An edit is a vector in the conditioning space added to every row of the concept word's token pieces, for
the whole run, on the positive (cond) branch only. Several words compose: each edit touches only its own
rows, so applying them in any order gives the same result. Directions are used as unit vectors.

Random directions (the diversity mode): batch item ``j`` draws from ``seed + j`` alone — ``n`` distinct
directions, their sum normalised to unit length (each with a random sign when ``random_sign``), scaled by a
strength uniform in ``[min_strength, max_strength]`` — the same per-item seeding as Random Sparse Sliders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..common.errors import InputError
from ..common.textspec import finite_number, parse_indexed

STRENGTH_FIX = "write 'index:strength' pairs, e.g. '0:30, 2:-40' (indices count from 0)."


def unit_rows(directions: Tensor) -> Tensor:
    """The rows of ``directions`` (K, D) scaled to unit L2 norm (float32)."""
    d = directions.float()
    return d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)


def parse_strengths(text: str, n_directions: int, input_name: str = "strengths") -> dict[int, float]:
    """``"0:30, 2:-40"`` → ``{0: 30.0, 2: -40.0}``; indices must be < ``n_directions``."""
    def value(raw: str, entry: str) -> float:
        return finite_number(raw, input_name, f"entry {entry!r}", STRENGTH_FIX)

    return parse_indexed(text, n_directions, input_name, value, STRENGTH_FIX, what="index:strength",
                         single_token=True, noun="direction", owner="the directions set")


def combine(directions: Tensor, strengths: dict[int, float]) -> Tensor:
    """(D,) float32: Σ strength_i · u_i over the chosen unit directions (zero vector when none)."""
    u = unit_rows(directions)
    out = torch.zeros(u.shape[1], dtype=torch.float32)
    for i, s in strengths.items():
        out += float(s) * u[int(i)]
    return out


def add_to_rows(cond: Tensor, rows: Sequence[int], offset: Tensor) -> Tensor:
    """A new tensor: ``cond`` (B, L, D) with ``offset`` (D,) or (B, D) added to each of ``rows``.

    ``cond`` is never modified. When ``offset`` has B' > 1 rows and ``cond`` has one, ``cond`` is
    repeated to B' items (one edit per batch item).
    """
    offset = offset.to(cond.device, cond.dtype)
    if offset.ndim == 1:
        offset = offset[None]
    if offset.shape[-1] != cond.shape[-1]:
        raise InputError("directions", f"are {offset.shape[-1]} wide but the conditioning is {cond.shape[-1]} wide.",
                         "use directions collected with this model's text encoder.")
    out = cond.clone()
    if offset.shape[0] > 1 and out.shape[0] != offset.shape[0]:
        if out.shape[0] != 1:
            raise InputError("conditioning", f"has batch {out.shape[0]} but {offset.shape[0]} items were asked.",
                             "use a batch-1 conditioning (one prompt) or the same batch size.")
        out = out.repeat(offset.shape[0], *([1] * (out.ndim - 1)))
    rows = list(rows)
    out[:, rows] += offset[:, None, :]
    return out


@dataclass(frozen=True)
class RandomSpec:
    """How each generation's random edit is drawn."""

    n: int = 3
    """Directions summed per generation (the paper: 3)."""
    min_strength: float = 30.0
    """Lower bound of the strength (the paper on SDXL: 30 for PCA, 50 for SAE directions)."""
    max_strength: float = 40.0
    """Upper bound of the strength (the paper on SDXL: 40 for PCA, 60 for SAE directions)."""
    random_sign: bool = True
    """Give each chosen direction a random sign (PCA signs are arbitrary)."""

    def check(self, n_directions: int) -> None:
        if not 1 <= self.n <= n_directions:
            raise InputError("n", f"is {self.n} but there are {n_directions} directions.",
                             f"choose n between 1 and {n_directions}.")
        if self.min_strength > self.max_strength:
            raise InputError("min_strength", f"({self.min_strength}) is above max_strength ({self.max_strength}).",
                             "make min_strength <= max_strength.")


@dataclass(frozen=True)
class RandomDraw:
    """One generation's random edit."""

    indices: list[int]
    """The chosen directions."""
    signs: list[int]
    """Their signs (+1/-1)."""
    strength: float
    """The length of the edit."""


def draw_random(spec: RandomSpec, n_directions: int, seed: int) -> RandomDraw:
    """The random edit of one generation, from ``seed`` alone."""
    g = torch.Generator().manual_seed(int(seed) % 2**64)
    idx = torch.randperm(n_directions, generator=g)[: spec.n].tolist()
    signs = (torch.randint(0, 2, (spec.n,), generator=g) * 2 - 1).tolist() if spec.random_sign else [1] * spec.n
    t = float(torch.rand((), generator=g, dtype=torch.float64))
    strength = spec.min_strength + t * (spec.max_strength - spec.min_strength)
    return RandomDraw([int(i) for i in idx], [int(s) for s in signs], float(strength))


def random_offset(directions: Tensor, draw: RandomDraw) -> Tensor:
    """(D,): strength · normalise(Σ sign_i · u_i) for one :class:`RandomDraw`."""
    u = unit_rows(directions)
    v = sum(s * u[i] for i, s in zip(draw.indices, draw.signs, strict=True))
    return draw.strength * v / v.norm().clamp_min(1e-12)


def random_offsets(directions: Tensor, spec: RandomSpec, seed: int, batch_size: int) -> tuple[Tensor, list[RandomDraw]]:
    """(B, D): item ``j``'s edit drawn from ``seed + j``; and the draws (to describe them)."""
    spec.check(int(directions.shape[0]))
    draws = [draw_random(spec, int(directions.shape[0]), seed + j) for j in range(batch_size)]
    return torch.stack([random_offset(directions, d) for d in draws]), draws


def describe_draws(draws: list[RandomDraw], seed: int) -> str:
    """One line per item in Apply Directions' ``strengths`` syntax (exact up to the normalisation)."""
    lines = []
    for j, d in enumerate(draws):
        body = ", ".join(f"{i}:{s:+d}" for i, s in zip(d.indices, d.signs, strict=True))
        lines.append(f"item {j} (seed {seed + j}): directions {body}; strength {d.strength:.3f}")
    return "\n".join(lines)


def transfer_note(directions_word: str, word: str) -> str:
    """A sentence when directions collected for one word are applied to another (a transfer, maybe
    intended), else ``""``."""
    src, dst = (directions_word or "").strip(), (word or "").strip()
    if not src or src.lower() == dst.lower():
        return ""
    return (f"note: these directions were collected for {src!r} and are applied to {dst!r} (a transfer between "
            "words; fine when intended).")

