"""Experiment: how much of each caption word's effect has the shipped ToyWorld denoiser learned? (issue 12)

At σ 80 the noisy input says almost nothing about the image, so the best possible x̂0 for a caption is the
mean of the images that caption describes (EDM: D(x; σ → ∞, c) → E[x0 | c]). For pairs of captions that
differ in one attribute, this script compares

- the **optimum**: RMS difference of the two conditional mean images (rendered, [−1, 1]), and
- the **model**: RMS difference of the denoiser's x̂0 for the two captions on the same noisy inputs,
  at σ 80, 20, 5 and 1.

A ratio model/optimum far below 1 at σ 80 means the text-to-image route for that attribute is not learned
where the layout is decided. Usage: ``.venv/bin/python scripts/exp_text_route.py`` (about 20 s on 2 cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toyworld.host import build_host, seed_noise  # noqa: E402
from toyworld.world import FACTORS, SHAPES, attribute, render, sample_factors  # noqa: E402

PAIRS: list[tuple[str, tuple[str, str | None], tuple[str, str | None]]] = [
    ("x", ("a circle on the left", "on the left"), ("a circle on the right", "on the right")),
    ("y", ("a circle at the top", "at the top"), ("a circle at the bottom", "at the bottom")),
    ("size", ("a small circle", "small"), ("a large circle", "large")),
    ("bg", ("a circle on a dark background", "on a dark background"),
     ("a circle on a light background", "on a light background")),
    ("hue", ("a red circle", "red"), ("a blue circle", "blue")),
]
SIGMAS = (80.0, 20.0, 5.0, 1.0)


def conditional_mean(shape: str, factor: str | None, phrase: str | None, n: int = 20000) -> torch.Tensor:
    """Mean rendered image ([−1, 1]) of ``shape`` over the factor values ``phrase`` names (all if None)."""
    f = sample_factors(n, torch.Generator().manual_seed(0))
    if factor is not None:
        j = FACTORS.index(factor)
        f = f[[attribute(factor, float(v)) == phrase for v in f[:, j]]]
    shapes = torch.full((f.shape[0],), SHAPES.index(shape))
    return (render(shapes, f) * 2 - 1).mean(0)


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(2)
    d = build_host().denoiser
    rows = [(factor, a, b, conditional_mean("circle", factor, pa), conditional_mean("circle", factor, pb))
            for factor, (a, pa), (b, pb) in PAIRS]
    rows.append(("shape", "a circle", "a square", conditional_mean("circle", None, None),
                 conditional_mean("square", None, None)))
    print(f"{'pair':<66} {'optimum':>8} " + " ".join(f"{'σ ' + str(int(s)):>8}" for s in SIGMAS) + "  ratio@80")
    for factor, a, b, ma, mb in rows:
        best = float((ma - mb).pow(2).mean().sqrt())
        ctx = d.encode([a, b])
        got = []
        for s in SIGMAS:
            x = seed_noise(list(range(64))) * s
            sig = torch.full((64,), s)
            da = d(x, sig, ctx[:1].expand(64, -1, -1)) - d(x, sig, ctx[1:].expand(64, -1, -1))
            got.append(float(da.pow(2).mean().sqrt()))
        print(f"{factor + ': ' + a + ' / ' + b:<66} {best:8.4f} " + " ".join(f"{v:8.4f}" for v in got)
              + f"  {got[0] / best:8.3f}")


if __name__ == "__main__":
    main()
