"""The stage graph on Ray (``executor = "ray"``): a local Ray instance with two CPU
workers, shared by the module (Ray's start costs seconds).

The comparison with a local run uses the tiny components of the pipeline tests
(``_experiment_setup``), injected in both runs; the tests modules are pickled by
value so that the workers, which do not have ``tests/`` on their path, get them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from _experiment_setup import ENCODERS, PaintGenerator, _config

from fmri2image.errors import ConfigError
from fmri2image.pipeline.experiment import run_experiment
from fmri2image.pipeline.graph import Graph, Stage

#: Files of OUT compared byte for byte: every table (CSV and parquet), the maps'
#: tables and the pictures.  ``summary.json`` is compared without its ``seconds``
#: (timings); stages.json, run.log, config.toml and the report name the run's own
#: folders, executor and timings, so they legitimately differ.
TABLES = ("tables/*.csv", "tables/*.parquet", "maps/**/*.csv", "images/**/*.png")


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    import _experiment_setup
    import _planted

    modules = (_planted, _experiment_setup, sys.modules[__name__])
    for m in modules:
        ray.cloudpickle.register_pickle_by_value(m)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        for m in modules:
            ray.cloudpickle.unregister_pickle_by_value(m)


def _run(config, **kw):
    generators = {"test-paint": PaintGenerator()}
    return run_experiment(config, encoders=ENCODERS, generators=generators, progress=False, **kw)


def _outputs(out: Path) -> dict[str, bytes]:
    files = {p for pattern in TABLES for p in out.glob(pattern)}
    found = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(files)}
    summary = json.loads((out / "summary.json").read_text())
    found["summary.json"] = json.dumps(_untimed(summary), sort_keys=True).encode()
    return found


#: Keys of JSON files that hold when or how long (and the checksums over them: a
#: manifest's own, and those it lists of other JSON files, compared themselves).
TIMES = {"seconds", "images_per_second", "created", "updated", "manifest_sha256"}


def _untimed(value):
    if isinstance(value, dict):
        return {
            k: _untimed(v) for k, v in value.items() if k not in TIMES and not k.endswith(".json")
        }
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


#: An artifact's data files, compared byte for byte (its JSON and parquet records
#: also hold timings and paths into the run's own cache).
DATA = (".npy", ".png", ".csv", ".safetensors")


def _artifact_files(folder: Path) -> dict[str, bytes | None]:
    """Every file of an artifact by name; the data files' bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.suffix in DATA else None
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def runs(god, cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray-runs")
    # One model (a grid of two generators x three conditions x two databases): the
    # second model of the pipeline tests would only double the time.
    local = _run(_config(god, tmp / "local", models=("pool-a",)))
    remote = _run(_config(god, tmp / "ray", models=("pool-a",), executor="ray"))
    return local, remote


@pytest.mark.slow
def test_a_ray_run_writes_the_tables_of_a_local_run_byte_for_byte(runs):
    local, remote = runs
    assert not local.computed or set(local.computed) == set(remote.computed)
    assert len(remote.computed) == len(remote.records) > 10  # every stage a Ray task
    mine, theirs = _outputs(local.out_dir), _outputs(remote.out_dir)
    assert "tables/scores.csv" in mine and "summary.json" in mine
    assert sorted(mine) == sorted(theirs)
    different = [name for name in mine if mine[name] != theirs[name]]
    assert not different, different
    assert any(name.endswith(".png") for name in mine)
    # The artifacts themselves: every stage has the same key and the same files.
    for a, b in zip(local.records, remote.records):
        assert (a.name, a.key) == (b.name, b.key)
        assert _artifact_files(a.folder) == _artifact_files(b.folder), a.name
    log = (remote.out_dir / "run.log").read_text()
    assert "computed in" in log and " on " in log  # a line per stage, with its node


@pytest.mark.slow
def test_a_ray_cache_is_reused_by_ray_and_local_runs(god, runs, tmp_path):
    _, remote = runs
    cache = str(remote.out_dir / "cache")
    config = _config(god, tmp_path / "again", models=("pool-a",), executor="ray", cache=cache)
    assert _run(config).computed == []
    # The executor is in no key: a local run reuses the Ray run's cache.
    local = _run(dataclasses.replace(config, out=str(tmp_path / "local"), executor="local"))
    assert local.computed == []
    assert _outputs(tmp_path / "local") == _outputs(remote.out_dir)


# ---------------------------------------------------------------- hand-made graphs
def _write(ctx, text: str) -> None:
    (ctx.folder / "value.txt").write_text(text)


def _read(folder: Path) -> str:
    return (folder / "value.txt").read_text()


def _threads(ctx) -> None:
    import torch

    _write(ctx, str(torch.get_num_threads()))


def _half_then_fail(ctx) -> None:
    _write(ctx, "half")
    raise ConfigError(f"stage b refuses its input {ctx.inputs['a']!r}; pass a better one.")


@pytest.mark.slow
def test_a_failing_stage_raises_its_own_error_and_leaves_no_artifact(cluster, tmp_path):
    from fmri2image.pipeline.executor import RayExecutor

    graph = Graph(
        [
            Stage("a", lambda ctx: _write(ctx, "A"), _read),
            Stage("b", _half_then_fail, _read, inputs=("a",)),
            Stage("c", lambda ctx: _write(ctx, "C"), _read, inputs=("b",)),
        ]
    )
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match=r"^stage b refuses its input 'A'; pass a better one\.$"):
        graph.run(cache, executor=RayExecutor(), progress=False)
    assert _read(next((cache / "a").iterdir())) == "A"  # the stage before it is kept
    assert not (cache / "b").exists() or not any((cache / "b").iterdir())
    assert not (cache / "c").exists()
    assert not list(cache.glob(".ray-probe-*"))
    # The lock is released: the next run (local) makes b, reusing a.
    fixed = Graph(
        [
            Stage("a", lambda ctx: _write(ctx, "A"), _read),
            Stage("b", lambda ctx: _write(ctx, "B"), _read, inputs=("a",)),
        ]
    )
    assert fixed.run(cache, progress=False).computed == ["b"]


class _OtherInputs:
    """A worker's rebuilt plan when it sees other files: another config, another key."""

    def __call__(self):
        return Graph([Stage("a", lambda ctx: _write(ctx, "A"), _read, {"files": "other"})])


@pytest.mark.slow
def test_a_worker_that_plans_another_key_refuses_the_stage(cluster, tmp_path):
    from fmri2image.pipeline.executor import RayExecutor

    graph = Graph([Stage("a", lambda ctx: _write(ctx, "A"), _read, {"files": "mine"})])
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match="computes another key for stage a than the driver"):
        graph.run(cache, executor=RayExecutor(source=_OtherInputs()), progress=False)
    assert not (cache / "a").exists() or not any((cache / "a").iterdir())


@pytest.mark.slow
def test_a_worker_runs_torch_with_the_driver_thread_count(cluster, tmp_path):
    import torch

    from fmri2image.pipeline.executor import RayExecutor

    graph = Graph([Stage("threads", _threads, _read, resources="cpu")])
    result = graph.run(tmp_path / "cache", executor=RayExecutor(), progress=False)
    assert result.computed == ["threads"]
    assert result.values["threads"] == str(torch.get_num_threads())


# ---------------------------------------------------------------- configuration
def test_an_unknown_executor_is_refused_with_exit_2(god, tmp_path, capsys):
    from fmri2image.cli.main import main

    config = _config(god, tmp_path / "x", executor="dask")
    with pytest.raises(
        ConfigError, match=r"--graph-executor \(executor\) must be one of local, ray"
    ):
        config.validate(encoders=set(ENCODERS))
    root, _ = god
    rc = main(["-q", "compare", "--data", str(root), "--out", str(tmp_path / "y"),
               "--set", "executor=dask"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "must be one of local, ray, got 'dask'" in err and "Traceback" not in err
    assert not (tmp_path / "y").exists()


def test_without_ray_the_ray_executor_says_how_to_install_it(god, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    config = _config(god, tmp_path / "x", executor="ray")
    with pytest.raises(ConfigError, match=r"pip install 'fmri2image\[ray\]'"):
        config.validate(encoders=set(ENCODERS))
    local = dataclasses.replace(config, executor="local")
    local.validate(encoders=set(ENCODERS), generators={"test-paint": PaintGenerator()})


def test_the_flags_set_the_executor_and_the_address():
    from fmri2image.cli import _options
    from fmri2image.cli.main import build_parser

    for command in ("run", "compare", "decode"):
        argv = [command, "--data", "g", "--out", "o", "--graph-executor", "ray",
                "--ray-address", "10.0.0.1:6379"]  # fmt: skip
        config = _options.config_from_args(build_parser().parse_args(argv))
        assert (config.executor, config.ray_address) == ("ray", "10.0.0.1:6379"), command
    config = _options.config_from_args(build_parser().parse_args(["run", "--out", "o"]))
    assert (config.executor, config.ray_address) == ("local", None)
