"""ELROND in real ComfyUI with tiny random models: token rows, gradients vs finite differences (SD1.5, SDXL and
FLUX shapes), the nodes end to end (collect → decompose → apply → KSampler), and bad inputs."""

from __future__ import annotations

import pytest
import torch

from .elrond_nodes import PROMPT, decompose, failure, input_of
from .executor import run_node
from .families import build_model as build_family
from .host import pack_module

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


@pytest.fixture(scope="module")
def mods(comfy):
    names = {"cg": "nodes.glue.conditioning", "gr": "sliderspace_core.elrond.gradients",
             "ed": "sliderspace_core.elrond.edits", "smp": "nodes.glue.sampling",
             "err": "sliderspace_core.common.errors", "col": "nodes.elrond.collect", "dec": "nodes.elrond.decompose",
             "app": "nodes.elrond.apply", "fil": "nodes.elrond.files", "dr": "sliderspace_core.elrond.directions"}
    return type("M", (), {k: pack_module(v) for k, v in names.items()})


def test_token_rows_come_from_the_models_tokenizer(tiny, mods):
    assert mods.cg.token_rows(tiny.clip, PROMPT, "dog") == [5]
    rows = mods.cg.token_rows(tiny.clip, PROMPT, "sliderspace")  # several BPE pieces: all of them
    assert len(rows) > 1 and rows == list(range(rows[0], rows[0] + len(rows)))
    assert mods.cg.token_rows(tiny.clip, "a dog and a dog", "dog") == [2, 5]
    with pytest.raises(mods.err.InputError) as e:
        mods.cg.token_rows(tiny.clip, PROMPT, "cat")
    assert e.value.input_name == "word" and "does not occur" in e.value.problem
    assert mods.cg.conditioning_space(tiny.clip, 768) == "conditioning:SD1ClipModel:768"


def fd_check(mods, model, cond, latents, rows, sigma, eps):
    """Largest relative error between the gradients' directional derivative and a central difference;
    block checkpointing must give the same gradients."""
    cfg = mods.gr.GradientConfig(pairs=4, batch_size=2, seed=3, normalize=False)
    gs = mods.cg.collect_in_comfy(model, cond, latents, rows, sigma, cfg)
    ck = mods.cg.collect_in_comfy(model, cond, latents, rows, sigma, cfg, checkpointing=True)
    torch.testing.assert_close(ck.vectors, gs.vectors, rtol=1e-4, atol=1e-6 * float(gs.vectors.abs().max()))
    assert not any("forward" in vars(m) for m in model.model.diffusion_model.modules())  # wrappers are gone
    v = torch.randn(cond[0][0].shape[-1], generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def losses(t):
        edited = [[mods.ed.add_to_rows(cond[0][0], rows, t * v), cond[0][1]]]
        return mods.cg.collect_in_comfy(model, edited, latents, rows, sigma, cfg).losses

    fd = (losses(eps) - losses(-eps)) / (2 * eps)
    analytic = gs.vectors.double() @ v
    assert bool(torch.isfinite(gs.vectors).all()) and float(analytic.abs().max()) > 0
    rel = float((analytic - fd).abs().max() / analytic.abs().max())
    print(f"\n[ELROND FD] rel. error {rel:.2e} (max |g·v| {float(analytic.abs().max()):.3g})")
    return rel


def test_sd15_gradient_matches_float64_finite_difference(tiny, mods):
    from . import tiny_models

    model = tiny_models.build_model(seed=11)
    dm = model.model.diffusion_model
    dm.to(torch.float64)
    dm.dtype = torch.float64  # the guider path casts x̂0 to float32; FD runs in float64 around it
    cond = mods.smp.encode_text(tiny.clip, PROMPT)
    cond = [[cond[0][0].double(), cond[0][1]]]
    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = mods.cg.token_rows(tiny.clip, PROMPT, "sliderspace")
    assert fd_check(mods, model, cond, latents, rows, 5.0, 1e-2) <= 1e-2


@pytest.mark.parametrize("family", ["SDXL", "Flux"])
def test_sdxl_and_flux_shapes_collect_correct_gradients(comfy, mods, family):
    model = build_family(family, seed=7)
    g = torch.Generator().manual_seed(1)
    if family == "SDXL":
        cond = [[torch.randn(1, 77, 2048, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g)}]]
        latents, rows = torch.randn(4, 4, 8, 8, generator=g), [3, 4]
    else:
        cond = [[torch.randn(1, 16, 64, generator=g), {"pooled_output": torch.randn(1, 32, generator=g)}]]
        latents, rows = torch.randn(4, 16, 8, 8, generator=g), [2]
    index, sigma = mods.cg.first_usable_sigma(model, 10, "simple")
    assert (index == 1) == (family == "Flux")  # FLUX's first sigma (1.0) would drop image A: the next one
    assert fd_check(mods, model, cond, latents, rows, sigma, 1e-2) <= 1e-2


@pytest.fixture(scope="module")
def collected(tiny, mods):
    args = dict(model=tiny.model, clip=tiny.clip, prompt=PROMPT, word="dog", negative="", images=5, pairs=8, seed=2,
                steps=3, cfg=2.0, sampler_name="euler", scheduler="normal", width=64, height=64, step=0,
                normalize=True, remove_common=False, batch_size=3, gradient_checkpointing=True, loss_space="latent")
    first = run_node("ELRONDCollectGradients", outputs=3, **args)
    return args, first


def test_collect_node_is_seeded_and_deterministic(collected, mods):
    args, (grads, latents, info) = collected
    assert grads.vectors.shape == (8, 768) and grads.token_rows == [5] and "8 gradients" in info
    assert torch.allclose(grads.vectors.norm(dim=1), torch.ones(8))
    assert latents["samples"].shape == (5, 4, 8, 8)
    again = run_node("ELRONDCollectGradients", **args)[0]
    assert torch.equal(again.vectors, grads.vectors) and torch.equal(again.pairs, grads.pairs)
    other = run_node("ELRONDCollectGradients", **{**args, "seed": 3})[0]
    assert not torch.equal(other.vectors, grads.vectors)
    # a LATENT batch instead of sampling gives the same gradients for the same images
    same = run_node("ELRONDCollectGradients", **args, latents=latents)[0]
    torch.testing.assert_close(same.vectors, grads.vectors)


def test_topk_sae_decompose_in_the_executor_at_its_defaults(collected, mods):
    """Issue 24.1: inside ComfyUI's executor (inference mode, inference-tensor gradients from Collect) the
    TopK SAE trains, at the node's defaults, and its atoms leave their init."""
    _, (grads, _, _) = collected
    dirs, spectrum = decompose(grads, method="TopK SAE")
    assert dirs.method == "topk_sae" and dirs.n_components >= 1 and spectrum.ndim == 4
    assert dirs.source["atom_init_cos"] < 0.99 and dirs.source["steps"] >= 1000
    assert torch.allclose(dirs.components.norm(dim=1), torch.ones(dirs.n_components), atol=1e-5)
    err = failure("ELRONDDecompose", gradients=grads, method="TopK SAE", n=3, c=2.5, sae_k=32, sae_epochs=20,
                  sae_lr=1e-7, seed=0)
    assert "ELROND Decompose" in err.message and input_of(err) == "sae_lr" and "did not train" in err.message


def test_decompose_apply_and_ksampler(tiny, collected, mods):
    import nodes as comfy_nodes

    _, (grads, _, _) = collected
    dirs, spectrum = decompose(grads)
    assert dirs.n_components == 3 and dirs.space == "conditioning:SD1ClipModel:768" and spectrum.shape[-1] == 3
    report, lid, curve = run_node("ELRONDConceptComplexity", outputs=3, gradients=grads, c=2.5, seed=0,
                                  directions=dirs, other_directions=dirs)
    assert "LID" in report and "subspace overlap: 1.0000" in report and curve.ndim == 4
    positive = mods.smp.encode_text(tiny.clip, PROMPT)
    negative = mods.smp.encode_text(tiny.clip, "")
    before = positive[0][0].clone()

    def apply(cond, word, strengths):
        return run_node("ELRONDApplyDirections", conditioning=cond, clip=tiny.clip, prompt=PROMPT, word=word,
                        directions=dirs, strengths=strengths, multiplier=1.0)[0]

    zero = apply(positive, "dog", "0:0, 1:0")
    moved = apply(positive, "dog", "0:30")
    assert torch.equal(positive[0][0], before)  # the input is never modified
    assert torch.equal(zero[0][0], before)
    changed = (moved[0][0] != before).any(-1)[0]
    assert changed.nonzero().flatten().tolist() == [5]  # only the word's row
    torch.testing.assert_close((moved[0][0] - before)[0, 5], 30 * dirs.components[0])
    # a second word composes without touching the first word's edit
    both = apply(moved, "grass", "1:-20")
    assert torch.equal(both[0][0][0, 5], moved[0][0][0, 5]) and not torch.equal(both[0][0], moved[0][0])

    def ksample(pos):
        latent = {"samples": torch.zeros(1, 4, 8, 8)}
        out = comfy_nodes.common_ksampler(tiny.model, 5, 3, 2.0, "euler", "normal", pos, negative, latent)
        return out[0]["samples"]

    vanilla = ksample(positive)
    assert torch.equal(ksample(zero), vanilla)  # strength 0 ≡ vanilla, bit for bit
    assert not torch.equal(ksample(moved), vanilla)
    assert torch.equal(negative[0][0], mods.smp.encode_text(tiny.clip, "")[0][0])


def test_random_directions_node_item_j_is_seed_plus_j(tiny, collected, mods):
    _, (grads, _, _) = collected
    dirs = decompose(grads, n=4)[0]
    positive = mods.smp.encode_text(tiny.clip, PROMPT)

    def rnd(seed, batch_size):
        return run_node("ELRONDRandomDirections", outputs=2, conditioning=positive, clip=tiny.clip, prompt=PROMPT,
                        word="dog", directions=dirs, seed=seed, n=2, min_strength=30.0, max_strength=40.0,
                        random_sign=True, batch_size=batch_size)

    batch, text = rnd(10, 3)
    single = rnd(12, 1)[0]
    assert batch[0][0].shape[0] == 3 and torch.equal(batch[0][0][2], single[0][0][0])
    assert "item 2 (seed 12)" in text
    norms = (batch[0][0] - positive[0][0])[:, 5].norm(dim=-1)
    assert bool(((norms > 29.99) & (norms < 40.01)).all())


def test_bad_inputs_name_node_input_and_fix(tiny, collected, mods):
    args, (grads, _, _) = collected
    err = failure("ELRONDCollectGradients", **{**args, "word": "cat"})
    assert "ELROND Collect Gradients" in err.message and input_of(err) == "word"
    err = failure("ELRONDCollectGradients", **{**args, "pairs": 11})
    assert input_of(err) == "pairs" and "10 pairs" in err.message and "Fix:" in err.message
    narrow = mods.dr.Directions(torch.eye(2, 48), torch.ones(2), torch.ones(2), torch.zeros(48), 9,
                                "conditioning:SD1ClipModel:48")
    positive = mods.smp.encode_text(tiny.clip, PROMPT)
    apply = dict(conditioning=positive, clip=tiny.clip, prompt=PROMPT, word="dog", strengths="0:1", multiplier=1.0)
    err = failure("ELRONDApplyDirections", **apply, directions=narrow)
    assert "ELROND Apply Directions" in err.message and input_of(err) == "directions"
    foreign = mods.dr.Directions(torch.eye(2, 768), torch.ones(2), torch.ones(2), torch.zeros(768), 9,
                                 "conditioning:SD2ClipModel:768")
    err = failure("ELRONDApplyDirections", **apply, directions=foreign)
    assert "SD2ClipModel" in err.message
    err = failure("ELRONDApplyDirections", **{**apply, "prompt": "another prompt entirely " * 10}, directions=foreign)
    assert input_of(err) in ("conditioning", "directions")  # another prompt than the conditioning's
    from . import tiny_models

    broken = tiny_models.build_model(seed=12)
    with torch.no_grad():
        next(broken.model.diffusion_model.parameters()).view(-1)[0] = float("nan")
    err = failure("ELRONDCollectGradients", **{**args, "model": broken,
                                               "latents": {"samples": torch.randn(3, 4, 8, 8)}, "pairs": 2})
    assert input_of(err) == "model" and "NaN" in err.message


def test_save_and_load_directions_nodes(collected, mods, tmp_path, monkeypatch):
    import folder_paths

    _, (grads, _, _) = collected
    dirs = decompose(grads, n=2)[0]
    exts = folder_paths.folder_names_and_paths["elrond"][1]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "elrond", ([str(tmp_path)], exts))
    name = run_node("ELRONDSaveDirections", directions=dirs, filename_prefix="dog dirs")[0]
    assert name == "dog dirs_00001.safetensors"
    back = run_node("ELRONDLoadDirections", file=name)[0]
    assert torch.equal(back.components, dirs.components) and back.space == dirs.space
    err = failure("ELRONDLoadDirections", file="missing.safetensors")
    assert "ELROND Load Directions" in err.message and input_of(err) == "file"


def test_collect_node_clip_image_loss_space(tiny, collected, mods):
    args, (latent_grads, latents, _) = collected
    clip_args = {**args, "loss_space": "clip image", "latents": latents, "vae": tiny.vae}
    grads, _, info = run_node("ELRONDCollectGradients", outputs=3, **clip_args, clip_vision=tiny.clip_vision)
    assert grads.vectors.shape == latent_grads.vectors.shape and torch.equal(grads.pairs, latent_grads.pairs)
    assert bool(torch.isfinite(grads.vectors).all()) and bool(torch.isfinite(grads.losses).all())
    assert torch.allclose(grads.vectors.norm(dim=1), torch.ones(8))  # normalised: no zero gradient among them
    assert bool((grads.losses > 0).all()) and bool((grads.losses <= 4).all())  # 2 - 2 cos of unit embeddings
    assert grads.config["loss_space"] == "clip image" and latent_grads.config["loss_space"] == "latent"
    assert "clip image loss" in info
    cos = torch.nn.functional.cosine_similarity(grads.vectors, latent_grads.vectors)
    assert float(cos.abs().max()) < 0.99  # a different loss gives different gradients
    dirs = decompose(grads, n=2)[0]
    assert dirs.n_components == 2 and dirs.source["loss_space"] == "clip image"  # provenance for the file
    no_vae = {k: v for k, v in clip_args.items() if k != "vae"}
    err = failure("ELRONDCollectGradients", **no_vae, clip_vision=tiny.clip_vision)
    assert "ELROND Collect Gradients" in err.message and input_of(err) == "vae" and "latent" in err.message
    err = failure("ELRONDCollectGradients", **clip_args)
    assert input_of(err) == "clip_vision" and "CLIP_VISION" in err.message


def test_collect_gradients_go_through_the_guided_x0_at_cfg(tiny, mods):
    """Issue 24.4: at cfg 7.5 the gradient is that of ||x̂0_guided - z_B||², x̂0_guided = x̂0_u + 7.5 (x̂0_c - x̂0_u)
    (the authors' guided path), w.r.t. the cond rows only; checked against float64 central differences of a
    direct implementation of that loss, and recorded in the provenance."""
    from . import tiny_models

    model = tiny_models.build_model(seed=11)
    dm = model.model.diffusion_model
    dm.to(torch.float64)
    dm.dtype = torch.float64  # FD in float64 around the float32 CONDITIONING
    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cfg, seed = 7.5, 5
    grads = run_node("ELRONDCollectGradients", model=model, clip=tiny.clip, prompt=PROMPT, word="sliderspace",
                     negative="", images=4, pairs=4, seed=seed, steps=3, cfg=cfg, sampler_name="euler",
                     scheduler="normal", width=64, height=64, step=1, normalize=False, remove_common=False,
                     batch_size=2, gradient_checkpointing=False, loss_space="latent", latents={"samples": latents})[0]
    base = model.model
    cond = mods.smp.encode_text(tiny.clip, PROMPT)[0][0].double()
    uncond = mods.smp.encode_text(tiny.clip, "")[0][0].double()
    rows = grads.token_rows
    v = torch.randn(cond.shape[-1], generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    z = base.process_latent_in(latents.double())
    sigma = torch.tensor([grads.sigma], dtype=torch.float64)

    def guided_loss(p: int, t: float) -> float:
        a, b = grads.pairs[p].tolist()
        noise = mods.gr.pair_noise(latents.shape[1:], seed, p).double()[None]
        x_t = base.model_sampling.noise_scaling(sigma, noise, z[a:a + 1], False)
        with torch.no_grad():
            c = base.apply_model(x_t, sigma, c_crossattn=mods.ed.add_to_rows(cond, rows, t * v)).double()
            u = base.apply_model(x_t, sigma, c_crossattn=uncond).double()
        return float((u + cfg * (c - u) - z[b:b + 1]).square().mean())

    eps = 1e-2
    fd = torch.tensor([(guided_loss(p, eps) - guided_loss(p, -eps)) / (2 * eps) for p in range(4)],
                      dtype=torch.float64)
    analytic = grads.vectors.double() @ v
    rel = float((analytic - fd).abs().max() / fd.abs().max())
    print(f"\n[ELROND guided FD] rel. error {rel:.2e} (max |dL/dt| {float(fd.abs().max()):.3g})")
    assert rel <= 1e-2, (analytic, fd)
    assert grads.config["cfg"] == cfg and "guided" in grads.config["x0"]
    assert decompose(grads, n=2)[0].source["cfg"] == cfg  # travels into the directions' file
