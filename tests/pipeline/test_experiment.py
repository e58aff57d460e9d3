"""`run` / `compare` on the stage graph: reuse, partial recomputation, resume, indexing.

Tiny components throughout: the pooling encoder of ``_planted`` under two names and
a test generator that paints the predicted embedding, so every stage runs in
milliseconds and only the pipeline's bookkeeping is under test.  What is recomputed
is read from the stage records, never from timing.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _experiment_setup import ENCODERS, PaintGenerator, _config

from fmri2image.errors import ConfigError
from fmri2image.pipeline.config import (
    DataSection,
    EvaluationSection,
    GenerationSection,
    MappingSection,
    RetrievalSection,
    load_config,
)
from fmri2image.pipeline.experiment import run_experiment


def _run(config, **kw):
    return run_experiment(config, encoders=ENCODERS, progress=False, **kw)


def _tables(out):
    return {p.name: p.read_bytes() for p in sorted((out / "tables").glob("*.csv"))}


@pytest.fixture(scope="module")
def first(god, tmp_path_factory):
    out = tmp_path_factory.mktemp("first") / "out"
    return _run(_config(god, out))


def test_the_run_writes_every_output(first):
    out = first.out_dir
    kinds = {r.name.split("/")[0] for r in first.records}
    assert kinds == {"data", "features", "database", "prototypes", "mapping", "retrieval",
                     "generation", "evaluation"}  # fmt: skip
    for name in ("scores", "summary", "paired", "decoding"):
        assert (out / "tables" / f"{name}.csv").is_file()
        assert (out / "tables" / f"{name}.parquet").is_file()
    assert (out / "grid-s1-ROI_VC.png").is_file()
    assert (out / "stages.json").is_file() and (out / "run.log").is_file()
    html = (out / "report.html").read_text()
    assert "pool-a" in html and "pool-b" in html and (out / "report.md").is_file()
    gt = sorted((out / "images" / "s1-ROI_VC" / "ground_truth").iterdir())
    assert len(gt) == 4  # one per test image
    for model in ("pool-a", "pool-b"):
        for gen in ("test-paint", "retrieve"):
            for cond in ("predicted", "true", "random"):
                pngs = list(
                    (out / "images" / "s1-ROI_VC" / model / "ridge" / gen / cond).glob("*.png")
                )
                assert len(pngs) == 4
    from fmri2image.mapping import load_mapping

    for model in ("pool-a", "pool-b"):
        maps = out / "maps" / "s1-ROI_VC" / model / "ridge"
        assert load_mapping(maps / "mapping").predict(np.zeros((1, 30))).shape == (1, 48)
        assert np.load(maps / "predicted_test_embeddings.npy").shape == (4, 48)
    # The resolved config reads back as the same config.
    assert load_config(out / "config.toml") == first.config


def test_the_long_table_loads_in_one_line(first):
    import pyarrow.parquet as pq

    scores = pq.read_table(first.out_dir / "tables" / "scores.parquet").to_pylist()
    # 2 models x 2 generators x 3 conditions x 4 images x 2 metrics
    assert len(scores) == 2 * 2 * 3 * 4 * 2
    assert {r["condition"] for r in scores} == {"predicted", "true", "random"}
    entry = next(
        e for e in first.reconstructions
        if (e.model, e.generator, e.condition) == ("pool-a", "test-paint", "predicted")
    )  # fmt: skip
    got = sorted(
        r["value"] for r in scores
        if (r["model"], r["generator"], r["condition"], r["metric"])
        == ("pool-a", "test-paint", "predicted", "ssim")
    )  # fmt: skip
    assert np.allclose(got, sorted(entry.evaluation.scores["ssim"]))


def test_true_bound_of_retrieve_finds_the_stimulus_category(first):
    """The ceiling (true embedding) beats the floor (random training stimulus)."""
    by = {(e.model, e.generator, e.condition): e.evaluation.summary for e in first.reconstructions}
    true = by[("pool-a", "retrieve", "true")]["pixcorr"].mean
    random = by[("pool-a", "retrieve", "random")]["pixcorr"].mean
    assert true > random


def test_a_second_compare_recomputes_nothing(god, first):
    again = _run(first.config)
    assert again.computed == []
    assert [r.name for r in again.records] == [r.name for r in first.records]
    assert _tables(again.out_dir) == _tables(first.out_dir)


def test_changing_the_generator_recomputes_only_generation_and_evaluation(god, first, tmp_path):
    out = tmp_path / "out"
    config = _config(god, out, cache=str(first.out_dir / "cache"))
    config = dataclasses.replace(
        config,
        generation=dataclasses.replace(config.generation, options={"test-paint": {"size": 12}}),
    )
    result = _run(config)
    computed = set(result.computed)
    assert computed, "the new generator options must make new pictures"
    assert {n.split("/")[0] for n in computed} == {"generation", "evaluation"}
    assert all("/test-paint/" in n for n in computed)  # retrieve's pictures are reused
    # 2 models x (predicted + the two bounds), each generated and evaluated
    assert len(computed) == 2 * 3 * 2


def test_force_recomputes_a_stage_kind_and_what_depends_on_it(god, first, tmp_path):
    config = _config(god, tmp_path / "out", cache=str(first.out_dir / "cache"))
    result = _run(config, force=("retrieval",))
    kinds = {n.split("/")[0] for n in result.computed}
    assert kinds == {"retrieval"}  # nothing reads labels: the generators are embedding-based
    with pytest.raises(ConfigError, match="--force nosuch matches no stage"):
        _run(config, force=("nosuch",))


def test_a_run_killed_mid_stage_resumes_to_identical_tables(god, first, tmp_path):
    config = _config(god, tmp_path / "out")
    # One picture per call, so each is on disk as soon as it is made.
    config = dataclasses.replace(
        config, generation=dataclasses.replace(config.generation, batch_size=1)
    )
    PaintGenerator.calls, PaintGenerator.fail_after = 0, 6  # 4 of one stage, 2 of the next
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(config)
    finally:
        PaintGenerator.fail_after = None
    partial = list((tmp_path / "out" / "cache").glob("*/.partial-*"))
    assert [len(list(p.glob("*.png"))) for p in partial] == [2]  # finished pictures are kept
    PaintGenerator.calls = 0
    resumed = _run(config)
    assert PaintGenerator.calls == 2 * 3 * 4 - 6  # only the missing pictures were made
    assert not list((tmp_path / "out" / "cache").glob("*/.partial-*"))
    assert _tables(resumed.out_dir) == _tables(first.out_dir)


def test_subjects_by_rois_give_the_indexed_table(god, tmp_path, first):
    import pyarrow.parquet as pq

    config = _config(
        god, tmp_path / "out", cache=str(first.out_dir / "cache"),
        data=DataSection(path=str(god[0]), subjects=(1, 2), rois=("ROI_V1", "ROI_LOC")),
    )  # fmt: skip
    result = _run(config)
    rows = pq.read_table(result.out_dir / "tables" / "summary.parquet").to_pylist()
    keys = {(r["subject"], r["roi"]) for r in rows}
    assert keys == {(s, roi) for s in ("1", "2", "mean") for roi in ("ROI_V1", "ROI_LOC")}
    per = {(r["subject"], r["roi"], r["model"], r["generator"], r["condition"], r["metric"]): r
           for r in rows}  # fmt: skip
    for roi in ("ROI_V1", "ROI_LOC"):
        k = (roi, "pool-a", "test-paint", "predicted", "ssim")
        mean = np.mean([per[(s, *k)]["mean"] for s in ("1", "2")])
        assert per[("mean", *k)]["mean"] == pytest.approx(mean)
        assert per[("mean", *k)]["n_subjects"] == 2
    # The bounds hold no brain data: computed once per model and generator, shared by
    # both subjects and both ROIs.
    true_stages = [r.name for r in result.records if "/true/" in r.name and
                   r.name.startswith("generation/")]  # fmt: skip
    assert len(true_stages) == 2 * 2
    assert len(result.decodings) == 4
    assert "mean of 2 subjects" in result.comparison


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"models": ()}, "models is empty"),
        ({"generation": GenerationSection(generators=("nosuch",))}, "nosuch"),
        ({"evaluation": EvaluationSection(metrics=("pixcor",))}, "pixcor"),
        ({"evaluation": EvaluationSection(metrics=())}, "metrics is empty"),
        ({"retrieval": RetrievalSection(databases=("prototypes",))}, "retrieve"),
        ({"generation": GenerationSection(generators=("test-paint",),
                                          options={"size": "x", "nosuch": 1})}, "nosuch"),
        ({"generation": GenerationSection(conditions=("oracle",))}, "conditions"),
        ({"generation": GenerationSection(conditions=("true", "true"))}, "at most once"),
    ],
)  # fmt: skip
def test_bad_settings_stop_before_any_stage(god, tmp_path, changes, match):
    config = _config(god, tmp_path / "out", **changes)
    with pytest.raises(ConfigError, match=match):
        _run(config)
    assert not (tmp_path / "out" / "cache").exists()


def test_cli_precedence_config_then_set_then_flags(god, tmp_path):
    from fmri2image.cli._options import config_from_args
    from fmri2image.cli.main import build_parser

    toml = tmp_path / "exp.toml"
    toml.write_text('models = ["a"]\nseed = 3\n[mapping]\ncv = 4\n[data]\nsubjects = [1]\n')
    args = build_parser().parse_args(
        ["compare", "--config", str(toml), "--set", "mapping.cv=loo", "--set", "seed=5",
         "--models", "pool-a", "pool-b", "--subjects", "1", "2", "--no-bounds", "--out", "o"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.models == ("pool-a", "pool-b")
    assert config.seed == 5 and config.mapping.cv == "loo"
    assert config.data.subjects == (1, 2)
    assert config.generation.conditions == ("predicted",)
    assert config.out == "o"


def test_a_registered_mapper_is_chosen_by_config(god, first, tmp_path):
    """A second mapping model is one class and one registry line; the config picks it."""
    from sklearn.base import BaseEstimator

    from fmri2image.mapping import MAPPERS, Mapper, register_mapper

    class MeanMapping(BaseEstimator, Mapper):
        format_name = "test-mean"

        def __init__(self, *, shrink: float = 1.0) -> None:
            self.shrink = shrink

        def fit(self, X, Y, groups=None):
            self.y_mean_ = self.shrink * np.asarray(Y, dtype=float).mean(axis=0)
            return self

        def predict(self, X):
            return np.tile(self.y_mean_, (len(X), 1))

        def _save_state(self):
            return {"y_mean_": self.y_mean_}, {}

    register_mapper("test-mean", MeanMapping, overwrite=True)
    try:
        config = _config(
            god, tmp_path / "out", cache=str(first.out_dir / "cache"),
            mapping=MappingSection(mappers=("test-mean",), options={"shrink": 0.5}),
        )  # fmt: skip
        result = _run(config)
        kinds = {n.split("/")[0] for n in result.computed}
        assert "mapping" in kinds and "features" not in kinds and "data" not in kinds
        art = result.decodings[(1, "ROI_VC")].models[0]
        assert art.fit["mapper"] == "MeanMapping"
        # The prediction is the shrunk training mean: identification at chance.
        assert art.metrics["pairwise_identification"]["value"] == pytest.approx(0.5)
        bad = _config(god, tmp_path / "bad", mapping=MappingSection(mappers=("test-mean",),
                                                                     options={"nosuch": 1}))  # fmt: skip
        with pytest.raises(ConfigError, match="does not accept"):
            _run(bad)
    finally:
        MAPPERS.unregister("test-mean")


def test_a_model_that_cannot_load_stops_the_run_before_any_stage(god, tmp_path):
    from fmri2image.errors import ModelUnavailableError
    from fmri2image.features import ENCODERS, register_encoder

    def unavailable(**kw):
        raise ModelUnavailableError("the weights of test-missing are not on this machine")

    register_encoder("test-missing", unavailable, overwrite=True)
    try:
        config = _config(god, tmp_path / "out", models=("test-missing",))
        with pytest.raises(ModelUnavailableError, match="not on this machine"):
            run_experiment(config, progress=False)  # encoders from the registry
        assert not list((tmp_path / "out" / "cache").rglob("artifact.json"))
    finally:
        ENCODERS.unregister("test-missing")


_KILLED_RUN = """
import sys, time
sys.path[:0] = {paths!r}
import test_experiment as t
from fmri2image.generation import register_generator

class Slow(t.PaintGenerator):
    def generate(self, requests):
        time.sleep(0.3)
        return super().generate(requests)

register_generator("test-paint", Slow, conditioning="embedding", description="test",
                   offline=True, overwrite=True)
import dataclasses
config = t._config(({god!r}, {db!r}), {out!r})
config = dataclasses.replace(config, generation=dataclasses.replace(config.generation,
                             batch_size=1))
t._run(config)
"""


@pytest.mark.slow
def test_a_sigkilled_run_resumes_to_identical_tables(god, first, tmp_path):
    """SIGKILL (no cleanup runs) while pictures are being made, then rerun."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "out"
    here = Path(__file__).resolve().parent
    script = _KILLED_RUN.format(
        paths=[str(here), str(here.parent / "features")], god=str(god[0]), db=str(god[1]),
        out=str(out),
    )  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            partial = list((out / "cache").glob("generation_*/.partial-*"))
            if any(len(list(p.glob("*.png"))) >= 2 for p in partial):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    resumed = _run(dataclasses.replace(first.config, out=str(out), cache=None))
    assert not list((out / "cache").glob("*/.partial-*"))
    assert not list((out / "cache").glob("*/.staging-*"))
    assert _tables(resumed.out_dir) == _tables(first.out_dir)


def test_a_generator_gets_at_least_its_own_batch_per_call(god, tmp_path):
    """generation.batch_size is a lower bound: invert optimises its batch_size images
    together, and a run must not split that pass into smaller calls."""
    from fmri2image.generation import GENERATORS, register_generator

    sizes: list[int] = []

    class Batched(PaintGenerator):
        name = "test-batched"

        @property
        def preferred_batch(self) -> int:
            return 4

        def generate(self, requests):
            sizes.append(len(requests))
            return super().generate(requests)

    register_generator("test-batched", Batched, conditioning="embedding", description="test",
                       offline=True, overwrite=True)  # fmt: skip
    try:
        config = _config(
            god, tmp_path / "out", models=("pool-a",),
            generation=GenerationSection(generators=("test-batched",), batch_size=1),
        )  # fmt: skip
        _run(config)
    finally:
        GENERATORS.unregister("test-batched")
    # predicted, true and random: three stages of chunks of 4 and a remainder each
    assert max(sizes) == 4 and sum(s < 4 for s in sizes) <= 3, sizes
    from fmri2image.generation.invert import InvertGenerator

    assert InvertGenerator(batch_size=7).preferred_batch == 7
    assert PaintGenerator().preferred_batch is None


def test_a_ridge_parameter_added_later_keeps_earlier_keys_at_its_default(god, tmp_path):
    """cv_statistics="fold" is what ridge did before the parameter existed: it stays out
    of the mapping stage's key (caches of earlier versions are reused); "train" enters it."""
    from fmri2image.pipeline.experiment import build_experiment
    from fmri2image.pipeline.stages import _PARAMS_ADDED_LATER

    assert _PARAMS_ADDED_LATER == {"cv_statistics": "fold"}

    def keys(**ridge):
        mapping = MappingSection(cv=3, options={"ridge": ridge} if ridge else {})
        config = _config(god, tmp_path / "out", mapping=mapping)
        graph = build_experiment(config, encoders=ENCODERS, progress=False).graph
        return {n: k for n, k in graph.keys().items() if n.startswith("mapping/pool-a/")}

    plain = keys()
    assert plain and keys(cv_statistics="fold") == plain
    train = keys(cv_statistics="train")
    assert train.keys() == plain.keys() and all(train[n] != plain[n] for n in plain)
