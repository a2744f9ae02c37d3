"""Keep a copy of every example workflow as this version saves it, for the compatibility tests.

``python scripts/snapshot_workflows.py <label>`` starts a ComfyUI server with this checkout's nodes, lets the
real frontend convert each ``example_workflows/*.json`` to the API format, and writes both forms to
``tests/legacy_workflows/<label>/{ui,api}/<name>.json``. Run it before a release changes a node's inputs:
``tests/e2e/test_legacy_workflows.py`` then checks that every saved workflow still validates and runs and
that every saved widget value still lands on the input it was saved for.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(label: str) -> None:
    from tests.conftest import comfyui_path
    from tests.live import server
    from tests.live.fixtures import example_workflows, run_node

    host = comfyui_path()
    if host is None:
        raise SystemExit("no ComfyUI test host: run scripts/provision.sh first")
    out = ROOT / "tests" / "legacy_workflows" / label
    files = example_workflows()
    with tempfile.TemporaryDirectory() as tmp:
        s = server.start(host, pathlib.Path(tmp) / "base", pathlib.Path(tmp) / "logs")
        try:
            converted = run_node("convert.mjs", s.url, *map(str, files))
        finally:
            s.stop()
    for sub in ("ui", "api"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, out / "ui" / f.name)
        (out / "api" / f.name).write_text(json.dumps(converted[f.name]["prompt"], indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(files)} workflows (UI and API) to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
