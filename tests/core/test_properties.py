"""Property tests (hypothesis, issue 16) of the core math: PCA invariances, merge/unmerge exactness, the
sparse-subset distribution, percent <-> sigma windows, and the text-spec parsers.

Examples are derandomized (the same on every run); ``--long`` raises max_examples (tests/conftest.py).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from sliderspace_core.common.errors import InputError
from sliderspace_core.common.lowrank import WeightMerge, dense
from sliderspace_core.common.schedule import SigmaWindow
from sliderspace_core.common.textspec import parse_index_list, parse_indexed, parse_number_list
from sliderspace_core.decompose.pca import fit_pca, fix_signs
from sliderspace_core.sliderspace.bank import parse_scales
from sliderspace_core.sliderspace.random_sliders import SparseSpec, draw_subset

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


# ------------------------------------------------------------------------------------------------ PCA

def planted(seed: int, n: int, d: int, gap: float) -> torch.Tensor:
    """Rows with a well separated spectrum (std gap^-i along a random basis), so components are unique."""
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    scales = gap ** -torch.arange(d, dtype=torch.float64)
    return ((torch.randn(n, d, generator=g, dtype=torch.float64) * scales) @ q.T + torch.randn(d, generator=g,
            dtype=torch.float64)).float()


pca_cases = st.tuples(st.integers(0, 2**31), st.integers(40, 120), st.integers(3, 10), st.floats(1.6, 3.0))


@given(pca_cases, st.integers(0, 2**31))
def test_pca_does_not_depend_on_row_order(case, perm_seed):
    seed, n, d, gap = case
    x = planted(seed, n, d, gap)
    k = min(3, d - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(perm_seed))
    a, b = fit_pca(x, k, normalize=False), fit_pca(x[perm], k, normalize=False)
    torch.testing.assert_close(a.components, b.components, atol=2e-4, rtol=0)  # same signs too: no flip allowed
    torch.testing.assert_close(a.explained_variance, b.explained_variance, rtol=1e-5, atol=0)


@given(pca_cases, st.floats(0.01, 100.0))
def test_pca_scaling_changes_variances_not_components(case, c):
    seed, n, d, gap = case
    x = planted(seed, n, d, gap)
    k = min(3, d - 1)
    a, b = fit_pca(x, k, normalize=False), fit_pca(x * c, k, normalize=False)
    torch.testing.assert_close(a.components, b.components, atol=2e-4, rtol=0)
    torch.testing.assert_close(b.explained_variance, a.explained_variance * c * c, rtol=1e-4, atol=0)
    torch.testing.assert_close(a.explained_variance_ratio, b.explained_variance_ratio, rtol=1e-4, atol=1e-9)


@given(pca_cases, st.integers(0, 2**31))
def test_normalized_pca_ignores_per_row_scale(case, scale_seed):
    seed, n, d, gap = case
    x = planted(seed, n, d, gap)
    k = min(3, d - 1)
    s = torch.rand(n, 1, generator=torch.Generator().manual_seed(scale_seed)) * 50 + 0.02
    a, b = fit_pca(x, k), fit_pca(x * s, k)
    torch.testing.assert_close(a.components, b.components, atol=2e-4, rtol=0)


@given(st.integers(0, 2**31), st.integers(1, 6), st.integers(1, 12))
def test_sign_rule(seed, k, d):
    c = torch.randn(k, d, generator=torch.Generator().manual_seed(seed))
    f = fix_signs(c)
    top = f.abs().argmax(dim=1)
    assert bool((f.gather(1, top[:, None]) >= 0).all())          # largest-magnitude coordinate positive
    assert torch.equal(fix_signs(f), f)                             # idempotent
    assert torch.equal(fix_signs(-c), f)                            # depends on the direction only
    assert torch.equal(f.abs(), c.abs())                            # only signs change


# ------------------------------------------------------------------------------------- merge / unmerge

dtypes = st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64])


@given(st.integers(0, 2**31), dtypes, st.integers(1, 3), st.lists(st.floats(-4, 4), min_size=1, max_size=3))
def test_merge_adds_the_dense_delta_and_restore_is_bitwise(seed, dtype, n_weights, scales):
    g = torch.Generator().manual_seed(seed)
    weights = {f"w{i}": torch.randn(5 + i, 4, generator=g).to(dtype) for i in range(n_weights)}
    before = {k: v.clone() for k, v in weights.items()}
    ptrs = {k: v.data_ptr() for k, v in weights.items()}
    sets = [{k: (torch.randn(v.shape[0], 2, generator=g) * s, torch.randn(2, v.shape[1], generator=g))
             for k, v in weights.items() if torch.rand(1, generator=g).item() < 0.8} for s in scales]
    m = WeightMerge()
    m.merge(weights, *sets)
    for k, w in weights.items():
        want = before[k].clone()
        for edits in sets:
            if k in edits:
                want += dense(edits[k], want)
        assert torch.equal(w, want), k                              # the same arithmetic, in place
        assert w.data_ptr() == ptrs[k] and w.dtype == dtype
    m.merge(weights, sets[-1])                                      # a second merge starts from the originals
    for k, w in weights.items():
        want = before[k] + dense(sets[-1][k], before[k]) if k in sets[-1] else before[k]
        assert torch.equal(w, want), k
    m.restore()
    m.restore()                                                     # idempotent
    for k, w in weights.items():
        assert torch.equal(w, before[k]) and w.data_ptr() == ptrs[k], k
    assert not m.merged


# ------------------------------------------------------------------------------------- sparse subsets

specs = st.builds(SparseSpec, k=st.integers(1, 6), distribution=st.sampled_from(["fixed", "uniform"]),
                  scale=st.floats(0.0, 4.0), min_scale=st.floats(0.0, 4.0), random_sign=st.booleans())


@given(specs, st.integers(1, 12), st.integers(0, 2**63 - 1))
def test_subset_is_seeded_distinct_in_range_and_scaled_as_asked(spec, n, seed):
    try:
        spec.check(n)
    except InputError:
        assume(False)
    sub = draw_subset(spec, n, seed)
    assert sub == draw_subset(spec, n, seed)
    assert len(sub) == spec.k and all(0 <= i < n for i in sub)
    lo, hi = (spec.min_scale, spec.scale) if spec.distribution == "uniform" else (spec.scale, spec.scale)
    for v in sub.values():
        mag = abs(v) if spec.random_sign else v
        assert lo - 1e-6 <= mag <= hi + 1e-6, (v, spec)


@pytest.mark.parametrize(("n", "k"), [(8, 3), (12, 1), (5, 5)])
def test_subset_draws_every_slider_equally_often(n, k, long_run):
    draws = 4000 if long_run else 1500
    counts = [0] * n
    pairs = 0
    for seed in range(draws):
        sub = draw_subset(SparseSpec(k=k, random_sign=True), n, seed)
        for i in sub:
            counts[i] += 1
        pairs += sum(v < 0 for v in sub.values())
    p = k / n
    sd = math.sqrt(draws * p * (1 - p)) or 1.0
    assert all(abs(c - draws * p) <= 5 * sd for c in counts), counts        # uniform over sliders
    assert abs(pairs - draws * k / 2) <= 5 * math.sqrt(draws * k / 4)       # fair signs


# ---------------------------------------------------------------------------------- percent <-> sigma

def discrete(p: float) -> float:  # an SD-like discrete schedule (1000 steps), percent 1 -> 0 as in ComfyUI
    if p >= 1.0:
        return 0.0
    t = round((1.0 - p) * 999)
    a = math.prod(1 - (0.00085 ** 0.5 + (0.012 ** 0.5 - 0.00085 ** 0.5) * i / 999) ** 2 for i in range(t + 1))
    return math.sqrt((1 - a) / a)


def edm(p: float) -> float:
    return 0.0 if p >= 1.0 else (80 ** (1 / 7) + p * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7


def flow(p: float) -> float:
    return 1.0 - p


percents = st.floats(0.0, 1.0)


@given(st.sampled_from([edm, flow, discrete]), percents, percents, percents)
def test_window_holds_exactly_the_sigmas_between_its_percents(p2s, a, b, p):
    start, end = min(a, b), max(a, b)
    w = SigmaWindow.from_percents(p2s, start, end)
    assert w.sigma_start >= w.sigma_end                             # monotone: later percent, smaller sigma
    sigma = p2s(p)
    if sigma > 0 and sigma not in (w.sigma_start, w.sigma_end):     # no tie at float resolution (edm(1e-47) = 80)
        assert w.contains(sigma) == (start <= p <= end), (start, end, p)
    if start <= p <= end:
        assert w.contains(sigma)
    assert w.empty == (w.sigma_start <= 0)


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)), percents)
def test_window_refuses_bad_percents_with_input_error_only(x, other):
    try:
        SigmaWindow.from_percents(edm, x, other)
    except InputError as e:
        assert e.input_name in ("start_percent", "end_percent")
    else:
        assert 0 <= x <= other <= 1


# -------------------------------------------------------------------------------------------- text specs

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
seps = st.sampled_from([",", ";", "\n", ", ", " ;\n"])


@given(st.integers(1, 20).flatmap(lambda n: st.tuples(st.just(n), st.dictionaries(st.integers(0, n - 1), finite))),
       seps, st.sampled_from([":", "=", " : "]))
def test_indexed_values_round_trip(case, sep, colon):
    n, values = case
    text = sep.join(f"{i}{colon}{v!r}" for i, v in values.items())
    assert parse_scales(text, n) == {i: v + 0.0 for i, v in values.items()}


@given(st.integers(1, 30).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n - 1), min_size=1,
                                                                          unique=True))), seps)
def test_index_lists_round_trip_with_ranges(case, sep):
    n, idx = case
    parts, i = [], 0
    while i < len(idx):                                             # runs of consecutive indices as ranges
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        parts.append(f"{idx[i]}-{idx[j]}" if j > i else str(idx[i]))
        i = j + 1
    assert parse_index_list(sep.join(parts), n, "sliders") == idx
    assert parse_index_list("all", n, "sliders") == list(range(n))


@given(st.lists(finite, min_size=1, unique=True), st.sampled_from([",", " ", ";", ", ", "\n"]))
def test_number_lists_round_trip(values, sep):
    assume(len({v + 0.0 for v in values}) == len(values))           # -0.0 and 0.0 are one scale
    assert parse_number_list(sep.join(repr(v) for v in values), "scales", "fix") == [v + 0.0 for v in values]


junk = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.from_regex(
    re.compile(r"[-0-9:=,; \n.eEnaifl]{0,30}"), fullmatch=True)


@given(junk, st.integers(1, 10))
def test_junk_text_gives_results_or_input_error_only(text, n):
    for parse in (lambda: parse_scales(text, n), lambda: parse_index_list(text, n, "sliders"),
                  lambda: parse_number_list(text, "scales", "fix"),
                  lambda: parse_indexed(text, n, "x", lambda raw, entry: raw, "fix")):
        try:
            out = parse()
        except InputError as e:
            assert e.input_name and "Fix:" in str(e)
            continue
        if isinstance(out, dict):
            assert all(0 <= i < n for i in out)
            assert all(math.isfinite(v) for v in out.values() if isinstance(v, float))
        else:
            assert all(math.isfinite(v) for v in out)
