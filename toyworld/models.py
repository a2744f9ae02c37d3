"""The two ToyWorld networks: a conditional pixel-space denoiser and a CLIP-playing image encoder.

``Denoiser``: a small UNet on 32×32 RGB (in [-1, 1]) with EDM preconditioning (σ_data = 0.5), two
coordinate input channels (the role of DiT's position embedding: a purely convolutional UNet is
translation equivariant, so no change of its prompt conditioning could move the shape at all), and
cross-attention over a learned token embedding of the prompt ("a circle" …; the null prompt for
classifier-free guidance). Every cross-attention has ``to_k``/``to_v`` as ``nn.Linear`` over the
token context — the modules SliderSpace's sliders target, and the context is what ELROND differentiates.

``Encoder``: a small CNN giving a 64-d embedding (the core L2-normalises it), trained to make the
world's factors and shape linearly readable; ``head`` is the separate read-out used only for scoring.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sliderspace_core.common.encoders import CLIP_MEAN, CLIP_STD

from .world import FACTORS, SHAPES

VOCAB: tuple[str, ...] = ("<null>", "a", *SHAPES)
CONTEXT_LEN = 2
SIGMA_DATA = 0.5


def tokenize(prompt: str) -> torch.Tensor:
    """``[CONTEXT_LEN]`` token ids of a prompt; ``""`` is the null prompt (all ``<null>``)."""
    words = prompt.lower().split()
    if not words:
        return torch.zeros(CONTEXT_LEN, dtype=torch.long)
    if len(words) != CONTEXT_LEN or any(w not in VOCAB[1:] for w in words):
        raise ValueError(f"ToyWorld knows only the prompts 'a circle', 'a square', 'a triangle' (got {prompt!r})")
    return torch.tensor([VOCAB.index(w) for w in words])


@dataclass(frozen=True)
class DenoiserConfig:
    ch: int = 16
    """Channels at 32×32; 2·ch at 16×16 and 8×8."""
    ctx_dim: int = 32
    """Token-embedding width (the context the cross-attention k/v read)."""
    heads: int = 2
    head_dim: int = 16
    temb: int = 128


class CrossAttention(nn.Module):
    """Residual multi-head cross-attention from image positions (queries) to prompt tokens."""

    def __init__(self, dim: int, ctx_dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.norm = nn.GroupNorm(8, dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(ctx_dim, inner, bias=False)
        self.to_v = nn.Linear(ctx_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.to_q(self.norm(x).flatten(2).transpose(1, 2))
        k, v = self.to_k(ctx), self.to_v(ctx)
        split = lambda t: t.view(b, t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(q), split(k), split(v))
        o = self.to_out(o.transpose(1, 2).reshape(b, h * w, -1))
        return x + o.transpose(1, 2).reshape(b, c, h, w)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, temb: int) -> None:
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.t = nn.Linear(temb, c_out)
        self.n2, self.c2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x))) + self.t(t)[:, :, None, None]
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class Denoiser(nn.Module):
    """``D(x; σ, tokens)`` → x̂0, EDM-preconditioned UNet 32 → 16 → 8 with cross-attention at every level."""

    def __init__(self, cfg: DenoiserConfig = DenoiserConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        c, c2, te = cfg.ch, 2 * cfg.ch, cfg.temb
        self.tokens = nn.Embedding(len(VOCAB), cfg.ctx_dim)
        self.pos = nn.Parameter(torch.zeros(CONTEXT_LEN, cfg.ctx_dim))
        self.t_mlp = nn.Sequential(nn.Linear(32, te), nn.SiLU(), nn.Linear(te, te))
        self.inp = nn.Conv2d(3 + 2, c, 3, padding=1)  # RGB + (x, y) coordinate channels
        att = lambda d: CrossAttention(d, cfg.ctx_dim, cfg.heads, cfg.head_dim)  # noqa: E731
        self.d1, self.down1 = ResBlock(c, c, te), nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.d2, self.a2, self.down2 = ResBlock(c, c2, te), att(c2), nn.Conv2d(c2, c2, 3, stride=2, padding=1)
        self.m1, self.am, self.m2 = ResBlock(c2, c2, te), att(c2), ResBlock(c2, c2, te)
        self.u2, self.au2 = ResBlock(2 * c2, c2, te), att(c2)
        self.u1, self.au1 = ResBlock(c2 + c, c, te), att(c)
        self.out = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, 3, 3, padding=1))

    def context(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` token ids → ``[B, L, ctx_dim]`` context (token embedding + position)."""
        return self.tokens(tokens) + self.pos

    def net(self, x: torch.Tensor, c_noise: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        half = 16
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=x.device) / half)
        ang = c_noise[:, None] * 250.0 * freqs[None]
        t = self.t_mlp(torch.cat([ang.sin(), ang.cos()], dim=1))
        b, _, hh, ww = x.shape
        ys = torch.linspace(-1, 1, hh, device=x.device, dtype=x.dtype).view(1, 1, hh, 1).expand(b, 1, hh, ww)
        xs = torch.linspace(-1, 1, ww, device=x.device, dtype=x.dtype).view(1, 1, 1, ww).expand(b, 1, hh, ww)
        h0 = self.inp(torch.cat([x, xs, ys], 1))
        h1 = self.d1(h0, t)
        h2 = self.a2(self.d2(self.down1(h1), t), ctx)
        h = self.m2(self.am(self.m1(self.down2(h2), t), ctx), t)
        h = self.au2(self.u2(torch.cat([F.interpolate(h, scale_factor=2.0), h2], 1), t), ctx)
        h = self.au1(self.u1(torch.cat([F.interpolate(h, scale_factor=2.0), h1], 1), t), ctx)
        return self.out(h)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """x̂0 of ``x = x0 + σ·ε`` (``[B, 3, 32, 32]``, σ ``[B]``) given the context ``[B, L, ctx_dim]``."""
        s = sigma.view(-1, 1, 1, 1).to(x.dtype)
        sd2 = SIGMA_DATA**2
        c_skip = sd2 / (s * s + sd2)
        c_out = s * SIGMA_DATA / (s * s + sd2).sqrt()
        c_in = 1 / (s * s + sd2).sqrt()
        c_noise = sigma.log().to(x.dtype) / 4
        return c_skip * x + c_out * self.net(c_in * x, c_noise, ctx)

    def cross_attention_kv(self) -> dict[str, nn.Linear]:
        """Name → every cross-attention ``to_k``/``to_v`` Linear: the slider targets."""
        return {n: m for n, m in self.named_modules() if n.endswith((".to_k", ".to_v"))}


@dataclass(frozen=True)
class EncoderConfig:
    dim: int = 64
    """Embedding width."""
    image_size: int = 32


class Encoder(nn.Module):
    """CNN image encoder with the core's ``ImageEncoder`` interface, plus a read-out ``head``."""

    encoder_id = "toyworld:encoder"
    mean, std = CLIP_MEAN, CLIP_STD

    def __init__(self, cfg: EncoderConfig = EncoderConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_size = cfg.image_size
        act = nn.SiLU
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), act(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), act(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), act(),
            nn.Conv2d(64, 96, 3, stride=2, padding=1), act(),
            nn.Flatten(), nn.Linear(96 * (cfg.image_size // 8) ** 2, cfg.dim))
        self.head = nn.Linear(cfg.dim, len(FACTORS) + len(SHAPES))
        """Read-out for scoring only: factors (first 5) and shape logits (last 3) from the unit embedding."""

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, 3, S, S]`` → ``[B, dim]`` (unnormalised; the core L2-normalises)."""
        return self.trunk(pixels)

    def read_out(self, unit_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Factors ``[B, 5]`` and shape logits ``[B, 3]`` from L2-normalised embeddings."""
        out = self.head(unit_embedding)
        return out[:, :len(FACTORS)], out[:, len(FACTORS):]


def config_dict(cfg: DenoiserConfig | EncoderConfig) -> dict:
    return asdict(cfg)
