"""Fixtures: real ComfyUI and tiny random SD1.5-shaped models built in the test (no downloads)."""

from __future__ import annotations

import pytest

from ..conftest import comfyui_path, require_host


@pytest.fixture(scope="session")
def comfy():
    if comfyui_path() is None:
        require_host("ComfyUI (tests/comfy)")
    from .host import boot

    return boot()


@pytest.fixture(scope="session")
def tiny(comfy):
    from . import tiny_models

    return tiny_models.build()


@pytest.fixture(scope="session")
def bank(comfy, tiny):
    """A random 3-slider bank over the tiny model's cross-attention k/v (no training needed)."""
    import torch

    from .host import pack_module

    ad, bk = pack_module("sliderspace_core.sliderspace.adapters"), pack_module("sliderspace_core.sliderspace.bank")
    bg = pack_module("nodes.glue.family")
    modules = bg.target_modules(tiny.model.model.diffusion_model, "cross-attention k/v")
    adapters = ad.SliderAdapters({n: (m.out_features, m.in_features) for n, m in modules.items()}, 3, seed=5)
    with torch.no_grad():
        for p in adapters.up.values():
            p.normal_(0, 0.2, generator=torch.Generator().manual_seed(6))
    return bk.SliderBank(adapters.export_sliders(), bk.BankMeta(**bg.model_facts(tiny.model, modules)))
