"""SAE-concepts nodes end to end: collect → train → save / load → concept map → steer (tiny SD1.5; and tiny
SDXL at its downsampled style block), the sdxl-unbox import steering a tiny SDXL, and capture / steering on a
tiny FLUX."""

from __future__ import annotations

import os

import pytest
import torch

from ..core.test_concepts_unbox import write_unbox
from .families import build_model as build
from .host import pack_module
from .test_concepts import STEPS, sample, steer
from .test_discovery import SIZE, _out, _raises

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


@pytest.fixture
def dirs(comfy, tmp_path, monkeypatch):
    import folder_paths

    pack_module("nodes.glue.folders")
    path = tmp_path / "sae"
    path.mkdir()
    exts = folder_paths.folder_names_and_paths["sae"][1]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "sae", ([str(path)], exts))
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path / "output"))
    return path


def run(comfy, node_id, *args, **kw):
    with torch.inference_mode():
        return _out(comfy["classes"][node_id].execute(*args, **kw))


def test_collect_train_save_load_map_steer(comfy, tiny, dirs):
    C = comfy["classes"]
    with torch.inference_mode():
        pos = C["CLIPTextEncode"]().encode(tiny.clip, "a dog")[0]
        neg = C["CLIPTextEncode"]().encode(tiny.clip, "")[0]
    blocks = run(comfy, "SliderSpaceSAEListBlocks", tiny.model)[0]
    assert "middle_block.1  (width 320)" in blocks
    acts, summary = run(comfy, "SliderSpaceSAECollectActivations", tiny.model, pos, neg, "middle_block.1", "both",
                        0.0, 1.0, 3, 11, STEPS, 5.0, "euler", "normal", SIZE, SIZE, 16, "float32", "acts")
    assert acts.rows == 3 * STEPS * 2 * 16 and acts.block == "middle_block.1" and "rows" in summary
    assert os.path.dirname(acts.folder).endswith("sliderspace_activations")
    prov = acts.provenance()
    assert sorted(set(prov["sample"].tolist())) == [0, 1, 2] and sorted(set(prov["cond"].tolist())) == [0, 1]
    again = run(comfy, "SliderSpaceSAECollectActivations", tiny.model, pos, neg, "middle_block.1", "both", 0.0, 1.0,
                3, 11, STEPS, 5.0, "euler", "normal", SIZE, SIZE, 16, "float32", "acts")[0]
    assert again.folder != acts.folder and torch.equal(torch.cat(list(again)), torch.cat(list(acts)))  # seeded
    cond_only = run(comfy, "SliderSpaceSAECollectActivations", tiny.model, pos, neg, "middle_block.1", "cond", 0.5,
                    1.0, 1, 11, STEPS, 5.0, "euler", "normal", SIZE, SIZE, 0, "float16", "late")[0]
    p = cond_only.provenance()
    sigma_start = tiny.model.get_model_object("model_sampling").percent_to_sigma(0.5)
    assert set(p["cond"].tolist()) == {0} and float(p["sigma"].max()) <= sigma_start
    assert cond_only.rows % (SIZE // 8) ** 2 == 0

    sae, plot, text = run(comfy, "SliderSpaceSAETrain", acts, 640, 8, 32, 1e-3, 64, 2, 0)
    assert sae.block == "middle_block.1" and sae.n_features == 640 and "explained variance" in text
    assert plot.ndim == 4 and plot.shape[-1] == 3
    assert float(sae.feature_mean.max()) > 0
    name = run(comfy, "SliderSpaceSaveSAE", sae, "tiny sae")[0]
    assert name == "tiny sae_00001.safetensors"
    loaded = run(comfy, "SliderSpaceLoadSAE", name)[0]
    assert torch.equal(loaded.sae.W_dec, sae.sae.W_dec) and loaded.block == sae.block

    maps, feats = run(comfy, "SliderSpaceSAEConceptMap", tiny.model, loaded, pos, neg, 5, STEPS, 5.0, "euler",
                      "normal", SIZE, SIZE, 0, 4, "", tiny.vae)
    assert maps.ndim == 4 and feats.count("feature") == 4
    top = int(feats.split(":")[0].split()[-1])
    steered = steer(comfy, tiny.model, loaded, f"{top}:10")
    assert not torch.equal(sample(tiny, (pos, neg), steered)[0], sample(tiny, (pos, neg), tiny.model)[0])
    _raises(lambda: run(comfy, "SliderSpaceSAEConceptMap", tiny.model, loaded, pos, neg, 5, STEPS, 5.0, "euler",
                        "normal", SIZE, SIZE, STEPS, 4), "SliderSpace SAE Concept Map", "step")
    _raises(lambda: run(comfy, "SliderSpaceSAECollectActivations", tiny.model, pos, neg, "input_blocks.8.1", "both",
                        0.0, 1.0, 1, 0, STEPS, 5.0, "euler", "normal", SIZE, SIZE, 16, "float32", "x"),
            "SliderSpace SAE Collect Activations", "block")
    _raises(lambda: run(comfy, "SliderSpaceLoadSAE", "nope.safetensors"), "SliderSpace Load SAE", "file")


def _sdxl_inputs(model):
    import comfy.conds  # noqa: F401

    g = torch.Generator().manual_seed(0)
    cond = torch.randn(1, 77, 2048, generator=g)
    pooled = torch.randn(1, 1280, generator=g)
    meta = {"pooled_output": pooled, "width": SIZE, "height": SIZE}
    return [[cond, meta]], [[torch.zeros_like(cond), {"pooled_output": torch.zeros_like(pooled), "width": SIZE,
                                                      "height": SIZE}]]


def test_unbox_import_steers_a_tiny_sdxl(comfy, tiny, dirs):
    mp = build("SDXL", 0)
    final, _ = write_unbox(str(dirs), run="unet.up_blocks.0.attentions.1_k8_hidden256_auxk32_bs4096_lr0.0001",
                           n=256, d=128, k=8)
    choice = "unet.up_blocks.0.attentions.1_k8_hidden256_auxk32_bs4096_lr0.0001/final"
    c, text = run(comfy, "SliderSpaceImportUnboxSAE", choice)
    assert c.block == "output_blocks.1.1" and "sdxl-unbox" in text
    pos, neg = _sdxl_inputs(mp)
    vanilla, _ = sample(tiny, (pos, neg), mp)
    assert torch.equal(sample(tiny, (pos, neg), steer(comfy, mp, c, "5:0"))[0], vanilla)
    assert not torch.equal(sample(tiny, (pos, neg), steer(comfy, mp, c, "5:10, 9:4"))[0], vanilla)
    # the SDXL SAE refused on an SD1.5 model; a pickle that would run code refused at import
    _raises(lambda: steer(comfy, tiny.model, c), "SliderSpace SAE Steer", "sae")
    canary = str(dirs / "CANARY")
    from ..core.test_concepts_unbox import _Canary

    torch.save({"state_dict": {"encoder.weight": _Canary(canary)}}, os.path.join(final, "state_dict.pth"))
    _raises(lambda: run(comfy, "SliderSpaceImportUnboxSAE", choice), "SliderSpace Import sdxl-unbox SAE",
            "checkpoint")
    assert not os.path.exists(canary)


@pytest.mark.parametrize("block", ["double_blocks.0", "single_blocks.0"])
def test_flux_blocks_capture_exactly_and_steer(comfy, tiny, block):
    hooks = pack_module("nodes.glue.hooks")
    sae_mod, topk = pack_module("sliderspace_core.concepts.sae"), pack_module("sliderspace_core.decompose.topk_sae")
    mp = build("Flux", 2)
    g = torch.Generator().manual_seed(1)
    pos = [[torch.randn(1, 8, 64, generator=g), {"pooled_output": torch.randn(1, 32, generator=g), "guidance": 3.5}]]
    neg = [[torch.zeros(1, 8, 64), {"pooled_output": torch.zeros(1, 32), "guidance": 3.5}]]
    vanilla, _ = sample(tiny, (pos, neg), mp)
    seen = []
    m = hooks.with_block_hook(mp, hooks.CAPTURE_KEY, block,
                              lambda o, i, lab, s, grid: seen.append(((o - i).clone(), grid)))
    assert torch.equal(sample(tiny, (pos, neg), m)[0], vanilla)
    assert seen and seen[0][1] == (SIZE // 16, SIZE // 16) and seen[0][0].shape[1:] == ((SIZE // 16) ** 2, 64)
    assert float(seen[0][0].abs().max()) > 0  # the cloned input keeps Δ from being zeroed by in-place adds
    c = sae_mod.ConceptSAE(topk.TopKSAE.create(64, topk.TopKSAEConfig(k=4, n_latents=128, seed=2)), block,
                           torch.ones(128), torch.ones(128))
    c.sae.metadata = {"family": "Flux"}
    assert torch.equal(sample(tiny, (pos, neg), steer(comfy, mp, c, "3:0"))[0], vanilla)
    assert not torch.equal(sample(tiny, (pos, neg), steer(comfy, mp, c, "3:4"))[0], vanilla)
    assert not any(m_._forward_hooks for m_ in mp.model.diffusion_model.modules())


def test_sdxl_collect_train_map_steer_through_the_nodes(comfy, tiny, dirs):
    """The whole SAE graph on a tiny SDXL-shaped model at SDXL's style block (output_blocks.1.1, 128 wide here)."""
    from .families import build_vae

    mp, vae = build("SDXL", 0), build_vae("SDXL")
    pos, neg = _sdxl_inputs(mp)
    block = "output_blocks.1.1"
    blocks = run(comfy, "SliderSpaceSAEListBlocks", mp)[0]
    assert f"{block}  (width 128)  [style: up_blocks.0.attentions.1]" in blocks
    acts = run(comfy, "SliderSpaceSAECollectActivations", mp, pos, neg, block, "both", 0.0, 1.0, 2, 7, STEPS, 5.0,
               "euler", "normal", SIZE, SIZE, 16, "float32", "sdxl")[0]
    assert acts.block == block and acts.d == 128 and acts.rows == 2 * STEPS * 2 * 16
    assert (acts.height, acts.width) == (SIZE // 16, SIZE // 16)  # the block's own (downsampled) map, not the latent's
    assert bool(torch.isfinite(torch.cat(list(acts))).all())
    sae = run(comfy, "SliderSpaceSAETrain", acts, 256, 8, 32, 1e-3, 64, 1, 0)[0]
    assert (sae.block, sae.d, sae.n_features, sae.sae.metadata["family"]) == (block, 128, 256, "SDXL")
    assert bool(torch.isfinite(sae.sae.W_dec).all()) and float(sae.feature_mean.max()) > 0
    maps, feats = run(comfy, "SliderSpaceSAEConceptMap", mp, sae, pos, neg, 5, STEPS, 5.0, "euler", "normal", SIZE,
                      SIZE, 0, 3, "", vae)
    assert maps.ndim == 4 and maps.shape[-1] == 3 and bool(torch.isfinite(maps).all()) and feats.count("feature") == 3
    top = int(feats.split(":")[0].split()[-1])
    vanilla = sample(tiny, (pos, neg), mp)[0]
    assert torch.equal(sample(tiny, (pos, neg), steer(comfy, mp, sae, f"{top}:0"))[0], vanilla)
    steered = sample(tiny, (pos, neg), steer(comfy, mp, sae, f"{top}:10"))[0]
    assert steered.shape == vanilla.shape and bool(torch.isfinite(steered).all()) and not torch.equal(steered, vanilla)
    mask = torch.zeros(SIZE, SIZE)
    mask[: SIZE // 2] = 1.0  # area-resized to the block's 4x4 grid
    spatial = sample(tiny, (pos, neg), steer(comfy, mp, sae, f"{top}:10", mode="spatial", mask=mask))[0]
    assert bool(torch.isfinite(spatial).all()) and not torch.equal(spatial, vanilla)
    # the width check reads the SDXL model's block: an SAE of another width at that block is refused
    sae_mod, topk = pack_module("sliderspace_core.concepts.sae"), pack_module("sliderspace_core.decompose.topk_sae")
    wide = sae_mod.ConceptSAE(topk.TopKSAE.create(320, topk.TopKSAEConfig(k=4, n_latents=640)), block,
                              torch.ones(640), torch.ones(640))
    with pytest.raises(ValueError, match=f"width 320 but {block} has width 128"):
        steer(comfy, mp, wide)
    _raises(lambda: steer(comfy, tiny.model, sae), "SliderSpace SAE Steer", "sae")  # an SDXL SAE on SD1.5
    _raises(lambda: run(comfy, "SliderSpaceSAECollectActivations", mp, pos, neg, "input_blocks.8.1", "both", 0.0,
                        1.0, 1, 0, STEPS, 5.0, "euler", "normal", SIZE, SIZE, 16, "float32", "x"),
            "SliderSpace SAE Collect Activations", "block")
