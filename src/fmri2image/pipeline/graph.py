"""Stages, artifacts and a small cached graph runner: the seams the pipeline hangs on.

A :class:`Stage` is one step of the pipeline (stimulus features, mapping,
retrieval, generation, evaluation, ...): its name, the names of the stages whose
artifacts it reads, *its own slice* of the configuration, a code ``version``, and
two functions: ``run(ctx)`` writes its artifact into ``ctx.folder``, ``load(folder)``
reads it back.  Components (encoders, mapping models, generators, metrics) are
injected through closures or ``ctx.inputs``, never built from global state, so a
test runs a graph with tiny ones.

:class:`Graph` runs stages in dependency order with a cache::

    <cache>/<stage>/<key>/artifact.json    the artifact's manifest
    <cache>/<stage>/<key>/...              the files its run() wrote

* **Key.** SHA-256 of the stage name and version, its config, the keys of its inputs
  and the fmri2image version.  Change one stage's config and exactly that stage and
  the stages downstream of it get new keys.
* **Reuse.** An artifact is reused only when its manifest is intact (own checksum)
  and every file it lists matches its SHA-256; anything else is recomputed, with a
  log line saying why.  ``verify="fast"`` (the default) skips reading a file whose
  size, times, inode and device match the fingerprint recorded when it was last
  hashed (``<cache>/.fingerprints/<stage>/<key[:20]>.json``, apart from the artifact
  folder; :mod:`fmri2image._manifest`); ``verify="full"`` hashes every file.
* **Atomic.** ``run`` writes into a hidden staging folder; the manifest is written
  last and the folder renamed into place, so a run killed at any point leaves
  either no artifact or a complete one, and the rerun resumes with the stages that
  finished.
* **Force.** ``force=("mapping",)`` recomputes that stage and everything downstream.
* **Resume.** A *resumable* stage (per-image generation, sharded features) keeps what
  a killed run finished in ``.partial-<key>``, and a damaged artifact of the same key
  becomes that folder: the stage verifies each item and makes only what is missing
  or changed.
* **Collection.** The next run that holds the lock removes what killed runs left:
  staging and trash folders, and ``.partial-*`` folders that it does not resume and
  that have not changed for a day (:data:`STALE_PARTIAL_SECONDS`); its log lists them.
* **One writer.** The runner holds the cache's writer lock (:mod:`fmri2image._lock`).
* **Executors.** By default the stages run one after another in this process.
  ``Graph.run(executor=...)`` hands the stages to compute to an executor instead
  (:class:`~fmri2image.pipeline.executor.RayExecutor`: Ray tasks, each stage as soon
  as its inputs exist); each task runs :func:`compute_stage`, the same staging,
  manifest and rename as a local run, under the lock this process holds.

Each run returns :class:`StageRecord` s (reused or computed, seconds, key), which is
what the tests and the progress lines read; timing never decides anything.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmri2image import _io
from fmri2image._io import safe_name
from fmri2image._manifest import (
    check_verify,
    manifest_problem,
    record_fingerprints,
    write_manifest,
)
from fmri2image._manifest import read_manifest as _read
from fmri2image.errors import ConfigError

__all__ = [
    "MANIFEST",
    "Graph",
    "GraphResult",
    "Stage",
    "StageContext",
    "StageRecord",
    "compute_stage",
    "read_manifest",
    "reusable",
    "safe_name",
    "stage_key",
]

log = logging.getLogger(__name__)

MANIFEST = "artifact.json"
FORMAT = "fmri2image.artifact"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StageContext:
    """What a stage's ``run`` gets.

    Attributes
    ----------
    folder : Path
        Where to write the artifact (an empty staging folder).
    config : mapping
        The stage's own config.
    inputs : dict of str to Any
        The loaded artifacts of its input stages, by stage name.
    input_folders : dict of str to Path
        Their folders.
    progress : bool
    """

    folder: Path
    config: Mapping[str, Any]
    inputs: dict[str, Any]
    input_folders: dict[str, Path]
    progress: bool = True


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    Attributes
    ----------
    name : str
        Unique in its graph (``"features:effnet-lite0"``, ``"mapping:effnet-lite0"``).
    run : callable
        ``run(ctx: StageContext) -> None``: writes the artifact's files into
        ``ctx.folder``.
    load : callable
        ``load(folder: Path) -> Any``: reads the artifact back (what downstream stages
        receive in ``ctx.inputs``).
    config : mapping
        The stage's slice of the configuration (JSON-serializable); part of its key.
    inputs : tuple of str
        Names of the stages it reads.
    version : str
        Bump when the stage's code changes what it writes.
    prepare : callable, optional
        ``prepare() -> None``: builds what ``run`` will need (loads its model, checks
        its weights).  Before any stage runs, the graph prepares every stage it is
        about to compute, so a missing model stops the run in seconds, not after an
        hour of upstream work.
    resumable : bool
        The stage's ``run`` resumes from what an interrupted run of the same key left
        in its folder (per-image generation, sharded feature extraction), verifying
        it.  Its staging folder is then named by the key and kept when ``run`` fails,
        so a rerun continues instead of starting over; ``force`` empties it first.
    resources : {"cpu", "gpu"}
        What the stage computes on: ``"gpu"`` for a stage that runs a network
        (features, databases, prototypes, pictures, metric networks), which a Ray
        executor gives a GPU of its own when the run's device is CUDA; ``"cpu"``
        (mapping, retrieval, data) asks for one CPU.  Not part of the key.
    """

    name: str
    run: Callable[[StageContext], None]
    load: Callable[[Path], Any]
    config: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    version: str = "1"
    resumable: bool = False
    prepare: Callable[[], None] | None = None
    resources: str = "cpu"

    def __post_init__(self) -> None:
        if self.resources not in ("cpu", "gpu"):
            raise ValueError(
                f"Stage {self.name!r}: resources must be 'cpu' or 'gpu', not {self.resources!r}."
            )


@dataclass(frozen=True)
class StageRecord:
    """What happened to one stage in a run."""

    name: str
    key: str
    reused: bool
    seconds: float
    folder: Path
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
            "folder": str(self.folder),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class GraphResult:
    """Artifacts (loaded) and the record of every stage, in run order."""

    values: dict[str, Any]
    records: tuple[StageRecord, ...]

    def record(self, name: str) -> StageRecord:
        return next(r for r in self.records if r.name == name)

    @property
    def computed(self) -> list[str]:
        return [r.name for r in self.records if not r.reused]


def stage_key(stage: Stage, input_keys: Mapping[str, str]) -> str:
    """SHA-256 of what determines the stage's artifact."""
    from fmri2image import __version__

    payload = {
        "stage": stage.name,
        "version": stage.version,
        "config": stage.config,
        "inputs": {name: input_keys[name] for name in sorted(stage.inputs)},
        "fmri2image": __version__,
    }
    return _io.json_sha256(payload)


#: Folder of the cache that holds the artifacts' fingerprints, one sub-folder per stage.
FINGERPRINTS = ".fingerprints"


def _fingerprint(folder: Path) -> Path:
    """The fingerprint of the artifact in ``folder`` (``<cache>/<stage>/<key20>``):
    ``<cache>/.fingerprints/<stage>/<key20>.json``, neither in the artifact (whose
    files are exactly what its stage wrote) nor beside it (a stage's folder holds
    its artifacts only)."""
    return folder.parent.parent / FINGERPRINTS / folder.parent.name / f"{folder.name}.json"


def _fingerprint_where(folder: Path) -> Path:
    """:func:`_fingerprint`, its folder made when the cache holds the stage's folder
    (recording one is best-effort and never makes a cache: nothing is made if not)."""
    where = _fingerprint(folder)
    if folder.parent.is_dir():
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only cache: no fingerprint, no speed-up
            pass
    return where


def _write_manifest(folder: Path, stage: Stage, key: str, inputs: dict[str, str], seconds: float):
    from fmri2image import __version__

    # ``folder`` is a staging folder beside the artifact's final one (named by the key,
    # see Graph.folder); renaming it keeps its files' inodes and times.
    write_manifest(
        folder / MANIFEST,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "stage": stage.name,
            "stage_version": stage.version,
            "key": key,
            "config": dict(stage.config),
            "inputs": inputs,
            "fmri2image_version": __version__,
            "seconds": round(seconds, 3),
        },
        folder=folder,
        fingerprint=_fingerprint_where(folder.parent / key[:20]),
    )


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an artifact folder, its own checksum verified.

    Raises
    ------
    DataFormatError
        Missing, not JSON, not an artifact manifest, or its checksum does not match.
    """
    return _read(Path(folder) / MANIFEST, format=FORMAT)


def _problem(folder: Path, key: str, verify: str = "fast", due: list | None = None) -> str | None:
    """Why the artifact in ``folder`` cannot be reused (None: it can); ``verify``:
    ``"fast"`` or ``"full"`` (:func:`fmri2image._manifest.manifest_problem`).  The
    fingerprint of a full check that passed is appended to ``due``, for the caller
    to record once it holds the cache's lock (None: not recorded)."""
    problem = manifest_problem(
        folder / MANIFEST,
        format=FORMAT,
        identity={"key": key},
        verify=verify,
        fingerprint=_fingerprint(folder),
        due=due if due is not None else [],
    )
    if problem is not None and problem.endswith("belongs to another key"):
        return "its manifest belongs to another key"
    return problem


def reusable(cache: str | os.PathLike, stage: Stage, *, verify: str = "fast") -> Path | None:
    """The verified artifact folder of a stage without inputs, if the cache has one
    (planning reads it instead of recomputing what it needs to check); ``verify``:
    ``"fast"`` or ``"full"``, as in :meth:`Graph.problems`."""
    if stage.inputs:
        raise ValueError(f"reusable() answers for stages without inputs, not {stage.name!r}.")
    check_verify(verify)
    key = stage_key(stage, {})
    folder = Path(cache) / safe_name(stage.name) / key[:20]
    return folder if _problem(folder, key, verify) is None else None


#: A resumable stage's ``.partial-*`` folder that no stage of the running graph
#: resumes is collected once it has not changed for this long (seconds): a run on a
#: shared cache with another configuration keeps a killed run's work for a day.
STALE_PARTIAL_SECONDS = 24 * 3600


def _remove_leftovers(cache: Path, resumed: set[str]) -> list[str]:
    """Collect what killed runs (SIGKILL, power loss) left in ``cache``; with the
    writer lock held, no live run owns any of it.

    Staging and trash folders go at once.  A resumable stage's ``.partial-<key>``
    folder is kept when this run resumes it (``resumed``: paths relative to the
    cache) or when it changed within :data:`STALE_PARTIAL_SECONDS` (another
    configuration's run on the same cache may resume it); otherwise it is stale and
    collected.  Returns the collected paths, relative to the cache, for the log.
    """
    collected: list[str] = []
    now = time.time()
    for pattern in ("*/.staging-*", "*/.trash-*", "*/.partial-*"):
        for leftover in sorted(cache.glob(pattern)):
            rel = leftover.relative_to(cache).as_posix()
            if pattern.endswith(".partial-*"):
                try:
                    age = now - leftover.stat().st_mtime
                except OSError:
                    continue
                if rel in resumed or age < STALE_PARTIAL_SECONDS:
                    continue
            shutil.rmtree(leftover, ignore_errors=True)
            collected.append(rel)
    return collected


class Graph:
    """Stages in dependency order, run with a verified cache.

    Parameters
    ----------
    stages : sequence of Stage
        Any order; names unique, every input a stage of the graph, no cycles.

    Raises
    ------
    ConfigError
        Duplicate names, unknown inputs or a cycle.
    """

    def __init__(self, stages: Sequence[Stage]) -> None:
        by_name: dict[str, Stage] = {}
        for s in stages:
            if s.name in by_name:
                raise ConfigError(f"Two stages are named {s.name!r}; stage names must be unique.")
            by_name[s.name] = s
        for s in stages:
            missing = [i for i in s.inputs if i not in by_name]
            if missing:
                raise ConfigError(f"Stage {s.name!r} reads unknown stage(s) {', '.join(missing)}.")
        self.stages = by_name
        self.order = self._toposort()
        #: Fingerprints of the full checks :meth:`problems` passed, recorded by :meth:`run`.
        self._due_fingerprints: list[tuple[Path, Any, Any]] = []

    def _toposort(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise ConfigError(f"The stages form a cycle: {' -> '.join((*path, name))}.")
            state[name] = 1
            for dep in self.stages[name].inputs:
                visit(dep, (*path, name))
            state[name] = 2
            order.append(name)

        for name in self.stages:
            visit(name, ())
        return order

    def keys(self) -> dict[str, str]:
        """Every stage's cache key."""
        keys: dict[str, str] = {}
        for name in self.order:
            keys[name] = stage_key(self.stages[name], keys)
        return keys

    def downstream(self, names: Iterable[str]) -> set[str]:
        """``names`` and every stage that depends on them, directly or not."""
        out = set(names)
        unknown = out - set(self.stages)
        if unknown:
            raise ConfigError(
                f"--force names unknown stage(s) {', '.join(sorted(unknown))}; stages: "
                f"{', '.join(self.order)}."
            )
        for name in self.order:
            if any(i in out for i in self.stages[name].inputs):
                out.add(name)
        return out

    def folder(self, cache: Path, name: str, key: str) -> Path:
        return cache / safe_name(name) / key[:20]

    def problems(
        self, cache: str | os.PathLike, *, force: Iterable[str] = (), verify: str = "fast"
    ) -> dict[str, Any]:
        """Why each stage must be computed (``"forced"``, ``"not computed yet"``, what
        failed to verify), None for a stage whose artifact is reused.

        ``verify="fast"`` trusts an artifact file whose stat() matches the fingerprint
        of its last full check; ``"full"`` hashes every file.  Writes nothing: the
        fingerprints of the full checks that passed are recorded by :meth:`run`,
        under the cache's lock.
        """
        check_verify(verify)
        cache = Path(cache)
        forced = self.downstream(force)
        keys = self.keys()
        return {
            name: "forced"
            if name in forced
            else _problem(
                self.folder(cache, name, keys[name]), keys[name], verify, self._due_fingerprints
            )
            for name in self.order
        }

    def prepare(self, problems: Mapping[str, Any]) -> None:
        """Build what every stage to compute needs (its model, its checks), before any
        stage runs: a missing model stops the run in seconds."""
        for name in self.order:
            prepare = self.stages[name].prepare
            if problems[name] is not None and prepare is not None:
                prepare()

    def run(
        self,
        cache: str | os.PathLike,
        *,
        force: Iterable[str] = (),
        progress: bool = True,
        problems: Mapping[str, Any] | None = None,
        executor: Any = None,
        verify: str = "fast",
    ) -> GraphResult:
        """Run every stage, reusing verified artifacts.

        Parameters
        ----------
        cache : path
            The cache folder (created); its writer lock is held for the whole run.
        force : iterable of str
            Stages to recompute, with everything downstream of them.
        progress : bool
            Passed to each stage's context.
        problems : mapping, optional
            What :meth:`problems` found, with :meth:`prepare` already called (a
            caller that checks everything before it writes anything); default: both
            are done here, under the lock.
        executor : optional
            Computes the stages elsewhere (e.g.
            :class:`~fmri2image.pipeline.executor.RayExecutor`): an object with
            ``compute(graph, cache, names, keys, forced, progress)`` that makes the
            artifacts of ``names`` with :func:`compute_stage` while this run holds
            the lock, and returns ``{name: (seconds, where)}``.  Default: one after
            another in this process.
        verify : {"fast", "full"}
            How :meth:`problems` verifies reused artifacts (when it is called here).
        """
        from fmri2image._lock import output_lock

        cache = Path(cache)
        forced = self.downstream(force)
        keys = self.keys()
        values: dict[str, Any] = {}
        folders: dict[str, Path] = {}
        records: list[StageRecord] = []
        with output_lock(cache, flag="--cache"):
            resumed = {
                f"{safe_name(n)}/.partial-{keys[n][:20]}"
                for n in self.order
                if self.stages[n].resumable
            }
            collected = _remove_leftovers(cache, resumed)
            if collected:
                log.info(
                    "collected %d leftover(s) of killed runs in %s: %s",
                    len(collected),
                    cache,
                    ", ".join(collected),
                )
            if problems is None:
                problems = self.problems(cache, force=force, verify=verify)
                self.prepare(problems)
            # The fingerprints of what the checks hashed, now that this run holds the lock.
            record_fingerprints(self._due_fingerprints)
            self._due_fingerprints.clear()
            elsewhere: dict[str, tuple[float, str]] = {}
            todo = [n for n in self.order if problems[n] is not None]
            if executor is not None and todo:
                for name in self.order:
                    problem = problems[name]
                    if problem is None:
                        log.info("stage %-28s reused", name)
                    elif problem not in ("forced", "not computed yet"):
                        log.warning("recomputing stage %s: %s", name, problem)
                elsewhere = executor.compute(self, cache, todo, keys, forced, progress)
            for name in self.order:
                stage, key = self.stages[name], keys[name]
                folder = self.folder(cache, name, key)
                problem = problems[name]
                t0 = time.perf_counter()
                if problem is None:
                    reused = True
                elif name in elsewhere:
                    reused = False
                else:
                    reused = False
                    if problem not in ("forced", "not computed yet"):
                        log.warning("recomputing stage %s: %s", name, problem)
                    compute_stage(
                        stage,
                        key,
                        folder,
                        inputs={i: values[i] for i in stage.inputs},
                        input_folders={i: folders[i] for i in stage.inputs},
                        input_keys={i: keys[i] for i in stage.inputs},
                        progress=progress,
                        forced=name in forced,
                    )
                values[name] = stage.load(folder)
                folders[name] = folder
                seconds = time.perf_counter() - t0
                if name in elsewhere:  # the worker's time, and the load here
                    seconds += elsewhere[name][0]
                records.append(StageRecord(name, key, reused, seconds, folder, problem or ""))
                if not elsewhere:  # an executor logged its stages as they ended
                    log.info(
                        "stage %-28s %s in %.1f s",
                        name,
                        "reused" if reused else "computed",
                        seconds,
                    )
        return GraphResult(values, tuple(records))


def compute_stage(
    stage: Stage,
    key: str,
    folder: Path,
    *,
    inputs: Mapping[str, Any],
    input_folders: Mapping[str, Path],
    input_keys: Mapping[str, str],
    progress: bool = True,
    forced: bool = False,
) -> float:
    """Make one stage's artifact in ``folder``, atomically; the caller (or the run
    whose delegate it is) holds the cache's writer lock.

    ``run`` writes into a staging folder (a resumable stage's ``.partial-<key>``,
    which a failure keeps); the manifest is written last and the folder renamed into
    place, a stale or damaged artifact moved out of the way first.  Every executor
    calls this function, so a Ray worker writes exactly what a local run writes.

    Parameters
    ----------
    stage : Stage
    key : str
        Its cache key.
    folder : Path
        ``<cache>/<stage>/<key[:20]>``.
    inputs, input_folders, input_keys : mapping
        The loaded artifacts of its input stages, their folders and keys.
    progress : bool
    forced : bool
        A forced stage does not resume what a killed run left.

    Returns
    -------
    float
        Seconds ``run`` took.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    if stage.resumable:  # what a killed run of this key left is resumed
        staging = folder.parent / f".partial-{key[:20]}"
        if forced and staging.exists():
            shutil.rmtree(staging)
        if not forced and not staging.exists() and folder.is_dir():
            # A damaged artifact of this very key: its items are verified one by one
            # (each picture, each shard), so only what changed is made again.
            os.replace(folder, staging)
        staging.mkdir(exist_ok=True)
        (staging / MANIFEST).unlink(missing_ok=True)
    else:
        staging = folder.parent / f".staging-{key[:20]}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
    ok = False
    try:
        t0 = time.perf_counter()
        stage.run(
            StageContext(
                folder=staging,
                config=stage.config,
                inputs={i: inputs[i] for i in stage.inputs},
                input_folders={i: Path(input_folders[i]) for i in stage.inputs},
                progress=progress,
            )
        )
        seconds = time.perf_counter() - t0
        _write_manifest(staging, stage, key, {i: input_keys[i] for i in stage.inputs}, seconds)
        if folder.exists():  # a stale or damaged artifact: out of the way first
            trash = folder.parent / f".trash-{uuid.uuid4().hex[:8]}"
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(staging, folder)
        ok = True
        return seconds
    finally:
        if staging.exists() and (ok or not stage.resumable):
            shutil.rmtree(staging, ignore_errors=True)
