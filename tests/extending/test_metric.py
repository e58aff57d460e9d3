"""New metrics: one ``register_metric`` call each, an image metric and an embedding
metric; ``run`` computes them and every table shows them, ranked the right way."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from _cli import run

from fmri2image.evaluation import METRICS, Metric, register_metric


def mean_abs_difference(y_true, y_pred, *, seed=0):
    """Mean absolute difference of the pictures' pixels at 32 x 32 (lower is better)."""
    from PIL import Image

    def pixels(img):
        return np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)) / 255.0

    return np.array([np.abs(pixels(t) - pixels(p)).mean() for t, p in zip(y_true, y_pred)])


def l1_distance(y_true, y_pred, *, seed=0):
    """Mean absolute difference of each predicted embedding from the true one."""
    return np.abs(np.asarray(y_true) - np.asarray(y_pred)).mean(axis=1)


@pytest.fixture
def toy_metrics():
    register_metric(Metric("toy_mad", False, "pixels", "mean absolute pixel difference",
                           score=mean_abs_difference))  # fmt: skip
    register_metric(Metric("toy_l1", False, "embedding", "L1 distance of the embeddings",
                           score=l1_distance))  # fmt: skip
    yield
    METRICS.unregister("toy_mad")
    METRICS.unregister("toy_l1")


def test_registered_metrics_run_end_to_end(god, pool48, toy_metrics, tmp_path, capsys):
    root, db = god
    out = tmp_path / "out"
    assert run("compare", "--data", str(root), "--models", pool48, "--cv", "3",
               "--database", str(db), "--generators", "retrieve",
               "--metrics", "ssim", "toy_mad", "--out", str(out)) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "toy_mad" in printed and "toy_mad unpaired" in printed and "lower is better" in printed
    rows = list(csv.DictReader((out / "tables" / "summary.csv").open()))
    mad = [r for r in rows if r["metric"] == "toy_mad"]
    assert len(mad) == 3 and all(r["higher_is_better"] == "False" for r in mad)
    assert all(r["unpaired"] != "" for r in mad)  # no analytical chance: the unpaired reference
    # the embedding metric is scored on the predicted embeddings, beside its baseline
    (row,) = json.loads((out / "summary.json").read_text())["encoders"]
    l1 = row["metrics"]["toy_l1"]
    assert l1["value"] > 0 and l1["baseline"] > 0 and l1["higher_is_better"] is False
    decoding = list(csv.DictReader((out / "tables" / "decoding.csv").open()))
    (dec,) = [r for r in decoding if r["metric"] == "toy_l1"]
    assert dec["higher_is_better"] == "False" and dec["baseline"] != ""
    page = (out / "report.html").read_text()
    assert "toy_mad" in page and "toy_l1" in page
    assert "toy_l1" in printed  # the printed decoding table too


def test_listed_by_evaluate(toy_metrics, capsys):
    assert run("evaluate", "--list-metrics") == 0
    listing = capsys.readouterr().out
    assert "toy_mad" in listing and "toy_l1" in listing
