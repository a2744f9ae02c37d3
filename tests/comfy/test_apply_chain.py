"""Slider nodes in series (issue 18): different Apply / Random Sparse Sliders nodes add up, each inside its
own window; one node applied again on its own output replaces its earlier sliders instead of stacking."""

from __future__ import annotations

import pytest
import torch

from .executor import Graph, run_node
from .host import pack_module
from .test_apply import STEPS, sample
from .test_discovery import _out
from .test_sparse_comfy import noises, run

S1 = {0: 1.5, 2: -1.0}
S2 = {1: 1.2, 2: 0.8}


def text(scales: dict[int, float]) -> str:
    return ", ".join(f"{i}:{s}" for i, s in scales.items())


def apply(comfy, model, bank, scales, uid=None, start=0.0, end=1.0):
    """Apply Slider Bank run by ComfyUI's executor as node ``uid``; ``uid=None``: called directly, with no node id
    (as headless code may call it)."""
    if uid is None:
        with torch.inference_mode():
            return _out(comfy["classes"]["SliderSpaceApplySliderBank"].execute(model, bank, text(scales), 1.0, start,
                                                                             end))[0]
    return run_node("SliderSpaceApplySliderBank", node_id=uid, model=model, bank=bank, scales=text(scales),
                    multiplier=1.0, start_percent=start, end_percent=end)[0]


def sparse(comfy, model, bank, seed, uid=None):
    args = dict(model=model, bank=bank, seed=seed, k=2, distribution="fixed", scale=1.5, min_scale=0.5,
                random_sign=True, start_percent=0.0, end_percent=1.0, batch_size=1)
    if uid is None:
        with torch.inference_mode():
            return _out(comfy["classes"]["SliderSpaceRandomSparseSliders"].execute(**args))
    return run_node("SliderSpaceRandomSparseSliders", outputs=2, node_id=uid, **args)


def test_two_apply_nodes_in_one_prompt_add_up(comfy, tiny, bank, bank2):
    """Two Apply nodes wired in series in one prompt, as a user builds it: the executor gives each its own id."""
    g = Graph()
    first = g.node("SliderSpaceApplySliderBank", model=tiny.model, bank=bank, scales=text(S1), multiplier=1.0,
                   start_percent=0.0, end_percent=1.0)
    second = g.node("SliderSpaceApplySliderBank", model=first[0], bank=bank2, scales=text(S2), multiplier=1.0,
                    start_percent=0.0, end_percent=1.0)
    chained, = g.run(second[0])
    close(sample(comfy, tiny, chained)[0], sample(comfy, tiny, lora_sum(tiny, (bank, S1), (bank2, S2)))[0])


@pytest.fixture(scope="module")
def bank2(bank):
    """A second bank over the same modules, with other deltas."""
    bk = pack_module("sliderspace_core.sliderspace.bank")
    sliders = [bk.Slider(down={m: d.flip(0) for m, d in s.down.items()},
                         up={m: u.roll(1, dims=0) * 0.8 for m, u in s.up.items()}, alpha=s.alpha)
               for s in bank.sliders]
    return bk.SliderBank(sliders, bank.meta)


@pytest.fixture(params=["in-place", "weight wrappers"])
def path(request, monkeypatch):
    if request.param == "weight wrappers":  # as for quantized weights
        monkeypatch.setattr(pack_module("nodes.glue.patching"), "MERGEABLE", ())
    return request.param


def lora_sum(tiny, *banks_scales):
    """The analytic sum: each bank's mix loaded as a stock LoRA, one after the other."""
    from comfy.sd import load_lora_for_models

    ex = pack_module("sliderspace_core.sliderspace.export")
    m = tiny.model
    with torch.inference_mode():
        for b, s in banks_scales:
            m = load_lora_for_models(m, None, ex.bank_to_lora(b, s, "comfy", "SD15"), 1.0, 0)[0]
    return m


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("uids", [("4", "9"), (None, None)], ids=["node ids", "direct calls"])
def test_two_apply_nodes_in_series_equal_the_sum_of_both_banks(comfy, tiny, bank, bank2, path, uids):
    chained = apply(comfy, apply(comfy, tiny.model, bank, S1, uids[0]), bank2, S2, uids[1])
    if path == "weight wrappers":  # both nodes' wrappers stay on every shared weight and both act
        assert all(len(fns) == 2 for fns in chained.weight_wrapper_patches.values() if fns)
    ours = sample(comfy, tiny, chained)[0]
    close(ours, sample(comfy, tiny, lora_sum(tiny, (bank, S1), (bank2, S2)))[0])
    second_alone = sample(comfy, tiny, apply(comfy, tiny.model, bank2, S2, uids[1]))[0]
    assert not torch.allclose(ours, second_alone, rtol=1e-4, atol=1e-3)


def test_each_node_keeps_its_own_window(comfy, tiny, bank, bank2, path):
    from comfy.samplers import KSampler

    first = apply(comfy, tiny.model, bank, S1, "4")
    chained = apply(comfy, first, bank2, S2, "9", start=0.5)
    sigmas = KSampler(tiny.model, STEPS, "cpu", "euler", "normal").sigmas
    sigma_start = tiny.model.get_model_object("model_sampling").percent_to_sigma(0.5)
    _, alone = sample(comfy, tiny, first)
    _, both = sample(comfy, tiny, chained)
    before = [i for i in range(STEPS) if float(sigmas[i]) > sigma_start]
    after = [i for i in range(STEPS) if float(sigmas[i]) <= sigma_start]
    assert before and after
    for i in before:  # the second node is off: exactly the first node alone
        assert torch.equal(both[i], alone[i]), (path, i)
    for i in after:
        assert not torch.equal(both[i], alone[i]), (path, i)


def test_a_node_applied_on_its_own_output_replaces_itself(comfy, tiny, bank, path):
    once = apply(comfy, tiny.model, bank, S1, "4")
    again = apply(comfy, once, bank, S1, "4")
    assert torch.equal(sample(comfy, tiny, again)[0], sample(comfy, tiny, once)[0])
    changed = apply(comfy, once, bank, S2, "4")  # node 4 re-run with other scales on its own output
    assert torch.equal(sample(comfy, tiny, changed)[0], sample(comfy, tiny, apply(comfy, tiny.model, bank, S2, "4"))[0])
    if path == "weight wrappers":
        assert all(len(fns) == 1 for fns in again.weight_wrapper_patches.values() if fns)
    assert not any(tiny.model.weight_wrapper_patches.values())  # the input is never touched


def test_random_sparse_sliders_compose_with_apply_and_with_each_other(comfy, tiny, bank, bank2):
    def drawn(listed: str) -> dict[int, float]:
        return pack_module("sliderspace_core.sliderspace.bank").parse_scales(listed.split(": ", 1)[1], len(bank))

    nz = noises(1)
    after_apply, listed = sparse(comfy, apply(comfy, tiny.model, bank, S1, "4"), bank2, seed=3, uid="7")
    close(run(comfy, tiny, after_apply, nz), run(comfy, tiny, lora_sum(tiny, (bank, S1), (bank2, drawn(listed))), nz))

    first, listed1 = sparse(comfy, tiny.model, bank, seed=5, uid="7")
    two, listed2 = sparse(comfy, first, bank2, seed=6, uid="8")
    out = run(comfy, tiny, two, nz)
    close(out, run(comfy, tiny, lora_sum(tiny, (bank, drawn(listed1)), (bank2, drawn(listed2))), nz))
    again, _ = sparse(comfy, first, bank, seed=5, uid="7")  # node 7 on its own output: replaces
    assert torch.equal(run(comfy, tiny, again, nz), run(comfy, tiny, first, nz))
