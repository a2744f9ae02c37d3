"""Pictures as ComfyUI IMAGE tensors ``[1, H, W, 3]`` in [0, 1], drawn with Pillow only: plots (scree,
loss) and labelled image grids, on one canvas style."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import InputError

BG = (24, 24, 28)
FG = (220, 220, 225)
GRID = (60, 60, 68)
BAR = (90, 160, 240)
LINE = (250, 170, 60)


def _to_image_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)[None]


def _font(size: int | None = None) -> ImageFont.ImageFont:
    """Pillow's default font; ``size`` px where Pillow can scale it (≥ 10.1), else the bitmap font."""
    if size is None:
        return ImageFont.load_default()
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def blank(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """The pack's dark canvas and a drawing context on it."""
    img = Image.new("RGB", (width, height), BG)
    return img, ImageDraw.Draw(img)


def _canvas(width: int, height: int, title: str, box: tuple[int, int, int, int]):
    """A dark canvas with a title and a framed plot area ``box = (left, right, top, bottom)``."""
    img, d = blank(width, height)
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


# ------------------------------------------------------------------------------------------- image grids

@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of a grid: a label band on top, one on the left, ``gap`` between cells."""

    rows: int
    """Grid rows (one per slider)."""
    cols: int
    """Grid columns (one per scale)."""
    cell_h: int
    """Cell height in pixels."""
    cell_w: int
    """Cell width in pixels."""
    font_size: int
    """Label font size in pixels."""
    top: int
    """Height of the column-label band."""
    left: int
    """Width of the row-label band."""
    gap: int
    """Pixels between neighbouring cells."""

    @property
    def height(self) -> int:
        return self.top + self.rows * self.cell_h + (self.rows - 1) * self.gap

    @property
    def width(self) -> int:
        return self.left + self.cols * self.cell_w + (self.cols - 1) * self.gap

    def origin(self, row: int, col: int) -> tuple[int, int]:
        """``(y, x)`` of the top-left pixel of cell ``(row, col)``."""
        return self.top + row * (self.cell_h + self.gap), self.left + col * (self.cell_w + self.gap)


def grid_layout(rows: int, cols: int, cell_h: int, cell_w: int) -> GridLayout:
    """Label bands scale with the cell size: font ``clamp(min(h, w)/16, 10, 40)`` px, top band 2 fonts
    high, left band 8 fonts wide, gap ``max(2, font/4)``."""
    fs = int(min(40, max(10, round(min(cell_h, cell_w) / 16))))
    return GridLayout(rows, cols, cell_h, cell_w, fs, top=2 * fs, left=8 * fs, gap=max(2, fs // 4))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` px; over-long words are cut; '...' marks dropped text."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width:
            line = trial
            continue
        if line:
            lines.append(line)
        while draw.textlength(word, font=font) > width and len(word) > 1:
            cut = len(word)
            while cut > 1 and draw.textlength(word[:cut], font=font) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and draw.textlength(last + "...", font=font) > width:
            last = last[:-1]
        lines[-1] = last + "..."
    return lines


def compose_grid(images: Mapping[tuple[int, int], torch.Tensor], row_labels: Sequence[str],
                 col_labels: Sequence[str]) -> torch.Tensor:
    """One labelled IMAGE ``[1, H', W', 3]`` from ``(row, col) → [H, W, 3]`` cells (placed unchanged).

    Geometry: :func:`grid_layout`. Every position must be filled; the caller passes the shared zero cell
    at each row's scale-0 position.
    """
    rows, cols = len(row_labels), len(col_labels)
    if rows < 1 or cols < 1:
        raise InputError("sliders" if rows < 1 else "scales", "the grid has no rows or no columns.",
                         "choose at least one slider and one scale.")
    missing = [(r, c) for r in range(rows) for c in range(cols) if (r, c) not in images]
    if missing:
        raise InputError("images", f"grid cell {missing[0]} has no image.", "render every cell of the grid.")
    first = images[(0, 0)]
    if first.ndim != 3 or first.shape[-1] < 3:
        raise InputError("images", f"cells must be [H, W, 3] images, got {tuple(first.shape)}.",
                         "pass one decoded image per cell.")
    h, w = int(first.shape[0]), int(first.shape[1])
    lay = grid_layout(rows, cols, h, w)
    canvas, draw = blank(lay.width, lay.height)
    font = _font(lay.font_size)
    line_h = int(lay.font_size * 1.2)
    for c, text in enumerate(col_labels):
        _, x = lay.origin(0, c)
        tw = draw.textlength(text, font=font)
        draw.text((x + max(0.0, (w - tw) / 2), (lay.top - lay.font_size) // 2), text, fill=FG, font=font)
    for r, text in enumerate(row_labels):
        y, _ = lay.origin(r, 0)
        lines = _wrap(draw, text, font, lay.left - lay.font_size, max(1, h // line_h))
        y0 = y + max(0, (h - line_h * len(lines)) // 2)
        for k, line in enumerate(lines):
            draw.text((lay.font_size // 2, y0 + k * line_h), line, fill=FG, font=font)
    out = _to_image_tensor(canvas)[0]
    for (r, c), img in images.items():
        if not (0 <= r < rows and 0 <= c < cols):
            raise InputError("images", f"grid cell {(r, c)} lies outside the {rows}×{cols} grid.",
                             "pass one label per row and per column.")
        if img.ndim != 3 or tuple(img.shape[:2]) != (h, w) or img.shape[-1] < 3:
            raise InputError("images", f"cell {(r, c)} is {tuple(img.shape)} but cell (0, 0) is {(h, w, 3)}.",
                             "render every cell at the same size.")
        y, x = lay.origin(r, c)
        out[y:y + h, x:x + w] = img[..., :3].detach().float().cpu()
    return out[None]
