"""Bootstrap intervals and the paired permutation test against references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.evaluation import bootstrap_ci, paired_permutation_test, summarize_scores


def test_bootstrap_ci_matches_normal_theory():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 0.1, size=400)
    low, high = bootstrap_ci(x, n_resamples=4000, seed=1)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert low < x.mean() < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    assert bootstrap_ci(x, n_resamples=4000, seed=1) == (low, high)  # seeded
    assert bootstrap_ci(x, n_resamples=4000, seed=2) != (low, high)
    narrow = bootstrap_ci(x, confidence=0.5, seed=1)
    assert low < narrow[0] < narrow[1] < high


def test_bootstrap_equals_scipy_percentile_interval():
    rng = np.random.default_rng(4)
    x = rng.exponential(size=60)
    ours = bootstrap_ci(x, n_resamples=20_000, seed=0)
    ref = scipy_stats.bootstrap(
        (x,), np.mean, n_resamples=20_000, method="percentile", random_state=0
    ).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), abs=0.02)


def test_summary_leaves_out_nan():
    s = summarize_scores([0.2, np.nan, 0.4, 0.6], seed=0)
    assert s.n == 3 and s.mean == pytest.approx(0.4)
    assert s.ci_low <= s.mean <= s.ci_high
    one = summarize_scores([0.5, np.nan])
    assert one.n == 1 and np.isnan(one.ci_low)
    with pytest.raises(DataFormatError):
        summarize_scores([np.inf, 1.0])
    with pytest.raises(ConfigError):
        bootstrap_ci([1.0, 2.0], confidence=1.5)


def test_permutation_exact_by_hand():
    # d = (1, 1, 1): of the 8 sign patterns only +++ and --- reach |mean| >= 1.
    t = paired_permutation_test([2, 2, 2], [1, 1, 1])
    assert t.exact and t.n_permutations == 8
    assert t.mean_difference == 1.0 and t.p_value == pytest.approx(2 / 8)
    assert paired_permutation_test([2, 2, 2], [1, 1, 1], alternative="greater").p_value == 1 / 8
    assert paired_permutation_test([2, 2, 2], [1, 1, 1], alternative="less").p_value == 1.0


def test_permutation_equals_scipy_exact():
    rng = np.random.default_rng(5)
    a = rng.normal(size=11)
    b = a + rng.normal(0.4, 1.0, size=11)

    def mean_diff(x, y):
        return np.mean(x - y)

    ref = scipy_stats.permutation_test(
        (a, b), mean_diff, permutation_type="samples", n_resamples=np.inf
    )
    ours = paired_permutation_test(a, b)
    assert ours.exact
    assert ours.p_value == pytest.approx(ref.pvalue)


def test_permutation_random_sampling():
    rng = np.random.default_rng(6)
    a = rng.normal(0.6, 0.1, size=50)
    b = rng.normal(0.5, 0.1, size=50)
    t = paired_permutation_test(a, b, n_permutations=5000, seed=0)
    assert not t.exact and t.n_permutations == 5000
    assert t.p_value == pytest.approx(1 / 5001)  # never 0: the observed pattern counts
    same = paired_permutation_test(a, a + rng.normal(0, 0.1, size=50), seed=0)
    assert same.p_value > 0.01
    # NaN pairs are left out, mismatched lengths refused.
    assert paired_permutation_test([1.0, np.nan, 3.0], [0.0, 1.0, 2.0]).n == 2
    with pytest.raises(DataFormatError, match="same images"):
        paired_permutation_test([1.0, 2.0], [1.0])
