"""Headless demo: the discovery pipeline in real ComfyUI on tiny random models (no downloads).

Trajectory Sampler → CLIP Embed → PCA Decompose, through the pack's node classes exactly as the
executor calls them. Writes ``artifacts/demo/scree.png`` and prints a summary. (Issue "ToyWorld"
will replace the random models with a trained world whose factors are known.)
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np
import torch
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from tests.comfy import tiny_models
    from tests.comfy.host import boot

    C = boot()["classes"]
    tiny = tiny_models.build()
    out_dir = ROOT / "artifacts" / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with torch.inference_mode():
        traj, _ = C["SliderSpaceTrajectorySampler"].execute(
            tiny.model, tiny.clip, "a photo of a dog\na painting of a dog", "", 16, 0, 8, 7.0, "euler", "normal",
            64, 64, 8, "every step", 1, "float16").args
        emb = C["SliderSpaceClipEmbed"].execute(32, trajectories=traj, vae=tiny.vae,
                                               clip_vision=tiny.clip_vision).args[0]
        basis, plot = C["SliderSpacePCADecompose"].execute(emb, 16, "auto", 0).args
    Image.fromarray((plot[0].numpy() * 255).round().astype(np.uint8)).save(out_dir / "scree.png")
    print(f"trajectories: {traj}")
    print(f"embeddings:   {emb}")
    print(f"basis:        {basis.components.shape[0]} components, top-5 explained variance ratio "
          f"{[round(v, 4) for v in basis.explained_variance_ratio[:5].tolist()]}")
    print(f"wrote {out_dir / 'scree.png'} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
