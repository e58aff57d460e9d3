"""End-to-end decoding on GOD-layout data with a planted brain and tiny encoders.

The acceptance checks of the CV default: on GOD-like data (test categories unseen
in training) the default scheme, and on data whose test images come from training
categories ``--cv-groups none``, reach the held-out pairwise identification of a
scikit-learn ``RidgeCV`` reference fitted in the test on the same data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _planted import PoolEncoder, write_planted_god

from fmri2image.pipeline.config import (
    DataSection,
    GenerationSection,
    MappingSection,
    RetrievalSection,
    RunConfig,
)
from fmri2image.pipeline.experiment import run_experiment

PLANTED = dict(
    n_train_categories=30, n_test_categories=20, n_test_repeats=2, n_voxels=200, snr=0.05
)


def run_decoding(root, out, encoder, *, databases=("prototypes",), **mapping):
    """`decode`: the engine without generators, with a built encoder."""
    config = RunConfig(
        models=(encoder.name,),
        out=str(out),
        data=DataSection(path=str(root)),
        mapping=MappingSection(**mapping),
        retrieval=RetrievalSection(databases=tuple(databases)),
        generation=GenerationSection(generators=()),
    )
    return run_experiment(config, encoders={encoder.name: encoder}, progress=False)


def _only(result):
    """The one decoding (subject 1, ROI_VC) of a run."""
    (decoding,) = result.decodings.values()
    return decoding


def _ridgecv_reference(root, encoder):
    """Pairwise identification of StandardScaler + RidgeCV(alpha_per_target) on the same data."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fmri2image.data import load_god_subject, load_stimulus_set, make_splits
    from fmri2image.evaluation import prediction_metrics
    from fmri2image.features import embed_images
    from fmri2image.mapping import DEFAULT_ALPHAS

    splits = make_splits(load_god_subject(root, 1))
    train, test = load_stimulus_set(root, "training"), load_stimulus_set(root, "test")
    Y_train = embed_images(
        encoder, [train.paths[i] for i in train.index_of(splits.train_ids)], progress=False
    )
    Y_test = embed_images(
        encoder, [test.paths[i] for i in test.index_of(splits.test_ids)], progress=False
    )
    ref = make_pipeline(StandardScaler(), RidgeCV(alphas=DEFAULT_ALPHAS, alpha_per_target=True))
    ref.fit(splits.X_train, Y_train)
    m = prediction_metrics(Y_test, ref.predict(splits.X_test), Y_train.mean(0))
    return m.summary["pairwise_identification"].value


@pytest.mark.parametrize(
    "test_from_training_categories, cv_groups",
    [(False, MappingSection().cv_groups), (True, "none")],
    ids=["unseen-categories-default", "seen-categories-cv-groups-none"],
)
def test_decoding_matches_a_ridgecv_reference(tmp_path, test_from_training_categories, cv_groups):
    root = tmp_path / "god"
    write_planted_god(root, test_from_training_categories=test_from_training_categories, **PLANTED)
    enc = PoolEncoder()
    result = run_decoding(root, tmp_path / "out", enc, cv_groups=cv_groups)
    (row,) = json.loads((result.out_dir / "summary.json").read_text())["encoders"]
    reference = _ridgecv_reference(root, enc)
    assert reference > 0.7  # the planted signal is there to be found
    assert row["pairwise_id"] >= reference - 0.05, (row["pairwise_id"], reference)
    assert row["r2"] > row["r2_baseline"]


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """One decode of planted data against the prototypes and an image database."""
    tmp = tmp_path_factory.mktemp("planted")
    god = write_planted_god(tmp / "god", n_train_categories=20, n_test_categories=8, snr=0.3)
    db = god.write_database(tmp / "imagenet", per_category=3)
    enc = PoolEncoder()
    result = run_decoding(god.root, tmp / "out", enc, databases=("prototypes", str(db)),
                          cv_groups="none")  # fmt: skip
    return god, result


def test_image_database_beside_prototypes(planted_run):
    from fmri2image.pipeline.tables import decoding_tables, labels_table

    god, result = planted_run
    decoding = _only(result)
    (enc,) = decoding.models
    assert [r.database for r in enc.retrievals] == ["prototypes", "imagenet"]
    protos, images = enc.retrievals
    assert protos.summary["n_database_classes"] == 1000 and protos.k == 5
    # every test category is in the image database, and the decoded embeddings find it
    assert images.summary["coverage"] == 1.0 and images.k == 50
    assert images.summary["n_database_classes"] == len(god.palettes)
    assert images.summary["hit5"] > images.summary["hit5_baseline"]
    assert images.summary["hit5"] > images.summary["hit5_chance"]
    text = decoding_tables(decoding)
    for needle in ("[mean, chance]", "cover", "imagenet (images)", "prototypes (1k heads)"):
        assert needle in text
    labels = labels_table(decoding)
    assert all(stem in labels for stem in decoding.test_stems)
    assert text in result.format() and labels in result.format()


def test_saved_tables_join_on_the_stimulus_stem(planted_run):
    import pyarrow.parquet as pq

    _, result = planted_run
    enc_dir = result.out_dir / "maps" / "s1-ROI_VC" / "pool48" / "ridge"
    per_image = pq.read_table(enc_dir / "prediction" / "per_image.parquet").to_pydict()
    semantic = pq.read_table(enc_dir / "retrieval" / "imagenet" / "semantic_per_query.parquet")
    neighbours = pq.read_table(enc_dir / "retrieval" / "imagenet" / "neighbours.parquet")
    stems = list(_only(result).test_stems)
    assert semantic.column("query").to_pylist() == stems
    assert neighbours.column("query").to_pylist() == stems
    id_col = next(k for k in per_image if k in ("image_id", "image", "query"))
    assert per_image[id_col] == stems


def test_summary_is_strict_json_and_files_follow_the_umask(planted_run):
    _, result = planted_run
    text = (result.out_dir / "summary.json").read_text()
    assert "NaN" not in text
    summary = json.loads(text)
    (row,) = summary["encoders"]
    assert {r["database"] for r in row["retrieval"]} == {"prototypes", "imagenet"}
    for r in row["retrieval"]:
        for key in ("hit1_baseline", "hit5_baseline", "wup_baseline", "hit5_chance"):
            assert key in r
    import os

    umask = os.umask(0)
    os.umask(umask)
    for path in result.out_dir.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_text_prototypes_with_a_tiny_clip_through_the_cli(tmp_path, capsys):
    """``hf:<folder>`` CLIP, labels from text prompts over ImageNet-1k, via `decode`."""
    pytest.importorskip("transformers")
    from _tiny_models import save_tiny_clip

    from fmri2image.cli.main import main

    clip_dir = save_tiny_clip(tmp_path / "tiny-clip")
    god = write_planted_god(
        tmp_path / "god", n_train_categories=8, n_test_categories=4, n_voxels=40
    )
    out = tmp_path / "out"
    args = ["-q", "decode", "--god", str(god.root), "--subject", "1", "--model", f"hf:{clip_dir}",
            "--database", "text-prototypes", "--cv-groups", "none", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    (row,) = summary["encoders"]
    (ret,) = row["retrieval"]
    assert ret["database"] == "text-prototypes-1k" and ret["n_database_classes"] == 1000
    assert 0.0 <= ret["hit5"] <= 1.0 and ret["hit5_chance"] == pytest.approx(5 / 1000)
    printed = capsys.readouterr().out
    assert "text-prototypes (1k)" in printed
    # The prompt matrix is a stage of its own, computed once per encoder and label set:
    # another mapping (another subject, ROI or --cv) reuses it.
    assert len(list((out / "cache").glob("prototypes_*text-1k/*/prototypes.safetensors"))) == 1
    assert main([*args, "--cv", "3", "--out", str(tmp_path / "out2"), "--cache",
                 str(out / "cache")]) == 0  # fmt: skip
    stages = json.loads((tmp_path / "out2" / "stages.json").read_text())["stages"]
    reused = {s["name"].split("/")[0]: s["reused"] for s in stages}
    assert reused["prototypes"] and reused["features"] and not reused["mapping"]


def test_rerun_reuses_stimulus_features(tmp_path):
    god = write_planted_god(
        tmp_path / "god", n_train_categories=6, n_test_categories=3, n_voxels=30
    )
    enc = PoolEncoder()
    first = run_decoding(god.root, tmp_path / "out", enc, cv_groups="none", cv=3)
    shard = next((tmp_path / "out" / "cache").glob("features_*/*/train/*/shard-*.npy"))
    before = shard.stat().st_mtime_ns
    second = run_decoding(god.root, tmp_path / "out", enc, cv_groups="none", cv=3)
    assert shard.stat().st_mtime_ns == before
    assert second.computed == []

    def pairwise(result):
        return _only(result).models[0].metrics["pairwise_identification"]["value"]

    assert pairwise(first) == pairwise(second)
    assert np.isfinite(_only(second).models[0].metrics["r2_variance_weighted"]["value"])
