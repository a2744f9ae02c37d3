"""ToyWorld as a SliderSpace host: the core ``TrainHost`` protocol plus a trajectory sampler.

Only this adapter differs from the ComfyUI host; trajectories, embedding, PCA, slider training and
random sparse sliders all run through ``sliderspace_core``. The "latent space" is pixel space in
[-1, 1] (decode = affine map + clamp), ``noised`` is the variance-exploding ``x0 + σ·ε`` of k-diffusion,
the sampler is deterministic Euler on a Karras schedule and keeps x̂0 of every step it is asked to.
Sliders are applied at sampling time by merging their weight deltas (as Apply Slider Bank does) from a
chosen step on; during training the core's per-item adapters hook the same ``to_k``/``to_v`` modules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from sliderspace_core.common.lowrank import WeightMerge
from sliderspace_core.sliderspace.bank import Slider, SliderBank
from sliderspace_core.sliderspace.export import merge_sliders
from sliderspace_core.sliderspace.trajectories import LatentFacts, Trajectories, TrajectoryBuffer, select_steps

from .models import RHO, SIGMA_MAX, SIGMA_MIN, Denoiser, Encoder, tokenize
from .train import DENOISER_FILE, ENCODER_FILE, WEIGHTS, load_denoiser, load_encoder

IMAGE_SHAPE = (3, 32, 32)
FACTS = LatentFacts(family="ToyWorld", latent_format="pixels[-1,1]", channels=3)


def karras_sigmas(steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                  rho: float = RHO) -> torch.Tensor:
    """``[steps + 1]`` decreasing sigmas ending in 0 (Karras et al. 2022)."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    s = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([s, s.new_zeros(1)]).float()


def seed_noise(seeds: Sequence[int]) -> torch.Tensor:
    """Unit Gaussian noise ``[len(seeds), 3, 32, 32]``, item ``i`` from ``seeds[i]`` alone."""
    return torch.stack([torch.randn(IMAGE_SHAPE, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


class ToyWorldHost:
    """``TrainHost`` over the ToyWorld denoiser for one prompt at one guidance scale."""

    def __init__(self, denoiser: Denoiser, encoder: Encoder, prompt: str = "a circle", cfg: float = 2.0) -> None:
        self.denoiser, self.encoder = denoiser.eval(), encoder.eval()
        for p in [*self.denoiser.parameters(), *self.encoder.parameters()]:
            p.requires_grad_(False)
        self.prompt, self.cfg = prompt, float(cfg)
        self.tokens = tokenize(prompt)
        self.null = tokenize("")

    # ------------------------------------------------------------------ the core TrainHost protocol
    def predict_x0(self, x_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x̂0 for the host's prompt; with ``cfg != 1`` the cond and null batches run stacked [cond; null]."""
        b = x_t.shape[0]
        sigma = sigma.reshape(-1).expand(b) if sigma.numel() == 1 else sigma.reshape(b)
        ctx = self.denoiser.context(torch.stack([self.tokens, self.null]))       # [2, L, width]: cond, uncond
        if self.cfg == 1.0:
            return self.denoiser(x_t, sigma, ctx[:1].expand(b, -1, -1))
        ctx = torch.cat([ctx[:1].expand(b, -1, -1), ctx[1:].expand(b, -1, -1)])
        out = self.denoiser(torch.cat([x_t, x_t]), torch.cat([sigma, sigma]), ctx)
        cond, uncond = out[:b], out[b:]
        return uncond + self.cfg * (cond - uncond)

    def noised(self, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x0 + sigma.view(-1, 1, 1, 1) * noise

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Pixel latents in [-1, 1] → images ``[B, 3, H, W]`` in [0, 1]."""
        return ((latent.float() + 1) / 2).clamp(0, 1)

    # ------------------------------------------------------------------ what the pipeline adds
    def targets(self, kind: str = "cross-attention k/v") -> dict[str, nn.Linear]:
        """Slider target modules: every cross-attention ``attn2.to_k``/``attn2.to_v`` (SDXL reference), or
        with ``"attention q/k/v/out"`` every ``to_q/to_k/to_v/to_out.0`` of ``attn1`` and ``attn2`` (FLUX)."""
        if kind == "cross-attention k/v":
            return self.denoiser.cross_attention_kv()
        if kind == "attention q/k/v/out":
            return self.denoiser.attention_linears()
        raise ValueError(f"unknown target kind {kind!r}")

    def with_prompt(self, prompt: str | None = None, cfg: float | None = None) -> ToyWorldHost:
        """Same networks, another prompt and/or guidance scale."""
        return ToyWorldHost(self.denoiser, self.encoder, prompt or self.prompt, self.cfg if cfg is None else cfg)

    @contextlib.contextmanager
    def merged(self, sliders: Sequence[Slider], scales: Mapping[int, float]) -> Iterator[None]:
        """Within the block the denoiser's weights carry ``Σ scale_i·ΔW_i``; restored exactly after."""
        chosen = {i: s for i, s in scales.items() if s}
        edits = merge_sliders(SliderBank(list(sliders)), chosen) if chosen else {}
        mods = dict(self.denoiser.named_modules())
        merge = WeightMerge()
        try:
            merge.merge({n: mods[n].weight for n in edits}, edits)
            yield
        finally:
            merge.restore()

    @torch.no_grad()
    def sample(self, seeds: Sequence[int], steps: int = 16, sliders: Sequence[Slider] | None = None,
               scales: Mapping[int, float] | Sequence[Mapping[int, float]] | None = None,
               start_step: int = 0, keep: Sequence[int] | None = None,
               buffer: TrajectoryBuffer | None = None, ids: Sequence[int] | None = None) -> torch.Tensor:
        """Euler sampling of one batch; returns final images ``[B, 3, 32, 32]`` in [0, 1].

        ``scales``: one ``{slider: scale}`` for the whole batch, or one per item (then items run one by
        one, each with its own merged weights). Sliders act from ``start_step`` on. If ``buffer`` is
        given, the x̂0 of every step it wants is stored under trajectory ``ids``.
        """
        if scales is not None and not isinstance(scales, Mapping):
            return torch.cat([self.sample([s], steps, sliders, sc, start_step, keep, buffer,
                                          None if ids is None else [i]) for s, sc, i in
                              zip(seeds, scales, ids or range(len(seeds)), strict=True)])
        sig = karras_sigmas(steps)
        x = seed_noise(seeds) * sig[0]
        x0 = x
        for i in range(steps):
            on = sliders is not None and scales and i >= start_step
            ctx = self.merged(sliders, scales) if on else contextlib.nullcontext()
            with ctx:
                x0 = self.predict_x0(x, sig[i].expand(x.shape[0]))
            if buffer is not None and buffer.wants(i):
                buffer.put(list(ids), i, x0)
            x = x + (x - x0) / sig[i] * (sig[i + 1] - sig[i])
        return self.decode(x0)

    def trajectories(self, n: int, seed: int = 0, steps: int = 16, keep_mode: str = "every step",
                     keep_every: int = 1, batch_size: int = 64) -> Trajectories:
        """``n`` trajectories (trajectory ``i`` uses seed ``seed + i``) in the core container."""
        keep = select_steps(steps, keep_mode, keep_every)
        buf = TrajectoryBuffer(n, keep, IMAGE_SHAPE, dtype=torch.float16)
        for start in range(0, n, batch_size):
            ids = list(range(start, min(n, start + batch_size)))
            self.sample([seed + i for i in ids], steps, buffer=buf, ids=ids)
        assert buf.complete()
        sig = karras_sigmas(steps)
        return Trajectories(x0=buf.x0, steps=torch.tensor(keep), sigmas=sig[keep], total_steps=steps,
                            prompts=[self.prompt], prompt_index=torch.zeros(n, dtype=torch.long),
                            seeds=[seed + i for i in range(n)], latent=FACTS,
                            config={"sampler": "euler", "scheduler": "karras", "cfg": self.cfg, "size": 32})


def build_host(prompt: str = "a circle", cfg: float = 2.0, weights: Path | str = WEIGHTS) -> ToyWorldHost:
    """The host over the shipped (or given) ToyWorld weights."""
    w = Path(weights)
    return ToyWorldHost(load_denoiser(w / DENOISER_FILE), load_encoder(w / ENCODER_FILE), prompt, cfg)
