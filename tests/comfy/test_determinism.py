"""Determinism (issue 16): discovery → training run twice with one seed gives a bitwise-equal bank on CPU."""

from __future__ import annotations

import json
import struct

import torch

from .test_training_comfy import discover, train


def _file(path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def test_discovery_then_training_twice_gives_the_same_bank_bit_for_bit(comfy, tiny, tmp_path):
    from .host import pack_module

    save_bank = pack_module("sliderspace_core.sliderspace.bank").save_bank
    runs = []
    for i in range(2):
        d = discover(comfy, tiny, n=4, steps=2, n_components=2)
        bank, _ = train(comfy, tiny, d, iterations=2, seed=7, n=1)
        save_bank(bank, str(tmp_path / f"bank{i}.safetensors"))
        runs.append((d, bank))
    (d1, b1), (d2, b2) = runs
    assert torch.equal(d1.traj.x0, d2.traj.x0)
    assert torch.equal(d1.emb.vectors, d2.emb.vectors)
    assert torch.equal(d1.basis.components, d2.basis.components)
    h1, t1 = _file(tmp_path / "bank0.safetensors")
    h2, t2 = _file(tmp_path / "bank1.safetensors")
    assert h1 == h2, "the bank metadata differs between two runs with one seed"
    assert t1 == t2, "the bank tensors differ between two runs with one seed"
    assert any(float(s.up[m].abs().sum()) > 0 for s in b1.sliders for m in s.up)  # training did move the sliders
