"""F0c–F4c: the SliderSpace rows F0–F4 (benchmarks/f_toyworld.py) measured through the pack's nodes ("c" =
through ComfyUI), on the MODEL / CLIP / VAE / encoder of Load ToyWorld (booted in-process:
benchmarks/toyworld_comfy.py).

Discovery is the node chain a workflow wires: SliderSpace Trajectory Sampler → CLIP Embed (ToyWorld's encoder)
→ PCA Decompose → Train Sliders, called in-process with the core rows' settings (``f_toyworld.discovery_config``:
160 trajectories of 16 Euler/Karras steps at guidance 2, x̂0 of every step, 8 components, 8 sliders, 400
iterations, lr 1e-2, 3 sliders per step, bidirectional, cross-attention k/v, seed 0; F3's second PCA from
trajectory seeds 100000..; F4 at guidance 8 per shape prompt). Scoring is the core rows' own code
(``toyworld.pipeline.factor_effects``, ``scores_from_effects``, ``matched_cosines``; ``f_toyworld.f4_result``)
on the same held-out seeds, with the images sampled by ComfyUI's sampler (``toyworld_comfy.sample``: seed s
gives the core host's image) from the MODEL patched by Apply Slider Bank (one slider at +1, start_percent 0:
on from the first step, as ``score_sliders`` applies them) or, for F4, by Random Sparse Sliders (k = 3, fixed
scale 1, start_percent 0, batch item j seeded EVAL_SEED0 + j: the subsets the core F4 draws).

Where the node chain itself differs from the core pipeline (what these rows exist to expose):
- PCA Decompose fits every trajectory's x̂0; the core fit leaves out the last ~20 % (they only score alignment);
- the Trajectory Sampler's seed-s noise starts at noise·√(1+σ_max²) (ComfyUI), the core's at noise·σ_max
  (a factor 1 + 1/(2σ_max²)).
Training itself no longer differs: Train Sliders re-noises to the trajectories' own schedule (ComfyUI's
``karras``, 16 steps) as the core host does to its 16 Karras sigmas, and both train at the discovery's guidance
(Train Sliders' ``cfg`` with the empty negative).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch

from benchmarks import toyworld_comfy as tw
from benchmarks.common import Result, check, timed_rows
from benchmarks.f_toyworld import (
    COLLAPSED_CFG,
    F4_K,
    TOP,
    discovery_config,
    f0_result,
    f3_result,
    f4_result,
    n_eval_seeds,
    pc_factor_text,
    per_slider_text,
)

EMBED_BATCH, SAMPLE_BATCH = 256, 64
"""CLIP Embed's and the Trajectory Sampler's batch sizes (the core host's)."""
LABEL = "ToyWorld nodes"


@dataclass
class NodeDiscovery:
    """What the node chain produced for one setting."""

    config: object
    """The ``DiscoveryConfig`` whose settings were wired into the nodes."""
    positive: list
    """CLIP Text Encode of the prompt (Train Sliders' and the scoring sampler's positive)."""
    trajectories: object
    basis: object
    bank: object | None = None

    @property
    def alignment(self) -> list[float]:
        return [float(s.alignment) for s in self.bank.sliders]


@cache
def _discovery(prompt: str = "a circle", cfg: float = tw.CFG, seed: int = 0, train: bool = True,
               quick: bool = False) -> NodeDiscovery:
    c = discovery_config(prompt=prompt, cfg=cfg, seed=seed, quick=quick)
    model, clip, vae, enc = tw.world()
    nodes = tw.nodes()
    positive = tw.encode(prompt)
    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        traj, _ = tw.out(nodes["SliderSpaceTrajectorySampler"].execute(
            model=model, clip=clip, prompts=prompt, negative="", trajectories=c.n_trajectories, seed=c.first_seed,
            steps=c.steps, cfg=c.cfg, sampler_name=tw.SAMPLER, scheduler=tw.SCHEDULER, width=tw.SIZE,
            height=tw.SIZE, batch_size=SAMPLE_BATCH, keep_steps=c.keep_mode, keep_every=c.keep_every,
            store_dtype="float16"))
        emb = tw.out(nodes["SliderSpaceClipEmbed"].execute(batch_size=EMBED_BATCH, trajectories=traj, vae=vae,
                                                           encoder=enc))[0]
        basis, _ = tw.out(nodes["SliderSpacePCADecompose"].execute(embeddings=emb, n_components=c.n_sliders,
                                                                   method="auto", seed=c.seed))
        out = NodeDiscovery(c, positive, traj, basis)
        if train:
            out.bank, _ = tw.out(nodes["SliderSpaceTrainSliders"].execute(
                model=model, vae=vae, positive=positive, basis=basis, trajectories=traj, n_sliders=c.n_sliders,
                iterations=c.iterations, learning_rate=c.lr, rank=1, targets=c.targets, target_pattern="",
                sliders_per_step=c.sliders_per_step, seed=c.seed, bidirectional=c.bidirectional,
                gradient_checkpointing=False, cfg=c.cfg, encoder=enc, negative=tw.encode("")))
    return out


def _apply(bank, scales: dict[int, float]):
    """Apply Slider Bank on the loaded MODEL: ``scales`` on from the first step (start_percent 0)."""
    text = ", ".join(f"{i}:{s:g}" for i, s in scales.items())
    with torch.inference_mode():
        return tw.out(tw.nodes()["SliderSpaceApplySliderBank"].execute(
            model=tw.world()[0], bank=bank, scales=text, multiplier=1.0, start_percent=0.0, end_percent=1.0))[0]


@cache
def _scores(quick: bool):
    from toyworld.pipeline import EVAL_SCALE, eval_seeds, factor_effects, scores_from_effects
    from toyworld.world import prompt_shape

    d = _discovery(quick=quick)
    seeds, neg = eval_seeds(n_eval_seeds(quick)), tw.encode("")

    def sample(scales: dict[int, float] | None) -> torch.Tensor:
        model = tw.world()[0] if scales is None else _apply(d.bank, scales)
        return tw.sample(model, d.positive, neg, seeds, d.config.cfg, d.config.steps)

    idx = list(range(min(TOP, len(d.bank))))
    return scores_from_effects(idx, factor_effects(sample, prompt_shape(d.config.prompt), idx, EVAL_SCALE),
                               EVAL_SCALE)


def _pc_factors(d: NodeDiscovery) -> str:
    """Each PCA component's best-correlated factor on the final x̂0 of the node's trajectories (VAE-decoded)."""
    from toyworld.pipeline import basis_factor_correlations
    from toyworld.world import prompt_shape

    _, _, vae, enc = tw.world()
    with torch.inference_mode():
        images = vae.decode(d.trajectories.x0[:, -1].float()).movedim(-1, 1).float().clamp(0, 1)
        r = basis_factor_correlations(images, enc, d.basis, prompt_shape(d.config.prompt), TOP)
    return pc_factor_text(r)


def f0c(quick: bool) -> Result:
    """F0 through the nodes: Train Sliders' stored held-out alignment over the oracle ceiling of the node PCA's
    components, on the node trajectories' final x̂0 (decoded by the VAE, embedded by the loaded encoder)."""
    from types import SimpleNamespace

    from toyworld.ceiling import alignment_ceiling

    d = _discovery(quick=quick)
    _, _, vae, enc = tw.world()

    def decode(latent: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return vae.decode(latent).movedim(-1, 1).float().clamp(0, 1)

    view = SimpleNamespace(host=SimpleNamespace(encoder=enc, decode=decode), basis=d.basis,
                           trajectories=d.trajectories)
    align = torch.tensor(d.alignment)
    return f0_result("F0c", LABEL, align, alignment_ceiling(view, len(align)), "through the nodes; ")


def f1c(quick: bool) -> Result:
    s = _scores(quick)
    d = _discovery(quick=quick)
    note = ("through the nodes; dominant factor of sliders 0-5: "
            + ", ".join(f"{i}:{dom}" for i, dom in zip(s.indices, s.dominant, strict=True))
            + f"; factors read from pixels at scale +{s.scale:g} over {s.effects.shape[1]} seeds. PCA components' "
            f"best-correlated factor on final images (r): {_pc_factors(d)}; Train Sliders' held-out alignment of "
            f"sliders 0-5 {[round(v, 2) for v in d.alignment[:TOP]]}. Core path: F1")
    return Result("F1c", f"{LABEL}: factors covered by the top-6 sliders (of 5)", s.coverage, ">= 4",
                  check(s.coverage, ">= 4"), note)


def f2c(quick: bool) -> Result:
    s = _scores(quick)
    d = _discovery(quick=quick)
    med = float(s.purity.median())
    note = (f"through the nodes; per slider: {per_slider_text(s)}; Train Sliders' held-out median cos(Δφ_i, v_i) "
            f"per slider {[round(v, 2) for v in d.alignment]}. Core path: F2")
    return Result("F2c", f"{LABEL}: median purity of the top-6 sliders (>= 64 seeds)", med, ">= 0.7",
                  check(med, ">= 0.7"), note)


def f3c(quick: bool) -> Result:
    row = f3_result("F3c", LABEL, _discovery(quick=quick).basis, _discovery(seed=1, train=False, quick=quick).basis,
                    "through the nodes (PCA Decompose of CLIP Embed of every trajectory); ")
    row.note += ". Core path: F3"
    return row


def f4c(quick: bool) -> Result:
    from sliderspace_core.sliderspace.random_sliders import SparseSpec
    from toyworld.pipeline import eval_seeds
    from toyworld.world import SHAPES

    n = n_eval_seeds(quick)
    seeds, neg = eval_seeds(n), tw.encode("")
    spec = SparseSpec(k=F4_K)
    model, enc = tw.world()[0], tw.world()[3]
    sets = []
    for shape in SHAPES:
        d = _discovery(prompt=f"a {shape}", cfg=COLLAPSED_CFG, quick=quick)
        with torch.inference_mode():
            sparse, _ = tw.out(tw.nodes()["SliderSpaceRandomSparseSliders"].execute(
                model=model, bank=d.bank, seed=seeds[0], k=spec.k, distribution=spec.distribution, scale=spec.scale,
                min_scale=spec.min_scale, random_sign=spec.random_sign, start_percent=0.0, end_percent=1.0,
                batch_size=n))
        sets.append((tw.sample(model, d.positive, neg, seeds, COLLAPSED_CFG, d.config.steps),
                     tw.sample(sparse, d.positive, neg, seeds, COLLAPSED_CFG, d.config.steps, batch=n),
                     tw.sample(model, d.positive, neg, seeds, tw.CFG, d.config.steps)))
    row, _ = f4_result("F4c", sets, enc, n, LABEL, "through the nodes (Random Sparse Sliders, item j seeded "
                       f"{seeds[0]} + j); core path: F4. ")
    return row


def run(quick: bool, only: set[str] | None = None) -> list[Result]:
    return timed_rows((f0c, f1c, f2c, f3c, f4c), quick, only)
