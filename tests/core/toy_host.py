"""A tiny pure-torch diffusion host for the training loop: cross-attention over a fixed prompt context."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sliderspace_core.common.encoders import CLIP_MEAN, CLIP_STD


class ToyBlock(nn.Module):
    def __init__(self, c: int = 4, h: int = 16, ctx: int = 12) -> None:
        super().__init__()
        self.to_q = nn.Linear(c, h)
        self.to_k = nn.Linear(ctx, h)
        self.to_v = nn.Linear(ctx, h)
        self.out = nn.Linear(h, c)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        tokens = x.flatten(2).transpose(1, 2)                      # [B, HW, C]
        q, k, v = self.to_q(tokens), self.to_k(context), self.to_v(context)
        att = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1)
        return (tokens + self.out(att @ v)).transpose(1, 2).reshape(b, c, hh, ww)


class ToyEncoder(nn.Module):
    encoder_id = "toy:encoder"
    image_size = 8
    mean, std = CLIP_MEAN, CLIP_STD

    def __init__(self, d: int = 12) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.Tanh(), nn.Linear(32, d))

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)


class ToyHost(nn.Module):
    """``predict_x0 = block(x_t / sqrt(1 + σ²))``; decode is a fixed 1x1 colour map + sigmoid, upsampled."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.block1 = ToyBlock()
        self.block2 = ToyBlock()
        self.context = nn.Parameter(torch.randn(1, 5, 12), requires_grad=False)
        self.colour = nn.Conv2d(4, 3, 1)
        self.encoder = ToyEncoder()
        for p in self.parameters():
            p.requires_grad_(True)  # like a ComfyUI model: the trainer must not rely on frozen flags

    def predict_x0(self, x_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x = x_t / (1 + sigma.view(-1, 1, 1, 1) ** 2).sqrt()
        ctx = self.context.expand(x.shape[0], -1, -1)
        return self.block2(self.block1(x, ctx), ctx)

    def noised(self, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x0 + sigma.view(-1, 1, 1, 1) * noise

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return F.interpolate(torch.sigmoid(self.colour(latent)), scale_factor=2, mode="nearest")

    def targets(self) -> dict[str, nn.Module]:
        return {f"{b}.{p}": getattr(getattr(self, b), p) for b in ("block1", "block2") for p in ("to_k", "to_v")}
