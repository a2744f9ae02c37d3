"""The slider widget on a bank that has no file (straight from Train Sliders), through a real run on the test server:
before the run it counts Train Sliders' n_sliders and says so; after it, it shows what Apply Slider Bank reported
about the bank it got (its UI output, sent by the server as `executed`). tests/browser/train_run.mjs drives it."""

from __future__ import annotations

from ..live.fixtures import WORKFLOW_DIR, run_node


def test_widget_on_an_unsaved_bank_before_and_after_a_real_run(browser_tools, comfy_server):
    r = run_node("train_run.mjs", comfy_server.url, str(WORKFLOW_DIR / "sliderspace_discover.json"), timeout=400)
    assert r["before"]["n"] == 2 and "n_sliders" in (r["before"]["note"] or ""), r
    assert r["after"]["n"] == 2 and r["after"]["note"] is None, r  # the count now comes from the run
    assert r["after"]["placeholders"] == ["slider 0", "slider 1"], r  # Train Sliders' own names, as reported
    assert not r["errors"], r["errors"]
