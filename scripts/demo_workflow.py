"""The demo through ComfyUI: the shipped ToyWorld example workflow, run headless on a throwaway server.

``example_workflows/toyworld_sliders.json`` (Load ToyWorld → Trajectory Sampler → CLIP Embed → PCA → Train
Sliders → Slider Grid) is converted to an API prompt by the real frontend (headless chromium, as a user's
browser would), queued over HTTP on a ComfyUI server started for the purpose, and its grid is copied to
``artifacts/demo/workflow_grid.png``; ``artifacts/demo/workflow_report.md`` lists what each slider does to the
world's factors along its row, read analytically from the grid's pixels (seed 0, the workflow's own).
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORKFLOW = ROOT / "example_workflows" / "toyworld_sliders.json"


def _image(server, im: dict) -> np.ndarray:
    with Image.open(server.base / im["type"] / im["subfolder"] / im["filename"]) as f:
        return np.asarray(f.convert("RGB"))


def run(out: pathlib.Path) -> None:
    from tests.conftest import comfyui_path
    from tests.live import server as live
    from tests.live.fixtures import run_node
    from toyworld.world import FACTORS, measure_factors

    host = comfyui_path()
    if host is None:
        sys.exit("no ComfyUI host: run scripts/provision.sh first (or set COMFYUI_PATH)")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        srv = live.start(host, pathlib.Path(tmp) / "base", out / "server")
        try:
            prompt = run_node("convert.mjs", srv.url, str(WORKFLOW))[WORKFLOW.name]["prompt"]
            print(f"converted {WORKFLOW.name} with the real frontend; running it ...", flush=True)
            outputs = srv.run(prompt, timeout=3600)["outputs"]
            by_prefix = {prompt[i]["inputs"].get("filename_prefix"): outputs[i]["images"] for i in outputs
                         if prompt[i]["class_type"] == "SaveImage"}
            grid = _image(srv, by_prefix["toyworld_grid"][0])
            cells = np.stack([_image(srv, im) for im in by_prefix["toyworld_cells"]])
        finally:
            srv.stop()
    big = Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST)
    big.save(out / "workflow_grid.png")
    [node] = [n for n in prompt.values() if n["class_type"] == "SliderSpaceSliderGrid"]
    scales = [float(v) for v in node["inputs"]["scales"].split(",")]
    rows = torch.from_numpy(cells.astype(np.float32) / 255).movedim(-1, 1)
    f = measure_factors(rows, "circle").view(-1, len(scales), len(FACTORS))
    lines = [f"# ToyWorld demo through ComfyUI — {WORKFLOW.name}", "",
             f"Ran headless in {time.perf_counter() - t0:.0f} s (server start, frontend conversion, discovery, "
             "training, grid). Factors read from the grid's pixels, seed 0, per slider and scale:", "",
             "| slider | factor | " + " | ".join(f"{s:+g}" for s in scales) + " |",
             "|---|---|" + "---|" * len(scales)]
    for s in range(f.shape[0]):
        for j, name in enumerate(FACTORS):
            lines.append(f"| {s} | {name} | " + " | ".join(f"{float(v):.2f}" for v in f[s, :, j]) + " |")
    (out / "workflow_report.md").write_text("\n".join(lines) + "\n")
    shutil.copy(WORKFLOW.with_suffix(".jpg"), out / "workflow_graph.jpg")
    print("\n".join(lines))
    print(f"wrote {out / 'workflow_grid.png'} and {out / 'workflow_report.md'}")


if __name__ == "__main__":
    run(ROOT / "artifacts" / "demo")
