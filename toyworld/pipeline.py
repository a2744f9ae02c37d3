"""SliderSpace discovery on ToyWorld, through the same core code the nodes use, and its scoring.

:func:`discover` = trajectories → embed → PCA → train one slider per component and score its held-out
alignment (the core ``train_bank``, the same entry the Train Sliders node calls) → a core ``SliderBank``.
:func:`slider_effects` and :func:`purity` score what each slider does to the world's factors, read
analytically from pixels (``world.measure_factors``); :func:`factor_effects` and :func:`scores_from_effects`
score images from any sampler (benchmarks/f_toyworld_nodes.py: ComfyUI's, on the loaded MODEL).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from sliderspace_core.common.encoders import Embeddings, embed_in_batches
from sliderspace_core.decompose.pca import Basis, fit_pca
from sliderspace_core.sliderspace.bank import BankMeta, Slider, SliderBank
from sliderspace_core.sliderspace.training import TrainConfig, TrainResult, split_held_out, train_bank
from sliderspace_core.sliderspace.trajectories import Trajectories

from .host import ToyWorldHost, karras_sigmas
from .world import FACTORS, measure_factors, prompt_shape


class PixelEncoder:
    """The ablation's "encoder": raw pixels (32×32×3 → 3072-d), so PCA and the slider loss see pixels."""

    encoder_id = "toyworld:pixels"
    image_size = 32
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.flatten(1)


@dataclass
class DiscoveryConfig:
    """One discovery run. Defaults: the paper's choices scaled to a 2-core CPU."""

    prompt: str = "a circle"
    cfg: float = 2.0
    """Classifier-free guidance scale of sampling AND training (the host's)."""
    n_trajectories: int = 160
    """Trajectories sampled; the last ~20 % are held out for the alignment score only (core
    ``split_held_out``, the nodes' rule)."""
    steps: int = 16
    keep_mode: str = "every step"
    """The paper's variant: x̂0 of every step is embedded."""
    keep_every: int = 1
    n_sliders: int = 8
    iterations: int = 400
    lr: float = 1e-2
    """5× the reference's 2e-3: ToyWorld has 8 target modules (SDXL 140) and 400 iterations (ref. 3000)."""
    sliders_per_step: int = 3
    bidirectional: bool = True
    seed: int = 0
    """Trajectory seeds are ``seed * 100_000 + i``; slider init and training draw from ``seed``."""
    targets: str = "cross-attention k/v"
    """Slider targets: ``cross-attention k/v`` (SDXL reference) or ``attention q/k/v/out`` (FLUX reference)."""
    space: str = "embedding"
    """``embedding`` (the method) or ``pixels`` (ablation: PCA and loss on raw pixels)."""

    @property
    def first_seed(self) -> int:
        """Seed of trajectory 0 (trajectory ``i`` uses ``first_seed + i``)."""
        return self.seed * 100_000


@dataclass
class Discovery:
    config: DiscoveryConfig
    host: ToyWorldHost
    """The host used (its encoder is the pixel encoder in the ``pixels`` ablation)."""
    trajectories: Trajectories
    embeddings: Embeddings
    basis: Basis
    bank: SliderBank | None = None
    train_result: TrainResult | None = None
    alignment: torch.Tensor | None = None
    """``[n_sliders]`` median held-out cos(Δφ_i, v_i) at scale +1."""
    alignment_negative: torch.Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)


def embed_trajectories(host: ToyWorldHost, traj: Trajectories, batch_size: int = 256) -> Embeddings:
    """Every kept x̂0 decoded and embedded with the host's encoder (core ``embed_in_batches``)."""
    items, prov = traj.flat()
    vectors = embed_in_batches(items, lambda z: host.decode(z).movedim(1, -1), host.encoder, batch_size)
    return Embeddings(vectors, prov["trajectory"], prov["step"], prov["sigma"], prov["prompt_index"],
                      host.encoder.encoder_id, True, tuple(traj.prompts))


def discover(host: ToyWorldHost, cfg: DiscoveryConfig | None = None, train: bool = True,
             log: Callable[[str], None] | None = None) -> Discovery:
    """Run the SliderSpace pipeline for ``cfg.prompt`` on ``host``; ``train=False`` stops after the PCA."""
    cfg = cfg or DiscoveryConfig()
    say = log or (lambda s: None)
    host = host.with_prompt(cfg.prompt, cfg.cfg)
    if cfg.space == "pixels":
        host.encoder = PixelEncoder()
    elif cfg.space != "embedding":
        raise ValueError(f"space must be 'embedding' or 'pixels', got {cfg.space!r}")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    traj = host.trajectories(cfg.n_trajectories, cfg.first_seed, cfg.steps, cfg.keep_mode, cfg.keep_every)
    times["trajectories"] = time.perf_counter() - t0
    train_rows, _ = split_held_out(traj.n_trajectories)
    fit_traj = Trajectories(traj.x0[train_rows], traj.steps, traj.sigmas, traj.total_steps, traj.prompts,
                            traj.prompt_index[train_rows], traj.seeds[train_rows], traj.latent, traj.config)
    t0 = time.perf_counter()
    with torch.no_grad():
        emb = embed_trajectories(host, fit_traj)
    times["embed"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    method = "randomized" if cfg.space == "pixels" else "auto"
    basis = fit_pca(emb.vectors, cfg.n_sliders, method=method, seed=cfg.seed, encoder_id=emb.encoder_id)
    times["pca"] = time.perf_counter() - t0
    say(f"{traj}; {emb}; top explained-variance ratios "
        f"{[round(v, 3) for v in basis.explained_variance_ratio[:6].tolist()]}")
    out = Discovery(cfg, host, traj, emb, basis, timings=times)
    if not train:
        return out
    t0 = time.perf_counter()
    tcfg = TrainConfig(iterations=cfg.iterations, lr=cfg.lr, sliders_per_step=cfg.sliders_per_step,
                       seed=cfg.seed, bidirectional=cfg.bidirectional)
    every = max(1, cfg.iterations // 4)

    def log_step(i: int, losses: list[float]) -> None:
        if i % every == 0:
            say(f"  train {i}/{cfg.iterations} loss {sum(losses[-every:]) / every:.3f}")

    meta = BankMeta(family="ToyWorld", encoder_id=host.encoder.encoder_id, prompts=[cfg.prompt])
    latents = traj.x0[:, -1].float()                       # final x̂0 of every trajectory, as the node does
    bank, res = train_bank(host, host.targets(cfg.targets), basis, cfg.n_sliders, latents,
                           karras_sigmas(cfg.steps)[:-1], tcfg, meta, log_step, {"discovery": asdict(cfg)})
    times["train"] = time.perf_counter() - t0
    align = torch.tensor([s.alignment for s in bank.sliders])
    neg = bank.meta.config.get("alignment_negative")
    out.bank, out.train_result = bank, res
    out.alignment, out.alignment_negative = align, None if neg is None else torch.tensor(neg)
    say(f"trained {cfg.n_sliders} sliders in {times['train']:.0f}s; held-out median cos per slider "
        f"{[round(v, 2) for v in align.tolist()]}")
    return out


@torch.no_grad()
def slider_effects(host: ToyWorldHost, sliders: Sequence[Slider], indices: Sequence[int], scale: float,
                   seeds: Sequence[int], steps: int = 16, start_step: int = 0) -> torch.Tensor:
    """``[len(indices), len(seeds), 5]``: factor(slider i at ``scale``) − factor(no slider), same noise."""
    return factor_effects(lambda scales: host.sample(seeds, steps, sliders, scales, start_step),
                          prompt_shape(host.prompt), indices, scale)


def factor_effects(sample: Callable[[dict[int, float] | None], torch.Tensor], shape: str, indices: Sequence[int],
                   scale: float) -> torch.Tensor:
    """``[len(indices), n_seeds, 5]``: factors read from ``sample({i: scale})`` − from ``sample(None)``.

    ``sample(scales)`` returns the final images ``[n_seeds, 3, H, W]`` in [0, 1] of the same seeds with those
    sliders on (``None``: none); any sampler can stand behind it (ToyWorld's own, or ComfyUI's on a MODEL
    patched by Apply Slider Bank).
    """
    base = measure_factors(sample(None), shape)
    out = torch.empty(len(indices), base.shape[0], len(FACTORS))
    for j, i in enumerate(indices):
        out[j] = measure_factors(sample({int(i): float(scale)}), shape) - base
    return out


def purity(effects: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per slider: dominant factor index and |mean change of it| / Σ_f |mean change of f|.

    ``effects``: ``[n_sliders, n_seeds, 5]`` from :func:`slider_effects`; changes are averaged over seeds
    first (the issue's definition), so a slider that moves a factor both ways across seeds scores low.
    """
    mean = effects.mean(1).abs()
    dom = mean.argmax(1)
    return dom, mean.gather(1, dom[:, None])[:, 0] / mean.sum(1).clamp_min(1e-12)


def matched_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|cos| of the best one-to-one matching of rows of ``a`` to rows of ``b`` (brute force, k ≤ 6)."""
    import itertools

    c = (torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T).abs()
    k = c.shape[0]
    best = max(itertools.permutations(range(k)), key=lambda p: sum(float(c[i, p[i]]) for i in range(k)))
    return torch.stack([c[i, best[i]] for i in range(k)])


EVAL_SEED0 = 10_000_000
"""Evaluation seeds start here: disjoint from every discovery's trajectory seeds."""
EVAL_SCALE = 1.0
"""Slider scale at which effects are scored: the scale the sliders were trained at (+1)."""


@dataclass
class SliderScores:
    """What each of the top sliders does to the world's factors (over ``n_seeds`` held-out seeds)."""

    indices: list[int]
    effects: torch.Tensor
    """``[n, n_seeds, 5]`` factor changes at ``scale``."""
    dominant: list[str]
    purity: torch.Tensor
    """``[n]`` |mean change of the dominant factor| / Σ |mean change|."""
    scale: float

    @property
    def mean_change(self) -> torch.Tensor:
        return self.effects.mean(1)

    @property
    def coverage(self) -> int:
        return len(set(self.dominant))


def eval_seeds(n: int) -> list[int]:
    """The ``n`` held-out seeds every slider is scored on."""
    return [EVAL_SEED0 + i for i in range(n)]


def scores_from_effects(indices: Sequence[int], effects: torch.Tensor, scale: float) -> SliderScores:
    """Dominant factor and purity of each slider from its ``[n, n_seeds, 5]`` factor changes."""
    dom, pur = purity(effects)
    return SliderScores(list(indices), effects, [FACTORS[int(d)] for d in dom], pur, scale)


def score_sliders(disc: Discovery, top: int = 6, n_seeds: int = 64, scale: float = EVAL_SCALE,
                  start_step: int = 0) -> SliderScores:
    """Factor changes, dominant factor and purity of the first ``top`` sliders of a trained discovery."""
    assert disc.bank is not None, "train the discovery first"
    idx = list(range(min(top, len(disc.bank))))
    eff = slider_effects(disc.host, disc.bank.sliders, idx, scale, eval_seeds(n_seeds), disc.config.steps,
                         start_step)
    return scores_from_effects(idx, eff, scale)


@torch.no_grad()
def component_factors(disc: Discovery, top: int = 6) -> torch.Tensor:
    """``[top, 5]`` Pearson r between each PCA component's projection and each measured factor.

    Computed on the final x̂0 of the discovery's own trajectories: which world factor (if any) the
    basis direction itself follows, before any slider is trained.
    """
    final = disc.host.decode(disc.trajectories.x0[:, -1].float())
    return basis_factor_correlations(final, disc.host.encoder, disc.basis, prompt_shape(disc.host.prompt), top)


@torch.no_grad()
def basis_factor_correlations(images: torch.Tensor, encoder, basis: Basis, shape: str, top: int = 6) -> torch.Tensor:
    """``[top, 5]`` Pearson r between the projections of ``images`` (``[N, 3, H, W]`` in [0, 1], embedded with
    ``encoder``, L2-normalised) on the first ``top`` basis directions and the factors read from them."""
    from sliderspace_core.common.encoders import embed_images

    factors = measure_factors(images, shape)
    proj = (embed_images(encoder, images, channels_last=False) - basis.mean) @ basis.components[:top].T
    return torch.corrcoef(torch.cat([proj, factors], 1).T)[:top, top:]
