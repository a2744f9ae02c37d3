"""Experiment: how high can held-out cos(Δφ, v) get on ToyWorld for ANY slider? (issue 3's ≥ 0.9 bar)

PCA directions are global chords of the curved embedding manifold, not tangents, so even a perfect slider
moves a sample's embedding along the manifold's local tangent space, not along v. For every final x̂0 of a
discovery run this script measures the local embedding tangents of (a) the world's five factors (finite
differences on the analytic renderer at the factors read back from the pixels), and (b) those plus seven
more image edits a slider could plausibly make (morph towards square / triangle, shape saturation, shape
value, blur, brightness, contrast). The per-sample ceiling is ‖P_T v‖: the best cosine any mix of those
changes reaches, chosen separately for each sample — an upper bound on what one fixed weight edit achieves.

Usage: ``.venv/bin/python scripts/exp_alignment_ceiling.py [every|final]`` (about 30 s on 2 cores).
Measured once (seed 0, 8 components), median ceiling per component:
- final-only basis, 5 factors: 0.65 0.70 0.65 0.53 0.81 0.70 0.87 0.33;
  with the 7 edits: 0.91 0.93 0.84 0.74 0.94 0.86 0.94 0.82
- every-step basis, 5 factors: 0.43 0.83 0.69 0.84 0.52 0.71 0.64 0.68;
  with the 7 edits: 0.85 0.98 0.84 0.94 0.74 0.93 0.84 0.92
Trained sliders (final-only basis, rank 8, every attention linear, 2000 iterations) reached
0.69 0.56 0.25 0.39 0.48 0.35 0.77 0.37.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sliderspace_core.common.encoders import preprocess  # noqa: E402
from toyworld.host import build_host  # noqa: E402
from toyworld.pipeline import DiscoveryConfig, discover  # noqa: E402
from toyworld.world import measure_factors, render  # noqa: E402


def edits(images: torch.Tensor) -> list[torch.Tensor]:
    """Seven small image edits of ``images`` (renders in [0, 1]) that are not factor changes."""
    mask = (images - images.mean((2, 3), keepdim=True)).abs().sum(1, keepdim=True) > 0.05
    grey = images.mean(1, keepdim=True)
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None]) / 16
    blur = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), k.expand(3, 1, 3, 3), groups=3)
    return [images + 0.05 * mask * (images - grey), images + 0.05 * mask, 0.9 * images + 0.1 * blur,
            images * 1.05, (images - 0.5) * 1.05 + 0.5]


def main() -> None:
    torch.set_num_threads(2)
    keep = "final only" if (sys.argv[1:] or ["final"])[0] == "final" else "every step"
    d = discover(build_host(), DiscoveryConfig(keep_mode=keep), train=False)
    enc = d.host.encoder

    def phi(images: torch.Tensor) -> torch.Tensor:
        pixels = preprocess(images.clamp(0, 1), enc.image_size, enc.mean, enc.std, channels_last=False)
        return F.normalize(enc.embed_pixels(pixels).float(), dim=-1)

    dirs = F.normalize(d.basis.components[:8].float(), dim=-1)
    factors = measure_factors(d.host.decode(d.trajectories.x0[:, -1].float()), "circle").clamp(0.02, 0.98)
    circle = torch.zeros(factors.shape[0], dtype=torch.long)
    eps = 0.02
    with torch.no_grad():
        base = render(circle, factors)
        phi0 = phi(base)
        tangents = []
        for k in range(factors.shape[1]):
            up, down = factors.clone(), factors.clone()
            up[:, k] += eps
            down[:, k] -= eps
            tangents.append((phi(render(circle, up)) - phi(render(circle, down))) / (2 * eps))
        more = [phi(0.9 * base + 0.1 * render(torch.full_like(circle, s), factors)) - phi0 for s in (1, 2)]
        more += [phi(e) - phi0 for e in edits(base)]
        for name, cols in (("5 factors", tangents), ("5 factors + 7 edits", tangents + more)):
            q, _ = torch.linalg.qr(torch.stack(cols, -1))
            ceiling = (q.transpose(1, 2) @ dirs.T).norm(dim=1).median(0).values
            print(f"{keep} basis, {name}: median ceiling per component", [round(v, 2) for v in ceiling.tolist()])


if __name__ == "__main__":
    main()
