"""The run / compare outputs: long tables, paired tests, exported images, grid, printed table."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest

from fmri2image.errors import ConfigError
from fmri2image.evaluation.evaluate import Evaluation, MetricScore
from fmri2image.evaluation.stats import holm_adjust
from fmri2image.features.shards import store_dirname
from fmri2image.pipeline.outputs import export_images, image_grid
from fmri2image.pipeline.tables import (
    CONDITIONS,
    TABLE_COLUMNS,
    Decoding,
    ModelDecoding,
    ReconstructionScores,
    decoding_rows,
    decoding_summary,
    format_comparison,
    paired_rows,
    scores_long,
    summary_rows,
    write_tables,
)

SUBJECTS = (1, 2)
ROIS = ("ROI_HVC", "ROI_V1 + ROI_V2")
MODELS = ("effnet-lite0", "hf:org/model")
GENERATOR = "invert"
STEMS = ("n01_a", "n02_b", "n03_c", "n04_d")
#: eff: a distance, lower is better.
METRICS = ("pixcorr", "ssim", "eff")
HIGHER = {"pixcorr": True, "ssim": True, "eff": False}


def _evaluation(stems: tuple[str, ...], rng: np.random.Generator, nan_at: int | None = None):
    scores = {m: rng.uniform(0.0, 1.0, len(stems)) for m in METRICS}
    if nan_at is not None:
        scores["pixcorr"][nan_at] = np.nan
    summary = {
        m: MetricScore(
            name=m,
            mean=float(np.nanmean(v)),
            ci_low=float(np.nanmean(v)) - 0.05,
            ci_high=float(np.nanmean(v)) + 0.05,
            n=len(stems),
            chance=None,
            unpaired=float(rng.uniform(0.0, 0.1)),
            higher_is_better=HIGHER[m],
            network=None,
        )
        for m, v in scores.items()
    }
    return Evaluation(stems=stems, scores=scores, summary=summary)


def _png(path: Path, color: tuple[int, int, int], fmt: str = "PNG") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, format=fmt)
    return path


@pytest.fixture
def fixture(tmp_path):
    """2 subjects x 2 ROIs x 2 models x 1 generator x 3 conditions, with PNGs."""
    rng = np.random.default_rng(0)
    entries = []
    ground_truth = {}
    for subject in SUBJECTS:
        for roi in ROIS:
            gt = tmp_path / "gt" / f"{subject}-{roi}"
            ground_truth[(subject, roi)] = {
                s: _png(gt / f"{s}.JPEG", (200, 10 * i, 0), "JPEG") for i, s in enumerate(STEMS)
            }
            for m, model in enumerate(MODELS):
                # The second model lists its images in another order and lacks one.
                stems = STEMS if m == 0 else tuple(reversed(STEMS[1:]))
                for condition in CONDITIONS:
                    folder = tmp_path / "recon" / f"{subject}-{roi}-{m}-{condition}"
                    for i, s in enumerate(stems):
                        _png(folder / f"{s}.png", (i * 40, m * 100, 50))
                    nan_at = 0 if (subject, roi, m, condition) == (1, ROIS[0], 0, "true") else None
                    entries.append(
                        ReconstructionScores(
                            subject=subject,
                            roi=roi,
                            model=model,
                            generator=GENERATOR,
                            condition=condition,
                            evaluation=_evaluation(stems, rng, nan_at),
                            images=folder,
                        )
                    )
    return entries, ground_truth


def _find(entries, subject, roi, model, condition):
    (e,) = [
        e
        for e in entries
        if (e.subject, e.roi, e.model, e.condition) == (subject, roi, model, condition)
    ]
    return e


# ------------------------------------------------------------------ tables
def test_scores_long_has_every_value(fixture):
    entries, _ = fixture
    rows = scores_long(entries)
    expected = sum(len(e.evaluation.stems) * len(METRICS) for e in entries)
    assert len(rows) == expected == 2 * 2 * 3 * (4 + 3) * 3
    assert set(rows[0]) == set(TABLE_COLUMNS["scores"])
    n_none = 0
    for row in rows:
        e = _find(entries, row["subject"], row["roi"], row["model"], row["condition"])
        i = e.evaluation.stems.index(row["image"])
        want = e.evaluation.scores[row["metric"]][i]
        if np.isnan(want):
            assert row["value"] is None
            n_none += 1
        else:
            assert row["value"] == pytest.approx(want)
            assert isinstance(row["value"], float)
    assert n_none == 1


def test_summary_rows_average_subjects(fixture):
    entries, _ = fixture
    rows = summary_rows(entries)
    per_subject = [r for r in rows if r["subject"] != "mean"]
    means = [r for r in rows if r["subject"] == "mean"]
    assert len(per_subject) == len(entries) * len(METRICS)
    assert all(r["n_subjects"] == 1 and isinstance(r["subject"], int) for r in per_subject)
    assert len(means) == len(ROIS) * len(MODELS) * len(CONDITIONS) * len(METRICS)
    for r in means:
        subs = [
            _find(entries, s, r["roi"], r["model"], r["condition"]).evaluation.summary[r["metric"]]
            for s in SUBJECTS
        ]
        assert r["mean"] == pytest.approx(np.mean([s.mean for s in subs]))
        assert r["unpaired"] == pytest.approx(np.mean([s.unpaired for s in subs]))
        assert r["n"] == sum(s.n for s in subs)
        assert r["ci_low"] is None and r["ci_high"] is None
        assert r["chance"] is None
        assert r["n_subjects"] == 2
        assert r["higher_is_better"] is HIGHER[r["metric"]]
    # One subject: no mean rows.
    one = [e for e in entries if e.subject == 1]
    assert all(r["subject"] == 1 for r in summary_rows(one))


def test_summary_mean_chance_equal_or_averaged(fixture):
    entries, _ = fixture
    e1 = _find(entries, 1, ROIS[0], MODELS[0], "predicted")
    e2 = _find(entries, 2, ROIS[0], MODELS[0], "predicted")

    def with_chance(e, chance):
        ev = e.evaluation
        summary = {
            k: MetricScore(**{**v.to_dict(), "chance": chance}) for k, v in ev.summary.items()
        }
        new = Evaluation(stems=ev.stems, scores=ev.scores, summary=summary)
        return ReconstructionScores(
            e.subject, e.roi, e.model, e.generator, e.condition, new, e.images
        )

    same = summary_rows([with_chance(e1, 0.5), with_chance(e2, 0.5)])
    assert {r["chance"] for r in same if r["subject"] == "mean"} == {0.5}
    differ = summary_rows([with_chance(e1, 0.25), with_chance(e2, 0.5)])
    assert {r["chance"] for r in differ if r["subject"] == "mean"} == {0.375}


def test_entries_are_checked(fixture):
    entries, _ = fixture
    e = entries[0]
    with pytest.raises(ConfigError, match="condition"):
        ReconstructionScores(e.subject, e.roi, e.model, e.generator, "best", e.evaluation, e.images)
    with pytest.raises(ConfigError, match="once"):
        summary_rows([e, e])


def test_paired_rows_match_images_by_stem(fixture):
    entries, _ = fixture
    rows = paired_rows(entries, n_permutations=1000)
    assert len(rows) == len(SUBJECTS) * len(ROIS) * len(METRICS)
    assert set(rows[0]) == set(TABLE_COLUMNS["paired"])
    for r in rows:
        assert (r["model_a"], r["model_b"]) == MODELS
        a = _find(entries, r["subject"], r["roi"], MODELS[0], "predicted").evaluation
        b = _find(entries, r["subject"], r["roi"], MODELS[1], "predicted").evaluation
        common = sorted(set(a.stems) & set(b.stems))
        assert r["n"] == len(common) == 3
        da = np.array([a.scores[r["metric"]][a.stems.index(s)] for s in common])
        db = np.array([b.scores[r["metric"]][b.stems.index(s)] for s in common])
        assert r["mean_difference"] == pytest.approx(np.mean(da - db))
        assert 0 < r["p_value"] <= r["p_holm"] <= 1
        a_higher = r["mean_difference"] > 0
        want = "model_a" if a_higher == HIGHER[r["metric"]] else "model_b"
        assert r["better"] == want
    # Only the predicted condition is compared.
    assert not paired_rows([e for e in entries if e.condition != "predicted"])


def test_paired_rows_holm_within_metric(fixture, tmp_path):
    entries, _ = fixture
    rng = np.random.default_rng(1)
    base = [e for e in entries if (e.subject, e.roi, e.condition) == (1, ROIS[0], "predicted")]
    third = ReconstructionScores(  # its own pictures: pairs sharing pictures are not tested
        1, ROIS[0], "clip", GENERATOR, "predicted", _evaluation(STEMS, rng), tmp_path / "clip"
    )
    rows = paired_rows([*base, third], n_permutations=1000)
    pairs = [(r["model_a"], r["model_b"]) for r in rows if r["metric"] == "ssim"]
    assert pairs == [(MODELS[0], MODELS[1]), (MODELS[0], "clip"), (MODELS[1], "clip")]
    for metric in METRICS:
        family = [r for r in rows if r["metric"] == metric]
        assert [r["p_holm"] for r in family] == pytest.approx(
            holm_adjust([r["p_value"] for r in family])
        )
        assert all(r["p_holm"] >= r["p_value"] for r in family)


def test_holm_adjust_by_hand():
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04).
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    out = holm_adjust([0.02, math.nan, 0.01])  # NaN is not part of the family
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm_adjust([]) == []


def test_holm_adjust_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(0).uniform(0, 0.2, 9)
    _, want, _, _ = multitest.multipletests(p, method="holm")
    assert holm_adjust(p) == pytest.approx(list(want))


def _retrieval(database: str):
    from types import SimpleNamespace

    summary = {
        **{f"{m}{s}": 0.1 for m in ("hit1", "hit5", "wup") for s in ("", "_baseline", "_chance")},
        "coverage": 0.9,
        "n_database_classes": 1000,
    }
    return SimpleNamespace(database=database, label=database, k=5, summary=summary, top1=())


def _decoding(*models: str) -> Decoding:
    """A decoding of one subject and ROI, as the mapping and retrieval stages give it."""

    def metric(value, baseline=None, chance=None):
        return {"value": value, "baseline": baseline, "chance": chance}

    metrics = {
        "pairwise_identification": metric(0.9, 0.5, 0.5),
        "nway_top1": metric(0.4, None, 0.1),
        "r2_variance_weighted": metric(float("nan"), -0.1),
        "dimension_correlation": metric(0.2),
        "cosine": metric(0.7, 0.6),
        "rmse": metric(1.5, 1.6),
    }
    return Decoding(
        subject=1,
        roi="ROI_VC",
        info={
            "n_train": 10,
            "n_train_categories": 2,
            "n_eval": 4,
            "n_eval_repeats": [3],
            "n_voxels": 8,
            "split": "test",
        },
        test_stems=STEMS,
        true_labels=STEMS,
        models=tuple(
            ModelDecoding(
                m,
                8,
                metrics,
                {"alpha_median": 100.0},
                (_retrieval("prototypes"), _retrieval("images")),
            )
            for m in models
        ),
    )


def test_decoding_rows():
    rows = decoding_rows([_decoding("a", "b")])
    assert len(rows) == 2 * (6 + 2 * 4)
    assert set(rows[0]) == set(TABLE_COLUMNS["decoding"])
    by = {(r["model"], r["stage"], r["database"], r["metric"]): r for r in rows}
    pid = by[("a", "prediction", None, "pairwise_identification")]
    assert (pid["value"], pid["baseline"], pid["chance"]) == (0.9, 0.5, 0.5)
    assert pid["higher_is_better"] is True and by[("a", "prediction", None, "rmse")][
        "higher_is_better"] is False  # directions from the metric registry  # fmt: skip
    nway = by[("b", "prediction", None, "nway_top1")]
    assert (nway["value"], nway["baseline"], nway["chance"]) == (0.4, None, 0.1)
    r2 = by[("a", "prediction", None, "r2_variance_weighted")]
    assert r2["value"] is None and r2["baseline"] == -0.1  # NaN is None
    hit5 = by[("a", "retrieval", "images", "hit5")]
    assert (hit5["value"], hit5["baseline"], hit5["chance"], hit5["subject"]) == (0.1, 0.1, 0.1, 1)
    cover = by[("b", "retrieval", "prototypes", "coverage")]
    assert (cover["value"], cover["baseline"], cover["chance"]) == (0.9, None, None)
    # summary.json: one row per encoder, each score beside its baseline and chance
    a, _ = decoding_summary([_decoding("a", "b")])
    assert (a["pairwise_id"], a["pairwise_id_baseline"], a["pairwise_id_chance"]) == (
        0.9, 0.5, 0.5)  # fmt: skip
    assert a["r2"] is None and a["r2_baseline"] == -0.1 and a["alpha_median"] == 100.0
    assert [r["database"] for r in a["retrieval"]] == ["prototypes", "images"]
    assert a["retrieval"][0]["hit1_chance"] == 0.1


def test_write_tables_round_trip(fixture, tmp_path):
    entries, _ = fixture
    paths = write_tables(tmp_path / "out", entries, [_decoding("a")], n_permutations=100)
    names = ("scores", "summary", "paired", "decoding")
    assert set(paths) == {f"{n}_{k}" for n in names for k in ("csv", "parquet")}
    assert all(p.is_file() for p in paths.values())
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    n_scores = len(scores_long(entries))
    try:
        import pandas as pd
    except ImportError:
        pd = None
    if pd is not None:
        df = pd.read_parquet(tmp_path / "out" / "scores.parquet")
        assert list(df.columns) == list(TABLE_COLUMNS["scores"])
        assert len(df) == n_scores
        assert set(df["subject"]) == {"1", "2"}
        assert df["value"].isna().sum() == 1
        summary = pd.read_parquet(paths["summary_parquet"])
        assert "mean" in set(summary["subject"])
        assert summary["ci_low"].isna().sum() == len(summary[summary["subject"] == "mean"])
    import pyarrow.parquet as pq

    table = pq.read_table(paths["scores_parquet"])
    assert table.num_rows == n_scores
    assert str(table.schema.field("subject").type) == "string"
    assert table.column("value").null_count == 1
    with open(paths["scores_csv"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n_scores
    assert [r["value"] for r in rows].count("") == 1
    assert {r["subject"] for r in rows} == {"1", "2"}
    with open(paths["summary_csv"], newline="", encoding="utf-8") as fh:
        summary_csv = list(csv.DictReader(fh))
    mean_rows = [r for r in summary_csv if r["subject"] == "mean"]
    assert mean_rows and all(r["ci_low"] == "" for r in mean_rows)
    with open(paths["decoding_csv"], newline="", encoding="utf-8") as fh:
        dec = list(csv.DictReader(fh))
    assert [r["database"] for r in dec if r["stage"] == "prediction"] == [""] * 6


def test_write_tables_empty(tmp_path):
    import pyarrow.parquet as pq

    paths = write_tables(tmp_path, [], {})
    for name, columns in TABLE_COLUMNS.items():
        with open(paths[f"{name}_csv"], newline="", encoding="utf-8") as fh:
            assert list(csv.reader(fh)) == [list(columns)]
        table = pq.read_table(paths[f"{name}_parquet"])
        assert table.num_rows == 0
        assert table.column_names == list(columns)


# ------------------------------------------------------------------ images
def test_export_images_copies_and_replaces(fixture, tmp_path):
    entries, ground_truth = fixture
    out = tmp_path / "run"
    e = _find(entries, 1, ROIS[1], MODELS[1], "random")
    dst_dir = (
        out
        / "images"
        / "s1-ROI_V1___ROI_V2"
        / store_dirname(MODELS[1])
        / "ridge"
        / GENERATOR
        / "random"
    )
    stale = dst_dir / f"{STEMS[1]}.png"
    _png(stale, (1, 2, 3))
    root = export_images(out, entries, ground_truth)
    assert root == out / "images"
    assert store_dirname(MODELS[1]) == "hf_org_model"
    # Every reconstruction is a copy of its source: same bytes, never the same file.
    assert sorted(p.name for p in dst_dir.iterdir()) == sorted(
        f"{s}.png" for s in e.evaluation.stems
    )
    for s in e.evaluation.stems:
        assert (dst_dir / f"{s}.png").read_bytes() == (e.images / f"{s}.png").read_bytes()
        assert not os.path.samefile(dst_dir / f"{s}.png", e.images / f"{s}.png")
    n_png = sum(1 for _ in root.glob("s*/*/*/*/*/*.png"))
    assert n_png == sum(len(x.evaluation.stems) for x in entries)
    # The ground truth keeps its suffix.
    gt_dir = root / "s2-ROI_HVC" / "ground_truth"
    assert sorted(p.name for p in gt_dir.iterdir()) == sorted(f"{s}.JPEG" for s in STEMS)
    src = ground_truth[(2, "ROI_HVC")][STEMS[0]]
    assert (gt_dir / f"{STEMS[0]}.JPEG").read_bytes() == Path(src).read_bytes()
    assert not os.path.samefile(gt_dir / f"{STEMS[0]}.JPEG", src)
    # A rerun with another source replaces the file.
    new = _png(tmp_path / "other" / f"{STEMS[1]}.png", (9, 9, 9))
    again = ReconstructionScores(
        e.subject, e.roi, e.model, e.generator, "random", e.evaluation, new.parent
    )
    export_images(out, [again], {})
    assert stale.read_bytes() == new.read_bytes()
    assert not [p for p in dst_dir.iterdir() if p.name.startswith(".")]


def test_export_images_only_existing_pngs(fixture, tmp_path):
    entries, ground_truth = fixture
    e = entries[0]
    (e.images / f"{e.evaluation.stems[0]}.png").unlink()
    root = export_images(tmp_path / "run", [e], ground_truth)
    dst = root / "s1-ROI_HVC" / "effnet-lite0" / "ridge" / GENERATOR / e.condition
    assert sorted(p.name for p in dst.iterdir()) == sorted(
        f"{s}.png" for s in e.evaluation.stems[1:]
    )


def test_image_grid_size(fixture, tmp_path):
    from PIL import Image

    entries, ground_truth = fixture
    gt = ground_truth[(1, ROIS[0])]
    rows = [
        (f"{e.model} / {e.condition}", e.images)
        for e in entries
        if (e.subject, e.roi, e.condition) == (1, ROIS[0], "predicted")
    ]
    size = 16
    path = image_grid(tmp_path / "g" / "grid.png", gt, rows, STEMS, size=size)
    small = image_grid(tmp_path / "g" / "two.png", gt, rows, STEMS, size=size, max_images=2)
    with Image.open(path) as im, Image.open(small) as im2:
        width, height = im.size
        assert height == (1 + len(rows)) * size == im2.size[1]
        margin = width - len(STEMS) * size
        assert margin > 0
        assert im2.size[0] == margin + 2 * size
        # The second model lacks STEMS[0]: a grey cell; ground truth is reddish.
        assert im.getpixel((margin + size // 2, 2 * size + size // 2)) == (128, 128, 128)
        assert im.getpixel((margin + size // 2, size // 2))[0] > 150


# ------------------------------------------------------------------ printed table
def test_format_comparison(fixture):
    entries, _ = fixture
    summary = summary_rows(entries)
    paired = paired_rows(entries, n_permutations=100)
    text = format_comparison(summary, paired)
    titles = [line for line in text.splitlines() if line.startswith("Reconstructions:")]
    assert len(titles) == len(SUBJECTS) * len(ROIS) + len(ROIS)
    assert titles[0].startswith("Reconstructions: subject 1, ROI_HVC (mean over 3–4 images;")
    assert "[floor: random training stimulus, ceiling: true stimulus]" in titles[0]
    assert all("mean of 2 subjects" in t for t in titles[-2:])
    assert text.count("Paired tests between models") == len(SUBJECTS) * len(ROIS)
    assert f"{MODELS[0]} − {MODELS[1]}" in text
    by = {
        (r["subject"], r["roi"], r["model"], r["condition"], r["metric"]): r["mean"]
        for r in summary
    }
    for subject in (*SUBJECTS, "mean"):
        for roi in ROIS:
            for model in MODELS:
                for metric in METRICS:
                    pred, floor, ceil = (
                        by[(subject, roi, model, c, metric)]
                        for c in ("predicted", "random", "true")
                    )
                    assert f"{pred:.3f} [{floor:.3f}, {ceil:.3f}]" in text
    lines = text.splitlines()
    assert sum(1 for line in lines if line.startswith(f"{MODELS[1]}  {GENERATOR}")) == 6
    assert "eff unpaired" in text and "lower is better" in text
    # Without floor / ceiling: n/a.
    only = [r for r in summary if r["condition"] == "predicted" and r["subject"] == 1]
    assert "[n/a, n/a]" in format_comparison(only, [])


def test_decoders_that_share_their_pictures_are_not_tested(fixture):
    """A generator that reads neither the model nor the mapper (lowlevel) gives every
    decoder the same pictures: a test between them would compare a set with itself."""
    entries, _ = fixture
    a = next(e for e in entries if (e.subject, e.roi, e.condition) == (1, ROIS[0], "predicted"))
    same = ReconstructionScores(
        a.subject, a.roi, a.model, a.generator, a.condition, a.evaluation, a.images, mapper="mlp"
    )
    assert paired_rows([a, same], n_permutations=100) == []
