"""A new mapping model: one class and one ``register_mapper`` call, then ``run --mapper``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _cli import run

from fmri2image.mapping import MAPPERS, Mapper, register_mapper


class NearestTrainMean(Mapper):
    """Predicts, for each sample, the mean embedding of the ``k`` training samples whose
    voxel patterns correlate best with it (a k-nearest-neighbour map)."""

    format_name = "toy-knn"

    def __init__(self, *, k: int = 3) -> None:
        self.k = k

    def fit(self, X, Y, groups=None):
        self.X_ = np.asarray(X, dtype=np.float64)
        self.Y_ = np.asarray(Y, dtype=np.float64)
        return self

    def predict(self, X):
        X = np.asarray(X, dtype=np.float64)
        a = (X - X.mean(1, keepdims=True)) / (X.std(1, keepdims=True) + 1e-9)
        b = (self.X_ - self.X_.mean(1, keepdims=True)) / (self.X_.std(1, keepdims=True) + 1e-9)
        nearest = np.argsort(-(a @ b.T), axis=1)[:, : self.k]
        return self.Y_[nearest].mean(axis=1)

    def _save_state(self):
        return {"X_": self.X_, "Y_": self.Y_}, {}


@pytest.fixture
def toy_mapper():
    register_mapper("toy-knn", NearestTrainMean)
    yield "toy-knn"
    MAPPERS.unregister("toy-knn")


def test_a_registered_mapper_runs_end_to_end(god, pool48, toy_mapper, tmp_path):
    root, _db = god
    out = tmp_path / "out"
    assert run("run", "--data", str(root), "--model", pool48, "--mapper", toy_mapper,
               "--set", "mapping.options={ k = 2 }", "--database", "prototypes",
               "--generators", "invert", "--set",
               "generation.options={ invert = { iterations = 2, size = 32 } }",
               "--metrics", "ssim", "--out", str(out)) == 0  # fmt: skip
    (row,) = json.loads((out / "summary.json").read_text())["encoders"]
    assert row["fit"]["mapper"] == "NearestTrainMean" and row["alpha_median"] is None
    assert row["pairwise_id"] > row["pairwise_id_chance"]  # the planted brain is found
    # the fitted map is saved in its own format and loads back
    from fmri2image.mapping import load_mapping

    model = load_mapping(out / "maps" / "s1-ROI_VC" / "pool48" / toy_mapper / "mapping")
    assert isinstance(model, NearestTrainMean) and model.k == 2
    assert (out / "config.toml").read_text().count('mappers = ["toy-knn"]') == 1


def test_its_options_are_checked_before_any_work(god, pool48, toy_mapper, tmp_path, capsys):
    root, _ = god
    out = tmp_path / "out"
    assert run("decode", "--data", str(root), "--model", pool48, "--mapper", toy_mapper,
               "--set", "mapping.options={ nosuch = 1 }", "--out", str(out)) == 2  # fmt: skip
    assert "does not accept" in capsys.readouterr().err and not out.exists()
