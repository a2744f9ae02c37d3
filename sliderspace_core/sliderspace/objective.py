"""The SliderSpace objective: a slider must move the image embedding along its basis direction."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def slider_loss(phi_with: torch.Tensor, phi_without: torch.Tensor, targets: torch.Tensor, guard: float = 0.0,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``1 − cos(Δφ, v)`` averaged over the batch, and the per-item cosines (detached).

    ``phi_*``: ``[B, D]`` embeddings (L2-normalised, as for the PCA); ``targets``: ``[B, D]`` directions
    (``v_i``, or ``−v_i`` for items trained at scale −1). ``guard`` > 0: ``cos = ⟨Δφ, v⟩ / √(‖Δφ‖² + guard²)``,
    which caps the gradient where ‖Δφ‖ is tiny (a slider that starts at zero).
    """
    delta = phi_with - phi_without
    if guard > 0:
        v = F.normalize(targets.to(delta), dim=-1)
        cos = (delta * v).sum(-1) / ((delta * delta).sum(-1) + guard**2).sqrt()
    else:
        cos = F.cosine_similarity(delta, targets.to(delta), dim=-1, eps=1e-12)
    return (1.0 - cos).mean(), cos.detach()
