#!/usr/bin/env bash
# The demo command: provision (idempotent), then
#  1. the ToyWorld example workflow headless on a throwaway ComfyUI server (Load ToyWorld → discovery →
#     2 sliders → grid; a few CPU minutes) → artifacts/demo/workflow_grid.png + workflow_report.md;
#  2. the fuller SliderSpace discovery on ToyWorld through the core (6 sliders scored against the world's
#     factors) → artifacts/demo/slider_grid.png + report.md.  `--workflow-only` stops after 1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/provision.sh
export COMFYUI_PATH="${COMFYUI_PATH:-$PWD/.hosts/comfyui}"
.venv/bin/python scripts/demo_workflow.py
if [[ "${1:-}" == "--workflow-only" ]]; then exit 0; fi
exec .venv/bin/python scripts/demo.py "$@"
