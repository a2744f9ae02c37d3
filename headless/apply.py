"""``apply``: a slider grid from the run's bank — rows are sliders, columns scales, every cell from the same
noise — written as ``<run_dir>/slider_grid.png`` (rank 0 renders; other processes only wait)."""

from __future__ import annotations

import os
import time

from sliderspace_core.common.drawing import compose_grid
from sliderspace_core.sliderspace.bank import load_bank
from sliderspace_core.sliderspace.grid import parse_scale_list, parse_slider_list

from .config import RunConfig
from .dist import Dist
from .pipeline import Timings, bank_path


def apply(cfg: RunConfig, dist: Dist, backend, times: Timings) -> str:
    """Render the grid; returns its path."""
    out = os.path.join(cfg.run_dir, "slider_grid.png")
    t0 = time.perf_counter()
    if dist.rank == 0:
        path = bank_path(cfg)
        if not os.path.exists(path):
            raise SystemExit(f"no bank at {path}: run `python -m headless train` first (same --run-dir).")
        bank = load_bank(path, "out")
        scales = parse_scale_list(cfg.scales)
        sliders = parse_slider_list(cfg.apply_sliders or "all", len(bank))
        cells = {}
        for r, i in enumerate(sliders):
            for c, img in enumerate(backend.render(bank, i, scales)):
                cells[(r, c)] = img
            dist.say(f"apply: slider {i} rendered ({r + 1}/{len(sliders)})")
        grid = compose_grid(cells, [bank.sliders[i].label for i in sliders], [f"{s:+g}" for s in scales])
        from PIL import Image

        Image.fromarray((grid[0].clamp(0, 1) * 255).round().byte().numpy()).save(out)
        dist.say(f"apply: grid written: {out}")
    times.stages["apply"] = time.perf_counter() - t0
    dist.barrier()
    return out
