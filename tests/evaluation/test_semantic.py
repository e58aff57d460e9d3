"""Semantic metrics on hand-made retrieval results (hit@k, coverage, WordNet)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from _wordnet_fixture import write_mini_wordnet
from fmri2image.errors import ConfigError
from fmri2image.evaluation import SemanticMetrics, semantic_metrics
from fmri2image.retrieval import RetrievalResult
from fmri2image.wordnet import WordNet


def _result(ranked, database_classes):
    n = len(ranked)
    k = max(len(r) for r in ranked)
    labels = np.array([list(r) + [""] * (k - len(r)) for r in ranked])
    return RetrievalResult(
        indices=np.zeros((n, k), dtype=np.int64),
        similarities=np.zeros((n, k), dtype=np.float32),
        neighbor_labels=labels,
        ranked_labels=tuple(tuple(r) for r in ranked),
        ranked_scores=tuple(tuple(1.0 for _ in r) for r in ranked),
        vote="nearest",
        metric="cosine",
        database_classes=tuple(database_classes),
    )


DB = [f"c{i}" for i in range(10)]


def test_hits_coverage_and_chance_by_hand():
    ranked = [
        ["c1", "c2", "c3", "c4", "c5", "c6"],  # true c1: rank 1
        ["c2", "c3", "c4", "c5", "c1"],  # true c1: rank 5
        ["c2", "c3", "c4", "c5", "c6", "c1"],  # true c1: rank 6 -> no hit@5
        ["c7", "c8"],  # true x9, absent from the database
    ]
    m = semantic_metrics(_result(ranked, DB), ["c1", "c1", "c1", "x9"], wordnet=False)
    q = m.per_query
    np.testing.assert_array_equal(q["rank"], [1, 5, 6, 0])
    np.testing.assert_array_equal(q["hit1"], [True, False, False, False])
    np.testing.assert_array_equal(q["hit5"], [True, True, False, False])
    np.testing.assert_array_equal(q["covered"], [True, True, True, False])
    s = m.summary
    assert s["hit1"] == pytest.approx(1 / 4) and s["hit5"] == pytest.approx(2 / 4)
    assert s["hit1_chance"] == pytest.approx(1 / 10) and s["hit5_chance"] == pytest.approx(5 / 10)
    assert (s["n_categories"], s["n_covered_categories"]) == (2, 1)
    assert s["coverage"] == pytest.approx(0.5) and s["missing_categories"] == ["x9"]
    assert s["n_covered_queries"] == 3 and s["hit_ceiling"] == pytest.approx(3 / 4)
    assert s["hit1_covered"] == pytest.approx(1 / 3) and s["hit5_covered"] == pytest.approx(2 / 3)
    assert s["n_database_classes"] == 10 and s["mean_n_ranked"] == pytest.approx(19 / 4)
    assert math.isnan(s["wup"]) and s["wordnet"] is None
    assert s["higher_is_better"]["hit1"] is True


def test_database_wnids_override_and_small_database_chance():
    m = semantic_metrics(
        _result([["a"], ["b"]], ["a", "b"]),
        ["a", "z"],
        database_wnids=["a", "a", "b"],
        wordnet=False,
    )
    assert m["n_database_classes"] == 2 and m["hit5_chance"] == 1.0  # min(5, 2) / 2
    assert m["missing_categories"] == ["z"]


def test_length_mismatch_raises():
    with pytest.raises(ConfigError, match="one true label per query"):
        semantic_metrics(_result([["a"]], ["a"]), ["a", "b"], wordnet=False)


def test_wordnet_similarity_and_chance_on_mini_wordnet(tmp_path):
    ids = write_mini_wordnet(tmp_path)
    wn = WordNet(tmp_path)
    dog, cat, car = ids["dog"], ids["cat"], ids["car"]
    res = _result([[cat], [dog], [car]], [dog, cat, car])
    m = semantic_metrics(res, [dog, dog, dog], wordnet=wn)
    # dog vs cat: LCS animal (depth 2): 2*3 / (4 + 4); dog vs car: LCS object (depth 1): 2*2 / (4 + 4).
    np.testing.assert_allclose(m.per_query["wup"], [0.75, 1.0, 0.5])
    np.testing.assert_allclose(m.per_query["path"], [1 / 3, 1.0, 0.2])
    chance_wup = np.mean([1.0, 0.75, 0.5])
    np.testing.assert_allclose(m.per_query["wup_chance"], chance_wup)
    assert m["wup"] == pytest.approx(np.mean([0.75, 1.0, 0.5]))
    assert m["wup_chance"] == pytest.approx(chance_wup)
    assert m["n_wordnet_scored"] == 3


def test_unknown_wnids_give_nan_similarity(tmp_path):
    ids = write_mini_wordnet(tmp_path)
    res = _result([["n99999999"], [ids["cat"]]], ["n99999999", ids["cat"]])
    m = semantic_metrics(res, [ids["dog"], "not-a-wnid"], wordnet=WordNet(tmp_path))
    assert math.isnan(m.per_query["wup"][0]) and math.isnan(m.per_query["wup"][1])
    assert m["n_wordnet_scored"] == 0


def test_save_load_round_trip(tmp_path):
    m = semantic_metrics(_result([["c1", "c2"], ["c3"]], DB), ["c2", "x"], wordnet=False)
    table_path, summary_path = m.save(tmp_path / "out")
    assert table_path.name.endswith(".parquet") and summary_path.name.endswith(".json")
    assert "NaN" not in summary_path.read_text()  # NaN stored as null: strict JSON
    back = SemanticMetrics.load(tmp_path / "out")
    assert back["hit5"] == m["hit5"] and back["wup"] is None
    for col, values in m.per_query.items():
        if np.asarray(values).dtype.kind == "f":
            np.testing.assert_allclose(back.per_query[col], values)
        else:
            np.testing.assert_array_equal(back.per_query[col], values)
    text = back.format()
    assert "chance" in text and "coverage: 1/2" in text


def test_training_mean_baseline_and_query_ids(tmp_path):
    ids = write_mini_wordnet(tmp_path)
    wn = WordNet(tmp_path)
    dog, cat, car = ids["dog"], ids["cat"], ids["car"]
    found = _result([[dog, cat], [cat, car], [car, dog]], [dog, cat, car])
    # The training-mean embedding retrieves 'cat' first, then 'dog', for every image.
    mean = _result([[cat, dog]], [dog, cat, car])
    m = semantic_metrics(
        found, [dog, cat, dog], wordnet=wn, query_ids=["a_1", "b_2", "c_3"], baseline=mean
    )
    s = m.summary
    assert s["hit1"] == pytest.approx(2 / 3) and s["hit1_baseline"] == pytest.approx(1 / 3)
    assert s["hit5_baseline"] == pytest.approx(1.0)  # dog and cat are both in [cat, dog]
    # baseline top-1 'cat' against dog, cat, dog: wup 0.75, 1, 0.75
    assert s["wup_baseline"] == pytest.approx(np.mean([0.75, 1.0, 0.75]))
    assert s["baseline_top1"] == cat
    np.testing.assert_array_equal(m.per_query["query"], ["a_1", "b_2", "c_3"])
    m.save(tmp_path / "out")
    assert SemanticMetrics.load(tmp_path / "out").per_query["query"].tolist() == [
        "a_1",
        "b_2",
        "c_3",
    ]


def test_baseline_and_query_id_shapes_are_checked():
    found = _result([["c1"], ["c2"]], DB)
    with pytest.raises(ConfigError, match="query ids"):
        semantic_metrics(found, ["c1", "c2"], wordnet=False, query_ids=["only-one"])
    with pytest.raises(ConfigError, match="baseline retrieval has 3 queries"):
        semantic_metrics(found, ["c1", "c2"], wordnet=False, baseline=_result([["c1"]] * 3, DB))
