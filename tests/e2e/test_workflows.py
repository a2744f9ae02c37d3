"""Every example workflow on a real ComfyUI server: converted by the real frontend, queued over HTTP, done.

The prompts are exactly what the frontend builds from the UI-format files. To keep CI at a few minutes on
CPU, this test then shrinks counts in the converted prompt (trajectories, images, pairs, samples, steps,
iterations, components, SAE width, resolution; see SHRINK) — the graph, the links and every other input stay as
the frontend built them, except ELROND Decompose's C (see SHRINK).
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

from ..live.fixtures import example_workflows
from ..live.models import BANK, BANKS, CHECKPOINT, CLIP_VISION

SHRINK: dict[str, dict] = {
    "SliderSpaceTrajectorySampler": {"trajectories": 5, "steps": 3, "width": 64, "height": 64, "batch_size": 5,
                                     "keep_steps": "final only"},
    "SliderSpacePCADecompose": {"n_components": 3},
    "SliderSpaceTrainSliders": {"n_sliders": 1, "iterations": 2, "sliders_per_step": 1},
    "SliderSpaceSliderGrid": {"steps": 2, "width": 64, "height": 64, "sliders": "0-1", "scales": "-1, 0, 1"},
    "ELRONDCollectGradients": {"images": 4, "pairs": 6, "steps": 2, "width": 64, "height": 64, "batch_size": 6},
    # With 6 gradients the LID rule at C = 2.5 may keep no component; with C < 1 it keeps at least one (the top
    # explained-variance ratio of N rows is >= 1/N > C/N), so the LID path itself still runs.
    "ELRONDDecompose": {"c": 0.9},
    "SliderSpaceSAECollectActivations": {"samples": 2, "steps": 2, "width": 64, "height": 64, "spatial_subsample": 16},
    "SliderSpaceSAETrain": {"width": 16, "k": 4, "auxk": 8, "batch_size": 32},
    "SliderSpaceSAEConceptMap": {"steps": 2, "width": 64, "height": 64, "top": 4},
    "KSampler": {"steps": 2},
    "EmptyLatentImage": {"width": 64, "height": 64},
}
NOT_SHRUNK = {"toyworld_sliders.json"}
"""Workflows on ToyWorld run exactly as shipped: the model is tiny, and their checks need real training."""
FAMILY_TEMPLATES = {"sliderspace_discover_sdxl.json", "sliderspace_apply_sdxl.json", "elrond_directions_sdxl.json",
                    "sae_concepts_sdxl.json", "sliderspace_discover_flux.json", "sliderspace_apply_flux.json"}
"""SDXL / FLUX templates: their files cannot exist on the test server; test_family_templates.py runs them."""
NAMES = [p.name for p in example_workflows() if p.name not in FAMILY_TEMPLATES]
EDITED_VS_PLAIN = {"elrond_directions.json": ("elrond_directions", "elrond_plain"),
                   "sae_concepts.json": ("sae_steered", "sae_plain")}
"""Workflows that sample the same seed with and without the edit: SaveImage filename prefixes (edited, plain)."""
SAVED_FILES = {"elrond_directions.json": ("elrond", "ELRONDSaveDirections"),
               "sae_concepts.json": ("sae", "SliderSpaceSaveSAE")}
"""Workflows that save a model file: (models/ subfolder, saving node)."""


def shrink(prompt: dict, name: str = "", table: dict | None = None, strict: bool = True) -> dict:
    """``prompt`` with the counts of ``table`` (default SHRINK) set; ``strict``: every listed input must exist
    (False for prompts saved by an older version, which may lack a newer input)."""
    out = copy.deepcopy(prompt)
    if name in NOT_SHRUNK:
        return out
    for node in out.values():
        for k, v in (SHRINK if table is None else table).get(node["class_type"], {}).items():
            if k in node["inputs"] or strict:
                assert k in node["inputs"], f"{node['class_type']} has no input {k} (SHRINK is stale)"
                node["inputs"][k] = v
    return out


def of_type(prompt: dict, class_type: str) -> list[str]:
    return [i for i, n in prompt.items() if n["class_type"] == class_type]


def test_there_are_the_seven_example_workflows():
    assert {"sliderspace_discover.json", "sliderspace_apply.json", "sliderspace_sparse_diversity.json",
            "sliderspace_grid.json", "elrond_directions.json", "sae_concepts.json",
            "toyworld_sliders.json"} <= set(NAMES)
    for p in example_workflows():
        assert p.with_suffix(".jpg").is_file(), f"{p.name} has no same-name thumbnail"


def test_server_offers_the_workflows_as_templates(comfy_server):
    status, templates = comfy_server.get("/api/workflow_templates")
    assert status == 200
    assert sorted(templates.get("comfyui-sliderspace", [])) == sorted(p.stem for p in example_workflows())


@pytest.mark.parametrize("name", NAMES)
def test_frontend_converts_with_the_documented_file_names(api_prompts, name):
    prompt = api_prompts[name]["prompt"]
    assert prompt, f"{name}: the frontend produced an empty prompt"
    for i in of_type(prompt, "CheckpointLoaderSimple"):
        assert prompt[i]["inputs"]["ckpt_name"] == CHECKPOINT
    for i in of_type(prompt, "CLIPVisionLoader"):
        assert prompt[i]["inputs"]["clip_name"] == CLIP_VISION
    for i in of_type(prompt, "SliderSpaceLoadSliderBank"):
        assert prompt[i]["inputs"]["file"] == BANK
    for i in of_type(prompt, "ELRONDApplyDirections"):  # the prompt is typed once: one String node feeds them all
        link = prompt[i]["inputs"]["prompt"]
        assert isinstance(link, list) and prompt[link[0]]["class_type"] == "PrimitiveStringMultiline"
        assert "conditioning" not in prompt[i]["inputs"]  # Apply encodes the prompt itself
        for j in of_type(prompt, "ELRONDCollectGradients"):
            assert prompt[j]["inputs"]["prompt"] == link
        assert any(n["inputs"].get("text") == link for n in prompt.values() if n["class_type"] == "CLIPTextEncode")


DISCOVER = sorted(p.name for p in example_workflows() if p.name.startswith("sliderspace_discover"))


@pytest.mark.parametrize("name", DISCOVER)
def test_discover_templates_take_the_prompt_once(api_prompts, name):
    """One prompt node feeds the Trajectory Sampler's conditioning and Train Sliders' positive (and the grid's,
    where there is one); the sampler's `prompts` text is then a one-line label, which the node requires."""
    prompt = api_prompts[name]["prompt"]
    [traj] = of_type(prompt, "SliderSpaceTrajectorySampler")
    [train] = of_type(prompt, "SliderSpaceTrainSliders")
    cond = prompt[traj]["inputs"].get("conditioning")
    assert isinstance(cond, list), f"{name}: the Trajectory Sampler encodes its own prompts (typed twice)"
    assert prompt[train]["inputs"]["positive"] == cond
    for grid in of_type(prompt, "SliderSpaceSliderGrid"):
        assert prompt[grid]["inputs"]["positive"] == cond
    assert len(prompt[traj]["inputs"]["prompts"].strip().splitlines()) == 1


def saved_image(server, outputs: dict, prompt: dict, prefix: str):
    """The pixels of the one image the SaveImage node with this filename prefix wrote."""
    from PIL import Image

    [node] = [i for i in of_type(prompt, "SaveImage") if prompt[i]["inputs"]["filename_prefix"] == prefix]
    [im] = outputs[node]["images"]
    with Image.open(server.base / "output" / im["subfolder"] / im["filename"]) as f:
        return np.asarray(f.convert("RGB"))


@pytest.mark.parametrize("name", NAMES)
def test_example_workflow_runs(comfy_server, api_prompts, name):
    prompt = shrink(api_prompts[name]["prompt"], name)
    entry = comfy_server.run(prompt, timeout=900)
    outputs = entry["outputs"]
    output_nodes = [i for i, n in prompt.items() if n["class_type"] in
                    ("SaveImage", "PreviewImage", "SliderSpaceDiversityScore")]  # the ones with UI outputs
    assert output_nodes and set(output_nodes) <= set(outputs), f"{name}: outputs missing: {outputs.keys()}"
    for i in output_nodes:
        if prompt[i]["class_type"] in ("SaveImage", "PreviewImage"):
            images = outputs[i]["images"]
            assert images, f"{name}: node {i} produced no image"
            for im in images:
                folder = {"output": "output", "temp": "temp"}[im["type"]]
                path = comfy_server.base / folder / im["subfolder"] / im["filename"]
                assert path.is_file() and path.stat().st_size > 0
    if name == "sliderspace_discover.json":
        new = sorted(set(os.listdir(comfy_server.bank_dir)) - set(BANKS))
        assert new == ["sliderspace_bank_00002.safetensors"], new  # 00001 is the generated bank
        new = new[0]
        status, info = comfy_server.get(f"/sliderspace/bank_info?name={new}")
        assert status == 200 and info["n_sliders"] == SHRINK["SliderSpaceTrainSliders"]["n_sliders"]
    if name in EDITED_VS_PLAIN:  # same seed, same prompt: only the ELROND direction / SAE steer differs
        edited, plain = (saved_image(comfy_server, outputs, prompt, p) for p in EDITED_VS_PLAIN[name])
        assert edited.shape == plain.shape and edited.std() > 0 and plain.std() > 0
        assert np.abs(edited.astype(int) - plain.astype(int)).max() > 0, f"{name}: the edit changed nothing"
    if name in SAVED_FILES:
        folder, node_type = SAVED_FILES[name]
        [node] = of_type(prompt, node_type)
        saved = comfy_server.base / "models" / folder / f"{prompt[node]['inputs']['filename_prefix']}_00001.safetensors"
        assert saved.is_file() and saved.stat().st_size > 0, sorted(saved.parent.glob("*"))
    if name == "sae_concepts.json":
        [node] = of_type(prompt, "SliderSpaceSAECollectActivations")
        shards = comfy_server.base / "output" / "sliderspace_activations" / f"{prompt[node]['inputs']['name']}_00001"
        assert shards.is_dir() and any(shards.iterdir()), shards
    if name == "sliderspace_sparse_diversity.json":
        scores = [outputs[i]["text"][0] for i in of_type(prompt, "SliderSpaceDiversityScore")]
        assert len(scores) == 2 and all("diversity" in s.lower() for s in scores), scores


def test_invalid_inputs_get_http_400_naming_the_node(comfy_server, api_prompts):
    base = api_prompts["sliderspace_apply.json"]["prompt"]
    cases = [("SliderSpaceApplySliderBank", "start_percent", 5.0),    # above its max
             ("SliderSpaceApplySliderBank", "multiplier", "lots"),    # not a number
             ("SliderSpaceApplySliderBank", "bank", None),            # a required input left unconnected
             ("CheckpointLoaderSimple", "ckpt_name", "missing.safetensors")]
    for class_type, input_name, value in cases:
        prompt = copy.deepcopy(base)
        node_id = of_type(prompt, class_type)[0]
        if value is None:
            del prompt[node_id]["inputs"][input_name]
        else:
            prompt[node_id]["inputs"][input_name] = value
        status, body = comfy_server.post("/prompt", {"prompt": prompt})
        assert status == 400, (class_type, input_name, status, body)
        assert list(body["node_errors"]) == [node_id], body
        assert body["node_errors"][node_id]["class_type"] == class_type
        assert input_name in str(body["node_errors"][node_id]["errors"])


def test_a_bank_file_that_is_not_there_fails_naming_node_input_and_fix(comfy_server, api_prompts):
    """ComfyUI 0.3.75 does not check V3 combo values before running, so the node itself must say it."""
    prompt = shrink(api_prompts["sliderspace_apply.json"]["prompt"])
    node_id = of_type(prompt, "SliderSpaceLoadSliderBank")[0]
    prompt[node_id]["inputs"]["file"] = "no_such_bank.safetensors"
    with pytest.raises(AssertionError) as e:
        comfy_server.run(prompt, timeout=300)
    text = str(e.value)
    assert "SliderSpace Load Slider Bank" in text and "'file'" in text and "Fix:" in text, text


def test_toyworld_top_sliders_move_one_factor_monotonically(comfy_server, api_prompts):
    """The ToyWorld workflow as shipped: discovery → the top sliders → their grid. At least one of the top
    sliders' rows must change one of the world's factors (read analytically from the pixels by the world's own
    ``measure_factors``) monotonically from scale −2 to +2, averaged over the grid at seeds 0–3 (only the grid
    re-runs; the server keeps the trained bank), by ≥ 0.1 of the factor's range. Several sliders, so the check
    does not hinge on which direction one small run ranks first."""
    import torch
    from PIL import Image

    from toyworld.world import FACTORS, measure_factors

    base = api_prompts["toyworld_sliders.json"]["prompt"]
    [grid] = of_type(base, "SliderSpaceSliderGrid")
    [train] = of_type(base, "SliderSpaceTrainSliders")
    [cells] = [i for i in of_type(base, "SaveImage") if base[i]["inputs"]["filename_prefix"] == "toyworld_cells"]
    scales = [float(v) for v in base[grid]["inputs"]["scales"].split(",")]
    n_rows = base[train]["inputs"]["n_sliders"]
    assert n_rows >= 4 and base[grid]["inputs"]["sliders"] == f"0-{n_rows - 1}", "the grid shows every slider"
    per_seed = []
    for seed in range(4):
        prompt = copy.deepcopy(base)
        prompt[grid]["inputs"]["seed"] = seed
        prompt[cells]["inputs"]["filename_prefix"] = f"toyworld_cells_seed{seed}"
        images = comfy_server.run(prompt, timeout=900)["outputs"][cells]["images"]
        pixels = []
        for im in images:
            with Image.open(comfy_server.base / "output" / im["subfolder"] / im["filename"]) as f:
                pixels.append(np.asarray(f.convert("RGB"), dtype=np.float32) / 255)
        assert len(pixels) == n_rows * len(scales)
        cells_t = torch.from_numpy(np.stack(pixels)).movedim(-1, 1)                  # row-major: slider, scale
        per_seed.append(measure_factors(cells_t, "circle").view(n_rows, len(scales), len(FACTORS)))
    mean = torch.stack(per_seed).mean(0)                                             # [sliders, scales, factors]
    report, monotone = [], []
    for i in range(n_rows):
        spans = (mean[i, -1] - mean[i, 0]).abs()
        best = int(spans.argmax())
        steps = torch.diff(mean[i, :, best]) * torch.sign(mean[i, -1, best] - mean[i, 0, best])
        if float(spans[best]) >= 0.1 and bool((steps > 0).all()):
            monotone.append(f"slider {i}: {FACTORS[best]}")
        report.append(f"slider {i}: " + str({FACTORS[j]: [round(float(v), 3) for v in mean[i, :, j]]
                                             for j in range(len(FACTORS))}))
    print(f"\n[ToyWorld grid] mean factor per scale {scales}:\n" + "\n".join(report) + f"\nmonotone: {monotone}")
    assert monotone, "no top slider moves one factor monotonically by >= 0.1:\n" + "\n".join(report)
