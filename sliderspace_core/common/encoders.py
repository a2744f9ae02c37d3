"""Image encoders and the ONE differentiable preprocessing shared by embedding and training.

The SliderSpace reference normalised decoder output in [-1, 1] as if it were [0, 1] during training
while its PCA stage was right; here both stages call :func:`preprocess` on images in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from .errors import InputError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocess(images: torch.Tensor, size: int, mean: Sequence[float] = CLIP_MEAN,
               std: Sequence[float] = CLIP_STD, crop: bool = True, channels_last: bool = True) -> torch.Tensor:
    """Images in [0, 1] → normalised encoder input ``[B, 3, size, size]``; differentiable.

    Shortest side resized to ``size`` (bicubic, antialiased, long side truncated as torchvision does),
    centre crop, clamp to [0, 1], normalise. ``crop=False`` stretches to a square instead. Unlike
    ComfyUI's ``clip_preprocess`` it does not round to 8-bit levels, so gradients flow.
    ``channels_last`` means ComfyUI's IMAGE layout ``[B, H, W, C]``; otherwise ``[B, C, H, W]``.
    """
    if images.ndim != 4:
        raise InputError("image", f"expected a 4-D image batch, got shape {tuple(images.shape)}.",
                         "pass a batch of images [B, H, W, C].")
    x = images.movedim(-1, 1) if channels_last else images
    x = x[:, :3].float()
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if crop:
        short, long = (h, w) if h <= w else (w, h)
        new_long = int(size * long / short)
        new_hw = (size, new_long) if h <= w else (new_long, size)
    else:
        new_hw = (size, size)
    if (h, w) != new_hw:
        x = F.interpolate(x, size=new_hw, mode="bicubic", antialias=True, align_corners=False)
    if crop:
        top = int(round((new_hw[0] - size) / 2.0))
        left = int(round((new_hw[1] - size) / 2.0))
        x = x[:, :, top:top + size, left:left + size]
    x = x.clamp(0.0, 1.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class ImageEncoder(Protocol):
    """What the pipeline needs of an image encoder (ComfyUI CLIP_VISION, open_clip, a toy model)."""

    encoder_id: str
    image_size: int
    mean: Sequence[float]
    std: Sequence[float]

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, 3, S, S]`` → ``[B, D]`` image embeddings (differentiable)."""
        ...


def embed_images(encoder: ImageEncoder, images: torch.Tensor, channels_last: bool = True,
                 normalize: bool = True) -> torch.Tensor:
    """Images in [0, 1] → embeddings, through :func:`preprocess`; L2-normalised by default."""
    pixels = preprocess(images, encoder.image_size, encoder.mean, encoder.std, channels_last=channels_last)
    emb = encoder.embed_pixels(pixels).float()
    return F.normalize(emb, dim=-1) if normalize else emb


@dataclass
class Embeddings:
    """``N×D`` image embeddings with where each one came from."""

    vectors: torch.Tensor
    """``[N, D]`` float32."""
    trajectory: torch.Tensor
    """``[N]`` trajectory index, ``-1`` for images that came from an IMAGE batch."""
    step: torch.Tensor
    """``[N]`` sampler step, ``-1`` for images."""
    sigma: torch.Tensor
    """``[N]`` sigma of that step, NaN for images."""
    prompt_index: torch.Tensor
    """``[N]`` prompt index, ``-1`` for images."""
    encoder_id: str
    """Which image encoder made the vectors (a basis fitted on them records it)."""
    normalized: bool = True
    """True when every row was L2-normalised (the paper's embeddings are)."""
    prompts: tuple[str, ...] = ()
    """The prompts the embedded images came from (``prompt_index`` indexes them)."""

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def __repr__(self) -> str:
        return f"Embeddings({len(self)} x {int(self.vectors.shape[1])}, encoder={self.encoder_id!r})"

    @classmethod
    def from_images(cls, vectors: torch.Tensor, encoder_id: str, normalized: bool = True) -> Embeddings:
        n = int(vectors.shape[0])
        minus = torch.full((n,), -1, dtype=torch.long)
        return cls(vectors, minus, minus.clone(), torch.full((n,), math.nan), minus.clone(),
                   encoder_id, normalized)


def check_finite(x: torch.Tensor, input_name: str, what: str) -> None:
    """Raise an :class:`InputError` if ``x`` holds NaN or Inf."""
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise InputError(input_name, f"{what} contain {bad} NaN/Inf values.",
                         "check the upstream node (a NaN model or VAE output, or fp16 overflow) and re-run it.")


def embed_in_batches(items: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor],
                     encoder: ImageEncoder, batch_size: int, normalize: bool = True,
                     on_batch: Callable[[int, int], None] | None = None,
                     input_name: str = "trajectories") -> torch.Tensor:
    """Decode and embed ``items`` chunk by chunk; only one chunk of pixels is alive at a time.

    ``decode`` maps a chunk of latents (or images) to images ``[B, H, W, C]`` in [0, 1].
    ``on_batch(done, total)`` is called after each chunk (progress and interrupt live there).
    """
    n = int(items.shape[0])
    if n == 0:
        raise InputError(input_name, "is empty: there is nothing to embed.",
                         "connect trajectories or images with at least one item.")
    out: torch.Tensor | None = None
    for start in range(0, n, batch_size):
        images = decode(items[start:start + batch_size])
        emb = embed_images(encoder, images, normalize=normalize)
        if out is None:
            out = torch.empty((n, emb.shape[1]), dtype=torch.float32)
        out[start:start + emb.shape[0]] = emb.detach().cpu()
        if on_batch is not None:
            on_batch(min(start + batch_size, n), n)
    assert out is not None
    return out


class OpenClipEncoder:
    """An open_clip image tower loaded from a local file (no downloads)."""

    def __init__(self, model: torch.nn.Module, model_name: str, image_size: int,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        self.model = model.eval()
        self.encoder_id = f"open_clip:{model_name}"
        self.image_size = image_size
        self.mean = tuple(mean)
        self.std = tuple(std)

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        p = next(self.model.parameters())
        return self.model.encode_image(pixels.to(p.device, p.dtype))


def load_open_clip(model_name: str, path: str, device: str | torch.device = "cpu") -> OpenClipEncoder:
    """Build ``model_name`` with open_clip and load weights from ``path`` without pickle.

    ``.safetensors`` files load directly; other files go through ``torch.load(weights_only=True)``.
    """
    try:
        import open_clip
    except ImportError as e:  # optional dependency
        raise InputError("encoder", "open_clip is not installed.",
                         "pip install open_clip_torch, or use a ComfyUI CLIP_VISION model.") from e
    if model_name not in open_clip.list_models():
        raise InputError("open_clip_model", f"unknown open_clip architecture {model_name!r}.",
                         "pick a name from open_clip.list_models(), e.g. ViT-B-32.")
    model = open_clip.create_model(model_name, pretrained=None, device=device)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        sd = load_file(path, device=str(device))
    else:
        sd = torch.load(path, map_location=device, weights_only=True)
        sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if [k for k in missing if k.startswith("visual.")]:
        raise InputError("open_clip_file", f"{path} lacks image-tower weights for {model_name} "
                         f"(e.g. {missing[0]}).", "choose the file that matches the architecture.")
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    return OpenClipEncoder(model, model_name, size, cfg.get("mean", CLIP_MEAN), cfg.get("std", CLIP_STD))
