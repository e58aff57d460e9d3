"""The stage graph on a Ray cluster (``executor = "ray"``, ``--graph-executor ray``).

The driver (the process that runs ``fmri2image run`` / ``compare`` / ``demo``) does
what it does for a local run: it plans the graph, computes every key, verifies the
cache, prepares the models of the stages to compute, and holds the cache's writer
lock (:mod:`fmri2image._lock`) for the whole run.  :class:`RayExecutor` then sends
each stage to compute to the cluster as one Ray task, as soon as the tasks of its
inputs have finished (independent stages run side by side).  A task loads its
inputs from their folders in the cache with the input stages' own ``load`` (no
artifact passes through Ray's object store), and makes its artifact with
:func:`~fmri2image.pipeline.graph.compute_stage`: the staging folder, the manifest
written last and the rename into place of a local run.  The driver then loads the
artifacts and writes the results as a local run does.

**Lock.** The tasks are the driver's delegates: they write under the lock the driver
holds, and the driver releases it only once every task it started has ended, so the
cache keeps the same writer lock semantics as a local run (a second run on the same
cache, local or on Ray, stops with the lock's message).  A task killed half-way
leaves only a staging folder, which the next run collects.

**Shared cache.** Every node writes into the cache, so the cache (and the data, the
databases and the output folder) must lie on a file system every node mounts at the
same path.  Before the first task, a probe file written by the driver must be
readable at the same path from every alive node; a node that cannot read it stops
the run with a :class:`~fmri2image.errors.ConfigError` naming the node.

**What a task receives.** Stages are closures over a run's configuration, its
dataset (open files, cached recordings) and its components (loaded models), which
do not pickle, or pickle to gigabytes.  So a run of the pipeline ships a
:class:`PlanSource` instead: the :class:`~fmri2image.pipeline.config.RunConfig`
and any components the caller injected (put once into the object store).  Each
worker process rebuilds the plan from it (:func:`~fmri2image.pipeline.experiment.
build_experiment`, once per process and run), picks the stage by name, and refuses
to compute it unless its key equals the driver's: a worker that sees other input
files than the driver (another mount, another copy) stops the run instead of
filling the cache with artifacts of other inputs.  Models are loaded lazily in the
worker, by the stages that need them.  A :class:`~fmri2image.pipeline.graph.Graph`
of hand-made stages (no ``source``) ships its stages themselves, pickled by Ray.

**Resources.** A stage with ``resources="gpu"`` (features, databases, prototypes,
captions, codebooks, pictures, metrics) asks for one GPU when the run's device is
CUDA (use ``--device cuda``: inside the task, Ray makes its GPU the first visible
one); every other task asks for one CPU.

**Identical results.** A task runs torch with the driver's intra-op thread count
(Ray starts workers with one thread), since the number of threads can change the
last bits of a convolution; the tables of a Ray run equal a local run's byte for
byte (``tests/pipeline/test_graph_ray.py``).

Cluster selection: the ``address`` argument (``--ray-address``), else the
``RAY_ADDRESS`` environment variable, else a local Ray instance started for the run
and shut down afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmri2image.errors import ConfigError, Fmri2ImageError, require

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.features.base import Encoder
    from fmri2image.generation import Generator
    from fmri2image.pipeline.config import RunConfig
    from fmri2image.pipeline.graph import Graph, Stage

__all__ = ["PlanSource", "RayExecutor", "make_executor"]

log = logging.getLogger(__name__)

FEATURE = "The Ray executor of the stage graph (--graph-executor ray)"


@dataclass(frozen=True)
class PlanSource:
    """What a worker needs to rebuild a run's graph: its configuration and the
    components the caller injected (built encoders, generators)."""

    config: RunConfig
    encoders: Mapping[str, Encoder] | None = None
    generators: Mapping[str, Generator] | None = None

    def __call__(self) -> Graph:
        from fmri2image.pipeline.experiment import build_experiment

        plan = build_experiment(
            self.config, encoders=self.encoders, generators=self.generators, progress=False
        )
        return plan.graph


def make_executor(
    config: RunConfig,
    *,
    encoders: Mapping[str, Encoder] | None = None,
    generators: Mapping[str, Generator] | None = None,
) -> RayExecutor | None:
    """The executor ``config.executor`` names (None: the local one)."""
    if config.executor == "local":
        return None
    return RayExecutor(
        config.ray_address,
        device=config.device,
        source=PlanSource(config, encoders, generators),
    )


class RayExecutor:
    """Compute a graph's stages as Ray tasks (see the module docstring).

    Parameters
    ----------
    address : str, optional
        The Ray cluster (default: ``RAY_ADDRESS``, else a local instance).
    device : str
        The run's device: stages with ``resources="gpu"`` ask for a GPU when it is
        CUDA.
    source : callable, optional
        Picklable; ``source()`` rebuilds the graph in a worker (:class:`PlanSource`).
        Default: the stages themselves are pickled.
    init_kwargs : mapping, optional
        For ``ray.init`` when this executor connects (``num_cpus`` for a local one).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        device: str = "cpu",
        source: Callable[[], Graph] | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.address = address
        self.device = device
        self.source = source
        self.init_kwargs = dict(init_kwargs or {})

    def compute(
        self,
        graph: Graph,
        cache: Path,
        names: Sequence[str],
        keys: Mapping[str, str],
        forced: set[str],
        progress: bool,
    ) -> dict[str, tuple[float, str]]:
        """Make the artifacts of ``names`` (in ``graph.order``) on the cluster.

        Returns
        -------
        dict of str to (float, str)
            Per stage: the seconds its ``run`` took and the node it ran on.

        Raises
        ------
        Exception
            The first failing stage's own error (class and message as in a local
            run), after the other running tasks were cancelled and have ended.
        ConfigError
            A node does not see the cache, or GPUs are asked of a cluster that has
            none.
        """
        from fmri2image.features.ray_executor import _init_ray

        ray = require("ray", "ray", FEATURE)
        started = _init_ray(ray, self.address, self.init_kwargs)
        try:
            cache = Path(cache).resolve()
            check_shared_cache(ray, cache)
            return self._dispatch(ray, graph, cache, names, keys, forced, progress)
        finally:
            if started:
                ray.shutdown()

    def _dispatch(
        self,
        ray: Any,
        graph: Graph,
        cache: Path,
        names: Sequence[str],
        keys: Mapping[str, str],
        forced: set[str],
        progress: bool,
    ) -> dict[str, tuple[float, str]]:
        gpu = str(self.device).startswith("cuda")
        wants_gpu = gpu and any(graph.stages[n].resources == "gpu" for n in names)
        if wants_gpu and ray.cluster_resources().get("GPU", 0) < 1:
            raise ConfigError(
                f"--device {self.device} asks a GPU of each network stage, but the Ray "
                "cluster has none; start its workers on machines with GPUs (ray start "
                "--address=... --num-gpus=N) or run with --device cpu."
            )
        threads = _driver_threads()
        token = uuid.uuid4().hex
        shipped: Any = ray.put(self.source) if self.source is not None else None
        task = ray.remote(_run_task)
        todo = list(names)
        done: dict[str, tuple[float, str]] = {}
        running: dict[Any, str] = {}
        try:
            while todo or running:
                for name in [n for n in todo if _ready(graph, n, todo, running)]:
                    todo.remove(name)
                    stage = graph.stages[name]
                    spec = {
                        "name": name,
                        "key": keys[name],
                        "folder": str(graph.folder(cache, name, keys[name])),
                        "inputs": {i: str(graph.folder(cache, i, keys[i])) for i in stage.inputs},
                        "input_keys": {i: keys[i] for i in stage.inputs},
                        "progress": progress,
                        "forced": name in forced,
                        "threads": threads,
                        "cwd": os.getcwd(),
                        "token": token,
                    }
                    payload = shipped if shipped is not None else _stages_payload(graph, name)
                    options = {"num_cpus": 1, "name": f"stage {name}"}
                    if gpu and stage.resources == "gpu":
                        options["num_gpus"] = 1
                    running[task.options(**options).remote(spec, payload)] = name
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    name = running.pop(ref)
                    seconds, where = _result(ray, ref)
                    done[name] = (seconds, where)
                    log.info("stage %-28s computed in %.1f s on %s", name, seconds, where)
        except BaseException:
            _stop(ray, list(running))
            raise
        return done


def _ready(graph: Graph, name: str, todo: Sequence[str], running: Mapping[Any, str]) -> bool:
    """Whether every input of ``name`` is made (neither waiting nor running)."""
    pending = set(todo) | set(running.values())
    return not any(i in pending for i in graph.stages[name].inputs)


def _result(ray: Any, ref: Any) -> tuple[float, str]:
    """A task's return value; a failed stage raises its own exception here."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
            # The stage's own error, as a local run raises it (the CLI shows its
            # message); a program error keeps the worker's traceback as a note.
            log.debug("a Ray task failed:\n%s", exc)
            if not isinstance(cause, Fmri2ImageError):
                cause.add_note(f"Raised in a Ray worker:\n{exc}")
            raise cause from None
        raise


def _stop(ray: Any, refs: Sequence[Any], timeout: float = 60.0) -> None:
    """Cancel running tasks and wait (bounded) until they ended: their staging
    folders are removed by :func:`compute_stage`, or collected by the next run."""
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref)
    if refs:
        with contextlib.suppress(Exception):
            ray.wait(list(refs), num_returns=len(refs), timeout=timeout)


def _driver_threads() -> int | None:
    """The driver's torch intra-op thread count (None: torch not imported here)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def _stages_payload(graph: Graph, name: str) -> dict[str, Stage]:
    """A hand-made graph's stage and its input stages (for their ``load``)."""
    stage = graph.stages[name]
    return {n: graph.stages[n] for n in (name, *stage.inputs)}


# ---------------------------------------------------------------- shared cache
def check_shared_cache(ray: Any, cache: Path) -> None:
    """Every alive node reads a probe file the driver writes into ``cache``.

    Raises
    ------
    ConfigError
        Naming the nodes that do not see it.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cache.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    probe = cache / f".ray-probe-{token[:12]}"
    probe.write_text(token, encoding="utf-8")
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        sees = ray.remote(_sees)
        refs = []
        for n in nodes:
            host = n.get("NodeManagerHostname") or n.get("NodeManagerAddress") or "?"
            strategy = NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ref = sees.options(num_cpus=0, scheduling_strategy=strategy).remote(str(probe), token)
            refs.append((f"{host} (node {n['NodeID'][:8]})", ref))
        blind = [node for node, ref in refs if not ray.get(ref)]
    finally:
        probe.unlink(missing_ok=True)
    if blind:
        raise ConfigError(
            f"The cache {cache} is not visible from Ray node(s) {', '.join(sorted(blind))}: "
            "every node writes artifacts into it. Put the cache (--cache), the data and the "
            "output folder on a file system every node mounts at the same path."
        )


def _sees(path: str, token: str) -> bool:
    try:
        return Path(path).read_text(encoding="utf-8") == token
    except OSError:
        return False


# ---------------------------------------------------------------- in the worker
#: The graph each worker process rebuilt, by run (one at a time).
_GRAPHS: dict[str, Graph] = {}


def _run_task(spec: dict[str, Any], payload: Any) -> tuple[float, str]:
    """Ray task: make one stage's artifact into the shared cache."""
    from fmri2image._malloc import tune_allocator
    from fmri2image.pipeline.graph import compute_stage, stage_key

    tune_allocator()  # as the driver's run_experiment does

    with _like_the_driver(spec):
        if isinstance(payload, dict):  # the stages themselves
            stages = payload
        else:  # a PlanSource: the plan rebuilt here, once per process and run
            if spec["token"] not in _GRAPHS:
                _GRAPHS.clear()
                _GRAPHS[spec["token"]] = payload()
            graph = _GRAPHS[spec["token"]]
            name = spec["name"]
            if name not in graph.stages:
                raise ConfigError(
                    f"A Ray worker on {socket.gethostname()} plans no stage {name}: it "
                    "sees other inputs than the driver. Put the data, the databases and "
                    "the cache on a file system every node mounts at the same path."
                )
            stages = {n: graph.stages[n] for n in (name, *graph.stages[name].inputs)}
        stage = stages[spec["name"]]
        key = stage_key(stage, spec["input_keys"])
        if key != spec["key"]:
            raise ConfigError(
                f"A Ray worker on {socket.gethostname()} computes another key for stage "
                f"{stage.name} than the driver: it sees other input files (paths, sizes or "
                "times differ). Put the data, the databases and the cache on a file system "
                "every node mounts at the same path."
            )
        inputs = {i: stages[i].load(Path(f)) for i, f in spec["inputs"].items()}
        seconds = compute_stage(
            stage,
            key,
            Path(spec["folder"]),
            inputs=inputs,
            input_folders={i: Path(f) for i, f in spec["inputs"].items()},
            input_keys=spec["input_keys"],
            progress=spec["progress"],
            forced=spec["forced"],
        )
    return seconds, socket.gethostname()


@contextlib.contextmanager
def _like_the_driver(spec: Mapping[str, Any]) -> Iterator[None]:
    """The driver's working folder (relative paths of its configuration) and torch
    thread count, for the duration of one task."""
    old_cwd = os.getcwd()
    cwd = spec.get("cwd")
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    torch = old_threads = None
    if spec.get("threads"):
        import torch

        old_threads = torch.get_num_threads()
        torch.set_num_threads(int(spec["threads"]))
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if torch is not None and old_threads is not None:
            torch.set_num_threads(old_threads)
        os.chdir(old_cwd)
        log.debug("task took %.1f s", time.perf_counter() - t0)
