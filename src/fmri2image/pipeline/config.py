"""One validated, typed configuration for a whole run: a TOML file plus ``--set`` overrides.

::

    # experiment.toml
    models = ["resnet50", "vit", "clip"]
    device = "cuda"
    seed = 0

    [data]
    god = "/data/GOD"
    subjects = [1, 2, 3]
    rois = ["ROI_V1", "ROI_HVC", "ROI_VC"]

    [mapping]
    cv = 5
    alphas = "1e-2:1e10:13"

    [retrieval]
    databases = ["/data/imagenet-val"]   # vit and clip have no 1k head: an image folder

    [generation]
    generators = ["sd15"]
    options = { sd15 = { steps = 30 } }

    [evaluation]
    metrics = ["pixcorr", "ssim", "alex2", "clip"]

Overrides use dotted keys and TOML values: ``--set mapping.cv=loo --set
data.subjects=[1,2]`` (a value that is not valid TOML is taken as a string).
Unknown sections or keys and values of the wrong type are
:class:`~fmri2image.errors.ConfigError` s naming the file or the ``--set`` item and
the close matches, raised before any work; the values themselves are then checked by
the stages' own validators (:meth:`RunConfig.validate`).  A run writes its resolved
configuration beside its results (:meth:`RunConfig.save`: ``config.toml``, which
:func:`load_config` reads back unchanged).  No path is hard-coded: the data folder
and the output folder come from the file, ``--set`` or the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import sys
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmri2image import _io
from fmri2image.errors import ConfigError

__all__ = [
    "DataSection",
    "EvaluationSection",
    "GenerationSection",
    "MappingSection",
    "RetrievalSection",
    "RunConfig",
    "dump_toml",
    "load_config",
]

CONFIG_FILE = "config.toml"
#: Generator precisions (``auto``: float16 on CUDA, else float32).
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class DataSection:
    """``[data]``: where the fMRI is and which part of it to decode.

    Attributes
    ----------
    god : str or None
        The GOD folder (``--god``).
    subjects : tuple of int
        Subjects decoded, each on its own.
    rois : tuple of str
        ROI expressions (bdpy syntax), each decoded on its own.
    release : {"auto", "spm", "fmriprep"}
    normalization : {"run", "train", "none"}
    drop_nan_voxels : bool
    split : {"test", "imagery"}
        What the map fitted on perception predicts: the test images seen, or GOD's
        imagery trials (averaged per imagined category).
    """

    god: str | None = None
    subjects: tuple[int, ...] = (1,)
    rois: tuple[str, ...] = ("ROI_VC",)
    release: str = "auto"
    normalization: str = "run"
    drop_nan_voxels: bool = False
    split: str = "test"


@dataclass(frozen=True)
class MappingSection:
    """``[mapping]``: the ridge map from voxels to embeddings.

    Attributes
    ----------
    cv : int or "loo"
    cv_groups : {"none", "category"}
    alphas : str, tuple of float or None
        ``"LO:HI:N"`` (log-spaced), the values themselves (``[0.1, 10, 1000]``), or
        None for the default grid.
    alpha_per_target : bool
    n_voxels : int or None
    mapper : str
        The mapping model's registry name (:data:`fmri2image.mapping.MAPPERS`).
    options : dict
        Further constructor arguments of the mapper.
    """

    cv: int | str = 5
    cv_groups: str = "none"
    alphas: str | tuple[float, ...] | None = None
    alpha_per_target: bool = True
    n_voxels: int | None = None
    mapper: str = "ridge"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrievalSection:
    """``[retrieval]``: label retrieval (see ``fmri2image decode --help``).

    Attributes
    ----------
    databases : tuple of str
    k : int or None
    vote : {"nearest", "majority", "weighted"}
    """

    databases: tuple[str, ...] = ("prototypes",)
    k: int | None = None
    vote: str = "nearest"


@dataclass(frozen=True)
class GenerationSection:
    """``[generation]``: pictures from the decoded labels or embeddings.

    Attributes
    ----------
    generators : tuple of str
        Generator registry names (``invert``, ``sd15``, ...).
    options : dict
        Generator options (as ``generate --option``): a table per generator,
        ``options.invert = { iterations = 48 }``, or plain keys shared by all.
    conditions : tuple of str
        ``predicted`` (the method), ``true`` (the ceiling: the true stimulus
        embedding and label) and ``random`` (the floor: a random training
        stimulus's), each generated and evaluated.
    labels_from : str or None
        The retrieval database whose top-1 label conditions label-based generators
        (default: the first of ``retrieval.databases``).
    dtype : {"auto", "float32", "float16", "bfloat16"}
        Generator precision; ``auto``: float16 on CUDA, else float32.
    batch_size : int
    """

    generators: tuple[str, ...] = ("invert",)
    options: dict[str, Any] = field(default_factory=dict)
    conditions: tuple[str, ...] = ("predicted", "true", "random")
    labels_from: str | None = None
    dtype: str = "auto"
    batch_size: int = 4

    def options_for(self, generator: str) -> dict[str, Any]:
        """The options of one generator: its own table over the shared keys."""
        shared = {k: v for k, v in self.options.items() if not isinstance(v, dict)}
        own = self.options.get(generator)
        return {**shared, **(own if isinstance(own, dict) else {})}


@dataclass(frozen=True)
class EvaluationSection:
    """``[evaluation]``: the image metrics (``fmri2image evaluate --list-metrics``).

    Attributes
    ----------
    metrics : tuple of str or None
        None: every image metric that can run here.
    bootstrap : int
    weights : dict
        Local weights of metric networks (``{ alexnet = "alexnet.safetensors" }``).
    batch_size : int
    """

    metrics: tuple[str, ...] | None = None
    bootstrap: int = 2000
    weights: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on.

    Attributes
    ----------
    models : tuple of str
        Encoders compared side by side.
    device : str
    seed : int
    batch_size : int
        Images per encoder forward pass.
    out : str or None
        The output folder.
    cache : str or None
        Where stage artifacts are kept (default ``<out>/cache``); several output
        folders may share one.
    visualize : bool
        Write an image grid per subject and ROI (ground truth, then each model).
    data, mapping, retrieval, generation, evaluation : sections
    """

    models: tuple[str, ...] = ("effnet-lite0",)
    device: str = "cpu"
    seed: int = 0
    batch_size: int = 32
    out: str | None = None
    cache: str | None = None
    visualize: bool = True
    data: DataSection = field(default_factory=DataSection)
    mapping: MappingSection = field(default_factory=MappingSection)
    retrieval: RetrievalSection = field(default_factory=RetrievalSection)
    generation: GenerationSection = field(default_factory=GenerationSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)

    def to_dict(self) -> dict[str, Any]:
        return _io.strict_json(dataclasses.asdict(self))

    def decoding_configs(self) -> list[Any]:
        """One :class:`~fmri2image.pipeline.decoding.DecodingConfig` per subject × ROI."""
        from fmri2image.mapping import parse_alpha_grid
        from fmri2image.pipeline.decoding import DecodingConfig

        alphas: Any = self.mapping.alphas
        if isinstance(alphas, str):
            alphas = tuple(float(a) for a in parse_alpha_grid(alphas))
        return [
            DecodingConfig(
                subject=subject,
                roi=roi,
                encoders=self.models,
                release=self.data.release,
                drop_nan_voxels=self.data.drop_nan_voxels,
                normalization=self.data.normalization,
                cv=self.mapping.cv,
                cv_groups=self.mapping.cv_groups,
                alphas=alphas,
                alpha_per_target=self.mapping.alpha_per_target,
                n_voxels=self.mapping.n_voxels,
                databases=self.retrieval.databases,
                k=self.retrieval.k,
                vote=self.retrieval.vote,
                device=self.device,
                batch_size=self.batch_size,
                seed=self.seed,
                split=self.data.split,
                mapper=self.mapping.mapper,
                mapper_options=dict(self.mapping.options),
            )
            for subject in self.data.subjects
            for roi in self.data.rois
        ]

    def validate(self, *, injected: Collection[str] = ()) -> None:
        """Check every value with the stages' own validators (no I/O, no weights).

        ``injected``: model names given as built encoders (not in the registry).

        Raises
        ------
        ConfigError
        """
        from fmri2image.evaluation.evaluate import resolve_metrics
        from fmri2image.generation import GENERATORS

        if not self.models:
            raise ConfigError("models is empty; name at least one encoder (models = [...]).")
        from fmri2image.features import ENCODERS

        for name in self.models:
            if name not in injected:
                ENCODERS.get(name)  # unknown names: ConfigError with close matches
        if not self.data.subjects or not self.data.rois:
            raise ConfigError("data.subjects and data.rois must each name at least one value.")
        for cfg in self.decoding_configs():
            cfg.validate()
        from fmri2image.evaluation.networks import NETWORKS
        from fmri2image.generation.base import generator_options, make_options
        from fmri2image.pipeline.generate import CONDITIONS

        for name in self.generation.generators:
            GENERATORS.get(name)  # unknown names: ConfigError with close matches
        for key, value in self.generation.options.items():
            if isinstance(value, dict) and key not in self.generation.generators:
                raise ConfigError(
                    f"generation.options.{key} sets options of generator {key!r}, which is "
                    f"not in generation.generators ({', '.join(self.generation.generators)})."
                )
        for name in self.generation.generators:
            given = self.generation.options_for(name)
            if name == "retrieve":
                given.pop("database", None)  # the run passes its own image database
            cls = generator_options(name)
            if cls is not None:  # a plain factory function: its options are its own
                try:  # unknown names and bad values, as `generate --option` reports them
                    make_options(cls, given, generator=name)
                except ConfigError as exc:
                    raise ConfigError(
                        f"generation.options: {exc} (plain keys apply to every generator; "
                        f"set one generator's with options.{name} = {{ ... }})"
                    ) from exc
        bad = [c for c in self.generation.conditions if c not in CONDITIONS]
        if bad or not self.generation.conditions or "predicted" not in self.generation.conditions:
            raise ConfigError(
                f"generation.conditions must include predicted and may add true and random "
                f"(the bounds), got {list(self.generation.conditions)}."
            )
        if self.generation.batch_size < 1:
            raise ConfigError("generation.batch_size must be >= 1.")
        if self.generation.labels_from is not None:
            from fmri2image.pipeline.preflight import parse_database

            names = [parse_database(d).name for d in self.retrieval.databases]
            if self.generation.labels_from not in names:
                raise ConfigError(
                    f"generation.labels_from = {self.generation.labels_from!r} is not one of "
                    f"the retrieval databases' names ({', '.join(names)})."
                )
        if self.generation.dtype not in DTYPES:
            raise ConfigError(
                f"generation.dtype must be one of {', '.join(DTYPES)}, got "
                f"{self.generation.dtype!r}."
            )
        if self.evaluation.metrics is not None and not self.evaluation.metrics:
            raise ConfigError("evaluation.metrics is empty; name at least one metric.")
        resolve_metrics(self.evaluation.metrics, device=self.device)
        if self.evaluation.bootstrap < 1:
            raise ConfigError("evaluation.bootstrap must be >= 1.")
        if self.evaluation.batch_size < 1:
            raise ConfigError("evaluation.batch_size must be >= 1.")
        unknown_nets = sorted(set(self.evaluation.weights) - set(NETWORKS.names()))
        if unknown_nets:
            raise ConfigError(
                f"evaluation.weights names unknown network(s) {', '.join(unknown_nets)}; "
                f"metric networks: {', '.join(NETWORKS.names())}."
            )

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the resolved configuration to ``folder/config.toml`` (atomically)."""
        path = Path(folder) / CONFIG_FILE
        with _io.atomic_write(path, "w", encoding="utf-8") as fh:
            fh.write("# the resolved configuration of this run (fmri2image run --config)\n")
            fh.write(dump_toml(self.to_dict()))
        return path


_SECTIONS = {
    "data": DataSection,
    "mapping": MappingSection,
    "retrieval": RetrievalSection,
    "generation": GenerationSection,
    "evaluation": EvaluationSection,
}


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown(key: str, known: Sequence[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "."
    return ConfigError(f"{where}: unknown key {key!r}{hint} Known keys: {', '.join(known)}.")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` (from TOML) as ``annotation``, or a ConfigError saying what was expected."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[-1]
    if origin is tuple:
        if isinstance(value, str):
            value = [value]  # models = "clip" means one model
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}.")
        return tuple(_coerce(v, args[0], where) for v in value)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table (key = value pairs), got {value!r}.")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}.")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}.")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}.")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}.")
        return value
    raise ConfigError(f"{where}: cannot read a value of type {annotation}.")  # pragma: no cover


def _build(cls: type, table: Mapping[str, Any], where: str) -> Any:
    fields = _fields(cls)
    kwargs = {}
    for key, value in table.items():
        if key not in fields:
            raise _unknown(key, list(fields), where)
        if key in _SECTIONS and cls is RunConfig:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table.")
            kwargs[key] = _build(_SECTIONS[key], value, f"{where} [{key}]")
        else:
            kwargs[key] = _coerce(value, fields[key], f"{where}: {key}")
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    try:
        return _toml().loads(f"v = {text}")["v"]
    except Exception:
        return text  # a bare word: a string (mapping.cv=loo)


def _apply_set(table: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set mapping.cv=loo.")
    parts = key.split(".")
    where = f"--set {item}"
    top = _fields(RunConfig)
    if parts[0] not in top:
        raise _unknown(parts[0], list(top), where)
    if len(parts) == 1:
        if parts[0] in _SECTIONS:
            raise ConfigError(f"{where}: {parts[0]} is a section; set one of its keys.")
        table[parts[0]] = _parse_value(text.strip())
        return
    if len(parts) != 2 or parts[0] not in _SECTIONS:
        raise ConfigError(f"{where}: keys are 'name' or 'section.name' (sections: "
                          f"{', '.join(_SECTIONS)}).")  # fmt: skip
    section_fields = _fields(_SECTIONS[parts[0]])
    if parts[1] not in section_fields:
        raise _unknown(parts[1], list(section_fields), f"{where} [{parts[0]}]")
    table.setdefault(parts[0], {})[parts[1]] = _parse_value(text.strip())


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a TOML run configuration and apply ``--set`` overrides.

    Parameters
    ----------
    path : path, optional
        The TOML file (``--config``); None starts from the defaults.
    overrides : sequence of str
        ``"section.key=value"`` items, applied in order after the file.

    Returns
    -------
    RunConfig
        Typed; call :meth:`RunConfig.validate` to check the values themselves.

    Raises
    ------
    ConfigError
        Unreadable file, TOML syntax error, unknown key, value of the wrong type.
    """
    table: dict[str, Any] = {}
    where = "the defaults"
    if path is not None:
        where = f"--config {path}"
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read it ({exc.strerror or exc}).") from exc
        try:
            table = _toml().loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, _toml().TOMLDecodeError) as exc:
            raise ConfigError(f"{where} is not valid TOML: {exc}.") from exc
    for item in overrides:
        _apply_set(table, item)
    return _build(RunConfig, table, where)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{value} cannot be written to TOML.")  # strict_json removed these
        return repr(value)
    if isinstance(value, str):
        return _io_json_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {value!r} to TOML.")


def _io_json_string(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a valid TOML basic string


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _io_json_string(key)


def dump_toml(table: Mapping[str, Any]) -> str:
    """A configuration dict as TOML (``None`` values are left out: TOML has no null)."""
    lines = []
    tables = []
    for key, value in table.items():
        if value is None:
            continue
        if isinstance(value, dict) and key in _SECTIONS:
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_toml_value(value)}")
    for name, section in tables:
        lines.append(f"\n[{name}]")
        lines.extend(f"{_key(k)} = {_toml_value(v)}" for k, v in section.items() if v is not None)
    return "\n".join(lines) + "\n"
