"""Exploration nodes in real ComfyUI: Slider Grid, Label Bank, Diversity Score on tiny models."""

from __future__ import annotations

import copy

import pytest
import torch

from .executor import PromptInvalid, run_node
from .test_discovery import SIZE, _out, _raises

STEPS = 3
SEED = 4
GRID = "SliderSpace Slider Grid"


def explore():
    from .host import pack_module

    return pack_module("nodes.sliderspace.explore")


def conds(comfy, tiny):
    C = comfy["classes"]
    with torch.inference_mode():
        return C["CLIPTextEncode"]().encode(tiny.clip, "a dog")[0], C["CLIPTextEncode"]().encode(tiny.clip, "")[0]


def grid(comfy, tiny, bank, sliders="0,1,2", scales="-1, 0, 1", start=0.0, model=None, **extra):
    pos, neg = conds(comfy, tiny)
    return run_node("SliderSpaceSliderGrid", outputs=2, model=model or tiny.model, vae=tiny.vae, bank=bank,
                    positive=pos, negative=neg, sliders=sliders, scales=scales, seed=SEED, steps=STEPS, cfg=5.0,
                    sampler_name="euler", scheduler="normal", width=SIZE, height=SIZE, start_percent=start, **extra)


def plain_image(comfy, tiny):
    """Stock KSampler + VAEDecode with the grid's seed and settings."""
    C = comfy["classes"]
    pos, neg = conds(comfy, tiny)
    with torch.inference_mode():
        latent = C["EmptyLatentImage"]().generate(SIZE, SIZE, 1)[0]
        samples = C["KSampler"]().sample(tiny.model, SEED, STEPS, 5.0, "euler", "normal", pos, neg, latent)[0]
        return C["VAEDecode"]().decode(tiny.vae, samples)[0]


@pytest.fixture(scope="module")
def grid_out(comfy, tiny, bank):
    wrappers, weight_wrappers = repr(tiny.model.wrappers), repr(tiny.model.weight_wrapper_patches)
    out = grid(comfy, tiny, bank)
    assert repr(tiny.model.wrappers) == wrappers and repr(tiny.model.weight_wrapper_patches) == weight_wrappers
    return out


def test_grid_zero_column_is_stock_sampling_and_sliders_change_the_rest(comfy, tiny, grid_out):
    image, cells = grid_out
    plain = plain_image(comfy, tiny)
    assert cells.shape == (9, SIZE, SIZE, 3)
    for r in range(3):
        assert torch.equal(cells[3 * r + 1], plain[0]), r  # bitwise: same seed, same noise, no slider
        for c in (0, 2):
            assert (cells[3 * r + c] - plain[0]).abs().max() > 1e-3, (r, c)
    assert not torch.allclose(cells[0], cells[2])  # -1 and +1 differ
    assert not torch.allclose(cells[2], cells[5])  # sliders 0 and 1 differ


def test_grid_image_size_and_cell_placement(comfy, tiny, grid_out):
    from .host import pack_module

    image, cells = grid_out
    # 64 px cells: font 10 px → label bands 20 px (top) and 80 px (left), 2 px gaps
    assert image.shape == (1, 20 + 3 * SIZE + 2 * 2, 80 + 3 * SIZE + 2 * 2, 3)
    lay = pack_module("sliderspace_core.common.drawing").grid_layout(3, 3, SIZE, SIZE)
    for k in range(9):
        y, x = lay.origin(k // 3, k % 3)
        assert torch.equal(image[0, y:y + SIZE, x:x + SIZE], cells[k]), k


def test_grid_start_past_end_is_vanilla_everywhere(comfy, tiny, bank):
    _, cells = grid(comfy, tiny, bank, sliders="1", scales="0, 2", start=1.0)
    plain = plain_image(comfy, tiny)[0]
    assert torch.equal(cells[0], plain) and torch.equal(cells[1], plain)


def test_grid_reports_progress_per_step_and_honours_interrupt(comfy, tiny, bank):
    from comfy.model_management import InterruptProcessingException, interrupt_current_processing
    from comfy.utils import PROGRESS_BAR_HOOK, set_progress_bar_global_hook

    seen = []
    set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total)))
    try:
        grid(comfy, tiny, bank, sliders="0, 2", scales="0, 1")  # 3 distinct cells: the zero cell once
    finally:
        set_progress_bar_global_hook(PROGRESS_BAR_HOOK)
    assert {t for _, t in seen} == {3 * STEPS} and seen[-1][0] == 3 * STEPS
    assert [v for v, _ in seen] == sorted(v for v, _ in seen)
    interrupt_current_processing(True)
    try:
        with pytest.raises(InterruptProcessingException):
            grid(comfy, tiny, bank)
    finally:
        interrupt_current_processing(False)


def test_grid_errors_name_node_and_input(comfy, tiny, bank):
    _raises(lambda: grid(comfy, tiny, bank, sliders="0, 5"), GRID, "sliders")
    _raises(lambda: grid(comfy, tiny, bank, scales="1, big"), GRID, "scales")
    with pytest.raises(PromptInvalid):  # a server refuses it before the node runs (the schema's max is 1)
        grid(comfy, tiny, bank, start=1.5)
    other = copy.copy(bank)
    other.meta = copy.copy(bank.meta)
    other.meta.family = "SDXL"
    _raises(lambda: grid(comfy, tiny, other), GRID, "bank")


def test_label_bank_sets_labels_and_leaves_input_unchanged(comfy, bank):
    before = [s.label for s in bank.sliders]
    new = _out(explore().LabelBank.execute(bank, "0: smiling, 2: older"))[0]
    assert [s.label for s in new.sliders] == ["smiling", before[1], "older"]
    assert [s.label for s in bank.sliders] == before and new is not bank
    assert all(torch.equal(a.up[m], b.up[m]) for a, b in zip(new.sliders, bank.sliders, strict=True) for m in a.up)
    ordered = _out(explore().LabelBank.execute(bank, "a\nb\nc"))[0]
    assert [s.label for s in ordered.sliders] == ["a", "b", "c"]
    name = "SliderSpace Label Bank"
    _raises(lambda: explore().LabelBank.execute(bank, "0: a\nsmiling"), name, "labels")
    _raises(lambda: explore().LabelBank.execute(bank, "3: too far"), name, "labels")


def test_diversity_score(comfy, tiny, grid_out):
    from .host import pack_module

    enc, glue = pack_module("sliderspace_core.common.encoders"), pack_module("sliderspace_core.common.metrics")
    node = explore().DiversityScore
    _, cells = grid_out
    with torch.inference_mode():
        same = _out(node.execute(cells[1:2].repeat(4, 1, 1, 1), 2, clip_vision=tiny.clip_vision))
        out = node.execute(cells, 4, clip_vision=tiny.clip_vision)
        direct = enc.embed_images(pack_module("nodes.glue.encoders").ClipVisionEncoder(tiny.clip_vision), cells)
    score, text = _out(out)
    assert same[0] == pytest.approx(0.0, abs=1e-6)
    assert isinstance(score, float) and score > 1e-4
    assert score == pytest.approx(glue.diversity(direct), abs=1e-6)
    assert text.startswith(f"diversity {score:.4f} over 9 images (encoder comfy_clip_vision:")
    assert out.ui.as_dict() == {"text": (text,)}
    name = "SliderSpace Diversity Score"
    _raises(lambda: node.execute(cells[:1], 4, clip_vision=tiny.clip_vision), name, "images")
    _raises(lambda: node.execute(cells, 4), name, "clip_vision")


def test_grid_end_percent_switches_the_sliders_off_as_apply_does(comfy, tiny, bank):
    _, full = grid(comfy, tiny, bank, sliders="0", scales="0, 2")
    _, early = grid(comfy, tiny, bank, sliders="0", scales="0, 2", end_percent=0.5)
    assert torch.equal(full[0], early[0])  # the plain column
    assert not torch.equal(full[1], early[1])  # the slider stops half-way
    assert not torch.equal(early[1], early[0])  # ... after acting in the first half
