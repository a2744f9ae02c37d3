"""F8–F11: SAE concepts on ToyWorld, through the pack's nodes on the MODEL / CLIP / VAE of Load ToyWorld.

One setup, shared by the rows (cached in the process):
- SAE Collect Activations: "a circle", cond half, the whole schedule, every location of ``BLOCK``
  (``input_blocks.5.1``: the last down block, 8×8, 64 wide — the place of SDXL's "composition" block
  ``input_blocks.8.1``), ``samples`` batch-1 runs (seed SEED0 + i); the same runs' final images come from the
  stock KSampler node with the same seeds (same noise), factors read from pixels (``measure_factors``).
- SAE Train: 4 × 64 = 256 features, k 10 (METHODS §3: width 4d, k 10–20), AuxK 64, several epochs of the small set.
- Samples are split in two halves: features are CHOSEN on the first half and MEASURED on the second
  (with 256 features and a few dozen samples the best in-sample correlation is inflated).

Rows:
- F10: per sample, each feature's mean code over the run (all steps, all locations); the feature with the
  largest |r| with hue (and with size) on the first half; value = min of the two held-out |r|.
- F11: the "shape feature" = the feature whose FIRST-step map best overlaps the final shape mask on the
  first half (mean IoU); value = that map's mean IoU with the final shape mask on the second half (the note
  also gives the best LAST-step feature, which does not fire at the first step).
  A map (grid codes, the ``concept_maps`` the Concept Map node draws) is upsampled bilinearly to 32×32 and
  binarised at half its maximum; the mask is ``shape_mask(image) > 0.5``.
- F8 / F9: SAE Steer, spatial mode, the shape feature at one strength × its typical activation, cond half,
  mask = one image quadrant (suppress outside): in the early window (percent 0–0.4, t ∈ [0.6, 1]) and the
  late window (0.6–1). Success = the final shape's centre (pixels) lies in the masked quadrant; every seed is
  steered to each of the 4 quadrants, so unsteered sampling scores exactly 25 %. The strength is CHOSEN on
  calibration seeds (of :data:`STEER_STRENGTHS`, the one with the largest early − late success: the paper's
  claim is that early steering moves composition and late steering does not) and MEASURED on other seeds.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from functools import cache

import torch
import torch.nn.functional as F

from benchmarks import toyworld_comfy as tw
from benchmarks.common import Result, check, timed_rows

BLOCK = "input_blocks.5.1"
PROMPT = "a circle"
SEED0 = 30_000_000
STEER_STRENGTHS = (8.0, 16.0, 32.0, 64.0)
"""Spatial steer strengths (units of the feature's typical activation) the calibration chooses from; the note
gives the scored sweep over all of them. 128 paints the shape into the quadrant in any window (early and late
both 100 %, seen at σ_max 10), so the range stops below it."""
EARLY, LATE = (0.0, 0.4), (0.6, 1.0)


def _sizes(quick: bool) -> dict:
    return {"samples": 16, "epochs": 10, "steer_seeds": 8} if quick else \
        {"samples": 96, "epochs": 30, "steer_seeds": 32}


def _quadrant_masks() -> list[torch.Tensor]:
    masks = []
    for qy in (0, 1):
        for qx in (0, 1):
            m = torch.zeros(tw.SIZE, tw.SIZE)
            h = tw.SIZE // 2
            m[qy * h:(qy + 1) * h, qx * h:(qx + 1) * h] = 1.0
            masks.append(m)
    return masks


def _centres(images: torch.Tensor) -> torch.Tensor:
    """Shape centre ``[B, 2]`` (x, y) in image fractions, from ``measure_factors`` (factor units mapped back)."""
    from toyworld.world import C_MAX, C_MIN, measure_factors

    f = measure_factors(images, "circle")
    return C_MIN + f[:, 2:4] * (C_MAX - C_MIN)


def _binary_map(m: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(m[None, None].float(), size=(tw.SIZE, tw.SIZE), mode="bilinear", align_corners=False)[0, 0]
    peak = float(up.max())
    return up >= 0.5 * peak if peak > 0 else torch.zeros_like(up, dtype=torch.bool)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = float((a | b).sum())
    return float((a & b).sum()) / union if union else 0.0


@cache
def _setup(quick: bool) -> dict:
    from toyworld.world import measure_factors, shape_mask

    z = _sizes(quick)
    C = tw.nodes()
    import folder_paths  # ComfyUI's, importable once it is booted

    model, clip, vae, _ = tw.world()
    pos, neg = tw.encode(PROMPT), tw.encode("")
    out_dir = tempfile.mkdtemp(prefix="sliderspace_f_concepts_")
    old_out = folder_paths.get_output_directory()
    folder_paths.set_output_directory(out_dir)  # activation shards go to a temporary folder, not the host's output/
    try:
        t0 = time.perf_counter()
        with torch.inference_mode():
            acts, summary = tw.out(C["SliderSpaceSAECollectActivations"].execute(
                model, pos, neg, BLOCK, "cond", 0.0, 1.0, z["samples"], SEED0, tw.STEPS, tw.CFG, tw.SAMPLER,
                tw.SCHEDULER, tw.SIZE, tw.SIZE, 0, "float32", "f_concepts"))
        t_collect = time.perf_counter() - t0
        with torch.inference_mode():
            csae, _, train_text = tw.out(C["SliderSpaceSAETrain"].execute(acts, 0, 10, 64, 1e-3, 1024, z["epochs"], 0))
        t_train = time.perf_counter() - t0 - t_collect
        latent = {"samples": torch.zeros(1, 3, tw.SIZE, tw.SIZE)}
        images = []
        with torch.inference_mode():
            for i in range(z["samples"]):
                lat = C["KSampler"]().sample(model, SEED0 + i, tw.STEPS, tw.CFG, tw.SAMPLER, tw.SCHEDULER, pos, neg,
                                             latent)[0]
                images.append(vae.decode(lat["samples"]).reshape(-1, tw.SIZE, tw.SIZE, 3).movedim(-1, 1).float())
        images = torch.cat(images).clamp(0, 1)
        rows = torch.cat(list(acts))
        prov = acts.provenance()
    finally:
        folder_paths.set_output_directory(old_out)
        shutil.rmtree(out_dir, ignore_errors=True)
    with torch.no_grad():
        codes = torch.cat([csae.sae.encode(r).float() for r in rows.split(16384)])
    n, hw, nf = z["samples"], acts.height * acts.width, csae.n_features
    sigma = prov["sigma"].float()
    sample = prov["sample"].long()
    position = prov["position"].long()
    first, last = float(sigma.max()), float(sigma.min())
    per_sample = torch.zeros(n, nf).index_add_(0, sample, codes) / torch.bincount(sample, minlength=n)[:, None]

    def maps_at(s: float) -> torch.Tensor:  # [n, nf, h, w]: each sample's map at the evaluation with sigma s
        sel = (sigma - s).abs() <= 1e-6 * max(1.0, abs(s))
        m = torch.zeros(n, hw, nf)
        m[sample[sel], position[sel]] = codes[sel]
        return m.permute(0, 2, 1).reshape(n, nf, acts.height, acts.width)

    return {"csae": csae, "images": images, "factors": measure_factors(images, "circle"),
            "masks": shape_mask(images) > 0.5, "per_sample": per_sample, "first": maps_at(first),
            "last": maps_at(last), "half": n // 2, "summary": summary, "train": train_text,
            "t_collect": t_collect, "t_train": t_train, "sigmas": (first, last)}


def _corr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson r of each column of ``x`` [n, f] with ``y`` [n] (0 where a column is constant)."""
    xc, yc = x - x.mean(0), y - y.mean()
    den = (xc.square().sum(0) * yc.square().sum()).sqrt()
    return torch.where(den > 0, (xc * yc[:, None]).sum(0) / den.clamp_min(1e-30), torch.zeros_like(den))


def f10(quick: bool) -> Result:
    from toyworld.world import FACTORS

    s = _setup(quick)
    h = s["half"]
    x = s["per_sample"]
    parts, held = [], []
    for name in ("hue", "size"):
        y = s["factors"][:, FACTORS.index(name)]
        r_cal = _corr(x[:h], y[:h])
        best = int(r_cal.abs().argmax())
        r_test = float(_corr(x[h:, best:best + 1], y[h:])[0])
        held.append(abs(r_test))
        parts.append(f"{name}: feature {best}, r {float(r_cal[best]):+.2f} on the first {h} samples, "
                     f"{r_test:+.2f} held out")
    value = min(held)
    note = (f"{'; '.join(parts)}. Per sample: the feature's mean code over all steps and locations of "
            f"{BLOCK}; value = min of the held-out |r|. {s['summary']}; {s['train']}")
    return Result("F10", "ToyWorld: SAE features correlating with hue and size (min held-out |r|)", value, ">= 0.8",
                  check(value, ">= 0.8"), note)


def _mean_iou(maps: torch.Tensor, masks: torch.Tensor, f: int) -> float:
    """Mean IoU of feature ``f``'s binarised maps ``[n, nf, h, w]`` with the masks ``[n, 32, 32]``."""
    return sum(_iou(_binary_map(maps[i, f]), masks[i]) for i in range(maps.shape[0])) / maps.shape[0]


@cache
def _shape_feature(quick: bool, at: str = "first") -> tuple[int, float]:
    """The feature whose map at the ``first`` (or ``last``) step best overlaps the final shape mask on the first
    half of the samples, and that mean IoU."""
    s = _setup(quick)
    h = s["half"]
    scores = torch.tensor([_mean_iou(s[at][:h], s["masks"][:h], f) for f in range(s[at].shape[1])])
    best = int(scores.argmax())
    return best, float(scores[best])


def f11(quick: bool) -> Result:
    s = _setup(quick)
    f, cal = _shape_feature(quick)
    g, cal_g = _shape_feature(quick, "last")
    h = s["half"]
    test = {k: s[k][h:] for k in ("first", "last", "masks")}
    value = _mean_iou(test["first"], test["masks"], f)
    f_last = _mean_iou(test["last"], test["masks"], f)
    g_last, g_first = _mean_iou(test["last"], test["masks"], g), _mean_iou(test["first"], test["masks"], g)
    note = (f"shape feature {f} (chosen on the first {h} samples by its first-step map's mean IoU, {cal:.2f}); "
            f"held out ({s['images'].shape[0] - h} samples): first-step (sigma {s['sigmas'][0]:.3g}) map IoU "
            f"{value:.2f}, its last-step (sigma {s['sigmas'][1]:.3g}) map {f_last:.2f}. "
            f"The best LAST-step feature {g} (calibration {cal_g:.2f}): held out last step "
            f"{g_last:.2f}, first step {g_first:.2f}. "
            f"Maps of {BLOCK} ({s['first'].shape[-2]}x{s['first'].shape[-1]}) upsampled bilinearly, binarised at "
            "half their peak; mask = shape_mask > 0.5 of the final image (paper: mean IoU ≈ 0.26 from SDXL's mid "
            "block)")
    return Result("F11", "ToyWorld: first-step concept map of the shape feature vs final mask (mean IoU)", value,
                  ">= 0.5", check(value, ">= 0.5"), note)


def _steer_seeds(quick: bool, calibrate: bool) -> list[int]:
    """Scored seeds (``steer_seeds``), or the calibration seeds (half as many, disjoint from them)."""
    z = _sizes(quick)
    if calibrate:
        return [SEED0 + 3_000_000 + i for i in range(z["steer_seeds"] // 2)]
    return [SEED0 + 2_000_000 + i for i in range(z["steer_seeds"])]


@cache
def _steer_success(quick: bool, window: tuple[float, float], strength: float, calibrate: bool = False
                   ) -> tuple[float, list[float]]:
    from toyworld.world import SIZE

    s = _setup(quick)
    f, _ = _shape_feature(quick)
    model, neg, pos = tw.world()[0], tw.encode(""), tw.encode(PROMPT)
    seeds = _steer_seeds(quick, calibrate)
    per_quadrant = []
    for q, mask in enumerate(_quadrant_masks()):
        with torch.inference_mode():
            steered = tw.out(tw.nodes()["SliderSpaceSAESteer"].execute(
                model, s["csae"], f"{f}:{strength}", "spatial", "cond", "feature mean (sdxl-unbox)", window[0],
                window[1], True, mask[None]))[0]
        c = _centres(tw.sample(steered, pos, neg, seeds))
        qx, qy = q % 2, q // 2
        inside = ((c[:, 0] >= 0.5) == bool(qx)) & ((c[:, 1] >= 0.5) == bool(qy))
        per_quadrant.append(float(inside.float().mean()))
    assert SIZE == tw.SIZE
    return sum(per_quadrant) / 4, per_quadrant


@cache
def steer_strength(quick: bool) -> float:
    """The strength of :data:`STEER_STRENGTHS` with the largest early − late success on the calibration seeds
    (the smaller one on a tie)."""
    gap = {st: _steer_success(quick, EARLY, st, True)[0] - _steer_success(quick, LATE, st, True)[0]
           for st in STEER_STRENGTHS}
    return max(STEER_STRENGTHS, key=lambda st: (gap[st], -st))


def _sweep(quick: bool, calibrate: bool) -> str:
    return ", ".join(f"{st:g}: early {100 * _steer_success(quick, EARLY, st, calibrate)[0]:.0f} % / late "
                     f"{100 * _steer_success(quick, LATE, st, calibrate)[0]:.0f} %" for st in STEER_STRENGTHS)


def _steer_note(quick: bool, window: tuple[float, float]) -> str:
    strength = steer_strength(quick)
    rate, per_q = _steer_success(quick, window, strength)
    f, _ = _shape_feature(quick)
    z = _sizes(quick)
    return (f"strength {strength:g} chosen on {len(_steer_seeds(quick, True))} calibration seeds (largest early − "
            f"late; there {_sweep(quick, True)}); spatial steer of shape feature {f} (the F11 feature) at {strength:g} "
            "x its typical activation "
            f"({float(_setup(quick)['csae'].feature_mean[f]):.3g}), percent {window[0]:g}-{window[1]:g}, cond half, "
            f"suppress outside; {z['steer_seeds']} seeds x 4 quadrants (chance 25 %); per quadrant (TL, TR, BL, BR) "
            f"{[round(100 * v) for v in per_q]} %; scored sweep {_sweep(quick, False)}")


def f8(quick: bool) -> Result:
    rate, _ = _steer_success(quick, EARLY, steer_strength(quick))
    return Result("F8", "ToyWorld: SAE spatial steer, early window: centre in masked quadrant", rate, ">= 0.7",
                  check(rate, ">= 0.7"), _steer_note(quick, EARLY))


def f9(quick: bool) -> Result:
    rate, _ = _steer_success(quick, LATE, steer_strength(quick))
    return Result("F9", "ToyWorld: SAE spatial steer, late window: centre in masked quadrant", rate, "<= 0.4",
                  check(rate, "<= 0.4"), _steer_note(quick, LATE))


def run(quick: bool, only: set[str] | None = None) -> list[Result]:
    return timed_rows((f10, f11, f8, f9), quick, only)
