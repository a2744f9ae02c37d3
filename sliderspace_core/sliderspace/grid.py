"""Slider grid (SliderSpace §1 step 5, exploration): rows = sliders, columns = scales, one seed.

Scale 0 means "no slider" whatever the row, so the scale-0 column is ONE shared cell: it is rendered
once and shown in every row. Pure: the node layer renders the cells, this module plans them and
``common.drawing`` composes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ..common.textspec import parse_index_list, parse_number_list


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

def parse_scale_list(text: str) -> list[float]:
    """``"-2, -1, 0, 1, 2"`` → ``[-2.0, -1.0, 0.0, 1.0, 2.0]`` (commas, semicolons or spaces; order kept)."""
    return parse_number_list(text, "scales", "write numbers separated by commas, e.g. '-2, -1, 0, 1, 2' "
                             "(0 = no slider).")


def parse_slider_list(text: str, n_sliders: int) -> list[int]:
    """``"0,1,2"``, ``"0-3, 7"`` or ``"all"`` → slider indices in the given order."""
    return parse_index_list(text, n_sliders, "sliders")
