"""The Mapper contract and MAPPERS registry: any registered mapper saves and loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.mapping import (
    MAPPERS,
    Mapper,
    RidgeMapping,
    get_mapper,
    load_mapping,
    mapper_class,
    register_mapper,
    save_mapping,
)

DATA = Path(__file__).parent / "data"


# One file: a test-only mapper (ordinary least squares with an intercept).
class LstsqMapper(Mapper):
    """Least squares ``Y ≈ [X, 1] @ W`` with a ridge ``penalty`` (no sklearn base class)."""

    format_name = "test-lstsq"

    def __init__(self, *, penalty: float = 0.0) -> None:
        self.penalty = penalty

    def fit(self, X, Y, groups=None):
        A = np.column_stack([np.asarray(X, dtype=float), np.ones(len(X))])
        G = A.T @ A + self.penalty * np.eye(A.shape[1])
        self.weights_ = np.linalg.solve(G, A.T @ np.asarray(Y, dtype=float))
        self.n_features_in_ = int(A.shape[1] - 1)
        return self

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        return X @ self.weights_[:-1] + self.weights_[-1]

    def _save_state(self):
        if not hasattr(self, "weights_"):
            raise ValueError("LstsqMapper is not fitted")
        return {"weights_": self.weights_}, {"n_features_in_": self.n_features_in_}


@pytest.fixture
def lstsq_registered():
    # One registry line.
    register_mapper("test-lstsq", LstsqMapper)
    yield
    if "test-lstsq" in MAPPERS:
        MAPPERS.unregister("test-lstsq")


def test_ridge_is_registered_and_built_by_name():
    assert "ridge" in MAPPERS
    assert mapper_class("ridge") is RidgeMapping
    assert RidgeMapping.format_name == "ridge"
    model = get_mapper("ridge", cv=3, alphas=[1.0])
    assert isinstance(model, RidgeMapping) and isinstance(model, Mapper)
    assert model.get_params()["cv"] == 3


def test_new_mapper_is_one_class_and_one_line(wide, tmp_path, lstsq_registered):
    X, Y, _ = wide
    model = get_mapper("test-lstsq", penalty=2.0).fit(X, Y)
    assert model.get_params() == {"penalty": 2.0}
    folder = save_mapping(model, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "fmri2image.mapping/test-lstsq"
    assert config["params"] == {"penalty": 2.0}
    loaded = load_mapping(folder)
    assert type(loaded) is LstsqMapper and loaded.penalty == 2.0
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.n_features_in_ == X.shape[1]


def test_ridge_round_trip_through_generic_format(wide, tmp_path):
    X, Y, _ = wide
    model = RidgeMapping(alphas=np.logspace(-1, 5, 7), n_voxels=40).fit(X, Y)
    folder = save_mapping(model, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "fmri2image.mapping/ridge"
    assert config["format_version"] == 2
    assert config["fitted"]["diagnostics_"]["n_samples"] == len(X)
    loaded = load_mapping(folder)
    assert type(loaded) is RidgeMapping
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.alpha_, model.alpha_)
    assert loaded.diagnostics_ == model.diagnostics_


def test_legacy_ridge_format_loads():
    """``data/legacy_ridge_v1`` was written by the ridge-only save_mapping (format 1)."""
    config = json.loads((DATA / "legacy_ridge_v1" / "config.json").read_text())
    assert config["format"] == "fmri2image.mapping.RidgeMapping"
    assert config["format_version"] == 1
    expected = np.load(DATA / "legacy_ridge_v1_expected.npz", allow_pickle=False)
    loaded = load_mapping(DATA / "legacy_ridge_v1")
    assert type(loaded) is RidgeMapping
    np.testing.assert_array_equal(loaded.predict(expected["X"]), expected["Y_pred"])
    np.testing.assert_array_equal(loaded.alpha_, expected["alpha"])
    assert loaded.n_voxels == 8 and loaded.cv == 3
    assert loaded.diagnostics_.scheme == config["diagnostics"]["scheme"]


def test_legacy_ridge_without_pooling_or_diagnostics(tmp_path):
    """Older format-1 files lacked score_pooling and diagnostics."""
    folder = tmp_path / "old"
    shutil.copytree(DATA / "legacy_ridge_v1", folder)
    config = json.loads((folder / "config.json").read_text())
    del config["params"]["score_pooling"]
    del config["diagnostics"]
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load_mapping(folder)
    assert loaded.score_pooling == "fold-mean"
    assert not hasattr(loaded, "diagnostics_")


def test_tampered_weights_refused(wide, tmp_path, lstsq_registered):
    X, Y, _ = wide
    folder = save_mapping(LstsqMapper().fit(X, Y), tmp_path / "m")
    raw = bytearray((folder / "mapping.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (folder / "mapping.safetensors").write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match="checksum"):
        load_mapping(folder)
    legacy = tmp_path / "legacy"
    shutil.copytree(DATA / "legacy_ridge_v1", legacy)
    (legacy / "mapping.safetensors").write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match="checksum"):
        load_mapping(legacy)


def test_unknown_format_names_the_registered_ones(wide, tmp_path, lstsq_registered):
    X, Y, _ = wide
    folder = save_mapping(LstsqMapper().fit(X, Y), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    for fmt in ["fmri2image.mapping/no-such-mapper", "something.else", None]:
        config["format"] = fmt
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(DataFormatError, match=r"fmri2image\.mapping/ridge") as info:
            load_mapping(folder)
        assert repr(fmt) in str(info.value)
        assert "fmri2image.mapping/test-lstsq" in str(info.value)


def test_a_mapper_no_longer_registered_cannot_be_loaded(wide, tmp_path, lstsq_registered):
    X, Y, _ = wide
    folder = save_mapping(LstsqMapper().fit(X, Y), tmp_path / "m")
    MAPPERS.unregister("test-lstsq")
    with pytest.raises(DataFormatError, match="register_mapper"):
        load_mapping(folder)


def test_newer_format_version_refused(wide, tmp_path):
    X, Y, _ = wide
    folder = save_mapping(RidgeMapping(alphas=[1.0], cv=2).fit(X, Y), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["format_version"] = 99
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataFormatError, match="newer fmri2image"):
        load_mapping(folder)


def test_inconsistent_ridge_state_refused(tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(DATA / "legacy_ridge_v1", folder)
    config = json.loads((folder / "config.json").read_text())
    config["fitted"]["n_features_in_"] = 3  # voxel_indices point past it
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataFormatError, match="inconsistent shapes"):
        load_mapping(folder)


def test_unknown_mapper_name_suggests_close_matches():
    with pytest.raises(ConfigError, match="Did you mean: ridge") as info:
        get_mapper("rigde")
    assert "mapping model" in str(info.value)
    with pytest.raises(ConfigError, match="does not accept"):
        get_mapper("ridge", not_an_option=1)


def test_registration_is_checked(lstsq_registered):
    with pytest.raises(ConfigError, match="already registered"):
        register_mapper("test-lstsq", LstsqMapper)
    with pytest.raises(ConfigError, match="format_name"):
        register_mapper("other-name", LstsqMapper)
    with pytest.raises(ConfigError, match=r"subclass of fmri2image\.mapping\.Mapper"):
        register_mapper("plain", object)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="module:ClassName"):
        register_mapper("lazy", "no_colon_here")
    with pytest.raises(ConfigError, match="without ':' or '/'"):
        register_mapper("a/b", LstsqMapper)


def test_saving_an_unregistered_or_unfitted_mapper(wide, tmp_path):
    X, Y, _ = wide
    with pytest.raises(ConfigError, match="not a registered mapping model"):
        save_mapping(LstsqMapper().fit(X, Y), tmp_path / "m")
    assert not (tmp_path / "m").exists()

    class NotAMapper:
        format_name = "ridge"

    with pytest.raises(ConfigError, match="not a registered mapping model"):
        save_mapping(NotAMapper(), tmp_path / "m")  # type: ignore[arg-type]


def test_json_unfriendly_params_are_refused(wide, tmp_path, lstsq_registered):
    X, Y, _ = wide
    bad = LstsqMapper(penalty=np.float64(1.0)).fit(X, Y)
    save_mapping(bad, tmp_path / "ok")  # numpy scalars become numbers
    assert json.loads((tmp_path / "ok" / "config.json").read_text())["params"] == {"penalty": 1.0}
    bad.penalty = object()
    with pytest.raises(ConfigError, match="_save_params"):
        save_mapping(bad, tmp_path / "bad")


def test_listing_mappers_does_not_import_sklearn():
    code = (
        "import sys; from fmri2image.mapping import MAPPERS, get_mapper, Mapper; "
        "assert MAPPERS.names() == ['mlp', 'ridge'], MAPPERS.names(); "
        "assert 'sklearn' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
