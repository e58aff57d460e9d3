"""``fmri2image report`` reads a run folder as untrusted input.

A damaged table or ``stages.json`` is named in one paragraph (exit 2, no traceback);
a damaged picture is left out with a warning naming it; the report's files are
written all at once or not at all; the markdown escapes the names it embeds; and
nothing outside the run folder is read, whatever ``stages.json``, ``summary.json`` or
a link says.

Each test damages a copy of one tiny run (that of ``test_report``).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import struct
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _experiment_setup import ENCODERS, _config

from fmri2image.cli.main import main
from fmri2image.errors import DataFormatError
from fmri2image.pipeline.experiment import run_experiment
from fmri2image.pipeline.report import write_report
from fmri2image.pipeline.results import load_run

BLOCK = "s1-ROI_VC"
N_PICTURES = 4 * (1 + 2 * 2)  # 4 test images: the ground truth, 2 models x 2 generators


@pytest.fixture(scope="module")
def built(god, tmp_path_factory):
    """One run (its report written), not to be changed: copy it with ``run``."""
    config = _config(god, tmp_path_factory.mktemp("untrusted") / "out")
    return run_experiment(config, encoders=ENCODERS, progress=False).out_dir


@pytest.fixture
def run(built, tmp_path):
    """A copy of the run folder (with its own cache) to damage."""
    dst = tmp_path / "run"
    shutil.copytree(built, dst)
    return dst


def _report(run, *args) -> int:
    return main(["report", str(run), *args])


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _png(width: int, height: int) -> bytes:
    """A small PNG file whose header declares width x height RGB pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _predicted(run, model="pool-a", gen="test-paint"):
    return sorted((run / "images" / BLOCK / model / "ridge" / gen / "predicted").glob("*.png"))


def _report_files(run):
    return [run / "report.html", run / "report.md", *sorted((run / "report").glob("*.csv"))]


# ---------------------------------------------------------------- pictures
@pytest.mark.parametrize(
    "content",
    [
        pytest.param(_png(100_000, 100_000), id="bomb-past-pillow-limit"),
        pytest.param(_png(7_000, 7_000), id="bomb-past-report-limit"),
        pytest.param(b"not a picture at all", id="not-a-picture"),
        pytest.param(None, id="truncated"),
        pytest.param(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n", id="eps"),
    ],
)
def test_a_damaged_picture_is_left_out_with_a_warning(run, content, caplog):
    picture = _predicted(run)[0]
    if content is None:  # the first half of a real picture
        content = picture.read_bytes()[: picture.stat().st_size // 2]
    picture.write_bytes(content)
    for f in _report_files(run):
        f.write_text("OLD")
    with caplog.at_level("WARNING"):
        assert _report(run) == 0
    assert str(picture) in caplog.text and "cannot read picture" in caplog.text
    page = (run / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/jpeg;base64,") == N_PICTURES - 1
    assert page.count(">no picture</div>") == 1
    # Every file of the report was written (none left stale beside the others).
    assert all(f.read_text(encoding="utf-8") != "OLD" for f in _report_files(run))


def test_a_picture_linked_from_outside_the_run_folder_is_left_out(run, tmp_path, caplog):
    from PIL import Image

    outside = tmp_path / "private.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(outside)
    picture = _predicted(run)[0]
    picture.unlink()
    picture.symlink_to(outside)
    with caplog.at_level("WARNING"):
        paths = write_report(run)
    assert "leads out of the run folder" in caplog.text
    page = paths["html"].read_text(encoding="utf-8")
    assert page.count("data:image/jpeg;base64,") == N_PICTURES - 1


def test_test_images_naming_paths_out_of_the_run_folder_are_not_followed(run, tmp_path, caplog):
    """``summary.json`` names the test images; a name with ``/`` or ``..`` is not a
    picture's name (the block's images then come from images/)."""
    summary = json.loads((run / "summary.json").read_text())
    stems = summary["blocks"][0]["test_images"]
    escape = os.path.relpath(tmp_path / "private", run / "images" / BLOCK / "ground_truth")
    summary["blocks"][0]["test_images"] = [escape, *stems[1:]]
    (run / "summary.json").write_text(json.dumps(summary))
    with caplog.at_level("WARNING"):
        paths = write_report(run)
    assert "summary.json: 1 of its blocks are damaged" in caplog.text
    page = paths["html"].read_text(encoding="utf-8")
    assert "private" not in page
    assert page.count("data:image/jpeg;base64,") == N_PICTURES  # from images/


def test_damaged_files_beside_the_tables_are_left_out_with_a_warning(run, caplog):
    maps = run / "maps" / BLOCK / "pool-a" / "ridge"
    (maps / "fit.json").write_text("{not json")
    (maps / "prediction" / "per_dimension.parquet").write_bytes(b"PAR1 damaged")
    for f in (maps / "retrieval").glob("*/semantic_per_query.parquet"):
        f.write_bytes(b"PAR1 damaged")
    (run / "summary.json").write_text("[]")
    record = _predicted(run, gen="retrieve")[0].with_suffix(".json")
    record.write_text('{"label": ["not", "text"]}')
    with caplog.at_level("WARNING"):
        assert _report(run) == 0
    assert "fit.json" in caplog.text and "per_dimension.parquet" in caplog.text
    assert "semantic_per_query.parquet" in caplog.text and "summary.json" in caplog.text


# ---------------------------------------------------------------- tables
def _rewrite(path, change):
    table = pq.read_table(path)
    pq.write_table(change(table), path)


@pytest.mark.parametrize(
    ("table", "change", "says"),
    [
        ("summary", lambda t: pa.table({"x": [1, 2]}), "lacks the columns subject, roi"),
        ("summary", lambda t: t.drop_columns(["mean"]), "lacks the column mean"),
        (
            "summary",
            lambda t: t.set_column(
                t.schema.get_field_index("mean"), "mean", pa.array(["high"] * len(t))
            ),
            "column mean holds string where numbers are expected",
        ),
        (
            "decoding",
            lambda t: t.set_column(
                t.schema.get_field_index("model"), "model", pa.array([None] * len(t), pa.string())
            ),
            "column model has empty cells",
        ),
        ("paired", lambda t: t.drop_columns(["model_a", "model_b"]), "model_a, model_b"),
    ],
)
def test_a_table_without_its_columns_is_named_in_one_paragraph(run, capsys, table, change, says):
    path = run / "tables" / f"{table}.parquet"
    _rewrite(path, change)
    before = {f: f.read_bytes() for f in _report_files(run)}
    assert _report(run) == 2
    err = _error(capsys)
    assert str(path) in err and says in err and "rerun the command" in err
    assert {f: f.read_bytes() for f in _report_files(run)} == before


def test_a_table_that_is_not_parquet_is_named(run, capsys):
    (run / "tables" / "paired.parquet").write_text("subject,roi\n1,ROI_VC\n")
    assert _report(run) == 2
    assert "paired.parquet" in _error(capsys)


# ---------------------------------------------------------------- stages.json
def _stages(run, change):
    path = run / "stages.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _every_stage(key, value):
    def change(data):
        for s in data["stages"]:
            s[key] = value

    return change


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d.update(stages=5), "is not a stage record"),
        (lambda d: d.update(cache=[]), '"cache" is []'),
        (lambda d: d.update(cache={"path": "/"}), '"cache" is {"path": "/"}'),
        (_every_stage("folder", 3), '"folder" of stage data/s1/ROI_VC is 3'),
        (_every_stage("seconds", "x"), '"seconds" of stage data/s1/ROI_VC is "x"'),
        (_every_stage("reused", "yes"), '"reused" of stage data/s1/ROI_VC is "yes"'),
        (_every_stage("name", ["a"]), '"name" of stage number 1 is ["a"]'),
    ],
)
def test_stages_json_fields_of_the_wrong_type_are_named(run, capsys, change, says):
    _stages(run, change)
    assert _report(run) == 2
    err = _error(capsys)
    assert "stages.json" in err and says in err
    with pytest.raises(DataFormatError, match=r"stages\.json"):
        load_run(run)  # (generate --from reads runs through it too)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "link"])
def test_stage_folders_outside_the_cache_are_not_followed(run, tmp_path, caplog, how):
    """Only the cache the run recorded (or RUN/cache) holds its stage folders: one
    recorded elsewhere, or linked from there, is not read."""
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "scores.summary.json").write_text(
        json.dumps({"protocol": {"versions": {"SECRET": "leaked"}}})
    )
    cache = run / "cache"
    if how == "absolute":
        folder = str(evil)
    elif how == "dotdot":
        folder = os.path.relpath(evil, cache)
    else:
        (cache / "evil-link").symlink_to(evil)
        folder = "evil-link"
    evaluations = []

    def change(data):
        data["cache"] = str(cache)
        for s in data["stages"]:
            if s["name"].startswith("evaluation/"):
                s["folder"] = folder
                evaluations.append(s["name"])

    _stages(run, change)
    loaded = load_run(run)
    assert evaluations and all(loaded.folder(name) is None for name in evaluations)
    assert loaded.cache == cache
    with caplog.at_level("WARNING"):
        paths = write_report(run)
    page = paths["html"].read_text(encoding="utf-8")
    assert "SECRET" not in page and "leaked" not in page
    assert "As the run&#39;s evaluations recorded them." in page  # from summary.json
    if how != "link":
        assert "stage folders outside the cache, not followed" in caplog.text


# ---------------------------------------------------------------- where it writes
def test_out_under_a_regular_file_is_named(run, tmp_path, capsys):
    somefile = tmp_path / "somefile"
    somefile.write_text("x")
    assert _report(run, "--out", str(somefile / "sub" / "cmp.html")) == 2
    err = _error(capsys)
    assert f"{somefile} is a file, not a folder" in err
    # The CSV folder beside the page (FILE/) is a file.
    (tmp_path / "cmp").write_text("x")
    assert _report(run, "--out", str(tmp_path / "cmp.html")) == 2
    assert f"{tmp_path / 'cmp'} is a file, not a folder" in _error(capsys)
    assert not (tmp_path / "cmp.html").exists() and not (tmp_path / "cmp.md").exists()
    # The page is a folder.
    (tmp_path / "page.html").mkdir()
    assert _report(run, "--out", str(tmp_path / "page.html")) == 2
    assert "is a folder" in _error(capsys)


def test_the_files_are_written_all_at_once_or_not_at_all(run, monkeypatch):
    from fmri2image.pipeline.report import render

    for f in _report_files(run):
        f.write_text("OLD")

    def broken(*args, **kwargs):
        raise RuntimeError("the page failed")

    with monkeypatch.context() as m:
        m.setattr(render, "html", broken)
        with pytest.raises(RuntimeError, match="the page failed"):
            write_report(run)
    assert all(f.read_text() == "OLD" for f in _report_files(run))
    assert not list(run.rglob(".report*")) and not list((run / "report").glob(".*"))


def test_a_write_that_fails_half_way_changes_nothing(run, tmp_path, monkeypatch):
    import tempfile

    from fmri2image.pipeline import report

    real = tempfile.mkstemp
    calls = []

    def mkstemp(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(report.tempfile, "mkstemp", mkstemp)
    target = tmp_path / "new" / "deeper" / "cmp.html"
    with pytest.raises(OSError, match="No space"):
        write_report(run, html_path=target)
    assert not (tmp_path / "new").exists(), "the folders made for it are removed"
    for f in _report_files(run):
        f.write_text("OLD")
    calls.clear()
    with pytest.raises(OSError, match="No space"):
        write_report(run)
    assert all(f.read_text() == "OLD" for f in _report_files(run))
    assert not list(run.rglob(".report*")) and not list((run / "report").glob(".*"))


# ---------------------------------------------------------------- markdown
EVIL = (
    "pool-a](https://evil.test/x) ![p](https://evil.test/p.png) <img src=x onerror=alert(1)> "
    "*em* _u_ `code` &lt;b&gt; ~~s~~ $x$ #h | cell\n# heading\r\nwww.evil.test mail@evil.test"
)


def _rename(run, old, new):
    for name, columns in {
        "summary": ("model",),
        "decoding": ("model",),
        "paired": ("model_a", "model_b"),
        "scores": ("model",),
    }.items():

        def change(t, columns=columns):
            for c in columns:
                values = [new if v == old else v for v in t.column(c).to_pylist()]
                t = t.set_column(t.schema.get_field_index(c), c, pa.array(values, pa.string()))
            return t

        _rewrite(run / "tables" / f"{name}.parquet", change)


def _cells(line: str) -> int:
    """The number of cell borders of a table line: the ``|`` not escaped."""
    n, escaped = 0, False
    for c in line:
        n += c == "|" and not escaped
        escaped = c == "\\" and not escaped
    return n


def test_md_text_escapes_markup():
    from fmri2image.pipeline.report.render import md_text

    assert md_text("a<b>[c](d)*e*_f_`g`#h|i\\j&k~l$m\nn\r\no\tp") == (
        "a\\<b\\>\\[c\\](d)\\*e\\*\\_f\\_\\`g\\`\\#h\\|i\\\\j\\&k\\~l\\$m n o p"
    )
    assert md_text("see www.x.org, https://x.org or me@x.org") == (
        "see www\\.x.org, https\\://x.org or me\\@x.org"
    )
    assert md_text("pool-a hit@1 n-way top-1 R² · ROI") == "pool-a hit@1 n-way top-1 R² · ROI"


def test_the_markdown_escapes_the_names_it_embeds(run):
    from fmri2image.pipeline.report.render import md_text

    _rename(run, "pool-a", EVIL)
    paths = write_report(run)
    md = paths["md"].read_text(encoding="utf-8")
    assert md_text(EVIL) in md  # the name, as text
    lines = md.splitlines()
    assert not any(line.startswith("# heading") for line in lines)
    for above, line in itertools.pairwise(lines):  # a name stays on its line and in its cell
        if line.startswith("|"):
            assert line.endswith("|")
            if above.startswith("|"):
                assert _cells(line) == _cells(above)
    # The page shows the name as text too.
    page = paths["html"].read_text(encoding="utf-8")
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_markdown_renders_no_link_tag_or_picture_from_a_name(built, run):
    markdown_it = pytest.importorskip("markdown_it")

    def render(text):
        return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text)

    _rename(run, "pool-a", EVIL)
    html = render(write_report(run)["md"].read_text(encoding="utf-8"))
    assert "<a " not in html and "<img" not in html and "<em>" not in html
    assert "<s>" not in html and "<del>" not in html
    assert html.count("<h1>") == 1 and "<h1>heading" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # as text
    clean = render((built / "report.md").read_text(encoding="utf-8"))
    assert html.count("<tr>") == clean.count("<tr>"), "the name made no row"
    assert html.count("<td") == clean.count("<td"), "the name made no cell"


def test_csv_tables_hold_the_names_as_they_are(run):
    _rename(run, "pool-a", EVIL)
    paths = write_report(run)
    rows = list(csv.DictReader(paths["comparison_csv"].open(encoding="utf-8", newline="")))
    assert EVIL in {r["model"] for r in rows}


def test_versions_come_from_the_run_folder_only(run):
    """The versions shown are those summary.json records (escaped); a summary without
    them says the installed ones are shown, and nothing in the cache is read."""
    shutil.rmtree(run / "cache")
    data = json.loads((run / "summary.json").read_text())
    data["versions"] = {"torch": "<script>x</script>", "bad": ["list"], "flag": True}
    (run / "summary.json").write_text(json.dumps(data))
    page = write_report(run)["html"].read_text(encoding="utf-8")
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page
    assert "As the run&#39;s evaluations recorded them." in page
    del data["versions"]
    (run / "summary.json").write_text(json.dumps(data))
    page = write_report(run)["html"].read_text(encoding="utf-8")
    assert "Installed now: the run folder records none" in page
