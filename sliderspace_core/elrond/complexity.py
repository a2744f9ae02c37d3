"""Concept complexity from ELROND gradients (METHODS §2.6): the PCA spectrum and three dimension counts.

Gradients are rows g_i in R^D (one per image pair), optionally L2-normalised per row (``normalize``:
gradient norms vary ~50x across timesteps). The spectrum is the eigenvalues of their sample covariance
(rows centred: PCA), computed exactly in float64 with :class:`sliderspace_core.decompose.pca.CovarianceAccumulator`
(the same chunked, shift-stabilised covariance as ``fit_pca``, whose ``normalize`` is exactly the per-row
L2 option). The explained-variance ratio of component i is lambda_i / sum_j lambda_j.

- LID (the paper's count): #{i : ratio_i > C / min(N, D)}, C = 2.5 — a component must explain C times
  what it would if the variance were spread evenly over min(N, D) directions.
- 95 %: the fewest leading components whose ratios sum to >= 0.95 (sensitive to isotropic noise,
  which spreads over all D directions).
- Spectral gap: i* + 1 where i* maximises ratio_i - ratio_{i+1} (absolute gap) over the first
  min(N - 1, D) ratios (the covariance of N centred rows has rank <= N - 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..common.errors import InputError
from ..decompose.pca import CovarianceAccumulator

LID_C = 2.5
"""The paper's constant C in the LID threshold C / min(N, D)."""


@dataclass
class ComplexityReport:
    """Dimension estimates of one concept's gradient set."""

    lid: int
    """#{i : ratio_i > c / min(N, D)} — the paper's local intrinsic dimension."""
    n95: int
    """Fewest leading components explaining >= ``level`` (default 95 %) of the variance."""
    gap: int
    """Count before the largest absolute drop between consecutive ratios."""
    ratios: Tensor
    """(D,) float64 explained-variance ratios, descending (they sum to 1)."""
    n_samples: int
    """N, the number of gradients."""
    dim: int
    """D, the gradient width."""
    c: float = LID_C
    """The C used for ``lid``."""
    level: float = 0.95
    """The cumulative level used for ``n95``."""

    @property
    def threshold(self) -> float:
        """The LID ratio threshold C / min(N, D)."""
        return self.c / min(self.n_samples, self.dim)


@dataclass
class StabilityCurve:
    """LID against the number of gradients used (nested prefixes of one seeded permutation)."""

    sizes: list[int]
    """Numbers of gradients, increasing."""
    lid: list[int]
    """LID at each size."""
    seed: int
    """Seed of the permutation."""


def as_gradients(grads: Tensor, name: str = "gradients") -> Tensor:
    """``grads`` as an (N >= 2, D) finite float matrix, else an :class:`InputError` naming ``name``."""
    if not isinstance(grads, Tensor):
        grads = torch.as_tensor(grads)
    if grads.ndim != 2 or grads.shape[1] == 0:
        raise InputError(name, f"expected an (N, D) matrix, one gradient per row; got shape {tuple(grads.shape)}.",
                         "stack the gradients (ELROND Collect Gradients writes them this way).")
    if grads.shape[0] < 2:
        raise InputError(name, f"has {grads.shape[0]} row(s); a spectrum or a decomposition needs at least 2 "
                         "gradients.", "raise pairs in ELROND Collect Gradients (4 000-8 000 give a stable estimate).")
    if not grads.is_floating_point():
        grads = grads.float()
    if not bool(torch.isfinite(grads).all()):
        raise InputError(name, "contains NaN or infinite values.",
                         "recollect them (lower the step or enable normalize) and drop NaN rows.")
    return grads


def _ratios_of(acc: CovarianceAccumulator) -> Tensor:
    _, cov = acc.covariance()
    evals = torch.linalg.eigvalsh(cov.cpu()).flip(0).clamp_min(0.0)
    total = float(evals.sum())
    if not total > 0.0:
        raise InputError("gradients", "have zero variance: all rows are identical.",
                         "check the gradient collection (different image pairs must give different gradients).")
    return evals / total


def explained_variance_ratios(grads: Tensor, normalize: bool = False) -> Tensor:
    """(D,) float64 explained-variance ratios of the centred rows of ``grads`` (N, D), descending."""
    grads = as_gradients(grads)
    acc = CovarianceAccumulator(normalize=normalize, chunk_rows=min(32768, grads.shape[0]))
    acc.update(grads)
    return _ratios_of(acc)


def lid_count(ratios: Tensor, n_samples: int, c: float = LID_C) -> int:
    """#{i : ratio_i > c / min(n_samples, D)}."""
    return int((ratios > c / min(int(n_samples), ratios.shape[0])).sum())


def cumulative_count(ratios: Tensor, level: float = 0.95) -> int:
    """Fewest leading ratios summing to >= ``level`` (ratios descending)."""
    if not 0.0 < level <= 1.0:
        raise InputError("level", f"is {level}; it must be in (0, 1].", "use e.g. 0.95.")
    csum = ratios.double().cumsum(0)
    return min(int(torch.searchsorted(csum, torch.tensor([level - 1e-12], dtype=csum.dtype))[0]) + 1,
               ratios.shape[0])


def spectral_gap_count(ratios: Tensor, n_samples: int | None = None) -> int:
    """i* + 1 for the largest ratio_i - ratio_{i+1} among the first min(n_samples - 1, D) ratios."""
    m = ratios.shape[0] if n_samples is None else min(ratios.shape[0], max(1, int(n_samples) - 1))
    if m < 2:
        return 1
    r = ratios[:m]
    return int(torch.argmax(r[:-1] - r[1:])) + 1


def concept_complexity(grads: Tensor, normalize: bool = False, c: float = LID_C,
                       level: float = 0.95) -> ComplexityReport:
    """LID, the 95 % count and the spectral-gap count of the gradients' PCA spectrum."""
    if not c > 0:
        raise InputError("c", f"is {c}; it must be positive.", "use the paper's C = 2.5.")
    ratios = explained_variance_ratios(grads, normalize)
    n, d = grads.shape
    return ComplexityReport(lid=lid_count(ratios, n, c), n95=cumulative_count(ratios, level),
                            gap=spectral_gap_count(ratios, n), ratios=ratios, n_samples=int(n), dim=int(d),
                            c=float(c), level=float(level))


def subspace_overlap(a: Tensor, b: Tensor, orthonormalize: bool = False, atol: float = 1e-3) -> float:
    """||V_A V_B^T||_F^2 / k_A for direction sets ``a`` (k_A, D) and ``b`` (k_B, D) with orthonormal rows.

    1 when span(A) lies in span(B), 0 when they are orthogonal; equals the mean squared cosine of the
    principal angles when k_A <= k_B. Rows that are not orthonormal (e.g. SAE atoms) raise InputError
    unless ``orthonormalize`` replaces each set by an orthonormal basis of its span (QR).
    """
    mats = []
    for name, v in (("directions_a", a), ("directions_b", b)):
        v = torch.as_tensor(v).double()
        if v.ndim != 2 or v.shape[0] == 0:
            raise InputError(name, f"expected (k, D) directions, got shape {tuple(v.shape)}.", "pass one per row.")
        if not bool(torch.isfinite(v).all()):
            raise InputError(name, "contains NaN or infinite values.", "recompute the directions.")
        if orthonormalize:
            q, r = torch.linalg.qr(v.T)
            keep = r.diagonal().abs() > 1e-10 * max(float(r.diagonal().abs().max()), 1e-300)
            v = q.T[keep]
        elif float((v @ v.T - torch.eye(v.shape[0], dtype=v.dtype)).abs().max()) > atol:
            raise InputError(name, "rows are not orthonormal.", "orthonormalise them (orthonormalize=True) "
                             "or pass PCA directions.")
        mats.append(v)
    va, vb = mats
    if va.shape[1] != vb.shape[1]:
        raise InputError("directions_b", f"have width {vb.shape[1]} but directions_a have {va.shape[1]}.",
                         "compare directions of the same conditioning space.")
    return float((va @ vb.T).square().sum() / va.shape[0])


def lid_stability_curve(grads: Tensor, sizes: Sequence[int] | None = None, seed: int = 0,
                        normalize: bool = False, c: float = LID_C) -> StabilityCurve:
    """LID of the first n rows of one seeded permutation of ``grads``, for each n in ``sizes``.

    One pass: the covariance accumulates prefix by prefix and is diagonalised at each size.
    ``sizes`` defaults to N/16, N/8, N/4, N/2, N (those >= 2).
    """
    grads = as_gradients(grads)
    n = grads.shape[0]
    if sizes is None:
        sizes = sorted({max(2, n >> s) for s in (4, 3, 2, 1, 0)})
    sizes = sorted({int(s) for s in sizes})
    if sizes[0] < 2 or sizes[-1] > n:
        raise InputError("sizes", f"must lie in [2, {n}] (the number of gradients); got {sizes[0]}..{sizes[-1]}.",
                         f"use sizes up to {n} or collect more gradients.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    acc = CovarianceAccumulator(normalize=normalize, chunk_rows=min(32768, n))
    lids, done = [], 0
    for s in sizes:
        acc.update(grads[perm[done:s]])
        done = s
        lids.append(lid_count(_ratios_of(acc), s, c))
    return StabilityCurve(sizes=list(sizes), lid=lids, seed=seed)
