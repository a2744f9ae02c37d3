"""The headless runner's ComfyUI backend on the tiny SD1.5-shaped model: the node's trajectories, a bank the
pack (as ComfyUI loaded it) reads and applies. One process; tests/dist covers the process split on ToyWorld."""

from __future__ import annotations

import pytest
import torch

from headless.comfy_backend import ComfyBackend
from headless.config import RunConfig
from headless.dist import Dist
from headless.pipeline import Timings, bank_path, discover, train
from headless.rundir import RunDir

from .host import pack_module


@pytest.fixture(scope="module")
def backend(comfy, tiny, tmp_path_factory):
    cfg = RunConfig(run_dir=str(tmp_path_factory.mktemp("run")), checkpoint="tiny (in-process)",
                    prompts=("a photo of a dog",), trajectories=4, steps=3, cfg=7.0, sampler="euler",
                    scheduler="normal", width=64, height=64, chunk=2, n_components=2, n_sliders=2, iterations=3,
                    sliders_per_step=1, lr=2e-2, checkpoint_every=2)
    return ComfyBackend(cfg, torch.device("cpu"), (tiny.model, tiny.clip, tiny.vae, tiny.clip_vision))


def test_chunks_are_the_trajectory_sampler_nodes_trajectories(comfy, tiny, backend):
    C = comfy["classes"]
    with torch.inference_mode():
        traj = C["SliderSpaceTrajectorySampler"].execute(tiny.model, "a photo of a dog", "", 4, 0, 3, 7.0,
                                                         "euler", "normal", 64, 64, 2, "every step", 1,
                                                         "float16", clip=tiny.clip)[0]
    assert torch.equal(backend.sample_chunk([2, 3]), traj.x0[2:4])  # seeds 2, 3 in one batch, as the node's


def test_runner_bank_loads_and_applies_in_the_pack(comfy, tiny, backend):
    cfg = backend.cfg
    run, dist, times = RunDir(cfg.run_dir), Dist(), Timings()
    finals, basis = discover(cfg, dist, run, backend, times)
    assert finals.shape[0] == 4 and basis.n_components == 2 and basis.encoder_id == backend.encoder_id
    train(cfg, dist, run, backend, finals, basis, times)
    bank = pack_module("sliderspace_core.sliderspace.bank").load_bank(bank_path(cfg))
    pack_module("nodes.glue.family").check_bank_for_model(bank, tiny.model)
    assert len(bank) == 2 and bank.meta.family == "SD15" and sum(bank.meta.config["updates"]) == 3
    assert any(s.up[m].abs().sum() > 0 for s in bank.sliders for m in bank.modules)
    assert bank.meta.config["renoise_schedule"] == "normal 3"  # the trajectories' own schedule, as Train Sliders
    patched = comfy["classes"]["SliderSpaceApplySliderBank"].execute(tiny.model, bank, "0:1.5", 1.0, 0.0, 1.0)[0]
    assert patched is not tiny.model
