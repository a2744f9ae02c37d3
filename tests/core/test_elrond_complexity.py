"""ELROND concept complexity: LID on planted subspaces, the 95 % and gap counts, subspace overlap."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

from sliderspace_core.common.errors import InputError
from sliderspace_core.elrond.complexity import (
    concept_complexity,
    cumulative_count,
    explained_variance_ratios,
    lid_count,
    lid_stability_curve,
    spectral_gap_count,
    subspace_overlap,
)

N, D = 4000, 256


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # numpy's SVD reference too: threads only add waits on a shared box
        yield
    torch.set_num_threads(threads)


def planted(r: int, noise_share: float, n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows = offset + r-dim Gaussian in a random subspace (variances 1..1.5) + isotropic noise carrying
    ``noise_share`` of the total variance. Returns (rows, the subspace's orthonormal basis (r, D))."""
    g = torch.Generator().manual_seed(seed + 17 * r)
    u = torch.linalg.qr(torch.randn(D, r, generator=g, dtype=torch.float64)).Q.T
    var = torch.linspace(1.0, 1.5, r, dtype=torch.float64)
    noise_var = var.sum() * noise_share / (1 - noise_share) / D
    x = (torch.randn(n, r, generator=g, dtype=torch.float64) * var.sqrt()) @ u
    x += noise_var.sqrt() * torch.randn(n, D, generator=g, dtype=torch.float64)
    return (x + 3.0 * torch.randn(D, generator=g, dtype=torch.float64)).float(), u


def numpy_ratios(x: torch.Tensor, normalize: bool) -> np.ndarray:
    a = x.double().numpy()
    if normalize:
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
    s = np.linalg.svd(a - a.mean(0), compute_uv=False)
    return s**2 / (s**2).sum()


@pytest.mark.parametrize("r", [3, 8, 20])
@pytest.mark.parametrize("normalize", [False, True])
def test_lid_of_planted_subspace_half_noise(r, normalize):
    """Half the variance is isotropic noise: the LID rule still counts r; the 95 % count cannot."""
    x, _ = planted(r, noise_share=0.5)
    rep = concept_complexity(x, normalize=normalize)
    ref = numpy_ratios(x, normalize)
    print(f"\n[r={r} normalize={normalize}] LID {rep.lid}, 95% {rep.n95}, gap {rep.gap}; ratio_r "
          f"{rep.ratios[r - 1]:.4f}, ratio_(r+1) {rep.ratios[r]:.4f}, threshold {rep.threshold:.4f}")
    np.testing.assert_allclose(rep.ratios[: min(N, D)].numpy(), ref[:D], atol=1e-7)
    assert abs(rep.lid - r) <= 1
    assert rep.gap == r
    assert rep.n95 > 2 * r  # noise spread over all D directions needs many components to reach 95 %
    assert abs(float(rep.ratios.sum()) - 1.0) < 1e-9 and bool((rep.ratios[:-1] >= rep.ratios[1:]).all())


@pytest.mark.parametrize("r", [3, 8, 20])
def test_all_three_agree_on_clean_subspace(r):
    """Noise 1 % of the variance: LID and gap find r; the 95 % count finds r, or r - 1 when the smallest
    planted component holds less than the last 5 %."""
    x, _ = planted(r, noise_share=0.01)
    rep = concept_complexity(x)
    assert rep.lid == r and rep.gap == r
    assert r - 1 <= rep.n95 <= r


def test_estimators_on_hand_made_spectra():
    ratios = torch.tensor([0.4, 0.3, 0.2, 0.05, 0.03, 0.02], dtype=torch.float64)
    assert lid_count(ratios, n_samples=1000, c=2.5) == 0  # D = 6: threshold 2.5 / 6 = 0.417
    assert lid_count(ratios, n_samples=1000, c=0.5) == 3  # 0.5 / 6 = 0.083
    assert lid_count(ratios, n_samples=3, c=1.0) == 1  # min(N, D) = 3: threshold 1 / 3
    assert cumulative_count(ratios, 0.95) == 4 and cumulative_count(ratios, 0.9) == 3
    assert cumulative_count(ratios, 1.0) == 6
    assert spectral_gap_count(ratios) == 3  # 0.2 -> 0.05 is the largest drop
    assert spectral_gap_count(ratios, n_samples=3) == 1  # rank <= 2: only 0.4 -> 0.3 is considered


def test_stability_curve_nested_prefixes():
    x, _ = planted(8, noise_share=0.5)
    curve = lid_stability_curve(x, sizes=[250, 500, 1000, 2000, 4000], seed=3)
    assert curve.sizes == [250, 500, 1000, 2000, 4000]
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(3))
    for s, lid in zip(curve.sizes, curve.lid, strict=True):
        assert lid == concept_complexity(x[perm[:s]]).lid
    assert all(abs(v - 8) <= 1 for v in curve.lid[2:])
    assert lid_stability_curve(x, sizes=[500, 4000], seed=3).lid == [curve.lid[1], curve.lid[-1]]
    assert lid_stability_curve(x[:100]).sizes == [6, 12, 25, 50, 100]
    with pytest.raises(InputError, match="sizes"):
        lid_stability_curve(x, sizes=[10, N + 1])


def test_subspace_overlap_against_numpy():
    g = torch.Generator().manual_seed(5)
    q = torch.linalg.qr(torch.randn(64, 24, generator=g, dtype=torch.float64)).Q.T  # 24 orthonormal rows
    a, b_orth = q[:6], q[6:16]
    assert subspace_overlap(a, a) == pytest.approx(1.0, abs=1e-12)
    assert subspace_overlap(a, b_orth) == pytest.approx(0.0, abs=1e-12)
    assert subspace_overlap(a, q[:16]) == pytest.approx(1.0, abs=1e-12)  # span(A) inside span(B)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        va = np.linalg.qr(rng.standard_normal((64, 5)))[0].T
        vb = np.linalg.qr(rng.standard_normal((64, 9)))[0].T
        ref = np.linalg.norm(va @ vb.T, "fro") ** 2 / 5
        angles = scipy.linalg.subspace_angles(va.T, vb.T)  # mean cos^2 of the principal angles
        assert ref == pytest.approx(np.mean(np.cos(angles) ** 2), abs=1e-10)
        assert subspace_overlap(torch.from_numpy(va), torch.from_numpy(vb)) == pytest.approx(ref, abs=1e-10)
        skewed = torch.from_numpy(rng.standard_normal((5, 5)) @ va)  # same span, not orthonormal
        with pytest.raises(InputError, match="orthonormal"):
            subspace_overlap(skewed, torch.from_numpy(vb))
        assert subspace_overlap(skewed, torch.from_numpy(vb), orthonormalize=True) == pytest.approx(ref, abs=1e-8)
    with pytest.raises(InputError, match="width"):
        subspace_overlap(a, torch.eye(32, dtype=torch.float64)[:3])


def test_pca_directions_overlap_planted_subspace():
    """The top-r PCA directions of the planted gradients span the planted subspace (overlap ~ 1)."""
    from sliderspace_core.decompose.pca import fit_pca

    x, u = planted(8, noise_share=0.5)
    basis = fit_pca(x, 8, normalize=False)
    assert subspace_overlap(basis.components, u.float(), atol=1e-4) > 0.98
    other, _ = planted(8, noise_share=0.5, seed=1)
    assert subspace_overlap(fit_pca(other, 8, normalize=False).components, u.float(), atol=1e-4) < 0.2


def test_bad_gradients():
    for bad, match in ((torch.zeros(5), "matrix"), (torch.zeros(1, 8), "at least 2"),
                       (torch.full((4, 8), float("nan")), "NaN"), (torch.ones(4, 8), "zero variance")):
        with pytest.raises(InputError, match=match):
            explained_variance_ratios(bad)
