"""SAE Steer nodes in series, each prompt run by ComfyUI's own executor (issues 15 and 24 item 6): chained steers
compose in chain order, at the same block (each block hook sees the output the steers before it left) and at
different blocks; two IDENTICAL steers in series give twice the edit (each is keyed by its declared node id);
re-queueing an edited prompt with one executor replaces only the edited node's steer; the upstream node's MODEL
is never changed by a downstream steer."""

from __future__ import annotations

import pytest
import torch

from .executor import Graph, new_executor
from .host import pack_module
from .test_concepts import (  # noqa: F401 (fixtures)
    BLOCK,
    STEER,
    _no_hooks_left,
    conds,
    csae,
    sample,
    steer_chain,
    steer_inputs,
    wrappers,
)
from .test_discovery import SIZE

OTHER = "input_blocks.1.1"  # another 320-wide block of the tiny SD1.5 UNet


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


def steerer(sae, features, mode="global", mask=None, suppress=True):
    st = pack_module("sliderspace_core.concepts.steering")
    return st.Steerer(sae, st.parse_features(features, sae.n_features), mode, "cond", st.FEATURE_MEAN, mask,
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


def test_two_identical_steers_in_series_give_twice_the_edit(comfy, tiny, conds, csae):  # noqa: F811
    """Each Steer is keyed by the node id ComfyUI fills ONLY when the schema declares it: undeclared, two identical
    nodes share one key and the second silently replaces the first."""
    one, two = steer_chain(tiny.model, steer_inputs(csae, "3:8"), steer_inputs(csae, "3:8"))
    twice = steer_chain(tiny.model, steer_inputs(csae, "3:16"))[0]
    out = sample(tiny, conds, two)[0]
    assert not torch.equal(out, sample(tiny, conds, one)[0])
    ref = sample(tiny, conds, twice)[0]
    assert float((out - ref).abs().max()) <= 1e-5 * float(ref.abs().max())  # linear in the strength (to rounding)
    assert torch.equal(out, sample(tiny, conds, reference(tiny, {BLOCK: [steerer(csae, "3:8")] * 2}))[0])
    _no_hooks_left(tiny)


@pytest.mark.parametrize("mode", ["global", "spatial"])
def test_two_steers_at_one_block_compose_in_chain_order(comfy, tiny, conds, csae, mode):  # noqa: F811
    mask = torch.zeros(SIZE, SIZE)
    mask[:, : SIZE // 2] = 1.0
    b_mask = mask if mode == "spatial" else None
    first, chained = steer_chain(tiny.model, steer_inputs(csae, "3:8"),
                                 steer_inputs(csae, "17:-6, 40:5", mode=mode, mask=b_mask))
    first_wrappers, first_out = wrappers(first), sample(tiny, conds, first)[0]
    ref = reference(tiny, {BLOCK: [steerer(csae, "3:8"), steerer(csae, "17:-6, 40:5", mode, b_mask)]})
    out = sample(tiny, conds, chained)[0]
    assert torch.equal(out, sample(tiny, conds, ref)[0])
    assert not torch.equal(out, first_out)
    if mode == "global":  # global edits do not read the output: chaining = one steer with every feature (to rounding)
        one = sample(tiny, conds, steer_chain(tiny.model, steer_inputs(csae, "3:8, 17:-6, 40:5"))[0])[0]
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
    ab = steer_chain(tiny.model, steer_inputs(csae, "3:8"), steer_inputs(other, "17:-6"))[1]
    ba = steer_chain(tiny.model, steer_inputs(other, "17:-6"), steer_inputs(csae, "3:8"))[1]
    ref = reference(tiny, {BLOCK: [steerer(csae, "3:8")], OTHER: [steerer(other, "17:-6")]})
    out = sample(tiny, conds, ab)[0]
    assert torch.equal(out, sample(tiny, conds, ref)[0]) and torch.equal(out, sample(tiny, conds, ba)[0])
    for alone in (steer_chain(tiny.model, steer_inputs(csae, "3:8"))[0],
                  steer_chain(tiny.model, steer_inputs(other, "17:-6"))[0]):
        assert not torch.equal(out, sample(tiny, conds, alone)[0])
    _no_hooks_left(tiny)


def test_requeue_of_an_edited_chain_replaces_only_the_edited_nodes_steer(comfy, tiny, conds, csae):  # noqa: F811
    vanilla = sample(tiny, conds, tiny.model)[0]
    other = pack_module("sliderspace_core.concepts.sae").ConceptSAE(csae.sae, OTHER, csae.feature_mean,
                                                                    csae.feature_std)
    ex = new_executor()
    g = Graph()
    a = g.node(STEER, model=g.value(tiny.model), **steer_inputs(csae, "3:8"))[0]
    b = g.node(STEER, model=a, **steer_inputs(csae, "17:-6"))[0]
    first, second = g.run(a, b, executor=ex)
    out = sample(tiny, conds, second)[0]
    assert torch.equal(out, sample(tiny, conds, reference(tiny, {BLOCK: [steerer(csae, "3:8"),
                                                                         steerer(csae, "17:-6")]}))[0])

    def requeue(node, **changes):
        g.prompt[node[0]]["inputs"].update(changes)
        return g.run(a, b, executor=ex)

    # node b edited to strength 0: only node a's steer remains, bit for bit (node a comes from the cache)
    a_out, b_out = requeue(b, features="17:0")
    assert a_out is first and torch.equal(sample(tiny, conds, b_out)[0], sample(tiny, conds, first)[0])
    # back to its strength: the same result as the first run, nothing stacked
    assert torch.equal(sample(tiny, conds, requeue(b, features="17:-6")[1])[0], out)
    # node b given an SAE at another block: its steer moves there, node a's stays
    moved = requeue(b, sae=g.value(other))[1]
    ref = reference(tiny, {BLOCK: [steerer(csae, "3:8")], OTHER: [steerer(other, "17:-6")]})
    assert torch.equal(sample(tiny, conds, moved)[0], sample(tiny, conds, ref)[0])
    # both off: vanilla
    requeue(a, features="")
    assert torch.equal(sample(tiny, conds, requeue(b, features="17:0")[1])[0], vanilla)
    _no_hooks_left(tiny)


def test_outside_a_prompt_the_same_steer_replaces_and_a_different_one_composes(comfy, tiny, conds, csae):  # noqa: F811
    """Called directly (no executor, so no node id: scripts, other packs), content + settings key the steer."""
    from .test_discovery import _out

    node = comfy["classes"][STEER]
    st = pack_module("sliderspace_core.concepts.steering")

    def direct(model, features):
        with torch.inference_mode():
            return _out(node.execute(model, csae, features, "global", "cond", st.FEATURE_MEAN, 0.0, 1.0, True))[0]

    once = direct(tiny.model, "3:8")
    assert torch.equal(sample(tiny, conds, direct(once, "3:8"))[0], sample(tiny, conds, once)[0])
    both = sample(tiny, conds, direct(once, "17:-6"))[0]
    assert torch.equal(both, sample(tiny, conds, steer_chain(tiny.model, steer_inputs(csae, "3:8"),
                                                             steer_inputs(csae, "17:-6"))[1])[0])
    _no_hooks_left(tiny)
