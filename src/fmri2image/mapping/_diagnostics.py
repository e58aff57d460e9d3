"""What a :class:`~fmri2image.mapping.RidgeMapping` fit found, and how to say so.

``RidgeMapping.fit`` records :class:`FitDiagnostics` in ``diagnostics_``; it does
not log warnings itself.  :func:`fit_warnings` turns the diagnostics into
sentences in the words of whoever drives the fit: Python parameter names by
default, command-line flags when the CLI passes ``flags``.  numpy only (cheap to
import).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from fmri2image.errors import ConfigError

__all__ = [
    "EDGE_SHARE_LIMIT",
    "MIN_CV_GROUPS",
    "FitDiagnostics",
    "fit_warnings",
]

#: A grid end chosen by more than this share of targets is reported.
EDGE_SHARE_LIMIT = 0.1
#: Grouped cross-validation over fewer groups than this is reported.
MIN_CV_GROUPS = 20

#: The words used for each parameter when the caller passes no ``flags``: the
#: Python parameter, with the value to set where the advice implies one.
DEFAULT_FLAGS: dict[str, str] = {
    "alphas": "alphas",
    "groups": "groups=None",
    "cv": "cv",
    "alpha_per_target": "alpha_per_target=False",
}


@dataclass(frozen=True)
class FitDiagnostics:
    """How a :class:`~fmri2image.mapping.RidgeMapping` chose its alphas.

    Attributes
    ----------
    scheme : str
        One-line description, e.g. ``"5-fold CV grouped by 150 groups, pooled r2,
        alpha per target"``.
    cv : str
        ``"kfold"`` (contiguous blocks), ``"shuffled-kfold"``, ``"group-kfold"``,
        ``"loo"`` (exact leave-one-out) or the class name of a splitter.
    n_splits : int
        Folds (``n_samples`` for leave-one-out).
    n_groups : int or None
        Distinct labels in ``groups`` passed to ``fit`` (None: ungrouped).
    n_samples, n_targets : int
    scoring : str
        ``"r2"`` or ``"correlation"``.
    score_pooling : str
        ``"pooled"`` or ``"fold-mean"``.
    alpha_per_target : bool
    n_alphas : int
        Grid size.
    alpha_low, alpha_high : float
        Smallest and largest alpha of the grid.
    share_low, share_high : float
        Share of targets whose chosen alpha is the smallest / largest of the grid.
    alpha_median : float
        Median chosen alpha over targets.
    """

    scheme: str
    cv: str
    n_splits: int
    n_groups: int | None
    n_samples: int
    n_targets: int
    scoring: str
    score_pooling: str
    alpha_per_target: bool
    n_alphas: int
    alpha_low: float
    alpha_high: float
    share_low: float
    share_high: float
    alpha_median: float

    @property
    def grouped(self) -> bool:
        """Whether the folds were grouped (no group on both sides of a fold)."""
        return self.n_groups is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (inverse: :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitDiagnostics:
        """Rebuild from :meth:`to_dict` output (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(data))
        if missing:
            raise ConfigError(
                f"fit diagnostics lack the fields {missing}; pass a fitted RidgeMapping, its "
                "diagnostics_, or the dict written by FitDiagnostics.to_dict()."
            )
        return cls(**{k: data[k] for k in names})


def _as_diagnostics(source: Any) -> FitDiagnostics:
    if isinstance(source, FitDiagnostics):
        return source
    if isinstance(source, Mapping):
        return FitDiagnostics.from_dict(source)
    diag = getattr(source, "diagnostics_", None)
    if isinstance(diag, FitDiagnostics):
        return diag
    raise ConfigError(
        f"fit_warnings needs a fitted RidgeMapping or its diagnostics_, got {type(source).__name__}"
        " (an unfitted model, or one loaded from a file saved without diagnostics, has none)."
    )


def _words(flags: Mapping[str, str] | None) -> dict[str, str]:
    words = dict(DEFAULT_FLAGS)
    if flags is None:
        return words
    unknown = sorted(set(flags) - set(DEFAULT_FLAGS))
    if unknown:
        raise ConfigError(
            f"fit_warnings flags has unknown keys {unknown}; the keys are the parameter names "
            f"{sorted(DEFAULT_FLAGS)}, each mapped to the words the caller wants "
            "(e.g. {'alphas': '--alphas LO:HI:N'})."
        )
    words.update({k: str(v) for k, v in flags.items()})
    return words


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%"


def fit_warnings(model_or_diagnostics: Any, flags: Mapping[str, str] | None = None) -> list[str]:
    """Phrase the problems a fit's diagnostics show, one sentence group per problem.

    Reported:

    * more than :data:`EDGE_SHARE_LIMIT` (10 %) of the targets at the smallest
      alpha of the grid (their optimum may lie below it) or at the largest (they
      predict their training mean: cross-validation found no usable signal);
    * grouped cross-validation over fewer than :data:`MIN_CV_GROUPS` (20) groups:
      each validation fold then holds a few groups, whose offsets from the
      training mean dominate its score, so the alphas come out noisy and
      usually too large (docs/mapping.md, "Choosing the cross-validation").

    Grid ends are not judged for grids of fewer than 3 alphas.

    Parameters
    ----------
    model_or_diagnostics : RidgeMapping, FitDiagnostics or dict
        A fitted model (its ``diagnostics_``), the diagnostics, or their
        :meth:`FitDiagnostics.to_dict` form (e.g. read back from JSON).
    flags : mapping of str to str, optional
        Words for the settings the advice names, by parameter name: ``"alphas"``,
        ``"groups"``, ``"cv"``, ``"alpha_per_target"``.  Missing keys keep the
        defaults (``alphas``, ``groups=None``, ``cv``, ``alpha_per_target=False``);
        the CLI passes e.g. ``{"alphas": "--alphas LO:HI:N", "groups":
        "--cv-groups none", "cv": "--cv", "alpha_per_target": "--shared-alpha"}``.

    Returns
    -------
    messages : list of str
        Empty if nothing is worth reporting.

    Raises
    ------
    ConfigError
        Unknown ``flags`` keys, or no diagnostics to read.
    """
    d = _as_diagnostics(model_or_diagnostics)
    w = _words(flags)
    out: list[str] = []
    few_groups = d.grouped and d.n_groups is not None and d.n_groups < MIN_CV_GROUPS
    if d.n_alphas >= 3 and d.share_low > EDGE_SHARE_LIMIT:
        out.append(
            f"{_pct(d.share_low)} of the {d.n_targets} targets chose the smallest alpha "
            f"({d.alpha_low:.3g}); their optimum may lie lower: extend the grid downward "
            f"({w['alphas']})."
        )
    if d.n_alphas >= 3 and d.share_high > EDGE_SHARE_LIMIT:
        msg = (
            f"{_pct(d.share_high)} of the {d.n_targets} targets chose the largest alpha "
            f"({d.alpha_high:.3g}): they predict (almost) their training mean, i.e. "
            f"cross-validation ({d.scheme}) found no usable signal for them."
        )
        if few_groups:
            msg += f" Grouped folds over only {d.n_groups} groups are a likely cause (see below)."
        else:
            msg += (
                " If that alpha is not far above the data's scale (about n_samples x "
                f"n_voxels), extend the grid upward ({w['alphas']})."
            )
            if d.alpha_per_target:
                msg += (
                    " Where few targets carry signal, one alpha shared by all targets "
                    f"({w['alpha_per_target']}) pools their evidence and may identify "
                    "images better."
                )
        out.append(msg)
    if few_groups:
        per_fold = d.n_groups / max(d.n_splits, 1)
        out.append(
            f"Cross-validation was grouped over only {d.n_groups} groups ({d.n_splits} folds "
            f"({w['cv']}) of about {per_fold:.0f} groups each; fewer than {MIN_CV_GROUPS} "
            "groups in all): each validation fold's score is dominated by how far its few "
            "groups sit from the training mean, so the chosen alphas are noisy and usually "
            f"too large. Ungrouped folds ({w['groups']}) chose better alphas in our "
            "benchmarks, also for test categories absent from training (docs/mapping.md)."
        )
    return out


def fit_summary(model: Any) -> dict[str, Any]:
    """Headline facts of any fitted mapper: its class, alpha range (None for a mapper
    without alphas), CV folds, the diagnostics when it keeps them, and the training
    ``history`` (epochs, best epoch, validation loss, seconds) of a mapper that
    records one in ``history_`` (the MLP)."""
    import numpy as np

    alpha = getattr(model, "alpha_", None)
    alphas = np.asarray(alpha if alpha is not None else [np.nan], dtype=np.float64).ravel()
    out: dict[str, Any] = {
        "mapper": type(model).__name__,
        "alpha_min": float(alphas.min()) if alpha is not None else None,
        "alpha_median": float(np.median(alphas)) if alpha is not None else None,
        "alpha_max": float(alphas.max()) if alpha is not None else None,
        "n_splits": int(getattr(model, "n_splits_", 0) or 0),
    }
    diag = getattr(model, "diagnostics_", None)
    if diag is not None:
        out["diagnostics"] = diag.to_dict()
    history = getattr(model, "history_", None)
    if isinstance(history, Mapping):
        out["history"] = dict(history)
    return out
