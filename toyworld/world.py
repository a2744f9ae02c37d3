"""The procedural world: one shape (the "prompt") on a grey background, five independent factors.

Factors, each drawn uniformly in [0, 1] and independently: ``hue`` (0 → red … 1 → violet; the wheel is
cut at 0.8 of a turn so the factor has no wrap-around), ``size``, ``x``, ``y`` (shape centre) and
``bg`` (background lightness). Images are ``[B, 3, 32, 32]`` in [0, 1], antialiased from a signed
distance. :func:`measure_factors` reads the factors back analytically from pixels (no learned model),
so every fidelity number is scored against the world's own definition.
"""

from __future__ import annotations

import math

import torch

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
FACTORS: tuple[str, ...] = ("hue", "size", "x", "y", "bg")
PROMPTS: tuple[str, ...] = tuple(f"a {s}" for s in SHAPES)
SIZE = 32
HUE_TURN = 0.8          # factor hue ∈ [0,1] ↦ hue angle ∈ [0, 0.8) of a turn
SAT, VAL = 0.85, 0.9    # shape colour saturation and value
R_MIN, R_MAX = 0.12, 0.26  # shape "radius" (fraction of the image width)
C_MIN, C_MAX = 0.28, 0.72  # shape centre range
BG_MIN, BG_MAX = 0.15, 0.85  # background grey level range
# area of each shape at radius r is AREA_K[shape] * r**2 (circle; square of half-side 0.8r; triangle of inradius 0.6r)
AREA_K = {"circle": math.pi, "square": 4 * 0.8**2, "triangle": 3 * math.sqrt(3) * 0.6**2}


def sample_factors(n: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, 5]`` factors, independent uniforms in [0, 1] (order :data:`FACTORS`)."""
    return torch.rand(n, len(FACTORS), generator=generator)


def sample_shapes(n: int, generator: torch.Generator) -> torch.Tensor:
    """``[n]`` shape indices into :data:`SHAPES`, uniform."""
    return torch.randint(len(SHAPES), (n,), generator=generator)


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Vectorised HSV → RGB; inputs ``[...]`` in [0, 1], output ``[..., 3]``."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=-1)
    f = (torch.minimum(k, 4 - k)).clamp(0, 1)
    return v[..., None] - (v * s)[..., None] * f


def _sdf(shape: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance (image-width units, negative inside) of each item's shape; ``dy`` points down."""
    circle = (dx * dx + dy * dy).sqrt() - r
    square = torch.maximum(dx.abs(), dy.abs()) - 0.8 * r
    c30, s30 = math.cos(math.pi / 6), 0.5
    tri = torch.maximum(torch.maximum(dy, c30 * dx - s30 * dy), -c30 * dx - s30 * dy) - 0.6 * r
    return torch.where(shape == 0, circle, torch.where(shape == 1, square, tri))


def render(shapes: torch.Tensor, factors: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """Images ``[B, 3, size, size]`` in [0, 1] of ``shapes [B]`` with ``factors [B, 5]``; deterministic."""
    b = factors.shape[0]
    f = factors.float()
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    py, px = coords.view(1, size, 1), coords.view(1, 1, size)
    cx = (C_MIN + (C_MAX - C_MIN) * f[:, 2]).view(b, 1, 1)
    cy = (C_MIN + (C_MAX - C_MIN) * f[:, 3]).view(b, 1, 1)
    r = (R_MIN + (R_MAX - R_MIN) * f[:, 1]).view(b, 1, 1)
    d = _sdf(shapes.view(b, 1, 1), px - cx, py - cy, r)
    alpha = (0.5 - d * size).clamp(0, 1)[:, None]                       # 1-pixel antialiased edge
    colour = hsv_to_rgb(f[:, 0] * HUE_TURN, torch.full((b,), SAT), torch.full((b,), VAL))
    grey = (BG_MIN + (BG_MAX - BG_MIN) * f[:, 4]).view(b, 1, 1, 1)
    return alpha * colour.view(b, 3, 1, 1) + (1 - alpha) * grey


def shape_mask(images: torch.Tensor) -> torch.Tensor:
    """Soft mask ``[B, H, W]`` of the coloured shape: saturation ramps 0 → 1 between 0.3 and 0.6."""
    mx, mn = images.amax(1), images.amin(1)
    sat = (mx - mn) / mx.clamp_min(1e-3)
    return ((sat - 0.3) / 0.3).clamp(0, 1)


def _hue(images: torch.Tensor) -> torch.Tensor:
    """Per-pixel hue in turns ``[B, H, W]`` (undefined where grey; callers weight by the mask)."""
    r, g, b = images[:, 0], images[:, 1], images[:, 2]
    ang = torch.atan2(math.sqrt(3) * (g - b), 2 * r - g - b)
    return (ang / (2 * math.pi)) % 1.0


@torch.no_grad()
def measure_factors(images: torch.Tensor, shape: str | torch.Tensor) -> torch.Tensor:
    """Read the five factors back from pixels ``[B, 3, H, W]`` in [0, 1] → ``[B, 5]`` (world units).

    x, y: mask centroid; size: √(mask area / shape constant); hue: circular mean hue inside the mask;
    bg: mean grey level where the mask is ~0. Values are mapped back to the factor scale (they may leave
    [0, 1] a little). ``shape`` names the shape (or gives per-item indices) for the area constant.
    """
    x = images.float().clamp(0, 1)
    bsz, _, h, w = x.shape
    m = shape_mask(x)
    mass = m.sum((1, 2)).clamp_min(1e-3)
    ys = ((torch.arange(h, dtype=torch.float32) + 0.5) / h).view(1, h, 1)
    xs = ((torch.arange(w, dtype=torch.float32) + 0.5) / w).view(1, 1, w)
    cx, cy = (m * xs).sum((1, 2)) / mass, (m * ys).sum((1, 2)) / mass
    if isinstance(shape, str):
        k = torch.full((bsz,), AREA_K[shape])
    else:
        k = torch.tensor([AREA_K[SHAPES[int(i)]] for i in shape])
    radius = (mass / (h * w) / k).sqrt()
    hue = _hue(x) * 2 * math.pi
    hc, hs = (m * hue.cos()).sum((1, 2)) / mass, (m * hue.sin()).sum((1, 2)) / mass
    turn = (torch.atan2(hs, hc) / (2 * math.pi)) % 1.0
    turn = torch.where(turn > 0.5 * (1 + HUE_TURN), turn - 1.0, turn)    # the unused arc splits at its middle
    out_w = (m < 0.02).float() * (1 - _near(m))
    bg = (x.mean(1) * out_w).sum((1, 2)) / out_w.sum((1, 2)).clamp_min(1.0)
    return torch.stack([turn / HUE_TURN, (radius - R_MIN) / (R_MAX - R_MIN), (cx - C_MIN) / (C_MAX - C_MIN),
                        (cy - C_MIN) / (C_MAX - C_MIN), (bg - BG_MIN) / (BG_MAX - BG_MIN)], dim=1)


def _near(m: torch.Tensor) -> torch.Tensor:
    """1 where a pixel is within one pixel of the mask (its antialiased rim), else 0."""
    return (torch.nn.functional.max_pool2d(m[:, None], 3, 1, 1)[:, 0] > 0.02).float()
