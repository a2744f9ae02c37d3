#!/usr/bin/env bash
# The demo command: provision (idempotent), then run the headless discovery demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/provision.sh
export COMFYUI_PATH="${COMFYUI_PATH:-$PWD/.hosts/comfyui}"
exec .venv/bin/python scripts/demo.py "$@"
