"""The headless runner under torchrun (gloo, CPU, 2 processes × 1 thread) against one process.

Every check launches real processes: ``.venv/bin/python -m torch.distributed.run --standalone ...``.
A ToyWorld run small enough for the default tier (6 trajectories × 3 steps, 4 sliders, 8 steps).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from ..conftest import ROOT

PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
RUN = ["--trajectories", "6", "--steps", "3", "--chunk", "2", "--n-sliders", "4", "--n-components", "4",
       "--iterations", "6", "--sliders-per-step", "2", "--checkpoint-every", "2"]


def launch(run_dir: pathlib.Path, *extra: str, nproc: int = 0, command: str = "train") -> subprocess.CompletedProcess:
    """``python -m headless`` (nproc 0) or torchrun with ``nproc`` processes; one CPU thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    head = [PY, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc else [PY]
    cmd = [*head, "-m", "headless", command, "--run-dir", str(run_dir), "--threads", "1", *RUN, *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def read(path: pathlib.Path) -> tuple[dict, dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118


def assert_bitwise_equal(a: pathlib.Path, b: pathlib.Path) -> None:
    """Same metadata values and every tensor equal bit for bit (safetensors orders its metadata map by
    hash, so the files' bytes may differ where their contents do not)."""
    (ma, ta), (mb, tb) = read(a), read(b)
    assert ma == mb
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), k


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> pathlib.Path:
    run = tmp_path_factory.mktemp("single")
    ok(launch(run))
    return run


def test_two_processes_write_the_single_process_bank_bitwise(single, tmp_path):
    proc = ok(launch(tmp_path, nproc=2))
    assert_bitwise_equal(single / "basis.safetensors", tmp_path / "basis.safetensors")
    assert_bitwise_equal(single / "bank.safetensors", tmp_path / "bank.safetensors")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["backend"] == "gloo"
    assert summary["chunks_computed"] == [1, 2]  # 3 chunks by seed range: rank 0 seeds 0-1, rank 1 seeds 2-5
    assert "[rank 1/2] train: 6/6 steps, sliders [1, 3]" in proc.stderr  # progress per rank
    meta, _ = read(tmp_path / "bank.safetensors")
    assert json.loads(meta["bank"])["config"]["updates"] == json.loads(read(single / "bank.safetensors")[0]["bank"]
                                                                        )["config"]["updates"]


def test_killed_rank_then_resumed_gives_the_uninterrupted_bank(single, tmp_path):
    killed = launch(tmp_path, "--simulate-kill", "1:3", nproc=2)
    assert killed.returncode != 0 and "killing myself (SIGKILL) after step 3" in killed.stderr
    assert not (tmp_path / "bank.safetensors").exists()
    state = tmp_path / "train" / "rank1_of_2.safetensors"
    assert int(read(state)[1]["done"]) == 2  # its last checkpoint; step 3 is lost and redone
    resumed = ok(launch(tmp_path, nproc=2))
    assert "[rank 1/2] train: resuming from step 2" in resumed.stderr
    assert_bitwise_equal(single / "bank.safetensors", tmp_path / "bank.safetensors")
    # a resume must keep the process count and the settings
    wrong_world = launch(tmp_path)
    assert wrong_world.returncode != 0 and "checkpoints of 2 processes, but this launch has 1" in wrong_world.stderr
    wrong_lr = launch(tmp_path, "--lr", "0.5")  # the settings are checked first, before the process count
    assert wrong_lr.returncode != 0 and "other train settings (lr: 0.01 → 0.5)" in wrong_lr.stderr
