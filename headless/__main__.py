"""``python -m headless discover|train|apply [options]`` — one process, or N under
``torchrun --nproc_per_node=N -m headless ...`` (see docs/headless.md)."""

from __future__ import annotations

import json
import sys
import time

from sliderspace_core.common.errors import InputError

from .config import RunConfig, from_args
from .dist import Dist
from .pipeline import Timings, bank_path, check_run, discover, train
from .rundir import RunDir


def make_backend(cfg: RunConfig, dist: Dist):
    """ToyWorld without ``--checkpoint``; otherwise the checkpoint through ComfyUI (COMFYUI_PATH)."""
    if not cfg.checkpoint:
        from .toy import ToyBackend

        return ToyBackend(cfg)
    from .comfy_backend import ComfyBackend

    return ComfyBackend(cfg, dist.device)


def summary(cfg: RunConfig, dist: Dist, run: RunDir, times: Timings, command: str, wall: float) -> None:
    """Rank 0 prints and writes ``summary.json``: each stage's slowest process, per-process times."""
    names = ["trajectories", "gather", "pca", "train", "apply"]
    per_rank = {n: dist.max_of(times.stages.get(n, 0.0)) for n in names}
    chunks = dist.max_of(float(times.computed_chunks))
    resumed = dist.max_of(float(times.train_steps_resumed_at))
    if dist.rank != 0:
        return
    doc = {"command": command, "world_size": dist.world_size, "backend": dist.backend or "none",
           "device": str(dist.device), "wall_s": round(wall, 3),
           "stages_s": {n: [round(v, 3) for v in vals] for n, vals in per_rank.items() if any(vals)},
           "chunks_computed": [int(v) for v in chunks], "train_resumed_at": [int(v) for v in resumed]}
    (run.root / "summary.json").write_text(json.dumps(doc, indent=1))
    lines = [f"summary: {command} on {dist.world_size} process(es), {doc['backend']}, {dist.device}, "
             f"{wall:.1f}s wall"]
    for n, vals in doc["stages_s"].items():
        lines.append(f"  {n:<13} slowest {max(vals):7.2f}s   per rank {vals}")
    if any(resumed):
        lines.append(f"  training resumed at steps {doc['train_resumed_at']} (per rank)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    command, cfg = from_args(argv)
    dist = Dist.from_env("cpu" if not cfg.checkpoint else cfg.device, cfg.threads)
    t0 = time.perf_counter()
    try:
        run = RunDir(cfg.run_dir)
        check_run(cfg, dist, run, command)
        backend = make_backend(cfg, dist)
        times = Timings()
        if command == "apply":
            from .apply import apply

            apply(cfg, dist, backend, times)
        else:
            finals, basis = discover(cfg, dist, run, backend, times)
            if command == "train":
                train(cfg, dist, run, backend, finals, basis, times)
        summary(cfg, dist, run, times, command, time.perf_counter() - t0)
        if command == "train" and dist.rank == 0:
            print(bank_path(cfg))
        return 0
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        dist.close()


if __name__ == "__main__":
    sys.exit(main())
