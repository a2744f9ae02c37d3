"""SAE Steer nodes in series (issue 15): chained steers compose in chain order, at the same block (each block
hook sees the output the steers before it left) and at different blocks; one node run again replaces its own
steer (re-queue idempotent); the upstream node's MODEL is never changed by a downstream steer."""

from __future__ import annotations

import pytest
import torch

from .host import pack_module
from .test_concepts import BLOCK, _no_hooks_left, conds, csae, sample  # noqa: F401 (fixtures)
from .test_discovery import SIZE, _out

OTHER = "input_blocks.1.1"  # another 320-wide block of the tiny SD1.5 UNet


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


def node(comfy, uid: str | None):
    from comfy_api.latest import io

    cls = comfy["classes"]["SliderSpaceSAESteer"]
    return cls if uid is None else cls.PREPARE_CLASS_CLONE({io.Hidden.unique_id: uid})


def steer(comfy, model, sae, features, uid=None, mode="global", mask=None, suppress=True):
    with torch.inference_mode():
        return _out(node(comfy, uid).execute(model, sae, features, mode, "cond", "typical activation", 0.0, 1.0,
                                             suppress, mask))[0]


def steerer(sae, features, mode="global", mask=None, suppress=True):
    st = pack_module("sliderspace_core.concepts.steering")
    return st.Steerer(sae, st.parse_features(features, sae.n_features), mode, "cond", "typical activation", mask,
                      suppress)


def reference(tiny, stages):
    """The composition by definition: ONE hook per block applying that block's steerers in chain order, each on
    the rows the one before it returned (``stages``: block → [Steerer, ...])."""
    hooks, sched = pack_module("nodes.glue.hooks"), pack_module("sliderspace_core.common.schedule")
    window = sched.SigmaWindow.from_percents(tiny.model.get_model_object("model_sampling").percent_to_sigma, 0.0, 1.0)
    m = tiny.model
    for block, steerers in stages.items():
        def fn(out, inp, labels, sigma, grid, steerers=steerers):
            for s in steerers:
                out = s.apply(out, labels, grid[0], grid[1], inp)
            return out

        m = hooks.with_block_hook(m, f"reference:{block}", block, fn, window)
    return m


def wrappers(model) -> dict:
    return {k: {kk: list(vv) for kk, vv in v.items()} for k, v in model.wrappers.items()}


@pytest.mark.parametrize("mode", ["global", "spatial"])
def test_two_steers_at_one_block_compose_in_chain_order(comfy, tiny, conds, csae, mode):  # noqa: F811
    mask = torch.zeros(SIZE, SIZE)
    mask[:, : SIZE // 2] = 1.0
    b_mask = mask if mode == "spatial" else None
    first = steer(comfy, tiny.model, csae, "3:8", uid="1")
    first_wrappers, first_out = wrappers(first), sample(tiny, conds, first)[0]
    chained = steer(comfy, first, csae, "17:-6, 40:5", uid="2", mode=mode, mask=b_mask)
    ref = reference(tiny, {BLOCK: [steerer(csae, "3:8"), steerer(csae, "17:-6, 40:5", mode, b_mask)]})
    out = sample(tiny, conds, chained)[0]
    assert torch.equal(out, sample(tiny, conds, ref)[0])
    assert not torch.equal(out, first_out)
    if mode == "global":  # global edits do not read the output: chaining = one steer with every feature (to rounding)
        one = sample(tiny, conds, steer(comfy, tiny.model, csae, "3:8, 17:-6, 40:5"))[0]
        assert torch.allclose(out, one, rtol=1e-4, atol=1e-4) and not torch.equal(one, first_out)
    else:  # the second steer's suppression reads the first's edit: the other order differs
        swapped = reference(tiny, {BLOCK: [steerer(csae, "17:-6, 40:5", mode, b_mask), steerer(csae, "3:8")]})
        assert not torch.equal(out, sample(tiny, conds, swapped)[0])
    # the first node's MODEL is untouched by the second; nothing is left hooked on the base
    assert wrappers(first) == first_wrappers and torch.equal(sample(tiny, conds, first)[0], first_out)
    _no_hooks_left(tiny)


def test_steers_at_different_blocks_compose_in_either_order(comfy, tiny, conds, csae):  # noqa: F811
    sae_mod = pack_module("sliderspace_core.concepts.sae")
    other = sae_mod.ConceptSAE(csae.sae, OTHER, csae.feature_mean, csae.feature_std)
    ab = steer(comfy, steer(comfy, tiny.model, csae, "3:8", uid="1"), other, "17:-6", uid="2")
    ba = steer(comfy, steer(comfy, tiny.model, other, "17:-6", uid="2"), csae, "3:8", uid="1")
    ref = reference(tiny, {BLOCK: [steerer(csae, "3:8")], OTHER: [steerer(other, "17:-6")]})
    out = sample(tiny, conds, ab)[0]
    assert torch.equal(out, sample(tiny, conds, ref)[0]) and torch.equal(out, sample(tiny, conds, ba)[0])
    for alone in (steer(comfy, tiny.model, csae, "3:8"), steer(comfy, tiny.model, other, "17:-6")):
        assert not torch.equal(out, sample(tiny, conds, alone)[0])
    _no_hooks_left(tiny)


def test_requeue_is_idempotent_and_a_node_replaces_only_its_own_steer(comfy, tiny, conds, csae):  # noqa: F811
    vanilla = sample(tiny, conds, tiny.model)[0]
    first = steer(comfy, tiny.model, csae, "3:8", uid="1")
    second = steer(comfy, first, csae, "17:-6", uid="2")
    out = sample(tiny, conds, second)[0]
    # the executor runs node 2 again on node 1's output (re-queue), or on node 2's own output: no stacking
    assert torch.equal(sample(tiny, conds, steer(comfy, first, csae, "17:-6", uid="2"))[0], out)
    assert torch.equal(sample(tiny, conds, steer(comfy, second, csae, "17:-6", uid="2"))[0], out)
    # node 2 edited to strength 0 / no features: only node 1's steer remains, bit for bit
    assert torch.equal(sample(tiny, conds, steer(comfy, second, csae, "17:0", uid="2"))[0],
                       sample(tiny, conds, first)[0])
    off = steer(comfy, steer(comfy, second, csae, "", uid="2"), csae, "3:0", uid="1")
    assert torch.equal(sample(tiny, conds, off)[0], vanilla)
    # node 2 run again with an SAE at another block replaces its own steer there too
    other = pack_module("sliderspace_core.concepts.sae").ConceptSAE(csae.sae, OTHER, csae.feature_mean,
                                                                    csae.feature_std)
    moved = steer(comfy, second, other, "17:-6", uid="2")
    assert torch.equal(sample(tiny, conds, moved)[0], sample(tiny, conds, steer(comfy, first, other, "17:-6"))[0])
    # outside a prompt (no node id): the same steer again replaces, a different one composes
    same = steer(comfy, steer(comfy, tiny.model, csae, "3:8"), csae, "3:8")
    assert torch.equal(sample(tiny, conds, same)[0], sample(tiny, conds, first)[0])
    _no_hooks_left(tiny)
