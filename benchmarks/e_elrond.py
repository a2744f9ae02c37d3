"""E1 / E2: ELROND gradient collection against plain denoiser forwards and against sampling (tiny SD1.5).

E2 is the peak-RSS INCREASE over the loaded models, each side in a fresh process (the whole-process peaks are
dominated by Python + torch + ComfyUI with a tiny model, so their ratio says little; both are reported).
Both rows use block checkpointing, the Collect node's default.
"""

from __future__ import annotations

import os

import torch

from benchmarks.common import Result, check, interleaved_times

GOAL_E1 = "<= 3.5"
GOAL_E2 = "<= 1.5"


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _peak_increase(fn) -> float:
    """Peak RSS (MB) reached while ``fn`` runs, above the RSS when it starts (Linux: VmHWM reset first)."""
    with open(f"/proc/{os.getpid()}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    base = _rss_kb("VmRSS")
    fn()
    return (_rss_kb("VmHWM") - base) / 1024


def _fresh_process(kind: str, size: int, batch: int) -> dict:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "benchmarks.e_elrond", kind, str(size), str(batch)], check=True,
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _measure(kind: str, size: int, batch: int) -> dict:
    """In this (fresh) process: build the tiny models, then the peak RSS increase of sampling or collecting."""
    import json

    from tests.comfy import tiny_models
    from tests.comfy.host import boot, pack_module

    torch.set_num_threads(1)
    C = boot()["classes"]
    cg, gr = pack_module("nodes.glue.conditioning"), pack_module("sliderspace_core.elrond.gradients")
    smp = pack_module("nodes.glue.sampling")
    model, clip = tiny_models.build_model(), tiny_models.build_clip()
    pos, neg = smp.encode_text(clip, "a photo of a dog"), smp.encode_text(clip, "")
    rows = cg.token_rows(clip, "a photo of a dog", "dog")
    lat = torch.randn(2 * batch, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0))
    latent = C["EmptyLatentImage"]().generate(size, size, batch)[0]

    def sample():
        with torch.inference_mode():
            C["KSampler"]().sample(model, 0, 4, 7.0, "euler", "normal", pos, neg, latent)

    def collect():
        cg.collect_in_comfy(model, pos, lat, rows, 10.0, gr.GradientConfig(pairs=2 * batch, batch_size=batch),
                            checkpointing=True)

    inc = _peak_increase(sample if kind == "sample" else collect)
    print(json.dumps({"increase": inc, "peak": _rss_kb("VmHWM") / 1024}))


def run(quick: bool) -> list[Result]:
    from tests.comfy import tiny_models
    from tests.comfy.host import boot, pack_module

    boot()
    from comfy_extras.nodes_custom_sampler import Guider_Basic  # importable once ComfyUI is booted

    cg, gr = pack_module("nodes.glue.conditioning"), pack_module("sliderspace_core.elrond.gradients")
    ag, smp = pack_module("nodes.glue.autograd"), pack_module("nodes.glue.sampling")
    model, clip = tiny_models.build_model(), tiny_models.build_clip()
    size, batch, n_batches = (64, 2, 2) if quick else (128, 4, 4)
    prompt = "a photo of a dog"
    pos = smp.encode_text(clip, prompt)
    rows = cg.token_rows(clip, prompt, "dog")
    lat = torch.randn(2 * batch, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0))
    cfg = gr.GradientConfig(pairs=batch * n_batches, batch_size=batch, seed=0)

    def collect():
        cg.collect_in_comfy(model, pos, lat, rows, 10.0, cfg, checkpointing=True)

    def plain():  # the same guider call at the same batch, no graph, no backward
        def loop(host):
            with torch.no_grad():
                c = host.base_cond().expand(batch, -1, -1)
                s = torch.full((batch,), 10.0)
                for _ in range(n_batches):
                    host.predict_x0(host.noised(lat[:batch], s, torch.randn_like(lat[:batch])), s, c)

        with torch.inference_mode(False):
            g = Guider_Basic(model)
            g.set_conds(ag.clone_conditioning(pos))
            g.sample(torch.zeros_like(lat[:batch]), lat[:batch], cg._GradientSampler(loop), torch.tensor([10.0, 0.0]),
                     seed=0, disable_pbar=True)

    t = interleaved_times({"collect": collect, "plain": plain}, repeats=2 if quick else 3)
    e1 = t["collect"] / t["plain"]
    m_sample, m_collect = (_fresh_process(kind, size, batch) for kind in ("sample", "collect"))
    e2 = m_collect["increase"] / max(m_sample["increase"], 1e-6)
    where = f"tiny SD1.5-shaped UNet, {size}px, batch {batch}, CPU"
    return [
        Result("E1", "seconds per gradient / seconds per plain forward (same batch)", e1, GOAL_E1, check(e1, GOAL_E1),
               f"{where}; {cfg.pairs} gradients {t['collect']:.2f}s vs {cfg.pairs} plain x̂0 {t['plain']:.2f}s"),
        Result("E2", "peak RSS increase: gradient collection / sampling (same batch)", e2, GOAL_E2, check(e2, GOAL_E2),
               f"{where}, each in a fresh process: collection +{m_collect['increase']:.0f} MB, KSampler (CFG 7, 4 "
               f"steps) +{m_sample['increase']:.0f} MB over the loaded models; whole-process peaks "
               f"{m_collect['peak']:.0f} vs {m_sample['peak']:.0f} MB"),
    ]


if __name__ == "__main__":
    import sys

    _measure(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
