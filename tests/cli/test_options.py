"""The shared CLI flags: value forms, stated defaults, and the output-folder check."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from fmri2image.cli import _options
from fmri2image.cli.main import build_parser
from fmri2image.errors import ConfigError
from fmri2image.pipeline.config import RunConfig
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


def test_flags_left_out_leave_the_config_defaults():
    """Every flag defaults to "not given", so --config and --set are never overridden
    by a default; with no flag at all the configuration is RunConfig's defaults."""
    for command in (["decode"], ["run"], ["compare"]):
        args = build_parser().parse_args([*command, "--data", "g", "--out", "o"])
        config = _options.config_from_args(args)
        assert config == RunConfig().replace(out="o", data__path="g"), command


def test_every_flag_reaches_its_key(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text('seed = 3\n[mapping]\ncv = 4\n[data]\noptions = { release = "spm" }\n')
    args = build_parser().parse_args(
        ["compare", "--config", str(toml), "--set", "retrieval.k=7", "--models", "a", "b",
         "--dataset", "god", "--god", "G", "--subject", "2", "3", "--roi", "ROI_V1",
         "--split", "imagery", "--release", "fmriprep", "--drop-nan-voxels",
         "--normalization", "train", "--mapper", "ridge", "--cv", "loo", "--cv-groups", "none",
         "--alphas", "1:100:3", "--shared-alpha", "--database", "prototypes", "--vote",
         "majority", "--generators", "invert", "--no-bounds", "--labels-from", "prototypes",
         "--init", "invert", "--dtype", "float16", "--executor", "ray", "--workers", "2",
         "--metrics", "ssim", "--device", "cuda", "--batch-size", "8", "--seed", "5",
         "--no-visualize", "--out", "o", "--cache", "c"]
    )  # fmt: skip
    c = _options.config_from_args(args)
    assert c.models == ("a", "b") and c.seed == 5 and c.device == "cuda" and c.batch_size == 8
    assert (c.out, c.cache, c.visualize) == ("o", "c", False)
    d = c.data
    assert (d.dataset, d.path, d.subjects, d.rois, d.split) == ("god", "G", (2, 3), ("ROI_V1",),
                                                                "imagery")  # fmt: skip
    assert d.options == {"release": "fmriprep"} and d.drop_nan_voxels and d.normalization == "train"
    m = c.mapping
    assert (m.mappers, m.cv, m.cv_groups, m.alpha_per_target) == (("ridge",), "loo", "none", False)
    assert m.alphas == (1.0, 10.0, 100.0)
    r = c.retrieval
    assert (r.databases, r.k, r.vote) == (("prototypes",), 7, "majority")
    g = c.generation
    assert g.generators == ("invert",) and g.conditions == ("predicted",)
    assert (g.labels_from, g.init, g.dtype, g.executor, g.workers) == (
        "prototypes", "invert", "float16", "ray", 2
    )  # fmt: skip
    assert c.evaluation.metrics == ("ssim",)


def test_decode_help_states_defaults_and_examples(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["decode", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # help wraps lines
    assert "examples:" in text and "--cv loo --cv-groups none" in text
    for flag_default in ("mapping.cv; default: 5)", "mapping.cv_groups; default: none)",
                         "data.rois; default: the dataset's visual cortex: ROI_VC for GOD", "seed; default: 0)"):  # fmt: skip
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
