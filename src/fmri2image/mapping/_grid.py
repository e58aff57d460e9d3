"""The alpha grid: its default and a parser for the command line's ``LO:HI:N`` form.

numpy only, so that the CLI can parse ``--alphas`` without importing scikit-learn.
"""

from __future__ import annotations

import math

import numpy as np

from fmri2image.errors import ConfigError

__all__ = ["DEFAULT_ALPHAS", "parse_alpha_grid"]

#: Default alpha grid: 13 values, 1e-2 ... 1e10 (one per decade).
#: With z-scored voxels the Gram matrix eigenvalues scale with
#: n_samples x n_features (~1e3 to ~1e6 for GOD's 1200 x 4500 voxels), and noisy
#: fMRI typically needs alpha of the order of those eigenvalues (the seed's fixed
#: alpha was 1e3).  The grid spans from almost unregularized (1e-2) to far beyond
#: the largest eigenvalue (1e10, where the map predicts the training mean), so the
#: optimum of any target lies inside it; ``RidgeMapping.diagnostics_`` records the
#: share of targets at either end (see :func:`fmri2image.mapping.fit_warnings`).
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(10.0**k) for k in range(-2, 11))

_FORM = (
    "Give it as LO:HI:N, N values spaced evenly on a log scale from LO to HI inclusive "
    "(e.g. 1e-2:1e10:13, the default: one per decade), with 0 < LO <= HI and N a whole "
    "number >= 1 (N = 1 needs LO = HI); or as a single positive number for one fixed alpha "
    "(e.g. 10)."
)


def _positive(text: str, what: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"alpha grid {spec!r}: {what} {text.strip()!r} is not a positive finite number. {_FORM}"
        )
    return value


def parse_alpha_grid(spec: str) -> np.ndarray:
    """Parse a log-spaced alpha grid written ``"LO:HI:N"``.

    Parameters
    ----------
    spec : str
        ``"LO:HI:N"``: ``N`` values from ``LO`` to ``HI`` (both included) spaced
        evenly in ``log10``, i.e. ``numpy.logspace(log10(LO), log10(HI), N)``;
        ``0 < LO <= HI``, ``N >= 1`` (``N = 1`` requires ``LO == HI``).  A single
        positive number ``"A"`` is a one-value grid (a fixed alpha, no search).
        Whitespace around the parts is ignored.  Values on whole decades are
        exact: ``"1e-2:1e10:13"`` equals :data:`DEFAULT_ALPHAS`.

    Returns
    -------
    alphas : ndarray of shape (N,), float64
        Increasing.

    Raises
    ------
    ConfigError
        If ``spec`` is not of that form; the message states the accepted form.

    Examples
    --------
    >>> parse_alpha_grid("1e-2:1e10:13")[[0, -1]]
    array([1.e-02, 1.e+10])
    >>> parse_alpha_grid("10")
    array([10.])
    """
    if not isinstance(spec, str):
        raise ConfigError(f"alpha grid {spec!r} is not a string. {_FORM}")
    parts = spec.split(":")
    if len(parts) == 1:
        return np.array([_positive(parts[0], "the alpha", spec)])
    if len(parts) != 3:
        raise ConfigError(
            f"alpha grid {spec!r} has {len(parts)} ':'-separated parts; expected 3 (LO:HI:N). {_FORM}"
        )
    lo = _positive(parts[0], "LO", spec)
    hi = _positive(parts[1], "HI", spec)
    n_text = parts[2].strip()
    if not n_text.isdigit() or int(n_text) < 1:
        raise ConfigError(f"alpha grid {spec!r}: N {n_text!r} is not a whole number >= 1. {_FORM}")
    n = int(n_text)
    if lo > hi:
        raise ConfigError(f"alpha grid {spec!r}: LO ({lo:g}) is larger than HI ({hi:g}). {_FORM}")
    if n == 1:
        if lo != hi:
            raise ConfigError(
                f"alpha grid {spec!r}: a single value (N = 1) cannot span {lo:g} to {hi:g}. {_FORM}"
            )
        return np.array([lo])
    if lo == hi:
        raise ConfigError(
            f"alpha grid {spec!r}: {n} values between equal ends would repeat {lo:g}. {_FORM}"
        )
    exponents = np.linspace(math.log10(lo), math.log10(hi), n)
    whole = np.round(exponents)
    if np.all(np.abs(exponents - whole) < 1e-9):
        alphas = np.array([10.0 ** int(k) for k in whole])  # exact decades
    else:
        alphas = 10.0**exponents
        alphas[0], alphas[-1] = lo, hi
    return alphas
