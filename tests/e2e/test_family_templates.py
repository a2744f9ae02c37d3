"""The SDXL and FLUX templates, end to end, headless, on the tiny model of their family.

Each template is converted to an API prompt by the real frontend (as for every example workflow), then run in
this process through ComfyUI's own ``validate_prompt`` + ``PromptExecutor`` (tests/comfy/executor.py) with its
loader nodes swapped for the tiny in-process models of its family (tests/comfy/families.py): a checkpoint,
UNet, text-encoder, VAE or CLIP-vision file of the real size (CLIP-G, T5-XXL) cannot be built in CI. Counts and
sizes are shrunk as in test_workflows.SHRINK; every other input and every link is the frontend's.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from ..comfy.executor import Graph
from .test_workflows import SHRINK, of_type
from .test_workflows import shrink as shrink_with

FAMILY_OF = {"sliderspace_discover_sdxl.json": "SDXL", "sliderspace_apply_sdxl.json": "SDXL",
             "elrond_directions_sdxl.json": "SDXL", "sae_concepts_sdxl.json": "SDXL",
             "sliderspace_discover_flux.json": "Flux", "sliderspace_apply_flux.json": "Flux"}
LOADERS = {"CheckpointLoaderSimple": ("model", "clip", "vae"), "UNETLoader": ("model",),
           "DualCLIPLoader": ("clip",), "VAELoader": ("vae",), "CLIPVisionLoader": ("clip_vision",)}
TINY = {**SHRINK, "EmptySD3LatentImage": {"width": 64, "height": 64},
        "SliderSpaceTrainSliders": {**SHRINK["SliderSpaceTrainSliders"], "n_sliders": 2},  # the grid shows 0-1
        # the tiny SDXL UNet has two levels: its one down-path transformer block plays input_blocks.8.1
        "SliderSpaceSAECollectActivations": {**SHRINK["SliderSpaceSAECollectActivations"], "block": "input_blocks.3.1"}}


@pytest.fixture(scope="module")
def tiny_families(tmp_path_factory):
    """The tiny SDXL and FLUX models in this process, and the pack's model folders pointed at temp folders."""
    from ..comfy.host import boot, pack_module

    comfy = boot()
    import asyncio
    import os

    import folder_paths

    extras = os.path.join(os.path.dirname(comfy["nodes"].__file__), "comfy_extras")
    for module in ("nodes_flux.py", "nodes_sd3.py"):  # FluxGuidance, EmptySD3LatentImage (not in nodes.py)
        if not asyncio.run(comfy["nodes"].load_custom_node(os.path.join(extras, module), module_parent="comfy_extras")):
            pytest.fail(f"ComfyUI's comfy_extras/{module} did not load")

    from ..comfy.families import build_family
    from ..comfy.tiny_models import build_clip_vision

    pack_module("nodes.sliderspace.banks")  # registers the pack's folders
    saved = {k: folder_paths.folder_names_and_paths[k] for k in ("sliderspace", "sae", "elrond")
             if k in folder_paths.folder_names_and_paths}
    out_dir, temp_dir = folder_paths.get_output_directory(), folder_paths.get_temp_directory()
    for kind, (_, exts) in saved.items():
        folder_paths.folder_names_and_paths[kind] = ([str(tmp_path_factory.mktemp(kind))], exts)
    folder_paths.set_output_directory(str(tmp_path_factory.mktemp("output")))
    folder_paths.set_temp_directory(str(tmp_path_factory.mktemp("temp")))
    cv = build_clip_vision()
    fams = {f: build_family(f) for f in ("SDXL", "Flux")}
    yield {f: {"model": m.model, "clip": m.clip, "vae": m.vae, "clip_vision": cv} for f, m in fams.items()}
    folder_paths.folder_names_and_paths.update(saved)
    folder_paths.set_output_directory(out_dir)
    folder_paths.set_temp_directory(temp_dir)


def shrink(prompt: dict) -> dict:
    return shrink_with(prompt, table=TINY)


def replace_node(prompt: dict, node_id: str, links: list) -> None:
    """Remove ``node_id``; every input linked to its output i now takes ``links[i]``."""
    del prompt[node_id]
    for node in prompt.values():
        for name, v in node["inputs"].items():
            if isinstance(v, list) and len(v) == 2 and v[0] == node_id:
                node["inputs"][name] = links[v[1]]


@pytest.mark.parametrize("name", sorted(FAMILY_OF))
def test_family_template_runs_on_its_tiny_model(api_prompts, tiny_families, name):
    tiny = tiny_families[FAMILY_OF[name]]
    prompt = shrink(api_prompts[name]["prompt"])
    g = Graph()
    g._ids = itertools.count(10_000)  # value nodes must not take the template's node ids
    loaders = [i for i, n in prompt.items() if n["class_type"] in LOADERS]
    assert loaders, f"{name}: no loader to swap"
    for i in loaders:
        replace_node(prompt, i, [g.value(tiny[kind]) for kind in LOADERS[prompt[i]["class_type"]]])
    for i in of_type(prompt, "SliderSpaceLoadSliderBank"):  # the bank its discover template saves, made here
        replace_node(prompt, i, [g.value(_bank(tiny["model"]))])
    g.prompt.update(prompt)
    decoded = of_type(prompt, "VAEDecode") + of_type(prompt, "SliderSpaceSliderGrid")
    images = g.run(*[[i, 0] for i in decoded])
    assert images, f"{name}: nothing decoded"
    for im in images:
        assert im.ndim == 4 and im.shape[-1] == 3 and bool(torch.isfinite(im).all()) and float(im.std()) > 0
    if name.startswith("sliderspace_discover"):  # ends in a Slider Grid of the sliders it trained
        [grid] = of_type(prompt, "SliderSpaceSliderGrid")
        assert prompt[grid]["inputs"]["bank"][0] in of_type(prompt, "SliderSpaceTrainSliders")
        cols = len(TINY["SliderSpaceSliderGrid"]["scales"].split(","))
        assert images[-1].shape[2] >= cols * TINY["SliderSpaceSliderGrid"]["width"], images[-1].shape
    else:  # the edited and the plain sample, same seed and prompt
        edited, plain = images[0], images[1]
        assert edited.shape == plain.shape
        assert float((edited - plain).abs().max()) > 0, f"{name}: the edit changed nothing"


def _bank(model):
    """A random 2-slider bank over the model's `auto` targets (what Load Slider Bank would give)."""
    from ..comfy.host import pack_module

    ad, bk = pack_module("sliderspace_core.sliderspace.adapters"), pack_module("sliderspace_core.sliderspace.bank")
    fam = pack_module("nodes.glue.family")
    preset = fam.resolve_preset("auto", fam.model_family(model))
    modules = fam.target_modules(model.model.diffusion_model, preset)
    adapters = ad.SliderAdapters({n: (m.out_features, m.in_features) for n, m in modules.items()}, 2, seed=5)
    with torch.no_grad():
        for p in adapters.up.values():
            p.normal_(0, 0.2, generator=torch.Generator().manual_seed(6))
    return bk.SliderBank(adapters.export_sliders(), bk.BankMeta(**fam.model_facts(model, modules)))
