"""Helpers of the live reliability tests: prompts with probes, interrupts over the websocket, file snapshots."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import pathlib
import time
import uuid

from sliderspace_core.common.errors import InputError
from sliderspace_core.common.safefile import read_header
from sliderspace_core.concepts.activations import load_activation_set

from ..e2e.test_workflows import of_type, shrink

PROBE = "ReliabilityProbe"


def prompt_of(api_prompts: dict, name: str, **overrides: dict) -> dict:
    """The shrunk example workflow ``name`` with ``{class_type: {input: value}}`` overrides applied."""
    prompt = shrink(api_prompts[name]["prompt"])
    for class_type, inputs in overrides.items():
        ids = of_type(prompt, class_type)
        assert ids, f"{name} has no {class_type}"
        for i in ids:
            for k, v in inputs.items():
                assert k in prompt[i]["inputs"], (class_type, k)
                prompt[i]["inputs"][k] = v
    return prompt


def with_probe(prompt: dict, source: list, tag: str) -> dict:
    """``prompt`` plus a ReliabilityProbe on the MODEL output ``source`` (``[node id, output index]``)."""
    out = copy.deepcopy(prompt)
    out[f"probe_{tag}"] = {"class_type": PROBE, "inputs": {"model": list(source), "tag": tag}}
    return out


def probes(entry: dict) -> dict[str, dict]:
    """The probe reports of a finished prompt's history entry, by tag."""
    found = {}
    for node_id, out in entry["outputs"].items():
        if node_id.startswith("probe_"):
            report = json.loads(out["text"][0])
            found[report.pop("tag")] = report
    return found


def base_model(prompt: dict) -> list:
    [ckpt] = of_type(prompt, "CheckpointLoaderSimple")
    return [ckpt, 0]


def plain_prompt(seed: int = 1) -> dict:
    """Stock txt2img on the test checkpoint (2 steps, 64 px) with a probe on the loaded model."""
    from ..live.models import CHECKPOINT

    p = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a dog", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
        "lat": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "ks": {"class_type": "KSampler", "inputs": {
            "model": ["ckpt", 0], "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["lat", 0],
            "seed": seed, "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "dec": {"class_type": "VAEDecode", "inputs": {"samples": ["ks", 0], "vae": ["ckpt", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["dec", 0], "filename_prefix": "reliability_probe"}},
    }
    return with_probe(p, ["ckpt", 0], "base")


def saved_pixels(server, entry: dict) -> bytes:
    """The decoded pixels of the one image the plain prompt saved (PNG metadata aside)."""
    import numpy as np
    from PIL import Image

    [im] = entry["outputs"]["save"]["images"]
    with Image.open(server.base / "output" / im["subfolder"] / im["filename"]) as f:
        return np.asarray(f.convert("RGB")).tobytes()


# ------------------------------------------------------------------------------------------ interrupts

def run_and_interrupt(server, prompt: dict, target: str, delay: float, timeout: float = 300) -> dict:
    """Queue ``prompt``, wait until node ``target`` starts executing, sleep ``delay`` s, POST /interrupt.

    Returns ``{"outcome": "interrupted" | "success" | "error", "node": where it stopped, "started": whether
    the target ran, "latency": s from the interrupt to the server's answer (None if it ended before)}``.
    """
    import aiohttp

    ends = {"execution_interrupted": "interrupted", "execution_error": "error", "execution_success": "success"}

    async def go() -> dict:
        client = f"reliability-{uuid.uuid4().hex[:8]}"
        ws_url = server.url.replace("http://", "ws://") + f"/ws?clientId={client}"
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
            async with session.post(server.url + "/prompt", json={"prompt": prompt, "client_id": client}) as r:
                body = await r.json()
                assert r.status == 200, body
            pid = body["prompt_id"]

            async def next_event() -> tuple[str, dict]:
                while True:
                    msg = await ws.receive()
                    if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        raise AssertionError(f"the websocket closed; see {server.log}")
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    m = json.loads(msg.data)
                    data = m.get("data") or {}
                    if data.get("prompt_id") == pid:
                        return m["type"], data

            def result(kind: str, data: dict, started: bool, sent: float | None) -> dict:
                return {"outcome": ends[kind], "node": data.get("node_id"), "started": started,
                        "latency": None if sent is None else time.monotonic() - sent,
                        "message": data.get("exception_message", "")}

            async def until_end() -> tuple[str, dict]:
                while True:
                    kind, data = await next_event()
                    if kind in ends:
                        return kind, data

            async with asyncio.timeout(timeout):
                while True:  # wait for the target to start
                    kind, data = await next_event()
                    if kind in ends:
                        return result(kind, data, False, None)
                    if kind == "executing" and data.get("node") == target:
                        break
                try:
                    async with asyncio.timeout(delay):
                        kind, data = await until_end()
                        return result(kind, data, True, None)
                except TimeoutError:
                    pass
                async with session.post(server.url + "/interrupt", json={"prompt_id": pid}) as r:
                    assert r.status == 200
                sent = time.monotonic()
                kind, data = await until_end()
                return result(kind, data, True, sent)

    return asyncio.run(go())


# ----------------------------------------------------------------------------------------- file checks

def snapshot(roots: list[pathlib.Path]) -> dict[str, tuple[int, float]]:
    """Every file and folder under ``roots``: path → (size, mtime)."""
    out = {}
    for root in roots:
        for d, dirs, files in os.walk(root):
            for name in dirs + files:
                p = os.path.join(d, name)
                st = os.stat(p)
                out[p] = (st.st_size, st.st_mtime)
    return out


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def partial_files(new: list[str]) -> list[str]:
    """The new paths that are not complete outputs: temp names, empty or unreadable files and sets."""
    from PIL import Image

    bad = []
    for p in new:
        name = os.path.basename(p)
        if name.startswith(".tmp") or name.endswith((".tmp", ".part")):
            bad.append(f"{p}: a temporary file")
        elif os.path.isdir(p):
            if name == "sliderspace_activations":  # the container of the sets (created once, kept)
                continue
            if os.path.basename(os.path.dirname(p)) == "sliderspace_activations":
                try:
                    load_activation_set(p)
                except InputError as e:
                    bad.append(f"{p}: an incomplete activation set ({e.problem})")
            elif not os.listdir(p):
                bad.append(f"{p}: an empty folder")
        elif name.endswith(".safetensors"):
            try:
                read_header(p)
            except InputError as e:
                bad.append(f"{p}: {e.problem}")
        elif name.endswith(".png"):
            try:
                with Image.open(p) as im:
                    im.load()
            except Exception as e:  # noqa: BLE001
                bad.append(f"{p}: unreadable PNG ({e})")
        elif os.path.getsize(p) == 0:
            bad.append(f"{p}: empty")
    return bad
