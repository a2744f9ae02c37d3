"""ToyWorld's denoising network: Stable Diffusion's UNet block structure at toy scale.

Module tree and names follow ComfyUI's ``openaimodel.UNetModel`` (the SD layout), so slider target
presets and block names mean on ToyWorld what they mean on SD:
``time_embed.{0,2}``; ``input_blocks.0.0`` (conv in); ``input_blocks.N.0`` ResBlocks (``in_layers.{0,2}``,
``emb_layers.1``, ``out_layers.{0,3}``, ``skip_connection``); ``input_blocks.N.0.op`` downsampling;
``input_blocks.N.1`` / ``middle_block.1`` / ``output_blocks.N.1`` SpatialTransformers (``norm``, ``proj_in``,
``transformer_blocks.0.{norm1,attn1,norm2,attn2,norm3,ff}``, ``proj_out``; attention ``to_q``, ``to_k``,
``to_v``, ``to_out.0``; feed-forward ``ff.net.0.proj`` (GEGLU) and ``ff.net.2``); ``output_blocks.N.2``
upsampling (parameter-free); ``out.{0,2}``. Resolutions 32 (ResBlocks only), 16 and 8 (ResBlock + SpatialTransformer).

``forward(x, timesteps, context, **kw)`` returns the RAW network output F: the caller applies EDM's
preconditioning (``models.Denoiser`` here; ComfyUI's EDM model sampling there, which passes
``timesteps = c_noise = ¼·ln σ`` and ``x = c_in·x_t``). Position information: two coordinate channels
(x, y in [−1, 1]) are appended to the input inside ``forward`` — a convolutional UNet is otherwise
translation equivariant, and no prompt could move the shape. Layers come from ``ops``
(``torch.nn`` by default; the ComfyUI loader passes ``comfy.ops`` classes) and load the same state dict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    model_channels: int = 16
    """Channels at 32×32; ``channel_mult`` scales them at 16×16 and 8×8."""
    channel_mult: tuple[int, int, int] = (1, 2, 4)
    context_dim: int = 64
    """Width of the context tokens (the text encoder's output)."""
    head_dim: int = 16
    """Attention head width; heads = channels / head_dim."""
    in_channels: int = 3
    out_channels: int = 3
    time_scale: float = 250.0
    """The sinusoidal time embedding reads ``time_scale · timesteps`` (c_noise = ¼ ln σ: ≈ [−1, 1.1])."""


def groups(c: int) -> int:
    return 8 if c % 8 == 0 else 1


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """SD's sinusoidal embedding ``[B, dim]`` (cos first, as ComfyUI's ``timestep_embedding``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    ang = t[:, None].float() * freqs[None]
    return torch.cat([ang.cos(), ang.sin()], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, emb: int, c_out: int, ops=nn) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(ops.GroupNorm(groups(c_in), c_in), nn.SiLU(),
                                       ops.Conv2d(c_in, c_out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), ops.Linear(emb, c_out))
        self.out_layers = nn.Sequential(ops.GroupNorm(groups(c_out), c_out), nn.SiLU(), nn.Dropout(0.0),
                                        ops.Conv2d(c_out, c_out, 3, padding=1))
        self.skip_connection = ops.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.emb_layers(emb)[:, :, None, None].to(x.dtype)
        return self.skip_connection(x) + self.out_layers(h)


class Attention(nn.Module):
    """Multi-head attention; ``context=None`` is self-attention (``attn1``), else cross-attention (``attn2``)."""

    def __init__(self, dim: int, context_dim: int | None, heads: int, head_dim: int, ops=nn) -> None:
        super().__init__()
        inner, kv = heads * head_dim, context_dim or dim
        self.heads = heads
        self.to_q = ops.Linear(dim, inner, bias=False)
        self.to_k = ops.Linear(kv, inner, bias=False)
        self.to_v = ops.Linear(kv, inner, bias=False)
        self.to_out = nn.Sequential(ops.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        b = x.shape[0]
        split = lambda t: t.view(b, t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(ctx)), split(self.to_v(ctx)))
        return self.to_out(o.transpose(1, 2).reshape(b, x.shape[1], -1))


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int, ops=nn) -> None:
        super().__init__()
        self.proj = ops.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 2, ops=nn) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, mult * dim, ops), nn.Dropout(0.0), ops.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int, head_dim: int, ops=nn) -> None:
        super().__init__()
        self.norm1, self.attn1 = ops.LayerNorm(dim), Attention(dim, None, heads, head_dim, ops)
        self.norm2, self.attn2 = ops.LayerNorm(dim), Attention(dim, context_dim, heads, head_dim, ops)
        self.norm3, self.ff = ops.LayerNorm(dim), FeedForward(dim, ops=ops)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """SD's spatial transformer (linear proj_in/proj_out as SD2/SDXL), depth 1."""

    def __init__(self, dim: int, context_dim: int, head_dim: int, ops=nn) -> None:
        super().__init__()
        self.in_channels = dim
        self.norm = ops.GroupNorm(groups(dim), dim, eps=1e-6)
        self.proj_in = ops.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(dim, context_dim, dim // head_dim, head_dim,
                                                                       ops)])
        self.proj_out = ops.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        for block in self.transformer_blocks:
            t = block(t, context)
        return x + self.proj_out(t).transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    def __init__(self, c: int, ops=nn) -> None:
        super().__init__()
        self.op = ops.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest 2× upsampling without a conv (SD's ``conv_resample=False``): the next ResBlock convolves."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


class Step(nn.ModuleList):
    """SD's ``TimestepEmbedSequential``: passes ``emb`` to ResBlocks and ``context`` to transformers."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNet(nn.Module):
    """32 → 16 → 8 UNet; skips from ``input_blocks`` 1, 3, 5 feed ``output_blocks`` 2, 1, 0."""

    def __init__(self, cfg: UNetConfig = UNetConfig(), ops=nn) -> None:
        """``ops``: the namespace of Linear/Conv2d/GroupNorm/LayerNorm classes (``torch.nn``, or ComfyUI's
        ``comfy.ops`` classes when ComfyUI builds the model, so its weight wrappers and casts apply)."""
        super().__init__()
        self.cfg = cfg
        self.dtype = torch.float32
        c1, c2, c3 = (cfg.model_channels * m for m in cfg.channel_mult)
        te, cd, hd = 4 * cfg.model_channels, cfg.context_dim, cfg.head_dim
        self.time_embed = nn.Sequential(ops.Linear(cfg.model_channels, te), nn.SiLU(), ops.Linear(te, te))
        st = lambda c: SpatialTransformer(c, cd, hd, ops)  # noqa: E731
        rb = lambda a, b: ResBlock(a, te, b, ops)  # noqa: E731
        self.input_blocks = nn.ModuleList([
            Step([ops.Conv2d(cfg.in_channels + 2, c1, 3, padding=1)]),     # 0: 32×32 (+2 coordinate channels)
            Step([rb(c1, c1)]),                                  # 1: 32×32 → skip
            Step([Downsample(c1, ops)]),                                        # 2: → 16×16
            Step([rb(c1, c2), st(c2)]),                          # 3: 16×16 → skip
            Step([Downsample(c2, ops)]),                                        # 4: → 8×8
            Step([rb(c2, c3), st(c3)]),                          # 5: 8×8 → skip
        ])
        self.middle_block = Step([rb(c3, c3), st(c3), rb(c3, c3)])
        self.output_blocks = nn.ModuleList([
            Step([rb(2 * c3, c3), st(c3), Upsample()]),        # 0: 8×8 → 16×16
            Step([rb(c3 + c2, c2), st(c2), Upsample()]),       # 1: 16×16 → 32×32
            Step([rb(c2 + c1, c1)]),                             # 2: 32×32
        ])
        self.out = nn.Sequential(ops.GroupNorm(groups(c1), c1), nn.SiLU(),
                                 ops.Conv2d(c1, cfg.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, **kwargs) -> torch.Tensor:
        """Raw output ``[B, 3, H, W]`` for input ``x`` (already scaled by c_in), ``timesteps`` = c_noise ``[B]``
        and ``context [B, L, context_dim]``; extra ComfyUI keywords (``transformer_options`` …) are ignored."""
        b, _, h, w = x.shape
        emb = self.time_embed(timestep_embedding(timesteps.reshape(-1).expand(b) * self.cfg.time_scale,
                                                 self.cfg.model_channels).to(x.dtype))
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        context = context.to(x.dtype)
        hs, hcur = [], torch.cat([x, xs, ys], 1)
        for i, block in enumerate(self.input_blocks):
            hcur = block(hcur, emb, context)
            if i in (1, 3, 5):
                hs.append(hcur)
        hcur = self.middle_block(hcur, emb, context)
        for block in self.output_blocks:
            hcur = block(torch.cat([hcur, hs.pop()], 1), emb, context)
        return self.out(hcur)
