"""Generation metrics of the shipped ToyWorld model: ``python -m toyworld.evaluate [--prompt P] [--seeds N]``.

For a shape prompt ("a circle") at the default guidance: % of samples the encoder's read-out head reads
back as that shape; each free factor's marginal KS distance to uniform on its range (factors read
analytically from pixels; the same measure on true renders is printed as the floor); diversity at high
guidance (cfg 8) vs the default; and for every attribute caption of that shape, the % of samples (same
seeds) whose factor moves the named way relative to the bare prompt. ``--picture`` writes 32 samples of
each shape prompt; ``--discover`` also runs SliderSpace discovery on the prompt and prints what its top
sliders do (coverage, purity, alignment — the F1/F2 measures of ``benchmarks/f_toyworld.py``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sliderspace_core.common.encoders import embed_images
from sliderspace_core.common.metrics import diversity

from .host import ToyWorldHost, build_host
from .train import WEIGHTS
from .world import (
    COLOURS,
    DEFAULT_SPEC,
    FACTORS,
    SHAPES,
    THIRDS,
    WorldSpec,
    compose,
    measure_factors,
    prompt_shape,
    render,
    sample_factors,
    sample_shapes,
)

EVAL_SEED0 = 20_000_000
"""Evaluation noise seeds start here (disjoint from discovery's and the benchmarks')."""
HIGH_CFG = 8.0


def ks_uniform(values: torch.Tensor, lo: float = 0.0, hi: float = 1.0) -> float:
    """Kolmogorov–Smirnov distance between the empirical CDF of ``values`` and uniform on ``[lo, hi]``."""
    v = values.double().sort().values
    n = v.numel()
    cdf = ((v - lo) / max(hi - lo, 1e-12)).clamp(0, 1)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - cdf, cdf - (i - 1) / n).max())


def attribute_captions(shape: str, spec: WorldSpec = DEFAULT_SPEC) -> list[tuple[str, str, str]]:
    """``(caption, factor, phrase)`` for every single-attribute caption of ``shape`` in ``spec``."""
    out = [(compose(shape, {"hue": w}), "hue", w) for w in COLOURS] if "hue" in spec.free else []
    for f, pair in THIRDS.items():
        if f in spec.free:
            out += [(compose(shape, {f: p}), f, p) for p in pair]
    return out


def moved_right(factor: str, phrase: str, bare: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
    """Per sample: did the factor move the way ``phrase`` says (towards the colour; down for a low third)?"""
    if factor == "hue":
        t = COLOURS[phrase]
        return (attr - t).abs() < (bare - t).abs()
    return attr < bare if phrase == THIRDS[factor][0] else attr > bare


@torch.no_grad()
def shape_readback(host: ToyWorldHost, images: torch.Tensor) -> torch.Tensor:
    """Shape index the encoder's read-out head gives each image."""
    return host.encoder.read_out(embed_images(host.encoder, images, channels_last=False))[1].argmax(1)


@torch.no_grad()
def evaluate_prompt(host: ToyWorldHost, prompt: str, seeds: list[int], steps: int = 16,
                    attributes: bool = True, attr_seeds: int = 64, say=print) -> dict:
    """Print and return the metrics of one prompt (see the module docstring)."""
    shape = prompt_shape(prompt)
    h = host.with_prompt(prompt)
    imgs = h.sample(seeds, steps)
    acc = float((shape_readback(h, imgs) == SHAPES.index(shape)).float().mean())
    f = measure_factors(imgs, shape)
    ks = {name: ks_uniform(f[:, j], *DEFAULT_SPEC.range(name)) for j, name in enumerate(FACTORS)
          if name in DEFAULT_SPEC.free}
    hi = h.with_prompt(cfg=HIGH_CFG).sample(seeds, steps)
    div = diversity(embed_images(h.encoder, imgs, channels_last=False))
    div_hi = diversity(embed_images(h.encoder, hi, channels_last=False))
    acc_hi = float((shape_readback(h, hi) == SHAPES.index(shape)).float().mean())
    fstd, fstd_hi = f.std(0), measure_factors(hi, shape).std(0)
    say(f'"{prompt}" cfg {h.cfg:g}, {len(seeds)} samples: read back as {shape} {100 * acc:.1f} %; KS to uniform '
        + ", ".join(f"{k} {v:.3f}" for k, v in ks.items()))
    say(f"  cfg {HIGH_CFG:g}: diversity {div:.4f} → {div_hi:.4f} ({div_hi / div:.2f}×), shape read-back "
        f"{100 * acc_hi:.1f} %, factor std " + ", ".join(f"{n} {float(a):.3f}→{float(b):.3f}"
                                                          for n, a, b in zip(FACTORS, fstd, fstd_hi, strict=True)))
    out = {"prompt": prompt, "accuracy": acc, "ks": ks, "diversity": div, "diversity_high": div_hi,
           "accuracy_high": acc_hi, "attributes": {}}
    if attributes and prompt == f"a {shape}":
        base = f[:attr_seeds]
        for cap, factor, phrase in attribute_captions(shape):
            a = h.with_prompt(cap).sample(seeds[:attr_seeds], steps)
            fa = measure_factors(a, shape)
            j = FACTORS.index(factor)
            right = float(moved_right(factor, phrase, base[:, j], fa[:, j]).float().mean())
            acc_a = float((shape_readback(h, a) == SHAPES.index(shape)).float().mean())
            out["attributes"][cap] = right
            say(f'  "{cap}": {factor} moved the right way in {100 * right:.1f} % (mean {float(base[:, j].mean()):.2f}'
                f" → {float(fa[:, j].mean()):.2f}); still read as {shape} {100 * acc_a:.1f} %")
    return out


@torch.no_grad()
def render_floor(n: int, say=print) -> None:
    """The same KS measure on true renders: what measurement alone costs."""
    g = torch.Generator().manual_seed(31337)
    shapes, factors = sample_shapes(n, g), sample_factors(n, g)
    f = measure_factors(render(shapes, factors), shapes)
    say(f"floor (true renders, {n}): KS " + ", ".join(f"{k} {ks_uniform(f[:, j]):.3f}" for j, k in enumerate(FACTORS)))


@torch.no_grad()
def picture(host: ToyWorldHost, path: Path, prompts: tuple[str, ...], n: int = 32, steps: int = 16) -> None:
    """One PNG: per prompt a 4×8 block of samples (2× nearest) under its prompt, blocks side by side."""
    import numpy as np
    from PIL import Image, ImageDraw

    blocks = []
    for p in prompts:
        imgs = host.with_prompt(p).sample([EVAL_SEED0 + i for i in range(n)], steps)
        imgs = torch.nn.functional.interpolate(imgs, scale_factor=2, mode="nearest")
        imgs = torch.nn.functional.pad(imgs, (1, 1, 1, 1), value=1.0)
        rows = [torch.cat(list(imgs[r * 8:(r + 1) * 8]), dim=2) for r in range(n // 8)]
        blocks.append(torch.nn.functional.pad(torch.cat(rows, dim=1), (6, 6, 16, 0), value=1.0))
    grid = torch.cat(blocks, dim=2).permute(1, 2, 0).numpy()
    img = Image.fromarray((grid * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for k, p in enumerate(prompts):
        draw.text((k * grid.shape[1] // len(prompts) + 8, 2), f'"{p}" (cfg {host.cfg:g})', fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)


def run_discovery(host: ToyWorldHost, prompt: str, say=print) -> None:
    """SliderSpace discovery on ``prompt`` (demo settings) and the F1/F2 measures of its top-6 sliders."""
    from .pipeline import DiscoveryConfig, component_factors, discover, score_sliders

    disc = discover(host, DiscoveryConfig(prompt=prompt), log=say)
    s = score_sliders(disc, top=6, n_seeds=64)
    r = component_factors(disc, 6)
    for j, i in enumerate(s.indices):
        say(f"  slider {i}: {s.dominant[j]} purity {float(s.purity[j]):.2f}, alignment "
            f"{float(disc.alignment[i]):.2f}, its PC follows {FACTORS[int(r[j].abs().argmax())]} "
            f"(r {float(r[j][r[j].abs().argmax()]):+.2f})")
    say(f"F1 coverage {s.coverage} of {len(FACTORS)} ({', '.join(sorted(set(s.dominant)))}); F2 median purity "
        f"{float(s.purity.median()):.2f}; median held-out alignment {float(disc.alignment.median()):.2f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m toyworld.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", action="append", help="a prompt the world knows (repeatable; default: every shape)")
    ap.add_argument("--seeds", type=int, default=256, help="samples per prompt")
    ap.add_argument("--cfg", type=float, default=2.0, help="the default guidance")
    ap.add_argument("--no-attributes", action="store_true", help="skip the attribute captions")
    ap.add_argument("--picture", type=Path, help="write 32 samples of each shape prompt to this PNG")
    ap.add_argument("--discover", action="store_true", help="also run SliderSpace discovery (≈ 2 min a prompt)")
    ap.add_argument("--attr-seeds", type=int, default=64, help="samples per attribute caption")
    ap.add_argument("--weights", type=Path, default=WEIGHTS, help="folder with the two safetensors files")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    host = build_host(cfg=args.cfg, weights=args.weights)
    prompts = args.prompt or list(DEFAULT_SPEC.prompts)
    render_floor(args.seeds)
    seeds = [EVAL_SEED0 + i for i in range(args.seeds)]
    for p in prompts:
        evaluate_prompt(host, p, seeds, attributes=not args.no_attributes, attr_seeds=args.attr_seeds)
        if args.discover:
            run_discovery(host, p)
    if args.picture:
        picture(host, args.picture, DEFAULT_SPEC.prompts)
        print(f"wrote {args.picture}")
    print(f"[{time.perf_counter() - t0:.0f}s]")


if __name__ == "__main__":
    main()
