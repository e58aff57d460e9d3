"""``download``, ``data-info`` and ``make-fixture`` on every dataset behind the seam:
the right files listed, a subject summarized as a run reads it, one paragraph and exit
2 for a damaged file."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from fmri2image.data import DATASETS, Dataset, RemoteFile, register_dataset


@pytest.mark.parametrize(
    ("dataset", "argv", "names"),
    [
        ("deeprecon", ["--subjects", "1", "3"], [
            "sub-01_ImageNetTraining_fmriprep_volume_native.h5  ",
            "https://ndownloader.figshare.com/files/37838826",
            "f0aba2065e03a518681ceec65674026b",
            "sub-03_ImageNetTest_fmriprep_volume_native.h5",
            "https://ndownloader.figshare.com/files/37849986",
        ]),
        ("deeprecon", ["--subjects", "2", "--release", "original"], [
            "sub-02_perceptionNaturalImageTraining_original_VC.h5",
            "https://ndownloader.figshare.com/files/14830712",
            "https://ndownloader.figshare.com/files/14830697", "no published md5",
        ]),
        ("things", ["--subjects", "2"], [
            "sub-02_ResponseData.h5", "sub-02_StimulusMetadata.csv",
            "sub-02_VoxelMetadata.csv", "figshare://20492835/sub-02_ResponseData.h5",
        ]),
        ("nsd", ["--subjects", "4"], [
            "betas_all_subj04_fp32_renorm.hdf5", "wds/subj04/train/0.tar",
            "wds/subj04/train/29.tar", "wds/subj04/new_test/0.tar",
            "coco_images_224_float16.hdf5", "shared1000.npy", "COCO_73k_annots_curated.npy",
            "hf://datasets/pscotti/mindeyev2/wds/subj04/train/29.tar",
        ]),
    ],
)  # fmt: skip
def test_download_dry_run_lists_the_release_files(cli, tmp_path, dataset, argv, names):
    dest = tmp_path / "dest"
    rc, out, err = cli("download", dataset, *argv, "--dest", dest, "--dry-run")
    assert rc == 0, err
    assert "nothing is fetched or written" in out and not dest.exists()
    for name in names:
        assert name in out, (name, out)
    if dataset == "nsd":  # 30 sessions for subject 4, no more
        assert "wds/subj04/train/30.tar" not in out


def test_download_refuses_a_subject_the_release_lacks(cli, tmp_path):
    rc, _, err = cli("download", "deeprecon", "--subjects", "4", "--dest", tmp_path / "d")
    assert rc == 2 and "Traceback" not in err and "1, 2" in err
    rc, _, err = cli("download", "nsd", "--subjects", "9", "--dest", tmp_path / "d", "--dry-run")
    assert rc == 2 and "Traceback" not in err


class _Files(http.server.BaseHTTPRequestHandler):
    payload = b"0123456789" * 1000

    def do_GET(self):  # the http.server API names it
        body = self.payload
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:] if not self.headers.get("Range", "").endswith("-0") else body[:1]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        self.wfile.write(chunk)

    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    md5 = hashlib.md5(_Files.payload).hexdigest()

    class Served(Dataset):
        name = "served"
        base = url

        def subjects(self):
            return (1,)

        def files(self, subject):
            return ()

        def load(self, subject, roi, *, drop_nan_voxels=False):
            raise NotImplementedError

        def stimuli(self, split):
            raise NotImplementedError

        @classmethod
        def remote_files(cls, subjects, **options):
            return tuple(
                RemoteFile(f"sub-{s:02d}/{name}", f"{url}/{name}", md5=digest)
                for s in subjects
                for name, digest in (("a.h5", md5), ("b.h5", options.get("b_md5", md5)))
            )

    register_dataset("served", Served)
    yield Served
    DATASETS.unregister("served")
    server.shutdown()


def test_a_dataset_download_is_verified_and_resumable(served, tmp_path):
    from fmri2image.data.download import DownloadError, download_dataset

    dest = tmp_path / "dest"
    result = download_dataset("served", [1], dest, progress=False)
    assert result.actions == ("fetched", "fetched")
    assert (dest / "sub-01" / "a.h5").read_bytes() == _Files.payload
    again = download_dataset("served", [1], dest, progress=False)
    assert again.actions == ("skipped", "skipped")  # complete and verified: not fetched
    # A published MD5 that does not match: refused, nothing installed under the name.
    served.remote_files = classmethod(
        lambda cls, subjects, **o: (RemoteFile("c.h5", f"{cls.base}/c.h5", md5="0" * 32),)
    )
    with pytest.raises(DownloadError, match="damaged"):
        download_dataset("served", [1], dest, progress=False)
    assert not (dest / "c.h5").exists()


def test_hub_files_go_through_huggingface_hub(monkeypatch, tmp_path):
    import huggingface_hub

    calls = []

    def fake(repo_id, filename, *, repo_type, local_dir):
        calls.append((repo_id, filename, repo_type))
        path = Path(local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    from fmri2image.data.download import download_dataset

    result = download_dataset("nsd", [3], tmp_path / "nsd", progress=False)
    assert ("pscotti/mindeyev2", "wds/subj03/train/31.tar", "dataset") in calls
    assert ("pscotti/mindeyev2", "betas_all_subj03_fp32_renorm.hdf5", "dataset") in calls
    assert set(result.actions) == {"fetched"} and len(calls) == 32 + 1 + 1 + 3


def test_data_info_reads_each_dataset_as_a_run_does(cli, tmp_path):
    for name, extra in (("deeprecon", []), ("things", []), ("nsd", ["--option", "sessions=2"])):
        root = tmp_path / name
        assert cli("make-fixture", name, "--out", root)[0] == 0
        rc, out, err = cli("data-info", "--dataset", name, "--data", root, "--subject", "1",
                           "--json", *extra)  # fmt: skip
        assert rc == 0, err
        info = json.loads(out)
        assert info["dataset"] == name and info["splits"]["train"]["n_trials"] > 0
        test = info["splits"]["test"]
        assert test["n_trials"] == test["n_stimuli"] * test["repeats"][0]
        assert info["average"] == ("predictions" if name == "nsd" else "voxels")
    # NSD without the option: the missing sessions are named, exit 2, no traceback.
    rc, _, err = cli("data-info", "--dataset", "nsd", "--data", tmp_path / "nsd", "--subject", 1)
    assert rc == 2 and "train/2.tar does not exist" in err and "Traceback" not in err


def test_a_damaged_file_is_one_paragraph_and_exit_2(cli, tmp_path):
    root = tmp_path / "deeprecon"
    assert cli("make-fixture", "deeprecon", "--out", root)[0] == 0
    (h5,) = sorted(root.glob("sub-01_perceptionNaturalImageTest_*.h5"))
    h5.write_bytes(h5.read_bytes()[:1000])  # truncated
    rc, _, err = cli("data-info", "--dataset", "deeprecon", "--data", root, "--subject", "1")
    assert rc == 2 and h5.name in err and "Traceback" not in err
    rc, _, err = cli("make-fixture", "deeprecon", "--out", root)
    assert rc == 2 and "not empty" in err


@pytest.mark.parametrize(
    ("dataset", "damage", "named"),
    [
        ("things", lambda root: (root / "sub-01_StimulusMetadata.csv").write_text("x,y\n1,2\n"),
         "sub-01_StimulusMetadata.csv"),
        ("nsd", lambda root: (root / "wds" / "subj01" / "new_test" / "0.tar").write_bytes(b"no"),
         "new_test/0.tar"),
        ("nsd", lambda root: (root / "betas_all_subj01_fp32_renorm.hdf5").unlink(),
         "betas_all_subj01_fp32_renorm.hdf5"),
    ],
)  # fmt: skip
def test_damaged_or_missing_files_of_each_dataset(cli, tmp_path, dataset, damage, named):
    root = tmp_path / dataset
    assert cli("make-fixture", dataset, "--out", root)[0] == 0
    damage(root)
    rc, _, err = cli("data-info", "--dataset", dataset, "--data", root, "--subject", "1",
                     "--option", "sessions=2" if dataset == "nsd" else "release=auto")  # fmt: skip
    assert rc == 2 and named in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1  # one paragraph


def test_doctor_reads_a_dataset_with_its_options(cli, tmp_path):
    root = tmp_path / "nsd"
    assert cli("make-fixture", "nsd", "--out", root)[0] == 0
    _, out, _ = cli("doctor", "--dataset", "nsd", "--data", root, "--option", "sessions=2",
                     "--json")  # fmt: skip
    checks = {c["name"]: c for c in json.loads(out)["sections"]["god"]}
    assert checks["subject 1"]["ok"] and "wds/subj01/train/1.tar" in checks["subject 1"]["detail"]
    _, out, _ = cli("doctor", "--dataset", "nsd", "--data", root, "--json")
    checks = {c["name"]: c for c in json.loads(out)["sections"]["god"]}
    assert not checks["subject 1"]["ok"] and "sessions" in checks["subject 1"]["fix"]
