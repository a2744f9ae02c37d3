"""D1/D2: the headless runner on 2 processes (torchrun, gloo, 1 thread each) / on 1 process (1 thread), same
ToyWorld run: D1 trajectory collection (sampling + embedding), D2 slider training (the slowest process's
stage time from the run's summary.json; process start-up excluded). The two runs are bitwise the same bank."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

from benchmarks.common import Result, check

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOAL = "< 0.65"


def _run(nproc: int, args: list[str]) -> dict[str, float]:
    py = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
    head = [py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [py]
    with tempfile.TemporaryDirectory() as d:
        cmd = [*head, "-m", "headless", "train", "--run-dir", d, "--threads", "1", *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError(p.stderr[-2000:])
        stages = json.loads((pathlib.Path(d) / "summary.json").read_text())["stages_s"]
    return {k: max(v) for k, v in stages.items()}


def run(quick: bool) -> list[Result]:
    n, steps, iters = (8, 4, 12) if quick else (32, 8, 60)
    args = ["--trajectories", str(n), "--steps", str(steps), "--chunk", "4", "--n-sliders", "8",
            "--n-components", "8", "--iterations", str(iters), "--sliders-per-step", "3"]
    best: dict[int, dict[str, float]] = {}
    for nproc in (1, 2, 2, 1):  # ABBA, best of two each
        t = _run(nproc, args)
        best[nproc] = {k: min(v, best.get(nproc, {}).get(k, v)) for k, v in t.items()}
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    rows = []
    for rid, stage, what in (("D1", "trajectories", "trajectory collection"), ("D2", "train", "slider training")):
        one, two = best[1][stage], best[2][stage]
        ratio = two / one
        note = (f"ToyWorld {n} trajectories x {steps} steps, chunk 4; 8 sliders, {iters} steps, 3 per step; "
                f"1 process {one:.2f}s, 2 processes {two:.2f}s (best of 2, ABBA); "
                f"{os.cpu_count()} cores, load average {load:.1f} at the end")
        rows.append(Result(rid, f"{what}: 2 processes / 1 process wall time (torchrun gloo, CPU)", ratio, GOAL,
                           check(ratio, GOAL), note))
    return rows
