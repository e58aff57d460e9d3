"""The low-level pathway reads each dataset's early visual cortex: THINGS' V1-V3 (its
ROI columns), NSD's nsdgeneral voxels (MindEye2's low-level input)."""

from __future__ import annotations

import csv
import json

import pytest


@pytest.mark.parametrize(
    ("dataset", "writer", "extra", "roi"),
    [
        ("things", "fmri2image.data.things:write_things_fixture", [], "V1 + V2 + V3"),
        ("nsd", "fmri2image.data.nsd:write_nsd_fixture",
         ["--set", "data.options={ sessions = 2 }"], "nsdgeneral"),
    ],
)  # fmt: skip
def test_lowlevel_maps_the_datasets_early_visual_rois(
    dataset, writer, extra, roi, cli, pool48, tmp_path
):
    from fmri2image._io import safe_name
    from fmri2image.registry import import_target

    root = tmp_path / dataset
    import_target(writer)(root)
    out = tmp_path / "out"
    rc, _, err = cli("run", "--dataset", dataset, "--data", root, "--model", pool48, *extra,
                     "--cv", "3", "--database", "stimuli", "--generators", "lowlevel",
                     "--set", "generation.options.lowlevel={ n_components = 16 }",
                     "--metrics", "pixcorr", "--out", out)  # fmt: skip
    assert rc == 0, err
    stages = {s["name"] for s in json.loads((out / "stages.json").read_text())["stages"]}
    assert f"mapping/lowlevel-pca/ridge/s1/{safe_name(roi)}" in stages
    rows = list(csv.DictReader((out / "tables" / "summary.csv").open()))
    low = {r["condition"] for r in rows if r["generator"] == "lowlevel"}
    assert low == {"predicted", "true", "random"}
