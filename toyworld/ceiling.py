"""The oracle ceiling of slider alignment on ToyWorld: the best held-out cos(Δφ, v) ANY slider could reach.

PCA directions are global chords of the curved embedding manifold, not tangents, so even a perfect slider
moves a sample's embedding along the manifold's local tangent space, not along v. For every final x̂0 of a
discovery run this measures the local embedding tangents of the world's five factors (finite differences on
the analytic renderer at the factors read back from the pixels) plus seven image edits a slider could
plausibly make (morph towards square / triangle, shape saturation, shape value, blur, brightness, contrast).
The per-sample ceiling of component v is ‖P_T v‖ — the best cosine any mix of those changes reaches, chosen
separately for each sample: an upper bound on what one fixed weight edit achieves. F0 divides each trained
slider's held-out alignment by its component's median ceiling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sliderspace_core.common.encoders import preprocess

from .world import measure_factors, render


def edits(images: torch.Tensor) -> list[torch.Tensor]:
    """Five small image edits of ``images`` (renders in [0, 1]) that are not factor changes."""
    mask = (images - images.mean((2, 3), keepdim=True)).abs().sum(1, keepdim=True) > 0.05
    grey = images.mean(1, keepdim=True)
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None]) / 16
    blur = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), k.expand(3, 1, 3, 3), groups=3)
    return [images + 0.05 * mask * (images - grey), images + 0.05 * mask, 0.9 * images + 0.1 * blur,
            images * 1.05, (images - 0.5) * 1.05 + 0.5]


@torch.no_grad()
def alignment_ceiling(disc, n_components: int, with_edits: bool = True, eps: float = 0.02) -> torch.Tensor:
    """``[n_components]`` median (over the run's final images) ceiling of each PCA component's alignment.

    ``disc`` is a ``toyworld.pipeline.Discovery``; ``with_edits=False`` uses the five factor tangents only.
    """
    enc = disc.host.encoder

    def phi(images: torch.Tensor) -> torch.Tensor:
        pixels = preprocess(images.clamp(0, 1), enc.image_size, enc.mean, enc.std, channels_last=False)
        return F.normalize(enc.embed_pixels(pixels).float(), dim=-1)

    dirs = F.normalize(disc.basis.components[:n_components].float(), dim=-1)
    factors = measure_factors(disc.host.decode(disc.trajectories.x0[:, -1].float()), "circle").clamp(0.02, 0.98)
    circle = torch.zeros(factors.shape[0], dtype=torch.long)
    base = render(circle, factors)
    phi0 = phi(base)
    cols = []
    for k in range(factors.shape[1]):
        up, down = factors.clone(), factors.clone()
        up[:, k] += eps
        down[:, k] -= eps
        cols.append((phi(render(circle, up)) - phi(render(circle, down))) / (2 * eps))
    if with_edits:
        cols += [phi(0.9 * base + 0.1 * render(torch.full_like(circle, s), factors)) - phi0 for s in (1, 2)]
        cols += [phi(e) - phi0 for e in edits(base)]
    q, _ = torch.linalg.qr(torch.stack(cols, -1))
    return (q.transpose(1, 2) @ dirs.T).norm(dim=1).median(0).values
