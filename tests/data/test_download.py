"""``fmri2image download god``: against a local fake figshare (no internet).

The fake serves the API's file list (paginated, or as an article record) and the
files with ``Range`` support; it can cut a transfer short, ignore ranges, state
a wrong MD5, change any field of a record (a hostile or damaged list), list extra
records, or redirect a file, and it records every request it saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fmri2image._lock import LOCK_NAME
from fmri2image.cli import download_cmd
from fmri2image.cli.main import main
from fmri2image.data import download
from fmri2image.data.download import DownloadError, download_god
from fmri2image.data.god import find_subject_files
from fmri2image.errors import ConfigError

ARTICLE = 7387130
SIZES = {
    "Subject3.h5": 300_000,
    "Subject3_ImageNetTraining.h5": 200_000,
    "Subject3_ImageNetTest.h5": 150_000,
    "Subject4.h5": 250_000,
    "README.txt": 100,
}


class FakeFigshare:
    """State of the fake server; tests change it between runs."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_after: dict[str, int] = {}  # name -> bytes sent on its first request only
        self.ignore_range = False
        self.article_shape = False  # the files endpoint is 404, the article has "files"
        self.wrong_md5: set[str] = set()
        self.fail_status: dict[str, int] = {}  # name -> HTTP status of every request
        self.overrides: dict[str, dict] = {}  # name -> fields that replace its record's
        self.extra: list[dict] = []  # records listed after the files'
        self.redirect: dict[str, str] = {}  # name -> Location of a 302 answer
        self.url = ""

    def record(self, name: str) -> dict:
        data = self.files[name]
        md5 = hashlib.md5(data).hexdigest()
        if name in self.wrong_md5:
            md5 = "0" * 32
        return {
            "id": 1000 + sorted(self.files).index(name),
            "name": name,
            "size": len(data),
            "is_link_only": False,
            "download_url": f"{self.url}/files/{name}",
            "supplied_md5": md5,
            "computed_md5": md5,
            "mimetype": "application/x-hdf5",
        } | self.overrides.get(name, {})

    def records(self) -> list[dict]:
        return [self.record(n) for n in sorted(self.files)] + self.extra

    def file_requests(self, name: str) -> list[str | None]:
        return [rng for path, rng in self.requests if path == f"/files/{name}"]


def _handler(state: FakeFigshare):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _json(self, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            state.requests.append((parsed.path, self.headers.get("Range")))
            query = urllib.parse.parse_qs(parsed.query)
            if parsed.path == f"/v2/articles/{ARTICLE}/files" and not state.article_shape:
                page, size = int(query["page"][0]), int(query["page_size"][0])
                self._json(state.records()[(page - 1) * size : page * size])
            elif parsed.path == f"/v2/articles/{ARTICLE}" and state.article_shape:
                self._json({"id": ARTICLE, "files": state.records()})
            elif parsed.path.startswith("/files/") and parsed.path[7:] in state.files:
                self._file(parsed.path[7:])
            else:
                self.send_error(404)

        def _file(self, name: str) -> None:
            if name in state.fail_status:
                self.send_error(state.fail_status[name])
                return
            if name in state.redirect:
                self.send_response(302)
                self.send_header("Location", state.redirect[name])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = state.files[name]
            m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            start = int(m.group(1)) if m and not state.ignore_range else 0
            if start >= len(data) and start:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            cut = state.cut_after.pop(name, None)
            if cut is not None:  # a dropped connection: part of the body, then EOF
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def figshare():
    rng = random.Random(7)
    state = FakeFigshare({name: rng.randbytes(n) for name, n in SIZES.items()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _get(figshare: FakeFigshare, dest: Path, subjects=(3,), **kwargs):
    kwargs.setdefault("retries", 0)
    kwargs.setdefault("progress", False)
    return download_god(subjects, dest, api_url=f"{figshare.url}/v2", **kwargs)


def _cli(capsys, figshare: FakeFigshare, *args) -> tuple[int, str, str]:
    rc = main(["-q", "download", "god", "--api-url", f"{figshare.url}/v2", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_full_download_is_byte_identical_with_the_readers_names(figshare, tmp_path, umask_027):
    dest = tmp_path / "god"
    result = _get(figshare, dest, subjects=(3, "Subject4"), page_size=2)
    assert [f.name for f in result.fetched] == ["Subject3.h5", "Subject4.h5"]
    assert result.bytes_transferred == SIZES["Subject3.h5"] + SIZES["Subject4.h5"]
    for name in ("Subject3.h5", "Subject4.h5"):
        assert (dest / name).read_bytes() == figshare.files[name]
        assert (dest / name).stat().st_mode & 0o777 == 0o640
    assert find_subject_files(dest, 3, "spm") == (dest / "Subject3.h5",)
    assert not (dest / download.PARTIAL_DIR).exists()
    assert not (dest / LOCK_NAME).exists()  # the lock file goes with the run
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == [
        "Subject3.h5",
        "Subject4.h5",
    ]
    pages = [p for p, _ in figshare.requests if p.endswith("/files")]
    assert len(pages) == 3  # 5 files, 2 per page: the list is read to its end
    assert "1 skipped" not in result.format() and "2 file(s) fetched" in result.format()


def test_fmriprep_release_gets_the_split_files(figshare, tmp_path):
    dest = tmp_path / "god"
    result = _get(figshare, dest, release="fmriprep")
    names = [f.name for f in result.fetched]
    assert names == ["Subject3_ImageNetTraining.h5", "Subject3_ImageNetTest.h5"]  # no Imagery
    assert find_subject_files(dest, 3, "fmriprep") == tuple(dest / n for n in names)
    for n in names:
        assert (dest / n).read_bytes() == figshare.files[n]


def test_article_record_shape_is_read_when_the_files_endpoint_is_refused(figshare, tmp_path):
    figshare.article_shape = True
    result = _get(figshare, tmp_path / "god", subjects=(4,))
    assert (tmp_path / "god/Subject4.h5").read_bytes() == figshare.files["Subject4.h5"]
    assert [f.name for f in result.fetched] == ["Subject4.h5"]


def test_interrupted_transfer_resumes_with_a_range_request(figshare, tmp_path):
    dest, k = tmp_path / "god", 70_000
    figshare.cut_after["Subject3.h5"] = k
    with pytest.raises(DownloadError, match=r"Subject3\.h5.*run the same command again") as exc:
        _get(figshare, dest, chunk_size=8192)
    assert "resumes" in str(exc.value)
    part = dest / download.PARTIAL_DIR / "Subject3.h5.part"
    assert part.stat().st_size == k
    assert not (dest / "Subject3.h5").exists()

    result = _get(figshare, dest)
    assert figshare.file_requests("Subject3.h5") == [None, f"bytes={k}-"]
    assert (dest / "Subject3.h5").read_bytes() == figshare.files["Subject3.h5"]
    assert result.fetched[0].transferred == SIZES["Subject3.h5"] - k
    assert not part.exists()


def test_retries_resume_within_one_run(figshare, tmp_path):
    figshare.cut_after["Subject3.h5"] = 50_000
    result = _get(figshare, tmp_path, retries=1, retry_wait=0)
    assert figshare.file_requests("Subject3.h5") == [None, "bytes=50000-"]
    assert (tmp_path / "Subject3.h5").read_bytes() == figshare.files["Subject3.h5"]
    assert result.bytes_transferred == SIZES["Subject3.h5"]


def test_a_server_that_ignores_range_still_ends_correct(figshare, tmp_path):
    figshare.cut_after["Subject3.h5"] = 60_000
    with pytest.raises(DownloadError):
        _get(figshare, tmp_path)
    figshare.ignore_range = True
    result = _get(figshare, tmp_path)
    assert figshare.file_requests("Subject3.h5") == [None, "bytes=60000-"]  # answered 200
    assert (tmp_path / "Subject3.h5").read_bytes() == figshare.files["Subject3.h5"]
    assert result.fetched[0].transferred == SIZES["Subject3.h5"]


def test_a_part_longer_than_the_file_starts_over(figshare, tmp_path):
    part = tmp_path / download.PARTIAL_DIR / "Subject4.h5.part"
    part.parent.mkdir()
    part.write_bytes(b"x" * (SIZES["Subject4.h5"] + 10))
    _get(figshare, tmp_path, subjects=(4,))
    assert figshare.file_requests("Subject4.h5") == [None]
    assert (tmp_path / "Subject4.h5").read_bytes() == figshare.files["Subject4.h5"]


def test_md5_mismatch_is_an_error_and_leaves_no_file(figshare, tmp_path):
    figshare.wrong_md5.add("Subject3.h5")
    with pytest.raises(DownloadError, match=r"Subject3\.h5 is damaged: its MD5") as exc:
        _get(figshare, tmp_path / "god")
    assert "run the same command again" in str(exc.value)
    assert not (tmp_path / "god/Subject3.h5").exists()
    assert not (tmp_path / "god" / download.PARTIAL_DIR / "Subject3.h5.part").exists()


def test_unknown_subject_lists_the_available_ones(figshare, tmp_path):
    with pytest.raises(ConfigError) as exc:
        _get(figshare, tmp_path / "god", subjects=(3, 6))
    msg = str(exc.value)
    assert "subject(s) 6" in msg and "Subject6.h5" in msg
    assert "spm release of subject(s) 3, 4" in msg
    assert "fmriprep release of subject(s) 3" in msg
    assert not (tmp_path / "god").exists()
    with pytest.raises(ConfigError, match=r"spm release of subject\(s\) 3, 4 \(--release spm\)"):
        _get(figshare, tmp_path / "god", subjects=(4,), release="fmriprep")
    with pytest.raises(ConfigError, match="Cannot read a subject number"):
        _get(figshare, tmp_path / "god", subjects=("three",))


def test_second_run_skips_complete_files_and_replaces_a_different_one(figshare, tmp_path):
    _get(figshare, tmp_path, subjects=(3, 4))
    n_requests = len(figshare.requests)
    result = _get(figshare, tmp_path, subjects=(3, 4))
    assert [f.name for f in result.skipped] == ["Subject3.h5", "Subject4.h5"]
    assert result.bytes_transferred == 0 and "2 skipped" in result.format()
    assert [p for p, _ in figshare.requests[n_requests:] if p.startswith("/files/")] == []

    # same size, other bytes (e.g. an older article version): fetched again
    (tmp_path / "Subject4.h5").write_bytes(b"\0" * SIZES["Subject4.h5"])
    result = _get(figshare, tmp_path, subjects=(3, 4))
    assert [f.name for f in result.fetched] == ["Subject4.h5"]
    assert (tmp_path / "Subject4.h5").read_bytes() == figshare.files["Subject4.h5"]


def test_dry_run_lists_sizes_and_writes_nothing(figshare, tmp_path):
    dest = tmp_path / "god"
    result = _get(figshare, dest, subjects=(3, 4), dry_run=True)
    assert not dest.exists()
    assert [(f.name, f.size, f.action) for f in result.files] == [
        ("Subject3.h5", SIZES["Subject3.h5"], "fetch"),
        ("Subject4.h5", SIZES["Subject4.h5"], "fetch"),
    ]
    text = result.format()
    assert "dry run" in text and "293.0 KiB" in text and "would transfer 537.1 KiB" in text
    assert figshare.file_requests("Subject3.h5") == []

    part = dest / download.PARTIAL_DIR / "Subject3.h5.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(figshare.files["Subject3.h5"][:1000])
    (dest / "Subject4.h5").write_bytes(figshare.files["Subject4.h5"])
    before = sorted(dest.rglob("*"))
    result = _get(figshare, dest, subjects=(3, 4), dry_run=True)
    assert [(f.action, f.have) for f in result.files] == [("resume", 1000), ("check", 250_000)]
    assert sorted(dest.rglob("*")) == before
    assert figshare.file_requests("Subject3.h5") == []


def test_network_errors_are_one_paragraph_user_errors(figshare, tmp_path):
    figshare.fail_status["Subject3.h5"] = 503
    with pytest.raises(DownloadError, match="HTTP 503") as exc:
        _get(figshare, tmp_path, retries=2, retry_wait=0)
    assert exc.value.retryable and "\n" not in str(exc.value)
    assert len(figshare.file_requests("Subject3.h5")) == 3
    figshare.fail_status["Subject3.h5"] = 403
    with pytest.raises(DownloadError, match=r"HTTP 403.*refused") as exc:
        _get(figshare, tmp_path, retries=2, retry_wait=0)
    assert not exc.value.retryable

    with pytest.raises(DownloadError, match="no article 99") as exc:
        download_god([3], tmp_path, article=99, api_url=f"{figshare.url}/v2", progress=False)
    # nothing listens on port 9 of 127.0.0.1 (discard): connection refused
    with pytest.raises(DownloadError, match=r"Cannot read the file list.*run the command again"):
        download_god([3], tmp_path / "x", api_url="http://127.0.0.1:9/v2", timeout=5)
    assert not (tmp_path / "x").exists()


def test_cli_downloads_and_prints_the_stimulus_note(figshare, tmp_path, capsys):
    dest = tmp_path / "god"
    rc, out, err = _cli(capsys, figshare, "--subjects", 3, 4, "--dest", dest)
    assert rc == 0, err
    assert "2 file(s) fetched" in out
    assert "stimulus images are not in the figshare article" in out
    assert "imageID_training.csv" in out and "training/n01518878_10042.JPEG" in out
    assert (dest / "Subject4.h5").read_bytes() == figshare.files["Subject4.h5"]

    rc, out, _ = _cli(capsys, figshare, "--subjects", 3, "--dest", tmp_path / "dry", "--dry-run")
    assert rc == 0 and "dry run" in out and "stimulus images" in out
    assert not (tmp_path / "dry").exists()


def test_cli_errors_exit_2_without_traceback(figshare, tmp_path, capsys):
    rc, _, err = _cli(capsys, figshare, "--subjects", 9, "--dest", tmp_path)
    assert rc == 2 and err.startswith("fmri2image download: error: ") and "Traceback" not in err
    assert "spm release of subject(s) 3, 4" in err

    figshare.cut_after["Subject3.h5"] = 1000
    rc, _, err = _cli(capsys, figshare, "--subjects", 3, "--dest", tmp_path, "--retries", 0)
    assert rc == 2 and "connection closed" in err and "resumes" in err
    rc, _, _ = _cli(capsys, figshare, "--subjects", 3, "--dest", tmp_path)
    assert rc == 0 and (tmp_path / "Subject3.h5").read_bytes() == figshare.files["Subject3.h5"]


def test_two_downloads_never_write_one_folder(figshare, tmp_path, capsys):
    holder = textwrap.dedent(
        f"""
        import sys, time
        from fmri2image._lock import output_lock
        with output_lock({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(30)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        rc, _, err = _cli(capsys, figshare, "--subjects", 3, "--dest", tmp_path)
        assert rc == 2 and "--dest" in err and "being written by" in err
        assert not (tmp_path / "Subject3.h5").exists()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    deadline = time.monotonic() + 5
    while True:  # the kernel drops the lock when the holder dies
        rc, _, err = _cli(capsys, figshare, "--subjects", 3, "--dest", tmp_path)
        if rc == 0 or time.monotonic() > deadline:
            break
    assert rc == 0, err


def test_cli_defaults_are_the_library_constants():
    assert download_cmd.DEFAULTS == {
        "article": download.GOD_ARTICLE,
        "api_url": download.FIGSHARE_API,
    }


# --- the file list is not trusted ---------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, -1, "300000", 1.5, True, None], ids=["0", "-1", "str", "float", "bool", "null"]
)
def test_a_requested_file_with_a_bad_size_is_refused_before_anything_is_written(
    figshare, tmp_path, size
):
    figshare.overrides["Subject3.h5"] = {"size": size}
    dest = tmp_path / "god"
    with pytest.raises(DownloadError, match=r"lists Subject3\.h5 with the size .*not a positive"):
        _get(figshare, dest)
    assert not dest.exists()
    assert figshare.file_requests("Subject3.h5") == []


def test_a_missing_size_is_refused_and_the_cli_exits_2(figshare, tmp_path, capsys):
    full_record = figshare.record

    def record(name):  # the field absent, not null
        rec = full_record(name)
        if name == "Subject3.h5":
            del rec["size"]
        return rec

    figshare.record = record
    rc, _, err = _cli(capsys, figshare, "--subjects", 3, "--dest", tmp_path / "god")
    assert rc == 2 and "Traceback" not in err
    assert "Subject3.h5 with no size" in err and "Nothing was fetched" in err
    assert not (tmp_path / "god").exists()


def test_a_bad_entry_the_run_does_not_ask_for_is_skipped_with_a_warning(figshare, tmp_path, caplog):
    figshare.overrides["Subject4.h5"] = {"size": -1}
    figshare.overrides["README.txt"] = {"download_url": "ftp://example.org/README.txt"}
    with caplog.at_level("WARNING", logger="fmri2image"):
        result = _get(figshare, tmp_path / "god")
    assert [f.name for f in result.fetched] == ["Subject3.h5"]
    assert "lists Subject4.h5 with the size -1" in caplog.text
    assert "lists README.txt with the download URL ftp://" in caplog.text
    assert "that entry is skipped" in caplog.text


def test_md5_must_be_32_hex_digits(figshare, tmp_path):
    figshare.overrides["Subject3.h5"] = {"computed_md5": "not-a-digest", "supplied_md5": ""}
    with pytest.raises(DownloadError, match=r"Subject3\.h5 with the MD5 'not-a-digest'"):
        _get(figshare, tmp_path / "god")
    assert not (tmp_path / "god").exists()
    figshare.overrides["Subject3.h5"] = {"computed_md5": 12345}
    with pytest.raises(DownloadError, match=r"MD5 12345, which is not 32 hexadecimal"):
        _get(figshare, tmp_path / "god")
    # an upper-case digest is a digest: checked (a wrong one would fail) and accepted
    digest = hashlib.md5(figshare.files["Subject3.h5"]).hexdigest().upper()
    figshare.overrides["Subject3.h5"] = {"computed_md5": digest}
    _get(figshare, tmp_path / "god")
    assert (tmp_path / "god/Subject3.h5").read_bytes() == figshare.files["Subject3.h5"]


def test_names_with_terminal_escapes_are_skipped_and_shown_escaped(
    figshare, tmp_path, capsys, caplog
):
    evil = "\x1b[31mSubject1.h5"
    figshare.extra.append(
        {"id": 1, "name": evil, "size": 10, "download_url": f"{figshare.url}/files/x"}
    )
    with caplog.at_level("INFO", logger="fmri2image"):
        rc, out, err = _cli(capsys, figshare, "--subjects", 3, "--dest", tmp_path / "god")
    shown = out + err + caplog.text  # the log's messages (pytest captures them)
    assert rc == 0, err
    assert r"lists \x1b[31mSubject1.h5 with control" in shown and "skipped" in shown
    assert "\x1b" not in shown
    # asked for: the entry is not a file of the article; nothing is shown raw
    caplog.clear()
    with caplog.at_level("INFO", logger="fmri2image"):
        rc, out, err = _cli(capsys, figshare, "--subjects", 1, "--dest", tmp_path / "god")
    shown = out + err + caplog.text
    assert rc == 2 and "no spm release file for subject(s) 1" in err
    assert r"\x1b[31mSubject1.h5" in shown and "\x1b" not in shown
    assert sorted(p.name for p in (tmp_path / "god").iterdir()) == ["Subject3.h5"]


def test_every_name_shown_is_escaped():
    assert download._shown("Subject3.h5") == "Subject3.h5"
    assert download._shown("\x1b[31mA\nB\\C\u202e\x00") == r"\x1b[31mA\nB\\C\u202e\x00"
    evil = download.RemoteFile("\x1b]0;title\x07Subject3.h5", 10, "http://h/x")
    with pytest.raises(ConfigError) as exc:
        download.select_god_files([evil], [3])
    assert "\x1b" not in str(exc.value) and r"\x1b]0;title\x07Subject3.h5" in str(exc.value)
    outcome = download.FileOutcome(evil.name, Path("x"), 10, "fetched", transferred=10)
    text = download.DownloadResult(Path("d"), 1, "spm", (3,), (outcome,)).format()
    assert "\x1b" not in text and r"\x1b]0;title" in text


@pytest.mark.parametrize(
    "name",
    ["../Subject3.h5", "sub/Subject3.h5", "..\\Subject3.h5", "..", ".partial", LOCK_NAME],
)
def test_names_that_are_not_plain_file_names_are_skipped(figshare, tmp_path, caplog, name):
    figshare.overrides["Subject3.h5"] = {"name": name}
    dest = tmp_path / "a" / "god"
    with caplog.at_level("WARNING", logger="fmri2image"), pytest.raises(ConfigError):
        _get(figshare, dest)  # the article has no Subject3.h5 now
    assert "that entry is skipped" in caplog.text
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == []
    assert figshare.file_requests("Subject3.h5") == []


def test_a_bad_name_beside_the_good_one_writes_only_into_dest(figshare, tmp_path):
    figshare.extra.append(dict(figshare.record("Subject3.h5"), name="../Subject3.h5"))
    dest = tmp_path / "god"
    _get(figshare, dest)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == [
        Path("god"),
        Path("god/Subject3.h5"),
    ]


@pytest.mark.parametrize("scheme", ["file", "ftp", "data"])
def test_only_http_urls_are_fetched(figshare, tmp_path, capsys, scheme):
    secret = tmp_path / "secret.h5"
    secret.write_bytes(b"S" * SIZES["Subject3.h5"])
    url = {
        "file": secret.as_uri(),
        "ftp": "ftp://127.0.0.1:9/Subject3.h5",
        "data": "data:application/octet-stream;base64,AAAA",
    }[scheme]
    figshare.overrides["Subject3.h5"] = {"download_url": url}
    dest = tmp_path / "god"
    rc, _, err = _cli(capsys, figshare, "--subjects", 3, "--dest", dest)
    assert rc == 2 and "Traceback" not in err
    assert f"Subject3.h5 with the download URL {scheme}:" in err and "only" in err
    assert not dest.exists()
    assert sorted(tmp_path.iterdir()) == [secret]
    with pytest.raises(DownloadError, match="only http and https"):
        download._open(url, timeout=1)


def test_a_redirect_away_from_http_is_refused(figshare, tmp_path):
    figshare.redirect["Subject3.h5"] = "ftp://127.0.0.1:9/Subject3.h5"
    with pytest.raises(DownloadError, match=r"ftp://127\.0\.0\.1:9/Subject3\.h5: refused"):
        _get(figshare, tmp_path / "god")
    assert not (tmp_path / "god").exists()
    # an http redirect is followed
    figshare.redirect["Subject3.h5"] = f"{figshare.url}/files/Subject4.h5"
    figshare.overrides["Subject3.h5"] = {"size": SIZES["Subject4.h5"], "computed_md5": None,
                                         "supplied_md5": None}  # fmt: skip
    _get(figshare, tmp_path / "god")
    assert (tmp_path / "god/Subject3.h5").read_bytes() == figshare.files["Subject4.h5"]


def test_api_url_must_be_http(tmp_path, capsys):
    listing = tmp_path / "v2/articles/7387130/files"
    listing.parent.mkdir(parents=True)
    listing.write_text("[]")
    rc = main(["-q", "download", "god", "--subjects", "3", "--dest", str(tmp_path / "god"),
               "--api-url", (tmp_path / "v2").as_uri()])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "--api-url must be an http:// or https:// URL" in err
    assert not (tmp_path / "god").exists()


# --- what a run leaves in --dest ----------------------------------------------------


def _tree(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size if p.is_file() else -1)
                  for p in folder.rglob("*"))  # fmt: skip


def test_a_download_that_fails_before_any_byte_leaves_dest_as_it_found_it(figshare, tmp_path):
    figshare.fail_status["Subject3.h5"] = 503
    dest = tmp_path / "new" / "god"
    with pytest.raises(DownloadError, match="HTTP 503"):
        _get(figshare, dest)
    assert not (tmp_path / "new").exists()

    dest = tmp_path / "old"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    before = _tree(dest)
    with pytest.raises(DownloadError, match="HTTP 503"):
        _get(figshare, dest)
    assert _tree(dest) == before

    # the connection drops before the first byte: the empty part goes too
    del figshare.fail_status["Subject3.h5"]
    figshare.cut_after["Subject3.h5"] = 0
    with pytest.raises(DownloadError, match=r"connection closed after 0 B.*a rerun starts"):
        _get(figshare, tmp_path / "new" / "god")
    assert not (tmp_path / "new").exists()


def test_a_failed_download_keeps_only_its_resumable_part(figshare, tmp_path):
    figshare.cut_after["Subject4.h5"] = 9000
    dest = tmp_path / "god"
    with pytest.raises(DownloadError, match="resumes"):
        _get(figshare, dest, subjects=(3, 4), chunk_size=4096)
    assert _tree(dest) == [
        (".partial", -1),
        (".partial/Subject4.h5.part", 9000),
        ("Subject3.h5", SIZES["Subject3.h5"]),
    ]


def test_the_next_run_resumes_a_part_and_collects_stale_ones(figshare, tmp_path, caplog):
    k = 40_000
    figshare.cut_after["Subject3.h5"] = k
    dest = tmp_path / "god"
    with pytest.raises(DownloadError):
        _get(figshare, dest, chunk_size=4096)
    partial = dest / download.PARTIAL_DIR
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"keep me")
    (partial / "Old.h5.part").write_bytes(b"x" * 10)  # a name the article no longer lists
    (partial / "Subject4.h5.part").write_bytes(b"")  # an empty leftover
    (partial / "tmp1234").write_bytes(b"x")  # a temporary file
    (partial / "README.txt.part").symlink_to(outside)  # a link: never written through
    test_part = figshare.files["Subject3_ImageNetTest.h5"][:10]
    (partial / "Subject3_ImageNetTest.h5.part").write_bytes(test_part)  # resumable, kept
    (partial / "Subject3_ImageNetTraining.h5.part").write_bytes(b"z" * 300_000)  # too long
    (dest / LOCK_NAME).write_text("")  # an old run's lock file

    with caplog.at_level("INFO", logger="fmri2image"):
        result = _get(figshare, dest)
    assert figshare.file_requests("Subject3.h5") == [None, f"bytes={k}-"]
    assert result.fetched[0].transferred == SIZES["Subject3.h5"] - k
    assert (dest / "Subject3.h5").read_bytes() == figshare.files["Subject3.h5"]
    assert _tree(dest) == [
        (".partial", -1),
        (".partial/Subject3_ImageNetTest.h5.part", 10),
        ("Subject3.h5", SIZES["Subject3.h5"]),
    ]
    assert outside.read_bytes() == b"keep me"
    log = caplog.text
    assert "removed 5 leftover(s) of earlier runs" in log
    for what in ("Old.h5.part (not of a file the article lists)", "Subject4.h5.part (empty)",
                 "tmp1234 (not a part file)", "README.txt.part (not a part file)",
                 "Subject3_ImageNetTraining.h5.part (300000 bytes, longer than the file)"):  # fmt: skip
        assert what in log

    # the kept part is resumed when its file is asked for
    _get(figshare, dest, release="fmriprep")
    assert figshare.file_requests("Subject3_ImageNetTest.h5") == ["bytes=10-"]
    assert not partial.exists() and not (dest / LOCK_NAME).exists()
