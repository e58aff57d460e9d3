"""Brain-to-embedding mapping: cross-validated ridge regression and prediction metrics.

>>> from fmri2image.mapping import RidgeMapping, prediction_metrics
>>> model = RidgeMapping(cv=5).fit(X_train, Y_train)          # doctest: +SKIP
>>> Y_pred = model.predict(X_test)                              # doctest: +SKIP
>>> print(prediction_metrics(Y_test, Y_pred, Y_train.mean(0)))  # doctest: +SKIP
>>> for message in fit_warnings(model):                         # doctest: +SKIP
...     print(message)

Names are imported lazily (PEP 562), so ``import fmri2image.mapping`` does not load
scikit-learn until one of them is used (keeps ``fmri2image --help`` fast).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.mapping._diagnostics import FitDiagnostics, fit_warnings
    from fmri2image.mapping._grid import DEFAULT_ALPHAS, parse_alpha_grid
    from fmri2image.mapping._io import load_mapping, save_mapping
    from fmri2image.mapping._ridge import RidgeMapping, rescale_predictions_transductive
    from fmri2image.mapping._solvers import SOLVERS, RidgeSolver
    from fmri2image.mapping.metrics import PredictionMetrics, prediction_metrics

_EXPORTS = {
    "DEFAULT_ALPHAS": "fmri2image.mapping._grid",
    "parse_alpha_grid": "fmri2image.mapping._grid",
    "FitDiagnostics": "fmri2image.mapping._diagnostics",
    "fit_warnings": "fmri2image.mapping._diagnostics",
    "RidgeMapping": "fmri2image.mapping._ridge",
    "rescale_predictions_transductive": "fmri2image.mapping._ridge",
    "SOLVERS": "fmri2image.mapping._solvers",
    "RidgeSolver": "fmri2image.mapping._solvers",
    "load_mapping": "fmri2image.mapping._io",
    "save_mapping": "fmri2image.mapping._io",
    "PredictionMetrics": "fmri2image.mapping.metrics",
    "prediction_metrics": "fmri2image.mapping.metrics",
}

__all__ = [
    "DEFAULT_ALPHAS",
    "SOLVERS",
    "FitDiagnostics",
    "PredictionMetrics",
    "RidgeMapping",
    "RidgeSolver",
    "fit_warnings",
    "load_mapping",
    "parse_alpha_grid",
    "prediction_metrics",
    "rescale_predictions_transductive",
    "save_mapping",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
