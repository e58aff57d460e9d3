"""End-to-end: the demo job through the CLI, on the real EfficientNet-Lite0 weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmri2image.cli.main import main


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    rc = main(["-q", "demo", "--out", str(out), "--model", "effnet-lite0"])
    assert rc == 0
    return out


def test_demo_writes_dataset_and_results(demo_run, capsys):
    out = demo_run
    assert (out / "data" / "Subject1.h5").exists()
    summary = json.loads((out / "results" / "summary.json").read_text())
    assert summary["config"]["encoders"] == ["effnet-lite0"]
    (row,) = summary["encoders"]
    # every score is reported beside its reference
    assert row["nway_chance"] == pytest.approx(1 / summary["n_test_images"])
    assert row["pairwise_id_baseline"] == pytest.approx(0.5, abs=0.2)
    assert 0.0 <= row["coverage"] <= 1.0
    enc = out / "results" / "effnet-lite0"
    for rel in (
        "mapping/mapping.safetensors",
        "mapping/config.json",
        "predicted_test_embeddings.npy",
        "prediction/summary.json",
        "prediction/per_image.parquet",
        "retrieval/semantic_summary.json",
    ):
        assert (enc / rel).exists(), rel
    pred = np.load(enc / "predicted_test_embeddings.npy", allow_pickle=False)
    assert pred.shape == (summary["n_test_images"], 1280)
    assert np.isfinite(pred).all()


def test_demo_rerun_reuses_data_and_features(demo_run, capsys):
    out = demo_run
    h5 = out / "data" / "Subject1.h5"
    feats = out / "results" / "stimulus_features" / "training" / "effnet-lite0" / "shard-00000.npy"
    before = (h5.stat().st_mtime_ns, feats.stat().st_mtime_ns)
    first = json.loads((out / "results" / "summary.json").read_text())
    assert main(["-q", "demo", "--out", str(out), "--model", "effnet-lite0"]) == 0
    assert (h5.stat().st_mtime_ns, feats.stat().st_mtime_ns) == before
    second = json.loads((out / "results" / "summary.json").read_text())
    # same seed, same inputs: identical numbers
    for key in ("pairwise_id", "nway_top1", "r2", "hit_at_1", "wup"):
        assert first["encoders"][0][key] == second["encoders"][0][key]
    printed = capsys.readouterr().out
    assert "effnet-lite0" in printed and "Results:" in printed


def test_decode_rejects_unknown_encoder_before_loading_data(tmp_path, capsys):
    # the GOD folder does not exist: the encoder typo must be reported first
    rc = main(
        ["decode", "--god", str(tmp_path / "nope"), "--subject", "1",
         "--model", "effnet-lite00", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "Unknown encoder 'effnet-lite00'" in err and "effnet-lite0" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_decode_missing_god_folder_is_a_clean_error(tmp_path, capsys):
    rc = main(
        ["decode", "--god", str(tmp_path / "nope"), "--subject", "1",
         "--model", "effnet-lite0", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
