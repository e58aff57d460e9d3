"""Finding damaged image files before any work: every one, 1-based, in one message."""

from __future__ import annotations

import pytest
from PIL import Image

from fmri2image.data.images import check_images_readable, decode_image, find_unreadable_images
from fmri2image.errors import DataFormatError


def _jpegs(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"n01443537_{i + 1}.JPEG"
        Image.new("RGB", (64, 48), (10 * i, 100, 200)).save(p, quality=90)
        paths.append(p)
    return paths


def test_every_unreadable_file_is_listed_with_its_1_based_position(tmp_path):
    paths = _jpegs(tmp_path, 6)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])  # truncated JPEG
    paths[4].write_text("not an image")
    missing = tmp_path / "gone.JPEG"
    bad = find_unreadable_images([*paths, missing])
    assert [b.position for b in bad] == [2, 5, 7]
    assert "truncated" in bad[0].reason.lower() and bad[2].reason == "missing"
    with pytest.raises(DataFormatError) as err:
        check_images_readable([*paths, None], what="training images", position_name="row")
    msg = str(err.value)
    assert msg.startswith("3 of 7 training images cannot be read (row, 1-based")
    assert f"2: {paths[1]}" in msg and f"5: {paths[4]}" in msg and "7: None (missing)" in msg
    assert "\n" not in msg


def test_intact_files_pass_and_decode_to_rgb(tmp_path):
    paths = _jpegs(tmp_path, 3)
    assert find_unreadable_images(paths) == []
    check_images_readable(paths)
    img = decode_image(paths[0])
    assert img.mode == "RGB" and img.size == (64, 48)
