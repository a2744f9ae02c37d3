"""The run directory: what a run recorded, per-chunk results, per-process training checkpoints, progress.

Every file is written atomically (temp file + rename), so a kill at any moment leaves either the old file
or the new one. Tensors are safetensors; nothing here unpickles.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open

from sliderspace_core.common.safefile import write_safetensors


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)


class RunDir:
    """Paths and records of one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        for sub in ("chunks", "train", "progress"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- settings recorded and checked
    @property
    def record_path(self) -> Path:
        return self.root / "run.json"

    def record(self) -> dict:
        return json.loads(self.record_path.read_text()) if self.record_path.exists() else {}

    def check_or_record(self, section: str, settings: dict, write: bool) -> None:
        """Refuse to resume a run whose ``section`` settings differ; record them when new (``write``: rank 0)."""
        rec = self.record()
        old = rec.get(section)
        if old is not None and old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            shown = ", ".join(f"{k}: {old.get(k)!r} → {settings.get(k)!r}" for k in diff)
            raise SystemExit(f"run directory {self.root} was started with other {section} settings ({shown}). "
                             f"Resume with the recorded settings, or pass a new --run-dir.")
        if old is None and write:
            rec[section] = settings
            _atomic_text(self.record_path, json.dumps(rec, indent=1, sort_keys=True))

    # ---------------------------------------------------------------- chunks
    def chunk_path(self, c: int) -> Path:
        return self.root / "chunks" / f"chunk_{c:06d}.safetensors"

    def save_chunk(self, c: int, tensors: dict[str, torch.Tensor]) -> None:
        write_safetensors(tensors, str(self.chunk_path(c)), {"chunk": str(c)}, overwrite=True)

    def load_chunk(self, c: int) -> dict[str, torch.Tensor] | None:
        p = self.chunk_path(c)
        return read_tensors(p) if p.exists() else None

    @property
    def basis_path(self) -> Path:
        return self.root / "basis.safetensors"

    # ---------------------------------------------------------------- progress
    def progress(self, rank: int, **fields: object) -> None:
        """This process's latest progress (``progress/rank<r>.json``: pid, stage, counts, time)."""
        doc = {"rank": rank, "pid": os.getpid(), "time": time.time(), **fields}
        _atomic_text(self.root / "progress" / f"rank{rank}.json", json.dumps(doc))


class FileCheckpoint:
    """A core ``TrainCheckpoint`` in the run directory: ``train/rank<r>_of_<w>.safetensors``."""

    def __init__(self, run: RunDir, rank: int, world_size: int, every: int) -> None:
        self.every = max(1, int(every))
        self.path = run.root / "train" / f"rank{rank}_of_{world_size}.safetensors"
        self.saves = 0
        """Checkpoints written by this process in this launch."""
        others = [p.name for p in (run.root / "train").glob("rank*_of_*.safetensors")
                  if not p.name.endswith(f"_of_{world_size}.safetensors")]
        if others:
            old = others[0].split("_of_")[1].split(".")[0]
            raise SystemExit(f"run directory {run.root} holds training checkpoints of {old} processes, but this "
                             f"launch has {world_size}. Resume with --nproc_per_node={old} (sliders are split "
                             f"by process count), or delete {run.root / 'train'} to restart training.")

    def load(self) -> dict[str, torch.Tensor] | None:
        return read_tensors(self.path) if self.path.exists() else None

    def save(self, state: dict[str, torch.Tensor]) -> None:
        write_safetensors(state, str(self.path), {"kind": "sliderspace-train-state"}, overwrite=True)
        self.saves += 1
