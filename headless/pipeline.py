"""The runner's stages over a backend (ToyWorld or ComfyUI) and a process group.

discover: trajectories are cut into chunks of ``chunk`` trajectories; process ``r`` samples and embeds a
contiguous block of chunks (a seed range), saving each chunk as it finishes (resume skips saved chunks);
the final x̂0 and the embeddings are gathered in trajectory order, rank 0 fits the PCA and writes the basis.
train: the core ``train_bank`` in per-slider mode, sliders split over the processes (slider ``i`` on process
``i % N``), each process checkpointing its state; rank 0 writes the one bank.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from safetensors import safe_open
from torch import nn

from sliderspace_core.common.safefile import write_safetensors
from sliderspace_core.decompose.directions import Directions
from sliderspace_core.decompose.pca import fit_pca
from sliderspace_core.sliderspace.bank import BankMeta, SliderBank, save_bank
from sliderspace_core.sliderspace.sharding import SliderShard
from sliderspace_core.sliderspace.training import TrainConfig, split_held_out, train_bank
from sliderspace_core.sliderspace.trajectories import select_steps

from .config import DISCOVER_FIELDS, TRAIN_FIELDS, RunConfig
from .dist import Dist, shard_range
from .rundir import FileCheckpoint, RunDir


class Backend(Protocol):
    """What the stages need from a model host (``toy.ToyBackend``, ``comfy_backend.ComfyBackend``)."""

    encoder_id: str
    renoise_schedule: str
    """``"<scheduler> <steps>"`` training re-noises to (the trajectories' own sampling schedule)."""

    def sample_chunk(self, ids: list[int]) -> torch.Tensor: ...

    def embed(self, items: torch.Tensor) -> torch.Tensor: ...

    def train(self, fn: Callable, finals: torch.Tensor): ...

    def meta(self, modules: dict[str, nn.Module]) -> BankMeta: ...


@dataclass
class Timings:
    """Wall seconds of each stage in this process."""

    stages: dict[str, float] = field(default_factory=dict)
    """Stage name → seconds."""
    computed_chunks: int = 0
    """Chunks this process sampled in this launch (not loaded from the run directory)."""
    train_steps_resumed_at: int = 0
    """The training step this process resumed from (0: a fresh start)."""


def chunk_ids(cfg: RunConfig) -> list[list[int]]:
    """Trajectory indices of every chunk, in order (the last chunk may be shorter)."""
    if cfg.trajectories < 1 or cfg.chunk < 1:
        raise SystemExit("--trajectories and --chunk must be at least 1.")
    return [list(range(s, min(cfg.trajectories, s + cfg.chunk))) for s in range(0, cfg.trajectories, cfg.chunk)]


def _train_rows(ids: list[int], cut: int) -> list[int]:
    return [j for j, i in enumerate(ids) if i < cut]


def check_run(cfg: RunConfig, dist: Dist, run: RunDir, command: str) -> None:
    """Before any work: the process count fits the run, and a resumed run keeps its recorded settings."""
    chunks = chunk_ids(cfg)
    if dist.world_size > len(chunks):
        raise SystemExit(f"{dist.world_size} processes for {len(chunks)} chunks of trajectories: some would "
                         f"sample nothing. Launch at most {len(chunks)} processes, or lower --chunk.")
    if command == "apply":
        return
    run.check_or_record("discover", cfg.settings(DISCOVER_FIELDS), write=dist.rank == 0)
    if command == "train":
        run.check_or_record("train", cfg.settings(TRAIN_FIELDS), write=dist.rank == 0)
        SliderShard(dist.rank, dist.world_size).check(cfg.n_sliders)
        FileCheckpoint(run, dist.rank, dist.world_size, cfg.checkpoint_every)  # refuses another process count
    dist.barrier()


def discover(cfg: RunConfig, dist: Dist, run: RunDir, backend: Backend,
             times: Timings) -> tuple[torch.Tensor, Directions]:
    """Every trajectory's final x̂0 ``[T, ...]`` (trajectory order) and the basis (identical on every process)."""
    chunks = chunk_ids(cfg)
    cut = split_held_out(cfg.trajectories)[0].stop
    blocks = [shard_range(len(chunks), r, dist.world_size) for r in range(dist.world_size)]
    t0 = time.perf_counter()
    finals, embs = [], []
    for n_done, c in enumerate(blocks[dist.rank]):
        saved = run.load_chunk(c)
        if saved is None:
            x0 = backend.sample_chunk(chunks[c])
            rows = _train_rows(chunks[c], cut)
            items = x0[rows].reshape(-1, *x0.shape[2:])
            emb = backend.embed(items) if len(items) else torch.empty(0, 0)
            saved = {"final": x0[:, -1].contiguous(), "emb": emb.float().contiguous()}
            run.save_chunk(c, saved)
            times.computed_chunks += 1
        finals.append(saved["final"])
        embs.append(saved["emb"])
        run.progress(dist.rank, stage="trajectories", done=n_done + 1, of=len(blocks[dist.rank]))
        dist.say(f"trajectories: chunk {c} ({n_done + 1}/{len(blocks[dist.rank])} of mine), "
                 f"{time.perf_counter() - t0:.1f}s")
    times.stages["trajectories"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dim = int(max(dist.max_of(max((e.shape[1] for e in embs if e.numel()), default=-1))))
    local_final = torch.cat(finals)
    local_emb = torch.cat([e.reshape(-1, dim) for e in embs])
    counts = [sum(len(chunks[c]) for c in b) for b in blocks]
    n_kept = len(select_steps(cfg.steps, cfg.keep_steps, cfg.keep_every))
    emb_counts = [n_kept * sum(len(_train_rows(chunks[c], cut)) for c in b) for b in blocks]
    all_final = dist.gather_rows(local_final, counts)
    all_emb = dist.gather_rows(local_emb, emb_counts)
    times.stages["gather"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if dist.rank == 0 and not run.basis_path.exists():
        basis = fit_pca(all_emb, cfg.n_components, method=cfg.pca_method, seed=cfg.seed,
                        encoder_id=backend.encoder_id)
        basis.source.update({"n_embeddings": int(all_emb.shape[0]), "prompts": list(cfg.prompts)})
        tensors, meta = basis.to_state()
        write_safetensors(tensors, str(run.basis_path), meta, overwrite=True)
    dist.barrier()
    basis = load_basis(run)
    times.stages["pca"] = time.perf_counter() - t0
    dist.say(f"basis: {basis.n_components} components of {all_emb.shape[0]} embeddings; top ratios "
             f"{[round(v, 3) for v in basis.explained_variance_ratio[:4].tolist()]}")
    return all_final, basis


def load_basis(run: RunDir) -> Directions:
    with safe_open(str(run.basis_path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        meta = f.metadata()
    return Directions.from_state(tensors, meta)


def _kill_point(cfg: RunConfig, rank: int) -> int | None:
    if not cfg.simulate_kill:
        return None
    r, s = (int(v) for v in cfg.simulate_kill.split(":"))
    return s if r == rank else None


def train(cfg: RunConfig, dist: Dist, run: RunDir, backend: Backend, finals: torch.Tensor, basis: Directions,
          times: Timings) -> SliderBank:
    """Train the bank (sliders split over the processes); rank 0 writes it. Returns the whole bank everywhere."""
    shard = SliderShard(dist.rank, dist.world_size, dist.gather if dist.distributed else None)
    ckpt = FileCheckpoint(run, dist.rank, dist.world_size, cfg.checkpoint_every)
    resumed = ckpt.load()
    times.train_steps_resumed_at = int(resumed["done"]) if resumed is not None else 0
    if resumed is not None:
        dist.say(f"train: resuming from step {times.train_steps_resumed_at} ({ckpt.path.name})")
    tcfg = TrainConfig(iterations=cfg.iterations, lr=cfg.lr, rank=cfg.rank, sliders_per_step=cfg.sliders_per_step,
                       seed=cfg.train_seed, bidirectional=cfg.bidirectional, batched=False)
    own = [i for i in range(cfg.n_sliders) if shard.owns(i)]
    every = max(1, cfg.iterations // 10)
    kill_at = _kill_point(cfg, dist.rank)
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # its one-time imports (torch._dynamo, ~3 s) untimed
    t0 = time.perf_counter()

    def on_step(done: int, losses: list[float]) -> None:
        if kill_at is not None and done == kill_at:
            dist.say(f"train: --simulate-kill: killing myself (SIGKILL) after step {done}")
            os.kill(os.getpid(), signal.SIGKILL)
        if done % every == 0 or done == cfg.iterations:
            mine = [v for v in losses[-every:] if not math.isnan(v)]
            spent = time.perf_counter() - t0
            eta = spent / max(1, done - times.train_steps_resumed_at) * (cfg.iterations - done)
            run.progress(dist.rank, stage="train", done=done, of=cfg.iterations, sliders=own)
            dist.say(f"train: {done}/{cfg.iterations} steps, sliders {own}"
                     + (f", loss {sum(mine) / len(mine):.3f}" if mine else "") + f", about {eta:.0f}s left")

    extra = {"headless": {**cfg.settings(DISCOVER_FIELDS), **cfg.settings(TRAIN_FIELDS)},
             "targets": cfg.targets, "target_pattern": cfg.target_pattern, "renoise_schedule": backend.renoise_schedule}

    def fit(host, modules, latents, sigmas):
        return train_bank(host, modules, basis, cfg.n_sliders, latents, sigmas, tcfg, backend.meta(modules),
                          on_step, extra, shard, ckpt)

    bank, _ = backend.train(fit, finals)
    times.stages["train"] = time.perf_counter() - t0
    if dist.rank == 0:
        save_bank(bank, bank_path(cfg), overwrite=True)
        dist.say(f"bank written: {bank_path(cfg)}")
    dist.barrier()
    return bank


def bank_path(cfg: RunConfig) -> str:
    return cfg.out or os.path.join(cfg.run_dir, "bank.safetensors")
