"""End-to-end: `fmri2image demo` through the CLI, on the real EfficientNet-Lite weights.

The default demo must show the method working (issue: "a demo that convinces"):
for both demo encoders, ROI_HVC pairwise identification >= 0.85, R² above the
training-mean baseline, and label hit@5 above chance from both databases.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmri2image.cli.main import main
from fmri2image.demo import available_categories

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(default_demo):
    out = default_demo.root.parent  # the session's default dataset is reused as out/data
    assert main(["-q", "demo", "--out", str(out)]) == 0
    return out


def _summary(out):
    return json.loads((out / "results" / "summary.json").read_text())


def test_default_demo_shows_decoding_working(demo_run):
    if len(available_categories()) < 40:
        pytest.skip("the Debian photo packages are not installed (pip photos only)")
    summary = _summary(demo_run)
    assert summary["config"]["roi"] == "ROI_HVC"
    assert [r["encoder"] for r in summary["encoders"]] == ["effnet-lite0", "effnet-lite2"]
    for row in summary["encoders"]:
        name = row["encoder"]
        assert row["pairwise_id"] >= 0.85, (name, row["pairwise_id"])
        assert row["pairwise_id_baseline"] == pytest.approx(0.5)
        assert row["r2"] > row["r2_baseline"], (name, row["r2"], row["r2_baseline"])
        assert [r["database"] for r in row["retrieval"]] == ["prototypes", "database"]
        for ret in row["retrieval"]:
            assert ret["hit5"] > ret["hit5_chance"], (name, ret)
        images = row["retrieval"][1]
        assert images["coverage"] == 1.0  # the demo's database holds every test category


def test_demo_writes_every_result(demo_run):
    summary = _summary(demo_run)
    assert (demo_run / "data" / "Subject1.h5").exists()
    assert (demo_run / "data" / "database").is_dir()
    for row in summary["encoders"]:
        enc = demo_run / "results" / row["encoder"]
        for rel in (
            "mapping/mapping.safetensors",
            "mapping/config.json",
            "predicted_test_embeddings.npy",
            "prediction/summary.json",
            "prediction/per_image.parquet",
            "retrieval/prototypes/semantic_summary.json",
            "retrieval/database/semantic_per_query.parquet",
            "retrieval/database/neighbours.parquet",
        ):
            assert (enc / rel).exists(), rel
        pred = np.load(enc / "predicted_test_embeddings.npy", allow_pickle=False)
        assert pred.shape == (summary["n_test_images"], 1280) and np.isfinite(pred).all()


def test_demo_rerun_reuses_data_and_features(demo_run, capsys):
    h5 = demo_run / "data" / "Subject1.h5"
    feats = next((demo_run / "results" / "stimulus_features" / "training").rglob("shard-*.npy"))
    before = (h5.stat().st_mtime_ns, feats.stat().st_mtime_ns)
    first = _summary(demo_run)
    capsys.readouterr()
    assert main(["-q", "demo", "--out", str(demo_run)]) == 0
    assert (h5.stat().st_mtime_ns, feats.stat().st_mtime_ns) == before
    second = _summary(demo_run)
    for a, b in zip(first["encoders"], second["encoders"]):  # same inputs: same numbers
        for key in ("pairwise_id", "nway_top1", "r2"):
            assert a[key] == b[key]
        assert a["retrieval"] == b["retrieval"]
    printed = capsys.readouterr().out
    assert "effnet-lite2" in printed and "[mean, chance]" in printed and "Results:" in printed


def test_a_dataset_of_another_seed_is_never_reused(tmp_path):
    """`demo --seed 1` over a folder written with seed 0 must not mix the two."""
    from fmri2image.demo import write_demo_dataset
    from fmri2image.pipeline.demo import _reusable

    data = tmp_path / "data"
    write_demo_dataset(data, seed=0, progress=False, n_test_categories=2, n_train_categories=2,
                       images_per_category=1, n_voxels=20, database_images_per_category=0)  # fmt: skip
    info, why = _reusable(data, seed=1)
    assert info is None and "seed" in why
    (data / "demo_dataset.json").write_text("{not json")
    info, why = _reusable(data, seed=0)
    assert info is None and "unreadable" in why
