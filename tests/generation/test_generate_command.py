"""`fmri2image generate` end to end with a tiny Stable Diffusion: labels from a decode
run, one image per test image, img2img from the images of an earlier run (--init)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))

from _planted import PoolEncoder, write_planted_god

from fmri2image.cli.main import main
from fmri2image.pipeline import DecodingConfig, run_decoding


@pytest.fixture(scope="module")
def decode_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("decode")
    god = write_planted_god(tmp / "god", n_train_categories=5, n_test_categories=3, n_voxels=20)
    enc = PoolEncoder()
    run_decoding(god.root, tmp / "out", DecodingConfig(encoders=(enc.name,), cv=3),
                 encoders={enc.name: enc}, progress=False)  # fmt: skip
    return tmp / "out"


def test_label_prompts_then_img2img_from_the_first_run(
    decode_run, tiny_sd_dir, tmp_path, torch_one_thread
):
    first, second = tmp_path / "t2i", tmp_path / "i2i"
    base = ["-q", "generate", "--from", str(decode_run), "--generator", f"diffusers:{tiny_sd_dir}",
            "--option", "steps=2", "--option", "safety_checker=false", "--option", "size=32"]  # fmt: skip
    assert main([*base, "--out", str(first)]) == 0
    summary = json.loads((decode_run / "summary.json").read_text())
    stems = summary["test_images"]
    import pyarrow.parquet as pq

    sem = pq.read_table(
        decode_run / "pool48" / "retrieval" / "prototypes" / "semantic_per_query.parquet"
    )
    top1 = dict(zip(sem.column("query").to_pylist(), sem.column("top1_wnid").to_pylist()))
    for stem in stems:
        rec = json.loads((first / "pool48" / f"{stem}.json").read_text())
        assert rec["wnid"] == top1[stem]  # the label decode retrieved for this image
        assert rec["conditioning"] == f"a photo of a {rec['name']}"
        assert (first / "pool48" / f"{stem}.png").is_file()
    assert (
        main([*base, "--init", str(first), "--option", "strength=0.5", "--out", str(second)]) == 0
    )
    meta = json.loads((second / "generation.json").read_text())
    assert meta["config"]["init"] == str(first)
    for stem in stems:
        assert (second / "pool48" / f"{stem}.png").is_file()
        assert (second / "pool48" / f"{stem}.json").read_text() != (
            first / "pool48" / f"{stem}.json"
        ).read_text()


def test_init_invert_feeds_each_inversion_to_img2img(
    decode_run, tiny_sd_dir, tmp_path, torch_one_thread
):
    """--init invert: the prediction's feature inversion through its own encoder becomes
    the initial image of text-to-image (the low-level pathway)."""
    from fmri2image.features import ENCODERS, register_encoder

    register_encoder("pool48", lambda **kw: PoolEncoder(), overwrite=True)
    try:
        out = tmp_path / "gen"
        rc = main(["-q", "generate", "--from", str(decode_run), "--generator", f"diffusers:{tiny_sd_dir}",
                   "--option", "steps=2", "--option", "safety_checker=false", "--option", "size=32",
                   "--init", "invert", "--out", str(out)])  # fmt: skip
        assert rc == 0
    finally:
        if "pool48" in ENCODERS:
            ENCODERS.unregister("pool48")
    stems = json.loads((decode_run / "summary.json").read_text())["test_images"]
    for stem in stems:
        init = json.loads((out / "pool48" / "init" / f"{stem}.json").read_text())
        assert init["conditioning"].startswith("feature inversion through pool48")
        rec = json.loads((out / "pool48" / f"{stem}.json").read_text())
        assert rec["extra"]["mode"] == "img2img"
