"""Uncertainty of a mean score, and whether two methods differ on the same images.

* :func:`bootstrap_ci` — percentile bootstrap of the mean over images (seeded):
  resample the per-image scores with replacement, take the 2.5 % and 97.5 %
  quantiles of the resampled means.  Images are the unit of resampling, as in the
  papers' tables (the test set is a sample of possible stimuli).
* :func:`paired_permutation_test` — two methods scored on the same images: under the
  null hypothesis the sign of each per-image difference is arbitrary, so flip signs
  at random (all ``2**n`` sign patterns when that is at most ``n_permutations``:
  an exact test) and compare the mean difference with the flipped ones.  The p-value
  counts the observed pattern itself, ``(1 + #{|flipped| >= |observed|}) / (1 + B)``,
  so it is never 0.
* :func:`holm_adjust` — Holm–Bonferroni step-down adjustment of a family of p-values
  (e.g. every pair of models compared on one metric).

Per-image scores that are NaN (undefined, e.g. the Pearson r of a constant image)
are left out and the number of scored images is reported beside the mean.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from fmri2image.errors import ConfigError, DataFormatError

__all__ = [
    "PermutationTest",
    "ScoreSummary",
    "bootstrap_ci",
    "holm_adjust",
    "paired_permutation_test",
    "summarize_scores",
]


def _finite(values: Any, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if np.any(np.isinf(x)):
        raise DataFormatError(f"{name} contains infinite values.")
    return x[~np.isnan(x)]


def bootstrap_ci(
    values: Any,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean.

    Parameters
    ----------
    values : array-like of shape (n_images,)
        Per-image scores; NaN entries are left out.
    n_resamples : int, default 2000
        Bootstrap resamples.
    confidence : float, default 0.95
        Coverage of the interval.
    seed : int, default 0
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    (low, high) : tuple of float
        NaN when fewer than 2 finite values are given.
    """
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1); got {confidence}.")
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be >= 1; got {n_resamples}.")
    x = _finite(values)
    if x.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // x.size)  # bound the (chunk, n) index array
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class ScoreSummary:
    """Mean of per-image scores with its bootstrap interval.

    Attributes
    ----------
    mean : float
    ci_low, ci_high : float
        Bootstrap interval of the mean (``confidence``).
    n : int
        Images scored (finite values).
    confidence : float
    """

    mean: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_scores(
    values: Any, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> ScoreSummary:
    """Mean, bootstrap interval and count of per-image scores (NaN left out)."""
    x = _finite(values)
    low, high = bootstrap_ci(x, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return ScoreSummary(
        mean=float(x.mean()) if x.size else math.nan,
        ci_low=low,
        ci_high=high,
        n=int(x.size),
        confidence=confidence,
    )


@dataclass(frozen=True)
class PermutationTest:
    """Result of :func:`paired_permutation_test`.

    Attributes
    ----------
    mean_difference : float
        ``mean(a - b)`` over the images both methods scored.
    p_value : float
    n : int
        Paired images used.
    n_permutations : int
        Sign patterns compared (``2**n`` when ``exact``).
    exact : bool
    alternative : str
    """

    mean_difference: float
    p_value: float
    n: int
    n_permutations: int
    exact: bool
    alternative: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_permutation_test(
    a: Any,
    b: Any,
    *,
    n_permutations: int = 10_000,
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
    seed: int = 0,
) -> PermutationTest:
    """Sign-flip permutation test of ``mean(a - b) = 0`` on paired per-image scores.

    Parameters
    ----------
    a, b : array-like of shape (n_images,)
        Scores of two methods on the same images, in the same order.  Pairs where
        either is NaN are left out.
    n_permutations : int, default 10000
        Random sign patterns; when ``2**n <= n_permutations`` all patterns are
        enumerated instead (exact test).
    alternative : {"two-sided", "greater", "less"}
        ``"greater"``: ``a`` scores higher than ``b``.
    seed : int, default 0

    Returns
    -------
    PermutationTest
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ConfigError(
            f"alternative must be 'two-sided', 'greater' or 'less'; got {alternative!r}."
        )
    if n_permutations < 1:
        raise ConfigError(f"n_permutations must be >= 1; got {n_permutations}.")
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise DataFormatError(
            f"Paired scores need the same images: got {a.size} and {b.size} values."
        )
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    n = int(d.size)
    if n == 0:
        return PermutationTest(math.nan, math.nan, 0, 0, True, alternative)
    observed = float(d.mean())
    exact = n < 63 and 2**n <= n_permutations
    if exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        rng = np.random.default_rng(seed)
        signs = rng.choice((1.0, -1.0), size=(n_permutations, n))
    flipped = signs @ d / n
    tol = 1e-12 * max(1.0, abs(observed))  # the observed pattern must count as extreme
    if alternative == "two-sided":
        extreme = np.abs(flipped) >= abs(observed) - tol
    elif alternative == "greater":
        extreme = flipped >= observed - tol
    else:
        extreme = flipped <= observed + tol
    if exact:  # the observed pattern is among the enumerated ones
        p = float(extreme.mean())
    else:
        p = float((1 + extreme.sum()) / (1 + n_permutations))
    return PermutationTest(observed, p, n, int(signs.shape[0]), exact, alternative)


def holm_adjust(p: Any) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values.

    Parameters
    ----------
    p : sequence of float
        The p-values of one family of tests.  NaN (an undefined test) stays NaN and
        does not count in the family.

    Returns
    -------
    list of float
        In the order of ``p``: the ``k``-th smallest of ``m`` p-values becomes
        ``max_{j <= k} min(1, (m - j + 1) p_(j))``, so the adjusted values keep the
        order of the raw ones and never exceed 1.
    """
    values = np.asarray(p, dtype=np.float64).ravel()
    out = np.full(values.shape, math.nan)
    finite = np.flatnonzero(~np.isnan(values))
    m = finite.size
    if m:
        order = finite[np.argsort(values[finite], kind="stable")]
        scaled = np.minimum(1.0, (m - np.arange(m)) * values[order])
        out[order] = np.maximum.accumulate(scaled)
    return [float(v) for v in out]
