"""The ToyWorld backend: what the runner does without a checkpoint (pure torch, no ComfyUI)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

from sliderspace_core.common.encoders import embed_in_batches
from sliderspace_core.sliderspace.bank import BankMeta, SliderBank
from sliderspace_core.sliderspace.trajectories import TrajectoryBuffer, select_steps
from toyworld.host import IMAGE_SHAPE, build_host, karras_sigmas

from .config import RunConfig

T = TypeVar("T")
EMBED_BATCH = 256


class ToyBackend:
    """ToyWorld's shipped denoiser and encoder behind the runner's backend interface."""

    family = "ToyWorld"

    def __init__(self, cfg: RunConfig) -> None:
        if len(cfg.prompts) != 1:
            raise SystemExit("ToyWorld samples one prompt per run; pass a single --prompts.")
        self.cfg = cfg
        self.renoise_schedule = f"karras {cfg.steps}"  # ToyWorld samples Euler on Karras sigmas
        self.host = build_host(cfg.prompts[0], cfg.cfg)  # CPU: ToyWorld is small, its host is CPU-only
        self.device = torch.device("cpu")
        self.keep = select_steps(cfg.steps, cfg.keep_steps, cfg.keep_every)
        self.encoder_id = self.host.encoder.encoder_id

    def sample_chunk(self, ids: Sequence[int]) -> torch.Tensor:
        """Kept x̂0 ``[n, S, 3, 32, 32]`` (float16) of trajectories ``ids`` (seed ``seed + i``), one batch."""
        buf = TrajectoryBuffer(len(ids), self.keep, IMAGE_SHAPE, dtype=torch.float16)
        self.host.sample([self.cfg.seed + i for i in ids], self.cfg.steps, buffer=buf, ids=range(len(ids)))
        assert buf.complete()
        return buf.x0

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        """L2-normalised encoder embeddings of latents ``[m, 3, 32, 32]`` (core ``embed_in_batches``)."""
        return embed_in_batches(items, lambda z: self.host.decode(z.to(self.device)).movedim(1, -1),
                                self.host.encoder, EMBED_BATCH).cpu()

    def train(self, fn: Callable[[object, dict[str, nn.Module], torch.Tensor, torch.Tensor], T],
              finals: torch.Tensor) -> T:
        """``fn(host, modules, latents, sigmas)`` with the targets and the schedule training re-noises to: the
        trajectories' own (ToyWorld samples Euler on Karras sigmas, whatever the run's scheduler says)."""
        sigmas = karras_sigmas(self.cfg.steps)[:-1]
        return fn(self.host, self.host.targets(self.cfg.targets), finals.float().to(self.device), sigmas)

    def meta(self, modules: dict[str, nn.Module]) -> BankMeta:
        return BankMeta(family=self.family, encoder_id=self.encoder_id, prompts=list(self.cfg.prompts))

    def render(self, bank: SliderBank, slider: int, scales: Sequence[float]) -> list[torch.Tensor]:
        """One image ``[H, W, 3]`` per scale, all from the same noise (``apply_seed``)."""
        out = []
        for s in scales:
            img = self.host.sample([self.cfg.apply_seed], self.cfg.steps, bank.sliders, {slider: float(s)})
            out.append(img[0].movedim(0, -1).cpu())
        return out
