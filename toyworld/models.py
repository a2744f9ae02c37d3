"""The ToyWorld networks: a text-conditioned pixel-space denoiser (SD-like) and a CLIP-playing image encoder.

``Denoiser``: EDM preconditioning (σ_data = 0.5) around two trained-together parts, as an SD checkpoint
holds them — ``diffusion_model`` (:class:`~toyworld.unet.UNet`, SD's block structure with ``attn1``/``attn2``
spatial transformers at 16×16 and 8×8) and ``text_encoder`` (:class:`~toyworld.text.TextEncoder`, a causal
transformer over CLIP's token layout). Images are 32×32 RGB in [−1, 1]. ``context(ids)`` runs the text
encoder; ``forward(x, σ, context)`` gives x̂0. Every cross-attention ``attn2.to_k``/``attn2.to_v`` is an
``nn.Linear`` over the per-token context — the modules SliderSpace's sliders target, and the context is
what ELROND differentiates.

``Encoder``: a small CNN giving a 64-d embedding (the core L2-normalises it), trained to make the
world's factors and shape linearly readable; ``head`` is the separate read-out used only for scoring.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

try:  # inside the node pack, where toyworld is a subpackage (the Load ToyWorld node)
    from ..sliderspace_core.common.encoders import CLIP_MEAN, CLIP_STD
except ImportError:  # run from the repository root: python -m toyworld.…
    from sliderspace_core.common.encoders import CLIP_MEAN, CLIP_STD

from .text import CONTEXT_LEN, VOCAB, TextConfig, TextEncoder, tokenize
from .unet import UNet, UNetConfig
from .world import FACTORS, SHAPES

__all__ = ["CONTEXT_LEN", "RHO", "SIGMA_DATA", "SIGMA_MAX", "SIGMA_MIN", "VOCAB", "Denoiser", "DenoiserConfig",
           "Encoder", "EncoderConfig", "config_dict", "denoiser_config", "known_fields",
           "tokenize"]

SIGMA_DATA = 0.5
SIGMA_MIN, SIGMA_MAX, RHO = 0.02, 80.0, 7.0
"""The sampler's Karras schedule (ComfyUI's model sampling too). σ_max is EDM's 80, not 10: at σ 10 the image-wide
mean of the noise (std 10/√3072 ≈ 0.18) is smaller than the background's spread (≈ 0.4), so a sampler starting
there inherits a background already half decided by the noise and squeezed to mid-grey (KS 0.22–0.24 against
0.06–0.09 from 80, on the same weights: README). Training is unchanged (EDM's log-normal σ)."""


@dataclass(frozen=True)
class DenoiserConfig:
    unet: UNetConfig = field(default_factory=UNetConfig)
    """The denoising network (``diffusion_model``)."""
    text: TextConfig = field(default_factory=TextConfig)
    """The text encoder (``text_encoder``); its width is the UNet's ``context_dim``."""
    sigma_data: float = SIGMA_DATA
    """EDM's data standard deviation (images in [−1, 1])."""


class Denoiser(nn.Module):
    """``D(x; σ, context)`` → x̂0 with EDM preconditioning; ``context(ids)`` is the text encoder's output."""

    def __init__(self, cfg: DenoiserConfig = DenoiserConfig()) -> None:
        super().__init__()
        if cfg.unet.context_dim != cfg.text.width:
            raise ValueError(f"UNet context_dim {cfg.unet.context_dim} != text width {cfg.text.width}")
        self.cfg = cfg
        self.diffusion_model = UNet(cfg.unet)
        self.text_encoder = TextEncoder(cfg.text)

    def context(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` token ids → ``[B, L, width]`` per-token context."""
        return self.text_encoder(tokens)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Prompts → context ``[len(prompts), L, width]`` (``""`` is the unconditional)."""
        return self.context(torch.stack([tokenize(p) for p in prompts]))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """x̂0 of ``x = x0 + σ·ε`` (``[B, 3, 32, 32]``, σ ``[B]``) given the context ``[B, L, width]``.

        c_in = 1/√(σ²+σ_d²), c_noise = ¼ ln σ, c_skip = σ_d²/(σ²+σ_d²), c_out = σ·σ_d/√(σ²+σ_d²) —
        exactly what ComfyUI's EDM model sampling applies around ``diffusion_model``.
        """
        s = sigma.view(-1, 1, 1, 1).to(x.dtype)
        sd = self.cfg.sigma_data
        c_skip = sd**2 / (s * s + sd**2)
        c_out = s * sd / (s * s + sd**2).sqrt()
        c_in = 1 / (s * s + sd**2).sqrt()
        c_noise = sigma.log().to(x.dtype) / 4
        return c_skip * x + c_out * self.diffusion_model(c_in * x, c_noise, ctx)

    def cross_attention_kv(self) -> dict[str, nn.Linear]:
        """Name → every cross-attention ``attn2.to_k``/``attn2.to_v`` Linear: the slider targets (SD's)."""
        return {n: m for n, m in self.named_modules() if n.endswith(("attn2.to_k", "attn2.to_v"))}

    def attention_linears(self) -> dict[str, nn.Linear]:
        """Name → every ``to_q``/``to_k``/``to_v``/``to_out.0`` of ``attn1`` and ``attn2`` (the FLUX-style preset)."""
        return {n: m for n, m in self.named_modules()
                if isinstance(m, nn.Linear) and n.endswith((".to_q", ".to_k", ".to_v", ".to_out.0"))}


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


def known_fields(cls, d: dict) -> dict:
    """The entries of ``d`` that name fields of dataclass ``cls`` (JSON lists become tuples): metadata from
    another version of the config loads with what this version knows."""
    names = {f.name for f in fields(cls)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}


def denoiser_config(d: dict) -> DenoiserConfig:
    """The :class:`DenoiserConfig` a weights file's ``config`` metadata describes (unknown keys ignored)."""
    return DenoiserConfig(unet=UNetConfig(**known_fields(UNetConfig, d.get("unet", {}))),
                          text=TextConfig(**known_fields(TextConfig, d.get("text", {}))),
                          **{k: v for k, v in d.items() if k == "sigma_data"})


def config_dict(cfg: DenoiserConfig | EncoderConfig) -> dict:
    """The config as JSON-able nested dicts (tuples become lists)."""
    import json

    return json.loads(json.dumps(asdict(cfg)))
