"""Mappers compared like encoders (``--mappers``), and winners only above their floor.

The run tests use the tiny components of ``_experiment_setup`` and a second mapper
defined here (a nearest-neighbour map), so only the bookkeeping is under test: every
model × mapper gets its map, retrievals, pictures and scores on shared data and
feature stages; the tables, the printed comparison and the report carry the mapper.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _experiment_setup import ENCODERS, _config

from fmri2image.errors import ConfigError
from fmri2image.evaluation.evaluate import Evaluation, MetricScore
from fmri2image.mapping import MAPPERS, Mapper, register_mapper
from fmri2image.pipeline.config import GenerationSection, MappingSection, load_config
from fmri2image.pipeline.experiment import run_experiment
from fmri2image.pipeline.tables import (
    BEST_MARK,
    ReconstructionScores,
    floor_tests,
    format_comparison,
    paired_rows,
    summary_rows,
)


class NearestMap(Mapper):
    """Predicts the mean embedding of the ``k`` training samples most correlated with
    each sample."""

    format_name = "nearest"

    def __init__(self, *, k: int = 3) -> None:
        self.k = k

    def check_params(self, n_samples=None, n_features=None, n_groups=None):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"k must be a positive integer, got {self.k!r}.")

    def fit(self, X, Y, groups=None):
        self.check_params()
        self.X_ = np.asarray(X, dtype=np.float64)
        self.Y_ = np.asarray(Y, dtype=np.float64)
        return self

    def predict(self, X):
        def z(A):
            A = np.asarray(A, dtype=np.float64)
            return (A - A.mean(1, keepdims=True)) / (A.std(1, keepdims=True) + 1e-9)

        nearest = np.argsort(-(z(X) @ z(self.X_).T), axis=1)[:, : self.k]
        return self.Y_[nearest].mean(axis=1)

    def _save_state(self):
        return {"X_": self.X_, "Y_": self.Y_}, {}


@pytest.fixture(scope="module")
def nearest():
    register_mapper("nearest", NearestMap)
    yield "nearest"
    MAPPERS.unregister("nearest")


def _two_mappers(god, out, **changes):
    return _config(
        god, out, models=("pool-a",),
        mapping=MappingSection(cv=3, mappers=("ridge", "nearest"),
                               options={"nearest": {"k": 2}}),
        generation=GenerationSection(generators=("test-paint",)), **changes,
    )  # fmt: skip


@pytest.fixture(scope="module")
def compared(god, nearest, tmp_path_factory):
    out = tmp_path_factory.mktemp("mappers") / "out"
    return run_experiment(_two_mappers(god, out), encoders=ENCODERS, progress=False)


# ------------------------------------------------------------------ configuration
def test_mappers_and_their_options_in_the_configuration(nearest):
    cfg = load_config(None, ['mapping.mappers=["ridge", "nearest"]',
                             "mapping.options.nearest={ k = 4 }"])  # fmt: skip
    assert cfg.mapping.mappers == ("ridge", "nearest")
    assert cfg.mapping.options_for("nearest") == {"k": 4}
    assert cfg.mapping.options_for("ridge") == {}
    assert cfg.mapping.make_mapper("nearest").k == 4
    cfg.validate()
    # The key of earlier versions is one mapper.
    assert load_config(None, ["mapping.mapper=nearest"]).mapping.mappers == ("nearest",)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["mapping.mappers=[]"], "empty"),
        (['mapping.mappers=["ridge", "ridge"]'], "twice"),
        (['mapping.mappers=["ridge", "ridgee"]'], "ridge"),
        (["mapping.options.nearest={ k = 2 }"], "does not run"),
        (['mapping.mappers=["ridge", "nearest"]', "mapping.options.nearest={ k = 0 }"],
         "mapping \\(nearest\\): k must be"),
        (["mapping.cv.x=1"], "not a table"),
    ],
)  # fmt: skip
def test_bad_mappers_are_one_message(nearest, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides).validate()


# ------------------------------------------------------------------ the run
def test_every_mapper_gets_its_map_on_shared_data_and_features(compared):
    names = [r.name for r in compared.records]
    assert names.count("data/s1/ROI_VC") == 1 and names.count("features/pool-a") == 1
    for mapper in ("ridge", "nearest"):
        assert f"mapping/pool-a/{mapper}/s1/ROI_VC" in names
        assert any(n.startswith(f"retrieval/pool-a/{mapper}/") for n in names)
        assert f"generation/pool-a/test-paint/predicted/{mapper}/s1/ROI_VC" in names
    # The bounds have no map in them: made once, scored under each mapper.
    bounds = [n for n in names if n.startswith("generation/pool-a/test-paint/random/")]
    assert len(bounds) == 1
    scored = {(e.mapper, e.condition) for e in compared.reconstructions}
    assert scored == {(m, c) for m in ("ridge", "nearest") for c in ("predicted", "true", "random")}
    # Each mapper's predictions differ: these are two maps, not one copied.
    by_mapper = {m.mapper: m for m in compared.decodings[(1, "ROI_VC")].models}
    assert set(by_mapper) == {"ridge", "nearest"}
    assert by_mapper["nearest"].fit.get("mapper") != by_mapper["ridge"].fit.get("mapper")


def test_tables_and_outputs_are_indexed_by_mapper(compared):
    import pandas as pd

    out = compared.out_dir
    summary = pd.read_parquet(out / "tables" / "summary.parquet")
    assert set(summary["mapper"]) == {"ridge", "nearest"}
    decoding = pd.read_parquet(out / "tables" / "decoding.parquet")
    assert set(decoding["mapper"]) == {"ridge", "nearest"}
    paired = pd.read_parquet(out / "tables" / "paired.parquet")
    assert len(paired) and set(zip(paired["mapper_a"], paired["mapper_b"])) == {
        ("ridge", "nearest")
    }
    assert (paired["model_a"] == "pool-a").all() and (paired["model_b"] == "pool-a").all()
    for mapper in ("ridge", "nearest"):
        pictures = out / "images" / "s1-ROI_VC" / "pool-a" / mapper / "test-paint" / "predicted"
        assert len(list(pictures.glob("*.png"))) == 4
        assert (out / "maps" / "s1-ROI_VC" / "pool-a" / mapper / "mapping").is_dir()
    assert "mapper" in compared.comparison.splitlines()[1]
    assert "pool-a · nearest" in compared.comparison  # the paired tests name the decoders
    html = (out / "report.html").read_text()
    assert "pool-a · nearest" in html and "pool-a · ridge" in html
    assert "ridge, nearest" in html  # the run's mappers, in the report's header


def test_dropping_a_mapper_reuses_the_other(compared, god, nearest):
    again = run_experiment(
        dataclasses.replace(
            _two_mappers(god, compared.out_dir),
            mapping=MappingSection(cv=3, mappers=("ridge",)),
        ),
        encoders=ENCODERS,
        progress=False,
    )
    assert again.computed == []  # everything ridge needs was made by the comparison
    assert {e.mapper for e in again.reconstructions} == {"ridge"}


# ------------------------------------------------------------------ honest winners
def _entry(model, condition, scores, mapper="ridge"):
    stems = tuple(f"n{i:02d}_x" for i in range(len(scores)))
    values = np.asarray(scores, dtype=np.float64)
    summary = {
        "ssim": MetricScore(name="ssim", mean=float(values.mean()), ci_low=None, ci_high=None,
                            n=len(values), chance=None, unpaired=None, higher_is_better=True,
                            network=None)
    }  # fmt: skip
    return ReconstructionScores(
        1, "ROI_VC", model, "invert", condition, Evaluation(stems, {"ssim": values}, summary),
        images=".", mapper=mapper,
    )  # fmt: skip


def _method(model, predicted, floor, ceiling=0.9):
    return [
        _entry(model, "predicted", predicted),
        _entry(model, "random", floor),
        _entry(model, "true", [ceiling] * len(predicted)),
    ]


def _stars(entries):
    summary = summary_rows(entries, n_permutations=2000)
    table = format_comparison(summary, paired_rows(entries, n_permutations=2000))
    rows = [line for line in table.splitlines() if not line.startswith(BEST_MARK)]
    return [line.split()[0] for line in rows if BEST_MARK in line.split("[")[0]]


def test_the_best_mean_at_its_floor_gets_no_star():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.02, 20)
    # a: the highest mean, but no better than its own floor (the SSIM of blobs).
    a = _method("a", 0.47 + noise, 0.475 + noise[::-1])
    # b: a lower mean, clearly above its floor.
    b = _method("b", 0.40 + noise, 0.20 + noise[::-1])
    tests = floor_tests([*a, *b], n_permutations=2000)
    assert tests[(a[0].key, "ssim")]["p_floor"] > 0.05
    assert tests[(b[0].key, "ssim")]["p_floor"] < 0.05
    assert tests[(b[0].key, "ssim")]["floor_difference"] == pytest.approx(0.20, abs=0.02)
    assert _stars([*a, *b]) == []  # the column's best is not a winner, and b is not best
    # Raised above its floor, a wins its column.
    a_up = _method("a", 0.60 + noise, 0.475 + noise[::-1])
    assert _stars([*a_up, *b]) == ["a"]


def test_floor_rows_are_in_the_summary_and_the_report_csv():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.02, 12)
    entries = [*_method("a", 0.6 + noise, 0.3 + noise), *_method("b", 0.3 + noise, 0.3 - noise)]
    rows = {(r["model"], r["condition"]): r for r in summary_rows(entries, n_permutations=500)}
    assert rows[("a", "predicted")]["p_floor"] < 0.05
    assert rows[("b", "predicted")]["p_floor"] > 0.05
    assert rows[("a", "random")]["p_floor"] is None  # only predicted sets are tested


def test_the_mlp_is_fitted_with_the_runs_device_and_seed(god, tmp_path):
    """`--mappers ridge mlp` on a decode: the MLP gets the run's device and seed (its
    key says so), is saved in its own format and loads back to the same predictions."""
    from fmri2image.mapping import load_mapping

    config = _config(
        god, tmp_path / "out", models=("pool-a",), seed=3,
        mapping=MappingSection(cv=3, mappers=("ridge", "mlp"),
                               options={"mlp": {"max_epochs": 3, "hidden": 64}}),
        generation=GenerationSection(generators=()),
    )  # fmt: skip
    result = run_experiment(config, encoders=ENCODERS, progress=False)
    mlp = next(m for m in result.decodings[(1, "ROI_VC")].models if m.mapper == "mlp")
    assert mlp.fit["mapper"] == "MLPMapping"
    folder = result.out_dir / "maps" / "s1-ROI_VC" / "pool-a" / "mlp"
    model = load_mapping(folder / "mapping")
    assert (model.device, model.random_state, model.max_epochs) == ("cpu", 3, 3)
    predicted = np.load(folder / "predicted_test_embeddings.npy")
    assert predicted.shape == (4, 48) and np.isfinite(predicted).all()
