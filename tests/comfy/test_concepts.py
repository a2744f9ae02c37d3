"""SAE Steer's behavioural contract (ARCHITECTURE.md "Principles") on the tiny SD1.5-shaped model, with the node
run the way a server runs it (tests/comfy/executor.py: validate_prompt + PromptExecutor, inference mode, only
declared hidden inputs): input never mutated, strength 0 = vanilla bit for bit, re-queue idempotent with one
executor, gating by sigma, clear errors; and the block capture under it."""

from __future__ import annotations

import pytest
import torch

from .executor import Graph, NodeFailed, PromptInvalid, new_executor
from .host import pack_module
from .test_discovery import SIZE

STEPS = 6
BLOCK = "middle_block.1"
STEER = "SliderSpaceSAESteer"
STEER_NAME = "SAE Steer"


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


@pytest.fixture(scope="module")
def conds(comfy, tiny):
    C = comfy["classes"]
    with torch.inference_mode():
        return C["CLIPTextEncode"]().encode(tiny.clip, "a dog")[0], C["CLIPTextEncode"]().encode(tiny.clip, "")[0]


@pytest.fixture(scope="module")
def csae(comfy):
    """A random SAE on the tiny model's middle block (width 320)."""
    sae_mod, topk = pack_module("sliderspace_core.concepts.sae"), pack_module("sliderspace_core.decompose.topk_sae")
    sae = topk.TopKSAE.create(320, topk.TopKSAEConfig(k=8, n_latents=640, seed=4))
    mean = torch.rand(640, generator=torch.Generator().manual_seed(5)) + 0.5
    return sae_mod.ConceptSAE(sae, BLOCK, mean, mean / 3)


def sample(tiny, conds, model, seed=3, sampler="euler", record=None):
    """Final latent and x̂0 per step; ``record`` collects the CFG function's cond/uncond denoised per call."""
    import comfy.sample as cs

    xs = {}
    if record is not None:
        model = model.clone()

        def cfg_fn(args):
            record.append((args["cond_denoised"].clone(), args["uncond_denoised"].clone()))
            return args["uncond_denoised"] + (args["cond_denoised"] - args["uncond_denoised"]) * args["cond_scale"]

        model.set_model_sampler_cfg_function(cfg_fn)
    with torch.inference_mode():
        latent = cs.fix_empty_latent_channels(model, torch.zeros([1, 4, SIZE // 8, SIZE // 8]))
        out = cs.sample(model, cs.prepare_noise(latent, seed), STEPS, 5.0, sampler, "normal", conds[0], conds[1],
                        latent, callback=lambda i, x0, x, n: xs.__setitem__(i, x0.clone()), disable_pbar=True,
                        seed=seed)
    return out, xs


def steer_inputs(sae, features="3:8, 17:-6", mode="global", apply_to="cond", start=0.0, end=1.0, mask=None,
                 scale=None, suppress=True) -> dict:
    """SAE Steer's inputs by name (``scale`` None: the node's default, sdxl-unbox's feature-mean units)."""
    scale = pack_module("sliderspace_core.concepts.steering").FEATURE_MEAN if scale is None else scale
    inputs = dict(sae=sae, features=features, mode=mode, apply_to=apply_to, scale=scale, start_percent=start,
                  end_percent=end, suppress_outside=suppress)
    if mask is not None:
        inputs["mask"] = mask
    return inputs


def steer_chain(model, *steps: dict, executor=None) -> tuple:
    """SAE Steer nodes in series in ONE prompt (each ``steer_inputs``), run by ComfyUI's executor; returns
    every node's MODEL output in chain order."""
    g = Graph()
    link, outs = g.value(model), []
    for inputs in steps:
        link = g.node(STEER, model=link, **inputs)[0]
        outs.append(link)
    return g.run(*outs, executor=executor)


def steer(comfy, model, sae, features="3:8, 17:-6", **kw):
    """One SAE Steer node run as a server runs it; its MODEL output."""
    return steer_chain(model, steer_inputs(sae, features, **kw))[0]


def fails(fn, node_name: str, input_name: str) -> str:
    """``fn`` fails in the executor (or in validation) with a message naming the node, the input and a fix."""
    with pytest.raises((NodeFailed, PromptInvalid)) as e:
        fn()
    msg = str(e.value)
    assert node_name in msg and f"'{input_name}'" in msg and "Fix:" in msg, msg
    return msg


def _no_hooks_left(tiny):
    dm = tiny.model.model.diffusion_model
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in dm.modules())
    assert not tiny.model.wrappers.get(pack_module("nodes.glue.hooks").DIFFUSION, {})


def wrappers(model) -> dict:
    return {k: {kk: list(vv) for kk, vv in v.items()} for k, v in model.wrappers.items()}


def test_capture_alone_is_bitwise_vanilla_and_sees_delta(comfy, tiny, conds):
    hooks = pack_module("nodes.glue.hooks")
    vanilla, _ = sample(tiny, conds, tiny.model)
    seen = []
    block = tiny.model.model.diffusion_model.get_submodule(BLOCK)
    direct = []
    h = block.register_forward_hook(lambda m, a, o: direct.append((o - a[0]).clone()))

    def fn(out_rows, in_rows, labels, sigma, grid):
        seen.append(((out_rows - in_rows).clone(), list(labels), sigma, grid))

    m = hooks.with_block_hook(tiny.model, hooks.CAPTURE_KEY, BLOCK, fn)
    try:
        out, _ = sample(tiny, conds, m)
    finally:
        h.remove()
    assert torch.equal(out, vanilla)
    assert len(seen) == STEPS and seen[0][3] == (SIZE // 8, SIZE // 8)  # the tiny UNet never downsamples
    assert sorted(seen[0][1]) == [0, 1] and seen[0][2] > seen[-1][2]
    d0 = direct[0]  # NCHW; our rows are (batch, h*w, C)
    assert torch.equal(seen[0][0], d0.reshape(d0.shape[0], d0.shape[1], -1).transpose(1, 2))
    _no_hooks_left(tiny)


def test_zero_strength_or_no_features_or_empty_mask_is_bitwise_vanilla(comfy, tiny, conds, csae):
    vanilla, _ = sample(tiny, conds, tiny.model)
    empty = torch.zeros(SIZE, SIZE)
    st = pack_module("sliderspace_core.concepts.steering")
    for scale in st.SCALES:
        for m in (steer(comfy, tiny.model, csae, "3:0", scale=scale), steer(comfy, tiny.model, csae, "", scale=scale),
                  steer(comfy, tiny.model, csae, mode="spatial", mask=empty, scale=scale),
                  steer(comfy, tiny.model, csae, start=1.0, scale=scale)):
            assert torch.equal(sample(tiny, conds, m)[0], vanilla), scale
    assert not torch.equal(sample(tiny, conds, steer(comfy, tiny.model, csae))[0], vanilla)
    _no_hooks_left(tiny)


def test_cond_only_leaves_the_uncond_half_unchanged(comfy, tiny, conds, csae):
    van, ours, both = [], [], []
    sample(tiny, conds, tiny.model, record=van)
    sample(tiny, conds, steer(comfy, tiny.model, csae, apply_to="cond"), record=ours)
    sample(tiny, conds, steer(comfy, tiny.model, csae, apply_to="both"), record=both)
    assert torch.equal(ours[0][1], van[0][1]) and not torch.equal(ours[0][0], van[0][0])
    assert not torch.equal(both[0][1], van[0][1])


def test_late_window_leaves_earlier_steps_vanilla(comfy, tiny, conds, csae):
    from comfy.samplers import KSampler

    start = 0.5
    m = steer(comfy, tiny.model, csae, start=start)
    sigmas = KSampler(tiny.model, STEPS, "cpu", "euler", "normal").sigmas
    sigma_start = tiny.model.get_model_object("model_sampling").percent_to_sigma(start)
    _, van = sample(tiny, conds, tiny.model)
    _, ours = sample(tiny, conds, m)
    before = [i for i in range(STEPS) if float(sigmas[i]) > sigma_start]
    after = [i for i in range(STEPS) if float(sigmas[i]) <= sigma_start]
    assert before and after
    assert all(torch.equal(van[i], ours[i]) for i in before)
    assert not any(torch.equal(van[i], ours[i]) for i in after)


def test_requeue_with_one_executor_is_idempotent_and_input_is_not_mutated(comfy, tiny, conds, csae):
    before = wrappers(tiny.model)
    vanilla = sample(tiny, conds, tiny.model)[0]
    ex = new_executor()
    g = Graph()
    node = g.node(STEER, model=g.value(tiny.model), **steer_inputs(csae, "3:8"))[0]
    on = g.run(node, executor=ex)[0]
    on_out = sample(tiny, conds, on)[0]
    assert not torch.equal(on_out, vanilla)
    assert g.run(node, executor=ex)[0] is on  # queued again unchanged: ComfyUI's cache answers
    g.prompt[node[0]]["inputs"]["features"] = "3:0"  # the user turns the strength to 0 and queues again
    assert torch.equal(sample(tiny, conds, g.run(node, executor=ex)[0])[0], vanilla)
    g.prompt[node[0]]["inputs"]["features"] = "3:8"  # ... and back: the same edit, not a stacked one
    assert torch.equal(sample(tiny, conds, g.run(node, executor=ex)[0])[0], on_out)
    assert wrappers(tiny.model) == before and torch.equal(sample(tiny, conds, tiny.model)[0], vanilla)
    _no_hooks_left(tiny)


def test_exception_in_a_hook_leaves_nothing_behind(comfy, tiny, conds):
    hooks = pack_module("nodes.glue.hooks")
    vanilla, _ = sample(tiny, conds, tiny.model)

    def boom(*a):
        raise RuntimeError("hook failed")

    m = hooks.with_block_hook(tiny.model, hooks.steer_key("a failing test steer"), BLOCK, boom)
    with pytest.raises(RuntimeError, match="hook failed"):
        sample(tiny, conds, m)
    _no_hooks_left(tiny)
    assert torch.equal(sample(tiny, conds, tiny.model)[0], vanilla)


def test_spatial_mask_of_any_size_is_resized_and_local(comfy, tiny, conds, csae):
    mask = torch.zeros(1, 37, 23)  # not the block's 8x8 grid: area-resized
    mask[:, :18, :11] = 1.0
    m = steer(comfy, tiny.model, csae, "3:20", mode="spatial", mask=mask, suppress=False)
    van, ours = [], []
    sample(tiny, conds, tiny.model, record=van)
    sample(tiny, conds, m, record=ours)
    assert not torch.equal(ours[0][0], van[0][0]) and torch.equal(ours[0][1], van[0][1])


def test_every_scale_runs_in_the_node_and_an_old_workflow_scale_name_still_validates(comfy, tiny, conds, csae):
    """The units are named choices of one ``scale`` input; a workflow saved with the earlier name of sdxl-unbox's
    unit ('typical activation') still validates and steers exactly as 'feature mean (sdxl-unbox)'."""
    st = pack_module("sliderspace_core.concepts.steering")
    vanilla = sample(tiny, conds, tiny.model)[0]
    default = sample(tiny, conds, steer(comfy, tiny.model, csae, "3:8"))[0]
    assert torch.equal(sample(tiny, conds, steer(comfy, tiny.model, csae, "3:8", scale=st.FEATURE_MEAN))[0], default)
    assert torch.equal(sample(tiny, conds, steer(comfy, tiny.model, csae, "3:8", scale="typical activation"))[0],
                       default)
    for scale in (st.BETA_GRID, st.ABSOLUTE):
        for mode, mask in (("global", None), ("spatial", torch.ones(SIZE, SIZE))):
            out = sample(tiny, conds, steer(comfy, tiny.model, csae, "3:4000", scale=scale, mode=mode, mask=mask))[0]
            assert bool(torch.isfinite(out).all()) and not torch.equal(out, vanilla), (scale, mode)
    fails(lambda: steer(comfy, tiny.model, csae, scale="per pixel"), STEER_NAME, "scale")  # refused before running


def test_bad_inputs_name_node_input_and_fix(comfy, tiny, csae):
    sae_mod, topk = pack_module("sliderspace_core.concepts.sae"), pack_module("sliderspace_core.decompose.topk_sae")
    narrow = sae_mod.ConceptSAE(topk.TopKSAE.create(64, topk.TopKSAEConfig(k=4, n_latents=128)), BLOCK,
                                torch.ones(128), torch.ones(128))
    assert "width 64 but middle_block.1 has width 320" in fails(lambda: steer(comfy, tiny.model, narrow), STEER_NAME,
                                                                  "sae")
    missing = sae_mod.ConceptSAE(csae.sae, "input_blocks.8.1", csae.feature_mean, csae.feature_std)
    assert "no transformer block 'input_blocks.8.1'" in fails(lambda: steer(comfy, tiny.model, missing), STEER_NAME,
                                                              "sae")
    fails(lambda: steer(comfy, tiny.model, csae, "9999:1"), STEER_NAME, "features")
    fails(lambda: steer(comfy, tiny.model, csae, mode="spatial"), STEER_NAME, "mask")
    fails(lambda: steer(comfy, tiny.model, csae, start=0.8, end=0.2), STEER_NAME, "start_percent")
