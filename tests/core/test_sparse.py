"""Random sparse subsets and the per-item low-rank delta."""

from __future__ import annotations

import pytest
import torch

from sliderspace_core.common.errors import InputError
from sliderspace_core.common.lowrank import per_item_lora
from sliderspace_core.sliderspace.bank import parse_scales
from sliderspace_core.sliderspace.random_sliders import SparseSpec, describe, draw_subset


def test_subsets_are_seeded_sized_and_in_range():
    spec = SparseSpec(k=3, distribution="uniform", scale=2.0, min_scale=0.5, random_sign=True)
    a = [draw_subset(spec, 16, s) for s in range(50)]
    assert a == [draw_subset(spec, 16, s) for s in range(50)]
    assert len({tuple(sorted(x)) for x in a}) > 10
    for sub in a:
        assert len(sub) == 3 and all(0 <= i < 16 for i in sub)
        assert all(0.5 <= abs(v) <= 2.0 for v in sub.values())
    signs = {v > 0 for sub in a for v in sub.values()}
    assert signs == {True, False}
    fixed = draw_subset(SparseSpec(k=2), 5, 7)
    assert set(fixed.values()) == {1.0}


def test_describe_round_trips_through_apply_syntax():
    subs = [draw_subset(SparseSpec(k=3, random_sign=True), 8, 10 + j) for j in range(3)]
    text = describe(subs, 10)
    for j, line in enumerate(text.splitlines()):
        head, body = line.split(": ", 1)
        assert head == f"item {j} (seed {10 + j})"
        assert parse_scales(body, 8) == subs[j]


def test_spec_errors():
    with pytest.raises(InputError, match="'k'"):
        SparseSpec(k=9).check(4)
    with pytest.raises(InputError, match="'min_scale'"):
        SparseSpec(distribution="uniform", scale=0.2, min_scale=1.0).check(4)


def test_per_item_lora_matches_explicit_weights():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, generator=g)
    down, up = torch.randn(3, 2, 7, generator=g), torch.randn(3, 4, 2, generator=g)
    out = per_item_lora(x, down, up)
    for b in range(3):
        torch.testing.assert_close(out[b], x[b] @ (up[b] @ down[b]).T, rtol=1e-5, atol=1e-5)
