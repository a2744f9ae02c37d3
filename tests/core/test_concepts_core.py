"""SAE concepts core: activation shards with provenance, subsampling, stats, concept maps, steering math."""

from __future__ import annotations

import os

import pytest
import torch

from sliderspace_core.common.errors import InputError
from sliderspace_core.concepts.activations import (
    COND,
    UNCOND,
    ActivationWriter,
    load_activation_set,
    subsample_positions,
)
from sliderspace_core.concepts.maps import concept_maps, heatmap_grid
from sliderspace_core.concepts.sae import ConceptSAE, feature_stats, load_concept_sae, save_concept_sae
from sliderspace_core.concepts.steering import Steerer, parse_features, resize_mask
from sliderspace_core.decompose.topk_sae import TopKSAE, TopKSAEConfig, save_sae
from sliderspace_core.decompose.topk_train import train_sae

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


def _planted(n_rows=6000, d=16, atoms=24, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(atoms, d, generator=g)
    D /= D.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(atoms, generator=g)[:k] for _ in range(n_rows)])
    vals = torch.rand(n_rows, k, generator=g) * 2 + 0.5
    x = torch.zeros(n_rows, atoms).scatter_(1, idx, vals) @ D
    return x, D


def _csae(d=16, n=32, seed=3) -> ConceptSAE:
    sae = TopKSAE.create(d, TopKSAEConfig(k=4, n_latents=n, seed=seed))
    mean = torch.rand(n, generator=torch.Generator().manual_seed(seed)) + 0.5
    return ConceptSAE(sae, "middle_block.1", mean, mean / 4)


def test_subsample_is_seeded_distinct_and_salted():
    a = subsample_positions(100, 10, 7, 1, 2)
    assert torch.equal(a, subsample_positions(100, 10, 7, 1, 2))
    assert len(set(a.tolist())) == 10 and torch.equal(a, a.sort().values)
    assert not torch.equal(a, subsample_positions(100, 10, 7, 1, 3))
    assert not torch.equal(a, subsample_positions(100, 10, 8, 1, 2))
    assert torch.equal(subsample_positions(5, 0, 0), torch.arange(5))
    assert torch.equal(subsample_positions(5, 9, 0), torch.arange(5))


def test_shards_round_trip_with_provenance(tmp_path):
    w = ActivationWriter(str(tmp_path / "acts"), "middle_block.1", 8, 4, 4, shard_rows=40, dtype=torch.float32,
                         meta={"family": "SD15"})
    written = []
    for sample in range(3):
        for cond in (COND, UNCOND):
            rows = torch.randn(16, 8)
            pos = torch.arange(16)
            w.add(rows, 14.6 - sample, cond, sample, pos)
            written.append((rows, sample, cond))
    s = w.close()
    assert s.rows == 96 and len(s.shards) == 2  # flushed once 40 rows are held: 48 + 48
    again = load_activation_set(s.folder)
    assert (again.block, again.d, again.height, again.width, again.rows) == ("middle_block.1", 8, 4, 4, 96)
    assert again.meta == {"family": "SD15"}
    rows = torch.cat(list(again))
    assert torch.equal(rows, torch.cat([r for r, _, _ in written]))
    prov = again.provenance()
    assert prov["cond"].tolist() == sum([[c] * 16 for _, _, c in written], [])
    assert prov["sample"].tolist() == sum([[s] * 16 for _, s, _ in written], [])
    assert prov["sigma"][0].item() == pytest.approx(14.6)
    assert list(again) and list(again)  # re-iterable (one pass per epoch)
    with pytest.raises(InputError, match="already holds"):
        ActivationWriter(s.folder, "middle_block.1", 8, 4, 4)
    with pytest.raises(InputError, match="no rows"):
        ActivationWriter(str(tmp_path / "empty"), "b", 8, 4, 4).close()
    with open(os.path.join(tmp_path, "acts", "shard_00003.safetensors"), "wb") as f:
        f.write(b"\x80\x04junk")
    with pytest.raises(InputError, match="pickle"):
        load_activation_set(s.folder)


def test_train_from_shards_and_feature_stats(tmp_path):
    x, D = _planted()
    w = ActivationWriter(str(tmp_path / "a"), "input_blocks.8.1", 16, 10, 10, shard_rows=1000, dtype=torch.float32)
    for i, chunk in enumerate(x.split(100)):
        w.add(chunk, 1.0, COND, i, torch.arange(100))
    s = w.close()
    cfg = TopKSAEConfig(k=3, n_latents=48, lr=3e-3, batch_size=256, epochs=8, auxk=16, dead_steps_threshold=2000,
                        seed=1)
    sae, stats = train_sae(s, cfg)
    assert stats.explained_variance > 0.6 and stats.rows == 8 * 6000
    same, _ = train_sae(list(x.split(1000)), cfg)  # the shards hold exactly these chunks, in order
    assert torch.equal(same.W_dec, sae.W_dec) and torch.equal(same.b_pre, sae.b_pre)
    mean, std = feature_stats(sae, s)
    fires = sae.firing_density > 0
    assert bool((mean[fires] > 0).all()) and bool((mean[~fires] == 0).all()) and bool((std >= 0).all())
    # mean over the rows where a feature fires, checked against a direct computation for one feature
    z = sae.encode(x).detach()
    f = int(sae.firing_density.argmax())
    assert float(mean[f]) == pytest.approx(float(z[:, f][z[:, f] > 0].mean()), rel=1e-4)


def test_concept_sae_file_round_trip_and_refusals(tmp_path):
    c = _csae()
    p = str(tmp_path / "c.safetensors")
    save_concept_sae(c, p)
    back = load_concept_sae(p)
    assert back.block == c.block and back.source == "trained"
    assert torch.allclose(back.feature_mean, c.feature_mean, rtol=1e-5)
    assert torch.equal(back.sae.W_dec, c.sae.W_dec)
    plain = str(tmp_path / "plain.safetensors")
    save_sae(c.sae, plain)
    with pytest.raises(InputError, match="names no denoiser block"):
        load_concept_sae(plain)


def test_concept_maps_rank_by_mass_and_draw():
    c = _csae()
    sae = c.sae
    h, w = 6, 5
    rows = torch.zeros(h * w, 16) + sae.b_pre
    # feature 7 strongly in the left column, feature 2 weakly everywhere
    d = sae.decoder_directions()
    left = torch.arange(h * w) % w == 0
    rows[left] += 5 * d[7]
    rows += 0.3 * d[2]
    cm = concept_maps(sae, rows, h, w, top=3)
    z = sae.encode(rows).detach()
    mass = z.sum(0)
    assert cm.ids == mass.topk(3).indices.tolist()
    assert cm.maps.shape == (3, h, w)
    j = cm.ids.index(7) if 7 in cm.ids else None
    if j is not None:
        assert torch.equal(cm.maps[j].reshape(-1) > 0, z[:, 7] > 0)
    img = heatmap_grid(cm)
    assert img.ndim == 4 and img.shape[-1] == 3 and 0 <= float(img.min()) and float(img.max()) <= 1
    over = heatmap_grid(cm, image=torch.rand(60, 50, 3))
    assert over.shape[1] > img.shape[1] * 0 and over.shape[2] > 50
    assert "feature" in cm.text()
    with pytest.raises(InputError, match="grid"):
        concept_maps(sae, rows[:-1], h, w)


def test_parse_features():
    assert parse_features("3:8, 5:-2; 7:0", 10) == {3: 8.0, 5: -2.0}
    assert parse_features("", 10) == {}
    for bad in ("3", "11:1", "3:x", "3:1, 3:2"):
        with pytest.raises(InputError) as e:
            parse_features(bad, 10)
        assert e.value.input_name == "features"


def test_resize_mask_area_average():
    m = torch.zeros(8, 8)
    m[:4, :4] = 1
    r = resize_mask(m, 2, 2)
    assert r.tolist() == [1.0, 0.0, 0.0, 0.0]
    r = resize_mask(m[None], 3, 3)
    assert r.shape == (9,) and float(r[0]) == 1.0 and 0 < float(r[1]) < 1 and float(r[8]) == 0.0
    with pytest.raises(InputError):
        resize_mask(torch.zeros(2, 2, 2, 2), 2, 2)


def test_global_steer_adds_scaled_directions_on_cond_rows_only():
    c = _csae()
    st = Steerer(c, {3: 2.0, 9: -1.0}, "global", "cond")
    d = c.sae.decoder_directions()
    want = 2.0 * c.feature_mean[3] * d[3] - 1.0 * c.feature_mean[9] * d[9]
    out = torch.randn(4, 6, 16)  # chunks [uncond, cond] of 2 rows each
    res = st.apply(out, [UNCOND, COND], 2, 3)
    assert torch.equal(res[:2], out[:2])
    torch.testing.assert_close(res[2:], out[2:] + want)
    both = Steerer(c, {3: 2.0, 9: -1.0}, "global", "both").apply(out, [UNCOND, COND], 2, 3)
    torch.testing.assert_close(both[:2], out[:2] + want)
    cfg = Steerer(c, {3: 2.0, 9: -1.0}, "global", "cfg").apply(out, [UNCOND, COND], 2, 3)
    torch.testing.assert_close(cfg[:2], out[:2] - want)
    absolute = Steerer(c, {3: 2.0}, "global", "cond", scale="absolute").apply(out, [COND], 2, 3)
    torch.testing.assert_close(absolute, out + 2.0 * d[3])
    assert not Steerer(c, {}, "global").active
    with pytest.raises(InputError, match="width"):
        st.apply(torch.randn(1, 6, 8), [COND], 2, 3)


def test_spatial_steer_adds_inside_and_suppresses_outside():
    c = _csae()
    sae = c.sae
    mask = torch.zeros(2, 3)
    mask[0, 0] = 1.0
    st = Steerer(c, {5: 3.0}, "spatial", "cond", mask=mask)
    block_in = torch.randn(1, 6, 16)
    delta = torch.randn(1, 6, 16) + 4 * sae.decoder_directions()[5]
    out = block_in + delta
    res = st.apply(out, [COND], 2, 3, block_in=block_in)
    z5 = sae.encode(delta)[0, :, 5].detach()
    add = 3.0 * c.feature_mean[5] * sae.decoder_directions()[5]
    torch.testing.assert_close(res[0, 0], out[0, 0] + add)
    for j in range(1, 6):
        torch.testing.assert_close(res[0, j], out[0, j] - z5[j] * sae.W_dec[5].detach())
    # after suppression the feature no longer fires outside the mask
    z_after = sae.encode(res - block_in)[0, 1:, 5].detach()
    assert float(z5[1:].max()) > 1.0 and float(z_after.max()) < 0.05 * float(z5[1:].max())
    assert not Steerer(c, {5: 3.0}, "spatial", mask=torch.zeros(2, 3)).active
    with pytest.raises(InputError, match="mask"):
        Steerer(c, {5: 3.0}, "spatial")


def test_an_aborted_collection_leaves_no_partial_set(tmp_path):
    folder = tmp_path / "acts_00001"
    w = ActivationWriter(str(folder), "middle_block.1", 4, 2, 2, shard_rows=2, dtype=torch.float32)
    for s in range(3):
        w.add(torch.randn(2, 4), sigma=1.0, cond=0, sample=s, positions=torch.arange(2))
    assert len(os.listdir(folder)) == 3  # three shards were flushed before the "interrupt"
    w.abort()
    assert not folder.exists()
    kept = tmp_path / "existing"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    w = ActivationWriter(str(kept), "b", 4, 2, 2, shard_rows=1, dtype=torch.float32)
    w.add(torch.randn(1, 4), sigma=1.0, cond=0, sample=0, positions=torch.arange(1))
    w.abort()
    assert sorted(os.listdir(kept)) == ["notes.txt"]  # only what the writer wrote is removed


def test_sae_training_checks_for_an_interrupt_before_every_step():
    x, _ = _planted(n_rows=400)
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt("interrupted")

    with pytest.raises(KeyboardInterrupt):
        train_sae(x, TopKSAEConfig(k=3, n_latents=32, batch_size=20, epochs=50, auxk=None), check=check)
    assert len(calls) == 7  # the 7th step never ran: a progress interval (~200 steps here) is not waited for
