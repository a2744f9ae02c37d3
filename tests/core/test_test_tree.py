"""The pack's tests import nothing by the bare name ``tests``: ComfyUI has its own ``tests`` package, and
ComfyUI's suite run with the pack installed must still collect the pack's tests (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys

from ..conftest import ROOT

SHADOW = """
import sys
sys.path.insert(0, sys.argv[1])
import tests  # another package named `tests` is imported first, as in ComfyUI's own suite
assert tests.__file__.startswith(sys.argv[1]), tests.__file__
import pytest
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests"]))
"""


def test_collects_when_another_tests_package_shadows_the_name(tmp_path):
    fake = tmp_path / "shadow" / "tests"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('"""Stands in for ComfyUI\'s tests package."""\n')
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", SHADOW, str(fake.parent)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    for tier in ("core", "comfy", "e2e", "browser"):
        assert f"tests/{tier}/" in r.stdout, (tier, out[-4000:])
