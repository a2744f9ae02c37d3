"""The procedural world: one shape (the "prompt") on a grey background, five independent factors.

:class:`WorldSpec` says which shapes and factors a world has, each factor's range and which are free.
Factors, each drawn uniformly in its range (default [0, 1]) and independently: ``hue`` (0 → red … 1 →
violet; the wheel is cut at 0.8 of a turn so the factor has no wrap-around), ``size``, ``x``, ``y`` (shape centre) and
``bg`` (background lightness). Images are ``[B, 3, 32, 32]`` in [0, 1], antialiased from a signed
distance. :func:`measure_factors` reads the factors back analytically from pixels (no learned model),
so every fidelity number is scored against the world's own definition. :func:`captions` writes each
image's caption: the bare concept ("a circle") most of the time, else one or two attributes read from the
factor values ("a red circle", "a small circle on the left", "a circle on a dark background").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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




@dataclass(frozen=True)
class WorldSpec:
    """What a ToyWorld contains. The default is the shipped world: three shapes, five free factors."""

    shapes: tuple[str, ...] = SHAPES
    """Shapes that occur (a subset of :data:`SHAPES`; each is one concept/prompt "a <shape>")."""
    ranges: dict[str, tuple[float, float]] = field(default_factory=lambda: {f: (0.0, 1.0) for f in FACTORS})
    """Factor name → (low, high) in factor units ([0, 1] spans the renderer's full range)."""
    free: tuple[str, ...] = FACTORS
    """Factors drawn uniformly in their range; the others are held at the middle of their range."""
    p_bare: float = 0.6
    """Probability that a caption is the bare concept ("a circle")."""
    p_two: float = 0.25
    """Given an attribute caption, the probability that it names two attributes instead of one."""

    def __post_init__(self) -> None:
        bad = [s for s in self.shapes if s not in SHAPES] + [f for f in (*self.ranges, *self.free) if f not in FACTORS]
        if bad or not self.shapes:
            raise ValueError(f"WorldSpec: unknown shape/factor names {bad} (shapes: {SHAPES}, factors: {FACTORS})")
        for f, (lo, hi) in self.ranges.items():
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"WorldSpec.ranges[{f!r}] = {(lo, hi)}: need 0 <= low <= high <= 1")

    def range(self, factor: str) -> tuple[float, float]:
        return self.ranges.get(factor, (0.0, 1.0))

    @property
    def prompts(self) -> tuple[str, ...]:
        return tuple(f"a {s}" for s in self.shapes)


DEFAULT_SPEC = WorldSpec()


def sample_factors(n: int, generator: torch.Generator, spec: WorldSpec = DEFAULT_SPEC) -> torch.Tensor:
    """``[n, 5]`` factors (order :data:`FACTORS`): free ones uniform in their range, others at its middle."""
    u = torch.rand(n, len(FACTORS), generator=generator)
    if spec == DEFAULT_SPEC:
        return u
    lo = torch.tensor([spec.range(f)[0] for f in FACTORS])
    hi = torch.tensor([spec.range(f)[1] for f in FACTORS])
    free = torch.tensor([f in spec.free for f in FACTORS])
    return torch.where(free, lo + (hi - lo) * u, (lo + hi) / 2)


def sample_shapes(n: int, generator: torch.Generator, spec: WorldSpec = DEFAULT_SPEC) -> torch.Tensor:
    """``[n]`` shape indices into :data:`SHAPES`, uniform over ``spec.shapes``."""
    pick = torch.randint(len(spec.shapes), (n,), generator=generator)
    if spec.shapes == SHAPES:
        return pick
    return torch.tensor([SHAPES.index(s) for s in spec.shapes])[pick]


# ---------------------------------------------------------------- captions
COLOURS: dict[str, float] = {"red": 0.0, "orange": 30 / 288, "yellow": 60 / 288, "green": 120 / 288,
                             "cyan": 180 / 288, "blue": 240 / 288, "purple": 280 / 288}
"""Colour word → its hue in factor units (hue angle / 288°, the renderer's 0.8 of a turn)."""
THIRDS: dict[str, tuple[str, str]] = {"size": ("small", "large"), "x": ("on the left", "on the right"),
                                      "y": ("at the top", "at the bottom"),
                                      "bg": ("on a dark background", "on a light background")}
"""Factor → the phrases for its low and high third (y grows downwards)."""
CAPTION_WORDS: tuple[str, ...] = tuple(dict.fromkeys(
    ["a", *SHAPES, *COLOURS, *(w for pair in THIRDS.values() for p in pair for w in p.split())]))
"""Every word a caption of the default world can use."""


def prompt_shape(prompt: str) -> str:
    """The shape a prompt names ("a small red circle on the left" → "circle")."""
    found = [w for w in prompt.lower().split() if w in SHAPES]
    if len(found) != 1:
        raise ValueError(f"prompt {prompt!r} must name exactly one of the shapes {SHAPES}")
    return found[0]


def colour_word(hue: float) -> str:
    """The colour word nearest to a hue factor value."""
    return min(COLOURS, key=lambda w: abs(COLOURS[w] - hue))


def attribute(factor: str, value: float) -> str | None:
    """The phrase naming ``value`` of ``factor`` (None in the unnamed middle third of size/x/y/bg)."""
    if factor == "hue":
        return colour_word(value)
    lo, hi = THIRDS[factor]
    return lo if value < 1 / 3 else hi if value > 2 / 3 else None


def compose(shape: str, phrases: dict[str, str]) -> str:
    """"a [size] [colour] <shape> [position] [background]" from factor → phrase."""
    words = ["a", phrases.get("size", ""), phrases.get("hue", ""), shape,
             phrases.get("x", ""), phrases.get("y", ""), phrases.get("bg", "")]
    return " ".join(w for w in words if w)


def captions(shapes: torch.Tensor, factors: torch.Tensor, generator: torch.Generator,
             spec: WorldSpec = DEFAULT_SPEC) -> list[str]:
    """One caption per image: bare with probability ``spec.p_bare`` (independent of the factors), else one
    or two attributes, chosen uniformly among the free factors whose value has a name."""
    n = shapes.shape[0]
    u = torch.rand(n, 4, generator=generator).tolist()
    out = []
    for i in range(n):
        shape = SHAPES[int(shapes[i])]
        named = {f: a for f in spec.free if (a := attribute(f, float(factors[i, FACTORS.index(f)])))}
        if u[i][0] < spec.p_bare or not named:
            out.append(f"a {shape}")
            continue
        keys = list(named)
        k = 2 if u[i][1] < spec.p_two and len(keys) > 1 else 1
        first = keys[int(u[i][2] * len(keys)) % len(keys)]
        rest = [f for f in keys if f != first]
        chosen = [first] + ([rest[int(u[i][3] * len(rest)) % len(rest)]] if k == 2 else [])
        out.append(compose(shape, {f: named[f] for f in chosen}))
    return out


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
