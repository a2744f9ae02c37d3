"""A node's help page (web/docs/<node_id>.md) opened in the real frontend the way a user opens it: the node is
selected on the canvas and the selection toolbox's Info button is pressed (tests/browser/node_docs.mjs)."""

from __future__ import annotations

import urllib.request

import pytest

from ..conftest import ROOT
from ..live.fixtures import ARTIFACTS, run_node

NODE = "SliderSpaceSliderGrid"  # its page has a picture, so the page's relative image path is checked too


@pytest.fixture(scope="module")
def shown(browser_tools, comfy_server) -> dict:
    (ARTIFACTS / "browser").mkdir(parents=True, exist_ok=True)
    return run_node("node_docs.mjs", comfy_server.url, NODE, str(ARTIFACTS / "browser" / "help_page.png"))


def test_the_served_page_is_the_pack_file(comfy_server):
    with urllib.request.urlopen(f"{comfy_server.url}/extensions/comfyui-sliderspace/docs/{NODE}.md") as r:
        status, text = r.status, r.read().decode("utf-8")
    assert status == 200
    assert text == (ROOT / "web" / "docs" / f"{NODE}.md").read_text(encoding="utf-8")


def test_the_help_panel_renders_the_page(shown):
    assert shown["placed"]
    assert shown["headings"][:1] == ["SliderSpace Slider Grid"] and "Inputs" in shown["headings"]
    page = (ROOT / "web" / "docs" / f"{NODE}.md").read_text(encoding="utf-8")
    inputs = [line.split("`")[1] for line in page.splitlines() if line.startswith("- **`")]
    missing = [name for name in inputs if name not in shown["text"]]
    assert not missing, f"not shown in the panel: {missing}"
    assert "Real output of the ToyWorld template" in shown["text"]


def test_the_page_picture_loads(shown):
    [img] = shown["images"]
    assert img["src"].endswith("/extensions/comfyui-sliderspace/docs/images/toyworld_slider_grid.png")
    assert img["width"] > 100  # decoded: the relative path resolved against the page's folder
    assert not shown["console_errors"], shown["console_errors"]
