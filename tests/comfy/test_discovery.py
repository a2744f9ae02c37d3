"""Discovery slice in real ComfyUI: Trajectory Sampler, CLIP Embed, PCA Decompose on tiny models."""

from __future__ import annotations

import pytest
import torch

from .executor import NodeFailed, PromptInvalid, run_node

STEPS = 6
SIZE = 64


def _out(node_output):
    return node_output.args if hasattr(node_output, "args") else node_output


def run_sampler(comfy, tiny, prompts="a dog\na cat", n=4, seed=7, sampler="euler", keep="every step", k=1,
                batch=2, dtype="float32", steps=STEPS, model=None):
    return run_node("SliderSpaceTrajectorySampler", outputs=2, model=model or tiny.model, prompts=prompts, negative="",
                    trajectories=n, seed=seed, steps=steps, cfg=5.0, sampler_name=sampler, scheduler="normal",
                    width=SIZE, height=SIZE, batch_size=batch, keep_steps=keep, keep_every=k, store_dtype=dtype,
                    clip=tiny.clip)  # through ComfyUI's executor, as a server runs it


def stock_ksampler(comfy, tiny, model, text, seed, sampler="euler"):
    C = comfy["classes"]
    with torch.inference_mode():
        pos = C["CLIPTextEncode"]().encode(tiny.clip, text)[0]
        neg = C["CLIPTextEncode"]().encode(tiny.clip, "")[0]
        latent = C["EmptyLatentImage"]().generate(SIZE, SIZE, 1)[0]
        return C["KSampler"]().sample(model, seed, STEPS, 5.0, sampler, "normal", pos, neg, latent)[0]["samples"]


def callback_x0(comfy, tiny, text, seed, sampler):
    """What the sampler's callback reports for a batch-1 run (in the VAE's latent space)."""
    import comfy.sample as comfy_sample

    C = comfy["classes"]
    seen = {}
    with torch.inference_mode():
        pos = C["CLIPTextEncode"]().encode(tiny.clip, text)[0]
        neg = C["CLIPTextEncode"]().encode(tiny.clip, "")[0]
        latent = torch.zeros([1, 4, SIZE // 8, SIZE // 8])
        noise = comfy_sample.prepare_noise(latent, seed)

        def cb(step, x0, x, total):
            seen[step] = tiny.model.model.process_latent_out(x0).clone()

        comfy_sample.sample(tiny.model, noise, STEPS, 5.0, sampler, "normal", pos, neg, latent, callback=cb,
                            seed=seed, disable_pbar=True)
    return seen


@pytest.mark.parametrize("keep,k,expected", [("every step", 1, STEPS), ("every k-th step", 4, 2),
                                             ("final only", 1, 1)])
def test_kept_count_is_trajectories_times_kept_steps(comfy, tiny, keep, k, expected):
    traj, latent = run_sampler(comfy, tiny, n=3, keep=keep, k=k)
    assert len(traj) == 3 * expected and traj.x0.shape[:2] == (3, expected)
    assert latent["samples"].shape == (3, 4, SIZE // 8, SIZE // 8)
    assert int(traj.steps[-1]) == STEPS - 1  # the final x̂0 is always kept
    assert torch.isfinite(traj.x0).all()


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "heun"])
def test_kept_x0_equals_callback_and_final_equals_stock_ksampler(comfy, tiny, sampler):
    traj, latent = run_sampler(comfy, tiny, prompts="a dog\na cat", n=2, seed=11, sampler=sampler, batch=1)
    for i in range(2):
        text = ["a dog", "a cat"][i % 2]
        seen = callback_x0(comfy, tiny, text, 11 + i, sampler)
        assert sorted(seen) == list(range(STEPS))
        for j, step in enumerate(traj.steps.tolist()):
            assert torch.equal(traj.x0[i, j], seen[step][0].float()), (sampler, i, step)
        assert torch.equal(latent["samples"][i], stock_ksampler(comfy, tiny, tiny.model, text, 11 + i, sampler)[0])
    assert traj.seeds == [11, 12] and traj.prompt_index.tolist() == [0, 1]
    assert torch.all(traj.sigmas[:-1] > traj.sigmas[1:])


def test_same_seed_bitwise_same_and_different_seed_differs(comfy, tiny):
    a, la = run_sampler(comfy, tiny, seed=3, dtype="float16")
    b, lb = run_sampler(comfy, tiny, seed=3, dtype="float16")
    c, _ = run_sampler(comfy, tiny, seed=4, dtype="float16")
    assert a.x0.dtype == torch.float16
    assert torch.equal(a.x0, b.x0) and torch.equal(la["samples"], lb["samples"])
    assert not torch.equal(a.x0[:, -1], c.x0[:, -1])


def test_input_model_is_not_mutated(comfy, tiny):
    model = tiny.model
    opts_before = repr(model.model_options)
    patches_before = dict(model.patches)
    before = stock_ksampler(comfy, tiny, model, "a dog", 5)
    run_sampler(comfy, tiny, model=model)
    after = stock_ksampler(comfy, tiny, model, "a dog", 5)
    assert torch.equal(before, after)
    assert repr(model.model_options) == opts_before and dict(model.patches) == patches_before


def test_embed_matches_core_path_and_stock_clip_vision(comfy, tiny):
    from .host import pack_module

    enc_mod = pack_module("sliderspace_core.common.encoders")
    glue = pack_module("nodes.glue.encoders")
    traj, _ = run_sampler(comfy, tiny, n=2)
    node = comfy["classes"]["SliderSpaceClipEmbed"]
    with torch.inference_mode():
        emb = _out(node.execute(5, trajectories=traj, vae=tiny.vae, clip_vision=tiny.clip_vision))[0]
        items, prov = traj.flat()
        images = tiny.vae.decode(items.float())
        ref = enc_mod.embed_images(glue.ClipVisionEncoder(tiny.clip_vision), images)
        stock = tiny.clip_vision.encode_image(images)["image_embeds"]
        img_emb = _out(node.execute(4, images=images, clip_vision=tiny.clip_vision))[0]
    assert emb.vectors.shape == (len(traj), 64)
    torch.testing.assert_close(emb.vectors, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(img_emb.vectors, ref, rtol=1e-5, atol=1e-5)
    assert torch.allclose(emb.vectors.norm(dim=1), torch.ones(len(traj)), atol=1e-5)
    # same weights and projection as stock CLIPVisionEncode; stock rounds pixels to 8 bits, we do not
    cos = torch.nn.functional.cosine_similarity(emb.vectors, stock.float(), dim=1)
    assert cos.min() > 0.99
    assert emb.trajectory.tolist() == prov["trajectory"].tolist()
    assert emb.step.tolist() == traj.steps.repeat(2).tolist()
    assert torch.equal(emb.sigma, prov["sigma"]) and img_emb.trajectory.eq(-1).all()


def test_pca_node_outputs_basis_and_scree_image(comfy, tiny):
    traj, _ = run_sampler(comfy, tiny, n=4)
    C = comfy["classes"]
    with torch.inference_mode():
        emb = _out(C["SliderSpaceClipEmbed"].execute(8, trajectories=traj, vae=tiny.vae,
                                                       clip_vision=tiny.clip_vision))[0]
        basis, plot = _out(C["SliderSpacePCADecompose"].execute(emb, 5, "auto", 0))
    assert basis.components.shape == (5, 64)
    assert basis.encoder_id == emb.encoder_id
    assert torch.all(basis.explained_variance[:-1] >= basis.explained_variance[1:])
    assert plot.ndim == 4 and plot.shape[0] == 1 and plot.shape[-1] == 3 and plot.std() > 0


# --- bad input: a clear error naming the node and the input -------------------------------------------

def _raises(fn, node_name, input_name):
    with pytest.raises((ValueError, NodeFailed)) as e:
        with torch.inference_mode():
            fn()
    msg = str(e.value)
    assert node_name in msg and f"'{input_name}'" in msg and "Fix:" in msg, msg


def test_errors_name_node_and_input(comfy, tiny):
    from . import tiny_models

    C = comfy["classes"]
    sampler = "SliderSpace Trajectory Sampler"
    _raises(lambda: run_sampler(comfy, tiny, prompts=" \n  \n"), sampler, "prompts")
    with pytest.raises(PromptInvalid):  # a server refuses it before the node runs (the schema's min is 1)
        run_sampler(comfy, tiny, n=0)
    traj, _ = run_sampler(comfy, tiny, n=2, keep="final only")
    vae16 = tiny_models.build_vae(latent_channels=16)  # a VAE of another family (SD3/FLUX channel count)
    _raises(lambda: C["SliderSpaceClipEmbed"].execute(4, trajectories=traj, vae=vae16,
                                                      clip_vision=tiny.clip_vision), "SliderSpace CLIP Embed", "vae")
    _raises(lambda: C["SliderSpaceClipEmbed"].execute(4, trajectories=traj, vae=tiny.vae),
            "SliderSpace CLIP Embed", "clip_vision")
    with torch.inference_mode():
        emb = _out(C["SliderSpaceClipEmbed"].execute(4, trajectories=traj, vae=tiny.vae,
                                                     clip_vision=tiny.clip_vision))[0]
    _raises(lambda: C["SliderSpacePCADecompose"].execute(emb, 5, "auto", 0), "SliderSpace PCA Decompose",
            "n_components")
    emb.vectors = emb.vectors.clone()
    emb.vectors[0, 3] = float("nan")
    _raises(lambda: C["SliderSpacePCADecompose"].execute(emb, 1, "auto", 0), "SliderSpace PCA Decompose",
            "embeddings")
    nan_images = torch.full((2, SIZE, SIZE, 3), float("nan"))
    _raises(lambda: C["SliderSpaceClipEmbed"].execute(4, images=nan_images, clip_vision=tiny.clip_vision),
            "SliderSpace CLIP Embed", "images")
