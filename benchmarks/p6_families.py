"""P6 per family: training peak RSS / sampling peak RSS on tiny SDXL-, FLUX- and SD3-shaped models (the SD1.5
row is P6 in p3_training). Each side runs in its own process on the same tiny family (tests/comfy/families.py):
discovery first in both, then either a stock KSampler run or Train Sliders (preset auto, 3 sliders per step).

``python -m benchmarks.p6_families --child sample|train FAMILY`` is the child: prints its peak RSS (GB).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.common import Result, check

SIZE = 64
FAMILIES = ("SDXL", "Flux", "SD3")


def child(mode: str, family: str) -> None:
    from tests.comfy.families import build_family
    from tests.comfy.host import boot
    from tests.comfy.test_discovery import _out
    from tests.comfy.tiny_models import build_clip_vision

    torch.set_num_threads(1)
    C = boot()["classes"]
    fam, cv = build_family(family), build_clip_vision()
    with torch.inference_mode():
        traj, _ = _out(C["SliderSpaceTrajectorySampler"].execute(
            fam.model, "a dog", "", 6, 0, 4, 2.0, "euler", "normal", SIZE, SIZE, 6, "final only", 1,
            "float32", clip=fam.clip))
        emb = _out(C["SliderSpaceClipEmbed"].execute(8, trajectories=traj, vae=fam.vae, clip_vision=cv))[0]
        basis, _ = _out(C["SliderSpacePCADecompose"].execute(emb, 4, "auto", 0))
        pos, neg = fam.encode("a dog"), fam.encode("")
        if mode == "sample":
            latent = C["EmptyLatentImage"]().generate(SIZE, SIZE, 1)[0]
            C["KSampler"]().sample(fam.model, 0, 8, 2.0, "euler", "normal", pos, neg, latent)
        else:
            C["SliderSpaceTrainSliders"].execute(fam.model, fam.vae, pos, basis, traj, 4, 4, 2e-3, 1, "auto", "",
                                                 3, 0, False, False, clip_vision=cv)
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(line for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"peak_gb": int(hwm.split()[1]) / 1024**2}), flush=True)


def _child_peak(mode: str, family: str) -> float:
    out = subprocess.run([sys.executable, "-m", "benchmarks.p6_families", "--child", mode, family],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_gb"]


def p6(family: str) -> Result:
    train, sample = _child_peak("train", family), _child_peak("sample", family)
    ratio = train / sample
    note = (f"peak RSS (VmHWM, each its own process, tiny {family}-shaped model + its text encoder + TAESD-style "
            f"VAE, {SIZE}px): training 3 sliders/step {train:.2f} GB, KSampler batch 1 {sample:.2f} GB")
    return Result(f"P6-{family}", f"training / sampling peak RSS, {family} shapes", ratio, "<= 1.5",
                  check(ratio, "<= 1.5"), note)


def run(quick: bool) -> list[Result]:
    return [p6(f) for f in FAMILIES]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
