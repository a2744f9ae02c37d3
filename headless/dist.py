"""The process group: one process, or several launched by torchrun (torch.distributed; no scheduler of ours).

Under ``torchrun`` the environment carries ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :meth:`Dist.from_env`
joins the group with ``gloo`` on the CPU or ``nccl`` on CUDA. Collectives move raw bytes (``uint8``), so any
dtype travels exactly. Without torchrun it is a group of one and every collective is the identity.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as tdist


@dataclass
class Dist:
    """This process's place in the run and the collectives the runner uses."""

    rank: int = 0
    """This process's index (``RANK``)."""
    world_size: int = 1
    """Processes in the run (``WORLD_SIZE``)."""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where this process computes (``cuda:LOCAL_RANK`` on a GPU machine)."""
    backend: str = ""
    """``gloo`` or ``nccl``; empty for a single process started without torchrun."""

    @classmethod
    def from_env(cls, device: str = "auto", threads: int = 0) -> Dist:
        """Join the torchrun group if launched by torchrun. ``device``: ``auto`` (CUDA if present), ``cpu``,
        ``cuda``. ``threads``: CPU threads per process (0: 1 under torchrun on the CPU, torch's default
        otherwise — the same count must be used for runs that are to agree bitwise)."""
        launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", 0))
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: this machine has no CUDA device; use --device cpu.")
        if use_cuda:
            if local >= torch.cuda.device_count():
                raise SystemExit(f"rank {rank}: LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s); "
                                 f"launch at most {torch.cuda.device_count()} processes per node.")
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
        else:
            dev = torch.device("cpu")
            if threads or launched:
                torch.set_num_threads(threads or 1)
        backend = ""
        if launched:
            backend = "nccl" if use_cuda else "gloo"
            tdist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
            if tdist.get_world_size() != world or tdist.get_rank() != rank:
                raise SystemExit("torch.distributed disagrees with RANK/WORLD_SIZE; launch with torchrun.")
        return cls(rank, world, dev, backend)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def _wire(self, t: torch.Tensor) -> torch.Tensor:
        """``t``'s bytes as a flat uint8 tensor on the collective's device."""
        flat = t.detach().contiguous().reshape(-1)
        data = flat.view(torch.uint8) if flat.numel() else torch.empty(0, dtype=torch.uint8)
        return data.to("cuda" if self.backend == "nccl" else "cpu")

    def gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every process's ``t`` (same shape and dtype on all), by rank, on ``t``'s device."""
        if not self.distributed:
            return [t]
        wire = self._wire(t)
        parts = [torch.empty_like(wire) for _ in range(self.world_size)]
        tdist.all_gather(parts, wire)
        return [p.cpu().view(t.dtype).reshape(t.shape).to(t.device) for p in parts]

    def gather_rows(self, local: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """Rows of every process concatenated in rank order; ``counts[r]`` rows come from rank ``r``
        (every process knows the counts: the split is a pure function of the settings)."""
        if not self.distributed:
            return local
        if local.shape[0] != counts[self.rank]:
            raise RuntimeError(f"rank {self.rank} holds {local.shape[0]} rows, expected {counts[self.rank]}")
        most = max(counts)
        padded = torch.zeros((most, *local.shape[1:]), dtype=local.dtype)
        padded[:local.shape[0]] = local.cpu()
        parts = self.gather(padded)
        return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)])

    def max_of(self, value: float) -> list[float]:
        """``value`` of every process, by rank."""
        return [float(v) for v in self.gather(torch.tensor([value], dtype=torch.float64))]

    def barrier(self) -> None:
        if self.distributed:
            self.gather(torch.zeros(1))  # a collective that works on every backend without device ids

    def close(self) -> None:
        if self.backend and tdist.is_initialized():
            tdist.destroy_process_group()

    def say(self, text: str) -> None:
        """One progress line, prefixed with this process's rank (stderr, flushed)."""
        prefix = f"[rank {self.rank}/{self.world_size}] " if self.world_size > 1 else ""
        print(f"{time.strftime('%H:%M:%S')} {prefix}{text}", file=sys.stderr, flush=True)


def shard_range(n: int, rank: int, world_size: int) -> range:
    """The contiguous block of ``range(n)`` that ``rank`` of ``world_size`` takes (sizes differ by ≤ 1)."""
    return range(n * rank // world_size, n * (rank + 1) // world_size)
