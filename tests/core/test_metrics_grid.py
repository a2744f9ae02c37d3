"""Diversity metric, slider-grid planning/parsing/composition and slider labels (no ComfyUI)."""

from __future__ import annotations

import itertools

import pytest
import torch

from sliderspace_core.common.drawing import compose_grid, grid_layout
from sliderspace_core.common.errors import InputError
from sliderspace_core.common.metrics import diversity
from sliderspace_core.sliderspace.bank import BankMeta, Slider, SliderBank
from sliderspace_core.sliderspace.grid import (
    ZERO,
    Cell,
    grid_cells,
    grid_positions,
    parse_scale_list,
    parse_slider_list,
)
from sliderspace_core.sliderspace.labels import parse_labels, with_labels


def _raises(fn, input_name: str, *words: str) -> str:
    with pytest.raises(InputError) as e:
        fn()
    msg = str(e.value)
    assert e.value.input_name == input_name and "Fix:" in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


# ------------------------------------------------------------------------------------------------ diversity

@pytest.mark.parametrize("n,d", [(2, 3), (7, 16), (40, 5)])
def test_diversity_equals_double_loop(n, d):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(n + d)) * torch.rand(n, 1) * 5
    ref, pairs = 0.0, 0
    for i, j in itertools.combinations(range(n), 2):
        ref += 1.0 - float(torch.nn.functional.cosine_similarity(x[i:i + 1].double(), x[j:j + 1].double()))
        pairs += 1
    assert diversity(x) == pytest.approx(ref / pairs, abs=1e-12)


def test_diversity_identical_is_zero_and_opposite_is_two():
    v = torch.randn(1, 32)
    assert diversity(v.repeat(6, 1)) == pytest.approx(0.0, abs=1e-12)
    assert diversity(v.repeat(6, 1) * torch.arange(1, 7)[:, None]) == pytest.approx(0.0, abs=1e-12)  # scale-free
    assert diversity(torch.cat([v, -v])) == pytest.approx(2.0)
    assert diversity(torch.eye(4)) == pytest.approx(1.0)


def test_diversity_bad_input():
    _raises(lambda: diversity(torch.randn(1, 8)), "images", "at least 2")
    _raises(lambda: diversity(torch.randn(8)), "images")
    _raises(lambda: diversity(torch.tensor([[1.0, 0.0], [0.0, 0.0]])), "images", "image 1")
    _raises(lambda: diversity(torch.tensor([[1.0, float("nan")], [0.0, 1.0]])), "images", "NaN")


# ----------------------------------------------------------------------------------------------------- grid

def test_grid_cells_share_the_zero_column():
    cells = grid_cells([0, 3, 1], [-2.0, 0.0, 1.0])
    assert cells == [Cell(0, -2.0), ZERO, Cell(0, 1.0), Cell(3, -2.0), Cell(3, 1.0), Cell(1, -2.0), Cell(1, 1.0)]
    pos = grid_positions([0, 3, 1], [-2.0, 0.0, 1.0])
    assert len(pos) == 9 and all(pos[(r, 1)] == ZERO for r in range(3)) and pos[(1, 2)] == Cell(3, 1.0)
    assert ZERO not in grid_cells([0], [1.0, 2.0])


def test_parse_scale_list():
    assert parse_scale_list("-2, -1, 0, 1, 2") == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert parse_scale_list(" 1.5;-0 3e-1\n") == [1.5, 0.0, 0.3]
    _raises(lambda: parse_scale_list("1, two"), "scales", "'two'")
    _raises(lambda: parse_scale_list("1, inf"), "scales", "finite")
    _raises(lambda: parse_scale_list("0, 1, 0"), "scales", "twice")
    _raises(lambda: parse_scale_list(" , "), "scales", "no scale")


def test_parse_slider_list():
    assert parse_slider_list("0,1,2", 5) == [0, 1, 2]
    assert parse_slider_list("all", 3) == [0, 1, 2]
    assert parse_slider_list(" 4, 0-2 ", 5) == [4, 0, 1, 2]
    _raises(lambda: parse_slider_list("0, 5", 5), "sliders", "5 is out of range")
    _raises(lambda: parse_slider_list("-1", 5), "sliders", "out of range")
    _raises(lambda: parse_slider_list("a", 5), "sliders", "'a'")
    _raises(lambda: parse_slider_list("3-1", 5), "sliders", "backwards")
    _raises(lambda: parse_slider_list("1, 0-2", 5), "sliders", "twice")
    _raises(lambda: parse_slider_list("", 5), "sliders")


def test_compose_grid_places_each_cell_unchanged():
    h, w, rows, cols = 24, 32, 2, 3
    colours = {(r, c): torch.tensor([0.1 + 0.3 * r, 0.05 + 0.3 * c, 0.77]) for r in range(rows) for c in range(cols)}
    images = {pos: col.expand(h, w, 3).clone() for pos, col in colours.items()}
    images[(0, 0)][3, 5] = torch.tensor([0.123, 0.456, 0.789])  # exact values survive, no 8-bit rounding
    grid = compose_grid(images, ["0: smiling with a very long label that wraps", "slider 1"], ["-1", "0", "+1"])
    lay = grid_layout(rows, cols, h, w)
    assert grid.shape == (1, lay.height, lay.width, 3) and grid.dtype == torch.float32
    assert lay.height == lay.top + rows * h + (rows - 1) * lay.gap
    assert lay.width == lay.left + cols * w + (cols - 1) * lay.gap
    for (r, c), img in images.items():
        y, x = lay.origin(r, c)
        assert torch.equal(grid[0, y:y + h, x:x + w], img), (r, c)
    assert grid[0, :lay.top, lay.left:].std() > 0  # column labels drawn
    assert grid[0, lay.top:, :lay.left].std() > 0  # row labels drawn


def test_compose_grid_bad_input():
    img = torch.zeros(8, 8, 3)
    _raises(lambda: compose_grid({(0, 0): img}, ["a"], ["x", "y"]), "images", "(0, 1)")
    _raises(lambda: compose_grid({(0, 0): img, (0, 1): torch.zeros(8, 9, 3)}, ["a"], ["x", "y"]), "images")
    _raises(lambda: compose_grid({}, [], ["x"]), "sliders")


# --------------------------------------------------------------------------------------------------- labels

def _bank(n: int = 4) -> SliderBank:
    g = torch.Generator().manual_seed(0)
    sliders = [Slider(down={"m": torch.randn(1, 3, generator=g)}, up={"m": torch.randn(5, 1, generator=g)},
                      label=f"old{i}") for i in range(n)]
    return SliderBank(sliders, BankMeta(family="SD15", prompts=["a dog"], config={"seed": 1}))


def test_parse_labels_both_forms():
    assert parse_labels("0: smiling, 3: older", 4) == {0: "smiling", 3: "older"}
    assert parse_labels("1: red, warm light\n2=dark", 4) == {1: "red, warm light", 2: "dark"}
    assert parse_labels("smiling\n\nolder\n\n", 4) == {0: "smiling", 2: "older"}
    assert parse_labels("0:", 2) == {0: ""}
    _raises(lambda: parse_labels("4: x", 4), "labels", "out of range")
    _raises(lambda: parse_labels("0: a, 0: b", 4), "labels", "twice")
    _raises(lambda: parse_labels("0: a\nb", 4), "labels", "'b'")
    _raises(lambda: parse_labels("a\nb\nc", 2), "labels", "3 lines")
    _raises(lambda: parse_labels("  \n", 2), "labels", "empty")


def test_with_labels_returns_a_new_bank_and_leaves_input_unchanged():
    bank = _bank()
    out = with_labels(bank, {0: "smiling", 3: "older"})
    assert [s.label for s in out.sliders] == ["smiling", "old1", "old2", "older"]
    assert [s.label for s in bank.sliders] == ["old0", "old1", "old2", "old3"]
    assert out is not bank and out.meta is not bank.meta and out.meta == bank.meta
    assert all(a is not b and a.down is not b.down for a, b in zip(out.sliders, bank.sliders, strict=True))
    assert out.sliders[1].down["m"] is bank.sliders[1].down["m"]  # tensors shared, not copied
    out.meta.prompts.append("x")
    assert bank.meta.prompts == ["a dog"]
    _raises(lambda: with_labels(bank, {9: "x"}), "labels")
