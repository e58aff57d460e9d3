"""Brain-to-embedding mapping: cross-validated ridge regression, and the mapper registry.

>>> from fmri2image.mapping import RidgeMapping
>>> model = RidgeMapping(cv=5).fit(X_train, Y_train)          # doctest: +SKIP
>>> Y_pred = model.predict(X_test)                              # doctest: +SKIP
>>> for message in fit_warnings(model):                         # doctest: +SKIP
...     print(message)

Every mapping model meets the :class:`Mapper` contract and is named in
:data:`MAPPERS` (``get_mapper("ridge", cv=5)``); :func:`save_mapping` /
:func:`load_mapping` store any registered one. Adding a mapper is one file and one
:func:`register_mapper` line (see :mod:`fmri2image.mapping.base`).

Scoring the predictions: :func:`fmri2image.evaluation.prediction_metrics`.

Names are imported lazily (PEP 562), so ``import fmri2image.mapping`` does not load
scikit-learn until one of them is used (keeps ``fmri2image --help`` fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmri2image._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.mapping._cv import score_columns
    from fmri2image.mapping._diagnostics import FitDiagnostics, fit_summary, fit_warnings
    from fmri2image.mapping._grid import DEFAULT_ALPHAS, parse_alpha_grid
    from fmri2image.mapping._io import load_mapping, save_mapping
    from fmri2image.mapping._mlp import MLPMapping
    from fmri2image.mapping._ridge import RidgeMapping, rescale_predictions_transductive
    from fmri2image.mapping._solvers import SOLVERS, RidgeSolver
    from fmri2image.mapping.base import (
        MAPPERS,
        Mapper,
        MapperEntry,
        get_mapper,
        mapper_class,
        register_mapper,
    )

_EXPORTS = {
    "DEFAULT_ALPHAS": "fmri2image.mapping._grid",
    "parse_alpha_grid": "fmri2image.mapping._grid",
    "FitDiagnostics": "fmri2image.mapping._diagnostics",
    "fit_warnings": "fmri2image.mapping._diagnostics",
    "fit_summary": "fmri2image.mapping._diagnostics",
    "MLPMapping": "fmri2image.mapping._mlp",
    "RidgeMapping": "fmri2image.mapping._ridge",
    "rescale_predictions_transductive": "fmri2image.mapping._ridge",
    "SOLVERS": "fmri2image.mapping._solvers",
    "RidgeSolver": "fmri2image.mapping._solvers",
    "load_mapping": "fmri2image.mapping._io",
    "save_mapping": "fmri2image.mapping._io",
    "score_columns": "fmri2image.mapping._cv",
    "MAPPERS": "fmri2image.mapping.base",
    "Mapper": "fmri2image.mapping.base",
    "MapperEntry": "fmri2image.mapping.base",
    "get_mapper": "fmri2image.mapping.base",
    "mapper_class": "fmri2image.mapping.base",
    "register_mapper": "fmri2image.mapping.base",
}

__all__ = [
    "DEFAULT_ALPHAS",
    "MAPPERS",
    "SOLVERS",
    "FitDiagnostics",
    "MLPMapping",
    "Mapper",
    "MapperEntry",
    "RidgeMapping",
    "RidgeSolver",
    "fit_summary",
    "fit_warnings",
    "get_mapper",
    "load_mapping",
    "mapper_class",
    "parse_alpha_grid",
    "register_mapper",
    "rescale_predictions_transductive",
    "save_mapping",
    "score_columns",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
