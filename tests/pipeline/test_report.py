"""The report of a run folder: one self-contained HTML page, markdown tables, CSVs.

The runs are the tiny ones of ``test_experiment`` (the pooling encoder under two
names, a generator that paints the embedding, ``retrieve``), so the whole module
takes seconds; the report reads only what the run left in its folder.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess

import pytest
from _experiment_setup import ENCODERS, _config

from fmri2image.errors import ConfigError
from fmri2image.pipeline.config import DataSection
from fmri2image.pipeline.experiment import run_experiment
from fmri2image.pipeline.report import write_report

MODELS = ("pool-a", "pool-b")
GENERATORS_RUN = ("test-paint", "retrieve")


def _run(config):
    return run_experiment(config, encoders=ENCODERS, progress=False)


@pytest.fixture(scope="module")
def one(god, tmp_path_factory):
    """One subject × ROI, two models, two generators: the run and its report."""
    result = _run(_config(god, tmp_path_factory.mktemp("one") / "out"))
    return result, write_report(result.out_dir)


@pytest.fixture(scope="module")
def two(god, one, tmp_path_factory):
    """Two subjects (Subject2.h5 is a copy of Subject1.h5), sharing the first cache."""
    first, _ = one
    config = _config(
        god, tmp_path_factory.mktemp("two") / "out", cache=str(first.out_dir / "cache"),
        data=DataSection(path=str(god[0]), subjects=(1, 2), rois=("ROI_VC",)),
    )  # fmt: skip
    result = _run(config)
    return result, write_report(result.out_dir)


def _stems(result, subject=1, roi="ROI_VC"):
    return list(result.decodings[(subject, roi)].test_stems)


def test_the_report_files_are_written(one):
    result, paths = one
    out = result.out_dir
    assert paths["html"] == out / "report.html" and paths["md"] == out / "report.md"
    for name in ("comparison", "paired", "decoding", "labels"):
        assert paths[f"{name}_csv"] == out / "report" / f"{name}.csv"
        assert paths[f"{name}_csv"].is_file()
    assert not list(out.glob(".report.*")), "no temporary file is left behind"


def test_every_model_and_generator_has_a_row(one):
    _, paths = one
    page = paths["html"].read_text(encoding="utf-8")
    for model in MODELS:
        for gen in GENERATORS_RUN:
            assert re.search(rf'<td class="l">{model}</td><td class="l">{gen}</td>', page)
    rows = list(csv.DictReader(paths["comparison_csv"].open(encoding="utf-8")))
    # 2 models x 2 generators x 2 metrics, one subject x ROI
    assert len(rows) == 2 * 2 * 2
    assert {(r["model"], r["generator"]) for r in rows} == {
        (m, g) for m in MODELS for g in GENERATORS_RUN
    }
    assert all(r["floor"] != "" and r["ceiling"] != "" for r in rows)
    # The best of each column is marked, in the CSV and on the page, when it beats its
    # own floor by the paired test; nothing else is.
    stars = 0
    for metric in ("pixcorr", "ssim"):
        these = [r for r in rows if r["metric"] == metric]
        best = max(these, key=lambda r: float(r["mean"]))
        beats = best["p_floor"] != "" and float(best["p_floor"]) < 0.05
        assert best["best"] == str(beats)
        assert all(r["best"] == "False" for r in these if r is not best)
        stars += beats
    assert page.count('<span class="best">') >= stars


def test_every_test_image_appears_in_the_grid_with_its_label(one):
    result, paths = one
    page = paths["html"].read_text(encoding="utf-8")
    stems = _stems(result)
    assert len(stems) == 4
    n_methods = len(MODELS) * len(GENERATORS_RUN)
    for stem in stems:  # the ground truth, then each model x generator
        assert page.count(f'data-stem="{stem}"') == 1 + n_methods
    assert page.count("data:image/jpeg;base64,") == len(stems) * (1 + n_methods)
    assert page.count('<figure class="cell hit"') + page.count('<figure class="cell miss"') == (
        len(stems) * n_methods
    )
    labels = list(csv.DictReader(paths["labels_csv"].open(encoding="utf-8")))
    assert len(labels) == len(MODELS) * len(stems)
    for r in labels:
        assert r["true_wnid"] == r["image"].split("_")[0]
        assert r["hit"] == str(r["top1_wnid"] == r["true_wnid"])


_URL_ATTRIBUTES = re.compile(r"""(?:\bsrc|\bhref|\bxlink:href|\baction)\s*=\s*["']([^"']*)["']""")
_CSS_URLS = re.compile(r"url\(\s*['\"]?([^'\")]*)")


def test_the_page_is_self_contained(one):
    _, paths = one
    page = paths["html"].read_text(encoding="utf-8")
    targets = _URL_ATTRIBUTES.findall(page) + _CSS_URLS.findall(page)
    assert targets, "the pictures are embedded"
    bad = [t[:60] for t in targets if not (t.startswith("data:") or t.startswith("#"))]
    assert bad == []
    text = re.sub(r"data:[^\"')\s]+", "", page)  # base64 may hold '//'
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"""["'(]\s*//""", text), "no protocol-relative URL"
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "<svg" in page


def test_the_markdown_holds_the_tables(one):
    _, paths = one
    md = paths["md"].read_text(encoding="utf-8")
    for heading in ("## Comparison", "## Paired tests between models", "## Decoding"):
        assert heading in md
    assert "| model | generator | pixcorr ↑ | ssim ↑ |" in md
    for model in MODELS:
        for gen in GENERATORS_RUN:
            assert f"| {model} | {gen} |" in md
    assert "pool-a − pool-b" in md  # the paired tests
    assert "hit@1" in md and "pairwise id" in md
    assert "data:" not in md


def test_the_tables_are_the_run_tables(one):
    result, paths = one
    paired = list(csv.DictReader(paths["paired_csv"].open(encoding="utf-8")))
    run_paired = list(csv.DictReader((result.out_dir / "tables" / "paired.csv").open()))
    assert len(paired) == len(run_paired) == 2 * 2  # 2 generators x 2 metrics, 1 model pair
    for mine, theirs in zip(paired, run_paired):
        assert mine["p_holm"] == theirs["p_holm"]
        assert mine["significant"] == str(theirs["p_holm"] != "" and float(theirs["p_holm"]) < 0.05)
    decoding = list(csv.DictReader(paths["decoding_csv"].open(encoding="utf-8")))
    run_decoding = list(csv.DictReader((result.out_dir / "tables" / "decoding.csv").open()))
    # The run's rows, and the median alpha of each model's map (a fit fact, not a metric).
    alphas = [r for r in decoding if r["metric"] == "alpha_median"]
    assert len(alphas) == len(MODELS) and all(float(r["value"]) > 0 for r in alphas)
    assert [r for r in decoding if r["metric"] != "alpha_median"] == [
        {**r, "best": mine["best"]}
        for r, mine in zip(run_decoding, (d for d in decoding if d["metric"] != "alpha_median"))
    ]


def test_one_subject_has_no_mean_block_nor_heat_map(one):
    _, paths = one
    page = paths["html"].read_text(encoding="utf-8")
    assert "Mean over subjects" not in page
    assert 'id="heatmap"' not in page


def test_two_subjects_add_the_mean_block_and_the_heat_map(two):
    result, paths = two
    page = paths["html"].read_text(encoding="utf-8")
    md = paths["md"].read_text(encoding="utf-8")
    # (markdown escapes what it embeds: ROI\_VC shows as ROI_VC)
    assert "Mean over subjects · ROI_VC" in page and "Mean over subjects · ROI\\_VC" in md
    assert 'id="heatmap"' in page
    heat = page[page.index('id="heatmap"') : page.index('id="paired"')]
    assert heat.count("<svg") == len(MODELS) * len(GENERATORS_RUN)
    assert "subject 1" in heat and "subject 2" in heat and ">mean<" in heat
    for subject in (1, 2):  # a grid per subject
        assert f"Subject {subject} · ROI_VC" in page
        for stem in _stems(result, subject):
            assert page.count(f'data-stem="{stem}"') == 2 * (1 + len(MODELS) * len(GENERATORS_RUN))
    rows = list(csv.DictReader(paths["comparison_csv"].open(encoding="utf-8")))
    assert {r["subject"] for r in rows} == {"1", "2", "mean"}
    assert all(r["ci_low"] == "" for r in rows if r["subject"] == "mean")


def test_a_run_folder_moved_with_its_cache_still_has_its_labels(one, tmp_path):
    """Stage folders recorded relative to another working folder are found in the
    run's own cache; without any cache the page is whole (the report reads only the
    run folder)."""
    import json

    result, _ = one
    moved = tmp_path / "moved"
    shutil.copytree(result.out_dir, moved, ignore=shutil.ignore_patterns("report*"))
    stages = json.loads((moved / "stages.json").read_text())
    # The cache the run recorded is gone (another machine, a renamed folder): the stage
    # folders, recorded relative to the cache, are found in the run folder's own cache.
    stages["cache"] = str(tmp_path / "elsewhere" / "cache")
    (moved / "stages.json").write_text(json.dumps(stages))
    paths = write_report(moved)
    labels = list(csv.DictReader(paths["labels_csv"].open(encoding="utf-8")))
    assert len(labels) == len(MODELS) * 4
    assert "As the run&#39;s evaluations recorded them." in paths["html"].read_text()
    # Without its cache the report still comes, whole: all it shows is in the run
    # folder (maps/, images/, summary.json with the versions the evaluations recorded).
    shutil.rmtree(moved / "cache")
    paths = write_report(moved)
    page = paths["html"].read_text(encoding="utf-8")
    assert "No retrieved labels found" not in page
    assert len(list(csv.DictReader(paths["labels_csv"].open(encoding="utf-8")))) == len(labels)
    assert "stage folders not found in the cache" in page
    assert "As the run&#39;s evaluations recorded them." in page
    assert page.count("data:image/jpeg;base64,") == 4 * (1 + len(MODELS) * len(GENERATORS_RUN))


def test_not_a_run_folder_says_what_is_missing(tmp_path, capsys):
    from fmri2image.cli.main import main

    with pytest.raises(ConfigError, match=r"stages\.json.*fmri2image run"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a run folder" in err and "tables/decoding.parquet" in err
    with pytest.raises(ConfigError, match="not a folder"):
        write_report(tmp_path / "nosuch")


def test_the_cli_writes_where_asked(one, tmp_path, capsys):
    from fmri2image.cli.main import main

    result, _ = one
    target = tmp_path / "elsewhere" / "cmp.html"
    assert main(["report", str(result.out_dir), "--out", str(target), "--thumbnail", "64"]) == 0
    assert target.is_file() and (tmp_path / "elsewhere" / "cmp.md").is_file()
    assert (tmp_path / "elsewhere" / "cmp" / "comparison.csv").is_file()
    assert str(target) in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"\.html"):
        write_report(result.out_dir, html_path=tmp_path / "cmp.txt")


_CONSOLE = re.compile(r"CONSOLE|Uncaught|SyntaxError|ReferenceError|TypeError")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_chromium_opens_the_page_without_console_errors(one, tmp_path):
    _, paths = one
    proc = subprocess.run(
        ["chromium", "--headless=new", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr",
         "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         paths["html"].resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fmri2image report" in proc.stdout  # the page was loaded and parsed
    console = [line for line in proc.stderr.splitlines() if _CONSOLE.search(line)]
    assert console == []


def test_the_same_run_gives_the_same_tables(one):
    result, paths = one
    before = {k: p.read_bytes() for k, p in paths.items() if k.endswith("_csv") or k == "md"}
    again = write_report(result.out_dir)
    after = {k: p.read_bytes() for k, p in again.items() if k.endswith("_csv") or k == "md"}
    assert before == after
