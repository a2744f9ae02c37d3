"""Fixtures: real ComfyUI and tiny random SD1.5-shaped models built in the test (no downloads)."""

from __future__ import annotations

import pytest

from tests.conftest import comfyui_path, require_host


@pytest.fixture(scope="session")
def comfy():
    if comfyui_path() is None:
        require_host("ComfyUI (tests/comfy)")
    from tests.comfy.host import boot

    return boot()


@pytest.fixture(scope="session")
def tiny(comfy):
    from tests.comfy import tiny_models

    return tiny_models.build()
