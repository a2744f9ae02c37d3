"""SAE-concepts nodes end to end, each run by ComfyUI's own executor (tests/comfy/executor.py): collect → train →
save / load (lossless) → concept map → steer (tiny SD1.5; and tiny SDXL at its downsampled style block), progress
and interrupt with nothing half-written, the sdxl-unbox import steering a tiny SDXL and an SDXL-group model
(Segmind Vega: accepted by block and width, not by class name), and capture / steering on a tiny FLUX."""

from __future__ import annotations

import os

import pytest
import torch

from ..core.test_concepts_unbox import write_unbox
from .executor import NodeFailed, run_node
from .families import SDXL_TINY_UNET
from .families import build_model as build
from .host import pack_module
from .test_concepts import STEER_NAME, STEPS, fails, sample, steer
from .test_discovery import SIZE
from .tiny_models import fill_

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores

SAMPLING = dict(steps=STEPS, cfg=5.0, sampler_name="euler", scheduler="normal", width=SIZE, height=SIZE)


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


def collect(model, pos, neg, block="middle_block.1", capture="both", start=0.0, end=1.0, samples=3, seed=11,
            subsample=16, dtype="float32", name="acts"):
    return run_node("SliderSpaceSAECollectActivations", 2, model=model, positive=pos, negative=neg, block=block,
                    capture=capture, start_percent=start, end_percent=end, samples=samples, seed=seed,
                    spatial_subsample=subsample, store_dtype=dtype, name=name, **SAMPLING)


def train(acts, width=640, k=8, auxk=32, lr=1e-3, batch_size=64, epochs=2, seed=0):
    return run_node("SliderSpaceSAETrain", 3, activations=acts, width=width, k=k, auxk=auxk, lr=lr,
                    batch_size=batch_size, epochs=epochs, seed=seed)


def concept_map(model, sae, pos, neg, step=0, top=4, vae=None, seed=5):
    inputs = dict(model=model, sae=sae, positive=pos, negative=neg, seed=seed, step=step, top=top, **SAMPLING)
    if vae is not None:
        inputs["vae"] = vae
    return run_node("SliderSpaceSAEConceptMap", 2, **inputs)


def save_then_load(sae, prefix="tiny sae"):
    name = run_node("SliderSpaceSaveSAE", 1, sae=sae, filename_prefix=prefix)[0]
    return name, run_node("SliderSpaceLoadSAE", 1, file=name)[0]


def _texts(comfy, tiny):
    C = comfy["classes"]
    with torch.inference_mode():
        return C["CLIPTextEncode"]().encode(tiny.clip, "a dog")[0], C["CLIPTextEncode"]().encode(tiny.clip, "")[0]


def test_collect_train_save_load_map_steer(comfy, tiny, dirs):
    pos, neg = _texts(comfy, tiny)
    blocks = run_node("SliderSpaceSAEListBlocks", model=tiny.model)[0]
    assert "middle_block.1  (width 320)" in blocks
    acts, summary = collect(tiny.model, pos, neg)
    assert acts.rows == 3 * STEPS * 2 * 16 and acts.block == "middle_block.1" and "rows" in summary
    assert os.path.dirname(acts.folder).endswith("sliderspace_activations")
    prov = acts.provenance()
    assert sorted(set(prov["sample"].tolist())) == [0, 1, 2] and sorted(set(prov["cond"].tolist())) == [0, 1]
    again = collect(tiny.model, pos, neg)[0]
    assert again.folder != acts.folder and torch.equal(torch.cat(list(again)), torch.cat(list(acts)))  # seeded
    cond_only = collect(tiny.model, pos, neg, capture="cond", start=0.5, samples=1, subsample=0, dtype="float16",
                        name="late")[0]
    p = cond_only.provenance()
    sigma_start = tiny.model.get_model_object("model_sampling").percent_to_sigma(0.5)
    assert set(p["cond"].tolist()) == {0} and float(p["sigma"].max()) <= sigma_start
    assert cond_only.rows % (SIZE // 8) ** 2 == 0

    sae, plot, text = train(acts)  # inside the executor's inference mode: the node must leave it to train
    assert sae.block == "middle_block.1" and sae.n_features == 640 and "explained variance" in text
    assert plot.ndim == 4 and plot.shape[-1] == 3
    assert float(sae.feature_mean.max()) > 0
    name, loaded = save_then_load(sae)
    assert name == "tiny sae_00001.safetensors"
    assert torch.equal(loaded.sae.W_dec, sae.sae.W_dec) and loaded.block == sae.block

    maps, feats = concept_map(tiny.model, loaded, pos, neg, vae=tiny.vae)
    assert maps.ndim == 4 and feats.count("feature") == 4
    top = int(feats.split(":")[0].split()[-1])
    steered = steer(comfy, tiny.model, loaded, f"{top}:10")
    assert not torch.equal(sample(tiny, (pos, neg), steered)[0], sample(tiny, (pos, neg), tiny.model)[0])
    fails(lambda: concept_map(tiny.model, loaded, pos, neg, step=STEPS), "SAE Concept Map", "step")
    fails(lambda: collect(tiny.model, pos, neg, block="input_blocks.8.1", samples=1),
          "SAE Collect Activations", "block")
    assert "'nope.safetensors' is not in models/sae" in fails(
        lambda: run_node("SliderSpaceLoadSAE", file="nope.safetensors"), "SAE Load", "file")


def test_steering_is_bitwise_equal_after_save_and_load(comfy, tiny, dirs):
    """Save SAE → Load SAE keeps the per-feature statistics exactly (tensors in the file, not 6-digit text)."""
    pos, neg = _texts(comfy, tiny)
    sae_mod, topk = pack_module("sliderspace_core.concepts.sae"), pack_module("sliderspace_core.decompose.topk_sae")
    mean = torch.rand(640, generator=torch.Generator().manual_seed(8)) * 30 + 0.5  # not 6-digit numbers
    c = sae_mod.ConceptSAE(topk.TopKSAE.create(320, topk.TopKSAEConfig(k=8, n_latents=640, seed=4)),
                           "middle_block.1", mean, mean / 3)
    loaded = save_then_load(c)[1]
    assert torch.equal(loaded.feature_mean, c.feature_mean) and torch.equal(loaded.feature_std, c.feature_std)
    before = sample(tiny, (pos, neg), steer(comfy, tiny.model, c, "3:8, 17:-6", apply_to="cfg"))[0]
    after = sample(tiny, (pos, neg), steer(comfy, tiny.model, loaded, "3:8, 17:-6", apply_to="cfg"))[0]
    assert torch.equal(before, after)


def test_collect_and_train_report_progress_and_stop_on_interrupt_leaving_nothing(comfy, tiny, dirs, tmp_path):
    import comfy.model_management as mm
    from comfy.utils import set_progress_bar_global_hook

    pos, neg = _texts(comfy, tiny)
    acts = collect(tiny.model, pos, neg, samples=2)[0]
    calls = []

    def hook(value, total, preview, node_id=None):
        calls.append((value, total))
        if len(calls) == 3:
            mm.interrupt_current_processing(True)  # the user presses Cancel while the node runs

    set_progress_bar_global_hook(hook)
    out = tmp_path / "output" / "sliderspace_activations"
    kept = sorted(os.listdir(out))
    try:
        for run in (lambda: collect(tiny.model, pos, neg, samples=4, name="stopped"),
                    lambda: train(acts, batch_size=8, epochs=5)):
            calls.clear()
            with pytest.raises(NodeFailed) as e:
                run()
            assert e.value.exception_type == "InterruptProcessingException"
            assert len(calls) == 3 and calls[0][1] >= calls[-1][0] and calls[-1][0] < calls[-1][1]
    finally:
        set_progress_bar_global_hook(None)
        mm.interrupt_current_processing(False)
    assert sorted(os.listdir(out)) == kept  # the stopped collection left no partial set
    assert os.listdir(dirs) == []


def _sdxl_inputs():
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(1, 77, 2048, generator=g)
    pooled = torch.randn(1, 1280, generator=g)
    meta = {"pooled_output": pooled, "width": SIZE, "height": SIZE}
    return [[cond, meta]], [[torch.zeros_like(cond), {"pooled_output": torch.zeros_like(pooled), "width": SIZE,
                                                      "height": SIZE}]]


UNBOX_RUN = "unet.up_blocks.0.attentions.1_k8_hidden256_auxk32_bs4096_lr0.0001"


def test_unbox_import_steers_a_tiny_sdxl_and_survives_a_round_trip(comfy, tiny, dirs):
    mp = build("SDXL", 0)
    final, _ = write_unbox(str(dirs), run=UNBOX_RUN, n=256, d=128, k=8)
    c, text = run_node("SliderSpaceImportUnboxSAE", 2, checkpoint=f"{UNBOX_RUN}/final")
    assert c.block == "output_blocks.1.1" and "sdxl-unbox" in text
    pos, neg = _sdxl_inputs()
    vanilla, _ = sample(tiny, (pos, neg), mp)
    assert torch.equal(sample(tiny, (pos, neg), steer(comfy, mp, c, "5:0"))[0], vanilla)
    steered = sample(tiny, (pos, neg), steer(comfy, mp, c, "5:10, 9:4"))[0]
    assert not torch.equal(steered, vanilla)
    assert torch.equal(sample(tiny, (pos, neg), steer(comfy, mp, save_then_load(c)[1], "5:10, 9:4"))[0], steered)
    # on SD1.5 the block exists at another width: refused, naming both widths
    assert "width 128 but output_blocks.1.1 has width 320" in fails(lambda: steer(comfy, tiny.model, c), STEER_NAME,
                                                                    "sae")
    canary = str(dirs / "CANARY")
    from ..core.test_concepts_unbox import _Canary

    torch.save({"state_dict": {"encoder.weight": _Canary(canary)}}, os.path.join(final, "state_dict.pth"))
    fails(lambda: run_node("SliderSpaceImportUnboxSAE", checkpoint=f"{UNBOX_RUN}/final"),
          "SAE Import sdxl-unbox", "checkpoint")
    assert not os.path.exists(canary)


def _segmind_vega():
    """A tiny SDXL-group model whose ComfyUI class is Segmind_Vega (same blocks and widths as the tiny SDXL)."""
    import comfy.model_patcher
    import comfy.supported_models

    base = comfy.supported_models.Segmind_Vega(dict(SDXL_TINY_UNET)).get_model({})
    fill_(base.diffusion_model, 0)
    base.diffusion_model.eval()
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)


def test_an_sdxl_unbox_sae_steers_any_model_with_its_block_at_its_width(comfy, tiny, dirs):
    """Checked by block and width, not by the model's class name (issue 25 item 7)."""
    vega = _segmind_vega()
    assert type(vega.model.model_config).__name__ == "Segmind_Vega"
    write_unbox(str(dirs), run=UNBOX_RUN, n=256, d=128, k=8)
    c = run_node("SliderSpaceImportUnboxSAE", checkpoint=f"{UNBOX_RUN}/final")[0]
    pos, neg = _sdxl_inputs()
    vanilla = sample(tiny, (pos, neg), vega)[0]
    assert not torch.equal(sample(tiny, (pos, neg), steer(comfy, vega, c, "5:10"))[0], vanilla)
    maps, feats = concept_map(vega, c, pos, neg, top=3)
    assert maps.ndim == 4 and feats.count("feature") == 3
    # an SAE for a block the model lacks: a clear error naming the block and listing the model's blocks
    sae_mod = pack_module("sliderspace_core.concepts.sae")
    absent = sae_mod.ConceptSAE(c.sae, "output_blocks.7.1", c.feature_mean, c.feature_std)
    msg = fails(lambda: steer(comfy, vega, absent), STEER_NAME, "sae")
    assert "no transformer block 'output_blocks.7.1'" in msg and "output_blocks.1.1" in msg


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
    pos, neg = _sdxl_inputs()
    block = "output_blocks.1.1"
    blocks = run_node("SliderSpaceSAEListBlocks", model=mp)[0]
    assert f"{block}  (width 128)  [style: up_blocks.0.attentions.1]" in blocks
    acts = collect(mp, pos, neg, block=block, samples=2, seed=7, name="sdxl")[0]
    assert acts.block == block and acts.d == 128 and acts.rows == 2 * STEPS * 2 * 16
    assert (acts.height, acts.width) == (SIZE // 16, SIZE // 16)  # the block's own (downsampled) map, not the latent's
    assert bool(torch.isfinite(torch.cat(list(acts))).all())
    sae = train(acts, width=256, epochs=1)[0]
    assert (sae.block, sae.d, sae.n_features, sae.sae.metadata["family"]) == (block, 128, 256, "SDXL")
    assert bool(torch.isfinite(sae.sae.W_dec).all()) and float(sae.feature_mean.max()) > 0
    maps, feats = concept_map(mp, sae, pos, neg, top=3, vae=vae)
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
    assert f"width 320 but {block} has width 128" in fails(lambda: steer(comfy, mp, wide), STEER_NAME, "sae")
    fails(lambda: steer(comfy, tiny.model, sae), STEER_NAME, "sae")  # the SDXL block's width differs on SD1.5
    fails(lambda: collect(mp, pos, neg, block="input_blocks.8.1", samples=1, seed=0),
          "SAE Collect Activations", "block")
