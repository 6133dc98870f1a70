"""The machine-independent numerics: each function against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toolkit.numerics import exact_products, exp, fmean, fstd, group_means


@pytest.mark.parametrize("allow_single", [False, True])
def test_exact_products_equal_integer_arithmetic(allow_single):
    """On operands the fixed-point grid holds exactly (multiples of 1/8), the product must be
    the exact one, computed here with Python integers; on any operands, reordering the
    summation (permuting personas) must not change a bit."""
    rng = np.random.default_rng(0)
    W = rng.integers(0, 5, size=(300, 60)).astype(np.float64)
    Xi = rng.integers(-400, 400, size=(60, 70))
    got = exact_products(W, Xi / 8.0, allow_single=allow_single)
    Wi = W.astype(np.int64).tolist()
    for b in (0, 17, 299):
        for j in (0, 33, 69):
            assert got[b, j] == sum(Wi[b][p] * int(Xi[p, j]) for p in range(60)) / 8
    X = rng.normal(size=(60, 70)) * 3
    perm = rng.permutation(60)
    a = exact_products(W, X, allow_single=allow_single)
    b = exact_products(W[:, perm], X[perm], allow_single=allow_single)
    assert a.tobytes() == b.tobytes()
    # the only error is the rounding of X to the grid: half a grid step per term
    bits = 24 if allow_single else 53
    row = W.sum(axis=1).max()
    bound = row * row * np.abs(X).max(axis=0) * 2.0 ** (2 - bits)
    assert (np.abs(a - W @ X) <= bound).all()


def test_exact_products_same_bits_with_one_or_many_blas_threads():
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(1)
    W = rng.integers(0, 4, size=(2000, 100)).astype(np.float64)
    X = rng.random((100, 500))
    with threadpool_limits(limits=1, user_api="blas"):
        one = exact_products(W, X)
    many = exact_products(W, X)
    assert one.tobytes() == many.tobytes()


@pytest.mark.shared
def test_single_precision_bootstrap_sums_change_curve_ses_by_under_1e3(monkeypatch):
    """The float32 fast path rounds bootstrap operands to ~17 bits; on the published logprob run
    the SEs stay within 1e-3 (relative) of the float64 path, against ~1.6% Monte-Carlo error."""
    import tempfile

    from conftest import LOGIT_CSV
    from toolkit import numerics
    from toolkit.analysis import curves
    from toolkit.ingest.importer import import_paths
    from toolkit.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        import_paths(store, [LOGIT_CSV])
        fast = curves(store, points=11, by_group=True).frame
        monkeypatch.setattr(numerics, "SINGLE_MIN_BITS", 60)  # no float32 path
        slow = curves(store, points=11, by_group=True).frame
    for col in ("S_se", "sigma_bar_se", "R_se"):
        rel = np.abs(fast[col].to_numpy() / slow[col].to_numpy() - 1)
        assert rel.max() < 1e-3
    assert fast["S"].to_list() == slow["S"].to_list()  # point values never take the float32 path


def test_exp_within_two_ulp_of_the_c_library():
    from fractions import Fraction

    xs = np.concatenate([np.linspace(-740, 0, 200001), -np.logspace(-300, 2, 2000), [0.0, -1e-320, -744.5]])
    got = exp(xs)
    ref = np.array([math.exp(x) for x in xs])
    ulp = np.spacing(ref)  # libm is within ~0.5 ulp of exact; ours within ~1.5: 2 ulp apart at most
    assert (np.abs(got - ref) <= 2 * ulp).all()
    assert np.median(np.abs(got - ref) / ulp) == 0  # most values agree to the last bit
    assert exp(np.array([-800.0]))[0] == 0.0
    # one point against an exact rational reference
    x = -0.5
    term, total = Fraction(1), Fraction(1)
    for k in range(1, 40):
        term *= Fraction(x) / k
        total += term
    assert abs(Fraction(float(exp(np.array([x]))[0])) - total) <= 2 * Fraction(np.spacing(0.6))
    with pytest.raises(ValueError):
        exp(np.array([0.5]))  # only shifted log-probabilities (<= 0) are exponentiated


def test_group_means_and_correctly_rounded_helpers():
    x = np.arange(12, dtype=np.float64).reshape(2, 6)
    got = group_means(x, np.array([0, 1, 0, 1, 1, 2]), 3)
    assert got.tolist() == [[2.5, 1.0, 8 / 3, 5.0], [8.5, 7.0, 26 / 3, 11.0]]  # items 1, 3, 4 form group 1
    assert fmean([1e16, 1.0, -1e16]) == pytest.approx(1 / 3)  # naive left-to-right summation gives 0
    assert fstd([1.0, 2.0, 3.0, 4.0]) == pytest.approx(np.std([1, 2, 3, 4], ddof=1), rel=1e-15)


def test_portable_exp_carries_nan_and_refuses_a_positive_value_beside_one():
    """NaN in, NaN out, without a warning; a positive argument is refused even when a NaN sits
    beside it (the old check used max(), which a NaN turns into NaN)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = exp(np.array([np.nan, -1.0, -np.inf]))
    assert np.isnan(out[0]) and out[2] == 0.0 and abs(out[1] - math.exp(-1.0)) < 1e-16
    with pytest.raises(ValueError, match="non-positive"):
        exp(np.array([np.nan, 5.0]))
