"""Hub-free retrieval: centering and CSLS against brute-force numpy, on planted hubs.

``python tests/retrieval/test_hubness.py`` prints the planted-data table of
docs/retrieval.md ("Hubness").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from fmri2image.errors import ConfigError
from fmri2image.retrieval import (
    DEFAULT_CSLS_K,
    DEFAULT_HUBNESS,
    HUBNESS,
    FeatureIndex,
    hub_concentration,
    hubness_correction,
    retrieve,
)


@dataclass
class Planted:
    database: np.ndarray  # (n_db, dim)
    labels: np.ndarray  # (n_db,)
    train: np.ndarray  # training stimuli's embeddings, (n_train, dim)
    queries: np.ndarray  # predicted test embeddings, (n_test, dim)
    truth: np.ndarray  # true label of each query
    hub_labels: tuple[str, ...]


def planted_hubs(
    *, n_classes=40, per_class=8, n_hubs=3, dim=48, n_train=200, n_test=60,
    shrink=0.3, noise=0.5, seen=False, seed=0,
) -> Planted:  # fmt: skip
    """Embeddings as an encoder and a ridge map make them, with planted hubs.

    Every embedding shares a large common component ``g`` (CNN features are far
    from centered); class ``j`` adds its own direction ``a_j``, except the
    ``n_hubs`` hub classes, whose ``a_j`` is small: their images point along the
    mean, near every query.  Training stimuli come from other classes; the test
    images from the non-hub database classes.  A prediction is the ridge-like
    ``m_train + shrink * (y - m_train)`` plus noise: shrunk towards the training
    mean, so plain cosine sends many queries to the hub classes.  ``seen=True``:
    the training stimuli are other images of the test images' classes (not GOD's
    design, where training and test categories are disjoint).
    """
    rng = np.random.default_rng(seed)
    g = 3.0 * rng.normal(size=dim)
    a = rng.normal(size=(n_classes, dim))
    a[:n_hubs] *= 0.25
    cls = np.repeat(np.arange(n_classes), per_class)
    database = g + a[cls] + 0.3 * rng.normal(size=(cls.size, dim))
    labels = np.array([f"n{c:08d}" for c in cls])
    train_a = rng.normal(size=(n_train // 4, dim))
    if seen:
        train_a = a[rng.integers(n_hubs, n_classes, size=n_train // 4)]
    train = g + np.repeat(train_a, 4, axis=0) + 0.3 * rng.normal(size=(n_train, dim))
    m_train = train.mean(axis=0)
    test_cls = rng.integers(n_hubs, n_classes, size=n_test)
    y = g + a[test_cls] + 0.3 * rng.normal(size=(n_test, dim))
    queries = m_train + shrink * (y - m_train) + shrink * noise * rng.normal(size=(n_test, dim))
    return Planted(
        database.astype(np.float32), labels, train.astype(np.float32),
        queries.astype(np.float32), labels[test_cls * per_class],
        tuple(f"n{c:08d}" for c in range(n_hubs)),
    )  # fmt: skip


def _correction(index, p: Planted, method: str, **kw):
    return hubness_correction(
        index, method, query_mean=p.train.mean(axis=0), references=p.train, **kw
    )


def scores(p: Planted, method: str, *, k: int = 40, **kw) -> dict[str, float]:
    """Top-1 concentration, hit@1 and hit@5 of one correction on planted data."""
    index = FeatureIndex().add(p.database, p.labels)
    res = retrieve(p.queries, index, k=k, hubness=_correction(index, p, method, **kw))
    top = res.top(5)
    return {
        "concentration": hub_concentration(res.top1),
        "hit1": float(np.mean([t[:1] == (y,) for t, y in zip(top, p.truth)])),
        "hit5": float(np.mean([y in t for t, y in zip(top, p.truth)])),
        "hub_top1": float(np.isin(res.top1, p.hub_labels).mean()),
    }


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1)


def _brute(p: Planted, method: str, csls_k: int = 10) -> np.ndarray:
    """Reference scores (n_queries, n_db), float64, from the definitions."""
    db = _unit(p.database)
    q, refs = p.queries.astype(np.float64), p.train.astype(np.float64)
    if method in ("center", "csls"):
        m = p.train.astype(np.float64).mean(axis=0)
        db, q, refs = db - db.mean(axis=0), q - m, refs - m
    db, q, refs = _unit(db), _unit(q), _unit(refs)
    sims = q @ db.T
    if method == "csls":
        r = np.sort(db @ refs.T, axis=1)[:, -csls_k:].mean(axis=1)  # r(i): item -> references
        sims = 2 * sims - r[None, :]
    return sims


@pytest.fixture(scope="module")
def planted():
    return planted_hubs()


@pytest.mark.parametrize("method", ["none", "center", "csls"])
def test_flat_search_equals_brute_force_numpy(planted, method):
    index = FeatureIndex().add(planted.database, planted.labels)
    hub = _correction(index, planted, method, csls_k=7)
    got_s, got_i = hub.search(index, planted.queries, 12)
    ref = _brute(planted, method, csls_k=7)
    ref_i = np.argsort(-ref, axis=1, kind="stable")[:, :12]
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_allclose(got_s, np.take_along_axis(ref, ref_i, axis=1), atol=2e-5)
    if method != "none":  # corrected scores come from the stored vectors, not the backend
        other = FeatureIndex(params={"backend": "faiss"}).add(planted.database, planted.labels)
        np.testing.assert_array_equal(
            _correction(other, planted, method, csls_k=7).search(other, planted.queries, 12)[1],
            got_i,
        )


def test_small_blocks_give_the_same_result(planted, monkeypatch):
    import fmri2image.retrieval.hubness as hubness

    index = FeatureIndex().add(planted.database, planted.labels)
    whole = _correction(index, planted, "csls").search(index, planted.queries, 9)
    monkeypatch.setattr(hubness, "_BLOCK_ELEMENTS", 1)  # 1024-row blocks
    big = np.tile(planted.database, (5, 1))  # 1600 rows: two blocks
    index = FeatureIndex().add(big, np.tile(planted.labels, 5))
    got = _correction(index, planted, "csls").search(index, planted.queries, 45)
    # Every row appears 5 times; the best row of each query is the same.
    np.testing.assert_array_equal(got[1][:, 0] % len(planted.labels), whole[1][:, 0])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
@pytest.mark.parametrize("method", ["center", "csls"])
def test_approximate_indexes_rescore_candidates_exactly(planted, kind, method):
    params = {"nlist": 4, "nprobe": 4} if kind == "ivf" else {}
    index = FeatureIndex(kind, params=params).add(planted.database, planted.labels)
    flat = FeatureIndex().add(planted.database, planted.labels)
    want = _correction(flat, planted, method).search(flat, planted.queries, 10)
    # All rows as candidates (and all IVF cells probed): exact.
    got = _correction(index, planted, method, candidates=index.ntotal).search(
        index, planted.queries, 10
    )
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], atol=2e-5)
    # The default candidate set finds the corrected top-1 of (nearly) every query.
    default = _correction(index, planted, method).search(index, planted.queries, 10)
    assert np.mean(default[1][:, 0] == want[1][:, 0]) >= 0.9


def test_centering_and_csls_reduce_hubs_without_losing_hit5(planted):
    none, center, csls = (scores(planted, m) for m in HUBNESS)
    assert none["concentration"] >= 0.3 and none["hub_top1"] >= 0.5  # the planted hubs win
    for fixed in (center, csls):
        assert fixed["concentration"] < none["concentration"] / 2
        assert fixed["hub_top1"] < none["hub_top1"] / 2
        assert fixed["hit5"] >= none["hit5"] and fixed["hit1"] >= none["hit1"]


@pytest.mark.parametrize("method", ["center", "csls"])
def test_no_test_statistic_is_used(planted, method):
    """A query's neighbours and scores do not depend on the other test queries."""
    index = FeatureIndex().add(planted.database, planted.labels)
    hub = _correction(index, planted, method)
    s_all, i_all = hub.search(index, planted.queries, 8)
    for rows in ([3], [3, 7, 11], list(range(0, 60, 2))):
        s, i = hub.search(index, planted.queries[rows], 8)
        np.testing.assert_array_equal(i, i_all[rows])
        np.testing.assert_allclose(s, s_all[rows], atol=1e-6)
    # The statistics need no queries at all: they come from the training set.
    again = _correction(index, planted, method)
    np.testing.assert_array_equal(again.search(index, planted.queries[:1], 8)[1], i_all[:1])


def test_result_records_the_correction(planted, tmp_path):
    from fmri2image.retrieval import RetrievalResult

    index = FeatureIndex().add(planted.database, planted.labels)
    res = retrieve(planted.queries, index, k=5, hubness=_correction(index, planted, "csls"))
    assert res.hubness == "csls"
    assert RetrievalResult.load(res.save(tmp_path / "r.parquet")).hubness == "csls"
    assert retrieve(planted.queries, index, k=5).hubness == "none"


def test_mistakes_are_config_errors(planted):
    index = FeatureIndex().add(planted.database, planted.labels)
    with pytest.raises(ConfigError, match="Unknown hubness correction 'hubs'"):
        hubness_correction(index, "hubs")
    with pytest.raises(ConfigError, match="pass query_mean"):
        hubness_correction(index, "center")
    with pytest.raises(ConfigError, match="needs reference vectors"):
        hubness_correction(index, "csls", query_mean=planted.train.mean(axis=0))
    with pytest.raises(ConfigError, match="csls_k must be a positive integer"):
        _correction(index, planted, "csls", csls_k=0)
    ip = FeatureIndex(metric="ip").add(planted.database, planted.labels)
    with pytest.raises(ConfigError, match="needs a cosine index"):
        _correction(ip, planted, "center")
    hub = _correction(index, planted, "center")
    smaller = FeatureIndex().add(planted.database[:10], planted.labels[:10])
    with pytest.raises(ConfigError, match="compute it for this index"):
        retrieve(planted.queries, smaller, k=3, hubness=hub)


def test_config_and_cli_refuse_a_bad_value():
    import argparse

    from fmri2image.cli._options import add_retrieval_options
    from fmri2image.pipeline.config import RunConfig, load_config

    with pytest.raises(ConfigError) as err:
        load_config(None, ["retrieval.hubness=hubs"]).validate()
    assert "--hubness (retrieval.hubness) must be one of none, center, csls" in str(err.value)
    with pytest.raises(ConfigError, match=r"--csls-k \(retrieval.csls_k\) must be a positive"):
        load_config(None, ["retrieval.csls_k=0"]).validate()
    assert RunConfig().retrieval.hubness == DEFAULT_HUBNESS == "csls"
    assert RunConfig().retrieval.csls_k == DEFAULT_CSLS_K == 10
    parser = argparse.ArgumentParser()
    add_retrieval_options(parser)
    assert parser.parse_args(["--hubness", "center", "--csls-k", "3"]).hubness == "center"
    with pytest.raises(SystemExit):
        parser.parse_args(["--hubness", "hubs"])
    assert "retrieval.hubness; default: csls" in " ".join(parser.format_help().split())


def test_retrieval_stage_key_changes_with_the_option():
    from fmri2image.pipeline.config import RunConfig
    from fmri2image.pipeline.preflight import DatabaseSpec
    from fmri2image.pipeline.stages import retrieval_stage

    db = DatabaseSpec(kind="prototypes", source="prototypes", name="prototypes")

    def stage(**retrieval):
        config = RunConfig().replace(**{f"retrieval__{k}": v for k, v in retrieval.items()})
        return retrieval_stage("r", config, db, 5, "m", "data", "mapping", "proto",
                               features_name="features")  # fmt: skip

    none, center, csls = (stage(hubness=h) for h in HUBNESS)
    assert len({repr(sorted(s.config.items())) for s in (none, center, csls)}) == 3
    assert "features" in csls.inputs and "features" not in center.inputs
    assert stage(hubness="csls", csls_k=5).config != csls.config
    assert stage(hubness="center", csls_k=5).config == center.config  # csls_k unused: same key


if __name__ == "__main__":  # the planted-data tables of docs/retrieval.md
    variants = [("none", "none", {}), ("center", "center", {}),
                ("csls on raw cosines", "csls", {"center": False}), ("csls", "csls", {})]  # fmt: skip
    for seen in (False, True):
        print(f"\nseen={seen}: noise 3, mean of seeds 0-4")
        print("| correction | top-1 concentration | top-1 in a hub class | hit@1 | hit@5 |")
        print("|---|---|---|---|---|")
        for name, method, kw in variants:
            runs = [scores(planted_hubs(noise=3.0, seen=seen, seed=s), method, **kw)
                    for s in range(5)]  # fmt: skip
            m = {key: np.mean([r[key] for r in runs]) for key in runs[0]}
            print(f"| {name} | {m['concentration']:.2f} | {m['hub_top1']:.2f} | "
                  f"{m['hit1']:.2f} | {m['hit5']:.2f} |")  # fmt: skip
