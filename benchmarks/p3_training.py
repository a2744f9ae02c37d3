"""P3: slider updates per second, batched per-item deltas vs the reference's one pass per slider.
P6: training peak RSS / sampling peak RSS at the same resolution (each in its own process).

``python -m benchmarks.p3_training --child sample|train`` is the P6 child: prints its peak RSS (GB).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import Result, check

SIZE = 64


def _setup():
    from tests.comfy import tiny_models
    from tests.comfy.host import boot
    from tests.comfy.test_training_comfy import discover

    comfy = boot()
    tiny = tiny_models.build()
    d = discover(comfy, tiny, n=6, steps=4, size=SIZE, keep="final only", batch=8)
    return comfy["classes"], tiny, d.traj, d.basis, d.pos


def p3(quick: bool) -> Result:
    from tests.comfy.host import pack_module

    glue, cg = pack_module("nodes.glue.autograd"), pack_module("nodes.glue.encoders")
    ad, tr = pack_module("sliderspace_core.sliderspace.adapters"), pack_module("sliderspace_core.sliderspace.training")
    C, tiny, traj, basis, pos = _setup()
    dm = tiny.model.model.diffusion_model
    modules = pack_module("nodes.glue.family").target_modules(dm, "cross-attention k/v")
    steps = 3 if quick else 12
    times = {"batched": float("inf"), "per_slider": float("inf")}
    with torch.inference_mode(False), torch.enable_grad():
        adapters = ad.SliderAdapters({n: (m.out_features, m.in_features) for n, m in modules.items()}, 4)

        def run(host, latents):
            trainer = tr.SliderTrainer(host, adapters, basis.components.clone(), latents.clone(),
                                       glue.schedule_sigmas(tiny.model), tr.TrainConfig(sliders_per_step=3))
            with glue.frozen(dm), adapters.attached(modules):
                trainer.step(True), trainer.step(False)  # warm-up
                for _ in range(2 if quick else 3):  # interleaved, best of rounds
                    for mode in ("batched", "per_slider"):
                        t0 = time.perf_counter()
                        for _ in range(steps):
                            trainer.step(mode == "batched")
                        times[mode] = min(times[mode], time.perf_counter() - t0)

        glue.run_in_comfy(tiny.model, pos, traj.x0[:, -1].float().clone(), tiny.vae,
                          cg.ClipVisionEncoder(tiny.clip_vision), run)
    ours, ref = 3 * steps / times["batched"], 3 * steps / times["per_slider"]
    ratio = ours / ref
    note = (f"tiny SD1.5-shaped UNet + TAESD + tiny CLIP vision at {SIZE}px, CPU, 3 sliders/step; "
            f"ours {ours:.2f} updates/s; reference-style loop (slider-free branch once per step, then one "
            f"forward+backward per slider) {ref:.2f} updates/s")
    return Result("P3", "slider updates/s, batched per-item deltas / one pass per slider", ratio, ">= 1.5",
                  check(ratio, ">= 1.5"), note)


def child(mode: str) -> None:
    C, tiny, traj, basis, pos = _setup()
    with torch.inference_mode():
        if mode == "sample":
            latent = C["EmptyLatentImage"]().generate(SIZE, SIZE, 1)[0]
            neg = C["CLIPTextEncode"]().encode(tiny.clip, "")[0]
            C["KSampler"]().sample(tiny.model, 0, 8, 7.0, "euler", "normal", pos, neg, latent)
        else:
            C["SliderSpaceTrainSliders"].execute(tiny.model, tiny.vae, pos, basis, traj, 4, 4, 2e-3, 1,
                                                 "cross-attention k/v", "", 3, 0, False, False,
                                                 clip_vision=tiny.clip_vision)
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(line for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"peak_gb": int(hwm.split()[1]) / 1024**2}), flush=True)


def _child_peak(mode: str) -> float:
    out = subprocess.run([sys.executable, "-m", "benchmarks.p3_training", "--child", mode], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_gb"]


def p6(quick: bool) -> Result:
    train, sample = _child_peak("train"), _child_peak("sample")
    ratio = train / sample
    note = (f"peak RSS (VmHWM, each its own process, tiny models, {SIZE}px): training 3 sliders/step "
            f"{train:.2f} GB, KSampler batch 1 {sample:.2f} GB")
    return Result("P6", "training peak RSS / sampling peak RSS, same resolution", ratio, "<= 1.5",
                  check(ratio, "<= 1.5"), note)


def run(quick: bool) -> list[Result]:
    return [p3(quick), p6(quick)]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
