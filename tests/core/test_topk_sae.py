"""The shared TopK SAE: planted-dictionary recovery, gradients vs autograd, AuxK, files, determinism."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from sliderspace_core.common.errors import InputError
from sliderspace_core.decompose.topk_sae import (
    ELROND_PRESET,
    SAE_CONCEPTS_PRESET,
    TopKSAE,
    TopKSAEConfig,
    density_directions,
    explained_variance,
    load_sae,
    save_sae,
)
from sliderspace_core.decompose.topk_train import DENSE_BELOW, sae_loss_and_grads, train_sae

D, M, K = 32, 64, 4  # input width, planted atoms, atoms per row
CFG = TopKSAEConfig(k=K, n_latents=M, auxk=None, lr=3e-3, batch_size=256, epochs=4, seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


def planted(n: int, seed: int = 0, noise: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows = K-sparse non-negative combinations (weights in [0.5, 1.5]) of M random unit atoms + noise.
    The dictionary depends on nothing but the fixed seed 0; ``seed`` draws the rows."""
    atoms = torch.randn(M, D, generator=torch.Generator().manual_seed(0))
    atoms /= atoms.norm(dim=1, keepdim=True)
    g = torch.Generator().manual_seed(1000 + seed)
    idx = torch.rand(n, M, generator=g).argsort(1)[:, :K]
    codes = torch.zeros(n, M).scatter_(1, idx, torch.rand(n, K, generator=g) + 0.5)
    return codes @ atoms + noise * torch.randn(n, D, generator=g), atoms


def recovery(atoms: torch.Tensor, learned: torch.Tensor, thr: float = 0.9) -> float:
    """Share of planted atoms matched one-to-one (Hungarian, max cos) by a learned atom with cos >= thr."""
    cos = (atoms @ (learned / learned.norm(dim=1, keepdim=True)).T).double().numpy()
    rows, cols = linear_sum_assignment(-cos)
    return float((cos[rows, cols] >= thr).sum() / atoms.shape[0])


@pytest.fixture(scope="module")
def trained() -> tuple[TopKSAE, object, torch.Tensor]:
    torch.set_num_threads(1)
    x, atoms = planted(20_000)
    sae, stats = train_sae(x, CFG)
    return sae, stats, atoms


def test_planted_dictionary_is_recovered(trained):
    sae, stats, atoms = trained
    rec = recovery(atoms, sae.W_dec.detach())
    held_out, _ = planted(4000, seed=1)
    ev = explained_variance(sae, held_out)
    print(f"\n[planted d={D} atoms={M} k={K}] recovery@0.9 {rec:.3f}, train EV {stats.explained_variance:.4f}, "
          f"held-out EV {ev:.4f}, dead {stats.dead_fraction:.3f}, {stats.steps} steps in {stats.seconds:.1f}s")
    assert rec >= 0.9
    assert ev > 0.85 and abs(ev - stats.explained_variance) < 0.03
    assert len(stats.loss) == stats.steps == 4 * math.ceil(20_000 / 256)
    assert stats.loss[-1] < 0.5 * stats.loss[0]
    # the decoder stays unit-norm; codes are k-sparse and non-negative
    assert torch.allclose(sae.W_dec.detach().norm(dim=1), torch.ones(M), atol=1e-5)
    z = sae.encode(held_out[:100])
    assert bool(((z > 0).sum(1) <= K).all()) and bool((z >= 0).all())
    assert torch.allclose(sae.decode(z), sae(held_out[:100]), atol=1e-5)
    assert torch.allclose(sae.decoder_directions().norm(dim=1), torch.ones(M), atol=1e-6)
    # firing density: each planted atom is in K/M of the rows
    assert abs(float(stats.firing_density.sum()) - K) < 0.2


def test_overcomplete_reference_recovers_too(trained):
    """The same data through overcomplete's TopKSAE (its own training loop, tied init as ours)."""
    oc = pytest.importorskip("overcomplete.sae")
    from torch.utils.data import DataLoader, TensorDataset

    x, atoms = planted(20_000)
    width = 2 * M  # at width M overcomplete's loop recovers ~80 %; at 2M both are complete
    torch.manual_seed(0)
    model = oc.TopKSAE(D, nb_concepts=width, top_k=K).untied(bias=True, copy_from_dictionary=True)
    opt = torch.optim.Adam(model.parameters(), lr=CFG.lr)
    loader = DataLoader(TensorDataset(x), batch_size=CFG.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    oc.train_sae(model, loader, lambda a, b, *_: (a - b).square().mean(), opt, nb_epochs=CFG.epochs, monitoring=0)
    model.eval()
    held_out, _ = planted(4000, seed=1)
    with torch.no_grad():
        ev_oc = 1 - float((model(held_out)[2] - held_out).square().sum() / (held_out - held_out.mean(0)).square().sum())
    rec_oc = recovery(atoms, model.get_dictionary().detach())
    ours, _ = train_sae(x, dataclasses.replace(CFG, n_latents=width))
    rec_ours, ev_ours = recovery(atoms, ours.W_dec.detach()), explained_variance(ours, held_out)
    print(f"\n[width {width}] overcomplete: recovery {rec_oc:.3f} EV {ev_oc:.4f}; ours: recovery {rec_ours:.3f} "
          f"EV {ev_ours:.4f}; ours at width {M}: recovery {recovery(atoms, trained[0].W_dec.detach()):.3f}")
    assert rec_oc >= 0.9 and rec_ours >= 0.9
    assert ev_ours > ev_oc - 0.02


def _autograd_loss(sae: TopKSAE, x: torch.Tensor, dead: torch.Tensor | None) -> torch.Tensor:
    """The training loss written plainly, for autograd: dense codes, dense decode."""
    pre = (x - sae.b_pre) @ sae.W_enc.T + sae.b_lat
    vals, idx = pre.topk(sae.k, dim=1)
    z = torch.zeros_like(pre).scatter(1, idx, vals.relu())
    x_hat = z @ sae.W_dec + sae.b_pre
    loss = (x_hat - x).square().sum() / (x - x.mean(0)).square().sum()
    if dead is not None:
        e = (x - x_hat).detach()
        avals, aidx = pre.masked_fill(~dead, -math.inf).topk(sae.config.auxk, dim=1)
        e_hat = torch.zeros_like(pre).scatter(1, aidx, avals.relu()) @ sae.W_dec
        loss = loss + sae.config.auxk_coef * (e_hat - e).square().sum() / (e - e.mean(0)).square().sum()
    return loss


@pytest.mark.parametrize("width", [48, 160])  # k * DENSE_BELOW > 48: dense route; < 160: embedding_bag route
@pytest.mark.parametrize("with_aux", [False, True])
def test_gradients_match_autograd(with_aux, width):
    assert (K * DENSE_BELOW > width) == (width == 48) and (8 * DENSE_BELOW > width) == (width == 48)
    x, _ = planted(300, seed=2)
    cfg = dataclasses.replace(CFG, n_latents=width, auxk=8 if with_aux else None)
    sae = TopKSAE.create(D, cfg)
    with torch.no_grad():
        sae.b_pre.copy_(0.1 * torch.randn(D))
        sae.b_lat.copy_(0.05 * torch.randn(width))
    dead = (torch.arange(width) % 3 == 0) if with_aux else None
    _autograd_loss(sae, x, dead).backward()
    ref = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    sae_loss_and_grads(sae, x, dead)
    for name, p in sae.named_parameters():
        scale = float(ref[name].abs().max())
        assert scale > 0
        assert float((p.grad - ref[name]).abs().max()) <= 1e-4 * scale, name


def test_auxk_revives_dead_latents():
    """Half the latents start with a 100x too small encoder row: they never win the TopK on their own.
    (Width = number of planted atoms, so every revived latent has an atom left to learn.)"""
    x, _ = planted(12_000, seed=3)
    cfg = dataclasses.replace(CFG, epochs=3, auxk=32, dead_steps_threshold=1024)
    dead_frac, ev = {}, {}
    for auxk in (None, 32):
        sae = TopKSAE.create(D, dataclasses.replace(cfg, auxk=auxk))
        with torch.no_grad():
            sae.W_enc[M // 2:] *= 0.01
            sae.b_pre.copy_(x[:4096].mean(0))
        sae, stats = train_sae(x, sae=sae)
        dead_frac[auxk], ev[auxk] = stats.dead_fraction, stats.explained_variance
        if auxk:
            assert len(stats.aux_loss) == stats.steps and stats.aux_loss[-1] < stats.aux_loss[0]
    print(f"\n[AuxK] dead fraction / EV without AuxK {dead_frac[None]:.3f} / {ev[None]:.3f}, "
          f"with AuxK 32 {dead_frac[32]:.3f} / {ev[32]:.3f}")
    assert dead_frac[None] >= 0.45
    assert dead_frac[32] <= 0.1 and ev[32] > ev[None] + 0.1


def test_same_seed_same_weights_streamed_or_not():
    x, _ = planted(3000, seed=4)
    cfg = dataclasses.replace(CFG, epochs=2, auxk=16, dead_steps_threshold=500, shuffle_buffer=1000)
    a, sa = train_sae(list(x.split(700)), cfg)
    b, sb = train_sae(list(x.split(700)), cfg)
    for name, p in a.state_dict().items():
        assert torch.equal(p, b.state_dict()[name]), name
    assert sa.loss == sb.loss
    c, _ = train_sae(list(x.split(700)), dataclasses.replace(cfg, seed=1))
    assert not torch.equal(a.W_dec, c.W_dec)
    # a one-shot generator streams one epoch; the callback sees the steps and may stop the run
    seen: list[tuple[int, int | None]] = []
    one = dataclasses.replace(cfg, epochs=1)
    _, st = train_sae((c for c in x.split(500)), one, progress=lambda s, t, info: seen.append((s, t)),
                      progress_every=2)
    assert st.rows == 3000 and seen[-1] == (st.steps, st.steps)
    with pytest.raises(InputError, match="one-shot"):
        train_sae((c for c in x.split(500)), cfg)

    def stop(step, total, info):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_sae(x, cfg, progress=stop, progress_every=1)


def test_save_load_round_trip_and_bad_files(tmp_path, trained):
    sae = trained[0]
    path = str(tmp_path / "sae.safetensors")
    save_sae(sae, path, metadata={"block": "output_blocks.1.1"})
    back = load_sae(path)
    for name in ("W_enc", "b_lat", "W_dec", "b_pre", "firing_density"):
        assert torch.equal(getattr(back, name), getattr(sae, name)), name
    assert back.config == sae.config and back.metadata == {"block": "output_blocks.1.1"}
    with pytest.raises(InputError, match="already exists"):
        save_sae(sae, path)
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])

    def write(name: str, data: bytes) -> str:
        p = str(tmp_path / name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def with_meta(**changes: str) -> bytes:
        h = json.loads(json.dumps(header))
        h["__metadata__"].update(changes)
        text = json.dumps(h).encode()
        return struct.pack("<Q", len(text)) + text + raw[8 + n:]

    bad = {
        "truncated": raw[: len(raw) - 100],
        "wrong_width": with_meta(n_latents=str(M + 1)),
        "wrong_k": with_meta(config=sae.config.to_json().replace('"k": 4', '"k": 4000')),
        "broken_config": with_meta(config="{not json"),
        "extra_key": with_meta(config=sae.config.to_json().replace("{", '{"zz": 1, ', 1)),
        "foreign": with_meta(format="sliderspace.bank"),
        "pickle": b"\x80\x04\x95" + b"\0" * 64,
    }
    for name, data in bad.items():
        with pytest.raises(InputError):
            load_sae(write(name + ".safetensors", data))
    nan = TopKSAE.from_weights(sae.W_enc.detach(), sae.b_lat.detach(), sae.W_dec.detach() * math.nan,
                               sae.b_pre.detach(), sae.config)
    save_sae(nan, str(tmp_path / "nan.safetensors"))
    with pytest.raises(InputError, match="NaN"):
        load_sae(str(tmp_path / "nan.safetensors"))
    assert sorted(os.listdir(tmp_path)) == sorted(["sae.safetensors", "nan.safetensors"]
                                                  + [k + ".safetensors" for k in bad])


def test_density_directions_rule(trained):
    sae = trained[0]
    dens = torch.zeros(M)
    dens[:5] = torch.tensor([1e-7, 1e-6, 2e-6, 0.5, 1.0])
    dirs, ids = density_directions(sae, dens)
    assert ids.tolist() == [2, 3]  # 1e-7 below, exactly 1e-6 on the open bound, 1.0 at log10 = 0
    assert torch.allclose(dirs, sae.decoder_directions()[[2, 3]])
    _, own = density_directions(sae)  # the SAE's own last-epoch densities: every planted atom fires
    assert len(own) == M
    with pytest.raises(InputError):
        density_directions(sae, torch.zeros(M + 1))


def test_presets_and_bad_config():
    assert (ELROND_PRESET.expansion, ELROND_PRESET.k, ELROND_PRESET.lr, ELROND_PRESET.warmup_steps,
            ELROND_PRESET.epochs, ELROND_PRESET.batch_size, ELROND_PRESET.auxk) == (1.0, 32, 3e-3, 0, 20, 512, None)
    assert SAE_CONCEPTS_PRESET.width(1280) == 5120 and SAE_CONCEPTS_PRESET.auxk == 256
    assert SAE_CONCEPTS_PRESET.batch_size == 4096 and SAE_CONCEPTS_PRESET.epochs == 1
    assert TopKSAEConfig.from_json(SAE_CONCEPTS_PRESET.to_json()) == SAE_CONCEPTS_PRESET
    for bad in (dict(k=0), dict(k=65), dict(lr=-1.0), dict(batch_size=0), dict(auxk=-1), dict(expansion=0.0)):
        with pytest.raises(InputError):
            dataclasses.replace(CFG, **bad).validate(D)
    x, _ = planted(100)
    sae = TopKSAE.create(D, CFG)
    with pytest.raises(InputError, match="width"):
        sae.encode(torch.zeros(3, D + 1))
    with pytest.raises(InputError, match="NaN"):
        train_sae(torch.cat([x, torch.full((1, D), math.nan)]), CFG)
    with pytest.raises(InputError, match="width"):
        train_sae([x, torch.zeros(5, D + 1)], CFG)
