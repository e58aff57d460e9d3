"""The shared CLI flags: value forms, stated defaults, and the output-folder check."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest

from fmri2image.cli import _options
from fmri2image.cli.main import build_parser
from fmri2image.errors import ConfigError
from fmri2image.pipeline import DecodingConfig
from fmri2image.pipeline.preflight import check_output_dir, parse_database


def test_cv_accepts_folds_and_loo():
    assert _options.parse_cv("5") == 5
    assert _options.parse_cv("LOO") == "loo"
    for bad in ("1", "x", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="number of folds"):
            _options.parse_cv(bad)


def test_alpha_grid_is_log_spaced():
    grid = _options.parse_alphas("1e-2:1e10:13")
    np.testing.assert_allclose(grid, np.logspace(-2, 10, 13))
    assert _options.parse_alphas("10") == (10.0,)
    for bad in ("1:2", "0:10:3", "10:1:3", "a:b:c", "1:10:0", "1:10:1"):
        with pytest.raises(argparse.ArgumentTypeError):
            _options.parse_alphas(bad)


def test_parser_defaults_are_the_config_defaults():
    d = DecodingConfig()
    for key, value in _options.MAPPING_DEFAULTS.items():
        assert getattr(d, key) == value, key
    args = build_parser().parse_args(
        ["decode", "--god", "g", "--subject", "1", "--out", "o", "--model", "m"]
    )
    fields = {f.name for f in dataclasses.fields(DecodingConfig)}
    for key, value in _options.mapping_config(args).items():
        assert key in fields
        assert value == getattr(d, key), key


def test_decode_help_states_defaults_and_examples(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["decode", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # help wraps lines
    assert "examples:" in text and "--cv loo --cv-groups none" in text
    for flag_default in ("(default: 5)", "(default: none)", "(default: ROI_VC)", "(default: 0)"):
        assert flag_default in text
    assert "(default: None)" not in text


def test_output_dir_check_leaves_nothing_behind(tmp_path):
    target = tmp_path / "a" / "b" / "out"
    assert check_output_dir(target) == target
    assert not (tmp_path / "a").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    check_output_dir(existing)
    assert list(existing.iterdir()) == []


@pytest.mark.parametrize("kind", ["file", "under-file", "unwritable"])
def test_output_dir_check_refuses(tmp_path, kind):
    f = tmp_path / "afile"
    f.write_text("x")
    out = {"file": f, "under-file": f / "sub", "unwritable": "/proc/fmri2image-test/out"}[kind]
    with pytest.raises(ConfigError, match="--out"):
        check_output_dir(out)


def test_database_values(tmp_path):
    assert parse_database("prototypes").kind == "prototypes"
    assert parse_database("text-prototypes:21k").vocabulary == "21k"
    with pytest.raises(ConfigError, match=r"vocabulary .5k."):
        parse_database("text-prototypes:5k")
    with pytest.raises(ConfigError, match="no such folder"):
        parse_database(str(tmp_path / "nope"))
    (tmp_path / "imgs" / "n01443537").mkdir(parents=True)
    assert parse_database(str(tmp_path / "imgs")).kind == "images"
    (tmp_path / "feats" / "effnet-lite0").mkdir(parents=True)
    (tmp_path / "feats" / "effnet-lite0" / "manifest.json").write_text("{}")
    assert parse_database(str(tmp_path / "feats")).kind == "features"
