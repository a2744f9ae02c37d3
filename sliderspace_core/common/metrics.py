"""Evaluation metrics (METHODS.md "Evaluation vocabulary").

Diversity = mean pairwise distance ``1 − cos`` between image embeddings (the papers use DreamSim; any
image encoder works here). Higher means the images differ more.
"""

from __future__ import annotations

import torch

from .errors import InputError


def diversity(embeddings: torch.Tensor) -> float:
    """Mean of ``1 − cos(e_i, e_j)`` over all unordered pairs ``i < j`` of ``embeddings [N, D]``.

    Exact and O(N·D): with unit rows ``u_i``, ``Σ_{i<j} u_i·u_j = (‖Σ u_i‖² − Σ ‖u_i‖²) / 2``, summed in
    float64. Rows need not be normalised beforehand.
    """
    if embeddings.ndim != 2:
        raise InputError("images", f"the embeddings have shape {tuple(embeddings.shape)}, not [N, D].",
                         "pass a batch of images (one embedding per image).")
    n = int(embeddings.shape[0])
    if n < 2:
        raise InputError("images", f"holds {n} image(s); diversity compares pairs of images.",
                         "connect a batch of at least 2 images (e.g. set the latent batch size to 2 or more).")
    x = embeddings.detach().double()
    if not torch.isfinite(x).all():
        raise InputError("images", "their embeddings contain NaN/Inf values.",
                         "check the upstream nodes (NaN images or encoder output) and re-run them.")
    norms = x.norm(dim=1)
    if bool((norms == 0).any()):
        i = int((norms == 0).nonzero()[0])
        raise InputError("images", f"image {i} has an all-zero embedding, so its cosine is undefined.",
                         "check the image and the encoder; a zero embedding means a broken encoder output.")
    u = x / norms[:, None]
    total = u.sum(dim=0)
    cos_sum = (total @ total - (u * u).sum()) / 2.0
    mean_cos = float(cos_sum) / (n * (n - 1) / 2.0)
    return max(0.0, 1.0 - mean_cos)
