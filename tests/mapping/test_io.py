"""save_mapping / load_mapping round trip (safetensors + JSON, no pickle)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.model_selection import GroupKFold

from fmri2image.errors import DataFormatError
from fmri2image.mapping import RidgeMapping, load_mapping, save_mapping


@pytest.mark.parametrize("kwargs", [{"n_voxels": 40}, {"cv": "loo", "dtype": "float64"}])
def test_round_trip(wide, tmp_path, kwargs):
    X, Y, _ = wide
    model = RidgeMapping(alphas=np.logspace(-1, 5, 7), **kwargs).fit(X, Y)
    folder = save_mapping(model, tmp_path / "map")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "mapping.safetensors"]
    with open(folder / "mapping.safetensors", "rb") as fh:
        assert not fh.read(2).startswith(b"\x80")  # not a pickle stream
    loaded = load_mapping(folder)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    for attr in ["alpha_", "cv_scores_", "best_score_", "voxel_indices_", "x_mean_", "y_scale_"]:
        np.testing.assert_array_equal(getattr(loaded, attr), getattr(model, attr))
    assert loaded.get_params()["n_voxels"] == model.n_voxels
    np.testing.assert_array_equal(loaded.alphas, model.alphas)
    assert loaded.solver_ == model.solver_
    assert loaded.n_features_in_ == X.shape[1]


def test_round_trip_1d_and_splitter(wide, tmp_path):
    X, Y, _ = wide
    groups = np.repeat(np.arange(8), 5)
    model = RidgeMapping(alphas=[1.0, 100.0], cv=GroupKFold(4)).fit(X, Y[:, 0], groups=groups)
    loaded = load_mapping(save_mapping(model, tmp_path / "m"))
    assert loaded.predict(X).shape == (len(X),)
    assert loaded.cv == 5  # splitter objects are recorded as text, not pickled
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert "GroupKFold" in config["params"]["cv"]


def test_tampered_or_missing_files(wide, tmp_path):
    X, Y, _ = wide
    folder = save_mapping(RidgeMapping(alphas=[1.0], cv=2).fit(X, Y), tmp_path / "m")
    with pytest.raises(DataFormatError, match="not a saved mapping"):
        load_mapping(tmp_path / "nowhere")
    other = save_mapping(RidgeMapping(alphas=[2.0], cv=2).fit(X, Y), tmp_path / "other")
    (folder / "mapping.safetensors").write_bytes((other / "mapping.safetensors").read_bytes())
    with pytest.raises(DataFormatError, match="checksum"):
        load_mapping(folder)


def test_unfitted_model_cannot_be_saved(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        save_mapping(RidgeMapping(), tmp_path / "m")


def test_dual_form_model_round_trips(tmp_path):
    # 40 x (300 + 200) < 300 x 200: the fit keeps the dual form; saving stores the
    # weights, and the loaded model predicts the same.
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 300))
    Y = X[:, :4] @ rng.standard_normal((4, 200)) + rng.standard_normal((40, 200))
    model = RidgeMapping(alphas=[1.0, 100.0], cv=4, dtype="float64").fit(X, Y)
    assert "_dual" in vars(model)
    pred = model.predict(X[:5])
    loaded = load_mapping(save_mapping(model, tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict(X[:5]), pred, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(loaded.coef_, model.coef_)
