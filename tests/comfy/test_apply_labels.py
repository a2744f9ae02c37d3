"""Apply Slider Bank's labels and what it tells the slider widget, through ComfyUI's own executor.

One label system: the widget's label boxes write Apply Slider Bank's `labels` text (Label Bank's syntax, parsed by
the same function), and the node's `bank` output carries them, so Save Slider Bank writes them into the file. After
a run the node reports the real slider count and the bank's own labels (its UI output), which is what the widget
draws for a bank that has no file yet (straight from Train Sliders).
"""

from __future__ import annotations

import pytest
import torch

from .executor import Graph, new_executor
from .test_discovery import _raises

NAME = "SliderSpace Apply Slider Bank"


def run_apply(model, bank, labels=None, executor=None):
    g = Graph()
    extra = {} if labels is None else {"labels": labels}
    links = g.node("SliderSpaceApplySliderBank", node_id="7", model=model, bank=bank, scales="0:1.5", multiplier=1.0,
                   start_percent=0.0, end_percent=1.0, **extra)
    with torch.inference_mode():
        return g.run(links[0], links[1], executor=executor)


def test_labels_go_into_the_bank_output_and_the_input_bank_is_unchanged(comfy, tiny, bank):
    before = [s.label for s in bank.sliders]
    _, named = run_apply(tiny.model, bank, "1: older, 2: smiling, with teeth")
    assert [s.label for s in named.sliders] == [before[0], "older", "smiling, with teeth"]
    assert [s.label for s in bank.sliders] == before
    assert named.sliders[1].up is not bank.sliders[1].up  # a copy of the factor dicts, never the input's


@pytest.mark.parametrize("labels", [None, "", "  "])
def test_no_labels_pass_the_bank_through(comfy, tiny, bank, labels):
    """Workflows saved before `labels` existed (no input at all) and an empty text keep the bank's labels."""
    _, out = run_apply(tiny.model, bank, labels)
    assert [s.label for s in out.sliders] == [s.label for s in bank.sliders]


def test_the_node_reports_the_real_count_and_the_banks_own_labels(comfy, tiny, bank):
    ex = new_executor()
    run_apply(tiny.model, bank, "0: renamed", executor=ex)
    ui = ex.history_result["outputs"]["7"]["sliderspace_bank"]
    assert ui == [{"n_sliders": len(bank), "labels": [s.label for s in bank.sliders]}]
    assert "renamed" not in ui[0]["labels"]  # the typed labels are the widget's own; this is what the bank said


def test_bad_labels_name_the_node_and_the_input(comfy, tiny, bank):
    _raises(lambda: run_apply(tiny.model, bank, f"{len(bank)}: too far"), NAME, "labels")
    _raises(lambda: run_apply(tiny.model, bank, "0: a\nsmiling"), NAME, "labels")
