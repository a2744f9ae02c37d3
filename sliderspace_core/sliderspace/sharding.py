"""Slider training split over processes, and resumed after a kill: the parts of it that are math.

Which process trains which slider (:class:`SliderShard`), how the processes' results are put back together
(every slider's rows come from the one process that trained it), and the trainer's complete state as
plain tensors (so a checkpoint is a safetensors file, never a pickle). The transport — torch.distributed,
files — belongs to the caller (the headless runner): here a process only receives a ``gather`` callable.

Why the split gives the single-process bank bit for bit: in per-slider mode (``TrainConfig.batched =
False``) every process replays the SAME global draw sequence (sliders, sample, sigma, noise of every step),
computes only the items of its own sliders, each in its own pass of a fixed batch size, and steps the
optimizer on its own drawn sliders. A slider's update then depends only on its own items and its own optimiser
state (``optim.SliderAdamW``) — never on which process, or which other sliders, shared the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from ..common.errors import InputError

if TYPE_CHECKING:
    from .training import SliderTrainer


@dataclass
class SliderShard:
    """This process's part of a bank trained by several processes (slider ``i`` belongs to ``i % world_size``)."""

    rank: int = 0
    """This process's index, 0 … ``world_size − 1``."""
    world_size: int = 1
    """Processes that train the bank together."""
    gather: Callable[[torch.Tensor], list[torch.Tensor]] | None = None
    """Every process's copy of a tensor (same shape and dtype everywhere), by rank; ``None`` in one process."""

    def owner(self, slider: int) -> int:
        return int(slider) % self.world_size

    def owns(self, slider: int) -> bool:
        return self.owner(slider) == self.rank

    def check(self, n_sliders: int) -> None:
        """Every process must own at least one slider; the rank must be one of the processes."""
        if not 0 <= self.rank < self.world_size:
            raise InputError("rank", f"is {self.rank} but there are {self.world_size} processes.",
                             "launch with torchrun, which sets RANK and WORLD_SIZE consistently.")
        if self.world_size > n_sliders:
            raise InputError("nproc_per_node", f"{self.world_size} processes for {n_sliders} sliders: some would "
                             "train nothing.", f"launch at most {n_sliders} processes or train more sliders.")

    def copies(self, t: torch.Tensor) -> list[torch.Tensor]:
        return [t] if self.gather is None or self.world_size == 1 else self.gather(t)

    def pick_rows(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (dim 0 indexes sliders) with every row taken from that slider's owner: an exact copy, no sum."""
        copies = self.copies(t)
        if len(copies) != self.world_size:
            raise RuntimeError(f"gather returned {len(copies)} copies for {self.world_size} processes")
        out = t.clone()
        for i in range(t.shape[0]):
            out[i] = copies[self.owner(i)][i].to(out)
        return out

    def merge_missing(self, t: torch.Tensor) -> torch.Tensor:
        """Entries that only their owner filled (NaN elsewhere) merged from every process's copy."""
        out = None
        for c in self.copies(t):
            out = c.clone() if out is None else torch.where(torch.isnan(out), c.to(out), out)
        assert out is not None
        return out


class TrainCheckpoint(Protocol):
    """Where a process keeps its training state so that a killed run can go on (the caller decides where)."""

    every: int
    """Save after every ``every`` optimizer steps (and after the last)."""

    def load(self) -> dict[str, torch.Tensor] | None:
        """The state saved last, or ``None`` when this run has not saved one yet."""
        ...

    def save(self, state: dict[str, torch.Tensor]) -> None:
        """Store ``state`` (atomically: a kill while saving leaves the previous one)."""
        ...


def step_loss(items: list[float]) -> float:
    """A step's loss: the mean of its slider items' losses, summed in the step's slider order (NaN if any is
    missing — a sharded process before its losses are merged)."""
    return sum(items) / len(items) if items else math.nan


# ----------------------------------------------------------------------------------------- trainer state

def trainer_state(trainer: SliderTrainer) -> dict[str, torch.Tensor]:
    """Everything that decides the rest of a run: steps done, the random stream, the adapters, AdamW's
    moments and step counts, the updates per slider and the losses so far (CPU tensors)."""
    state: dict[str, torch.Tensor] = {
        "done": torch.tensor(trainer.done, dtype=torch.int64),
        "generator": trainer.gen.get_state(),
        "updates": torch.tensor(trainer.result.updates, dtype=torch.int64),
        "losses": torch.tensor(trainer.result.losses, dtype=torch.float64),
        "item_losses": torch.tensor(trainer.item_losses, dtype=torch.float64).reshape(len(trainer.item_losses),
                                                                                     trainer.k),
    }
    for name, p in trainer.adapters.state_dict().items():
        state[f"param.{name}"] = p.detach().cpu().clone()
    for idx, slot in trainer.opt.state_dict()["state"].items():
        for key, value in slot.items():
            state[f"opt.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().clone()
    return state


def load_trainer_state(trainer: SliderTrainer, state: dict[str, torch.Tensor]) -> None:
    """Put ``state`` (from :func:`trainer_state` of a run with the same settings) back into ``trainer``."""
    mismatch = InputError("checkpoint", "was written by a training run with other settings (its tensors do "
                          "not fit this run's sliders, targets or optimizer).",
                          "resume with the settings of the run that wrote it, or start in a new run directory.")
    params = trainer.adapters.state_dict()
    for name, p in params.items():
        saved = state.get(f"param.{name}")
        if saved is None or saved.shape != p.shape or saved.dtype != p.dtype:
            raise mismatch
    if state["updates"].numel() != len(trainer.result.updates):
        raise mismatch
    done = int(state["done"])
    if not 0 <= done <= trainer.cfg.iterations or state["item_losses"].shape[1:] != (trainer.k,):
        raise mismatch
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[f"param.{name}"])
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.startswith("opt."):
            _, idx, field = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[field] = value.clone()
    groups = trainer.opt.state_dict()["param_groups"]
    trainer.opt.load_state_dict({"state": opt_state, "param_groups": groups})
    trainer.gen.set_state(state["generator"].clone())
    trainer.done = done
    trainer.result.updates = [int(v) for v in state["updates"].tolist()]
    trainer.result.losses = [float(v) for v in state["losses"].tolist()]
    trainer.item_losses = [[float(v) for v in row] for row in state["item_losses"].tolist()]
