"""Load ToyWorld in real ComfyUI: a MODEL, CLIP, VAE and encoder that stock nodes and the pack's nodes use.

The references are ToyWorld's own pure-torch networks and sampler (toyworld/), built from the same files.
"""

from __future__ import annotations

import pytest
import torch

from toyworld.host import build_host, karras_sigmas, seed_noise
from toyworld.text import tokenize

STEPS, CFG = 16, 2.0


def _out(node_output):
    return node_output.args if hasattr(node_output, "args") else node_output


@pytest.fixture(scope="module")
def world(comfy):
    with torch.inference_mode():
        return _out(comfy["classes"]["SliderSpaceLoadToyWorld"].execute())


@pytest.fixture(scope="module")
def native():
    return build_host("a red circle", CFG)


def _encode(comfy, clip, text):
    with torch.inference_mode():
        return comfy["classes"]["CLIPTextEncode"]().encode(clip, text)[0]


def test_stock_clip_text_encode_gives_toyworld_context(comfy, world, native):
    model, clip, vae, enc = world
    cond = _encode(comfy, clip, "a red circle")
    want = native.denoiser.context(tokenize("a red circle")[None])
    assert cond[0][0].dtype == torch.float32 and cond[0][0].shape == (1, 12, 64)
    torch.testing.assert_close(cond[0][0], want, rtol=0, atol=1e-6)
    torch.testing.assert_close(cond[0][1]["pooled_output"], want[:, 4], rtol=0, atol=1e-6)  # <end> (row 4)


def test_weighted_words_follow_comfy_rules(comfy, world):
    clip = world[1]
    plain, empty = _encode(comfy, clip, "a red circle")[0][0], _encode(comfy, clip, "")[0][0]
    weighted = _encode(comfy, clip, "a (red:1.5) circle")[0][0]
    torch.testing.assert_close(weighted[0, 2], (plain[0, 2] - empty[0, 2]) * 1.5 + empty[0, 2])
    torch.testing.assert_close(weighted[0, 3], plain[0, 3])


def test_unknown_words_and_long_prompts_are_refused_with_the_vocabulary(comfy, world):
    with pytest.raises(ValueError, match=r"does not know \['dog'\].*circle"):
        _encode(comfy, world[1], "a dog")
    with pytest.raises(ValueError, match="at most 10 fit"):
        _encode(comfy, world[1], " ".join(["red"] * 11))


def test_stock_ksampler_matches_toyworlds_own_sampler(comfy, world, native):
    """KSampler euler/karras on the loaded MODEL = ToyWorld's Euler sampler from the same start.

    ComfyUI starts a full-denoise run at x = noise·√(1 + σ_max²) (its VP-style ``noise_scaling``, which its
    EDM class inherits); ToyWorld's own sampler at noise·σ_max. Scaling the noise handed to ComfyUI by
    σ/√(1 + σ²) gives both the same start, and from there the runs must agree.
    """
    model, clip, vae, _ = world
    seeds = [3, 4]
    images = _ksample(model, vae, _encode(comfy, clip, "a red circle"), _encode(comfy, clip, ""), seeds)
    torch.testing.assert_close(model.model.model_sampling.sigma_max.float(), karras_sigmas(STEPS)[0])
    want = native.sample(seeds, STEPS)  # [B, 3, H, W] in [0, 1]
    torch.testing.assert_close(images, want, rtol=0, atol=1e-4)


def _ksample(model, vae, pos, neg, seeds) -> torch.Tensor:
    """ComfyUI's sampler (what KSampler calls) from ToyWorld's seed noise, started where ToyWorld's sampler
    starts; images ``[B, 3, H, W]`` in [0, 1]."""
    import comfy.sample as comfy_sample

    sigma_max = float(karras_sigmas(STEPS)[0])
    noise = seed_noise(seeds) * sigma_max / (1 + sigma_max**2) ** 0.5
    with torch.inference_mode():
        out = comfy_sample.sample(model, noise, STEPS, CFG, "euler", "karras", pos, neg, torch.zeros_like(noise),
                                  disable_pbar=True, seed=0)
        return vae.decode(out).movedim(-1, 1).float()


def test_apply_slider_bank_from_the_first_step_is_the_core_hosts_merged_slider(comfy, world, native):
    """F1c/F2c (benchmarks/f_toyworld_nodes.py) score a slider on images ComfyUI samples from the MODEL patched by
    Apply Slider Bank at start_percent 0; F1/F2 on ToyWorld's host with the slider merged from step 0
    (``score_sliders``). Same slider, same seeds: the same images, and not the slider-free ones."""
    from sliderspace_core.sliderspace.bank import Slider

    from .host import pack_module

    bk, fam = pack_module("sliderspace_core.sliderspace.bank"), pack_module("nodes.glue.family")
    model, clip, vae, _ = world
    modules = fam.target_modules(model.model.diffusion_model, "cross-attention k/v")
    g = torch.Generator().manual_seed(0)
    down = {n: torch.randn(1, m.in_features, generator=g) / m.in_features**0.5 for n, m in modules.items()}
    up = {n: torch.randn(m.out_features, 1, generator=g) for n, m in modules.items()}
    bank = bk.SliderBank([bk.Slider(down, up)], bk.BankMeta(**fam.model_facts(model, modules)))
    with torch.inference_mode():
        patched = _out(comfy["classes"]["SliderSpaceApplySliderBank"].execute(model, bank, "0:1", 1.0, 0.0, 1.0))[0]
    seeds = [5, 6]
    images = _ksample(patched, vae, _encode(comfy, clip, "a circle"), _encode(comfy, clip, ""), seeds)
    host = native.with_prompt("a circle")
    core = Slider(*({f"diffusion_model.{n}": t for n, t in f.items()} for f in (down, up)))  # the host's names
    want = host.sample(seeds, STEPS, [core], {0: 1.0}, start_step=0)
    assert (want - host.sample(seeds, STEPS)).abs().max() > 0.1  # the slider changes the images
    torch.testing.assert_close(images, want, rtol=0, atol=1e-4)


def test_pack_nodes_sample_full_size_pixel_latents(comfy, world):
    """The Trajectory Sampler makes 3-channel 32×32 pixel latents for ToyWorld (no 8× downscale)."""
    model, clip, _, _ = world
    node = comfy["classes"]["SliderSpaceTrajectorySampler"]
    with torch.inference_mode():
        traj = _out(node.execute(model, "a circle", "", 2, 0, 4, CFG, "euler", "karras", 32, 32, 2,
                                 "every step", 1, "float32", clip=clip))[0]
    assert traj.x0.shape == (2, 4, 3, 32, 32)
    assert traj.latent.family == "ToyWorld" and traj.latent.channels == 3


def test_block_list_and_slider_targets_use_sd_names(comfy, world):
    from .host import pack_module

    hooks, family = pack_module("nodes.glue.hooks"), pack_module("nodes.glue.family")
    model = world[0]
    blocks = [p for p, _, _ in hooks.list_blocks(model)]
    assert blocks == ["input_blocks.3.1", "input_blocks.5.1", "middle_block.1", "output_blocks.0.1",
                      "output_blocks.1.1"]
    kv = family.target_modules(model.model.diffusion_model, "cross-attention k/v")
    assert len(kv) == 10 and all(n.endswith(("attn2.to_k", "attn2.to_v")) for n in kv)


def test_sae_capture_and_steer_reach_toyworlds_blocks(comfy, world, tmp_path, monkeypatch):
    """Block hooks ride ComfyUI's DIFFUSION_MODEL wrappers, which a diffusion model must run itself (as
    ComfyUI's UNet does); before the loader's UNet did, capture on ToyWorld saw no evaluation and steering
    changed nothing. The block's grid is its own map's (8×8 here), not the latent's (32×32): with the latent's,
    concept maps and spatial masks of every UNet block below the first level were refused."""
    import folder_paths

    from .executor import run_node
    from .host import pack_module

    topk, sae_mod = pack_module("sliderspace_core.decompose.topk_sae"), pack_module("sliderspace_core.concepts.sae")
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path))
    C = comfy["classes"]
    model, clip, vae, _ = world
    pos, neg = _encode(comfy, clip, "a circle"), _encode(comfy, clip, "")
    block, steps = "input_blocks.5.1", 4
    sampling = dict(steps=steps, cfg=CFG, sampler_name="euler", scheduler="karras", width=32, height=32)
    acts = run_node("SliderSpaceSAECollectActivations", model=model, positive=pos, negative=neg, block=block,
                    capture="cond", start_percent=0.0, end_percent=1.0, samples=2, seed=0, spatial_subsample=0,
                    store_dtype="float32", name="tw", **sampling)[0]
    assert (acts.height, acts.width, acts.d) == (8, 8, 64) and acts.rows == 2 * steps * 64
    assert float(torch.cat(list(acts)).abs().max()) > 0

    sae = topk.TopKSAE.create(64, topk.TopKSAEConfig(k=4, n_latents=128, seed=0))
    csae = sae_mod.ConceptSAE(sae, block, torch.ones(128), torch.ones(128))
    latent = {"samples": torch.zeros(1, 3, 32, 32)}

    def run(m):
        with torch.inference_mode():
            return C["KSampler"]().sample(m, 3, steps, CFG, "euler", "karras", pos, neg, latent)[0]["samples"]

    steer = dict(sae=csae, features="5:8", apply_to="cond", scale="absolute", start_percent=0.0, end_percent=1.0,
                 suppress_outside=True)
    steered = run_node("SliderSpaceSAESteer", model=model, mode="global", **steer)[0]
    mask = torch.zeros(1, 32, 32)
    mask[:, :16, :16] = 1.0
    spatial = run_node("SliderSpaceSAESteer", model=model, mode="spatial", mask=mask, **steer)[0]
    maps, text = run_node("SliderSpaceSAEConceptMap", 2, model=model, sae=csae, positive=pos, negative=neg, seed=3,
                          step=0, top=4, vae=vae, **sampling)
    vanilla = run(model)
    assert (run(steered) - vanilla).abs().max() > 1e-3
    assert (run(spatial) - vanilla).abs().max() > 1e-3  # the mask is resized to the block's 8×8 grid
    assert maps.ndim == 4 and text.count("feature") == 4  # the block's grid, not the latent's 32×32
    assert torch.equal(run(model), vanilla)  # nothing left behind on the loaded MODEL


def test_node_discovery_gives_the_core_pipelines_pca_basis(comfy, world, native):
    """Trajectory Sampler → CLIP Embed (ToyWorld's encoder) → PCA Decompose on the loaded MODEL finds the basis
    ToyWorld's core pipeline (``toyworld.pipeline.discover``, which the F1–F4 rows use) finds from the same
    seeds: what lets F1c–F4c (benchmarks/f_toyworld_nodes.py) stand for the nodes. 4 trajectories: fewer than 5,
    so the core fit keeps every one, as the node chain does. The only input difference is ComfyUI's start
    noise·√(1+σ_max²) against ToyWorld's noise·σ_max (relative 8e-5 at σ_max 80)."""
    from toyworld.pipeline import DiscoveryConfig, discover, matched_cosines

    model, clip, vae, enc = world
    C = comfy["classes"]
    n, k = 4, 4
    cfg = DiscoveryConfig(prompt="a circle", cfg=CFG, n_trajectories=n, n_sliders=k)
    with torch.inference_mode():
        traj = _out(C["SliderSpaceTrajectorySampler"].execute(
            model, cfg.prompt, "", n, cfg.first_seed, STEPS, CFG, "euler", "karras", 32, 32, n,
            "every step", 1, "float16", clip=clip))[0]
        emb = _out(C["SliderSpaceClipEmbed"].execute(64, trajectories=traj, vae=vae, encoder=enc))[0]
        basis = _out(C["SliderSpacePCADecompose"].execute(emb, k, "auto", 0))[0]
    core = discover(native, cfg, train=False)
    assert core.embeddings.vectors.shape == emb.vectors.shape == (n * STEPS, emb.vectors.shape[1])
    torch.testing.assert_close(emb.vectors, core.embeddings.vectors, rtol=0, atol=1e-3)
    cos = matched_cosines(basis.components[:k], core.basis.components[:k])
    assert cos.min() > 0.9999, cos
    torch.testing.assert_close(basis.explained_variance_ratio[:k], core.basis.explained_variance_ratio[:k],
                               rtol=1e-3, atol=1e-4)


def test_train_sliders_renoises_to_the_core_hosts_karras_sigmas(comfy, world):
    """On trajectories sampled as the F rows sample them (Euler, Karras, 16 steps), Train Sliders re-noises only to
    ToyWorld's own 16 Karras sigmas — where the core host (``toyworld.pipeline``, F0–F4) re-noises — so F0c–F4c
    train as F0–F4 do. Run by ComfyUI's executor; the sigmas are read where ComfyUI calls the denoiser."""
    from .executor import Graph
    from .test_training_schedule import assert_subset, recording

    model, clip, vae, enc = world
    seen: list[torch.Tensor] = []
    g = Graph()
    traj = g.node("SliderSpaceTrajectorySampler", model=model, clip=clip, prompts="a circle", negative="",
                  trajectories=2, seed=0, steps=STEPS, cfg=CFG, sampler_name="euler", scheduler="karras", width=32,
                  height=32, batch_size=2, keep_steps="every step", keep_every=1, store_dtype="float16")
    emb = g.node("SliderSpaceClipEmbed", trajectories=traj[0], vae=vae, encoder=enc, batch_size=64)
    basis = g.node("SliderSpacePCADecompose", embeddings=emb[0], n_components=2, method="auto", seed=0)
    pos = g.node("CLIPTextEncode", clip=clip, text="a circle")
    bank = g.node("SliderSpaceTrainSliders", model=recording(model, seen), vae=vae, encoder=enc, positive=pos[0],
                  basis=basis[0], trajectories=traj[0], n_sliders=1, iterations=4, learning_rate=2e-2, rank=1,
                  targets="auto", target_pattern="", sliders_per_step=1, seed=0, bidirectional=False,
                  gradient_checkpointing=False, cfg=1.0)
    [bank] = g.run(bank[0])
    assert_subset(seen, karras_sigmas(STEPS)[:-1])
    assert bank.meta.config["renoise_schedule"] == f"karras {STEPS}"
