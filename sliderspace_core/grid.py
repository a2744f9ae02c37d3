"""Slider grid (SliderSpace §1 step 5, exploration): rows = sliders, columns = scales, one seed.

Scale 0 means "no slider" whatever the row, so the scale-0 column is ONE shared cell: it is rendered
once and shown in every row. Pure: the node layer renders the cells, this module plans and composes them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import InputError

BG = (24, 24, 28)
FG = (220, 220, 225)


class Cell(NamedTuple):
    """What one grid image shows: ``slider`` at ``scale``; ``slider is None`` is the plain model."""

    slider: int | None
    scale: float


ZERO = Cell(None, 0.0)


def cell_at(slider: int, scale: float) -> Cell:
    """The cell shown at row ``slider``, column ``scale`` (the shared :data:`ZERO` cell for scale 0)."""
    return ZERO if scale == 0 else Cell(int(slider), float(scale))


def grid_positions(sliders: Sequence[int], scales: Sequence[float]) -> dict[tuple[int, int], Cell]:
    """``(row, col) → Cell`` for every grid position, row-major."""
    return {(r, c): cell_at(i, s) for r, i in enumerate(sliders) for c, s in enumerate(scales)}


def grid_cells(sliders: Sequence[int], scales: Sequence[float]) -> list[Cell]:
    """The distinct cells to render, in row-major order of first appearance (scale 0 only once)."""
    return list(dict.fromkeys(grid_positions(sliders, scales).values()))


# ------------------------------------------------------------------------------------------------- parsing

_SEP = re.compile(r"[,;\s]+")


def parse_scale_list(text: str) -> list[float]:
    """``"-2, -1, 0, 1, 2"`` → ``[-2.0, -1.0, 0.0, 1.0, 2.0]`` (commas, semicolons or spaces; order kept)."""
    fix = "write numbers separated by commas, e.g. '-2, -1, 0, 1, 2' (0 = no slider)."
    out: list[float] = []
    for tok in _SEP.split((text or "").strip()):
        if not tok:
            continue
        try:
            v = float(tok)
        except ValueError:
            raise InputError("scales", f"{tok!r} is not a number.", fix) from None
        if not math.isfinite(v):
            raise InputError("scales", f"{tok!r} is not a finite number.", fix)
        v = v + 0.0  # -0.0 → 0.0
        if v in out:
            raise InputError("scales", f"scale {v:g} is listed twice.", "list each scale once.")
        out.append(v)
    if not out:
        raise InputError("scales", "lists no scale.", fix)
    return out


_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def parse_slider_list(text: str, n_sliders: int) -> list[int]:
    """``"0,1,2"``, ``"0-3, 7"`` or ``"all"`` → slider indices in the given order."""
    fix = f"write indices 0..{n_sliders - 1} separated by commas (ranges like '0-3' work), or 'all'."
    text = (text or "").strip()
    if text.lower() == "all":
        return list(range(n_sliders))
    out: list[int] = []
    for tok in re.split(r"[,;\n]+", text):
        tok = tok.strip()
        if not tok:
            continue
        m = _RANGE.match(tok)
        if m:
            lo, hi = int(m[1]), int(m[2])
            if lo > hi:
                raise InputError("sliders", f"range {tok!r} runs backwards.", "write ranges low-high, e.g. '0-3'.")
            idx = list(range(lo, hi + 1))
        elif tok.lstrip("-").isdigit():
            idx = [int(tok)]
        else:
            raise InputError("sliders", f"{tok!r} is not a slider index.", fix)
        for i in idx:
            if not 0 <= i < n_sliders:
                raise InputError("sliders", f"slider index {i} is out of range: the bank has {n_sliders} "
                                 "slider(s).", fix)
            if i in out:
                raise InputError("sliders", f"slider {i} is listed twice.", "list each slider once.")
            out.append(i)
    if not out:
        raise InputError("sliders", "lists no slider.", fix)
    return out


# ------------------------------------------------------------------------------------------------- layout

@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of a grid: a label band on top, one on the left, ``gap`` between cells."""

    rows: int
    cols: int
    cell_h: int
    cell_w: int
    font_size: int
    top: int
    left: int
    gap: int

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


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


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
    canvas = Image.new("RGB", (lay.width, lay.height), BG)
    draw = ImageDraw.Draw(canvas)
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
    out = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)
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
