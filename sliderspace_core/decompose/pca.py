"""PCA of embeddings (METHODS §1 step 3): top components, their variances, a fixed sign.

Three routes to the same basis:

- ``exact``: the D x D covariance, summed in float64 from float32 products of row chunks that are
  first shifted by a cheap mean estimate (the first chunk's mean), so ``E[xx^T] - mu mu^T`` never
  cancels in float32; then ``eigh``.
- ``randomized``: a seeded randomized range finder with power iterations, for large D and small K.
- ``fit_pca_streaming``: the exact route fed chunk by chunk in one pass; memory O(D^2), not O(N).

Sign rule: every component is flipped so that its largest-magnitude coordinate is positive (on an
exact tie, the first such coordinate). It depends on the direction only, so it is the same across
runs, devices and row orders.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..common.errors import InputError
from .directions import Directions

PcaMethod = Literal["auto", "exact", "randomized"]
EXACT_MAX_DIM = 4096
"""``auto`` uses the exact covariance up to this embedding size (a 4096^2 float64 matrix is 128 MiB)."""
CHUNK_ROWS = 32768
"""Rows per float32 product; bounds both the temporary memory and the float32 summation length."""
_NORM_EPS = 1e-12


Basis = Directions
"""The PCA result: :class:`Directions` in an image encoder's embedding space (SliderSpace's basis)."""


def fix_signs(components: Tensor) -> Tensor:
    """Flip each row so its largest-magnitude coordinate (first one on a tie) is positive."""
    idx = components.abs().argmax(dim=1, keepdim=True)
    sign = torch.where(components.gather(1, idx) < 0, -1.0, 1.0).to(components.dtype)
    return components * sign


# ----------------------------------------------------------------------------- validation


def _as_matrix(x: Tensor, name: str = "embeddings") -> Tensor:
    if not isinstance(x, Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim != 2:
        raise InputError(name, f"expected a 2-D (samples x features) tensor, got shape {tuple(x.shape)}.",
                         "Pass one embedding per row, e.g. stack them into an (N, D) tensor.")
    if x.shape[1] == 0:
        raise InputError(name, "has 0 features per row.", "Check that the encoder produced embeddings.")
    return x if x.is_floating_point() else x.float()


def _check_rows(n: int) -> None:
    if n < 2:
        raise InputError("embeddings", f"has {n} row(s); PCA needs at least 2 embeddings.",
                         "Embed more samples (the reference uses about 1000 images).")


def _check_k(k: int, n: int, d: int) -> None:
    top = min(n, d)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= top:
        raise InputError("n_components", f"is {k!r}; it must be an integer from 1 to min(number of "
                         f"embeddings, embedding size) = min({n}, {d}) = {top}.",
                         f"Set n_components to at most {top}, or embed more samples.")


def _raise_nonfinite(data: Tensor | None) -> None:
    """Raise for NaN/Inf in ``data``; if it has none (or is None), the non-finite sums were an overflow."""
    if data is not None and not bool(torch.isfinite(data).all()):
        raise InputError("embeddings", "contains NaN or infinite values.",
                         "Find the sample whose embedding failed (e.g. a NaN decode) and drop or redo it.")
    raise InputError("embeddings", "has values so large that their sums of squares overflow.",
                     "Rescale the embeddings (or enable normalize).")


def _inverse_norms(c: Tensor) -> Tensor:
    return torch.linalg.vector_norm(c, dim=1).clamp_min_(_NORM_EPS).reciprocal_()


# ----------------------------------------------------------------------------- exact / streaming


def _add_gram(gram: Tensor, xa: Tensor, syrk: bool | None = None) -> Tensor:
    """``gram += xa^T xa`` (at least its upper triangle, which is all that is read); returns the product.

    On CPU through numpy, whose ``a.T @ a`` is BLAS ``syrk``: half the flops of a matrix product, and
    torch has no ``syrk``. Elsewhere torch products over 4 row panels of the upper triangle (5/8).
    """
    if xa.device.type == "cpu" if syrk is None else syrk:
        a = xa.numpy()
        with np.errstate(all="ignore"):  # NaN/Inf/overflow are reported by the caller, by input name
            prod = torch.from_numpy(a.T @ a)
        gram += prod
        return prod
    d = xa.shape[1]
    edges = [round(i * d / 4) for i in range(5)] if d >= 256 else [0, d]
    prod = torch.zeros(d, d, dtype=xa.dtype, device=xa.device)
    for a0, a1 in zip(edges[:-1], edges[1:], strict=True):
        prod[a0:a1, a0:] = xa[:, a0:a1].T @ xa[:, a0:]
    gram += prod
    return prod


def _eigh(cov: Tensor) -> tuple[Tensor, Tensor]:
    """``eigh`` on one CPU thread. Threads help little (D = 768: 0.10 s vs 0.06 s on 2 idle cores), but
    threaded LAPACK ``eigh`` gets 10-100x slower when another process holds a core (its thousands
    of small parallel steps each end in a barrier)."""
    if cov.device.type != "cpu" or torch.get_num_threads() == 1:
        return torch.linalg.eigh(cov)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(cov)
    finally:
        torch.set_num_threads(threads)


def _top_eigh(cov: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` eigenpairs (ascending, like ``eigh``); on CPU only those are computed (LAPACK evr)."""
    if cov.device.type != "cpu" or k >= cov.shape[0]:
        return _eigh(cov)
    import scipy.linalg

    d = cov.shape[0]
    w, v = scipy.linalg.eigh(cov.numpy(), subset_by_index=[d - k, d - 1], driver="evr")
    return torch.from_numpy(w), torch.from_numpy(v)


class CovarianceAccumulator:
    """Count, sum and second moment of rows about a fixed shift, accumulated in float64.

    Memory is O(D^2 + chunk_rows * D) whatever the number of rows; :meth:`update` accepts chunks of
    any size (they are regrouped into ``chunk_rows`` blocks before each matrix product).
    """

    def __init__(self, normalize: bool = True, chunk_rows: int = CHUNK_ROWS) -> None:
        self.normalize = normalize
        self.chunk_rows = chunk_rows
        self.n_samples = 0
        self._neg_shift: Tensor | None = None
        # (D+1)^2: the shifted rows get a constant 1 appended, so the product also sums the columns
        self._gram: Tensor | None = None
        self._buf: Tensor | None = None
        self._pending = 0

    @property
    def dim(self) -> int | None:
        return None if self._gram is None else self._gram.shape[0] - 1

    def update(self, chunk: Tensor) -> None:
        """Add the rows of an (n, D) chunk (L2-normalised first when ``normalize``)."""
        chunk = _as_matrix(chunk)
        d = chunk.shape[1]
        if self._gram is None:
            self._gram = torch.zeros(d + 1, d + 1, dtype=torch.float64, device=chunk.device)
            self._buf = torch.ones(self.chunk_rows, d + 1, dtype=torch.float32, device=chunk.device)
        elif d != self.dim:
            raise InputError("embeddings", f"a chunk has {d} features but earlier chunks had {self.dim}.",
                             "Feed embeddings from one encoder only.")
        start = 0
        while start < chunk.shape[0]:
            take = min(chunk.shape[0] - start, self.chunk_rows - self._pending)
            self._write(chunk[start:start + take].to(self._buf.device, torch.float32))
            start += take
            if self._pending == self.chunk_rows:
                self._flush()

    def _write(self, c: Tensor) -> None:
        inv = _inverse_norms(c)[:, None] if self.normalize else None
        if self._neg_shift is None:  # any value near the mean will do: the first rows' mean
            self._neg_shift = -(c * inv).mean(0) if inv is not None else -c.mean(0)
        out = self._buf[self._pending:self._pending + c.shape[0], :-1]
        if inv is None:
            torch.add(c, self._neg_shift, out=out)
        else:
            torch.addcmul(self._neg_shift, c, inv, out=out)
        self._pending += c.shape[0]

    def _flush(self) -> None:
        if self._pending == 0:
            return
        xa = self._buf[:self._pending]
        prod = _add_gram(self._gram, xa)
        if not bool(torch.isfinite(prod.diagonal()).all()):  # a NaN/Inf anywhere reaches its column's square
            _raise_nonfinite(xa)
        self.n_samples += self._pending
        self._pending = 0

    def covariance(self) -> tuple[Tensor, Tensor]:
        """``(mean, covariance)`` in float64 of everything added so far (sample covariance, n - 1)."""
        self._flush()
        n = self.n_samples
        _check_rows(n)
        upper = self._gram[:-1, :-1].triu()
        s = self._gram[:-1, -1]
        cov = (upper + upper.triu(1).T - torch.outer(s, s) / n) / (n - 1)
        if not bool(torch.isfinite(cov).all()):
            _raise_nonfinite(None)  # every chunk was finite, so the squares overflowed
        return (s / n - self._neg_shift.double()), cov

    def finish(self, n_components: int, encoder_id: str = "") -> Basis:
        """Top ``n_components`` of the covariance so far, as a :class:`Basis` (method ``exact``)."""
        mean, cov = self.covariance()
        _check_k(n_components, self.n_samples, cov.shape[0])
        evals, evecs = _top_eigh(cov, n_components)
        var = evals.flip(0)[:n_components].clamp_min(0.0)
        comps = fix_signs(evecs.flip(1)[:, :n_components].T)
        return _make_basis(comps, var, cov.diagonal().sum(), mean, self.n_samples, encoder_id,
                           "exact", {"normalize": self.normalize})


def _make_basis(comps: Tensor, var: Tensor, total: Tensor, mean: Tensor, n: int, encoder_id: str,
                method: str, source: dict) -> Basis:
    total = float(total)
    if not total > 0.0:
        raise InputError("embeddings", "has zero variance: all rows are identical.",
                         "Sample more varied images (different seeds) before embedding.")
    var = var.double().cpu()
    return Basis(components=comps.float().cpu().contiguous(), explained_variance=var,
                 explained_variance_ratio=var / total, mean=mean.float().cpu(), n_samples=n,
                 space=encoder_id, method=method, source=source)


# ----------------------------------------------------------------------------- randomized


class _Centered:
    """Row chunks of ``x``, normalised and centred on the fly (never a full copy of ``x``)."""

    def __init__(self, x: Tensor, normalize: bool, chunk_rows: int) -> None:
        self.x, self.normalize, self.chunk_rows = x, normalize, chunk_rows
        self.neg_mean: Tensor | None = None
        self.inv_norms: list[Tensor] = []  # per chunk, filled by the first pass

    def chunks(self) -> Iterator[tuple[slice, Tensor]]:
        for i, start in enumerate(range(0, self.x.shape[0], self.chunk_rows)):
            rows = slice(start, start + self.chunk_rows)
            c = self.x[rows].to(torch.float32)
            if self.normalize:
                if i == len(self.inv_norms):
                    self.inv_norms.append(_inverse_norms(c)[:, None])
                c = c * self.inv_norms[i]
            yield rows, (c if self.neg_mean is None else c + self.neg_mean)

    def fit_mean(self) -> Tensor:
        """Set the mean from one pass (shifted sums, as the exact route); return the total variance."""
        s = ss = shift = None
        for _, c in self.chunks():
            shift = -c.mean(0) if shift is None else shift
            c = c + shift
            colsum = c.sum(0)
            if not bool(torch.isfinite(colsum).all()):
                _raise_nonfinite(c)
            s = colsum.double() if s is None else s + colsum
            ss = (c * c).sum().double() if ss is None else ss + (c * c).sum()
        n = self.x.shape[0]
        self.neg_mean = (shift.double() - s / n).float()
        return (ss - s.dot(s) / n) / (n - 1)

    def times(self, m: Tensor) -> Tensor:
        """``Xc @ m`` for a (D, l) matrix, as (N, l) float32."""
        return torch.cat([c @ m for _, c in self.chunks()])

    def t_times(self, q: Tensor) -> Tensor:
        """``Xc^T @ q`` for an (N, l) matrix, as (D, l), summed in float64 over chunks."""
        out = torch.zeros(self.x.shape[1], q.shape[1], dtype=torch.float64, device=q.device)
        for rows, c in self.chunks():
            out += c.T @ q[rows]
        return out.float()


def _randomized(x: Tensor, k: int, seed: int, normalize: bool, encoder_id: str) -> Basis:
    n, d = x.shape
    data = _Centered(x, normalize, CHUNK_ROWS)
    total = data.fit_mean()
    width = min(n, d, k + max(10, k // 2))
    n_iter = 7 if k < 0.1 * min(n, d) else 4
    gen = torch.Generator(device=x.device).manual_seed(seed)
    y = data.times(torch.randn(d, width, generator=gen, device=x.device))
    for _ in range(n_iter):  # power iterations, re-orthonormalised each half step
        y = data.times(torch.linalg.qr(data.t_times(torch.linalg.qr(y).Q)).Q)
    q = torch.linalg.qr(y).Q
    _, s, vt = torch.linalg.svd(data.t_times(q).double().T, full_matrices=False)
    var = s[:k] ** 2 / (n - 1)
    source = {"normalize": normalize, "seed": seed, "n_iter": n_iter, "n_oversamples": width - k}
    return _make_basis(fix_signs(vt[:k]), var, total, -data.neg_mean, n, encoder_id, "randomized", source)


# ----------------------------------------------------------------------------- public entry points


def choose_method(n_features: int, n_components: int) -> Literal["exact", "randomized"]:
    """What ``method="auto"`` runs: exact up to EXACT_MAX_DIM features or when K is not << D."""
    return "exact" if n_features <= EXACT_MAX_DIM or n_components > n_features // 8 else "randomized"


def fit_pca(x: Tensor, n_components: int, method: PcaMethod = "auto", seed: int = 0,
            normalize: bool = True, encoder_id: str = "") -> Basis:
    """Top ``n_components`` principal components of the rows of ``x`` (N, D).

    ``normalize`` L2-normalises each row first (METHODS: embeddings are compared by direction).
    ``seed`` only matters for ``randomized``; the result's signs follow :func:`fix_signs`.
    """
    x = _as_matrix(x)
    n, d = x.shape
    _check_rows(n)
    _check_k(n_components, n, d)
    if method not in ("auto", "exact", "randomized"):
        raise InputError("method", f"is {method!r}.", "Use 'auto', 'exact' or 'randomized'.")
    chosen = choose_method(d, n_components) if method == "auto" else method
    if chosen == "randomized":
        return _randomized(x, n_components, seed, normalize, encoder_id)
    acc = CovarianceAccumulator(normalize=normalize, chunk_rows=min(CHUNK_ROWS, n))
    acc.update(x)
    basis = acc.finish(n_components, encoder_id)
    basis.source["streamed"] = False
    return basis


def fit_pca_streaming(chunks: Iterable[Tensor], n_components: int, normalize: bool = True,
                      encoder_id: str = "") -> Basis:
    """Exact PCA of the rows of all ``chunks`` in one pass, memory independent of the row count."""
    acc = CovarianceAccumulator(normalize=normalize)
    for chunk in chunks:
        acc.update(chunk)
    basis = acc.finish(n_components, encoder_id)
    basis.source["streamed"] = True
    return basis


def iter_npy_chunks(path: str | Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[Tensor]:
    """Rows of a 2-D float ``.npy`` file, ``chunk_rows`` at a time, read into one reused buffer.

    Plain reads, not ``np.load(mmap_mode=...)``: mapped pages would count towards this process's
    resident memory. Each yielded tensor is a view of the buffer, valid until the next one.
    """
    with open(path, "rb", buffering=0) as f:
        try:  # numpy parses the header with ast.literal_eval: no pickle, no code; damage is a ValueError
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise InputError("path", f"{path}: unsupported .npy version {version}.", "Save it with np.save.")
        except Exception as e:  # noqa: BLE001 - numpy's header parser raises assorted types (even TokenError)
            raise InputError("path", f"{path}: not a readable .npy file ({type(e).__name__}: {str(e)[:120]}).",
                             "Save an (N, D) float16/float32 array with np.save.") from None
        if len(shape) != 2 or fortran or dtype.kind != "f" or not dtype.isnative or min(shape) < 0:
            raise InputError("path", f"{path}: need a 2-D C-order native float array, got shape {shape}, "
                             f"dtype {dtype}, fortran_order={fortran}.",
                             "Save an (N, D) float16/float32 array with np.save.")
        rows, d = shape
        if rows * d * dtype.itemsize > os.fstat(f.fileno()).st_size:
            raise InputError("path", f"{path}: its header declares {rows}x{d} values, more than the file holds.",
                             "Re-save the array.")
        buf = np.empty((min(chunk_rows, rows), d), dtype=dtype)
        for start in range(0, rows, chunk_rows):
            view = buf[:min(chunk_rows, rows - start)]
            mem, got = memoryview(view).cast("B"), 0
            while got < mem.nbytes:
                step = f.readinto(mem[got:])
                if not step:
                    raise InputError("path", f"{path}: file ends before row {rows}.", "Re-save the array.")
                got += step
            yield torch.from_numpy(view)
