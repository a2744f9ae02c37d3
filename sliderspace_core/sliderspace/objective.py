"""The SliderSpace objective: a slider must move the image embedding along its basis direction."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def slider_loss(phi_with: torch.Tensor, phi_without: torch.Tensor, targets: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``1 − cos(Δφ, v)`` averaged over the batch, and the per-item cosines (detached).

    ``phi_*``: ``[B, D]`` embeddings (L2-normalised, as for the PCA); ``targets``: ``[B, D]`` directions
    (``v_i``, or ``−v_i`` for items trained at scale −1).
    """
    delta = phi_with - phi_without
    cos = F.cosine_similarity(delta, targets.to(delta), dim=-1, eps=1e-12)
    return (1.0 - cos).mean(), cos.detach()
