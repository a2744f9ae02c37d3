"""Trajectory Sampler prompts (issue 18): only the lines trajectories use are encoded (each once) and recorded."""

from __future__ import annotations

import torch

from .host import pack_module
from .test_discovery import run_sampler


def spy_encodings(monkeypatch) -> list[str]:
    """Texts the Trajectory Sampler encodes (the real encoder still runs)."""
    disc = pack_module("nodes.sliderspace.discovery")
    seen: list[str] = []
    real = disc.encode_text

    def encode_text(clip, text):
        seen.append(text)
        return real(clip, text)

    monkeypatch.setattr(disc, "encode_text", encode_text)
    return seen


def test_unused_lines_are_neither_encoded_nor_recorded(comfy, tiny, monkeypatch):
    seen = spy_encodings(monkeypatch)
    lines = [f"a photo of thing {i}" for i in range(12)]
    traj, latent = run_sampler(comfy, tiny, prompts="\n".join(lines), n=3, batch=2, steps=2)
    assert sorted(seen) == sorted(["", *lines[:3]])  # the negative and the 3 lines sampled
    assert traj.prompts == lines[:3] and traj.prompt_index.tolist() == [0, 1, 2]
    seen.clear()
    only, only_latent = run_sampler(comfy, tiny, prompts="\n".join(lines[:3]), n=3, batch=2, steps=2)
    assert torch.equal(traj.x0, only.x0) and torch.equal(latent["samples"], only_latent["samples"])


def test_repeated_lines_are_encoded_once_and_indices_refer_to_the_record(comfy, tiny, monkeypatch):
    seen = spy_encodings(monkeypatch)
    traj, _ = run_sampler(comfy, tiny, prompts="a dog\na cat\na dog\nunused", n=3, batch=2, steps=2)
    assert sorted(seen) == ["", "a cat", "a dog"]
    assert [traj.prompts[i] for i in traj.prompt_index.tolist()] == ["a dog", "a cat", "a dog"]
    assert "unused" not in traj.prompts
