"""The SliderSpace training loop (§1 step 4), written against a small host protocol.

Step (as the reference): pick ``k`` sliders and ONE stored clean latent, re-noise it to a random schedule
sigma, predict x̂0 WITHOUT sliders once (no grad) and WITH each slider ``i`` (same x_t, noise, prompt),
decode, embed with the same preprocessing as the PCA, and minimise ``1 − cos(Δφ, v_i)``. Each slider's
gradient depends only on its own item, so sharing the sample costs nothing in gradient quality. The ``k``
slider items run as one batched forward/backward (per-item rank-r deltas) — or, with ``batched=False``,
one forward/backward per slider as the reference does. Per-slider mode is what lets several processes
split the sliders (``sharding.SliderShard``: each replays the global draws and computes only its own
sliders) and still write the single-process bank bit for bit; a ``TrainCheckpoint`` lets a killed run
go on from its last saved step with the same result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..common.encoders import ImageEncoder, preprocess
from ..common.errors import InputError
from ..decompose.directions import Directions
from .adapters import SliderAdapters
from .bank import BankMeta, SliderBank
from .objective import slider_loss
from .optim import SliderAdamW
from .sharding import SliderShard, TrainCheckpoint, load_trainer_state, step_loss, trainer_state


@dataclass
class TrainConfig:
    """Reference defaults: AdamW lr 2e-3, rank 1, alpha 1, 3 random sliders per iteration."""

    iterations: int = 300
    """Optimizer steps (the reference: 3000 for 16 sliders ≈ 560 updates each)."""
    lr: float = 2e-3
    """AdamW learning rate (the reference: 2e-3)."""
    rank: int = 1
    """Rank of each slider's LoRA factors per module (the paper: 1)."""
    alpha: float = 1.0
    """LoRA alpha; a slider acts at ``scale · alpha / rank``."""
    sliders_per_step: int = 3
    """Sliders trained per step, as one batched pass on one shared sample (the reference: 3)."""
    seed: int = 0
    """Seeds slider initialisation and every draw of the training loop (sliders, samples, sigmas, noise)."""
    bidirectional: bool = False
    """Also train scale −1 towards −v_i."""
    checkpointing: bool = False
    """Recompute decode+embed in backward instead of storing their activations."""
    weight_decay: float = 0.01
    """AdamW weight decay (of the sliders a step draws only: each slider has its own optimiser state)."""
    init: Literal["reference", "zero_up"] = "reference"
    """Slider initialisation. ``reference``: ``up`` a random orthonormal column, frozen, only ``down`` trains (the
    slider acts from step 1). ``zero_up``: the earlier init, kept for side-by-side runs: ``up`` starts at 0 and
    trains with ``down``; the cosine is then guarded (``cos_guard``)."""
    cos_guard: float = 1e-3
    """``zero_up`` only: ``cos = ⟨Δφ, v⟩ / √(‖Δφ‖² + cos_guard²)``, so the first steps' ‖Δφ‖ ≈ 0 cannot blow up the
    gradient (and with it Adam's second moment)."""
    batched: bool = True
    """True: a step's sliders run as one batched pass (fastest in one process). False: one pass per slider
    (the reference's loop); each slider's update then depends only on its own items, which is what lets
    processes split the sliders and still give the one-process bank bitwise (the headless runner)."""


class TrainHost(Protocol):
    """What the loop needs from a diffusion host (ComfyUI, or a tiny pure-torch denoiser in tests)."""

    encoder: ImageEncoder

    def predict_x0(self, x_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x̂0 for the training prompt, in the host's model latent space."""
        ...

    def noised(self, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Model-space latents → images ``[B, 3, H, W]`` in [0, 1] (differentiable)."""
        ...


@dataclass
class TrainResult:
    """What a training run produced besides the adapters."""

    losses: list[float] = field(default_factory=list)
    """Loss of every optimizer step (mean over that step's slider items)."""
    updates: list[int] = field(default_factory=list)
    """Gradient updates each slider received."""
    config: dict = field(default_factory=dict)
    """The :class:`TrainConfig` as a dict."""


def loss_by_tenth(losses: list[float]) -> list[float | None]:
    """Mean training loss over each tenth of the run (one part per step below 10 steps).

    Single-sample step losses swing widely; these means are the curve a bank keeps in its metadata.
    """
    if not losses:
        return []
    parts = torch.tensor_split(torch.tensor(losses, dtype=torch.float64), min(10, len(losses)))
    means = [float(part.mean()) for part in parts]
    return [m if math.isfinite(m) else None for m in means]  # a bank's JSON metadata holds no NaN


def embed(host: TrainHost, latent: torch.Tensor) -> torch.Tensor:
    """Decode + preprocess + embed + L2-normalise: the one path shared by training and evaluation."""
    enc = host.encoder
    images = host.decode(latent)
    pixels = preprocess(images, enc.image_size, enc.mean, enc.std, channels_last=False)
    return F.normalize(enc.embed_pixels(pixels).float(), dim=-1)


class SliderTrainer:
    """Holds the random stream, optimizer and adapters; ``step()`` is one optimizer update."""

    def __init__(self, host: TrainHost, adapters: SliderAdapters, directions: torch.Tensor,
                 latents: torch.Tensor, sigmas: torch.Tensor, cfg: TrainConfig,
                 shard: SliderShard | None = None) -> None:
        if latents.shape[0] < 1:
            raise InputError("trajectories", "hold no latents to train on.", "sample at least one trajectory.")
        if directions.shape[0] != adapters.n_sliders:
            raise InputError("n_sliders", f"{adapters.n_sliders} sliders but {directions.shape[0]} directions.",
                             "lower n_sliders or raise the basis' n_components.")
        self.host, self.adapters, self.cfg = host, adapters, cfg
        self.directions = F.normalize(directions.float(), dim=-1)
        self.latents, self.sigmas = latents, sigmas.float()
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.params = [p for p in adapters.parameters() if p.requires_grad]  # ``down``; ``up`` is frozen
        self.opt = SliderAdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.result = TrainResult(updates=[0] * adapters.n_sliders, config=asdict(cfg))
        self.shard = shard or SliderShard()
        self.shard.check(adapters.n_sliders)
        if self.shard.world_size > 1 and cfg.batched:
            raise InputError("batched", "is on, but sliders split over processes need one pass per slider.",
                             "train with TrainConfig(batched=False) (the headless runner does).")
        self.k = min(cfg.sliders_per_step, adapters.n_sliders)
        self.done = 0
        """Optimizer steps taken so far (a resumed run starts past 0)."""
        self.item_losses: list[list[float]] = []
        """Per-slider mode: every step's item losses in its slider order (NaN for another process's sliders)."""

    def draw(self) -> tuple[torch.Tensor, ...]:
        """Sliders ``[k]`` and one latent ``[1, ...]``, sigma ``[1]`` and noise of one step, from the seeded stream."""
        sel = torch.randperm(self.adapters.n_sliders, generator=self.gen)[:self.k]
        idx = torch.randint(self.latents.shape[0], (1,), generator=self.gen)
        sig = self.sigmas[torch.randint(self.sigmas.shape[0], (1,), generator=self.gen)]
        x0 = self.latents[idx]
        noise = torch.randn(x0.shape, generator=self.gen)
        return sel, x0, sig, noise

    def _forward(self, x_t, sig) -> torch.Tensor:
        """φ of x̂0 with the sliders made active by the caller (kept active through backward, so a host that
        recomputes its blocks in backward — gradient checkpointing — sees the same sliders again)."""
        x0_hat = self.host.predict_x0(x_t, sig)
        if self.cfg.checkpointing:
            return checkpoint(lambda z: embed(self.host, z), x0_hat, use_reentrant=False)
        return embed(self.host, x0_hat)

    def baseline(self, x0, sig, noise) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x_t``, its sigma and φ of the slider-free prediction (no grad), computed once per step."""
        dev = next(iter(self.params)).device
        x_t = self.host.noised(x0.to(dev), sig.to(dev), noise.to(dev))
        with torch.no_grad():
            phi0 = embed(self.host, self.host.predict_x0(x_t, sig.to(dev)))
        return x_t, sig.to(dev), phi0

    def _items(self, base: tuple[torch.Tensor, ...], sel: torch.Tensor) -> float:
        """Loss of sliders ``sel`` on the shared sample ``base``; gradients accumulated into ``.grad``."""
        x_t, sig, phi0 = base
        dev = x_t.device
        n = sel.shape[0]
        scale = torch.ones(n, device=dev)
        targets = self.directions[sel].to(dev)
        if self.cfg.bidirectional:
            sel, scale, targets = torch.cat([sel, sel]), torch.cat([scale, -scale]), torch.cat([targets, -targets])
        reps = sel.shape[0]
        with self.adapters.active(sel.to(dev), scale):
            phi1 = self._forward(x_t.repeat(reps, *[1] * (x_t.ndim - 1)), sig.repeat(reps))
            loss, _ = slider_loss(phi1, phi0.expand(reps, -1), targets,
                                  self.cfg.cos_guard if self.cfg.init == "zero_up" else 0.0)
            grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        for p, g in zip(self.params, grads, strict=True):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        return float(loss.detach())

    def step(self, batched: bool | None = None) -> float:
        """One optimizer update (``batched`` defaults to the config's); returns the step's loss (NaN on a
        process that trains only some of the step's sliders)."""
        batched = self.cfg.batched if batched is None else batched
        sel, x0, sig, noise = self.draw()
        self.opt.zero_grad(set_to_none=True)
        if batched:
            loss = self._items(self.baseline(x0, sig, noise), sel)
        else:  # the reference's way: one forward/backward per slider on the shared sample
            for p in self.params:  # every row gets a gradient (0 for sliders not in the step), on every process
                p.grad = torch.zeros_like(p)
            own = [j for j in range(sel.shape[0]) if self.shard.owns(int(sel[j]))]
            items = [math.nan] * sel.shape[0]
            base = self.baseline(x0, sig, noise) if own else None
            for j in own:
                items[j] = self._items(base, sel[j:j + 1])
            for p in self.params:
                p.grad /= sel.shape[0]
            self.item_losses.append(items)
            loss = step_loss(items)
        self.opt.step([s for s in sel.tolist() if self.shard.owns(s)])  # undrawn sliders do not move
        for s in sel.tolist():
            self.result.updates[s] += 1
        self.result.losses.append(loss)
        self.done += 1
        return loss

    def run(self, on_step: Callable[[int, float], None] | None = None, batched: bool | None = None,
            checkpoint: TrainCheckpoint | None = None) -> TrainResult:
        """Steps until ``cfg.iterations``; with ``checkpoint``, first resume from its saved state (if any) and
        save every ``checkpoint.every`` steps and after the last."""
        if checkpoint is not None and (state := checkpoint.load()) is not None:
            load_trainer_state(self, state)
        while self.done < self.cfg.iterations:
            loss = self.step(batched)
            if on_step is not None:
                on_step(self.done, loss)
            if checkpoint is not None and (self.done % checkpoint.every == 0 or self.done == self.cfg.iterations):
                checkpoint.save(trainer_state(self))
        return self.result

    def merge_shards(self) -> None:
        """After a split run: every process's adapters hold every slider (rows from their owners) and the
        step losses are complete. Collective: every process must call it."""
        if self.shard.world_size == 1:
            return
        with torch.no_grad():
            for p in self.params:
                p.copy_(self.shard.pick_rows(p.detach()))
        items = torch.tensor(self.item_losses, dtype=torch.float64).reshape(len(self.item_losses), self.k)
        self.item_losses = self.shard.merge_missing(items).tolist()
        self.result.losses = [step_loss(row) for row in self.item_losses]

    @torch.no_grad()
    def alignment(self, latents: torch.Tensor, scale: float = 1.0, per_slider: int = 8,
                  seed: int = 12345) -> torch.Tensor:
        """Median cos(Δφ_i, v_i) per slider on ``latents`` (held out), at ``scale``."""
        g = torch.Generator().manual_seed(seed)
        dev = next(iter(self.params)).device
        out = torch.full((self.adapters.n_sliders,), math.nan)
        for i in range(self.adapters.n_sliders):
            idx = torch.randint(latents.shape[0], (per_slider,), generator=g)
            sig = self.sigmas[torch.randint(self.sigmas.shape[0], (per_slider,), generator=g)].to(dev)
            x0 = latents[idx].to(dev)
            noise = torch.randn(x0.shape, generator=g).to(dev)
            if not self.shard.owns(i):  # the draws above are replayed so every slider sees the same ones
                continue
            x_t = self.host.noised(x0, sig, noise)
            phi0 = embed(self.host, self.host.predict_x0(x_t, sig))
            sel = torch.full((per_slider,), i, dtype=torch.long, device=dev)
            with self.adapters.active(sel, torch.full((per_slider,), float(scale), device=dev)):
                phi1 = embed(self.host, self.host.predict_x0(x_t, sig))
            cos = F.cosine_similarity(phi1 - phi0, self.directions[i].to(dev)[None], dim=-1)
            out[i] = cos.median()
        return self.shard.pick_rows(out)


# ------------------------------------------------------------------------------ the one training entry

def split_held_out(n: int) -> tuple[slice, slice]:
    """Trajectory rows to train on and to score alignment on: the last ~20 % are held out; with fewer than
    5 trajectories every row serves both (too few to spare any)."""
    if n < 5:
        return slice(0, n), slice(0, n)
    cut = n - max(1, n // 5)
    return slice(0, cut), slice(cut, n)


def train_bank(host: TrainHost, modules: Mapping[str, nn.Module], basis: Directions, n_sliders: int,
               latents: torch.Tensor, sigmas: torch.Tensor, cfg: TrainConfig, meta: BankMeta,
               on_step: Callable[[int, list[float]], None] | None = None,
               extra_config: Mapping | None = None, shard: SliderShard | None = None,
               checkpoint: TrainCheckpoint | None = None) -> tuple[SliderBank, TrainResult]:
    """Train one slider per leading ``basis`` direction on ``modules`` and return them as a bank.

    ``latents``: clean latents (model space), one per trajectory, in trajectory order; the held-out rows
    (:func:`split_held_out`) only score the alignment each slider stores. ``sigmas``: where training
    re-noises to. ``meta``: what the bank belongs to (family, encoder, prompts); its ``config`` is filled
    with the training configuration, the updates per slider, the loss by tenth and ``extra_config``.
    ``on_step(done, losses_so_far)`` runs after every step (progress, interrupt). The node, ToyWorld and
    any headless runner all train through here. ``shard``: this process's part when several processes train
    the bank together (per-slider mode; every process must call, and every one returns the whole bank);
    ``checkpoint``: resume from / save the training state there.
    """
    if not 1 <= n_sliders <= basis.n_components:
        raise InputError("n_sliders", f"is {n_sliders} but the basis has {basis.n_components} components.",
                         f"choose n_sliders between 1 and {basis.n_components} (or raise PCA n_components).")
    dev = latents.device
    shapes = {n: (int(m.weight.shape[0]), int(m.weight.shape[1])) for n, m in modules.items()}
    adapters = SliderAdapters(shapes, n_sliders, cfg.rank, cfg.alpha, seed=cfg.seed,
                              frozen_up=cfg.init == "reference").to(dev)
    directions = basis.components[:n_sliders].float().clone()
    train_rows, held_rows = split_held_out(latents.shape[0])
    trainer = SliderTrainer(host, adapters, directions, latents[train_rows], sigmas.to(dev), cfg, shard)
    with torch.enable_grad(), adapters.attached(dict(modules)):
        res = trainer.run(on_step=None if on_step is None else (lambda i, loss: on_step(i, trainer.result.losses)),
                          checkpoint=checkpoint)
        align = trainer.alignment(latents[held_rows])
        align_neg = trainer.alignment(latents[held_rows], scale=-1.0) if cfg.bidirectional else None
    trainer.merge_shards()
    sliders = adapters.export_sliders()
    for i, s in enumerate(sliders):
        s.label, s.direction = f"slider {i}", directions[i].cpu()
        s.variance, s.alignment = float(basis.explained_variance[i]), float(align[i])
    last = res.losses[-1] if res.losses else None
    config = dict(res.config, updates=res.updates, loss_by_tenth=loss_by_tenth(res.losses),
                  final_loss=last if last is not None and math.isfinite(last) else None, **(extra_config or {}))
    if align_neg is not None:
        config["alignment_negative"] = [float(v) for v in align_neg]
    return SliderBank(sliders, dataclasses.replace(meta, config=config)), res
