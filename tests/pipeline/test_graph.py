"""The stage graph: keys, verified reuse, force, shared stages, interrupted stages."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from fmri2image.errors import ConfigError
from fmri2image.pipeline.graph import MANIFEST, Graph, Stage, read_manifest

CALLS: collections.Counter = collections.Counter()


def npy_stage(name, fn, *, inputs=(), config=None, fail_once=None):
    """A stage writing ``value.npy`` = fn(config, *input values)."""

    def run(ctx):
        CALLS[name] += 1
        value = fn(ctx.config, *(ctx.inputs[i] for i in inputs))
        np.save(ctx.folder / "value.npy", value)
        if fail_once is not None and not fail_once.get("done"):
            fail_once["done"] = True
            raise KeyboardInterrupt  # killed after writing, before finishing

    return Stage(
        name, run, lambda folder: np.load(folder / "value.npy"),
        config=config or {}, inputs=tuple(inputs),
    )  # fmt: skip


def pipeline(scale=2.0, offset=1.0, fail_once=None):
    """data -> features -> {mapping_a, mapping_b} -> compare (a shared upstream)."""
    return Graph(
        [
            npy_stage("compare", lambda c, a, b: np.stack([a, b]), inputs=("mapping_a", "mapping_b")),
            npy_stage("data", lambda c: np.arange(6.0), config={"n": 6}),
            npy_stage("features", lambda c, x: x * c["scale"], inputs=("data",),
                      config={"scale": scale}, fail_once=fail_once),
            npy_stage("mapping_a", lambda c, f: f + c["offset"], inputs=("features",),
                      config={"offset": offset}),
            npy_stage("mapping_b", lambda c, f: -f, inputs=("features",)),
        ]
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()


def test_order_and_shared_stage_computed_once(tmp_path):
    g = pipeline()
    assert g.order.index("data") < g.order.index("features") < g.order.index("mapping_a")
    assert g.order[-1] == "compare"
    res = g.run(tmp_path / "cache", progress=False)
    assert CALLS["features"] == 1  # read by two stages, computed once
    np.testing.assert_array_equal(res.values["compare"][0], np.arange(6.0) * 2 + 1)
    assert res.computed == g.order


def test_second_run_recomputes_nothing(tmp_path):
    pipeline().run(tmp_path / "cache", progress=False)
    CALLS.clear()
    res = pipeline().run(tmp_path / "cache", progress=False)
    assert all(r.reused for r in res.records) and not CALLS  # checked by records, not time


def test_changing_one_config_recomputes_it_and_downstream_only(tmp_path):
    pipeline().run(tmp_path / "cache", progress=False)
    res = pipeline(offset=5.0).run(tmp_path / "cache", progress=False)
    assert res.computed == ["mapping_a", "compare"]
    res = pipeline(scale=3.0, offset=5.0).run(tmp_path / "cache", progress=False)
    assert set(res.computed) == {"features", "mapping_a", "mapping_b", "compare"}
    assert res.record("data").reused is not False


def test_force_recomputes_the_stage_and_what_depends_on_it(tmp_path):
    pipeline().run(tmp_path / "cache", progress=False)
    res = pipeline().run(tmp_path / "cache", force=["mapping_b"], progress=False)
    assert res.computed == ["mapping_b", "compare"]
    with pytest.raises(ConfigError, match="--force names unknown stage"):
        pipeline().run(tmp_path / "cache", force=["mappin"], progress=False)


def test_stage_killed_midway_leaves_no_artifact_and_rerun_is_identical(tmp_path):
    reference = pipeline().run(tmp_path / "ref", progress=False).values["compare"]
    flag: dict = {}
    with pytest.raises(KeyboardInterrupt):
        pipeline(fail_once=flag).run(tmp_path / "cache", progress=False)
    features_dir = tmp_path / "cache" / "features"
    assert not list(features_dir.glob("*/" + MANIFEST))  # nothing half-written is visible
    assert not list(features_dir.glob(".staging-*"))
    res = pipeline(fail_once=flag).run(tmp_path / "cache", progress=False)
    assert res.record("data").reused and not res.record("features").reused
    np.testing.assert_array_equal(res.values["compare"], reference)


def test_changed_or_damaged_artifacts_are_recomputed(tmp_path, caplog):
    res = pipeline().run(tmp_path / "cache", progress=False)
    folder = res.record("features").folder
    np.save(folder / "value.npy", np.zeros(6))  # same size, other values
    with caplog.at_level("WARNING"):
        res = pipeline().run(tmp_path / "cache", progress=False)
    assert "changed after it was written" in caplog.text
    # Only the damaged artifact: the ones downstream were made from the intact original.
    assert res.computed == ["features"]
    assert res.values["features"][1] == 2.0
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["config"]["scale"] = 99  # an edited manifest
    (folder / MANIFEST).write_text(json.dumps(manifest))
    res = pipeline().run(tmp_path / "cache", progress=False)
    assert not res.record("features").reused
    assert read_manifest(folder)["config"] == {"scale": 2.0}


def test_bad_graphs_are_refused():
    s = npy_stage("a", lambda c: 0)
    with pytest.raises(ConfigError, match="unique"):
        Graph([s, s])
    with pytest.raises(ConfigError, match="unknown stage"):
        Graph([npy_stage("b", lambda c, x: x, inputs=("nope",))])
    with pytest.raises(ConfigError, match="cycle"):
        Graph([npy_stage("x", lambda c, y: y, inputs=("y",)),
               npy_stage("y", lambda c, x: x, inputs=("x",))])  # fmt: skip


def test_stages_to_compute_prepare_before_any_stage_runs(tmp_path):
    """A model that cannot be loaded stops the run before any stage's work."""
    import dataclasses

    events = []

    def broken():
        events.append("prepare mapping_b")
        raise ConfigError("the weights of mapping_b's model are not on this machine")

    g = pipeline()
    stages = [
        dataclasses.replace(s, prepare=broken) if s.name == "mapping_b" else s
        for s in g.stages.values()
    ]
    with pytest.raises(ConfigError, match="not on this machine"):
        Graph(stages).run(tmp_path / "cache", progress=False)
    assert events == ["prepare mapping_b"] and sum(CALLS.values()) == 0
    assert not list((tmp_path / "cache").rglob(MANIFEST))
    # Reused stages are not prepared (a fully cached run loads no model).
    pipeline().run(tmp_path / "cache", progress=False)
    events.clear()
    Graph(stages).run(tmp_path / "cache", progress=False)
    assert events == []
