"""PCA against numpy SVD and sklearn on data with planted, well-separated structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from sliderspace_core.common.errors import InputError
from sliderspace_core.decompose.pca import (
    Basis,
    CovarianceAccumulator,
    _add_gram,
    fit_pca,
    fit_pca_streaming,
    fix_signs,
    iter_npy_chunks,
)

K = 8


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # tiny problems: threads only add barrier waits, which a busy machine turns into seconds
    with threadpool_limits(1):
        yield


def planted(n: int = 4000, d: int = 96, k: int = K, seed: int = 0, offset: float = 1.0) -> torch.Tensor:
    """Rows = offset * m + sum_j z_j s_j u_j + noise, with variances s_j^2 halving from one j to the next."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64)).Q
    s = 0.5 * 0.5 ** (torch.arange(k, dtype=torch.float64) / 2)
    m = torch.randn(d, generator=g, dtype=torch.float64)
    x = offset * m / m.norm() + (torch.randn(n, k, generator=g, dtype=torch.float64) * s) @ u.T
    return (x + 0.003 * torch.randn(n, d, generator=g, dtype=torch.float64)).float()


def svd_reference(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    xc = x.astype(np.float64) - x.astype(np.float64).mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    return vt[:k], s[:k] ** 2 / (len(x) - 1)


def fit(x: torch.Tensor, how: str, **kw) -> Basis:
    if how == "streaming":
        return fit_pca_streaming(iter(x.split(333)), K, **kw)
    return fit_pca(x, K, method=how, **kw)


def assert_matches(b: Basis, comps: np.ndarray, var: np.ndarray) -> None:
    cos = np.abs((b.components.double().numpy() * comps).sum(1))
    assert cos.min() > 0.999, cos
    np.testing.assert_allclose(b.explained_variance.numpy(), var, rtol=1e-4)


@pytest.mark.parametrize("how", ["exact", "randomized", "streaming"])
def test_matches_svd_and_sklearn(how: str) -> None:
    x = planted()
    b = fit(x, how, normalize=False)
    assert_matches(b, *svd_reference(x.numpy(), K))
    sk = PCA(K).fit(x.double().numpy())  # float64 input: sklearn's float32 covariance would cancel
    assert_matches(b, sk.components_, sk.explained_variance_)
    np.testing.assert_allclose(b.explained_variance_ratio.numpy(), sk.explained_variance_ratio_, rtol=1e-4)
    np.testing.assert_allclose(b.mean.numpy(), sk.mean_, atol=1e-6)
    assert b.components.shape == (K, 96) and b.components.dtype == torch.float32
    torch.testing.assert_close(b.components @ b.components.T, torch.eye(K), atol=1e-5, rtol=0)
    assert b.n_samples == 4000 and b.source["normalize"] is False
    assert b.method == ("exact" if how == "streaming" else how)


def test_normalize_equals_sklearn_on_normalised_rows() -> None:
    x = planted(offset=3.0)
    xn = (x.double() / x.double().norm(dim=1, keepdim=True)).numpy()
    sk = PCA(K).fit(xn)
    for how in ("exact", "randomized", "streaming"):
        b = fit(x, how)
        assert_matches(b, sk.components_, sk.explained_variance_)
        np.testing.assert_allclose(b.mean.numpy(), sk.mean_, atol=1e-6)


def test_exact_beats_float32_cancellation() -> None:
    # A large shared offset (like CLIP embeddings of one concept): the shift keeps float32 exact.
    x = planted(offset=30.0)
    assert_matches(fit_pca(x, K, method="exact", normalize=False), *svd_reference(x.numpy(), K))


def test_sign_rule_is_stable_across_runs_and_row_order() -> None:
    x = planted(n=2000, seed=3)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))
    for how in ("exact", "randomized", "streaming"):
        a, b, c = fit(x, how), fit(x, how), fit(x[perm], how)
        assert torch.equal(a.components, b.components)
        torch.testing.assert_close(a.components, c.components, atol=1e-4, rtol=0)
        top = a.components.gather(1, a.components.abs().argmax(1, keepdim=True))
        assert (top > 0).all()


def test_fix_signs_rule() -> None:
    v = torch.tensor([[0.1, -0.9, 0.3], [0.5, 0.2, -0.5], [-0.2, 0.0, 0.1]])
    out = fix_signs(v)
    torch.testing.assert_close(out, torch.tensor([[-0.1, 0.9, -0.3], [0.5, 0.2, -0.5], [0.2, 0.0, -0.1]]))
    torch.testing.assert_close(fix_signs(-v), out)


def test_chunking_does_not_change_the_result() -> None:
    x = planted(n=3000, d=300)
    a = fit_pca(x, K, method="exact")
    acc = CovarianceAccumulator(chunk_rows=1000)
    for piece in x.split(7 * 41):
        acc.update(piece)
    b = acc.finish(K)
    torch.testing.assert_close(a.components, b.components, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.explained_variance, b.explained_variance, rtol=1e-6, atol=0)


@pytest.mark.parametrize("syrk", [True, False])
def test_gram_paths_agree_on_the_upper_triangle(syrk: bool) -> None:
    # CPU uses numpy's syrk; other devices the torch panel products, exercised here on CPU
    xa = torch.randn(300, 257, generator=torch.Generator().manual_seed(0))
    gram = torch.ones(257, 257, dtype=torch.float64)
    _add_gram(gram, xa, syrk=syrk)
    want = xa.double().T @ xa.double() + 1
    torch.testing.assert_close(gram.triu(), want.triu(), rtol=1e-5, atol=1e-4)


def test_npy_chunks_and_streaming_from_disk(tmp_path) -> None:
    x = planted(n=2500).half()
    path = tmp_path / "emb.npy"
    np.save(path, x.numpy())
    got = torch.cat([c.clone() for c in iter_npy_chunks(path, chunk_rows=1000)])
    assert torch.equal(got, x)
    b = fit_pca_streaming(iter_npy_chunks(path, chunk_rows=1000), K)
    torch.testing.assert_close(b.components, fit_pca(x.float(), K).components, atol=1e-5, rtol=0)


def test_npy_rejects_wrong_layout(tmp_path) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros((4, 3, 2), np.float32))
    with pytest.raises(InputError, match="'path'"):
        next(iter_npy_chunks(path))


def test_basis_round_trips_through_safetensors(tmp_path) -> None:
    b = fit_pca(planted(n=500), K, encoder_id="tinyclip-vit-40m")
    tensors, meta = b.to_state()
    save_file(tensors, tmp_path / "b.safetensors", metadata=meta)
    with safe_open(tmp_path / "b.safetensors", "pt") as f:
        c = Basis.from_state({k: f.get_tensor(k) for k in f.keys()}, f.metadata())
    assert c.encoder_id == "tinyclip-vit-40m" and c.n_samples == 500 and c.source == b.source
    for name in ("components", "explained_variance", "explained_variance_ratio", "mean"):
        assert torch.equal(getattr(b, name), getattr(c, name))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("how", ["exact", "randomized", "streaming"])
def test_nonfinite_input_names_embeddings(bad: float, how: str) -> None:
    x = planted(n=600)
    x[417, 5] = bad
    with pytest.raises(InputError, match="input 'embeddings'.*NaN or infinite"):
        fit(x, how)


def test_overflow_is_not_called_nan() -> None:
    x = planted(n=100) * 1e20  # finite in float32, but the squares are not
    with pytest.raises(InputError, match="input 'embeddings'.*overflow"):
        fit_pca(x, 2, normalize=False)


def test_too_few_rows_and_empty() -> None:
    with pytest.raises(InputError, match="input 'embeddings'.*0 row"):
        fit_pca(torch.zeros(0, 16), 1)
    with pytest.raises(InputError, match="input 'embeddings'.*1 row"):
        fit_pca(torch.ones(1, 16), 1)
    with pytest.raises(InputError, match="input 'embeddings'.*0 row"):
        fit_pca_streaming(iter([]), 1)


def test_bad_shapes() -> None:
    with pytest.raises(InputError, match="input 'embeddings'.*2-D"):
        fit_pca(torch.zeros(10), 1)
    acc = CovarianceAccumulator()
    acc.update(torch.randn(5, 8))
    with pytest.raises(InputError, match="input 'embeddings'.*7 features"):
        acc.update(torch.randn(5, 7))


@pytest.mark.parametrize("k", [0, 51, 2.5])
def test_n_components_out_of_range(k) -> None:
    with pytest.raises(InputError, match=r"input 'n_components'.*min\(50, 64\) = 50"):
        fit_pca(torch.randn(50, 64), k)


def test_streaming_checks_n_components_at_the_end() -> None:
    with pytest.raises(InputError, match="input 'n_components'"):
        fit_pca_streaming(iter([torch.randn(3, 8), torch.randn(2, 8)]), 6)


def test_zero_variance() -> None:
    with pytest.raises(InputError, match="zero variance"):
        fit_pca(torch.ones(20, 8), 2)
