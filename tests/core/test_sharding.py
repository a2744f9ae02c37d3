"""Slider training split over processes and resumed after an interruption: the same bank, bit for bit.

Two "processes" are two threads here (each with its own copy of the host; ``gather`` meets at a barrier),
so the core is tested without torch.distributed; tests/dist runs the real thing under torchrun.
"""

from __future__ import annotations

import threading

import pytest
import torch

from sliderspace_core.common.errors import InputError
from sliderspace_core.decompose.pca import fit_pca
from sliderspace_core.sliderspace.bank import BankMeta, SliderBank
from sliderspace_core.sliderspace.sharding import SliderShard
from sliderspace_core.sliderspace.training import TrainConfig, embed, train_bank

from .toy_host import ToyHost

N_SLIDERS = 4


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # runs that must agree bitwise use the same intra-op thread count
    yield
    torch.set_num_threads(before)


def data():
    host = ToyHost()
    latents = torch.randn(30, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        basis = fit_pca(embed(host, latents), N_SLIDERS)
    return latents, basis


def train(shard=None, checkpoint=None, on_step=None, host=None, inputs=None, **kw) -> SliderBank:
    latents, basis = inputs or data()
    host = host or ToyHost()
    cfg = TrainConfig(**{"iterations": 12, "lr": 5e-2, "sliders_per_step": 3, "seed": 3, "batched": False, **kw})
    bank, _ = train_bank(host, host.targets(), basis, N_SLIDERS, latents, torch.linspace(0.2, 2.0, 8), cfg,
                         BankMeta(family="toy"), on_step, None, shard, checkpoint)
    return bank


def assert_same(a: SliderBank, b: SliderBank) -> None:
    assert a.meta.config == b.meta.config
    for sa, sb in zip(a.sliders, b.sliders, strict=True):
        assert sa.alignment == sb.alignment and torch.equal(sa.direction, sb.direction)
        for m in a.modules:
            assert torch.equal(sa.down[m], sb.down[m]) and torch.equal(sa.up[m], sb.up[m]), m


class ThreadGroup:
    """``gather`` for ``n`` threads that play processes."""

    def __init__(self, n: int) -> None:
        self.slots: list[torch.Tensor | None] = [None] * n
        self.barrier = threading.Barrier(n, timeout=60)

    def gather_for(self, rank: int):
        def gather(t: torch.Tensor) -> list[torch.Tensor]:
            self.slots[rank] = t.clone()
            self.barrier.wait()
            out = [s.clone() for s in self.slots]
            self.barrier.wait()
            return out

        return gather


def split_run(world: int, **kw) -> list[SliderBank]:
    group, banks, errors = ThreadGroup(world), [None] * world, []
    hosts, inputs = [ToyHost() for _ in range(world)], data()  # built here: ToyHost seeds torch's global RNG

    def worker(r: int) -> None:
        try:
            banks[r] = train(SliderShard(r, world, group.gather_for(r)), host=hosts[r], inputs=inputs, **kw)
        except BaseException as e:  # surfaced below
            errors.append(e)
            group.barrier.abort()

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return banks


@pytest.mark.parametrize("bidirectional", [False, True])
def test_two_processes_train_the_one_process_bank_bitwise(bidirectional):
    one = train(bidirectional=bidirectional)
    for bank in split_run(2, bidirectional=bidirectional):  # every process returns the whole bank
        assert_same(one, bank)
    init = train(iterations=0)
    assert all(not torch.equal(s.down[m], s0.down[m])  # they did train
               for s, s0 in zip(one.sliders, init.sliders, strict=True) for m in one.modules)


def test_batched_and_per_slider_modes_are_different_runs():
    a, b = train(), train(batched=True)
    assert not all(torch.equal(sa.down[m], sb.down[m]) for sa, sb in zip(a.sliders, b.sliders, strict=True)
                   for m in a.modules)


class MemoryCheckpoint:
    def __init__(self, every: int) -> None:
        self.every, self.state, self.saves = every, None, 0

    def load(self):
        return None if self.state is None else {k: v.clone() for k, v in self.state.items()}

    def save(self, state) -> None:
        self.state, self.saves = {k: v.clone() for k, v in state.items()}, self.saves + 1


class Killed(Exception):
    pass


@pytest.mark.parametrize("batched", [False, True])
def test_interrupted_and_resumed_run_gives_the_uninterrupted_bank(batched):
    whole = train(batched=batched)
    ckpt = MemoryCheckpoint(every=4)

    def die(done: int, losses: list[float]) -> None:
        if done == 7:  # after the save at step 4, before the one at 8: steps 5–7 are redone
            raise Killed

    with pytest.raises(Killed):
        train(checkpoint=ckpt, on_step=die, batched=batched)
    assert int(ckpt.state["done"]) == 4
    assert_same(whole, train(checkpoint=ckpt, batched=batched))


def test_a_checkpoint_of_other_settings_is_refused():
    ckpt = MemoryCheckpoint(every=4)
    train(checkpoint=ckpt, iterations=4)
    ckpt.state["param.down.block1__to_k"] = ckpt.state["param.down.block1__to_k"][:, :, :3]
    with pytest.raises(InputError, match="other settings"):
        train(checkpoint=ckpt)


def test_split_needs_per_slider_mode_and_a_slider_per_process():
    with pytest.raises(InputError, match="one pass per slider"):
        train(SliderShard(0, 2, lambda t: [t, t]), batched=True)
    with pytest.raises(InputError, match="at most 4 processes"):
        train(SliderShard(0, 5, lambda t: [t] * 5))
