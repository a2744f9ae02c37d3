"""Interrupt every long node at seeded random points (issue 16) on the live server.

For each long node its example workflow is made long at that node (which re-runs each time: one input is
changed per try), queued, and interrupted over HTTP a seeded random delay after the node starts. Then:
the server still serves, the interrupt landed in that node and came back promptly, no partial file appeared
in any output or model folder, and the next prompt (stock txt2img on the same cached checkpoint) gives the
same pixels and the same weights checksum as before any interrupt: the loaded model object is unchanged.
Under ``--long`` the shrunk workflow itself then runs to completion too. The model files are hashed
before and after. Default: TRIES per node; ``--long``: LONG_TRIES. A JSON summary goes to
artifacts/reliability/interrupts_<tier>.json.
"""

from __future__ import annotations

import json
import os
import random
import time

import pytest

from ..conftest import ROOT
from ..e2e.test_workflows import of_type
from ..live.models import CHECKPOINT, CLIP_VISION
from ..live.server import model_cache
from .live import partial_files, plain_prompt, probes, prompt_of, run_and_interrupt, saved_pixels, sha256, snapshot

TRIES = int(os.environ.get("SLIDERSPACE_INTERRUPT_TRIES", 0)) or 1
LONG_TRIES = int(os.environ.get("SLIDERSPACE_INTERRUPT_TRIES", 0)) or 20
"""Tries per node (default / --long); SLIDERSPACE_INTERRUPT_TRIES overrides both (say so when reporting)."""
MAX_DELAY = 2.0
"""Seconds after the node starts; each node below is made to run far longer than this."""
MAX_LATENCY = 10.0
"""Seconds from the interrupt to the server's answer (a node that checks only now and then fails this)."""
OUT = ROOT / "artifacts" / "reliability"

TARGETS = [
    # (node, workflow, class, inputs that make it long, the input changed per try, upstream overrides)
    ("Trajectory Sampler", "sliderspace_discover.json", "SliderSpaceTrajectorySampler",
     {"trajectories": 200, "steps": 8, "batch_size": 4}, "seed", {}),
    ("CLIP Embed", "sliderspace_discover.json", "SliderSpaceClipEmbed", {}, "batch_size",
     {"SliderSpaceTrajectorySampler": {"trajectories": 12, "steps": 3, "keep_steps": "every step"}}),
    ("Train Sliders", "sliderspace_discover.json", "SliderSpaceTrainSliders", {"iterations": 5000}, "seed", {}),
    ("Slider Grid", "sliderspace_grid.json", "SliderSpaceSliderGrid",
     {"steps": 20, "sliders": "0-3", "scales": "-2, -1, 0, 1, 2"}, "seed", {}),
    ("ELROND Collect Gradients", "elrond_directions.json", "ELRONDCollectGradients",
     {"images": 24, "pairs": 270, "steps": 4}, "seed", {}),
    ("SAE Collect Activations", "sae_concepts.json", "SliderSpaceSAECollectActivations",
     {"samples": 200, "steps": 4}, "seed", {}),
    ("SAE Train", "sae_concepts.json", "SliderSpaceSAETrain", {"epochs": 10000}, "seed", {}),
]


def _plain(server, step: int) -> tuple[bytes, dict, dict]:
    entry = server.run(plain_prompt(), timeout=300)
    cached = [m[1]["nodes"] for m in entry["status"]["messages"] if m[0] == "execution_cached"]
    assert step == 0 or "ks" not in sum(cached, []), "the probe prompt was served from the cache"
    return saved_pixels(server, entry), probes(entry)["base"], entry


def test_long_nodes_stop_cleanly_when_interrupted(comfy_server, api_prompts, long_run):
    server = comfy_server
    tries = LONG_TRIES if long_run else TRIES
    rng = random.Random(16)
    model_files = [model_cache() / "checkpoints" / CHECKPOINT, model_cache() / "clip_vision" / CLIP_VISION,
                   *sorted(server.bank_dir.glob("*.safetensors"))]
    files = {p: sha256(p) for p in model_files}
    roots = [server.base / "output", server.base / "temp", server.base / "models"]
    pixels0, probe0, _ = _plain(server, 0)
    summary: dict[str, dict] = {}
    problems: list[str] = []
    last_of = {wf: max(i for i, t in enumerate(TARGETS) if t[1] == wf) for _, wf, *_ in TARGETS}
    for index, (node, workflow, cls, long_inputs, vary, upstream) in enumerate(TARGETS):
        stats = {"tries": 0, "interrupted_in_node": 0, "max_latency_s": 0.0, "delays_s": []}
        for i in range(tries):
            prompt = prompt_of(api_prompts, workflow, **upstream,
                               **{cls: {**long_inputs, vary: (100 + i if vary == "seed" else 3 + i % 5)}})
            [target] = of_type(prompt, cls)
            before = snapshot(roots)
            delay = round(rng.uniform(0.05, MAX_DELAY), 3)
            res = run_and_interrupt(server, prompt, target, delay)
            stats["tries"] += 1
            stats["delays_s"].append(delay)
            where = f"{node} try {i} (delay {delay} s)"
            if res["outcome"] != "interrupted" or res["node"] != target:
                problems.append(f"{where}: {res}")
            else:
                stats["interrupted_in_node"] += 1
                stats["max_latency_s"] = max(stats["max_latency_s"], round(res["latency"], 2))
                if res["latency"] > MAX_LATENCY:
                    problems.append(f"{where}: the node took {res['latency']:.1f} s to stop")
            assert server.get("/system_stats")[0] == 200, f"{where}: the server stopped serving"
            after = snapshot(roots)
            changed = [p for p, v in after.items() if before.get(p) != v]
            problems += [f"{where}: {b}" for b in partial_files(changed)]
            pixels, probe, _ = _plain(server, 1)
            if pixels != pixels0 or probe["weights"] != probe0["weights"]:
                problems.append(f"{where}: the next prompt differs (pixels equal: {pixels == pixels0}, weights "
                                f"{probe['weights']} vs {probe0['weights']}): the model object changed")
            for k in ("module_hooks", "weight_functions", "wrappers", "callbacks", "patches", "object_patches"):
                if probe[k] != probe0[k]:
                    problems.append(f"{where}: {k} on the loaded model {probe0[k]} -> {probe[k]}")
        if long_run and index == last_of[workflow]:  # the shrunk workflow itself still runs to completion
            t0 = time.perf_counter()
            server.run(prompt_of(api_prompts, workflow), timeout=900)
            stats["next_workflow_s"] = round(time.perf_counter() - t0, 1)
        summary[node] = stats
    changed_models = [str(p) for p, h in files.items() if sha256(p) != h]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"interrupts_{'long' if long_run else 'default'}.json").write_text(json.dumps(
        {"per_node": summary, "problems": problems, "model_files_changed": changed_models}, indent=1))
    print("\n" + json.dumps(summary, indent=1))
    assert not changed_models, changed_models
    assert not problems, "\n".join(problems[:30])
    assert all(s["interrupted_in_node"] == tries for s in summary.values())


@pytest.fixture(autouse=True)
def _server_alive_after(comfy_server):
    yield
    assert comfy_server.proc.poll() is None, f"the server died; see {comfy_server.log}"
