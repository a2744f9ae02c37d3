"""Small pictures as ComfyUI IMAGE tensors ``[1, H, W, 3]`` in [0, 1], drawn with Pillow only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

BG = (24, 24, 28)
FG = (220, 220, 225)
GRID = (60, 60, 68)
BAR = (90, 160, 240)
LINE = (250, 170, 60)


def _to_image_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)[None]


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _canvas(width: int, height: int, title: str, box: tuple[int, int, int, int]):
    """A dark canvas with a title and a framed plot area ``box = (left, right, top, bottom)``."""
    img = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(img)
    font = _font()
    d.text((box[0], 8), title, fill=FG, font=font)
    d.rectangle([box[0], box[2], box[1], box[3]], outline=GRID)
    return img, d, font


def scree_plot(ratios: Sequence[float], title: str = "PCA explained variance",
               width: int = 640, height: int = 360) -> torch.Tensor:
    """Bars: explained-variance ratio per component; line: cumulative ratio (right axis, 0–100 %)."""
    r = np.asarray([float(v) for v in ratios], dtype=np.float64)
    left, right, top, bottom = 56, width - 48, 30, height - 36
    img, d, font = _canvas(width, height, title, (left, right, top, bottom))
    if r.size == 0:
        return _to_image_tensor(img)
    ymax = max(float(r.max()), 1e-12) * 1.1
    for frac in (0.25, 0.5, 0.75, 1.0):
        y = bottom - frac * (bottom - top)
        d.line([left, y, right, y], fill=GRID)
        d.text((4, y - 6), f"{frac * ymax * 100:.1f}%", fill=FG, font=font)
        d.text((right + 4, y - 6), f"{frac * 100:.0f}%", fill=LINE, font=font)
    n = r.size
    slot = (right - left) / n
    cum = np.cumsum(r)
    pts = []
    for i, v in enumerate(r):
        x0 = left + i * slot + slot * 0.15
        x1 = left + (i + 1) * slot - slot * 0.15
        y = bottom - (v / ymax) * (bottom - top)
        d.rectangle([x0, y, max(x1, x0 + 1), bottom], fill=BAR)
        pts.append((left + (i + 0.5) * slot, bottom - min(cum[i], 1.0) * (bottom - top)))
    if len(pts) > 1:
        d.line(pts, fill=LINE, width=2)
    step = max(1, int(np.ceil(n / 16)))
    for i in range(0, n, step):
        d.text((left + (i + 0.3) * slot, bottom + 4), str(i), fill=FG, font=font)
    d.text((left, height - 16), f"component (0..{n - 1})   total explained: {cum[-1] * 100:.1f}%",
           fill=FG, font=font)
    return _to_image_tensor(img)


def loss_plot(losses: Sequence[float], title: str = "slider training loss  (1 - cos)",
              width: int = 640, height: int = 300) -> torch.Tensor:
    """Per-step loss (thin) and its running mean (bold) against the step, as an IMAGE tensor."""
    return _to_image_tensor(loss_picture(losses, title, width, height))


def loss_picture(losses: Sequence[float], title: str = "slider training loss  (1 - cos)",
                 width: int = 640, height: int = 300) -> Image.Image:
    """The loss curve as a PIL image (also the live preview while training runs)."""
    y = np.asarray([float(v) for v in losses], dtype=np.float64)
    left, right, top, bottom = 56, width - 16, 30, height - 30
    img, d, font = _canvas(width, height, title, (left, right, top, bottom))
    if y.size == 0:
        return img
    hi = max(float(y.max()), 1e-9) * 1.05
    for frac in (0.0, 0.5, 1.0):
        yy = bottom - frac * (bottom - top)
        d.line([left, yy, right, yy], fill=GRID)
        d.text((4, yy - 6), f"{frac * hi:.3f}", fill=FG, font=font)

    def pts(v: np.ndarray) -> list[tuple[float, float]]:
        xs = np.linspace(left, right, num=max(len(v), 2))[: len(v)]
        return [(float(x), float(bottom - (val / hi) * (bottom - top))) for x, val in zip(xs, v, strict=True)]

    if y.size > 1:
        d.line(pts(y), fill=GRID if y.size > 50 else BAR, width=1)
        w = max(1, y.size // 20)
        smooth = np.convolve(y, np.ones(w) / w, mode="valid")
        d.line(pts(smooth), fill=LINE, width=2)
    d.text((left, height - 16), f"step 1..{y.size}   first {y[0]:.3f}   last {y[-1]:.3f}", fill=FG, font=font)
    return img
