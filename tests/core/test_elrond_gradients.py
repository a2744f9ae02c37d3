"""ELROND gradient collection on a pure-torch host: pairs, exact gradients vs finite differences, options."""

from __future__ import annotations

import itertools

import pytest
import torch

from sliderspace_core.common.errors import InputError
from sliderspace_core.elrond.edits import add_to_rows
from sliderspace_core.elrond.gradients import (
    GradientConfig,
    collect_gradients,
    make_pairs,
    max_pairs,
    pair_losses,
    pair_noise,
)

L, D, SHAPE = 6, 12, (3, 4, 4)


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


class ToyHost:
    """x̂0 = c_skip·x_t + tanh(attention of the flattened x_t over the conditioning rows): cross-attention in
    miniature, float64, every output depending on every token row."""

    def __init__(self, seed: int = 0, nan: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        f = int(torch.tensor(SHAPE).prod())
        self.wq = torch.randn(f, D, generator=g, dtype=torch.float64) / f**0.5
        self.wo = torch.randn(D, f, generator=g, dtype=torch.float64) / D**0.5
        self.nan = nan

    def noised(self, x0, sigma, noise):
        return x0 + sigma.view(-1, 1, 1, 1).to(x0.dtype) * noise

    def predict_x0(self, x_t, sigma, cond):
        s = sigma.view(-1, 1).to(torch.float64)
        flat = x_t.flatten(1).double()
        attn = torch.softmax(torch.einsum("bd,bld->bl", flat @ self.wq, cond.double()), dim=1)
        ctx = torch.einsum("bl,bld->bd", attn, cond.double())
        out = flat / (1 + s**2) + torch.tanh(ctx @ self.wo)
        if self.nan:
            out = out * float("nan")
        return out.view(x_t.shape)


def data(n: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *SHAPE, generator=g, dtype=torch.float64), torch.randn(1, L, D, generator=g,
                                                                                   dtype=torch.float64)


def test_pairs_are_distinct_ordered_seeded_and_cover_all():
    n = 7
    every = make_pairs(n, max_pairs(n), seed=3)
    assert sorted(map(tuple, every.tolist())) == list(itertools.combinations(range(n), 2))
    a, b = make_pairs(n, 10, seed=3), make_pairs(n, 10, seed=4)
    assert torch.equal(a, make_pairs(n, 10, seed=3)) and not torch.equal(a, b)
    assert torch.equal(a, every[:10])  # the cap takes a prefix of the one seeded shuffle


def test_pairs_without_listing_all_of_them():
    n = 5000  # 12.5 M pairs: drawn by rejection, never materialised
    p = make_pairs(n, 20000, seed=0)
    assert p.shape == (20000, 2) and bool((p[:, 0] < p[:, 1]).all()) and int(p.max()) < n
    assert len(set(map(tuple, p.tolist()))) == 20000


def test_too_many_pairs_is_an_input_error():
    with pytest.raises(InputError) as e:
        make_pairs(4, 7)
    assert e.value.input_name == "pairs" and "6 pairs" in e.value.problem and "at most 6" in e.value.fix
    with pytest.raises(InputError) as e:
        make_pairs(1, 1)
    assert e.value.input_name == "images"


def directional_fd(host, lat, cond, rows, v, pairs, sigma, seed, eps=1e-5):
    """Central difference of each pair's loss along offset v added to every row in ``rows``."""
    def losses(c):
        cfg = GradientConfig(pairs=pairs, batch_size=pairs, seed=seed, normalize=False)
        return collect_gradients(host, lat, c, rows, sigma, cfg).losses

    return (losses(add_to_rows(cond, rows, eps * v)) - losses(add_to_rows(cond, rows, -eps * v))) / (2 * eps)


@pytest.mark.parametrize("rows", [[2], [1, 2, 3]])
def test_gradient_matches_float64_finite_difference(rows):
    host, (lat, cond) = ToyHost(), data()
    gs = collect_gradients(host, lat, cond, rows, 0.8, GradientConfig(pairs=8, batch_size=3, seed=5,
                                                                      normalize=False))
    v = torch.randn(D, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    fd = directional_fd(host, lat, cond, rows, v, 8, 0.8, 5)
    analytic = gs.vectors.double() @ v
    rel = (analytic - fd).abs().max() / fd.abs().max()
    assert rel < 1e-4, float(rel)  # vectors are stored in float32


def test_batching_never_changes_a_pair_and_losses_are_the_mse():
    host, (lat, cond) = ToyHost(), data()
    one = collect_gradients(host, lat, cond, [2], 0.5, GradientConfig(pairs=9, batch_size=1, seed=2))
    many = collect_gradients(host, lat, cond, [2], 0.5, GradientConfig(pairs=9, batch_size=4, seed=2))
    assert torch.equal(one.pairs, many.pairs)
    torch.testing.assert_close(one.vectors, many.vectors, rtol=1e-6, atol=1e-7)
    assert torch.allclose(one.vectors.norm(dim=1), torch.ones(9))
    other = collect_gradients(host, lat, cond, [2], 0.5, GradientConfig(pairs=9, batch_size=4, seed=3))
    assert not torch.equal(other.vectors, many.vectors)
    x = torch.randn(2, 3, 2)
    assert torch.allclose(pair_losses(x, torch.zeros(2, 3, 2)), x.square().mean((1, 2)))


def test_remove_common_subtracts_the_token_mean_before_reading_rows():
    host, (lat, cond) = ToyHost(), data()
    cfg = dict(pairs=4, batch_size=4, seed=1, normalize=False)
    plain = collect_gradients(host, lat, cond, [0, 4], 0.7, GradientConfig(**cfg))
    common = collect_gradients(host, lat, cond, [0, 4], 0.7, GradientConfig(**cfg, remove_common=True))
    # reference: the full per-pair gradient by autograd, one pair at a time
    for p, (a, b) in enumerate(plain.pairs.tolist()):
        leaf = cond.clone().requires_grad_(True)
        noise = pair_noise(SHAPE, 1, p)[None].double()
        x_t = host.noised(lat[a:a + 1], torch.tensor([0.7]), noise)
        (g,) = torch.autograd.grad(pair_losses(host.predict_x0(x_t, torch.tensor([0.7]), leaf), lat[b:b + 1]).sum(),
                                   leaf)
        g = g[0]
        torch.testing.assert_close(plain.vectors[p].double(), g[[0, 4]].sum(0), rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(common.vectors[p].double(), (g - g.mean(0))[[0, 4]].sum(0), rtol=1e-5, atol=1e-8)


def test_bad_inputs_name_their_input():
    host, (lat, cond) = ToyHost(nan=True), data()
    with pytest.raises(InputError) as e:
        collect_gradients(host, lat, cond, [1], 0.5, GradientConfig(pairs=3))
    assert e.value.input_name == "model" and "NaN" in e.value.problem
    with pytest.raises(InputError) as e:
        collect_gradients(ToyHost(), lat, cond, [1], 0.5, GradientConfig(pairs=16))
    assert e.value.input_name == "pairs"
    with pytest.raises(InputError) as e:
        collect_gradients(ToyHost(), lat, cond, [], 0.5, GradientConfig(pairs=3))
    assert e.value.input_name == "word"
    bad = lat.clone()
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(InputError) as e:
        collect_gradients(ToyHost(), bad, cond, [1], 0.5, GradientConfig(pairs=3))
    assert e.value.input_name == "images"


class EmbedHost(ToyHost):
    """ToyHost plus ``embed_image``: a 'decoder' (linear + sigmoid to pixels) and a linear 'image encoder'."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        g = torch.Generator().manual_seed(seed + 100)
        f = int(torch.tensor(SHAPE).prod())
        self.dec = torch.randn(f, 3 * 8 * 8, generator=g, dtype=torch.float64) / f**0.5
        self.enc = torch.randn(3 * 8 * 8, 5, generator=g, dtype=torch.float64) / 8.0
        self.calls: list[bool] = []

    def embed_image(self, latent):
        self.calls.append(torch.is_grad_enabled())
        pixels = torch.sigmoid(latent.flatten(1).double() @ self.dec)
        return pixels @ self.enc + 0.3


def test_clip_image_loss_gradient_matches_float64_finite_difference():
    host, (lat, cond) = EmbedHost(), data()
    cfg = dict(pairs=8, batch_size=3, seed=5, normalize=False, loss_space="clip image")
    seen: list[tuple[int, int]] = []
    gs = collect_gradients(host, lat, cond, [1, 2], 0.8, GradientConfig(**cfg), lambda d, t: seen.append((d, t)))
    assert seen == [(0, 8), (0, 8), (3, 8), (6, 8), (8, 8)]  # target chunks report too (interrupt works there)
    assert gs.config["loss_space"] == "clip image"
    assert host.calls[:2] == [False, False]  # the 6 targets B: embedded once each, in 2 chunks of 3, no graph
    assert host.calls[2:] == [True] * 3  # then one differentiable embedding per pass of pairs

    def losses(c):
        return collect_gradients(host, lat, c, [1, 2], 0.8, GradientConfig(**{**cfg, "batch_size": 8})).losses

    v = torch.randn(D, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    eps = 1e-5
    fd = (losses(add_to_rows(cond, [1, 2], eps * v)) - losses(add_to_rows(cond, [1, 2], -eps * v))) / (2 * eps)
    analytic = gs.vectors.double() @ v
    assert float(analytic.abs().max()) > 0
    rel = (analytic - fd).abs().max() / fd.abs().max()
    assert rel < 1e-2, float(rel)
    # the loss is 2 - 2 cos of the embeddings, and the gradients are not the latent loss's
    for p, (a, b) in enumerate(gs.pairs.tolist()):
        x_t = host.noised(lat[a:a + 1], torch.tensor([0.8]), pair_noise(SHAPE, 5, p)[None].double())
        e = host.embed_image(host.predict_x0(x_t, torch.tensor([0.8]), cond))
        cos = torch.nn.functional.cosine_similarity(e, host.embed_image(lat[b:b + 1]))
        torch.testing.assert_close(gs.losses[p], (2 - 2 * cos)[0], rtol=1e-9, atol=1e-12)
    latent = collect_gradients(host, lat, cond, [1, 2], 0.8, GradientConfig(**{**cfg, "loss_space": "latent"}))
    assert latent.config["loss_space"] == "latent"
    cos = torch.nn.functional.cosine_similarity(latent.vectors, gs.vectors)
    assert float(cos.abs().max()) < 0.99


def test_clip_image_loss_needs_an_embedding_host():
    _, (lat, cond) = ToyHost(), data()
    with pytest.raises(InputError) as e:
        collect_gradients(ToyHost(), lat, cond, [1], 0.5, GradientConfig(pairs=3, loss_space="clip image"))
    assert e.value.input_name == "loss_space" and "encoder" in e.value.fix and "latent" in e.value.fix
    with pytest.raises(InputError) as e:
        collect_gradients(EmbedHost(), lat, cond, [1], 0.5, GradientConfig(pairs=3, loss_space="pixels"))  # type: ignore[arg-type]
    assert e.value.input_name == "loss_space" and "clip image" in e.value.fix
