"""Session fixtures of the live tiers: one ComfyUI server and the browser tools (registered in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / "tests" / "browser"
WORKFLOW_DIR = ROOT / "example_workflows"
ARTIFACTS = ROOT / "artifacts"


def example_workflows() -> list[pathlib.Path]:
    return sorted(WORKFLOW_DIR.glob("*.json"))


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """A real ComfyUI server on loopback with this pack and the generated model files."""
    from ..conftest import comfyui_path, require_host

    host = comfyui_path()
    if host is None:
        require_host("ComfyUI (live tiers: tests/e2e, tests/browser)")
    from . import server

    s = server.start(host, tmp_path_factory.mktemp("comfyui") / "base", ARTIFACTS / "live")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def browser_tools() -> None:
    """Headless Debian chromium and npm playwright-core (installed by scripts/provision_browser.sh)."""
    from ..conftest import require_host

    chromium = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    missing = [what for what, ok in [
        (f"chromium at {chromium}", os.path.isfile(chromium)),
        ("node", shutil.which("node") is not None),
        ("tests/browser/node_modules/playwright-core", (BROWSER_DIR / "node_modules" / "playwright-core").is_dir()),
    ] if not ok]
    if missing:
        require_host("browser tools: " + ", ".join(missing) + " (run scripts/provision_browser.sh)")


def run_node(script: str, *args: str, timeout: float = 300) -> dict:
    """Run a tests/browser script; its last stdout line is a JSON object."""
    p = subprocess.run(["node", script, *args], cwd=BROWSER_DIR, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"node {script} failed ({p.returncode}):\n{p.stderr[-4000:]}\n{p.stdout[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def api_prompts(browser_tools, comfy_server) -> dict:
    """Every example workflow converted to the API format by the real frontend: file name → prompt etc."""
    return run_node("convert.mjs", comfy_server.url, *map(str, example_workflows()))
