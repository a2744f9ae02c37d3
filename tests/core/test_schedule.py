"""The sigma window: which evaluations have sliders on, and the boundary tolerance few-step schedules need."""

from __future__ import annotations

import pytest

from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.common.schedule import REL_TOL, SigmaWindow


def flow_percent_to_sigma(p: float) -> float:
    """A flow model's sigma at percent p (shift 1): 1 − p, with ComfyUI's 'percent 0 = anything' top."""
    return 999999999.9 if p <= 0.0 else max(0.0, 1.0 - p)


def test_bounds_are_inclusive_with_a_small_relative_tolerance():
    w = SigmaWindow.from_percents(flow_percent_to_sigma, 0.5, 0.75)
    assert (w.sigma_start, w.sigma_end) == (0.5, 0.25)
    assert w.contains(0.5) and w.contains(0.25) and w.contains(0.4)
    assert w.contains(0.5 * (1 + REL_TOL / 2)) and w.contains(0.25 * (1 - REL_TOL / 2))  # a step ON the boundary
    assert not w.contains(0.5 * (1 + 3 * REL_TOL)) and not w.contains(0.25 * (1 - 3 * REL_TOL))
    assert REL_TOL <= 1e-3


def test_start_zero_is_every_step_and_start_one_is_empty():
    assert SigmaWindow.from_percents(flow_percent_to_sigma, 0.0, 1.0).contains(1.0)
    assert SigmaWindow.from_percents(flow_percent_to_sigma, 1.0, 1.0).empty


def test_bad_windows_name_their_input():
    for start, end, name in ((0.6, 0.4, "start_percent"), (-0.1, 1.0, "start_percent"), (0.0, 1.5, "end_percent")):
        with pytest.raises(InputError) as err:
            SigmaWindow.from_percents(flow_percent_to_sigma, start, end)
        assert err.value.input_name == name
