#!/usr/bin/env bash
# The one test command: provision (idempotent), then run every tier.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/provision.sh
export COMFYUI_PATH="${COMFYUI_PATH:-$PWD/.hosts/comfyui}"
exec .venv/bin/python -m pytest "$@"
