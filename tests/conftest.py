"""Shared test setup: locating the ComfyUI test host and failing loudly when it is missing."""

from __future__ import annotations

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def comfyui_path() -> pathlib.Path | None:
    p = pathlib.Path(os.environ.get("COMFYUI_PATH", ROOT / ".hosts" / "comfyui"))
    return p if (p / "comfy").is_dir() and (p / "nodes.py").is_file() else None


def require_host(what: str) -> None:
    """Skip (loudly) or, under CI / SLIDERSPACE_REQUIRE_HOSTS=1, fail when a test host is missing."""
    msg = f"TEST HOST MISSING: {what}. Run scripts/provision.sh (or set COMFYUI_PATH)."
    print(f"\n{'!' * 20} {msg} {'!' * 20}")
    if os.environ.get("SLIDERSPACE_REQUIRE_HOSTS") == "1" or os.environ.get("CI") == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


# Session fixtures of the live tiers (one server shared by tests/e2e and tests/browser).
from .live.fixtures import api_prompts, browser_tools, comfy_server  # noqa: E402, F401


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="run the slow tier (tests marked `long`: README figures such as the 1000-file fuzz run)")


HYPOTHESIS_EXAMPLES = {"default": 25, "long": 400}
"""max_examples of the property tests (tests/core/test_properties.py) in each tier."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "long: slow check, run only with --long (figures reported in the README)")
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # only the property tests need it (requirements-test.txt)
        return
    tier = "long" if config.getoption("--long") else "default"
    # derandomize: the same examples on every run (seeded like every other test); no example database on disk.
    settings.register_profile("sliderspace", max_examples=HYPOTHESIS_EXAMPLES[tier], derandomize=True,
                              database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("sliderspace")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--long"):
        return
    skip = pytest.mark.skip(reason="slow tier: run with --long")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def long_run(request: pytest.FixtureRequest) -> bool:
    """True under ``--long``: tests scale their counts up to the README figure."""
    return bool(request.config.getoption("--long"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: small tensors on a shared 2-core machine, where a second thread only adds
    barrier waits. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
