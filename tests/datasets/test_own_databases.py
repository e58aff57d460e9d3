"""Retrieval into a dataset's own training stimuli (``--database stimuli``) and into
the text tower's embeddings of their labels (``--database captions``): what NSD's
COCO captions and THINGS' concepts are retrieved from; never a test image."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fmri2image.data.fixtures import fixture_pictures, planted_response

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "features"))  # _tiny_models


@pytest.fixture(scope="module")
def nsd_same_categories(tmp_path_factory):
    """An NSD fixture whose test images are other images of the training categories (so a
    caption, "a photo of category K", can be retrieved right), and a planted brain."""
    from fmri2image.data.nsd import write_nsd_fixture

    pics = fixture_pictures(8, 8, seed=0)
    rows = np.arange(len(pics))
    train, test = pics.take(rows[rows % 8 < 6]), pics.take(rows[rows % 8 >= 6])
    root = tmp_path_factory.mktemp("nsd-own") / "nsd"
    write_nsd_fixture(root, train=train, test=test, n_voxels=90,
                      respond=planted_response(90, seed=2, noise=0.5))  # fmt: skip
    return root


def _decode(cli, root, out, model, *databases):
    rc, stdout, err = cli("decode", "--dataset", "nsd", "--data", root, "--model", model,
                          "--set", "data.options={ sessions = 2 }", "--cv", "3",
                          "--database", *databases, "--out", out)  # fmt: skip
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    (row,) = summary["encoders"]
    return {r["database"]: r for r in row["retrieval"]}, summary, stdout


def test_stimuli_database_retrieves_training_captions(nsd_same_categories, cli, pool48, tmp_path):
    out = tmp_path / "out"
    found, summary, stdout = _decode(cli, nsd_same_categories, out, pool48, "stimuli")
    ret = found["stimuli"]
    (block,) = summary["blocks"]
    assert set(block["true_labels"]) <= {f"a photo of category {k}" for k in range(8)}
    # 48 training pictures of 8 categories; the planted brain finds the category's
    # caption far above chance (labels are text: a hit is the same caption).
    assert ret["n_database_classes"] == 8 and ret["hit1"] > 0.3 > 2 / 8  # 7+ of 16 right
    assert ret["hit1"] > ret["hit1_baseline"]
    assert "stimuli (the training images)" in stdout
    # The database is the features stage itself: no stage of its own, no test image in it.
    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert not [s for s in stages if s["name"].startswith(("database/", "captions/"))]
    (neigh,) = (out / "maps").rglob("retrieval/stimuli/neighbours.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(neigh)
    items = {i for row in table.column("neighbor_items").to_pylist() for i in row}
    assert len(items) > 10 and not (items & set(block["test_images"]))


def test_captions_database_embeds_the_distinct_labels(nsd_same_categories, cli, tmp_path):
    pytest.importorskip("transformers")
    from _tiny_models import save_tiny_clip

    clip = f"hf:{save_tiny_clip(tmp_path / 'tiny-clip')}"
    out = tmp_path / "out"
    found, _, _ = _decode(cli, nsd_same_categories, out, clip, "captions")
    ret = found["captions"]
    assert ret["n_database_classes"] == 8 and 0.0 <= ret["hit1"] <= 1.0
    (folder,) = (out / "cache").glob("captions_*/*")
    meta = json.loads((folder / "prototypes.json").read_text())
    assert meta["items"] == meta["labels"] and len(meta["labels"]) == 8  # the captions as prompts


def test_captions_need_a_text_tower(nsd_same_categories, cli, pool48, tmp_path):
    rc, _, err = cli("decode", "--dataset", "nsd", "--data", nsd_same_categories, "--model",
                     pool48, "--set", "data.options={ sessions = 2 }", "--database",
                     "captions", "--out", tmp_path / "out")  # fmt: skip
    assert rc == 2 and "text tower" in err and not (tmp_path / "out").exists()
