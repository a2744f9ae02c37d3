"""Template thumbnails that show results: the graph (left) beside what it produces (right), labelled.

ComfyUI shows ``example_workflows/<name>.jpg`` in its template browser. A template that needs a real model (SD1.5,
SDXL, FLUX) cannot be run here, so its right half is the REAL output of the same kind of graph on ToyWorld (the
pack's 32x32 toy model, no download: docs/images/toyworld_*.png, made by scripts/toyworld_results.py and the
ToyWorld template itself), and says so. The graph screenshots come from tests/browser/make_workflows.mjs
(``GRAPH_DIR``); scripts/make_example_workflows.py runs both steps.

    .venv/bin/python scripts/make_thumbnails.py <graph screenshot dir>
"""

from __future__ import annotations

import pathlib
import sys

from PIL import Image, ImageDraw, ImageFont

ROOT = pathlib.Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
SIZE = (1520, 900)
BG = (24, 24, 24)

RESULT = {  # template → (ToyWorld picture, what the picture is)
    "toyworld_sliders": ("toyworld_slider_grid.png", "Its Slider Grid, from its earlier settings (2 sliders)"),
    "sliderspace_discover": ("toyworld_slider_grid.png", "A Slider Grid of discovered sliders"),
    "sliderspace_discover_sdxl": ("toyworld_slider_grid.png", "A Slider Grid of discovered sliders"),
    "sliderspace_discover_flux": ("toyworld_slider_grid.png", "A Slider Grid of discovered sliders"),
    "sliderspace_grid": ("toyworld_slider_grid.png", "A Slider Grid"),
    "sliderspace_apply": ("toyworld_apply.png", "Apply Slider Bank vs the plain model, same seeds"),
    "sliderspace_apply_sdxl": ("toyworld_apply.png", "Apply Slider Bank vs the plain model, same seeds"),
    "sliderspace_apply_flux": ("toyworld_apply.png", "Apply Slider Bank vs the plain model, same seeds"),
    "sliderspace_sparse_diversity": ("toyworld_sparse.png", "Random Sparse Sliders vs plain seeds"),
    "elrond_directions": ("toyworld_elrond.png", "An ELROND direction vs the plain prompt, same seeds"),
    "elrond_directions_sdxl": ("toyworld_elrond.png", "An ELROND direction vs the plain prompt, same seeds"),
    "sae_concepts": ("toyworld_sae.png", "SAE Steer vs the plain model, same seeds"),
    "sae_concepts_sdxl": ("toyworld_sae.png", "SAE Steer vs the plain model, same seeds"),
}
FAMILY = {"sdxl": "SDXL", "flux": "FLUX"}


def family(name: str) -> str:
    return next((v for k, v in FAMILY.items() if name.endswith(f"_{k}")), "SD1.5")


def fit(im: Image.Image, box: tuple[int, int], upscale_nearest: bool = False) -> Image.Image:
    scale = min(box[0] / im.width, box[1] / im.height)
    resample = Image.NEAREST if upscale_nearest and scale > 1 else Image.LANCZOS
    return im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))), resample)


def compose(name: str, graph: Image.Image) -> Image.Image:
    picture, what = RESULT[name]
    result = Image.open(IMAGES / picture).convert("RGB")
    out = Image.new("RGB", SIZE, BG)
    draw = ImageDraw.Draw(out)
    big, small = ImageFont.load_default(size=34), ImageFont.load_default(size=24)
    half = SIZE[0] // 2
    g = fit(graph.convert("RGB"), (half - 30, SIZE[1] - 120))
    out.paste(g, (15, 100 + (SIZE[1] - 120 - g.height) // 2))
    draw.text((20, 30), "The graph", fill=(200, 200, 200), font=big)
    r = fit(result, (half - 40, SIZE[1] - 260), upscale_nearest=True)
    out.paste(r, (half + 20, 170 + (SIZE[1] - 260 - r.height) // 2))
    if name == "toyworld_sliders":
        title, note = "What it produces (real output)", "ToyWorld, the pack's 32x32 toy model: nothing to download."
    else:
        title = "What it produces, shown on ToyWorld"
        note = (f"Real output of the same kind of graph on ToyWorld (the pack's 32x32 toy model), not "
                f"{family(name)}: run the template for your model's.")
    draw.text((half + 20, 30), title, fill=(230, 230, 230), font=big)
    draw.text((half + 20, 80), what, fill=(200, 200, 200), font=small)
    lines = _wrap(note, 62)
    y = SIZE[1] - 20 - 30 * len(lines)
    for line in lines:
        draw.text((half + 20, y), line, fill=(170, 170, 170), font=small)
        y += 30
    draw.line([(half, 20), (half, SIZE[1] - 20)], fill=(70, 70, 70), width=2)
    return out


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


def main(graph_dir: pathlib.Path) -> None:
    for shot in sorted(graph_dir.glob("*.jpg")):
        if shot.stem not in RESULT:
            continue
        out = ROOT / "example_workflows" / f"{shot.stem}.jpg"
        compose(shot.stem, Image.open(shot)).save(out, quality=85)
        print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
