"""Registry-ready: `comfy node validate` (comfy-cli from PyPI, pinned in constraints.txt) passes on this repo, and
pyproject.toml follows the Comfy Registry's rules that the command does not check itself."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import tomllib

from ..conftest import ROOT, require_host


def test_comfy_node_validate_passes(tmp_path):
    if importlib.util.find_spec("comfy_cli") is None:
        require_host("comfy-cli (pip install -r requirements-test.txt -c constraints.txt)")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}  # it writes a config file
    p = subprocess.run([sys.executable, "-m", "comfy_cli", "--skip-prompt", "--no-enable-telemetry", "node",
                        "validate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "All validation checks passed" in out, out  # security warnings (exec/eval) would replace this line


def test_pyproject_follows_the_registry_rules():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project, comfy = meta["project"], meta["tool"]["comfy"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", project["name"]) and "comfyui" not in project["name"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])  # semver
    assert project["license"] and project["description"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", comfy["PublisherId"]) and comfy["DisplayName"]
    for folder in comfy["includes"]:
        assert (ROOT / folder).is_dir(), folder
