"""The one engine: a run configuration becomes a graph of cached stages.

>>> from fmri2image.pipeline import load_config, run_experiment   # doctest: +SKIP
>>> config = load_config("experiment.toml", ["mapping.cv=loo"])
>>> result = run_experiment(config)                  # decode, generate, evaluate, report
>>> print(result.format())
>>> run = load_run(result.out_dir)                  # read any run folder back

``run``, ``compare``, ``decode``, ``generate`` and ``demo`` are views over
:func:`run_experiment`.  Nothing in the stage packages imports this package; it sits
on top with the CLI.  Names are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmri2image._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.pipeline.config import RunConfig, load_config
    from fmri2image.pipeline.experiment import ExperimentResult, run_experiment
    from fmri2image.pipeline.results import RunResult, load_run

_EXPORTS = {
    "RunConfig": "fmri2image.pipeline.config",
    "load_config": "fmri2image.pipeline.config",
    "ExperimentResult": "fmri2image.pipeline.experiment",
    "run_experiment": "fmri2image.pipeline.experiment",
    "RunResult": "fmri2image.pipeline.results",
    "load_run": "fmri2image.pipeline.results",
}

__all__ = [
    "ExperimentResult",
    "RunConfig",
    "RunResult",
    "load_config",
    "load_run",
    "run_experiment",
]

_lazy_getattr, __dir__ = lazy_exports(__name__, _EXPORTS)

#: Names of the pipeline written twice before the one engine, and what replaced them.
_REPLACED = {
    "DecodingConfig": "RunConfig (fmri2image.pipeline.config; load_config reads a TOML file)",
    "run_decoding": "run_experiment(config) with config.generation.generators = () (what "
    "`fmri2image decode` runs)",
    "DecodingResult": "ExperimentResult.decodings (fmri2image.pipeline.tables.Decoding)",
    "GenerateConfig": "RunConfig's [generation] section",
    "run_generate": "run_experiment on a run's configuration with one generator (what "
    "`fmri2image generate --from RUN` runs; see cli/generate_cmd.generate_config)",
}


def __getattr__(name: str):
    if name in _REPLACED:
        raise ImportError(
            f"fmri2image.pipeline.{name} was replaced by the one engine: use {_REPLACED[name]}."
        )
    return _lazy_getattr(name)
