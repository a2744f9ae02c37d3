"""Experiment: how much of each caption word's effect has the shipped ToyWorld denoiser learned? (issue 12)

At σ 80 the noisy input says almost nothing about the image, so the best possible x̂0 for a caption is the
mean of the images that caption describes (EDM: D(x; σ → ∞, c) → E[x0 | c]). For pairs of captions that
differ in one attribute, with ``opt`` = the difference of the two conditional mean images (rendered, [−1, 1])
and ``m`` = the mean over noisy inputs of the difference of the denoiser's x̂0 for the two captions (inputs:
rendered circles with uniform factors plus σ 80 noise, the same for both captions), it prints

- ``‖opt‖`` and ``‖m‖`` (RMS over pixels),
- the **learned share** ``<m, opt> / ‖opt‖²``: 1 when the model moves its mean prediction exactly as the
  optimum does, 0 when it does not move it along the optimum at all, and
- ``cos(m, opt)``.

A learned share far below 1 means the text-to-image route for that attribute is not learned where the layout
is decided. The conditional means filter uniform factors by the phrase; the captioner's choice of which
attribute to name (uniform over the named ones) is ignored, which changes both means of a pair alike.
Usage: ``.venv/bin/python scripts/exp_text_route.py`` (about 30 s on 2 cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toyworld.host import build_host  # noqa: E402
from toyworld.world import FACTORS, SHAPES, attribute, render, sample_factors  # noqa: E402

PAIRS: list[tuple[str, tuple[str, str | None], tuple[str, str | None]]] = [
    ("x", ("a circle on the left", "on the left"), ("a circle on the right", "on the right")),
    ("y", ("a circle at the top", "at the top"), ("a circle at the bottom", "at the bottom")),
    ("size", ("a small circle", "small"), ("a large circle", "large")),
    ("bg", ("a circle on a dark background", "on a dark background"),
     ("a circle on a light background", "on a light background")),
    ("hue", ("a red circle", "red"), ("a blue circle", "blue")),
]


def conditional_mean(shape: str, factor: str | None, phrase: str | None, n: int = 20000) -> torch.Tensor:
    """Mean rendered image ([−1, 1]) of ``shape`` over the factor values ``phrase`` names (all if None)."""
    f = sample_factors(n, torch.Generator().manual_seed(0))
    if factor is not None:
        j = FACTORS.index(factor)
        f = f[[attribute(factor, float(v)) == phrase for v in f[:, j]]]
    shapes = torch.full((f.shape[0],), SHAPES.index(shape))
    return (render(shapes, f) * 2 - 1).mean(0)


@torch.no_grad()
def main(sigma: float = 80.0, n: int = 256) -> None:
    torch.set_num_threads(2)
    d = build_host().denoiser
    g = torch.Generator().manual_seed(1)
    x0 = render(torch.full((n,), SHAPES.index("circle")), sample_factors(n, g)) * 2 - 1
    x = x0 + sigma * torch.randn(x0.shape, generator=g)
    sig = torch.full((n,), sigma)
    rows = [(factor, a, b, conditional_mean("circle", factor, pa), conditional_mean("circle", factor, pb))
            for factor, (a, pa), (b, pb) in PAIRS]
    rows.append(("shape", "a circle", "a square", conditional_mean("circle", None, None),
                 conditional_mean("square", None, None)))
    print(f"σ {sigma:g}, {n} noisy renders of circles")
    print(f"{'pair':<66} {'‖opt‖':>8} {'‖m‖':>8} {'share':>8} {'cos':>8}")
    for factor, a, b, ma, mb in rows:
        opt = (ma - mb).flatten()
        ctx = d.encode([a, b])
        m = (d(x, sig, ctx[:1].expand(n, -1, -1)) - d(x, sig, ctx[1:].expand(n, -1, -1))).mean(0).flatten()
        rms = lambda t: float(t.pow(2).mean().sqrt())  # noqa: E731
        share = float(m @ opt / (opt @ opt))
        cos = float(torch.nn.functional.cosine_similarity(m, opt, dim=0))
        print(f"{factor + ': ' + a + ' / ' + b:<66} {rms(opt):8.4f} {rms(m):8.4f} {share:8.3f} {cos:8.3f}")


if __name__ == "__main__":
    main()
