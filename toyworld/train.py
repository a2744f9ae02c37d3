"""Train the ToyWorld models from a seed: ``python -m toyworld.train --seed 0`` reproduces ``weights/``.

Both models see freshly rendered images every step (the world is infinite), drawn from one seeded
generator; training runs single-threaded on the CPU so the same seed gives bitwise the same weights.
Denoiser (UNet + text encoder, trained together): EDM loss (log-normal σ, P_mean −1.2, P_std 1.2) on
the world's captions (``world.captions``: bare concept 60 %, else one or two attributes), 10 % empty-prompt
dropout for classifier-free guidance, AdamW with linear decay, weights kept as an EMA. Encoder: factor
regression + shape cross-entropy from the unit embedding through ``head``, on images blurred and noised
at random so that it also reads the soft x̂0 of early denoising steps.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sliderspace_core.common.encoders import preprocess

from .models import (
    SIGMA_DATA,
    SIGMA_MAX,
    SIGMA_MIN,
    Denoiser,
    DenoiserConfig,
    Encoder,
    EncoderConfig,
    config_dict,
    denoiser_config,
)
from .text import CONTEXT_LEN, VOCAB, tokenize, tokenize_batch
from .world import captions, render, sample_factors, sample_shapes

WEIGHTS = Path(__file__).resolve().parent / "weights"
DENOISER_FILE, ENCODER_FILE = "denoiser.safetensors", "encoder.safetensors"
DENOISER_STEPS, ENCODER_STEPS = 3000, 1500
UNIFORM_SHARE = 0.0


def _batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    shapes, factors = sample_shapes(n, g), sample_factors(n, g)
    return render(shapes, factors), shapes, factors


def _lr(step: int, total: int, peak: float, warmup: int = 100) -> float:
    return peak * min(1.0, (step + 1) / warmup) * max(0.02, 1.0 - step / total)


def draw_sigmas(n: int, g: torch.Generator, uniform_share: float) -> torch.Tensor:
    """EDM's log-normal σ (P_mean −1.2, P_std 1.2), a ``uniform_share`` of them log-uniform on [σ_min, σ_max]."""
    sigma = (torch.randn(n, generator=g) * 1.2 - 1.2).exp()
    if uniform_share > 0:
        lo, hi = math.log(SIGMA_MIN), math.log(SIGMA_MAX)
        wide = (lo + torch.rand(n, generator=g) * (hi - lo)).exp()
        sigma = torch.where(torch.rand(n, generator=g) < uniform_share, wide, sigma)
    return sigma


def caption_tokens(shapes: torch.Tensor, factors: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The shipped model's captions (``world.captions``) as ``[n, CONTEXT_LEN]`` token ids."""
    return tokenize_batch(captions(shapes, factors, g))


def train_denoiser(seed: int, steps: int = DENOISER_STEPS, batch: int = 32, lr: float = 2e-3,
                   ema: float = 0.998, log_every: int = 200,
                   captions: Callable[..., torch.Tensor] = caption_tokens,
                   uniform_share: float = UNIFORM_SHARE, cfg: DenoiserConfig | None = None) -> Denoiser:
    """The EMA weights of a denoiser trained ``steps`` steps from ``seed``.

    ``captions(shapes, factors, generator)`` gives each image's prompt tokens (experiments swap it).
    ``uniform_share``: the fraction of each batch whose σ is log-uniform on the sampler's range
    [σ_min, σ_max] instead of EDM's log-normal, so the high σ where layout is decided get trained.
    ``cfg``: the architecture (default :class:`DenoiserConfig`, the shipped one).
    """
    torch.manual_seed(seed)
    cfg = cfg or DenoiserConfig()
    model = Denoiser(cfg)
    avg = Denoiser(cfg)
    avg.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed + 1)
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(steps):
        images, shapes, factors = _batch(batch, g)
        x0 = images * 2 - 1
        tokens = captions(shapes, factors, g)
        drop = torch.rand(batch, generator=g) < 0.1
        tokens = torch.where(drop[:, None], tokenize("").expand_as(tokens), tokens)
        sigma = draw_sigmas(batch, g, uniform_share)
        noise = torch.randn(x0.shape, generator=g)
        pred = model(x0 + sigma.view(-1, 1, 1, 1) * noise, sigma, model.context(tokens))
        weight = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
        loss = (weight.view(-1, 1, 1, 1) * (pred - x0) ** 2).mean()
        for grp in opt.param_groups:
            grp["lr"] = _lr(step, steps, lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(ema, (1 + step) / (10 + step))
            for pa, pm in zip(avg.parameters(), model.parameters(), strict=True):
                pa.lerp_(pm, 1 - decay)
        if log_every and (step + 1) % log_every == 0:
            print(f"denoiser step {step + 1}/{steps} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f}s wall, "
                  f"{time.process_time() - c0:.0f}s cpu)", flush=True)
    return avg.eval()


def degrade(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random Gaussian blur (σ 0–1.5 px, half the batch) and pixel noise (0–0.06): x̂0-like inputs."""
    b = images.shape[0]
    sig = torch.rand(b, generator=g) * 1.5 * (torch.rand(b, generator=g) < 0.5)
    r = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-0.5 * (r[None] / sig.clamp_min(1e-3)[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)                                            # [B, 7]
    x = images.reshape(1, b * 3, *images.shape[2:])
    kh = k.repeat_interleave(3, 0)
    x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), kh.view(b * 3, 1, 1, 7), groups=b * 3)
    x = F.conv2d(F.pad(x, (0, 0, 3, 3), mode="replicate"), kh.view(b * 3, 1, 7, 1), groups=b * 3)
    x = x.view_as(images)
    noise = torch.randn(images.shape, generator=g) * torch.rand(b, 1, 1, 1, generator=g) * 0.06
    return (x + noise).clamp(0, 1)


def train_encoder(seed: int, steps: int = ENCODER_STEPS, batch: int = 64, lr: float = 2e-3,
                  log_every: int = 250) -> Encoder:
    """An encoder trained ``steps`` steps from ``seed`` (factor MSE + shape cross-entropy via ``head``)."""
    torch.manual_seed(seed)
    model = Encoder(EncoderConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed + 2)
    t0 = time.perf_counter()
    for step in range(steps):
        images, shapes, factors = _batch(batch, g)
        pixels = preprocess(degrade(images, g), model.image_size, model.mean, model.std, channels_last=False)
        f_hat, logits = model.read_out(F.normalize(model.embed_pixels(pixels), dim=-1))
        loss = F.mse_loss(f_hat, factors) * 10 + F.cross_entropy(logits, shapes)
        for grp in opt.param_groups:
            grp["lr"] = _lr(step, steps, lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log_every and (step + 1) % log_every == 0:
            print(f"encoder step {step + 1}/{steps} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f}s)",
                  flush=True)
    return model.eval()


def save(model: Denoiser | Encoder, path: Path, seed: int, steps: int) -> None:
    """safetensors with the architecture config and training provenance in the metadata."""
    meta = {"config": json.dumps(config_dict(model.cfg)), "seed": str(seed), "steps": str(steps),
            "kind": type(model).__name__}
    if isinstance(model, Denoiser):
        meta |= {"vocab": json.dumps(list(VOCAB)), "context_len": str(CONTEXT_LEN), "sigma_data": str(SIGMA_DATA)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)


def load_denoiser(path: Path | str = WEIGHTS / DENOISER_FILE) -> Denoiser:
    """The denoiser a weights file holds, built from the config in its metadata."""
    with safe_open(str(path), "pt") as f:
        config = json.loads((f.metadata() or {}).get("config", "{}"))
    model = Denoiser(denoiser_config(config))
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


def load_encoder(path: Path | str = WEIGHTS / ENCODER_FILE) -> Encoder:
    model = Encoder(EncoderConfig())
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m toyworld.train", description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", choices=("all", "denoiser", "encoder"), default="all")
    ap.add_argument("--denoiser-steps", type=int, default=DENOISER_STEPS)
    ap.add_argument("--encoder-steps", type=int, default=ENCODER_STEPS)
    ap.add_argument("--uniform-share", type=float, default=UNIFORM_SHARE,
                    help="fraction of training σ drawn log-uniform on [σ_min, σ_max] (the rest EDM log-normal)")
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # bitwise reproducible (and the fastest on a shared 2-core box)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.model in ("all", "encoder"):
        t0 = time.perf_counter()
        save(train_encoder(args.seed, args.encoder_steps), args.out / ENCODER_FILE, args.seed, args.encoder_steps)
        print(f"encoder: {time.perf_counter() - t0:.0f}s → {args.out / ENCODER_FILE}")
    if args.model in ("all", "denoiser"):
        t0 = time.perf_counter()
        model = train_denoiser(args.seed, args.denoiser_steps, uniform_share=args.uniform_share)
        save(model, args.out / DENOISER_FILE, args.seed, args.denoiser_steps)
        print(f"denoiser: {time.perf_counter() - t0:.0f}s → {args.out / DENOISER_FILE}")


if __name__ == "__main__":
    main()
