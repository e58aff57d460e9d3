"""`fmri2image generate` end to end with a tiny Stable Diffusion: labels from a decode
run, one image per test image, img2img from the pictures of an earlier run (--init DIR)
and from the feature inversion of the same prediction (--init invert)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))

from _planted import PoolEncoder, write_planted_god

from fmri2image.cli.main import main
from fmri2image.features import ENCODERS, register_encoder


@pytest.fixture(scope="module")
def decode_run(tmp_path_factory):
    register_encoder("pool48", lambda **kw: PoolEncoder(), overwrite=True)
    tmp = tmp_path_factory.mktemp("decode")
    god = write_planted_god(tmp / "god", n_train_categories=5, n_test_categories=3, n_voxels=20)
    assert main(["-q", "decode", "--data", str(god.root), "--model", "pool48", "--cv", "3",
                 "--out", str(tmp / "out")]) == 0  # fmt: skip
    yield tmp / "out"
    ENCODERS.unregister("pool48")


def pictures(out: Path) -> Path:
    """The folder of the predicted pictures of the one diffusers generator of a run."""
    (folder,) = (out / "images" / "s1-ROI_VC" / "pool48" / "ridge").glob("diffusers_*/predicted")
    return folder


def generation_stage(out: Path, generator: str) -> Path:
    stages = json.loads((out / "stages.json").read_text())
    (s,) = [s for s in stages["stages"] if s["name"].startswith(f"generation/pool48/{generator}")]
    return Path(stages["cache"]) / s["folder"]


def test_label_prompts_then_img2img_from_the_first_run(
    decode_run, tiny_sd_dir, tmp_path, torch_one_thread
):
    first, second = tmp_path / "t2i", tmp_path / "i2i"
    base = ["-q", "generate", "--from", str(decode_run), "--generator", f"diffusers:{tiny_sd_dir}",
            "--option", "steps=2", "--option", "safety_checker=false", "--option", "size=32",
            "--set", 'evaluation.metrics=["pixcorr", "ssim"]']  # fmt: skip
    assert main([*base, "--out", str(first)]) == 0
    (block,) = json.loads((decode_run / "summary.json").read_text())["blocks"]
    stems = block["test_images"]
    import pyarrow.parquet as pq

    sem = pq.read_table(
        decode_run / "maps" / "s1-ROI_VC" / "pool48" / "ridge" / "retrieval" / "prototypes"
        / "semantic_per_query.parquet"
    )  # fmt: skip
    top1 = dict(zip(sem.column("query").to_pylist(), sem.column("top1_wnid").to_pylist()))
    for stem in stems:
        rec = json.loads((pictures(first) / f"{stem}.json").read_text())
        assert rec["wnid"] == top1[stem]  # the label decode retrieved for this image
        assert rec["label"] == top1[stem]  # what the report captions the picture with
        assert rec["conditioning"] == f"a photo of a {rec['name']}"
        assert (pictures(first) / f"{stem}.png").is_file()
    assert main([*base, "--init", str(pictures(first)), "--option", "strength=0.5",
                 "--out", str(second)]) == 0  # fmt: skip
    assert f'init = "{pictures(first)}"' in (second / "config.toml").read_text()
    for stem in stems:
        assert (pictures(second) / f"{stem}.png").is_file()
        rec = json.loads((pictures(second) / f"{stem}.json").read_text())
        assert rec["extra"]["mode"] == "img2img"
        assert (pictures(second) / f"{stem}.json").read_text() != (
            pictures(first) / f"{stem}.json"
        ).read_text()


def test_init_invert_feeds_each_inversion_to_img2img(
    decode_run, tiny_sd_dir, tmp_path, torch_one_thread
):
    """--init invert: the prediction's feature inversion through its own encoder becomes
    the initial image of text-to-image (the low-level pathway)."""
    out = tmp_path / "gen"
    rc = main(["-q", "generate", "--from", str(decode_run), "--generator", f"diffusers:{tiny_sd_dir}",
               "--option", "steps=2", "--option", "safety_checker=false", "--option", "size=32",
               "--set", 'evaluation.metrics=["ssim"]', "--init", "invert", "--out", str(out)])  # fmt: skip
    assert rc == 0
    (block,) = json.loads((decode_run / "summary.json").read_text())["blocks"]
    inversions = generation_stage(out, "invert")
    for stem in block["test_images"]:
        init = json.loads((inversions / f"{stem}.json").read_text())
        assert init["conditioning"].startswith("feature inversion through pool48")
        rec = json.loads((pictures(out) / f"{stem}.json").read_text())
        assert rec["extra"]["mode"] == "img2img"
