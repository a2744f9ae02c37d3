"""Experiment: how high can held-out cos(Δφ, v) get on ToyWorld for ANY slider? (issue 3's ≥ 0.9 bar)

The ceiling and why it exists: ``toyworld/ceiling.py`` (benchmark F0 divides each slider's alignment by it).
Usage: ``.venv/bin/python scripts/exp_alignment_ceiling.py [every|final]`` (about 30 s on 2 cores).
Measured once on ToyWorld 1 (seed 0, 8 components), median ceiling per component:
- final-only basis, 5 factors: 0.65 0.70 0.65 0.53 0.81 0.70 0.87 0.33;
  with the 7 edits: 0.91 0.93 0.84 0.74 0.94 0.86 0.94 0.82
- every-step basis, 5 factors: 0.43 0.83 0.69 0.84 0.52 0.71 0.64 0.68;
  with the 7 edits: 0.85 0.98 0.84 0.94 0.74 0.93 0.84 0.92
Trained sliders (final-only basis, rank 8, every attention linear, 2000 iterations) reached
0.69 0.56 0.25 0.39 0.48 0.35 0.77 0.37.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toyworld.ceiling import alignment_ceiling  # noqa: E402
from toyworld.host import build_host  # noqa: E402
from toyworld.pipeline import DiscoveryConfig, discover  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    keep = "final only" if (sys.argv[1:] or ["final"])[0] == "final" else "every step"
    d = discover(build_host(), DiscoveryConfig(keep_mode=keep), train=False)
    for name, with_edits in (("5 factors", False), ("5 factors + 7 edits", True)):
        ceiling = alignment_ceiling(d, 8, with_edits)
        print(f"{keep} basis, {name}: median ceiling per component", [round(v, 2) for v in ceiling.tolist()])


if __name__ == "__main__":
    main()
