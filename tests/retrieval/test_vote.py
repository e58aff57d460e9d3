"""Votes on hand-made neighbour lists, and retrieve() end to end."""

from __future__ import annotations

import numpy as np
import pytest

from fmri2image.errors import ConfigError
from fmri2image.retrieval import VOTES, FeatureIndex, RetrievalResult, apply_vote, retrieve

# One query, k = 6 neighbours, nearest first.
LABELS = np.array([["a", "b", "b", "c", "c", "c"]])
SIMS = np.array([[0.9, 0.8, 0.7, 0.3, 0.2, 0.1]])


def test_registry():
    assert set(VOTES.names()) == {"nearest", "majority", "weighted"}
    with pytest.raises(ConfigError, match="Unknown vote"):
        apply_vote(LABELS, SIMS, "plurality")


def test_nearest_vote_orders_by_first_neighbour():
    labels, scores = apply_vote(LABELS, SIMS, "nearest")
    assert labels == (("a", "b", "c"),)
    np.testing.assert_allclose(scores[0], [0.9, 0.8, 0.3])


def test_majority_vote_counts_neighbours():
    labels, scores = apply_vote(LABELS, SIMS, "majority")
    assert labels == (("c", "b", "a"),)
    np.testing.assert_allclose(scores[0], [3 / 6, 2 / 6, 1 / 6])


def test_majority_tie_goes_to_nearer_label():
    labels, _ = apply_vote(
        np.array([["x", "y", "y", "x"]]), np.array([[0.5, 0.9, 0.1, 0.0]]), "majority"
    )
    assert labels == (("x", "y"),)  # both 2 votes; x's best neighbour comes first


def test_weighted_vote_sums_similarities():
    labels, scores = apply_vote(LABELS, SIMS, "weighted")
    assert labels == (("b", "a", "c"),)  # 1.5 > 0.9 > 0.6
    np.testing.assert_allclose(scores[0], [1.5, 0.9, 0.6])
    # Negative similarities count against a label.
    labels, _ = apply_vote(np.array([["a", "a", "b"]]), np.array([[0.5, -0.4, 0.2]]), "weighted")
    assert labels == (("b", "a"),)


def test_missing_neighbours_are_ignored():
    labels, scores = apply_vote(
        np.array([["a", "", ""], ["", "", ""]]), np.zeros((2, 3)), "majority"
    )
    assert labels == (("a",), ())
    assert scores == ((1.0,), ())


def _toy_index():
    # Three classes on the axes of a 3-d space; two images of class "n2".
    x = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0.2], [0, 0, 1]], dtype=np.float32)
    labels = ["n1", "n2", "n2", "n3"]
    return FeatureIndex().add(x, labels, items=["i0", "i1", "i2", "i3"])


def test_retrieve_end_to_end():
    index = _toy_index()
    queries = np.array([[1, 0.1, 0], [0.1, 0, 1], [0.8, 0.7, 0]], dtype=np.float32)
    res = retrieve(queries, index, k=3, vote="majority")
    assert isinstance(res, RetrievalResult)
    assert (res.n_queries, res.k, res.vote, res.metric) == (3, 3, "majority", "cosine")
    assert res.database_classes == ("n1", "n2", "n3")
    np.testing.assert_array_equal(res.neighbor_labels[0], ["n1", "n2", "n2"])
    np.testing.assert_array_equal(res.top1, ["n2", "n3", "n2"])  # n2 has two close images
    assert res.ranked_labels[0] == ("n2", "n1")
    np.testing.assert_array_equal(res.neighbor_items[0], ["i0", "i1", "i2"])
    assert res.top(1) == [("n2",), ("n3",), ("n2",)]
    nearest = retrieve(queries, index, k=3)
    np.testing.assert_array_equal(nearest.top1, ["n1", "n3", "n1"])


def test_retrieval_result_round_trip(tmp_path):
    index = _toy_index()
    res = retrieve(np.eye(3, dtype=np.float32), index, k=2, vote="weighted")
    path = res.save(tmp_path / "res.parquet")
    back = RetrievalResult.load(path)
    np.testing.assert_array_equal(back.indices, res.indices)
    np.testing.assert_allclose(back.similarities, res.similarities)
    np.testing.assert_array_equal(back.neighbor_labels, res.neighbor_labels)
    np.testing.assert_array_equal(back.neighbor_items, res.neighbor_items)
    assert back.ranked_labels == res.ranked_labels
    np.testing.assert_allclose(
        np.concatenate(back.ranked_scores), np.concatenate(res.ranked_scores)
    )
    assert (back.vote, back.metric, back.database_classes) == (
        "weighted",
        "cosine",
        res.database_classes,
    )


def test_retrieve_validates_before_searching():
    with pytest.raises(ConfigError, match="Unknown vote"):
        retrieve(np.eye(3, dtype=np.float32), _toy_index(), vote="best")
    with pytest.raises(ConfigError, match="positive"):
        retrieve(np.eye(3, dtype=np.float32), _toy_index(), k=0)
