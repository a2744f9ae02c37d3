"""Regenerate example_workflows/*.json and their thumbnails with the real frontend in headless chromium.

Each thumbnail shows the graph beside what it produces (scripts/make_thumbnails.py; the ToyWorld results
come from scripts/toyworld_results.py, run that first when the graphs change). Starts a throwaway ComfyUI
server (the test host, tiny generated models under the names the workflows use), then runs
tests/browser/make_workflows.mjs. Usage: ``.venv/bin/python scripts/make_example_workflows.py [name ...]``
(after ``bash scripts/provision.sh``); names (e.g. ``sae_concepts``) rebuild only those workflows.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import comfyui_path  # noqa: E402
from tests.live import server  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import make_thumbnails  # noqa: E402


def main() -> None:
    host = comfyui_path()
    if host is None:
        sys.exit("no ComfyUI test host: run scripts/provision.sh first")
    graphs = ROOT / "artifacts" / "workflow_graphs"
    with tempfile.TemporaryDirectory() as tmp:
        s = server.start(host, pathlib.Path(tmp) / "base", ROOT / "artifacts" / "make_workflows")
        try:
            graphs.mkdir(parents=True, exist_ok=True)
            subprocess.run(["node", "make_workflows.mjs", s.url, str(ROOT / "example_workflows"),
                            *sys.argv[1:]],
                           cwd=ROOT / "tests" / "browser", check=True, env={**os.environ, "GRAPH_DIR": str(graphs)})
        finally:
            s.stop()
    make_thumbnails.main(graphs)  # each thumbnail: the graph beside what it produces (docs/images)


if __name__ == "__main__":
    main()
