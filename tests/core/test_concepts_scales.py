"""SAE Steer's strength units (issue 24 item 5), each against a direct implementation of its paper's formula on
random block activations, the uncond half under ``cfg`` spatial steering, and the lossless SAE file (issue 25
item 6) — old files with text statistics still load."""

from __future__ import annotations

import json

import pytest
import torch

from sliderspace_core.concepts.activations import COND, UNCOND
from sliderspace_core.concepts.sae import ConceptSAE, load_concept_sae, save_concept_sae
from sliderspace_core.concepts.steering import SCALES, Steerer
from sliderspace_core.decompose.topk_sae import TopKSAE, TopKSAEConfig, save_sae

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores

FEATURE_MEAN, BETA_GRID = "feature mean (sdxl-unbox)", "beta over the grid (Tinaz et al.)"
H, W, D, N = 4, 5, 16, 32


def _csae(seed: int = 3) -> ConceptSAE:
    sae = TopKSAE.create(D, TopKSAEConfig(k=4, n_latents=N, seed=seed))
    g = torch.Generator().manual_seed(seed)
    mean = torch.rand(N, generator=g) * 20 + 0.5  # sdxl-unbox means are O(10)
    return ConceptSAE(sae, "middle_block.1", mean, mean / 3)


def _rows(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random block input, residual update Z (norms that differ per location) and output = input + Z."""
    g = torch.Generator().manual_seed(seed)
    block_in = torch.randn(batch, H * W, D, generator=g)
    z = torch.randn(batch, H * W, D, generator=g) * torch.rand(batch, H * W, 1, generator=g).mul(3).add(0.1)
    return block_in, z, block_in + z


def _unit(c: ConceptSAE, f: int) -> torch.Tensor:
    atom = c.sae.W_dec.detach()[f].double()
    return atom / atom.norm()


def test_the_two_units_are_named_choices():
    assert SCALES[0] == FEATURE_MEAN and BETA_GRID in SCALES


def test_feature_mean_is_sdxl_unbox_strength_times_mean_times_unit_atom_everywhere():
    c = _csae()
    feats = {3: 2.0, 9: -1.5}
    block_in, z, out = _rows()
    res = Steerer(c, feats, "global", "both", scale=FEATURE_MEAN).apply(out, [COND, UNCOND], H, W, block_in)
    # sdxl-unbox: output += strength * mean[f] * (decoder column f) at every location
    want = out.double() + sum(s * float(c.feature_mean[f]) * _unit(c, f) for f, s in feats.items())
    torch.testing.assert_close(res.double(), want, rtol=0, atol=1e-5)


def test_beta_over_the_grid_spreads_beta_by_location_norm_and_sums_to_beta():
    c = _csae()
    feats = {3: 8.0, 9: -4.0}
    block_in, z, out = _rows()
    res = Steerer(c, feats, "global", "both", scale=BETA_GRID).apply(out, [COND, UNCOND], H, W, block_in)
    # Tinaz et al.: Z_ij += beta~_ij f_c with beta~_ij = beta * ||Z_ij|| / sum_kl ||Z_kl|| (per image)
    norms = z.double().norm(dim=-1)                                  # (batch, locations)
    spread = norms / norms.sum(dim=1, keepdim=True)
    want = out.double().clone()
    for f, beta in feats.items():
        want += (beta * spread)[..., None] * _unit(c, f)
    torch.testing.assert_close(res.double(), want, rtol=0, atol=1e-5)
    # the edit along feature 3 (atoms are not orthogonal: read it off by least squares) sums to beta
    atoms = torch.stack([_unit(c, 3), _unit(c, 9)], dim=1)           # (D, 2)
    coef = torch.linalg.lstsq(atoms, (res.double() - out.double()).reshape(-1, D).T).solution
    totals = coef.reshape(2, 2, H * W).sum(-1)                        # (feature, batch)
    torch.testing.assert_close(totals, torch.tensor([[8.0, 8.0], [-4.0, -4.0]], dtype=torch.float64),
                               rtol=0, atol=1e-4)


def test_beta_over_the_grid_spatial_is_beta_times_location_norm_inside_zero_outside():
    c = _csae()
    mask = torch.zeros(H, W)
    mask[:2, :3] = 1.0
    mask[3, 4] = 0.5
    block_in, z, out = _rows(batch=1)
    st = Steerer(c, {5: 3.0}, "spatial", "cond", scale=BETA_GRID, mask=mask, suppress_outside=False)
    res = st.apply(out, [COND], H, W, block_in)
    # Tinaz et al. (spatial): Z_ij += beta * ||Z_ij|| * f_c inside the region, nothing outside
    m = mask.reshape(-1).double()
    want = out.double() + (3.0 * z.double().norm(dim=-1) * m)[..., None] * _unit(c, 5)
    torch.testing.assert_close(res.double(), want, rtol=0, atol=1e-5)
    assert torch.equal(res[0, m == 0], out[0, m == 0])


def test_cfg_spatial_leaves_the_uncond_half_unchanged_outside_the_mask():
    """sdxl-unbox under CFG: add on the cond half, subtract ONLY the added vector on the uncond half. The
    suppression of the feature outside the mask belongs to the cond half; flipped onto the uncond half it would
    ADD the feature there."""
    c = _csae()
    mask = torch.zeros(H, W)
    mask[:, :2] = 1.0
    g = torch.Generator().manual_seed(7)
    block_in = torch.randn(2, H * W, D, generator=g)
    z = torch.randn(2, H * W, D, generator=g) + 8 * c.sae.decoder_directions().detach()[5]  # feature 5 fires
    out = block_in + z
    inside = mask.reshape(-1) > 0
    assert bool((c.sae.encode(z)[0, ~inside, 5] > 0).all())  # so suppression has something to remove
    for scale in (FEATURE_MEAN, BETA_GRID):
        st = Steerer(c, {5: 3.0}, "spatial", "cfg", scale=scale, mask=mask, suppress_outside=True)
        res = st.apply(out, [UNCOND, COND], H, W, block_in)
        assert torch.equal(res[0, ~inside], out[0, ~inside]), scale  # uncond rows outside the mask unchanged
        cond_only = Steerer(c, {5: 3.0}, "spatial", "cond", scale=scale, mask=mask).apply(
            out[1:], [COND], H, W, block_in[1:])
        assert torch.equal(res[1:], cond_only), scale                 # the cond half: add inside, suppress outside
        added = cond_only[0, inside] - out[1, inside]
        if scale == FEATURE_MEAN:  # the same vector comes off the uncond half inside the mask
            torch.testing.assert_close(res[0, inside], out[0, inside] - added)


def test_steering_is_bitwise_equal_after_a_file_round_trip(tmp_path):
    c = _csae()
    p = str(tmp_path / "c.safetensors")
    save_concept_sae(c, p)
    back = load_concept_sae(p)
    assert torch.equal(back.feature_mean, c.feature_mean) and torch.equal(back.feature_std, c.feature_std)
    block_in, z, out = _rows()
    for scale in SCALES:
        a = Steerer(c, {3: 8.0, 9: -4.0}, "global", "cfg", scale=scale).apply(out, [UNCOND, COND], H, W, block_in)
        b = Steerer(back, {3: 8.0, 9: -4.0}, "global", "cfg", scale=scale).apply(out, [UNCOND, COND], H, W, block_in)
        assert torch.equal(a, b), scale


def test_files_of_the_previous_version_with_text_statistics_still_load(tmp_path):
    """The previous version stored the statistics as 6-digit JSON text in the header; those files load as before."""
    c = _csae()
    p = str(tmp_path / "old.safetensors")
    text = {key: json.dumps([float(f"{v:.6g}") for v in t.tolist()])
            for key, t in (("concepts.feature_mean", c.feature_mean), ("concepts.feature_std", c.feature_std))}
    save_sae(c.sae, p, metadata={"concepts.block": c.block, "concepts.source": "trained", **text})
    back = load_concept_sae(p)
    assert back.block == c.block and torch.equal(back.sae.W_dec, c.sae.W_dec)
    torch.testing.assert_close(back.feature_mean, c.feature_mean, rtol=1e-5, atol=0)
    assert not torch.equal(back.feature_mean, c.feature_mean)  # what the old text lost
