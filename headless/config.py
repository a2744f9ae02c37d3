"""The runner's settings: what a run computes (recorded in the run directory and checked on resume) and how
it runs (threads, device, checkpoint cadence: free to change between a kill and a resume)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields

DISCOVER_FIELDS = ("checkpoint", "clip_vision", "prompts", "negative", "trajectories", "seed", "steps", "cfg",
                   "sampler", "scheduler", "width", "height", "keep_steps", "keep_every", "chunk",
                   "n_components", "pca_method")
"""Settings that decide the trajectories, embeddings and basis."""
TRAIN_FIELDS = ("n_sliders", "iterations", "lr", "rank", "sliders_per_step", "train_seed", "bidirectional",
                "targets", "target_pattern")
"""Settings that decide the trained sliders (on top of the discovery's)."""


@dataclass
class RunConfig:
    """One headless run. Defaults: a quick ToyWorld discovery on the CPU."""

    run_dir: str = "artifacts/headless"
    """Run directory: chunks, basis, per-process training checkpoints, progress, the bank. Re-running a
    command on the same directory resumes it."""
    checkpoint: str = ""
    """A ComfyUI checkpoint file (model + CLIP + VAE). Empty: ToyWorld (no ComfyUI needed)."""
    clip_vision: str = ""
    """A CLIP vision file (ComfyUI's CLIPVisionLoader format); required with ``checkpoint``."""
    prompts: tuple[str, ...] = ("a circle",)
    """Concept prompts; trajectory ``i`` uses ``prompts[i % len(prompts)]`` (ToyWorld: one prompt)."""
    negative: str = ""
    """Negative prompt (ComfyUI models)."""
    trajectories: int = 32
    """Sampling runs; trajectory ``i`` uses seed ``seed + i``; the last ~20 % are held out (alignment)."""
    seed: int = 0
    """First trajectory seed."""
    steps: int = 16
    """Sampler steps per trajectory."""
    cfg: float = 2.0
    """Classifier-free guidance of sampling and training."""
    sampler: str = "euler"
    """ComfyUI sampler name (ToyWorld: always Euler)."""
    scheduler: str = "karras"
    """ComfyUI scheduler name (ToyWorld: always Karras)."""
    width: int = 512
    """Image width (ComfyUI models)."""
    height: int = 512
    """Image height (ComfyUI models)."""
    keep_steps: str = "every step"
    """Which steps' x̂0 are embedded: ``every step`` (paper), ``every k-th step``, ``final only``."""
    keep_every: int = 1
    """k for ``every k-th step``."""
    chunk: int = 4
    """Trajectories per chunk: the unit one process samples (one sampler batch) and embeds, saves and
    gathers. Processes take contiguous blocks of chunks (seed ranges); the chunking, not the process
    count, fixes every batch, which is why 1 and N processes agree bitwise."""
    n_components: int = 8
    """PCA components kept (at least ``n_sliders``)."""
    pca_method: str = "exact"
    """``exact``, ``randomized`` or ``auto`` (core ``fit_pca``)."""
    n_sliders: int = 8
    """Sliders trained, one per leading component."""
    iterations: int = 200
    """Optimizer steps."""
    lr: float = 1e-2
    """AdamW learning rate (ToyWorld's 1e-2; the reference on SDXL: 2e-3)."""
    rank: int = 1
    """LoRA rank per slider and module."""
    sliders_per_step: int = 3
    """Sliders trained per step on one shared sample."""
    train_seed: int = 0
    """Seeds slider initialisation and every training draw."""
    bidirectional: bool = False
    """Also train scale −1 towards −v."""
    targets: str = "cross-attention k/v"
    """Slider targets (the Train Sliders node's presets)."""
    target_pattern: str = ""
    """Regex over module names for the ``pattern`` preset."""
    checkpoint_every: int = 25
    """Save each process's training state every this many steps (resume point after a kill)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``; under torchrun each process takes ``cuda:LOCAL_RANK``."""
    threads: int = 0
    """CPU threads per process (0: 1 under torchrun, torch's default otherwise). Bitwise agreement between
    runs holds at equal thread counts."""
    out: str = ""
    """Where the bank is written (default ``<run_dir>/bank.safetensors``); copy it to ComfyUI's
    ``models/sliderspace`` for Load Slider Bank."""
    scales: str = "-2, -1, 0, 1, 2"
    """``apply``: slider scales of the grid's columns."""
    apply_sliders: str = ""
    """``apply``: slider indices of the grid's rows, e.g. ``0-3`` (empty: all)."""
    apply_seed: int = 10_000_000
    """``apply``: the noise seed of every grid cell."""
    start_percent: float = 0.0
    """``apply``: sliders act from this fraction of the schedule on (ComfyUI models)."""
    simulate_kill: str = ""
    """Testing aid, ``RANK:STEP``: that process kills itself (SIGKILL) right after training step STEP."""

    def settings(self, names: tuple[str, ...]) -> dict:
        """The named settings as plain JSON values (what the run directory records)."""
        d = asdict(self)
        return {n: list(d[n]) if isinstance(d[n], tuple) else d[n] for n in names}


def parser() -> argparse.ArgumentParser:
    """``python -m headless {discover,train,apply}`` with one option per :class:`RunConfig` field."""
    ap = argparse.ArgumentParser(prog="python -m headless",
                                 description="SliderSpace from the command line (one process, or N under torchrun).")
    ap.add_argument("command", choices=("discover", "train", "apply"),
                    help="discover: trajectories → embeddings → PCA basis; train: discover if needed, then train "
                         "the sliders and write the bank; apply: render a slider grid from the bank")
    base = RunConfig()
    for f in fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(base, f.name)
        if isinstance(default, bool):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            ap.add_argument(flag, action="append", default=None, help=f"repeatable (default {list(default)})")
        else:
            ap.add_argument(flag, type=type(default), default=default)
    return ap


def from_args(argv: list[str] | None = None) -> tuple[str, RunConfig]:
    ns = parser().parse_args(argv)
    values = {f.name: getattr(ns, f.name) for f in fields(RunConfig)}
    values["prompts"] = tuple(values["prompts"] or RunConfig.prompts)
    return ns.command, RunConfig(**values)
