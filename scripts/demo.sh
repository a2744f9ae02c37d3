#!/usr/bin/env bash
# The demo command: provision (idempotent), then SliderSpace discovery on ToyWorld (a few CPU minutes)
# → artifacts/demo/slider_grid.png and artifacts/demo/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/provision.sh
exec .venv/bin/python scripts/demo.py "$@"
