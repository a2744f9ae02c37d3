"""Workflows saved by earlier versions keep working: a shared workflow must not stop validating when a node gains
an input, and a saved widget value must still land on the input it was saved for.

``tests/legacy_workflows/<version>/`` holds every example workflow as that version saved it: ``ui/`` (the file a
user shares) and ``api/`` (the prompt that version's frontend built from it). Add a folder with
``python scripts/snapshot_workflows.py <version>`` before a release changes a node's inputs.
This file sorts after test_workflows.py, and it removes every file its runs write, so the example-workflow tests
see the server as they expect.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import pytest

from ..live.fixtures import run_node
from .test_workflows import shrink

LEGACY = pathlib.Path(__file__).resolve().parents[1] / "legacy_workflows"
VERSIONS = sorted(p.name for p in LEGACY.iterdir() if (p / "api").is_dir())


def _shrink(prompt: dict) -> dict:
    """The e2e counts, set only where the old prompt has the input (an old version may lack a newer one)."""
    out = shrink(prompt, strict=False)
    for node in out.values():
        if node["class_type"] == "SliderSpaceTrainSliders":
            node["inputs"]["n_sliders"] = 2  # SHRINK's Slider Grid shows sliders 0-1 (ToyWorld's graph has both)
    return out


def _distinct_api_prompts() -> list[tuple[str, str]]:
    """(version, file) of every saved API prompt, one per distinct content (identical saves run once)."""
    seen, out = set(), []
    for v in VERSIONS:
        for f in sorted((LEGACY / v / "api").glob("*.json")):
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                out.append((v, f.name))
    return out


def _files(root: pathlib.Path) -> set[pathlib.Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


def test_there_are_saved_workflows_of_an_earlier_version():
    assert VERSIONS, "tests/legacy_workflows/ holds no saved version"
    for v in VERSIONS:
        assert sorted(p.name for p in (LEGACY / v / "api").glob("*.json")) == \
            sorted(p.name for p in (LEGACY / v / "ui").glob("*.json")), v


@pytest.mark.parametrize(("version", "name"), _distinct_api_prompts())
def test_saved_api_prompt_still_validates_and_runs(comfy_server, api_prompts, version, name):
    saved = json.loads((LEGACY / version / "api" / name).read_text())
    if name in api_prompts and api_prompts[name]["prompt"] == saved:
        pytest.skip("identical to today's example workflow, which test_workflows.py runs")
    prompt = _shrink(saved)
    models = comfy_server.base / "models"  # where saving nodes write (banks, directions, SAEs, activations)
    before = _files(models)
    try:
        entry = comfy_server.run(prompt, timeout=900)  # a 400 (e.g. "Required input is missing") fails here
        assert entry["status"]["status_str"] == "success"
    finally:
        for p in _files(models) - before:
            p.unlink(missing_ok=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_saved_ui_workflow_widget_values_land_on_the_same_inputs(browser_tools, comfy_server, version):
    """Today's frontend maps a saved file's widget values by position: a new widget inserted before old ones would
    silently shift them. Every input the old prompt set keeps its old value (links and all)."""
    files = sorted((LEGACY / version / "ui").glob("*.json"))
    converted = run_node("convert.mjs", comfy_server.url, *map(str, files))
    for f in files:
        old = json.loads((LEGACY / version / "api" / f.name).read_text())
        new = converted[f.name]["prompt"]
        assert sorted(new) == sorted(old), f"{version}/{f.name}: the nodes differ"
        for node_id, node in old.items():
            for k, v in node["inputs"].items():
                got = new[node_id]["inputs"].get(k, "<missing>")
                assert got == v, (f"{version}/{f.name}: node {node_id} ({node['class_type']}) input {k!r} was "
                                  f"saved as {v!r}, today's frontend reads {got!r}")
