"""Random Sparse Sliders in real ComfyUI: per-item subsets, batch = single runs, vanilla when off."""

from __future__ import annotations

import torch

from .executor import run_node
from .test_discovery import SIZE, _out, _raises

STEPS = 5


def sparse(comfy, model, bank, seed=10, k=2, start=0.0, batch=1, dist="fixed", sign=True):
    return run_node("SliderSpaceRandomSparseSliders", outputs=2, model=model, bank=bank, seed=seed, k=k,
                    distribution=dist, scale=1.5, min_scale=0.5, random_sign=sign, start_percent=start,
                    end_percent=1.0, batch_size=batch)  # through ComfyUI's executor, as a server runs it


def run(comfy, tiny, model, noise):
    import comfy.sample as cs

    C = comfy["classes"]
    with torch.inference_mode():
        pos = C["CLIPTextEncode"]().encode(tiny.clip, "a dog")[0]
        neg = C["CLIPTextEncode"]().encode(tiny.clip, "")[0]
        latent = torch.zeros_like(noise)
        return cs.sample(model, noise, STEPS, 5.0, "euler", "normal", pos, neg, latent, disable_pbar=True, seed=0)


def noises(n):
    return torch.cat([torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(100 + j))
                      for j in range(n)])


def test_batch_of_8_equals_8_single_runs_with_per_item_seeds(comfy, tiny, bank):
    n = 8
    model, text = sparse(comfy, tiny.model, bank, seed=10, batch=n)
    nz = noises(n)
    batched = run(comfy, tiny, model, nz)
    vanilla = run(comfy, tiny, tiny.model, nz)
    assert len(text.splitlines()) == n and text.startswith("item 0 (seed 10): ")
    for j in range(n):
        single_model, single_text = sparse(comfy, tiny.model, bank, seed=10 + j, batch=1)
        assert single_text.split(": ", 1)[1] == text.splitlines()[j].split(": ", 1)[1]
        single = run(comfy, tiny, single_model, nz[j:j + 1])
        torch.testing.assert_close(batched[j], single[0], rtol=1e-4, atol=1e-3)
        assert not torch.allclose(batched[j], vanilla[j])
    subsets = [line.split(": ", 1)[1] for line in text.splitlines()]
    assert len(set(subsets)) > 1  # items really get different sliders
    assert sparse(comfy, tiny.model, bank, seed=10, batch=n)[1] == text  # same seed, same subsets


def test_listed_sliders_reproduce_with_apply_slider_bank(comfy, tiny, bank):
    model, text = sparse(comfy, tiny.model, bank, seed=3, batch=1, start=0.0)
    scales = text.split(": ", 1)[1]
    with torch.inference_mode():
        applied = _out(comfy["classes"]["SliderSpaceApplySliderBank"].execute(tiny.model, bank, scales, 1.0, 0.0,
                                                                              1.0))[0]
    nz = noises(1)
    torch.testing.assert_close(run(comfy, tiny, model, nz), run(comfy, tiny, applied, nz), rtol=1e-4, atol=1e-3)


def test_start_past_end_is_vanilla_and_errors(comfy, tiny, bank):
    nz = noises(2)
    model, _ = sparse(comfy, tiny.model, bank, start=1.0, batch=2)
    assert torch.equal(run(comfy, tiny, model, nz), run(comfy, tiny, tiny.model, nz))
    name = "SliderSpace Random Sparse Sliders"
    _raises(lambda: sparse(comfy, tiny.model, bank, k=7), name, "k")
    node = comfy["classes"]["SliderSpaceRandomSparseSliders"]
    _raises(lambda: node.execute(tiny.model, bank, 0, 2, "fixed", 1.0, 0.5, False, 0.9, 0.1, 1), name,
            "start_percent")
