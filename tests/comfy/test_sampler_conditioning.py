"""Trajectory Sampler's optional CONDITIONING inputs: a graph's own (edited, combined) conditioning drives discovery."""

from __future__ import annotations

import torch

from .test_discovery import SIZE, STEPS, _out, _raises, run_sampler

NAME = "SliderSpace Trajectory Sampler"


def encode(comfy, tiny, text):
    with torch.inference_mode():
        return comfy["classes"]["CLIPTextEncode"]().encode(tiny.clip, text)[0]


def sample(comfy, tiny, prompts="a dog", clip=None, conditioning=None, negative_conditioning=None, n=3):
    node = comfy["classes"]["SliderSpaceTrajectorySampler"]
    with torch.inference_mode():
        return _out(node.execute(tiny.model, prompts, "", n, 7, STEPS, 5.0, "euler", "normal", SIZE, SIZE, 2,
                                 "every step", 1, "float32", clip=clip, conditioning=conditioning,
                                 negative_conditioning=negative_conditioning))


def test_encoded_prompt_as_conditioning_gives_the_text_path_bitwise(comfy, tiny):
    text, _ = run_sampler(comfy, tiny, prompts="a dog", n=3)
    pos, neg = encode(comfy, tiny, "a dog"), encode(comfy, tiny, "")
    cond, latent = sample(comfy, tiny, conditioning=pos, negative_conditioning=neg)  # no clip needed
    assert torch.equal(text.x0, cond.x0)
    assert cond.prompts == ["a dog"] and cond.config["negative"] == "(negative_conditioning input)"
    mixed, _ = sample(comfy, tiny, clip=tiny.clip, conditioning=pos)  # negative text still encoded by clip
    assert torch.equal(text.x0, mixed.x0)


def test_an_edited_conditioning_changes_the_trajectories_and_is_not_mutated(comfy, tiny):
    pos = encode(comfy, tiny, "a dog")
    edited = [[pos[0][0] * 1.5, dict(pos[0][1])]]
    kept = edited[0][0].clone(), dict(edited[0][1])
    plain, _ = sample(comfy, tiny, clip=tiny.clip, conditioning=pos)
    moved, _ = sample(comfy, tiny, clip=tiny.clip, conditioning=edited)
    assert (plain.x0 - moved.x0).abs().max() > 1e-3
    assert torch.equal(edited[0][0], kept[0]) and edited[0][1].keys() == kept[1].keys()


def test_conditioning_errors_name_the_input(comfy, tiny):
    pos = encode(comfy, tiny, "a dog")
    _raises(lambda: sample(comfy, tiny), NAME, "clip")                              # nothing to encode with
    _raises(lambda: sample(comfy, tiny, conditioning=pos), NAME, "clip")            # negative text needs clip
    _raises(lambda: sample(comfy, tiny, prompts="a dog\na cat", clip=tiny.clip, conditioning=pos), NAME, "prompts")
    batch = [[torch.cat([pos[0][0]] * 2), dict(pos[0][1])]]
    _raises(lambda: sample(comfy, tiny, clip=tiny.clip, conditioning=batch), NAME, "conditioning")
    _raises(lambda: sample(comfy, tiny, clip=tiny.clip, negative_conditioning=batch), NAME, "negative_conditioning")
