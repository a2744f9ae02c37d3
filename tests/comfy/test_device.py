"""SAE Train and ELROND Decompose's TopK SAE train on ComfyUI's torch device and free memory there first
(issue 28): ComfyUI's device choice is monkeypatched to a device object the CPU can still run (``cpu:0``,
which compares unequal to the plain ``cpu`` a pinned call would pass), and the trainer must receive exactly
it. Results come back on ComfyUI's intermediate device. Run through ComfyUI's own executor."""

from __future__ import annotations

import pytest
import torch

from .executor import run_node
from .host import pack_module

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores

FAKE = torch.device("cpu", 0)
D = 16


@pytest.fixture
def device_calls(comfy, monkeypatch):
    """ComfyUI's device is FAKE; every free_memory call is recorded (and still runs)."""
    import comfy.model_management as mm

    calls: dict[str, list] = {"free": [], "train": []}
    free = mm.free_memory
    monkeypatch.setattr(mm, "get_torch_device", lambda: FAKE)
    monkeypatch.setattr(mm, "free_memory", lambda need, dev, *a, **k: calls["free"].append((need, dev))
                        or free(need, dev, *a, **k))
    return calls


def _spy(monkeypatch, module_name: str, calls: list) -> None:
    module = pack_module(module_name)
    real = module.train_sae

    def spy(*args, **kwargs):
        calls.append(kwargs.get("device"))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "train_sae", spy)


def _activations(folder: str):
    acts = pack_module("sliderspace_core.concepts.activations")
    w = acts.ActivationWriter(folder, "middle_block.1", D, 4, 4, shard_rows=40, dtype=torch.float16)
    g = torch.Generator().manual_seed(0)
    for s in range(6):
        w.add(torch.randn(16, D, generator=g), sigma=1.0, cond=0, sample=s, positions=torch.arange(16))
    return w.close()


def test_sae_train_runs_on_comfys_device_after_freeing_memory_there(device_calls, monkeypatch, tmp_path):
    import comfy.model_management as mm

    _spy(monkeypatch, "nodes.concepts.train", device_calls["train"])
    sae, _plot, summary = run_node("SliderSpaceSAETrain", 3, activations=_activations(str(tmp_path / "a")),
                                   width=32, k=4, auxk=8, lr=1e-3, batch_size=32, epochs=2, seed=0)
    assert device_calls["train"] == [FAKE]
    cfg = pack_module("sliderspace_core.decompose.topk_sae").TopKSAEConfig(n_latents=32, batch_size=32)
    assert any(dev == FAKE and need >= cfg.training_bytes(D) for need, dev in device_calls["free"])
    home = torch.device(mm.intermediate_device())
    assert sae.sae.W_enc.device == home and sae.feature_mean.device == home  # results as ComfyUI keeps them
    assert "explained variance" in summary


def test_elrond_topk_sae_runs_on_comfys_device_after_freeing_memory_there(device_calls, monkeypatch):
    _spy(monkeypatch, "sliderspace_core.elrond.directions", device_calls["train"])
    grads = pack_module("sliderspace_core.elrond.gradients").GradientSet(
        vectors=torch.randn(64, D, generator=torch.Generator().manual_seed(0)),
        losses=torch.ones(64, dtype=torch.float64), pairs=torch.zeros(64, 2, dtype=torch.long), sigma=14.6,
        space=f"conditioning:test:{D}", word="dog", prompt="a dog", token_rows=[2])
    dirs, _ = run_node("ELRONDDecompose", 2, gradients=grads, method="TopK SAE", n=8, c=2.5, sae_k=2,
                       sae_epochs=2, sae_lr=1e-2, seed=0)
    assert device_calls["train"] == [FAKE]
    assert any(dev == FAKE for _need, dev in device_calls["free"])
    assert dirs.components.device.type == "cpu"


class _Tower(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3 * 8 * 8, 4)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(pixels.flatten(1))


def test_an_open_clip_encoder_is_loaded_by_comfys_memory_management_before_it_embeds(comfy, monkeypatch):
    """The open_clip encoder used to stay wherever it was loaded (the CPU); now ComfyUI loads it to its text
    encoder device before each use and may offload it, as it does CLIP_VISION."""
    import comfy.model_management as mm

    core = pack_module("sliderspace_core.common.encoders")
    glue = pack_module("nodes.glue.encoders")
    bare = core.OpenClipEncoder(_Tower(), "tiny", 8, (0.5,) * 3, (0.5,) * 3)
    monkeypatch.setattr(mm, "text_encoder_device", lambda: FAKE)
    loaded = []
    real = mm.load_model_gpu
    monkeypatch.setattr(mm, "load_model_gpu", lambda patcher: loaded.append(patcher) or real(patcher))
    enc = glue.pick_encoder(None, bare)
    pixels = torch.rand(2, 3, 8, 8)
    out = enc.embed_pixels(pixels)
    assert [p.load_device for p in loaded] == [FAKE]
    assert enc.encoder_id == bare.encoder_id and enc.image_size == 8
    torch.testing.assert_close(out, bare.embed_pixels(pixels))
