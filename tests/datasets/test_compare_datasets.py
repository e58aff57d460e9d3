"""``compare`` over several datasets: each its own run, one table indexed by dataset, a
report section per dataset; every entry checked before anything runs."""

from __future__ import annotations

import csv
import json
import re

import pytest

from fmri2image.errors import ConfigError
from fmri2image.pipeline.config import load_config


@pytest.fixture(scope="module")
def two_gods(tmp_path_factory):
    """Two planted GOD-layout folders (other seeds: other images, other brains)."""
    from _planted import write_planted_god

    tmp = tmp_path_factory.mktemp("two-gods")
    a = write_planted_god(tmp / "a", n_train_categories=6, n_test_categories=4, n_voxels=30)
    b = write_planted_god(tmp / "b", n_train_categories=6, n_test_categories=5, n_voxels=24,
                          seed=1)  # fmt: skip
    return a.root, b.root


def test_datasets_compare_stacks_tables_and_reports_each(two_gods, pool48, cli, tmp_path):
    a, b = two_gods
    toml = tmp_path / "datasets.toml"
    toml.write_text(
        f'[[datasets]]\ndataset = "god"\npath = "{a}"\nlabel = "god-a"\n\n'
        f'[[datasets]]\ndataset = "god"\npath = "{b}"\nlabel = "god-b"\nrois = ["ROI_V1"]\n'
    )
    out = tmp_path / "out"
    rc, stdout, err = cli("compare", "--config", toml, "--models", pool48, "--cv", "3",
                          "--database", "prototypes", "--generators", "invert", "--set",
                          "generation.options={ invert = { iterations = 2, size = 32 } }",
                          "--metrics", "pixcorr", "--out", out)  # fmt: skip
    assert rc == 0, err
    assert "== god-a: god at" in stdout and "== god-b: god at" in stdout
    # Each dataset is a complete run of its own, with its own cache.
    for label, n_test, roi in (("god-a", 4, "ROI_VC"), ("god-b", 5, "ROI_V1")):
        summary = json.loads((out / label / "summary.json").read_text())
        (block,) = summary["blocks"]
        assert block["roi"] == roi and len(block["test_images"]) == n_test
        assert (out / label / "report.html").is_file() and (out / "cache" / label).is_dir()
    # One table indexed by dataset: each run's rows, under its label.
    rows = list(csv.DictReader((out / "tables" / "summary.csv").open()))
    assert next(iter(rows[0])) == "dataset"
    by = {lab: [r for r in rows if r["dataset"] == lab] for lab in ("god-a", "god-b")}
    own = list(csv.DictReader((out / "god-b" / "tables" / "summary.csv").open()))
    assert len(by["god-b"]) == len(own) > 0 and {r["roi"] for r in by["god-b"]} == {"ROI_V1"}
    assert by["god-a"] and {r["roi"] for r in by["god-a"]} == {"ROI_VC"}
    scores = list(csv.DictReader((out / "tables" / "scores.csv").open()))
    assert {r["dataset"] for r in scores} == {"god-a", "god-b"}
    page = (out / "report.html").read_text()
    assert page.count("<section") == 2 and 'href="god-b/report.html"' in page
    top = json.loads((out / "summary.json").read_text())
    assert [d["label"] for d in top["datasets"]] == ["god-a", "god-b"]
    assert top["datasets"][1]["rois"] == ["ROI_V1"]


def test_datasets_flag_and_reuse(two_gods, pool48, cli, tmp_path):
    a, _ = two_gods
    out = tmp_path / "out"
    argv = ("compare", "--datasets", f"god={a}", "--models", pool48, "--cv", "3",
            "--database", "prototypes", "--generators", "invert", "--set",
            "generation.options={ invert = { iterations = 2, size = 32 } }",
            "--metrics", "pixcorr", "--out", out)  # fmt: skip
    rc, stdout, _ = cli(*argv)
    assert rc == 0 and re.search(r"god: \d+ stages: [1-9]\d* computed", stdout)
    rc, stdout, _ = cli(*argv)  # a rerun reuses every stage of the dataset's run
    assert rc == 0 and re.search(r"god: (\d+) stages: 0 computed, \1 reused", stdout)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ('[[datasets]]\ndataset = "god"\n', "needs path"),
        ('[[datasets]]\ndataset = "god"\npath = "x"\nroi = ["V1"]\n', "unknown key(s) roi"),
        ('[[datasets]]\ndataset = "nope"\npath = "x"\n', "datasets[0] (nope)"),
        (
            '[[datasets]]\ndataset = "god"\npath = "x"\n[[datasets]]\ndataset = "god"\npath = "y"\n',
            "label 'god' is used twice",
        ),
        ('[[datasets]]\ndataset = "god"\npath = "x"\nsplit = "artificial"\n', "--split"),
    ],
)
def test_bad_entries_are_refused_before_anything_runs(tmp_path, entries, message):
    from fmri2image.pipeline.datasets import dataset_configs

    toml = tmp_path / "d.toml"
    toml.write_text(entries)
    config = load_config(toml).replace(out=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match=re.escape(message)):
        dataset_configs(config)
    assert not (tmp_path / "out").exists()


def test_a_missing_folder_in_a_later_entry_stops_before_the_first_runs(two_gods, cli, tmp_path):
    a, _ = two_gods
    out = tmp_path / "out"
    rc, _, err = cli("compare", "--datasets", f"god={a}", f"deeprecon={tmp_path / 'nope'}",
                     "--model", "effnet-lite0", "--out", out)  # fmt: skip
    assert rc == 2 and "datasets[1] (deeprecon)" in err and "Traceback" not in err
    assert not out.exists()


def test_the_datasets_list_round_trips_through_config_toml(tmp_path):
    toml = tmp_path / "d.toml"
    toml.write_text('[[datasets]]\ndataset = "god"\npath = "x"\nsubjects = [1, 2]\n')
    config = load_config(toml)
    assert config.datasets == ({"dataset": "god", "path": "x", "subjects": [1, 2]},)
    config.save(tmp_path)
    assert load_config(tmp_path / "config.toml").datasets == config.datasets
