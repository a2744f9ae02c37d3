"""A real ComfyUI server on loopback with this pack and the live-tier model files (one per test session)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from ..conftest import ROOT
from . import models

PACK_DIR_NAME = "comfyui-sliderspace"  # the folder name a user's clone would have
PROBE_DIR_NAME = "sliderspace-test-probe"
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.VueNodes.Enabled": False}
"""Frontend settings of the test user: no first-run Templates dialog, no minimap, the classic canvas nodes."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    base: pathlib.Path
    """The server's --base-directory: input/, output/, temp/, user/, custom_nodes/ (a link to this repo)."""
    bank_dir: pathlib.Path
    """The writable ``sliderspace`` model folder (holds the generated bank; discovery saves here)."""
    log: pathlib.Path
    proc: subprocess.Popen

    def get(self, path: str) -> tuple[int, object]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def post(self, path: str, body: dict) -> tuple[int, object]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def run(self, prompt: dict, timeout: float = 600) -> dict:
        """Queue an API-format prompt and wait for its history entry (raises on rejection or timeout)."""
        status, body = self.post("/prompt", {"prompt": prompt, "client_id": "sliderspace-tests"})
        if status != 200:
            raise AssertionError(f"/prompt answered {status}: {json.dumps(body)[:2000]}")
        if body.get("node_errors"):  # ComfyUI still queues the outputs that validated and drops the rest
            raise AssertionError(f"/prompt refused nodes: {json.dumps(body['node_errors'])[:2000]}")
        pid, end = body["prompt_id"], time.monotonic() + timeout
        while time.monotonic() < end:
            _, hist = self.get(f"/history/{pid}")
            if hist and pid in hist and hist[pid].get("status", {}).get("completed") is not None:
                entry = hist[pid]
                if entry["status"].get("status_str") == "success":
                    return entry
                if entry["status"].get("status_str") == "error":
                    raise AssertionError(f"prompt failed: {json.dumps(entry['status'])[:3000]}")
            if self.proc.poll() is not None:
                raise AssertionError(f"the server died; see {self.log}")
            time.sleep(0.5)
        raise AssertionError(f"prompt {pid} did not finish in {timeout} s; see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def model_cache() -> pathlib.Path:
    """Where the generated model files are kept between runs (gitignored)."""
    return pathlib.Path(os.environ.get("SLIDERSPACE_TEST_MODELS", ROOT / ".cache" / "test-models"))


def ensure_models(comfyui: pathlib.Path) -> pathlib.Path:
    cache = model_cache()
    if models.missing(cache):
        env = dict(os.environ, COMFYUI_PATH=str(comfyui))
        subprocess.run([sys.executable, "-m", "tests.live.models", str(cache)], cwd=ROOT, env=env, check=True)
    return cache


def start(comfyui: pathlib.Path, base: pathlib.Path, log_dir: pathlib.Path, startup_timeout: float = 120) -> Server:
    """Start ``main.py`` headless on a free loopback port and wait until it answers."""
    cache = ensure_models(comfyui)
    # The pack's folder comes only from paths.yaml (base/custom_nodes stays empty, or it would load twice).
    nodes_dir, bank_dir = base / "extra_custom_nodes", base / "models" / "sliderspace"
    nodes_dir.mkdir(parents=True)
    (base / "custom_nodes").mkdir()
    bank_dir.mkdir(parents=True)
    (nodes_dir / PACK_DIR_NAME).symlink_to(ROOT, target_is_directory=True)
    # A test-only node (tests/live/probe) that reports wrappers, hooks and weights of a MODEL (tests/reliability).
    (nodes_dir / PROBE_DIR_NAME).symlink_to(ROOT / "tests" / "live" / "probe", target_is_directory=True)
    for name in models.BANKS:
        shutil.copy(cache / "sliderspace" / name, bank_dir / name)
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps(SETTINGS))
    paths = base / "paths.yaml"
    paths.write_text(
        "sliderspace_tests:\n"
        f"  base_path: {cache}\n"
        "  checkpoints: checkpoints\n"
        "  clip_vision: clip_vision\n"
        f"  sliderspace: {bank_dir}\n"
        f"  custom_nodes: {nodes_dir}\n")
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "server.log"
    cmd = [sys.executable, str(comfyui / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--disable-api-nodes", "--use-pytorch-cross-attention", "--extra-model-paths-config", str(paths),
           "--base-directory", str(base), "--user-directory", str(base / "user"),
           "--database-url", "sqlite:///:memory:", "--preview-method", "none"]
    out = open(log, "w")  # noqa: SIM115  (closed with the process)
    proc = subprocess.Popen(cmd, cwd=comfyui, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", base, bank_dir, log, proc)
    end = time.monotonic() + startup_timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {proc.returncode}; log:\n{log.read_text()[-4000:]}")
        try:
            if server.get("/system_stats")[0] == 200:
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"ComfyUI did not answer within {startup_timeout} s; log:\n{log.read_text()[-4000:]}")
