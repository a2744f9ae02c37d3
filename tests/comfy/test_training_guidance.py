"""Train Sliders at a guidance scale (``cfg`` + ``negative``), on the tiny SD1.5-shaped model."""

from __future__ import annotations

import pytest
import torch

from .test_discovery import _out, _raises
from .test_training_comfy import discover, snapshot


@pytest.fixture(scope="module")
def guided(comfy, tiny):
    d = discover(comfy, tiny)
    d.neg = comfy["classes"]["CLIPTextEncode"]().encode(tiny.clip, "")[0]
    return d


def train(comfy, tiny, d, cfg=1.0, negative=None, iterations=4):
    node = comfy["classes"]["SliderSpaceTrainSliders"]
    with torch.inference_mode():
        return _out(node.execute(tiny.model, tiny.vae, d.pos, d.basis, d.traj, 2, iterations, 2e-2, 1,
                                 "cross-attention k/v", "", 2, 0, False, False, cfg=cfg,
                                 clip_vision=tiny.clip_vision, negative=negative))[0]


def factors(bank) -> list[torch.Tensor]:
    return [t for s in bank.sliders for k in sorted(s.up) for t in (s.up[k], s.down[k])]


def test_guided_host_predicts_uncond_plus_cfg_times_the_difference(comfy, tiny, guided):
    from .host import pack_module

    glue = pack_module("nodes.glue.autograd")
    lat = guided.traj.x0[:, -1].clone()
    sigma = glue.schedule_sigmas(tiny.model)[3:4]
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(lat.shape, generator=gen)
    got = {}

    def predict(name):
        def run(host, latents):
            with torch.no_grad():
                got[name] = host.predict_x0(host.noised(latents, sigma, noise), sigma.expand(latents.shape[0]))
        return run

    with torch.inference_mode(False):
        glue.run_in_comfy(tiny.model, guided.pos, lat, tiny.vae, None, predict("cond"))
        glue.run_in_comfy(tiny.model, guided.neg, lat, tiny.vae, None, predict("uncond"))
        glue.run_in_comfy(tiny.model, guided.pos, lat, tiny.vae, None, predict("guided"), guided.neg, 3.5)
    want = got["uncond"] + 3.5 * (got["cond"] - got["uncond"])
    assert (got["cond"] - got["uncond"]).abs().max() > 1e-3  # the two prompts differ, so the check can fail
    torch.testing.assert_close(got["guided"], want, atol=2e-5, rtol=1e-4)


def test_cfg_1_ignores_the_negative_bitwise(comfy, tiny, guided):
    plain = train(comfy, tiny, guided)
    with_negative = train(comfy, tiny, guided, negative=guided.neg)
    assert all(torch.equal(a, b) for a, b in zip(factors(plain), factors(with_negative), strict=True))
    assert plain.meta.config["guidance"] == 1.0


def test_guided_training_records_its_guidance_and_mutates_nothing(comfy, tiny, guided):
    dm = tiny.model.model.diffusion_model
    before, neg_before = snapshot(dm), [t.clone() for t in (guided.neg[0][0], guided.pos[0][0])]
    options = repr(tiny.model.model_options)
    plain = train(comfy, tiny, guided)
    bank = train(comfy, tiny, guided, cfg=4.0, negative=guided.neg)
    assert bank.meta.config["guidance"] == 4.0
    assert not all(torch.equal(a, b) for a, b in zip(factors(plain), factors(bank), strict=True))
    assert all(torch.equal(before[k], v) for k, v in snapshot(dm).items())
    assert torch.equal(guided.neg[0][0], neg_before[0]) and torch.equal(guided.pos[0][0], neg_before[1])
    assert repr(tiny.model.model_options) == options


def test_guidance_without_a_negative_is_refused(comfy, tiny, guided):
    _raises(lambda: train(comfy, tiny, guided, cfg=4.0), "SliderSpace Train Sliders", "negative")


def test_guided_gradients_reach_the_sliders_through_both_halves(comfy, tiny, guided):
    """d(guided x̂0)/dθ = cfg·d(cond)/dθ + (1 − cfg)·d(uncond)/dθ for the slider factors: both halves backpropagate."""
    from .host import pack_module

    glue = pack_module("nodes.glue.autograd")
    ad = pack_module("sliderspace_core.sliderspace.adapters")
    dm = tiny.model.model.diffusion_model
    modules = pack_module("nodes.glue.family").target_modules(dm, "cross-attention k/v")
    lat = guided.traj.x0[:, -1].clone()
    sigma = glue.schedule_sigmas(tiny.model)[5:6]
    noise = torch.randn(lat.shape, generator=torch.Generator().manual_seed(1))
    weights = torch.randn(lat.shape, generator=torch.Generator().manual_seed(2))
    grads = {}
    with torch.inference_mode(False), torch.enable_grad():
        adapters = ad.SliderAdapters({n: (m.out_features, m.in_features) for n, m in modules.items()}, 1)
        with torch.no_grad():
            for p in adapters.up.values():
                p.normal_(0, 0.05)

        def grad_of(name):
            def run(host, latents):
                adapters.zero_grad(set_to_none=True)
                b = latents.shape[0]
                with glue.frozen(dm), adapters.attached(modules), \
                        adapters.active(torch.zeros(b, dtype=torch.long), torch.ones(b)):
                    x0 = host.predict_x0(host.noised(latents, sigma, noise), sigma.expand(b))
                    (x0 * weights).sum().backward()
                grads[name] = torch.cat([p.grad.flatten() for p in adapters.parameters() if p.grad is not None])
            return run

        glue.run_in_comfy(tiny.model, guided.pos, lat, tiny.vae, None, grad_of("cond"))
        glue.run_in_comfy(tiny.model, guided.neg, lat, tiny.vae, None, grad_of("uncond"))
        glue.run_in_comfy(tiny.model, guided.pos, lat, tiny.vae, None, grad_of("guided"), guided.neg, 3.0)
    assert grads["uncond"].abs().max() > 1e-2  # a missing uncond half would break the equality below
    assert (grads["cond"] - grads["uncond"]).abs().max() > 1e-4 * grads["cond"].abs().max()
    torch.testing.assert_close(grads["guided"], 3.0 * grads["cond"] - 2.0 * grads["uncond"], atol=1e-5, rtol=1e-3)
