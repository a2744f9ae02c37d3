"""Trajectories: the predicted clean latents x̂0 kept along each sampling run (SliderSpace §1).

The paper keeps x̂0 at every denoising step of every trajectory; the released code kept only final
images. Both are a choice of :func:`select_steps`. Latents are stored on the CPU in a compact dtype,
already in the latent space the VAE decodes (after the model's ``process_latent_out``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from ..common.errors import InputError

KeepMode = Literal["every step", "every k-th step", "final only"]
KEEP_MODES: tuple[str, ...] = ("every step", "every k-th step", "final only")


def select_steps(total_steps: int, mode: str, k: int = 1) -> list[int]:
    """Indices of the sampler steps whose x̂0 is kept.

    ``every k-th step`` counts back from the final step, so the final x̂0 is always kept and the
    kept steps are spaced exactly ``k`` apart.
    """
    if total_steps < 1:
        raise InputError("steps", f"needs at least 1 step, got {total_steps}.", "set steps to 1 or more.")
    if mode == "every step":
        return list(range(total_steps))
    if mode == "final only":
        return [total_steps - 1]
    if mode == "every k-th step":
        if k < 1:
            raise InputError("keep_every", f"k must be at least 1, got {k}.", "set keep_every to 1 or more.")
        return sorted(range(total_steps - 1, -1, -k))
    raise InputError("keep_steps", f"unknown mode {mode!r}.", f"choose one of {', '.join(KEEP_MODES)}.")


def split_prompts(text: str) -> list[str]:
    """One prompt per non-empty line; surrounding whitespace is dropped."""
    lines = [line.strip() for line in text.splitlines()]
    prompts = [line for line in lines if line]
    if not prompts:
        raise InputError("prompts", "has no prompt lines.", "write at least one prompt, one per line.")
    return prompts


def used_prompts(prompts: list[str], n_trajectories: int) -> list[str]:
    """The prompt lines that ``n_trajectories`` round-robin trajectories use: the first ``n_trajectories``.

    Trajectory ``i`` uses line ``i % len(prompts)``; dropping the lines no trajectory reaches changes no
    trajectory's prompt, and keeps indices into the returned list equal to the line numbers.
    """
    return prompts[:max(n_trajectories, 0)]


def plan_batches(n_trajectories: int, n_prompts: int, batch_size: int) -> list[list[int]]:
    """Group trajectory indices into sampler batches that share one prompt.

    Trajectory ``i`` uses prompt ``i % n_prompts`` (round-robin over the lines); a batch never mixes
    prompts, so each batch needs a single conditioning.
    """
    if n_trajectories < 1:
        raise InputError("trajectories", f"must be at least 1, got {n_trajectories}.",
                         "set the number of trajectories to 1 or more.")
    if batch_size < 1:
        raise InputError("batch_size", f"must be at least 1, got {batch_size}.", "set batch_size to 1 or more.")
    batches: list[list[int]] = []
    for p in range(n_prompts):
        idx = list(range(p, n_trajectories, n_prompts))
        batches += [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    return batches


@dataclass
class LatentFacts:
    """What a decoder must know about the stored latents."""

    family: str
    """Model family that produced them (ComfyUI model-config class name, e.g. ``SD15``)."""
    latent_format: str
    """Latent-format class name (e.g. ``SD15``, ``SDXL``, ``Flux``)."""
    channels: int
    """Latent channels; a VAE with another count cannot decode them."""


@dataclass
class Trajectories:
    """Kept x̂0 latents of ``T`` trajectories at ``S`` steps each, with their provenance."""

    x0: torch.Tensor
    """``[T, S, C, *spatial]`` on the CPU, compact dtype, in the VAE's latent space."""
    steps: torch.Tensor
    """``[S]`` sampler step index of each kept column."""
    sigmas: torch.Tensor
    """``[S]`` sigma the model was evaluated at for each kept step."""
    total_steps: int
    """Sampler steps of each trajectory (kept or not)."""
    prompts: list[str]
    """The prompts that were sampled, each once (``prompt_index`` indexes them)."""
    prompt_index: torch.Tensor
    """``[T]`` index into ``prompts``."""
    seeds: list[int]
    """Per-trajectory noise seed of each trajectory (a batch-1 KSampler with this seed gives the same noise)."""
    latent: LatentFacts
    """Family, latent format and channels: what decoding the latents needs."""
    config: dict = field(default_factory=dict)
    """Sampler settings (sampler, scheduler, cfg, size, negative prompt, ...)."""

    @property
    def n_trajectories(self) -> int:
        return int(self.x0.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.x0.shape[1])

    def __len__(self) -> int:
        return self.n_trajectories * self.n_steps

    def flat(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """All kept latents as ``[T*S, C, ...]`` (trajectory-major) and their provenance."""
        t, s = self.n_trajectories, self.n_steps
        items = self.x0.reshape(t * s, *self.x0.shape[2:])
        prov = {
            "trajectory": torch.arange(t).repeat_interleave(s),
            "step": self.steps.repeat(t),
            "sigma": self.sigmas.float().repeat(t),
            "prompt_index": self.prompt_index.repeat_interleave(s),
        }
        return items, prov

    def __repr__(self) -> str:  # shown in ComfyUI's debug output; never dump the tensor
        return (f"Trajectories({self.n_trajectories} trajectories x {self.n_steps} kept steps of "
                f"{self.total_steps}, latent {tuple(self.x0.shape[2:])} {self.latent.family}, "
                f"{len(self.prompts)} prompt(s))")


class TrajectoryBuffer:
    """Preallocated store that the sampler callback writes into, one kept step at a time."""

    def __init__(self, n_trajectories: int, keep: list[int], latent_shape: tuple[int, ...],
                 dtype: torch.dtype = torch.float16) -> None:
        self.keep = list(keep)
        self.column = {step: j for j, step in enumerate(self.keep)}
        self.x0 = torch.empty((n_trajectories, len(self.keep), *latent_shape), dtype=dtype)
        self.filled = torch.zeros((n_trajectories, len(self.keep)), dtype=torch.bool)

    def wants(self, step: int) -> bool:
        return step in self.column

    def put(self, trajectory_ids: list[int], step: int, x0: torch.Tensor) -> None:
        """Store the x̂0 batch of ``step`` for the given trajectories (rows of ``x0`` in order)."""
        j = self.column[step]
        ids = torch.as_tensor(trajectory_ids, dtype=torch.long)
        self.x0[ids, j] = x0.detach().to("cpu", self.x0.dtype)
        self.filled[ids, j] = True

    def complete(self) -> bool:
        return bool(self.filled.all())
