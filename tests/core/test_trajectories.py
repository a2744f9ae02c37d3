"""Step selection, prompt round-robin, batching and the trajectory store."""

from __future__ import annotations

import pytest
import torch

from sliderspace_core.common.errors import InputError
from sliderspace_core.sliderspace.trajectories import (
    LatentFacts,
    Trajectories,
    TrajectoryBuffer,
    plan_batches,
    select_steps,
    split_prompts,
)


def test_select_steps_modes():
    assert select_steps(5, "every step") == [0, 1, 2, 3, 4]
    assert select_steps(5, "final only") == [4]
    assert select_steps(10, "every k-th step", 3) == [0, 3, 6, 9]
    assert select_steps(10, "every k-th step", 4) == [1, 5, 9]
    assert select_steps(3, "every k-th step", 50) == [2]
    with pytest.raises(InputError, match="'keep_every'"):
        select_steps(10, "every k-th step", 0)
    with pytest.raises(InputError, match="'keep_steps'"):
        select_steps(10, "sometimes")


def test_prompts_and_round_robin_batches():
    assert split_prompts(" a dog \n\n a cat\n") == ["a dog", "a cat"]
    with pytest.raises(InputError, match="'prompts'"):
        split_prompts("  \n \n")
    batches = plan_batches(7, 2, 3)
    assert batches == [[0, 2, 4], [6], [1, 3, 5]]
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(len({i % 2 for i in b}) == 1 for b in batches)  # one prompt per batch
    with pytest.raises(InputError, match="'trajectories'"):
        plan_batches(0, 1, 1)


def test_buffer_and_flat_provenance():
    buf = TrajectoryBuffer(3, [1, 3], (2, 4, 4), torch.float32)
    assert buf.wants(1) and not buf.wants(2)
    for step in (1, 3):
        buf.put([0, 2], step, torch.full((2, 2, 4, 4), float(step)))
        assert not buf.complete()
        buf.put([1], step, torch.full((1, 2, 4, 4), -float(step)))
    assert buf.complete()
    traj = Trajectories(buf.x0, torch.tensor([1, 3]), torch.tensor([5.0, 1.0]), 4, ["a", "b"],
                        torch.tensor([0, 1, 0]), [10, 11, 12], LatentFacts("SD15", "SD15", 2))
    items, prov = traj.flat()
    assert items.shape == (6, 2, 4, 4) and len(traj) == 6
    assert prov["trajectory"].tolist() == [0, 0, 1, 1, 2, 2]
    assert prov["step"].tolist() == [1, 3, 1, 3, 1, 3]
    assert prov["prompt_index"].tolist() == [0, 0, 1, 1, 0, 0]
    assert items[2, 0, 0, 0] == -1.0 and items[5, 0, 0, 0] == 3.0


def test_used_prompts_keep_every_trajectorys_prompt():
    from sliderspace_core.sliderspace.trajectories import used_prompts

    lines = [f"p{i}" for i in range(7)]
    for n in (1, 3, 7, 8, 20):
        used = used_prompts(lines, n)
        assert len(used) == min(n, len(lines))
        assert all(used[i % len(used)] == lines[i % len(lines)] for i in range(n))
