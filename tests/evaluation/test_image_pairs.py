"""Reading --recon / --gt sources and pairing them by stem, on real files in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

import fmri2image.evaluation.images as ev_images
from fmri2image.errors import ConfigError, DataFormatError, MissingDataFileError
from fmri2image.evaluation.images import (
    IMAGE_SUFFIXES,
    ImagePairs,
    is_blank,
    pair_images,
    read_image_source,
    read_order_file,
)
from fmri2image.evaluation.lowlevel import pixcorr, ssim

# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


def photo(astronaut: np.ndarray, i: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A distinct real-photo crop per ``i`` (different content), resized to ``size`` (w, h)."""
    y, x = 40 * (i % 6), 50 * (i // 6 % 6)
    return Image.fromarray(astronaut[y : y + 256, x : x + 256]).resize(size, Image.BILINEAR)


def write(folder: Path, name: str, image: Image.Image, **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[path.suffix.lower()]
    image.save(path, format=fmt, **kwargs)
    return path


def folder_of(
    tmp: Path, name: str, astronaut: np.ndarray, stems: list[str], suffix: str = ".png", **kw
) -> Path:
    folder = tmp / name
    for i, stem in enumerate(stems):
        write(folder, stem + suffix, photo(astronaut, i, **kw))
    return folder


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


# ---------------------------------------------------------------- folders


def test_exact_match_of_mixed_formats(tmp_path, astronaut):
    gt = tmp_path / "gt"
    originals = {}
    for i, (stem, suffix) in enumerate(
        [("a", ".png"), ("b", ".jpg"), ("n01440764_10026", ".JPEG"), ("d", ".webp")]
    ):
        originals[stem] = photo(astronaut, i)
        kwargs = {"lossless": True} if suffix == ".webp" else {}
        write(gt, stem + suffix, originals[stem], **kwargs)
    recon = folder_of(tmp_path, "recon", astronaut, sorted(originals))

    pairs = pair_images(recon, gt)

    assert isinstance(pairs, ImagePairs)
    assert pairs.stems == ("a", "b", "d", "n01440764_10026")
    assert len(pairs) == 4 and len(pairs.true) == len(pairs.pred) == 4
    assert pairs.excluded == {} and pairs.blank == ()
    assert all(im.mode == "RGB" for im in [*pairs.true, *pairs.pred])
    # lossless formats keep the exact pixels; JPEGs are decoded at full resolution
    np.testing.assert_array_equal(pixels(pairs.true[0]), pixels(originals["a"]))
    np.testing.assert_array_equal(pixels(pairs.true[2]), pixels(originals["d"]))
    assert pairs.true[1].size == originals["b"].size
    assert pairs.true[3].size == originals["n01440764_10026"].size
    np.testing.assert_array_equal(pixels(pairs.pred[0]), pixels(photo(astronaut, 0)))
    assert pairs.notes == (
        "reconstructions and ground truths have the same sizes (64×48 (4)); non-square "
        "images are resized to 425×425 for PixCorr/SSIM (PIL bilinear, antialiased), "
        "aspect ratio not kept",
    )
    summary = pairs.to_dict()
    json.dumps(summary)
    assert summary["n_pairs"] == 4 and summary["n_excluded"] == 0
    assert summary["sources"]["gt"]["kind"] == "folder"


def test_pairs_feed_the_metrics(tmp_path, astronaut):
    gt = folder_of(tmp_path, "gt", astronaut, ["x", "y", "z"], size=(80, 80))
    pairs = pair_images(gt, gt)
    np.testing.assert_allclose(pixcorr(pairs.true, pairs.pred), 1.0, atol=1e-9)
    np.testing.assert_allclose(ssim(pairs.true, pairs.pred), 1.0, atol=1e-9)
    assert any("same folder" in n for n in pairs.notes)


def test_suffixes_are_case_insensitive(tmp_path, astronaut):
    assert {".png", ".jpg", ".jpeg", ".webp"} <= set(IMAGE_SUFFIXES)
    folder = tmp_path / "f"
    write(folder, "a.JPEG", photo(astronaut, 0))
    write(folder, "b.Png", photo(astronaut, 1))
    write(folder, "c.WEBP", photo(astronaut, 2))
    (folder / "readme.txt").write_text("not an image")
    (folder / ".hidden.png").write_text("macOS resource fork")
    (folder / "sub").mkdir()
    write(folder / "sub", "d.png", photo(astronaut, 3))
    src = read_image_source(folder)
    assert src.kind == "folder" and src.stems == ("a", "b", "c")
    assert src.notes and "1 non-image files and 1 subfolders ignored" in src.notes[0]


def test_missing_stems_on_both_sides(tmp_path, astronaut):
    gt = folder_of(tmp_path, "gt", astronaut, ["a", "b", "c", "d"])
    recon = folder_of(tmp_path, "recon", astronaut, ["b", "c", "d", "e", "f"])
    pairs = pair_images(recon, gt)
    assert pairs.stems == ("b", "c", "d")
    assert set(pairs.excluded) == {"a", "e", "f"}
    assert pairs.excluded["a"].startswith("missing reconstruction (not in --recon")
    assert pairs.excluded["e"].startswith("missing ground truth (not in --gt")
    assert pairs.reason_counts() == {"missing ground truth": 2, "missing reconstruction": 1}
    assert pairs.to_dict()["excluded_by_reason"] == pairs.reason_counts()


def test_different_sizes_are_noted(tmp_path, astronaut):
    gt = tmp_path / "gt"
    write(gt, "a.jpg", photo(astronaut, 0, size=(500, 375)))
    write(gt, "b.jpg", photo(astronaut, 1, size=(375, 500)))
    write(gt, "c.jpg", photo(astronaut, 2, size=(512, 512)))
    recon = folder_of(tmp_path, "recon", astronaut, ["a", "b", "c"], size=(512, 512))
    pairs = pair_images(recon, gt)
    assert [im.size for im in pairs.true] == [(500, 375), (375, 500), (512, 512)]
    assert [im.size for im in pairs.pred] == [(512, 512)] * 3
    (note,) = pairs.notes
    assert note.startswith("2 of 3 pairs differ in size")
    assert "reconstructions: 512×512 (3)" in note
    assert "500×375 (1)" in note and "375×500 (1)" in note
    assert "aspect ratio not kept" in note


def test_grayscale_and_rgba_are_converted_and_noted(tmp_path, astronaut):
    gt = folder_of(tmp_path, "gt", astronaut, ["a", "b", "c"])
    recon = tmp_path / "recon"
    gray = photo(astronaut, 0).convert("L")
    rgba = photo(astronaut, 1).convert("RGBA")
    rgba.putalpha(128)
    write(recon, "a.png", gray)
    write(recon, "b.png", rgba)
    write(recon, "c.png", photo(astronaut, 2))
    pairs = pair_images(recon, gt)
    assert pairs.stems == ("a", "b", "c")
    a, b = pixels(pairs.pred[0]), pixels(pairs.pred[1])
    assert a.shape == b.shape == (48, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(a[..., channel], pixels(gray))
    np.testing.assert_array_equal(b, pixels(photo(astronaut, 1)))  # alpha dropped
    assert "1 reconstruction was grayscale (L; gray copied to R, G and B), converted to RGB" in (
        pairs.notes
    )
    assert any(n.startswith("1 reconstruction was RGBA (alpha dropped") for n in pairs.notes)


def test_corrupt_files_are_excluded_with_path_and_error(tmp_path, astronaut):
    gt = folder_of(tmp_path, "gt", astronaut, ["a", "b", "c", "d"])
    recon = folder_of(tmp_path, "recon", astronaut, ["a", "d"])
    jpeg = write(recon, "b.jpg", photo(astronaut, 1, size=(256, 256)), quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])  # truncated download
    (recon / "c.png").write_text("this is not a PNG")
    pairs = pair_images(recon, gt)
    assert pairs.stems == ("a", "d")
    assert pairs.excluded["b"].startswith(f"unreadable reconstruction: {recon / 'b.jpg'} (")
    assert "truncated" in pairs.excluded["b"]
    assert pairs.excluded["c"].startswith(f"unreadable reconstruction: {recon / 'c.png'} (")
    assert pairs.reason_counts() == {"unreadable reconstruction": 2}


def test_each_file_is_decoded_once(tmp_path, astronaut, monkeypatch):
    gt = folder_of(tmp_path, "gt", astronaut, ["a", "b", "c"])
    recon = folder_of(tmp_path, "recon", astronaut, ["a", "b", "c", "z"], suffix=".jpg")
    calls: list[tuple[Path, object]] = []
    real = ev_images.decode_image

    def counting(path, min_side=512):
        calls.append((Path(path), min_side))
        return real(path, min_side=min_side)

    monkeypatch.setattr(ev_images, "decode_image", counting)
    pairs = pair_images(recon, gt)
    assert len(pairs) == 3
    assert sorted(p.name for p, _ in calls) == [
        "a.jpg",
        "a.png",
        "b.jpg",
        "b.png",
        "c.jpg",
        "c.png",
    ]
    assert {m for _, m in calls} == {None}  # full resolution


def test_duplicate_stems_are_ambiguous_not_a_crash(tmp_path, astronaut):
    gt = folder_of(tmp_path, "gt", astronaut, ["a", "b"])
    recon = folder_of(tmp_path, "recon", astronaut, ["a", "b"])
    write(recon, "a.jpg", photo(astronaut, 5))
    pairs = pair_images(recon, gt)
    assert pairs.stems == ("b",)
    assert pairs.excluded["a"] == f"ambiguous stem in --recon: a.jpg, a.png in {recon}"
    assert pairs.reason_counts() == {"ambiguous stem": 1}
    src = read_image_source(recon)
    assert src.stems == ("b",) and dict(src.ambiguous) == {"a": ("a.jpg", "a.png")}


# ---------------------------------------------------------------- blank reconstructions


def test_is_blank_rule(astronaut):
    assert is_blank(Image.new("RGB", (32, 32)))
    assert is_blank(Image.new("L", (32, 32), 128))
    near = np.full((16, 16, 3), 100, dtype=np.uint8)
    near[0, 0] = 102  # JPEG ripple of 2 levels
    assert is_blank(Image.fromarray(near))
    near[0, 0, 1] = 103  # 3 levels in one channel: not blank
    assert not is_blank(Image.fromarray(near))
    assert not is_blank(photo(astronaut, 0))
    dark = (np.asarray(photo(astronaut, 0)) // 40).astype(np.uint8)  # a very dark photo
    assert not is_blank(Image.fromarray(dark))


def test_blank_reconstruction_excluded_unless_kept(tmp_path, astronaut):
    gt = folder_of(tmp_path, "gt", astronaut, ["a", "b", "c"])
    recon = folder_of(tmp_path, "recon", astronaut, ["a", "c"])
    write(recon, "b.jpg", Image.new("RGB", (64, 48)))  # safety-filtered: all black

    pairs = pair_images(recon, gt)
    assert pairs.stems == ("a", "c") and pairs.blank == ("b",)
    assert pairs.excluded["b"].startswith("blank reconstruction")
    assert "--keep-blank" in pairs.excluded["b"]
    assert pairs.to_dict()["blank_evaluated"] is False

    kept = pair_images(recon, gt, keep_blank=True)
    assert kept.stems == ("a", "b", "c") and kept.blank == ("b",)
    assert kept.excluded == {}
    assert kept.to_dict()["blank_evaluated"] is True
    assert np.isnan(pixcorr(kept.true, kept.pred)[1])
    assert any("evaluated anyway (--keep-blank" in n for n in kept.notes)


# ---------------------------------------------------------------- .npy arrays


def test_npy_uint8_nhwc_with_order(tmp_path, astronaut):
    stems = ["n02", "n10", "n01"]
    images = np.stack([pixels(photo(astronaut, i)) for i in range(3)])
    npy = tmp_path / "recon.npy"
    np.save(npy, images)
    gt = tmp_path / "gt"
    for i, stem in enumerate(stems):
        write(gt, stem + ".png", photo(astronaut, i))

    pairs = pair_images(npy, gt, order=stems)

    assert pairs.stems == ("n01", "n02", "n10")
    for stem, true, pred in zip(pairs.stems, pairs.true, pairs.pred):
        np.testing.assert_array_equal(pixels(pred), images[stems.index(stem)])
        np.testing.assert_array_equal(pixels(pred), pixels(true))
    assert any("rows named by --order (3 stems)" in n for n in pairs.notes)
    src = read_image_source(npy, order=stems)
    assert src.kind == "npy" and src.stems == tuple(stems) and src.named
    assert isinstance(src.array, np.memmap)


def test_npy_float_nchw_takes_the_folder_order(tmp_path, astronaut):
    gt = folder_of(tmp_path, "gt", astronaut, ["img_1", "img_10", "img_2"], size=(40, 30))
    order = ["img_1", "img_10", "img_2"]  # sorted as strings
    hwc = np.stack([pixels(photo(astronaut, i, size=(40, 30))) for i in range(3)])
    npy = tmp_path / "recon.npy"
    np.save(npy, np.moveaxis(hwc, -1, 1).astype(np.float32) / 255.0)  # (3, 3, 30, 40)

    pairs = pair_images(npy, gt)

    assert pairs.stems == tuple(order)
    for true, pred in zip(pairs.true, pairs.pred):
        np.testing.assert_array_equal(pixels(pred), pixels(true))  # exact after rounding
    (assumed,) = [n for n in pairs.notes if "no --order" in n]
    assert "rows are assumed to follow the sorted stems of --gt folder" in assumed
    assert "pass --order FILE" in assumed
    assert "img_10 before img_2" in assumed  # string vs numeric order warned
    assert any("rounded to 8 bits" in n for n in pairs.notes)


def test_npy_grayscale_and_gt_side(tmp_path, astronaut):
    recon = folder_of(tmp_path, "recon", astronaut, ["a", "b"], size=(32, 32))
    gray = np.stack([pixels(photo(astronaut, i, size=(32, 32)).convert("L")) for i in range(2)])
    npy = tmp_path / "gt.npy"
    np.save(npy, gray)
    pairs = pair_images(recon, npy)
    assert pairs.stems == ("a", "b")
    assert pixels(pairs.true[0]).shape == (32, 32, 3)
    np.testing.assert_array_equal(pixels(pairs.true[1])[..., 2], gray[1])
    assert any(n.startswith("2 ground truths were grayscale") for n in pairs.notes)


def test_two_npy_arrays_pair_row_by_row(tmp_path, astronaut):
    images = np.stack([pixels(photo(astronaut, i)) for i in range(3)])
    np.save(tmp_path / "r.npy", images)
    np.save(tmp_path / "g.npy", images[::-1])
    pairs = pair_images(tmp_path / "r.npy", tmp_path / "g.npy")
    assert pairs.stems == ("0000", "0001", "0002")
    np.testing.assert_array_equal(pixels(pairs.true[0]), images[2])
    assert any("paired row by row" in n for n in pairs.notes)
    np.save(tmp_path / "short.npy", images[:2])
    with pytest.raises(ConfigError, match="--order FILE"):
        pair_images(tmp_path / "r.npy", tmp_path / "short.npy")


def test_npy_count_mismatch_needs_order(tmp_path, astronaut):
    gt = folder_of(tmp_path, "gt", astronaut, ["a", "b", "c", "d"])
    npy = tmp_path / "recon.npy"
    np.save(npy, np.zeros((3, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ConfigError, match=r"3 images without --order.*4 stems.*--order FILE"):
        pair_images(npy, gt)
    with pytest.raises(ConfigError, match="--order lists 2 stems but --recon"):
        pair_images(npy, gt, order=["a", "b"])
    with pytest.raises(ConfigError, match="more than once"):
        pair_images(npy, gt, order=["a", "b", "a"])
    with pytest.raises(ConfigError, match="both folders"):
        pair_images(gt, gt, order=["a"])


def test_npy_float_outside_unit_range_says_how_to_convert(tmp_path, astronaut):
    gt = folder_of(tmp_path, "gt", astronaut, ["a", "b"])
    npy = tmp_path / "recon.npy"
    np.save(npy, np.linspace(-1, 1, 2 * 48 * 64 * 3, dtype=np.float32).reshape(2, 48, 64, 3))
    with pytest.raises(DataFormatError, match=r"\[-1, 1\].*\(x \+ 1\) / 2"):
        pair_images(npy, gt)
    np.save(npy, np.full((2, 48, 64, 3), 200.0))
    with pytest.raises(DataFormatError, match="0-255"):
        pair_images(npy, gt)
    bad = np.full((2, 48, 64, 3), 0.5)
    bad[1, 0, 0, 0] = np.nan
    np.save(npy, bad)
    with pytest.raises(DataFormatError, match="NaN"):
        pair_images(npy, gt)


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((2, 8, 8, 4), dtype=np.uint8), r"expected \(n, H, W, 3\)"),
        (np.zeros((8, 8), dtype=np.uint8), "expected"),
        (np.zeros((0, 8, 8, 3), dtype=np.uint8), "holds no image"),
        (np.zeros((2, 8, 8, 3), dtype=np.int64), "dtype int64"),
        (np.array([{"a": 1}, None], dtype=object), "not as objects"),
    ],
)
def test_unsupported_npy_is_an_error(tmp_path, array, match):
    npy = tmp_path / "x.npy"
    np.save(npy, array, allow_pickle=True)
    with pytest.raises(DataFormatError, match=match):
        read_image_source(npy, label="--recon")


# ---------------------------------------------------------------- paths and order files


def test_bad_paths(tmp_path, astronaut):
    with pytest.raises(MissingDataFileError, match=r"--recon .* does not exist"):
        pair_images(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "sub").mkdir()
    with pytest.raises(DataFormatError, match=r"holds no image file.*not searched recursively"):
        read_image_source(tmp_path / "empty", label="--gt")
    (tmp_path / "x.npz").write_bytes(b"PK")
    with pytest.raises(DataFormatError, match=r"neither a folder nor a \.npy"):
        read_image_source(tmp_path / "x.npz")
    folder = folder_of(tmp_path, "f", astronaut, ["a"])
    with pytest.raises(ConfigError, match="--order only names the rows"):
        read_image_source(folder, order=["a"])


def test_read_order_file(tmp_path):
    path = tmp_path / "order.txt"
    path.write_text("n01\n  n02.JPEG \n\nn03\n")
    assert read_order_file(path) == ("n01", "n02", "n03")
    path.write_text("a\nb\na\n")
    with pytest.raises(ConfigError, match="more than once"):
        read_order_file(path)
    path.write_text("\n")
    with pytest.raises(ConfigError, match="no stem"):
        read_order_file(path)
    with pytest.raises(MissingDataFileError):
        read_order_file(tmp_path / "missing.txt")


# ---------------------------------------------------------------- nothing left


def test_nothing_valid_lists_the_reasons(tmp_path, astronaut):
    gt = folder_of(tmp_path, "gt", astronaut, ["a", "b", "c", "d"])
    recon = tmp_path / "recon"
    write(recon, "a.png", Image.new("RGB", (8, 8)))  # blank
    (recon / "b.png").write_text("broken")  # unreadable
    write(recon, "x.png", photo(astronaut, 0))  # no ground truth
    with pytest.raises(DataFormatError) as info:
        pair_images(recon, gt)
    msg = str(info.value)
    assert msg.startswith(f"No image pair left to evaluate between --recon {recon}")
    assert "2 missing reconstruction (e.g. c, d)" in msg
    assert "1 blank reconstruction (e.g. a)" in msg
    assert "1 unreadable reconstruction (e.g. b)" in msg
    assert "1 missing ground truth (e.g. x)" in msg
    assert "--keep-blank" in msg and "intact copies" in msg


def test_no_shared_stem_explains_naming(tmp_path, astronaut):
    gt = folder_of(tmp_path, "gt", astronaut, ["n01_1", "n01_2"])
    recon = folder_of(tmp_path, "recon", astronaut, ["rec_0000", "rec_0001"])
    with pytest.raises(DataFormatError, match=r"share no stem.*'rec_0000'.*'n01_1'.*--order FILE"):
        pair_images(recon, gt)
