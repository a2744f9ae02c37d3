"""E3: planted-atom recovery by ELROND's TopK SAE at the Decompose node's defaults (issue 24.1).

32 planted unit atoms in 768-d (SD1.5's conditioning width), each gradient row a mix of 3 of them with random
signs plus 10 % noise, scaled to unit length as Collect's ``normalize`` does. The SAE is the node's: the ELROND
preset, the schedule scaled to the number of rows, seed 0. Recovery of an atom = its best |cos| with any
exported direction; the row reports the median over the 32 atoms (chance, for random 768-d atoms: ~0.11).
"""

from __future__ import annotations

import time

from benchmarks.common import Result, check

GOAL = ">= 0.9"


def measure(pairs: int) -> tuple[float, float, int, int, float]:
    """(median recovery, min recovery, directions, optimiser steps, seconds) at ``pairs`` gradient rows."""
    from sliderspace_core.elrond.directions import sae_directions
    from tests.core.planted import planted_gradients, recovery

    x, dic = planted_gradients(pairs)
    t0 = time.perf_counter()
    d = sae_directions(x)
    rec = recovery(dic, d.components)
    return float(rec.median()), float(rec.min()), d.n_components, int(d.source["steps"]), time.perf_counter() - t0


def run(quick: bool) -> list[Result]:
    import torch

    torch.set_num_threads(1)  # small matrices: a second thread only adds barrier waits on a shared CPU
    rows = []
    for row_id, pairs in (("E3", 2000), ("E3b", 2000 if quick else 10_000)):
        med, lo, n, steps, secs = measure(pairs)
        rows.append(Result(row_id, f"planted-atom recovery, ELROND TopK SAE defaults, {pairs} pairs (median)", med,
                           GOAL, check(med, GOAL),
                           f"32 atoms in 768-d, 3 per row + 10 % noise; min {lo:.3f}, {n} directions exported, "
                           f"{steps} steps, {secs:.0f} s CPU (paper's fixed schedule: 0.115 at 2 000)"))
    return rows
