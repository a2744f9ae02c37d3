"""Real outputs of the templates' graphs on ToyWorld, for the template thumbnails and the docs.

The SDXL / FLUX / SD1.5 templates need model files the project cannot ship or download, so each thumbnail
shows, beside its graph, what the SAME kind of graph produces on ToyWorld (the pack's 32×32 toy model, no
download), run here through ComfyUI's own executor (tests/comfy/executor.py). Every picture is labelled with
what was run; nothing is drawn by hand. Writes docs/images/toyworld_<what>.png and prints what each is.

    COMFYUI_PATH=/path/to/ComfyUI .venv/bin/python scripts/toyworld_results.py
"""

from __future__ import annotations

import pathlib
import re
import sys

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
sys.path.insert(0, str(ROOT))

SAMPLE = {"seed": 0, "steps": 16, "cfg": 2.0, "sampler_name": "euler", "scheduler": "karras"}
SIZE = 32
SEEDS = 8


def defaults(class_type: str) -> dict:
    """Every widget input of a node at its default (a prompt must carry all of them)."""
    from tests.comfy.host import boot

    it = boot()["classes"][class_type].INPUT_TYPES()
    out = {}
    for name, spec in it.get("required", {}).items():
        opts = spec[1] if len(spec) > 1 else {}
        if "default" in opts:
            out[name] = opts["default"]
        elif isinstance(spec[0], list) and spec[0]:
            out[name] = spec[0][0]
    return out


def node(g, class_type: str, **inputs):
    return g.node(class_type, **{**defaults(class_type), **inputs})


def row(images) -> Image.Image:
    """A batch [B, H, W, 3] in [0, 1] side by side, enlarged 4× (nearest) so 32 px stay visible."""
    arr = (images.clamp(0, 1).numpy() * 255).astype(np.uint8)
    strip = np.concatenate(list(arr), axis=1)
    im = Image.fromarray(strip)
    return im.resize((im.width * 4, im.height * 4), Image.NEAREST)


def stack(rows: list[tuple[str, Image.Image]]) -> Image.Image:
    """Rows of pictures under their labels, on the frontend's dark background."""
    from PIL import ImageDraw, ImageFont

    pad, label_h = 8, 26
    font = ImageFont.load_default(size=16)
    width = max(im.width for _, im in rows) + 2 * pad
    height = sum(im.height + label_h + pad for _, im in rows) + pad
    out = Image.new("RGB", (width, height), (32, 32, 32))
    draw = ImageDraw.Draw(out)
    y = pad
    for label, im in rows:
        draw.text((pad, y + 4), label, fill=(230, 230, 230), font=font)
        out.paste(im, (pad, y + label_h))
        y += im.height + label_h + pad
    return out


def world(g):
    tw = g.node("SliderSpaceLoadToyWorld")
    pos = g.node("CLIPTextEncode", clip=tw[1], text="a circle")
    neg = g.node("CLIPTextEncode", clip=tw[1], text="")
    # ComfyUI divides by 8; ToyWorld samples in pixel space, so 8× the size gives its 32×32 (3 channels kept)
    latent = g.node("EmptyLatentImage", width=8 * SIZE, height=8 * SIZE, batch_size=SEEDS)
    return tw, pos, neg, latent


def sample(g, tw, model, pos, neg, latent):
    ks = node(g, "KSampler", model=model, positive=pos, negative=neg, latent_image=latent[0], denoise=1.0, **SAMPLE)
    return g.node("VAEDecode", samples=ks[0], vae=tw[2])[0]


def sliders(Graph) -> dict[str, str]:
    g = Graph()
    tw, pos, neg, latent = world(g)
    traj = node(g, "SliderSpaceTrajectorySampler", model=tw[0], clip=tw[1], conditioning=pos[0],
                negative_conditioning=neg[0], prompts="a circle", trajectories=32, width=SIZE, height=SIZE,
                batch_size=32, keep_steps="every step", **SAMPLE)
    emb = node(g, "SliderSpaceClipEmbed", trajectories=traj[0], vae=tw[2], encoder=tw[3], batch_size=64)
    pca = node(g, "SliderSpacePCADecompose", embeddings=emb[0], n_components=8)
    train = node(g, "SliderSpaceTrainSliders", model=tw[0], vae=tw[2], encoder=tw[3], positive=pos[0],
                 basis=pca[0], trajectories=traj[0], n_sliders=4, iterations=200, learning_rate=0.02,
                 sliders_per_step=2)
    apply = node(g, "SliderSpaceApplySliderBank", model=tw[0], bank=train[0], scales="0:2", start_percent=0.0)
    sparse = node(g, "SliderSpaceRandomSparseSliders", model=tw[0], bank=train[0], k=2, scale=2.0,
                  start_percent=0.0, batch_size=SEEDS)
    plain, applied = sample(g, tw, tw[0], pos[0], neg[0], latent), sample(g, tw, apply[0], pos[0], neg[0], latent)
    sparse_img = sample(g, tw, sparse[0], pos[0], neg[0], latent)
    plain_im, applied_im, sparse_im, which = g.run(plain, applied, sparse_img, sparse[1])
    stack([("plain, seeds 0-7", row(plain_im)), ("slider 0 at +2 (Apply Slider Bank), same seeds", row(applied_im))]
          ).save(OUT / "toyworld_apply.png")
    stack([("plain, seeds 0-7", row(plain_im)), ("2 random sliders at 2 per image (Random Sparse Sliders)",
                                                  row(sparse_im))]).save(OUT / "toyworld_sparse.png")
    return {"toyworld_apply.png": "4 sliders trained on 'a circle'; slider 0 at +2 vs plain",
            "toyworld_sparse.png": f"random sparse sliders: {which.splitlines()[:2]} …"}


def elrond(Graph) -> dict[str, str]:
    g = Graph()
    tw, pos, neg, latent = world(g)
    col = node(g, "ELRONDCollectGradients", model=tw[0], clip=tw[1], prompt="a circle", word="circle", negative="",
               images=32, pairs=496, width=SIZE, height=SIZE, batch_size=16, **SAMPLE)
    dec = node(g, "ELRONDDecompose", gradients=col[0])
    edited = node(g, "ELRONDApplyDirections", conditioning=pos[0], clip=tw[1], prompt="a circle", word="circle",
                  directions=dec[0], strengths="0:10")
    plain, steered = sample(g, tw, tw[0], pos[0], neg[0], latent), sample(g, tw, tw[0], edited[0], neg[0], latent)
    plain_im, steered_im, spectrum = g.run(plain, steered, dec[1])
    stack([("plain 'a circle', seeds 0-7", row(plain_im)),
           ("ELROND direction 0 of 'circle' at strength 10, same seeds", row(steered_im))]
          ).save(OUT / "toyworld_elrond.png")
    return {"toyworld_elrond.png": "ELROND: 496 gradients of 'circle', PCA (LID rule), direction 0 at 10 vs plain"}


def sae(Graph) -> dict[str, str]:
    g = Graph()
    tw, pos, neg, latent = world(g)
    col = node(g, "SliderSpaceSAECollectActivations", model=tw[0], positive=pos[0], negative=neg[0],
               block="input_blocks.5.1", samples=32, width=SIZE, height=SIZE, spatial_subsample=0,
               name="thumbnail", **{**SAMPLE, "seed": 100})
    train = node(g, "SliderSpaceSAETrain", activations=col[0], width=256, k=10, lr=1e-3, batch_size=1024, epochs=20)
    cmap = node(g, "SliderSpaceSAEConceptMap", model=tw[0], sae=train[0], positive=pos[0], negative=neg[0], vae=tw[2],
                width=SIZE, height=SIZE, top=4, step=0, **SAMPLE)
    text, sae_obj = g.run(cmap[1], train[0])
    feature = int(re.search(r"feature (\d+)", text).group(1))
    g2 = Graph()
    tw, pos, neg, latent = world(g2)
    steer = node(g2, "SliderSpaceSAESteer", model=tw[0], sae=g2.value(sae_obj), features=f"{feature}:8", mode="global",
                 start_percent=0.0, end_percent=0.4)
    plain, steered = sample(g2, tw, tw[0], pos[0], neg[0], latent), sample(g2, tw, steer[0], pos[0], neg[0], latent)
    plain_im, steered_im = g2.run(plain, steered)
    stack([("plain, seeds 0-7", row(plain_im)),
           (f"SAE Steer: feature {feature} (the map's top one) at 8, steps 0-40 %", row(steered_im))]
          ).save(OUT / "toyworld_sae.png")
    return {"toyworld_sae.png": f"SAE at input_blocks.5.1 (32 runs, 256 features, 20 epochs); feature {feature}"}


def main() -> None:
    from tests.comfy.executor import Graph
    from tests.comfy.host import boot

    boot()
    import tempfile

    import folder_paths

    folder_paths.set_output_directory(tempfile.mkdtemp())  # SAE shards; never the host's output folder
    OUT.mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[1:])
    for part in (sliders, elrond, sae):
        if not only or part.__name__ in only:
            for name, what in part(Graph).items():
                print(f"wrote docs/images/{name}: {what}", flush=True)


if __name__ == "__main__":
    main()
