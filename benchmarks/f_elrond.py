"""F5–F7: ELROND on ToyWorld, through the pack's nodes on the MODEL / CLIP / VAE / encoder of Load ToyWorld.

- F5: ELROND Collect Gradients ("a circle", word "circle") → ELROND Decompose (PCA, LID rule; at most the top 6,
  the count the SliderSpace rows F1/F2 score) → ELROND Apply Directions at +s and −s for each direction.
  A direction's effect on a seed is (factors(+s) − factors(−s)) / 2, factors read analytically from pixels
  (``toyworld.world.measure_factors``) and scored with SliderSpace's own ``toyworld.pipeline.purity``
  (dominant factor; |mean change| of it / Σ |mean change|) over the held-out seeds score_sliders uses.
  s = ‖the word's conditioning row‖ (measured, so the row re-runs unchanged on retrained weights).
- F6: ELROND Concept Complexity (LID, C = 2.5) for prompts that pin more and more factors, at the same number
  of gradients; F6b: the LID of "a circle" at 4 k vs 8 k gradients (the node's stability curve).
- F7: on the collapsed setting (guidance 8, F4's), per shape prompt: ELROND Random Directions (n = 3 PCA
  directions, strength uniform in [0.75, 1]·‖row‖ — the paper's [30, 40] in the same proportion) against
  plain seeds, scored with F4's own ``diversity_and_accuracy`` on F4's seeds; F4 (Random Sparse Sliders) is
  printed side by side when it runs in the same process (``--only F4,F7``).
"""

from __future__ import annotations

import re
from functools import cache

import torch

from benchmarks import toyworld_comfy as tw
from benchmarks.common import Result, check, timed_rows

F5_TOP = 6
STRENGTH = 1.0
"""F5: strength in units of the word's conditioning-row norm (≈ 7.2 on the shipped weights)."""
RANDOM_RANGE = (0.75, 1.0)
"""F7: Random Directions strength range in units of the row norm ([30, 40] scaled as on SDXL)."""
F6_PROMPTS = ("a circle", "a red circle", "a small red circle", "a small red circle on the left")


def _sizes(quick: bool) -> dict:
    if quick:
        return {"images": 16, "pairs": 120, "seeds": 16, "mono_images": 16, "mono_pairs": 120,
                "big_images": 24, "big_pairs": 240}
    return {"images": 64, "pairs": 2000, "seeds": 64, "mono_images": 64, "mono_pairs": 2000,
            "big_images": 128, "big_pairs": 8000}


@cache
def _gradients(prompt: str, word: str, images: int, pairs: int, cfg: float = tw.CFG, seed: int = 0):
    """ELROND Collect Gradients on the loaded ToyWorld (images sampled by the node, seed + i)."""
    model, clip, _, _ = tw.world()
    with torch.inference_mode():
        grads, _, info = tw.out(tw.nodes()["ELRONDCollectGradients"].execute(
            model, clip, prompt, word, "", images, pairs, seed, tw.STEPS, cfg, tw.SAMPLER, tw.SCHEDULER, tw.SIZE,
            tw.SIZE, 0, True, False, 64, False))
    return grads, info


def _decompose(grads, method: str = "PCA (LID rule)", n: int = 8):
    with torch.inference_mode():
        return tw.out(tw.nodes()["ELRONDDecompose"].execute(grads, method, n, 2.5, 32, 20, 3e-3, 0))[0]


def _complexity(grads) -> tuple[int, str]:
    with torch.inference_mode():
        report, lid, _ = tw.out(tw.nodes()["ELRONDConceptComplexity"].execute(grads, 2.5, 0))
    return int(lid), report


def _row_norm(prompt: str, word: str) -> float:
    from tests.comfy.host import pack_module

    cond = tw.encode(prompt)[0][0]
    rows = pack_module("nodes.glue.conditioning").token_rows(tw.world()[1], prompt, word, n_rows=int(cond.shape[1]))
    return float(cond[0, rows].norm(dim=-1).mean())


def _apply(prompt: str, word: str, directions, strengths: str) -> list:
    with torch.inference_mode():
        return tw.out(tw.nodes()["ELRONDApplyDirections"].execute(
            conditioning=tw.encode(prompt), clip=tw.world()[1], prompt=prompt, word=word, directions=directions,
            strengths=strengths, multiplier=1.0))[0]


def f5(quick: bool) -> Result:
    from toyworld.pipeline import EVAL_SEED0, purity
    from toyworld.world import FACTORS, measure_factors

    z = _sizes(quick)
    prompt, word = "a circle", "circle"
    grads, info = _gradients(prompt, word, z["images"], z["pairs"])
    dirs = _decompose(grads)
    k = min(F5_TOP, dirs.n_components)
    s = STRENGTH * _row_norm(prompt, word)
    seeds = [EVAL_SEED0 + i for i in range(z["seeds"])]
    model, neg = tw.world()[0], tw.encode("")
    effects = torch.empty(k, len(seeds), len(FACTORS))
    plus = torch.empty_like(effects)
    base = measure_factors(tw.sample(model, tw.encode(prompt), neg, seeds), "circle")
    for i in range(k):
        up = measure_factors(tw.sample(model, _apply(prompt, word, dirs, f"{i}:{s}"), neg, seeds), "circle")
        down = measure_factors(tw.sample(model, _apply(prompt, word, dirs, f"{i}:{-s}"), neg, seeds), "circle")
        effects[i], plus[i] = (up - down) / 2, up - base
    dom, pur = purity(effects)
    dom_p, pur_p = purity(plus)
    names = [FACTORS[int(d)] for d in dom]
    coverage, med = len(set(names)), float(pur.median())
    mc = effects.mean(1)
    per = "; ".join(f"{i}:{names[i]} {float(pur[i]):.2f} (Δ {float(mc[i, dom[i]]):+.3f})" for i in range(k))
    passed = coverage >= 3 and med >= 0.6
    note = (f"purity median {med:.2f} (goal >= 0.6) and coverage {coverage} (goal >= 3); per direction: {per}; "
            f"+s only: dominant {[FACTORS[int(d)] for d in dom_p]}, median purity {float(pur_p.median()):.2f}. "
            f"{k} of {dirs.n_components} LID directions, s = ±{s:.2f} (= {STRENGTH:g}·‖row‖), {len(seeds)} seeds; "
            f"{info}")
    return Result("F5", "ToyWorld: ELROND 'circle' directions ±s, factors covered (of 5)", coverage, ">= 3",
                  passed, note)


def _lid_at(report: str, n: int) -> int:
    m = re.search(rf"(?:^|[ ,:]){n}: (\d+)", report.splitlines()[1])
    if m is None:
        raise RuntimeError(f"no LID at {n} gradients in {report!r}")
    return int(m.group(1))


@cache
def _f6(quick: bool) -> dict:
    z = _sizes(quick)
    big, _ = _gradients("a circle", "circle", z["big_images"], z["big_pairs"])
    lid_big, report = _complexity(big)
    lids, reports = {}, {}
    for p in F6_PROMPTS:
        if p == "a circle" and z["mono_pairs"] in (z["big_pairs"] >> s for s in range(5)):
            lids[p] = _lid_at(report, z["mono_pairs"])  # the first mono_pairs of the 8 k set, as for the others
            reports[p] = f"LID {lids[p]} (first {z['mono_pairs']} of the {z['big_pairs']})"
        else:
            lids[p], rep = _complexity(_gradients(p, "circle", z["mono_images"], z["mono_pairs"])[0])
            reports[p] = rep.splitlines()[0].split(": ", 1)[1]
    return {"lids": lids, "reports": reports, "big": lid_big, "half": _lid_at(report, z["big_pairs"] // 2),
            "curve": report.splitlines()[1], "z": z}


def f6(quick: bool) -> Result:
    r = _f6(quick)
    vals = [r["lids"][p] for p in F6_PROMPTS]
    steps = sum(a > b for a, b in zip(vals, vals[1:], strict=False))
    note = (f"LID (C = 2.5, {r['z']['mono_pairs']} gradients of 'circle' each, {r['z']['mono_images']} images): "
            + " > ".join(f"{p!r} {r['lids'][p]}" for p in F6_PROMPTS)
            + "; value = strict decreases of the 3 steps. Node reports: "
            + "; ".join(f"{p!r}: {r['reports'][p]}" for p in F6_PROMPTS))
    return Result("F6", "ToyWorld: ELROND LID falls as the prompt pins factors (strict steps of 3)", steps, ">= 3",
                  check(steps, ">= 3"), note)


def f6b(quick: bool) -> Result:
    r = _f6(quick)
    n = r["z"]["big_pairs"]
    rel = abs(r["big"] - r["half"]) / max(r["half"], 1)
    note = (f"'a circle' LID {r['half']} at {n // 2} vs {r['big']} at {n} gradients ({r['z']['big_images']} images); "
            f"ELROND Concept Complexity's stability curve: {r['curve']}")
    return Result("F6b", "ToyWorld: ELROND LID change, 4k vs 8k gradients (relative)", rel, "<= 0.1",
                  check(rel, "<= 0.1"), note)


def f7(quick: bool) -> Result:
    from benchmarks.f_toyworld import COLLAPSED_CFG, F4_LAST, diversity_and_accuracy
    from toyworld.pipeline import EVAL_SEED0
    from toyworld.world import SHAPES

    z = _sizes(quick)
    model, clip, _, enc = tw.world()
    neg = tw.encode("")
    seeds = [EVAL_SEED0 + i for i in range(z["seeds"])]
    plain_div, rnd_div, plain_acc, rnd_acc, lids = [], [], [], [], []
    for k, shape in enumerate(SHAPES):
        prompt = f"a {shape}"
        grads, _ = _gradients(prompt, shape, z["images"], z["pairs"], cfg=COLLAPSED_CFG)
        dirs = _decompose(grads)
        lids.append(dirs.n_components)
        lo, hi = (r * _row_norm(prompt, shape) for r in RANDOM_RANGE)
        with torch.inference_mode():
            cond, _ = tw.out(tw.nodes()["ELRONDRandomDirections"].execute(
                conditioning=tw.encode(prompt), clip=clip, prompt=prompt, word=shape, directions=dirs, seed=seeds[0],
                n=min(3, dirs.n_components), min_strength=lo, max_strength=hi, random_sign=True,
                batch_size=len(seeds)))
        for imgs, div, acc in ((tw.sample(model, tw.encode(prompt), neg, seeds, COLLAPSED_CFG), plain_div, plain_acc),
                               (tw.sample(model, cond, neg, seeds, COLLAPSED_CFG), rnd_div, rnd_acc)):
            d, a = diversity_and_accuracy(enc, imgs, k)
            div.append(d)
            acc.append(a)
    ratio = sum(rnd_div) / sum(plain_div)
    drop = 100 * (sum(plain_acc) - sum(rnd_acc)) / len(SHAPES)
    passed = check(ratio, ">= 1.3") and drop <= 2.0
    side = ("; ".join(f"Random Sparse Sliders ({row}) in this run: {r['ratio']:.2f}x, drop {r['drop']:.1f} pts"
                      for row, r in sorted(F4_LAST.items()))
            or "Random Sparse Sliders: see F4c (run --only F4c,F7 for both in one run; F4c trains 3 discoveries)")
    m = len(SHAPES)
    note = (f"cfg {COLLAPSED_CFG:g}, {m} prompts x {len(seeds)} seeds (F4's seeds), n = min(3, LID) of the LID "
            f"directions {lids}, strength U[{RANDOM_RANGE[0]:g}, {RANDOM_RANGE[1]:g}]·‖row‖; diversity plain "
            f"{[round(v, 4) for v in plain_div]} → ELROND random {[round(v, 4) for v in rnd_div]}; shape accuracy "
            f"plain {100 * sum(plain_acc) / m:.1f}% → {100 * sum(rnd_acc) / m:.1f}% (drop {drop:.1f} pts, goal <= 2). "
            f"Passes only if both bars hold. {side}")
    return Result("F7", "ToyWorld: ELROND random directions diversity / plain at cfg 8", ratio, ">= 1.3", passed,
                  note)


def run(quick: bool, only: set[str] | None = None) -> list[Result]:
    return timed_rows((f5, f6, f6b, f7), quick, only)
