"""Nothing in the core is pinned to the CPU (issue 28): the SAE trainer streams batches to the device it is
given, the ELROND SAE path passes its device through, steering runs on the block's device, and the memory
a training run needs is estimated before it starts. ``meta`` tensors stand in for an accelerator: an op
that silently moves data to the CPU fails on them ("Cannot copy out of meta tensor")."""

from __future__ import annotations

import pytest
import torch

from sliderspace_core.concepts.activations import COND, UNCOND
from sliderspace_core.concepts.sae import ConceptSAE, feature_stats
from sliderspace_core.concepts.steering import Steerer
from sliderspace_core.decompose import topk_train
from sliderspace_core.decompose.topk_sae import SAE_CONCEPTS_PRESET, TopKSAE, TopKSAEConfig, accumulator_dtype
from sliderspace_core.elrond import directions as elrond_directions

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores

H, W, D, N = 4, 5, 16, 32
META = torch.device("meta")


def _csae() -> ConceptSAE:
    sae = TopKSAE.create(D, TopKSAEConfig(k=4, n_latents=N, seed=3))
    return ConceptSAE(sae, "middle_block.1", torch.rand(N, generator=torch.Generator().manual_seed(0)) + 1,
                      torch.ones(N))


def test_batches_stream_float16_shards_to_the_device_as_float32_batches():
    shards = [torch.randn(70, D).half(), torch.randn(30, D).half()]
    got = list(topk_train._batches(iter(shards), D, 32, 64, torch.Generator().manual_seed(0), META))
    assert [tuple(x.shape) for x in got] == [(32, D), (32, D), (32, D), (4, D)]
    assert all(x.device == META and x.dtype == torch.float32 for x in got)
    assert all(s.device.type == "cpu" for s in shards)  # the shards themselves stay where they were read


@pytest.mark.parametrize("scale", ["feature mean (sdxl-unbox)", "beta over the grid (Tinaz et al.)"])
def test_spatial_steering_runs_on_the_blocks_device_and_leaves_the_sae_where_it_was(scale):
    c = _csae()
    mask = torch.zeros(H, W)
    mask[:2] = 1
    st = Steerer(c, {5: 3.0}, "spatial", "cfg", scale=scale, mask=mask, suppress_outside=True)
    out, block_in = torch.empty(2, H * W, D, device=META), torch.empty(2, H * W, D, device=META)
    res = st.apply(out, [UNCOND, COND], H, W, block_in)
    assert res.device == META and res.shape == out.shape
    assert c.sae.W_enc.device.type == "cpu"  # the input SAE is not moved (a copy runs on the block's device)


def test_training_memory_grows_with_width_and_batch():
    cfg = SAE_CONCEPTS_PRESET
    sdxl = cfg.training_bytes(1280)
    params = 2 * 1280 * 5120 * 4
    assert 4 * params < sdxl < 4 * params + 4096 * 5120 * 4 * 8  # weights, grads, Adam moments + batch temporaries
    assert TopKSAEConfig(batch_size=8192).training_bytes(1280) > TopKSAEConfig(batch_size=4096).training_bytes(1280)


def test_accumulators_are_float64_except_where_the_device_has_none():
    assert accumulator_dtype(torch.device("cpu")) == torch.float64
    assert accumulator_dtype(torch.device("cuda", 0)) == torch.float64
    assert accumulator_dtype(torch.device("mps")) == torch.float32


def test_feature_stats_accumulate_on_the_saes_device():
    sae = TopKSAE.create(D, TopKSAEConfig(k=4, n_latents=N, seed=3)).to(META)
    mean, std = feature_stats(sae, [torch.randn(50, D)])
    assert mean.shape == std.shape == (N,) and mean.device == META


def test_elrond_sae_directions_train_on_the_device_they_are_given(monkeypatch):
    seen = []
    real = elrond_directions.train_sae

    def spy(*args, **kwargs):
        seen.append(kwargs.get("device"))
        return real(*args, **kwargs)

    monkeypatch.setattr(elrond_directions, "train_sae", spy)
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    cfg = TopKSAEConfig(k=2, expansion=1.0, auxk=None, lr=1e-2, batch_size=16, epochs=2)
    d = elrond_directions.sae_directions(x, cfg, device=torch.device("cpu", 0))
    assert seen == [torch.device("cpu", 0)]
    assert d.components.device.type == "cpu"  # directions are results: kept on the CPU, as the type says
