"""Soak (issue 16): the discovery, apply and sparse workflows re-queued in one live server (a seed changed
each round, so the work is redone), then Apply prompts queued back to back.

Measured on the server process (psutil) and by a test-only probe node on the models (tests/live/probe):
wrappers, callbacks, weight wrappers, patches, torch hooks and comfy weight functions on the loaded model
and on Apply's output, live ModelPatcher objects, open files and descriptors, and RSS. After the warm-up
round nothing may grow (RSS by at most RSS_GROWTH) and every prompt must succeed. Default: ROUNDS rounds
of WORKFLOWS and APPLY prompts; ``--long``: LONG_ROUNDS of LONG_WORKFLOWS and LONG_APPLY. A JSON summary goes to
artifacts/reliability/soak_<tier>.json.
"""

from __future__ import annotations

import json
import os
import time

import psutil

from ..conftest import ROOT
from ..e2e.test_workflows import of_type
from .live import base_model, probes, prompt_of, with_probe

ROUNDS, LONG_ROUNDS = 2, 20
APPLY, LONG_APPLY = 6, 50
WORKFLOWS, LONG_WORKFLOWS = "apply,sparse", "discover,apply,sparse"
"""Discovery (minutes per run on a loaded 2-core CPU: its training backpropagates through a ViT-L/14) is
re-queued only under --long."""
RSS_GROWTH = 0.02
OUT = ROOT / "artifacts" / "reliability"
COUNTS = ("wrappers", "callbacks", "weight_wrappers", "patches", "object_patches", "model_options_keys",
          "module_hooks", "weight_functions")


def _proc_state(pid: int) -> dict:
    p = psutil.Process(pid)
    return {"rss_mb": round(p.memory_info().rss / 2**20, 1), "open_files": len(p.open_files()), "fds": p.num_fds(),
            "threads": p.num_threads()}


def _apply_prompt(api_prompts: dict, seed: int, multiplier: float) -> dict:
    p = prompt_of(api_prompts, "sliderspace_apply.json", KSampler={"seed": seed},
                  SliderSpaceApplySliderBank={"multiplier": multiplier})
    p = with_probe(p, base_model(p), "base")
    [apply] = of_type(p, "SliderSpaceApplySliderBank")
    return with_probe(p, [apply, 0], "applied")


def _queue_and_wait(server, prompts: list[dict], timeout: float = 900) -> list[dict]:
    ids = []
    for p in prompts:
        status, body = server.post("/prompt", {"prompt": p, "client_id": "sliderspace-soak"})
        assert status == 200, body
        ids.append(body["prompt_id"])
    entries, end = [], time.monotonic() + timeout
    for pid in ids:
        while True:
            _, hist = server.get(f"/history/{pid}")
            entry = (hist or {}).get(pid)
            if entry and entry.get("status", {}).get("completed") is not None:
                break
            assert time.monotonic() < end and server.proc.poll() is None, f"prompt {pid} did not finish"
            time.sleep(0.3)
        entries.append(entry)
    return entries


def _setting(name: str, default, long, long_run: bool) -> str:
    """This tier's setting; SLIDERSPACE_SOAK_<NAME> overrides it (for a partial long run: say which)."""
    return os.environ.get(f"SLIDERSPACE_SOAK_{name}", str(long if long_run else default))


def test_requeued_workflows_and_back_to_back_applies_leak_nothing(comfy_server, api_prompts, long_run):
    server = comfy_server
    rounds = int(_setting("ROUNDS", ROUNDS, LONG_ROUNDS, long_run))
    applies = int(_setting("APPLY", APPLY, LONG_APPLY, long_run))
    names = tuple(_setting("WORKFLOWS", WORKFLOWS, LONG_WORKFLOWS, long_run).split(","))
    log: list[dict] = []
    failures: list[str] = []
    t0 = time.perf_counter()
    # Each workflow is re-queued back to back (ComfyUI's cache keeps only the last prompt's nodes, so
    # interleaving would recompute every upstream node each time); the seed changed each round redoes its work
    # (discovery: from the trajectories on).
    seeds = {"discover": ("SliderSpaceTrajectorySampler", "seed"),
             "sparse": ("SliderSpaceRandomSparseSliders", "seed")}
    workflows = {"discover": "sliderspace_discover.json", "sparse": "sliderspace_sparse_diversity.json"}
    schedule = [(n, 0) for n in names] + [(n, r) for n in names for r in range(1, rounds)]  # warm-up, then re-queues
    for step, (name, r) in enumerate(schedule):
        if name == "apply":
            p = _apply_prompt(api_prompts, seed=r, multiplier=1.0)
        else:
            cls, key = seeds[name]
            p = prompt_of(api_prompts, workflows[name], **{cls: {key: r}})
            p = with_probe(p, base_model(p), "base")
        [entry] = _queue_and_wait(server, [p])
        if entry["status"].get("status_str") != "success":
            failures.append(f"{name} round {r}: {json.dumps(entry['status'])[:1500]}")
            continue
        log.append({"phase": f"round {r}", "prompt": name, **{f"{t}.{k}": v for t, rep in probes(entry).items()
                                                               for k, v in rep.items()},
                    **(_proc_state(server.proc.pid) if step == len(names) - 1 else {})})
    t_rounds = time.perf_counter() - t0
    entries = _queue_and_wait(server, [_apply_prompt(api_prompts, seed=1000 + i, multiplier=1.0 + (i % 4) / 4)
                                       for i in range(applies)])
    for i, entry in enumerate(entries):
        if entry["status"].get("status_str") != "success":
            failures.append(f"apply {i}: {json.dumps(entry['status'])[:1500]}")
            continue
        log.append({"phase": "back to back", "prompt": "apply", **{f"{t}.{k}": v for t, rep in probes(entry).items()
                                                                    for k, v in rep.items()}})
    log[-1].update(_proc_state(server.proc.pid))
    t_total = time.perf_counter() - t0

    warm = [e for e in log if "rss_mb" in e][0]  # after one prompt of each workflow (the warm-up)
    last = log[-1]
    growth = {"rss": (last["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"],
              "fds": last["fds"] - warm["fds"], "open_files": last["open_files"] - warm["open_files"]}
    drift = []
    # Compared within a group: the same prompt after the same kind of prompt (the first re-queue follows
    # another workflow, so ComfyUI's cache, and with it the live patcher count, differs for it alone).
    groups = {f"{p} (rounds 2+)": [e for e in log if e["prompt"] == p and e["phase"].startswith("round ")
                                    and e["phase"] not in ("round 0", "round 1")] for p in names}
    groups["apply (back to back, 2+)"] = [e for e in log if e["phase"] == "back to back"][1:]
    for prompt, rows in groups.items():
        for key in [f"{t}.{k}" for t in ("base", "applied") for k in (*COUNTS, "weights", "live_model_patchers")]:
            values = [e.get(key) for e in rows]
            if len(set(map(str, values))) > 1:
                drift.append(f"{prompt} {key}: {values}")
    summary = {"workflows": names, "rounds": rounds, "apply_back_to_back": applies, "prompts": len(log),
               "failures": len(failures),
               "seconds_rounds": round(t_rounds, 1), "seconds_total": round(t_total, 1),
               "warm": {k: warm[k] for k in ("rss_mb", "fds", "open_files", "threads")},
               "last": {k: last[k] for k in ("rss_mb", "fds", "open_files", "threads")},
               "rss_growth_after_warmup": round(growth["rss"], 4), "drift": drift,
               "base_counts": {k: log[-1].get(f"base.{k}") for k in (*COUNTS, "live_model_patchers")},
               "applied_counts": {k: log[-1].get(f"applied.{k}") for k in (*COUNTS, "live_model_patchers")}}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"soak_{'long' if long_run else 'default'}.json").write_text(json.dumps({"summary": summary, "log": log},
                                                                                   indent=1))
    print("\n" + json.dumps(summary, indent=1))
    assert not failures, "\n".join(failures[:5])
    assert not drift, "\n".join(drift)
    assert growth["fds"] <= 0 and growth["open_files"] <= 0, summary
    assert growth["rss"] <= RSS_GROWTH, summary
