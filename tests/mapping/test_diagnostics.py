"""Fit diagnostics, their phrasing (fit_warnings) and the LO:HI:N alpha-grid parser."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from _mapping_data import planted

from fmri2image.errors import ConfigError
from fmri2image.mapping import (
    DEFAULT_ALPHAS,
    FitDiagnostics,
    RidgeMapping,
    fit_warnings,
    load_mapping,
    parse_alpha_grid,
    save_mapping,
)

CLI_FLAGS = {
    "alphas": "--alphas LO:HI:N",
    "groups": "--cv-groups none",
    "cv": "--cv",
    "alpha_per_target": "--shared-alpha",
}


def noise_fit(**kwargs) -> RidgeMapping:
    """Pure noise: cross-validation finds no signal, most targets pick the largest alpha."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((60, 40)), rng.standard_normal((60, 8))
    groups = kwargs.pop("groups", None)
    return RidgeMapping(**kwargs).fit(X, Y, groups=groups)


def diag(**changes) -> FitDiagnostics:
    base = {
        "scheme": "5-fold CV, pooled r2, alpha per target",
        "cv": "kfold",
        "n_splits": 5,
        "n_groups": None,
        "n_samples": 1200,
        "n_targets": 1280,
        "scoring": "r2",
        "score_pooling": "pooled",
        "alpha_per_target": True,
        "n_alphas": 13,
        "alpha_low": 1e-2,
        "alpha_high": 1e10,
        "share_low": 0.0,
        "share_high": 0.0,
        "alpha_median": 1e3,
    }
    return FitDiagnostics(**{**base, **changes})


# ---------------------------------------------------------------- diagnostics_
def test_diagnostics_record_the_scheme_and_grid_edges():
    X, Y, _ = planted(80, 60, 6, noise=1.0, seed=3)
    groups = np.repeat(np.arange(16), 5)
    model = RidgeMapping(cv=4).fit(X, Y, groups=groups)
    d = model.diagnostics_
    assert (d.cv, d.n_splits, d.n_groups, d.grouped) == ("group-kfold", 4, 16, True)
    assert (d.n_samples, d.n_targets, d.n_alphas) == (80, 6, len(DEFAULT_ALPHAS))
    assert (d.alpha_low, d.alpha_high) == (1e-2, 1e10)
    assert d.share_low == np.mean(model.alpha_ == 1e-2)
    assert d.share_high == np.mean(model.alpha_ == 1e10)
    assert d.alpha_median == np.median(model.alpha_)
    assert d.scheme == "4-fold CV grouped by 16 groups, pooled r2, alpha per target"
    assert FitDiagnostics.from_dict(json.loads(json.dumps(d.to_dict()))) == d

    ungrouped = RidgeMapping(cv=4, random_state=0, alpha_per_target=False).fit(X, Y)
    assert ungrouped.diagnostics_.cv == "shuffled-kfold"
    assert ungrouped.diagnostics_.n_groups is None and not ungrouped.diagnostics_.grouped
    assert ungrouped.diagnostics_.scheme.endswith("one shared alpha")
    loo = RidgeMapping(cv="loo", scoring="correlation").fit(X, Y)
    assert (loo.diagnostics_.cv, loo.diagnostics_.n_splits) == ("loo", 80)
    assert loo.diagnostics_.scheme == "exact leave-one-out, pooled correlation, alpha per target"


def test_fit_logs_no_warning_only_debug(caplog):
    with caplog.at_level(logging.DEBUG, logger="fmri2image.mapping"):
        model = noise_fit(cv=5)
    assert model.diagnostics_.share_high > 0.1  # the old code warned here
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("largest" in m and "5-fold CV" in m for m in debug)


def test_diagnostics_survive_save_and_load(tmp_path):
    model = noise_fit(cv=5)
    loaded = load_mapping(save_mapping(model, tmp_path / "m"))
    assert loaded.diagnostics_ == model.diagnostics_
    assert fit_warnings(loaded) == fit_warnings(model)


# ---------------------------------------------------------------- fit_warnings
def test_fit_warnings_on_a_fit_without_signal():
    model = noise_fit(cv=5)
    (msg,) = fit_warnings(model)
    pct = f"{100 * model.diagnostics_.share_high:.0f}%"
    assert msg.startswith(f"{pct} of the 8 targets chose the largest alpha (1e+10)")
    assert "training mean" in msg and "no usable signal" in msg
    assert "extend the grid upward (alphas)" in msg
    assert "(--alphas LO:HI:N)" in fit_warnings(model, CLI_FLAGS)[0]


def test_fit_warnings_default_words_are_parameter_names():
    d = diag(share_low=0.3, share_high=0.5, cv="group-kfold", n_groups=10)
    low, high, groups = fit_warnings(d)
    assert low == (
        "30% of the 1280 targets chose the smallest alpha (0.01); their optimum may lie "
        "lower: extend the grid downward (alphas)."
    )
    assert high.startswith("50% of the 1280 targets chose the largest alpha (1e+10)")
    assert "Grouped folds over only 10 groups are a likely cause" in high
    assert groups.startswith("Cross-validation was grouped over only 10 groups (5 folds (cv)")
    assert "Ungrouped folds (groups=None)" in groups
    assert "--" not in " ".join([low, high, groups])
    # Ungrouped, per-target alphas: the advice names the grid and a shared alpha.
    (ungrouped_high,) = fit_warnings(diag(share_high=0.5))
    assert "extend the grid upward (alphas)" in ungrouped_high
    assert "(alpha_per_target=False)" in ungrouped_high
    (shared_high,) = fit_warnings(diag(share_high=1.0, alpha_per_target=False))
    assert "alpha_per_target" not in shared_high


def test_fit_warnings_use_the_callers_flags():
    d = diag(share_low=0.3, share_high=0.5, cv="group-kfold", n_groups=10)
    text = " ".join(fit_warnings(d, CLI_FLAGS) + fit_warnings(diag(share_high=0.5), CLI_FLAGS))
    for words in CLI_FLAGS.values():
        assert f"({words})" in text
    for name in ("(alphas)", "(groups=None)", "(cv)", "(alpha_per_target=False)"):
        assert name not in text
    # A partial mapping keeps the defaults for the other words.
    partial = " ".join(fit_warnings(d, {"groups": "--cv-groups none"}))
    assert "(--cv-groups none)" in partial and "(alphas)" in partial


def test_fit_warnings_thresholds():
    assert fit_warnings(diag()) == []
    assert fit_warnings(diag(share_high=0.1, share_low=0.1)) == []  # "more than 10 %"
    assert len(fit_warnings(diag(share_high=0.11))) == 1
    # 20 groups or more: no grouping message; 19: one.
    assert fit_warnings(diag(cv="group-kfold", n_groups=20)) == []
    (msg,) = fit_warnings(diag(cv="group-kfold", n_groups=19))
    assert "only 19 groups" in msg and "about 4 groups each" in msg
    # Grids of 1-2 alphas have no interior: ends are not judged.
    assert fit_warnings(diag(n_alphas=1, share_high=1.0, share_low=1.0)) == []


def test_fit_warnings_accepts_dicts_and_rejects_bad_input():
    d = diag(share_high=0.5)
    assert fit_warnings(d.to_dict()) == fit_warnings(d)
    with pytest.raises(ConfigError, match="unknown keys \\['alpha'\\]"):
        fit_warnings(d, {"alpha": "--alpha"})
    with pytest.raises(ConfigError, match="fitted RidgeMapping"):
        fit_warnings(RidgeMapping())
    with pytest.raises(ConfigError, match="lack the fields"):
        fit_warnings({"scheme": "x"})


# ------------------------------------------------------------ parse_alpha_grid
def test_parse_alpha_grid_default_form_is_exact():
    grid = parse_alpha_grid("1e-2:1e10:13")
    assert grid.dtype == np.float64
    np.testing.assert_array_equal(grid, np.asarray(DEFAULT_ALPHAS))
    assert tuple(grid) == DEFAULT_ALPHAS


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (" 1 : 1000 : 4 ", [1.0, 10.0, 100.0, 1000.0]),
        ("0.5:8:5", [0.5, 1.0, 2.0, 4.0, 8.0]),
        ("10:10:1", [10.0]),
        ("10", [10.0]),
        ("1e3", [1000.0]),
        ("1:100:2", [1.0, 100.0]),
    ],
)
def test_parse_alpha_grid_good(spec, expected):
    grid = parse_alpha_grid(spec)
    np.testing.assert_allclose(grid, expected, rtol=1e-12)
    assert grid[0] == expected[0] and grid[-1] == expected[-1]  # ends exactly as given


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("1e-2:1e10", "2 ':'-separated parts"),
        ("1:2:3:4", "4 ':'-separated parts"),
        ("", "is not a positive finite number"),
        ("0:10:3", "LO '0' is not a positive"),
        ("-1:10:3", "LO '-1' is not a positive"),
        ("1:inf:3", "HI 'inf'"),
        ("1:nan:3", "HI 'nan'"),
        ("a:10:3", "LO 'a'"),
        ("1:10:0", "N '0' is not a whole number"),
        ("1:10:2.5", "N '2.5'"),
        ("1:10:-3", "N '-3'"),
        ("10:1:3", "LO \\(10\\) is larger than HI \\(1\\)"),
        ("1:10:1", "single value"),
        ("5:5:3", "repeat"),
        ("-3", "not a positive"),
    ],
)
def test_parse_alpha_grid_bad_inputs_say_the_accepted_form(spec, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_alpha_grid(spec)
    assert "LO:HI:N" in str(info.value) and "1e-2:1e10:13" in str(info.value)


def test_parse_alpha_grid_rejects_non_strings():
    with pytest.raises(ConfigError, match="not a string"):
        parse_alpha_grid([1.0, 10.0])  # type: ignore[arg-type]


def test_parsed_grid_is_accepted_by_ridge():
    X, Y, _ = planted(40, 30, 2, seed=1)
    model = RidgeMapping(alphas=parse_alpha_grid("1:1e4:5"), cv=4).fit(X, Y)
    assert set(model.alpha_) <= {1.0, 10.0, 100.0, 1e3, 1e4}


def test_cli_helpers_import_without_scikit_learn():
    """The CLI parses --alphas and phrases warnings without loading scikit-learn."""
    import subprocess
    import sys

    code = (
        "import sys; from fmri2image.mapping import parse_alpha_grid, fit_warnings, "
        "FitDiagnostics, DEFAULT_ALPHAS; parse_alpha_grid('1:10:2'); "
        "print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
