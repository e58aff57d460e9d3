"""One validated, typed configuration for every pipeline command: a TOML file plus ``--set``.

``run``, ``compare``, ``decode`` (a run without generators), ``generate`` (a run's
configuration with a generator added) and ``demo`` all build one
:class:`RunConfig`::

    # experiment.toml
    models = ["resnet50", "vit", "clip"]
    device = "cuda"
    seed = 0

    [data]
    dataset = "god"              # the dataset's registry name (fmri2image.data.DATASETS)
    path = "/data/GOD"
    subjects = [1, 2, 3]
    rois = ["ROI_V1", "ROI_HVC", "ROI_VC"]
    options = { release = "auto" }   # the dataset's own options

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
the close matches; :meth:`RunConfig.validate` then checks every value with the
registries (encoders, mappers, generators, metrics, datasets), before any file is
read.  A run writes its resolved configuration beside its results
(:meth:`RunConfig.save`: ``config.toml``, which :func:`load_config` reads back
unchanged).  Files written by earlier versions still read: ``data.god`` is
``data.path`` and ``data.release`` is ``data.options.release``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
import os
import re
import sys
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmri2image import _io
from fmri2image._manifest import VERIFY_MODES
from fmri2image.errors import ConfigError

__all__ = [
    "CONDITIONS",
    "DTYPES",
    "EXECUTORS",
    "DataSection",
    "EvaluationSection",
    "GenerationSection",
    "MappingSection",
    "RetrievalSection",
    "RunConfig",
    "dump_toml",
    "load_config",
    "parse_toml",
]

CONFIG_FILE = "config.toml"
#: Generator precisions (``auto``: float16 on CUDA, else float32).
DTYPES = ("auto", "float32", "float16", "bfloat16")
#: What a generator is fed: the decoded embedding and label (the method), the true
#: stimulus's (the ceiling) or a random training stimulus's (the floor).
CONDITIONS = ("predicted", "true", "random")
#: Where the pictures are made: in this process, or by Ray actors (one GPU each).
EXECUTORS = ("local", "ray")
NORMALIZATIONS = ("run", "train", "none")
CV_GROUPS = ("none", "category")
VOTES = ("nearest", "majority", "weighted")
_DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class DataSection:
    """``[data]``: which dataset, where, and which part of it to decode.

    Attributes
    ----------
    dataset : str
        The dataset's registry name (``--dataset``; ``fmri2image.data.DATASETS``).
    path : str or None
        Its folder (``--data``, alias ``--god``; key alias ``god``).
    subjects : tuple of int
        Subjects decoded, each on its own.
    rois : tuple of str
        ROI expressions, each decoded on its own (bdpy syntax for the BData
        datasets); empty: the dataset's :attr:`~fmri2image.data.Dataset.default_rois`
        (:meth:`roi_list`).
    split : str
        What the map fitted on perception predicts: the test images seen, the
        imagery trials (averaged per imagined stimulus), or another of the dataset's
        :attr:`~fmri2image.data.Dataset.eval_splits`.
    normalization : {"run", "train", "none"}
    drop_nan_voxels : bool
    options : dict
        The dataset's own options (GOD: ``release``; ``--release``).
    """

    dataset: str = "god"
    path: str | None = None
    subjects: tuple[int, ...] = (1,)
    rois: tuple[str, ...] = ()
    split: str = "test"
    normalization: str = "run"
    drop_nan_voxels: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def roi_list(self) -> tuple[str, ...]:
        """The ROIs decoded: :attr:`rois`, or the dataset's default ROIs."""
        if self.rois:
            return tuple(self.rois)
        from fmri2image.data.dataset import dataset_class

        return tuple(dataset_class(self.dataset).default_rois)

    def open(self) -> Any:
        """The :class:`~fmri2image.data.dataset.Dataset` (no file is read)."""
        from fmri2image.data.dataset import get_dataset

        if not self.path:
            raise ConfigError("No data folder: pass --data DIR (or set data.path in --config).")
        return get_dataset(self.dataset, self.path, **self.options)


@dataclass(frozen=True)
class MappingSection:
    """``[mapping]``: the map from voxels to embeddings.

    Attributes
    ----------
    mappers : tuple of str
        The mapping models' registry names (:data:`fmri2image.mapping.MAPPERS`); each
        is fitted for every model, subject and ROI, and the tables compare them
        (``mapper = "ridge"``, the key of earlier versions, is one of them).
    cv : int or "loo"
    cv_groups : {"none", "category"}
    alphas : str, tuple of float or None
        ``"LO:HI:N"`` (log-spaced), the values themselves (``[0.1, 10, 1000]``), or
        None for the default grid.
    alpha_per_target : bool
    n_voxels : int or None
    options : dict
        Further constructor arguments of the mappers: keys shared by every mapper, and a
        table per mapper (``[mapping.options.mlp]``) over them; for ``ridge`` they
        override the keys above.
    """

    cv: int | str = 5
    cv_groups: str = "none"
    alphas: str | tuple[float, ...] | None = None
    alpha_per_target: bool = True
    n_voxels: int | None = None
    mappers: tuple[str, ...] = ("ridge",)
    options: dict[str, Any] = field(default_factory=dict)

    def alpha_grid(self) -> tuple[float, ...] | None:
        """The alpha grid as numbers (None: the mapper's default)."""
        if self.alphas is None:
            return None
        if isinstance(self.alphas, str):
            from fmri2image.mapping import parse_alpha_grid

            return tuple(float(a) for a in parse_alpha_grid(self.alphas))
        return tuple(float(a) for a in self.alphas)

    def options_for(self, mapper: str) -> dict[str, Any]:
        """The constructor arguments given to one mapper: its own table over the
        shared keys."""
        shared = {k: v for k, v in self.options.items() if not isinstance(v, dict)}
        own = self.options.get(mapper)
        return {**shared, **(own if isinstance(own, dict) else {})}

    def make_mapper(
        self, mapper: str, *, device: str | None = None, seed: int | None = None
    ) -> Any:
        """A new, unfitted mapping model ``mapper`` from the mapper registry.

        ``device`` and ``seed`` (the run's) fill the mapper's ``device`` and
        ``random_state`` arguments where it takes them and the options leave them out.
        """
        import inspect

        from fmri2image.mapping import DEFAULT_ALPHAS, get_mapper, mapper_class

        options = self.options_for(mapper)
        if mapper != "ridge":
            params = inspect.signature(mapper_class(mapper)).parameters
            if device is not None and "device" in params:
                options.setdefault("device", device)
            if seed is not None and "random_state" in params:
                options.setdefault("random_state", seed)
            return get_mapper(mapper, **options)
        ridge = {
            "alphas": self.alpha_grid() or DEFAULT_ALPHAS,
            "cv": self.cv,
            "alpha_per_target": self.alpha_per_target,
            "n_voxels": self.n_voxels,
            # No shuffling: contiguous folds keep the correlated trials of a run together.
        }
        return get_mapper("ridge", **{**ridge, **options})


@dataclass(frozen=True)
class RetrievalSection:
    """``[retrieval]``: label retrieval.

    Attributes
    ----------
    databases : tuple of str
        Each ``prototypes`` (the encoder's ImageNet-1k head), ``text-prototypes`` /
        ``text-prototypes:21k`` (CLIP text embeddings), a folder from ``fmri2image
        extract``, or an ImageNet-style image folder; every one is used with every
        model.
    k : int or None
        Neighbours per query; None: 5 for prototypes, 50 for folders.
    vote : {"nearest", "majority", "weighted"}
    class_map : str or None
        A JSON object or CSV ``folder,wnid`` naming the WordNet id of image folders'
        class folders (a folder of class names, such as Kaggle's "imagenet-256",
        whose names are ambiguous or unknown in WordNet).
    skip_unresolved : bool
        Leave such class folders out instead of refusing the folder.
    hubness : {"none", "center", "csls"}
        Hubness correction of the k-NN search (docs/retrieval.md, "Hubness"):
        ``center`` subtracts the training-mean embedding from the predictions and
        the database's mean from its items; ``csls`` (the default) scores
        ``2 cos - r(i)`` on centered vectors, ``r(i)`` from the training stimuli.
    csls_k : int
        Reference neighbours of CSLS's ``r(i)``.
    """

    databases: tuple[str, ...] = ("prototypes",)
    k: int | None = None
    vote: str = "nearest"
    class_map: str | None = None
    skip_unresolved: bool = False
    hubness: str = "csls"
    csls_k: int = 10


@dataclass(frozen=True)
class GenerationSection:
    """``[generation]``: pictures from the decoded labels or embeddings.

    Attributes
    ----------
    generators : tuple of str
        Generator registry names (``invert``, ``sd15``, ...); empty: decode only.
    options : dict
        Generator options: a table per generator, ``options.invert = { iterations
        = 48 }``, or plain keys shared by all.
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
        Requests per generator call, at least the generator's own batch
        (``Generator.preferred_batch``: invert's ``batch_size`` option).
    seed : int or None
        Seed of the pictures (each image's derives from it and its stem); None: the
        run's ``seed``.
    init : str or None
        Initial image of the other generators (img2img, ``invert``): a generator whose
        pictures the run makes first (``"lowlevel"``: the two-pathway reconstruction;
        ``"invert"``: the feature inversion of the same embedding), or a folder of
        ``<stem>.png``.
    executor : {"local", "ray"}
        ``ray``: one generator replica per Ray actor (one GPU each on CUDA).
    workers : int or None
        Ray actors (default: the cluster's GPUs, or 1 on a CPU).
    """

    generators: tuple[str, ...] = ("invert",)
    options: dict[str, Any] = field(default_factory=dict)
    conditions: tuple[str, ...] = CONDITIONS
    labels_from: str | None = None
    dtype: str = "auto"
    batch_size: int = 4
    seed: int | None = None
    init: str | None = None
    executor: str = "local"
    workers: int | None = None

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
    executor : {"local", "ray"}
        Where the stages to compute run: one after another in this process, or as
        Ray tasks (:mod:`fmri2image.pipeline.executor`; the cache on a file system
        every node mounts).  Not part of any stage key: a local and a Ray run share
        the cache.
    ray_address : str or None
        The Ray cluster of ``executor = "ray"`` (default: ``RAY_ADDRESS``, else a
        local Ray instance).
    verify : str
        How cached artifacts are verified before reuse: ``fast`` trusts a file whose
        size, times and inode match its last full check, ``full`` re-hashes every
        file (:mod:`fmri2image._manifest`).  In no stage key.
    data, mapping, retrieval, generation, evaluation : sections
    datasets : tuple of dict
        Several datasets compared in one run (``[[datasets]]`` tables of ``[data]``
        keys; :mod:`fmri2image.pipeline.datasets`); empty: the ``[data]`` section's.
    """

    models: tuple[str, ...] = ("effnet-lite0",)
    device: str = "cpu"
    seed: int = 0
    batch_size: int = 32
    out: str | None = None
    cache: str | None = None
    visualize: bool = True
    executor: str = "local"
    ray_address: str | None = None
    verify: str = "fast"
    data: DataSection = field(default_factory=DataSection)
    mapping: MappingSection = field(default_factory=MappingSection)
    retrieval: RetrievalSection = field(default_factory=RetrievalSection)
    generation: GenerationSection = field(default_factory=GenerationSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    datasets: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _io.strict_json(dataclasses.asdict(self))

    @property
    def generation_seed(self) -> int:
        """The seed of the pictures (``generation.seed``, else the run's)."""
        g = self.generation.seed
        return self.seed if g is None else g

    @property
    def generator_dtype(self) -> str:
        """``generation.dtype`` resolved (``auto``: float16 on CUDA, else float32)."""
        if self.generation.dtype != "auto":
            return self.generation.dtype
        return "float16" if str(self.device).startswith("cuda") else "float32"

    def validate(
        self, *, encoders: Collection[str] = (), generators: Mapping[str, Any] | None = None
    ) -> None:
        """Check every value with the registries' own validators (no file is read).

        Parameters
        ----------
        encoders : collection of str
            Model names given as built encoders (not looked up in the registry).
        generators : mapping, optional
            Built generators by name (their options are theirs).

        Raises
        ------
        ConfigError
            Naming the flag (and the key) and an accepted value.
        """
        _check_top(self, encoders)
        _check_data(self.data)
        _check_mapping(self.mapping)
        _check_retrieval(self.retrieval)
        _check_generation(self, generators or {})
        _check_evaluation(self.evaluation, self.device)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the resolved configuration to ``folder/config.toml`` (atomically)."""
        path = Path(folder) / CONFIG_FILE
        with _io.atomic_write(path, "w", encoding="utf-8") as fh:
            fh.write("# the resolved configuration of this run (fmri2image run --config)\n")
            fh.write(dump_toml(self.to_dict()))
        return path

    def replace(self, **changes: Any) -> RunConfig:
        """This configuration with top-level fields or ``section__field`` values
        replaced (``data__subjects=(1, 2)``); None values leave a field as it is."""
        top: dict[str, Any] = {}
        sections: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            if value is None:
                continue
            section, sep, field_name = name.partition("__")
            if sep:
                sections.setdefault(section, {})[field_name] = value
            else:
                top[name] = value
        for section, values in sections.items():
            top[section] = dataclasses.replace(getattr(self, section), **values)
        return dataclasses.replace(self, **top)


# ---------------------------------------------------------------------- validation
def _positive_int(name: str, value: Any, *, allow_none: bool = False, low: int = 1) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(f"{name} must be {what}, got {value!r}.")


def _one_of(name: str, value: Any, choices: Sequence[str], why: str = "") -> None:
    if value not in choices:
        raise ConfigError(
            f"{name} must be one of {', '.join(choices)}, got {value!r}{'; ' + why if why else ''}."
        )


def _check_top(config: RunConfig, injected: Collection[str]) -> None:
    from fmri2image.features import ENCODERS

    if not config.models:
        raise ConfigError(
            "models is empty; name at least one encoder (--model NAME, or models = [...])."
        )
    if len(set(config.models)) != len(config.models):
        raise ConfigError(f"--model lists an encoder twice: {list(config.models)}.")
    for name in config.models:
        if name not in injected:
            ENCODERS.get(name)  # unknown names: ConfigError with close matches
    if not _DEVICE_RE.match(str(config.device)):
        raise ConfigError(
            f"--device {config.device!r} is not a torch device; use cpu, cuda, cuda:N or mps."
        )
    _positive_int("--batch-size (batch_size)", config.batch_size)
    _one_of("--graph-executor (executor)", config.executor, EXECUTORS)
    if config.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError(
            "--graph-executor ray (executor) runs the stages on a Ray cluster, but the "
            "package 'ray' is not installed. Install it with: pip install 'fmri2image[ray]'"
        )
    _positive_int("--seed (seed)", config.seed, low=0)
    _one_of(
        "--verify (verify)", config.verify, VERIFY_MODES,
        "fast trusts a cached file whose size, times and inode match its last full "
        "check, full re-hashes every cached file",
    )  # fmt: skip


def _check_data(data: DataSection) -> None:
    from fmri2image.data.dataset import dataset_class, make_dataset_options

    cls = dataset_class(data.dataset)  # unknown names: ConfigError with close matches
    make_dataset_options(cls.Options, data.options, dataset=data.dataset)
    rois = data.roi_list()
    if not data.subjects or not rois:
        raise ConfigError("data.subjects and data.rois must each name at least one value.")
    for s in data.subjects:
        _positive_int("--subject (data.subjects)", s)
    if len(set(data.subjects)) != len(data.subjects) or len(set(rois)) != len(rois):
        raise ConfigError("data.subjects and data.rois must not repeat a value.")
    for roi in rois:
        if not str(roi).strip():
            raise ConfigError("--roi is empty; pass an ROI expression such as ROI_VC or ROI_HVC.")
    _one_of(
        "--split (data.split)",
        data.split,
        cls.eval_splits,
        f"of dataset {data.dataset!r}: test decodes the seen test images, imagery the "
        "imagined ones with the map fitted on perception",
    )
    _one_of("--normalization (data.normalization)", data.normalization, NORMALIZATIONS)


def _check_mapping(m: MappingSection) -> None:
    cv = m.cv
    if isinstance(cv, str):
        if cv != "loo":
            raise ConfigError(f"--cv must be a number of folds (>= 2) or loo, got {cv!r}.")
        if m.cv_groups == "category":
            raise ConfigError(
                "--cv loo leaves out one sample at a time, so it cannot keep a category's "
                "samples on one side; pass --cv-groups none with --cv loo, or a number of "
                "folds such as --cv 5."
            )
        if m.n_voxels is not None:
            raise ConfigError(
                "--n-voxels with --cv loo would select voxels with each left-out sample; "
                "use a number of folds (--cv 5) with --n-voxels, or drop --n-voxels."
            )
    elif isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise ConfigError(f"--cv (mapping.cv) must be a number of folds (>= 2) or loo, got {cv!r}.")
    _one_of("--cv-groups (mapping.cv_groups)", m.cv_groups, CV_GROUPS)
    try:
        alphas = m.alpha_grid()
    except ConfigError as exc:
        raise ConfigError(f"--alphas (mapping.alphas): {exc}") from exc
    if alphas is not None and not (alphas and all(math.isfinite(a) and a > 0 for a in alphas)):
        raise ConfigError(
            f"--alphas (mapping.alphas) must give positive finite values (LO:HI:N, e.g. "
            f"1e-2:1e10:13), got {m.alphas!r}."
        )
    _positive_int("--n-voxels (mapping.n_voxels)", m.n_voxels, allow_none=True)
    if not m.mappers:
        raise ConfigError("--mappers (mapping.mappers) is empty; name at least one, e.g. ridge.")
    if len(set(m.mappers)) != len(m.mappers):
        raise ConfigError(f"--mappers (mapping.mappers) names a mapper twice: {list(m.mappers)}.")
    from fmri2image.mapping import MAPPERS

    for name in m.mappers:
        MAPPERS.get(name)  # an unknown name, with close matches
    unknown = sorted(k for k, v in m.options.items() if isinstance(v, dict) and k not in m.mappers)
    if unknown:
        raise ConfigError(
            f"mapping.options has a table for {', '.join(unknown)}, which --mappers "
            f"(mapping.mappers: {', '.join(m.mappers)}) does not run."
        )
    for name in m.mappers:
        try:  # an unknown parameter, then the mapper's own check of its arguments
            m.make_mapper(name).check_params()
        except ConfigError as exc:
            raise ConfigError(f"mapping ({name}): {exc}") from exc


def _check_retrieval(r: RetrievalSection) -> None:
    from fmri2image.features import parse_database
    from fmri2image.retrieval.hubness import HUBNESS

    for db in r.databases:
        parse_database(str(db).strip())  # keyword forms (text-prototypes:9k); folders later
    _positive_int("--k (retrieval.k)", r.k, allow_none=True)
    _one_of("--vote (retrieval.vote)", r.vote, VOTES)
    _one_of("--hubness (retrieval.hubness)", r.hubness, HUBNESS)
    _positive_int("--csls-k (retrieval.csls_k)", r.csls_k)
    if r.class_map is not None:
        from fmri2image.errors import DataFormatError
        from fmri2image.features.databases import load_class_map

        try:
            load_class_map(r.class_map)
        except (ConfigError, DataFormatError) as exc:
            raise ConfigError(f"--class-map (retrieval.class_map): {exc}") from exc


def _check_generation(config: RunConfig, injected: Mapping[str, Any]) -> None:
    from fmri2image.generation import GENERATORS
    from fmri2image.generation.base import generator_options, make_options

    g = config.generation
    for name in g.generators:
        if name not in injected:
            GENERATORS.get(name)  # unknown names: ConfigError with close matches
    if len(set(g.generators)) != len(g.generators):
        raise ConfigError(f"--generators lists a generator twice: {list(g.generators)}.")
    for key, value in g.options.items():
        # A table of a generator the run does not use is kept unused (--generators
        # overriding a configuration); one that names no generator is a mistake.
        if isinstance(value, dict) and key not in g.generators and key not in GENERATORS:
            raise ConfigError(
                f"generation.options.{key} sets options of generator {key!r}, which is "
                f"not a registered generator (generation.generators: "
                f"{', '.join(g.generators) or 'none'}); check its name."
            )
    for name in g.generators:
        given = g.options_for(name)
        if name in injected:
            continue
        for option in GENERATORS.get(name).needs.inputs:
            given.pop(option, None)  # the run supplies it (PIPELINE_INPUTS)
        cls = generator_options(name)
        if cls is not None:  # a plain factory function: its options are its own
            try:  # unknown names and bad values, as `generate --option` reports them
                make_options(cls, given, generator=name)
            except (ConfigError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"generation.options: {exc} (plain keys apply to every generator; "
                    f"set one generator's with options.{name} = {{ ... }})"
                ) from exc
    bad = [c for c in g.conditions if c not in CONDITIONS]
    if bad or not g.conditions or len(set(g.conditions)) != len(g.conditions):
        raise ConfigError(
            f"generation.conditions (--condition) must name each of predicted, true and random "
            f"at most once, at least one of them; got {list(g.conditions)}."
        )
    _positive_int("--batch-size (generation.batch_size)", g.batch_size)
    _one_of("--dtype (generation.dtype)", g.dtype, DTYPES)
    _one_of("--executor (generation.executor)", g.executor, EXECUTORS)
    _positive_int("--workers (generation.workers)", g.workers, allow_none=True)
    _positive_int("--seed (generation.seed)", g.seed, allow_none=True, low=0)
    if g.labels_from is not None:
        from fmri2image.pipeline.preflight import database_name

        names = [database_name(d) for d in config.retrieval.databases]
        if g.labels_from not in names:
            raise ConfigError(
                f"--labels-from {g.labels_from} (generation.labels_from) is not one of "
                f"the retrieval databases' names ({', '.join(names)})."
            )
    if g.init is not None and not str(g.init).strip():
        raise ConfigError(
            "--init (generation.init) must be a generator (lowlevel, invert) or a folder of "
            "pictures."
        )


def _check_evaluation(e: EvaluationSection, device: str) -> None:
    from fmri2image.evaluation.evaluate import resolve_metrics
    from fmri2image.evaluation.networks import NETWORKS

    if e.metrics is not None and not e.metrics:
        raise ConfigError("evaluation.metrics is empty; name at least one metric.")
    resolve_metrics(e.metrics, device=device)
    _positive_int("--bootstrap (evaluation.bootstrap)", e.bootstrap)
    _positive_int("evaluation.batch_size", e.batch_size)
    unknown = sorted(set(e.weights) - set(NETWORKS.names()))
    if unknown:
        raise ConfigError(
            f"evaluation.weights names unknown network(s) {', '.join(unknown)}; "
            f"metric networks: {', '.join(NETWORKS.names())}."
        )


# ---------------------------------------------------------------------- TOML
_SECTIONS = {
    "data": DataSection,
    "mapping": MappingSection,
    "retrieval": RetrievalSection,
    "generation": GenerationSection,
    "evaluation": EvaluationSection,
}
#: Keys of earlier versions: section -> old key -> (new key, or (table, key) inside it).
_ALIASES: dict[str, dict[str, str | tuple[str, str]]] = {
    "data": {"god": "path", "release": ("options", "release")},
    "mapping": {"mapper": "mappers"},
}


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def parse_toml(text: str, where: str = "the configuration") -> dict[str, Any]:
    """TOML text as a dict (ConfigError naming ``where`` when it does not parse)."""
    try:
        return _toml().loads(text)
    except _toml().TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}.") from exc


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


def _resolve_aliases(section: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """``table`` with the keys of earlier versions moved to their new place."""
    out = dict(table)
    for old, new in _ALIASES.get(section, {}).items():
        if old not in out:
            continue
        value = out.pop(old)
        if isinstance(new, tuple):
            inner = dict(out.get(new[0]) or {})
            inner.setdefault(new[1], value)
            out[new[0]] = inner
        else:
            out.setdefault(new, value)
    return out


def _build(cls: type, table: Mapping[str, Any], where: str, section: str = "") -> Any:
    fields = _fields(cls)
    kwargs = {}
    for key, value in _resolve_aliases(section, table).items():
        if key not in fields:
            raise _unknown(key, list(fields), where)
        if key in _SECTIONS and cls is RunConfig:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table.")
            kwargs[key] = _build(_SECTIONS[key], value, f"{where} [{key}]", key)
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
    if len(parts) not in (2, 3) or parts[0] not in _SECTIONS:
        raise ConfigError(f"{where}: keys are 'name', 'section.name' or 'section.table.key' "
                          f"(sections: {', '.join(_SECTIONS)}).")  # fmt: skip
    section_fields = _fields(_SECTIONS[parts[0]])
    aliases = _ALIASES.get(parts[0], {})
    if parts[1] not in section_fields and parts[1] not in aliases:
        raise _unknown(parts[1], list(section_fields), f"{where} [{parts[0]}]")
    section = table.setdefault(parts[0], {})
    value = _parse_value(text.strip())
    if len(parts) == 3:  # one key of a table: mapping.options.mlp={ hidden = 1024 }
        if (
            section_fields.get(parts[1]) is not dict
            and typing.get_origin(section_fields.get(parts[1])) is not dict
        ):
            raise ConfigError(f"{where}: {parts[0]}.{parts[1]} is not a table.")
        section[parts[1]] = {**dict(section.get(parts[1]) or {}), parts[2]: value}
        return
    new = aliases.get(parts[1], parts[1])
    if isinstance(new, tuple):  # an old key that now lives inside a table
        section[new[0]] = {**dict(section.get(new[0]) or {}), new[1]: value}
    else:
        section[new] = value


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
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where} is not valid TOML: {exc}.") from exc
        table = parse_toml(text, where)
    table = {
        k: _resolve_aliases(k, v) if k in _SECTIONS and isinstance(v, dict) else v
        for k, v in table.items()
    }
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
        return _json_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {value!r} to TOML.")


def _json_string(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a valid TOML basic string


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _json_string(key)


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
