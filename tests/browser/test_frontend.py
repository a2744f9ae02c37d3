"""The real ComfyUI frontend in headless Debian chromium (playwright-core): node library, example workflows,
the slider-bank widget, and a screenshot of it (artifacts/browser/widget.png).

tests/browser/ui_checks.mjs drives the browser and reports what it saw; the assertions are here.
"""

from __future__ import annotations

import pytest

from ..live.fixtures import ARTIFACTS, WORKFLOW_DIR, example_workflows, run_node
from ..live.models import BANK, BANK_SMALL

# Console lines a vanilla frontend also logs offline: its registry look-ups (blocked by its own CSP; the
# test machine is offline), 404s for optional user files, and whatever the baseline page load logged.
VANILLA = ("violates the following Content Security Policy directive", "Failed to load resource")


@pytest.fixture(scope="module")
def report(browser_tools, comfy_server) -> dict:
    return run_node("ui_checks.mjs", comfy_server.url, str(ARTIFACTS / "browser"), BANK_SMALL,
                    str(WORKFLOW_DIR / "sliderspace_apply.json"), str(WORKFLOW_DIR / "sliderspace_discover.json"),
                    *map(str, example_workflows()))


@pytest.fixture(scope="module")
def bank_info(comfy_server) -> dict:
    status, info = comfy_server.get(f"/sliderspace/bank_info?name={BANK}")
    assert status == 200, info
    return info


def new_errors(errors: list[str], baseline: list[str]) -> list[str]:
    return [e for e in errors if e not in baseline and not any(v in e for v in VANILLA)]


def test_pack_nodes_are_in_the_node_library(report, comfy_server):
    _, info = comfy_server.get("/object_info")
    pack = {k: v for k, v in info.items() if v.get("category", "").startswith("SliderSpace/")}
    assert len(pack) >= 29
    assert set(pack) <= set(report["registered"])
    assert "SliderSpace" in report["library_text"]
    missing = [v["display_name"] for v in pack.values() if v["display_name"] not in report["library_text"]]
    assert not missing, f"not shown in the node library: {missing}"


def test_the_widget_script_is_served_once(comfy_server):
    _, files = comfy_server.get("/extensions")
    assert len([f for f in files if f.endswith("/sliderspace.js")]) == 1, files


def test_the_page_loads_without_pack_errors(report):
    pack_errors = [e for e in report["baseline_console_errors"] if "sliderspace" in e.lower() and
                   not any(v in e for v in VANILLA)]
    assert not pack_errors, pack_errors


@pytest.mark.parametrize("name", [p.name for p in example_workflows()])
def test_example_workflow_loads_cleanly(report, name):
    facts = report["workflows"][name]
    assert facts["nodes"] > 0
    assert not facts["missing"], f"missing node types: {facts['missing']}"
    assert not facts["mismatched"], f"widget values changed on load: {facts['mismatched']}"
    assert not facts["dialogs"], facts["dialogs"]
    errors = new_errors(facts["console_errors"], report["baseline_console_errors"])
    assert not errors, errors


STAGED = [p.name for p in example_workflows()]
"""Every template is laid out by stage (tests/browser/layout.mjs): ToyWorld, SD1.5, SDXL and FLUX alike."""


def test_the_staged_templates_are_all_of_them():
    assert len(STAGED) >= 13 and {"sliderspace_discover.json", "sae_concepts.json", "toyworld_sliders.json",
                                  "sliderspace_discover_flux.json"} <= set(STAGED)


def overlaps(boxes: list[dict]) -> list[str]:
    """Pairs of rectangles (x, y, w, h) that share any area."""
    out = []
    for i, a in enumerate(boxes):
        ax, ay, aw, ah = a["box"]
        for b in boxes[i + 1:]:
            bx, by, bw, bh = b["box"]
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                out.append(f"{a.get('title') or a['type']} / {b.get('title') or b['type']}")
    return out


@pytest.mark.parametrize("name", STAGED)
def test_template_is_readable(report, name):
    facts = report["workflows"][name]
    assert not overlaps(facts["rects"]), f"{name}: overlapping nodes {overlaps(facts['rects'])}"
    assert len(facts["groups"]) >= 4 and not overlaps(facts["groups"]), facts["groups"]
    for r in facts["rects"]:  # every node inside one stage's group
        x, y, w, h = r["box"]
        inside = [g for g in facts["groups"] if g["box"][0] <= x and x + w <= g["box"][0] + g["box"][2]
                  and g["box"][1] <= y and y + h <= g["box"][1] + g["box"][3]]
        assert len(inside) == 1, f"{name}: {r['title']} is in {len(inside)} groups"
    assert [r for r in facts["rects"] if r["type"] == "Note"], f"{name}: no Note saying what to change"


def test_widget_shows_one_labelled_slider_per_direction(report, bank_info):
    w = report["widget"]
    n = bank_info["n_sliders"]
    assert n == 4
    assert len(w["initial"]["values"]) == len(w["initial"]["labels"]) == n
    assert w["initial"]["labels"] == bank_info["labels"]
    # The workflow's scales text ("0:1.5") is what the sliders start from, and what is sent.
    assert w["initial"]["values"] == [1.5, 0, 0, 0]
    assert w["initial_sent"]["scales"] == "0:1.5"


def test_moving_a_slider_changes_the_scales_sent_to_prompt(report):
    w = report["widget"]
    moved = w["moved"]["values"]
    assert moved[2] != 0 and moved[:2] == [1.5, 0] and moved[3] == 0
    assert w["moved_sent"]["scales"] == f"0:1.5, 2:{moved[2]:g}"
    assert w["moved_sent"]["workflowProps"]["values"] == moved  # the values travel in the workflow JSON


def test_labels_are_editable_and_persist(report):
    """A typed label is the node's `labels` input (Label Bank's syntax): it reaches the prompt, hence the bank."""
    w = report["widget"]
    assert w["edited_sent"]["labels"] == "1: older (edited)"
    assert "labels" not in w["edited_props"]  # one label system: not a second copy in the node's properties
    assert w["reloaded"]["labels"][1] == "older (edited)"
    assert w["reloaded"]["values"] == w["moved"]["values"]
    assert w["reloaded_sent"]["scales"] == w["moved_sent"]["scales"]


def test_reset_and_randomize(report):
    w = report["widget"]
    assert w["reset"]["values"] == [0, 0, 0, 0] and w["reset_sent"]["scales"] == ""
    rnd = w["randomized"]["values"]
    assert all(-2 <= v <= 2 for v in rnd) and any(v != 0 for v in rnd)
    want = ", ".join(f"{i}:{v:g}" for i, v in enumerate(rnd) if v != 0)
    assert w["randomized_sent"]["scales"] == want


def test_choosing_another_bank_redraws_its_sliders(report, comfy_server):
    status, info = comfy_server.get(f"/sliderspace/bank_info?name={BANK_SMALL}")
    assert status == 200 and info["n_sliders"] == 2
    w = report["widget"]
    assert w["switched"]["labels"] == info["labels"]
    assert len(w["switched"]["values"]) == 2
    # The values that fit the new bank are kept (the text said "1:-2, 3:0.5"; slider 3 no longer exists).
    assert w["switched"]["values"] == [0, -2] and w["switched_sent"]["scales"] == "1:-2"


def test_editing_the_scales_text_moves_the_sliders(report):
    assert report["widget"]["from_text"]["values"] == [0, -2, 0, 0.5]


def test_widget_screenshot_is_written(report):
    from PIL import Image

    with Image.open(report["widget"]["screenshot"]) as im:
        assert im.width > 200 and im.height > 150
    errors = [e for e in report["widget"]["console_errors"] if not any(v in e for v in VANILLA)]
    assert not errors, errors


def test_a_bank_straight_from_train_sliders_gets_its_sliders(report):
    """No file to read: the count is Train Sliders' n_sliders (8 in the discover template), and follows it."""
    t = report["widget"]["train"]
    assert len(t["from_widget"]["values"]) == 8
    assert t["from_widget"]["labels"] == [f"slider {i}" for i in range(8)]  # placeholders, not invented names
    assert t["from_widget"]["typed"] == [""] * 8
    assert "n_sliders" in t["from_widget"]["note"]
    assert len(t["changed"]["values"]) == 3
    assert t["labelled_sent"]["labels"] == "0: wider"


def test_after_a_run_the_widget_shows_the_bank_the_node_got(report):
    """The node's report (its UI output, tests/comfy/test_apply_labels.py) arrives as the server's `executed`
    message: the real count replaces the n_sliders estimate, until n_sliders changes again."""
    t = report["widget"]["train"]
    assert t["ran"]
    assert len(t["after_run"]["values"]) == 2 and t["after_run"]["note"] is None
    assert t["after_run"]["typed"] == ["wider", ""]
    assert t["after_run_sent"]["labels"] == "0: wider"
    assert len(t["recounted"]["values"]) == 5


def test_labels_typed_in_an_earlier_version_become_the_nodes_labels(report):
    w = report["widget"]
    assert w["legacy"]["typed"] == ["", "older (typed in 0.1.0)", "", ""]
    assert w["legacy_sent"]["labels"] == "1: older (typed in 0.1.0)"
    assert w["legacy_sent"]["scales"] == "0:1.5"  # the saved widget values land where they were saved
    assert "labels" not in (w["legacy_sent"]["workflowProps"] or {})


def test_label_bank_labels_show_through_the_widget(report, bank_info):
    """Load Slider Bank → Label Bank → Apply: the widget shows the bank's labels with Label Bank's laid over."""
    want = list(bank_info["labels"])
    want[2] = "from Label Bank"
    assert report["widget"]["label_bank"]["labels"] == want
    assert report["widget"]["label_bank"]["typed"] == [""] * 4
