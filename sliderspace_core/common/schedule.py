"""Percent ↔ sigma gating (SliderSpace §1 step 5): sliders switch on only after the first steps.

Gating is by sigma, not step index, so it holds for every sampler and scheduler: a slider is active
for a model evaluation at ``sigma`` iff ``sigma_end <= sigma <= sigma_start``, where
``sigma_start = percent_to_sigma(start_percent)`` (ComfyUI's convention: percent 0 = the noisiest end).
The bounds carry a relative tolerance of :data:`REL_TOL`: schedulers such as ``simple`` and ``sgm_uniform``
place step k of n exactly at ``percent_to_sigma(k / n)``, computed along another float path, so without it a
step sitting ON the boundary (start_percent 0.5 at 4 steps) would be in or out by rounding, differently per
model family (README: what start_percent means at 4 steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .errors import InputError

REL_TOL = 1e-3
"""Relative tolerance of the window's bounds: float32 schedules, and ``sgm_uniform`` on flow models lands within
~6e-4 of ``percent_to_sigma(k / n)``."""


def check_window(start_percent: float, end_percent: float) -> None:
    for name, v in (("start_percent", start_percent), ("end_percent", end_percent)):
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise InputError(name, f"is {v}; it must be between 0 and 1.", "use a value in [0, 1].")
    if start_percent > end_percent:
        raise InputError("start_percent", f"({start_percent}) is after end_percent ({end_percent}).",
                         "make start_percent <= end_percent.")


@dataclass(frozen=True)
class SigmaWindow:
    """The sigma interval in which sliders are on."""

    sigma_start: float
    """The largest sigma at which sliders are on (``percent_to_sigma(start_percent)``)."""
    sigma_end: float
    """The smallest sigma at which sliders are on (``percent_to_sigma(end_percent)``)."""

    @classmethod
    def from_percents(cls, percent_to_sigma: Callable[[float], float], start_percent: float,
                      end_percent: float) -> SigmaWindow:
        check_window(start_percent, end_percent)
        return cls(float(percent_to_sigma(start_percent)), float(percent_to_sigma(end_percent)))

    def contains(self, sigma: float) -> bool:
        """``sigma_end <= sigma <= sigma_start``, a sigma within :data:`REL_TOL` of a bound counting as on it."""
        return self.sigma_end * (1.0 - REL_TOL) <= sigma <= self.sigma_start * (1.0 + REL_TOL)

    @property
    def empty(self) -> bool:
        """True when no positive sigma can fall inside (e.g. start_percent = 1)."""
        return self.sigma_start <= 0.0
