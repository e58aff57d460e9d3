"""Label metrics in `evaluate`: label tables (CSV, a decode run's parquet), hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.evaluation import evaluate_images, semantic_metrics
from fmri2image.evaluation.evaluate import resolve_metrics
from fmri2image.evaluation.labels import read_label_table
from fmri2image.evaluation.semantic import label_scores

TABBY, TIGER_CAT, PERSIAN, GOLDFISH = "n02123045", "n02123159", "n02123394", "n01443537"


def write_csv(path, rows):
    path.write_text("image,true_wnid,pred_wnid\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    return path


def test_label_scores_by_hand():
    s = label_scores(
        [TABBY, TABBY, TABBY, GOLDFISH],
        [[TABBY, PERSIAN], [PERSIAN, TABBY], [PERSIAN] * 1, GOLDFISH],
        wordnet=False,
    )
    np.testing.assert_array_equal(s["rank"], [1, 2, 0, 1])
    np.testing.assert_array_equal(s["hit1"], [True, False, False, True])
    np.testing.assert_array_equal(s["hit5"], [True, True, False, True])
    assert np.isnan(s["wup"]).all()  # WordNet skipped: NaN, and evaluate then skips the column
    with pytest.raises(ConfigError, match="same order"):
        label_scores([TABBY], [], wordnet=False)


def test_read_csv_table(tmp_path):
    t = read_label_table(write_csv(tmp_path / "l.csv", [("a", TABBY, f"{PERSIAN};{TABBY}"),
                                                        ("b", GOLDFISH, GOLDFISH)]))  # fmt: skip
    assert t.true == {"a": TABBY, "b": GOLDFISH} and t.top1 == {"a": PERSIAN, "b": GOLDFISH}
    assert t.rank == {"a": 2, "b": 1} and t.ranked
    with pytest.raises(DataFormatError, match="not a WordNet id"):
        read_label_table(write_csv(tmp_path / "bad.csv", [("a", "cat", TABBY)]))
    with pytest.raises(DataFormatError, match="listed twice"):
        read_label_table(write_csv(tmp_path / "dup.csv", [("a", TABBY, TABBY)] * 2))
    (tmp_path / "cols.csv").write_text("image,label\na,n02123045\n")
    with pytest.raises(DataFormatError, match="true_wnid and pred_wnid"):
        read_label_table(tmp_path / "cols.csv")
    (tmp_path / "l.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"\.csv"):
        read_label_table(tmp_path / "l.txt")


def test_decode_runs_parquet_is_a_label_table(tmp_path):
    from fmri2image.retrieval import RetrievalResult

    ranked = ((TABBY, PERSIAN), (PERSIAN, TIGER_CAT))
    result = RetrievalResult(
        indices=np.zeros((2, 2), dtype=np.int64),
        similarities=np.zeros((2, 2), dtype=np.float32),
        neighbor_labels=np.array([list(r) for r in ranked]),
        ranked_labels=ranked,
        ranked_scores=((1.0, 0.5), (1.0, 0.5)),
        vote="nearest",
        metric="cosine",
        database_classes=(TABBY, PERSIAN, TIGER_CAT),
    )
    sem = semantic_metrics(result, [TABBY, TIGER_CAT], wordnet=False, query_ids=["a", "b"])
    table_path, _ = sem.save(tmp_path)
    t = read_label_table(table_path)
    assert t.true == {"a": TABBY, "b": TIGER_CAT} and t.rank == {"a": 1, "b": 2} and t.ranked


@pytest.mark.wordnet
def test_evaluate_with_labels(photo_pairs, tmp_path):
    from fmri2image.wordnet import WordNet

    stems = list(photo_pairs.stems)
    rows = [(s, TABBY, f"{TABBY} {PERSIAN}") for s in stems[:3]]
    rows += [(s, TABBY, f"{TIGER_CAT} {TABBY}") for s in stems[3:6]]
    rows += [(stems[6], GOLDFISH, PERSIAN)]  # stems[7] has no label
    table = read_label_table(write_csv(tmp_path / "labels.csv", rows))
    ev = evaluate_images(photo_pairs, ["ssim", "hit1", "hit5", "wup"], labels=table,
                         n_bootstrap=50, progress=False)  # fmt: skip
    assert list(ev.scores) == ["ssim", "hit1", "hit5", "wup"]
    np.testing.assert_array_equal(ev.scores["hit1"][:7], [1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(ev.scores["hit5"][:7], [1, 1, 1, 1, 1, 1, 0])
    assert np.isnan(ev.scores["hit1"][7]) and ev.summary["hit1"].n == 7
    wn = WordNet.load()
    assert ev.scores["wup"][3] == pytest.approx(wn.wup_similarity(TIGER_CAT, TABBY))
    assert ev.scores["wup"][6] == pytest.approx(wn.wup_similarity(PERSIAN, GOLDFISH))
    assert ev.summary["hit1"].unpaired is not None and ev.summary["hit1"].chance is None
    # Default metrics with labels: image metrics, then every label metric.
    chosen, _ = resolve_metrics(None, labels=True)
    assert [m.name for m in chosen][-4:] == ["hit1", "hit5", "wup", "path"]


def test_label_metrics_need_labels(photo_pairs, tmp_path):
    with pytest.raises(ConfigError, match="--labels FILE"):
        resolve_metrics(["hit1"])
    single = read_label_table(write_csv(tmp_path / "s.csv", [(photo_pairs.stems[0], TABBY, TABBY)]))
    ev = evaluate_images(photo_pairs, ["hit1", "hit5"], labels=single, progress=False)
    assert "rank one label each" in ev.skipped["hit5"] and list(ev.scores) == ["hit1"]
    other = read_label_table(write_csv(tmp_path / "o.csv", [("not-a-stem", TABBY, TABBY)]))
    ev = evaluate_images(photo_pairs, ["pixcorr", "hit1"], labels=other, progress=False)
    assert "no evaluated image" in ev.skipped["hit1"]
