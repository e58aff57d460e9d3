"""FeatureIndex: exactness against brute force, approximate recall, shards, storage."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _retrieval_helpers import brute_force_cosine, clustered

from fmri2image.errors import ConfigError, DataFormatError, MissingDataFileError
from fmri2image.retrieval import INDEX_KINDS, FeatureIndex, l2_normalize


def assert_same_neighbours(sims, idx, ref_sims, ref_idx, atol=1e-5):
    """Same neighbours up to ties: sims agree; where indices differ, sims are tied."""
    np.testing.assert_allclose(sims, ref_sims, atol=atol)
    differ = idx != ref_idx
    assert np.all(np.abs(sims[differ] - ref_sims[differ]) <= atol)


def recall_at_k(idx, ref_idx):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(idx, ref_idx)])


def test_registry_lists_kinds():
    assert {"flat", "ivf", "hnsw"} <= set(INDEX_KINDS.names())
    assert INDEX_KINDS.get("flat").exact
    with pytest.raises(ConfigError, match="Unknown index kind"):
        FeatureIndex("flatt")


def test_l2_normalize_rows_and_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    out = l2_normalize(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert x[0, 0] == 3.0  # input untouched


@pytest.mark.parametrize(
    "params",
    [None, {"backend": "faiss"}, {"block_elements": 2000}],
    ids=["numpy", "faiss", "numpy-small-blocks"],
)
def test_flat_equals_brute_force_cosine(planted, params):
    x, labels, queries = planted
    index = FeatureIndex(params=params).add(x, labels)
    sims, idx = index.search(queries, k=7)
    assert sims.shape == idx.shape == (15, 7)
    assert sims.dtype == np.float32 and idx.dtype == np.int64
    ref_sims, ref_idx = brute_force_cosine(queries, x, 7)
    assert_same_neighbours(sims, idx, ref_sims, ref_idx)
    np.testing.assert_array_equal(index.labels_of(idx), labels[idx])


def test_flat_matches_sklearn_cosine(planted):
    from sklearn.neighbors import NearestNeighbors

    x, labels, queries = planted
    nn = NearestNeighbors(n_neighbors=5, metric="cosine", algorithm="brute").fit(x)
    dist, ref_idx = nn.kneighbors(queries)
    sims, idx = FeatureIndex().add(x, labels).search(queries, 5)
    assert_same_neighbours(sims, idx, 1.0 - dist, ref_idx)


def test_cosine_ignores_scale_ip_does_not(planted):
    x, labels, queries = planted
    scaled = x * np.linspace(0.1, 10, x.shape[0], dtype=np.float32)[:, None]
    _, idx_a = FeatureIndex().add(x, labels).search(queries, 5)
    _, idx_b = FeatureIndex().add(scaled, labels).search(queries * 3.0, 5)
    np.testing.assert_array_equal(idx_a, idx_b)
    sims, idx = FeatureIndex(metric="ip").add(scaled, labels).search(queries, 5)
    raw = queries.astype(np.float64) @ scaled.T.astype(np.float64)
    ref = np.argsort(-raw, axis=1, kind="stable")[:, :5]
    assert_same_neighbours(sims, idx, np.take_along_axis(raw, ref, 1), ref, atol=1e-3)


@pytest.mark.parametrize(
    ("kind", "params"),
    [("ivf", {"nlist": 16, "nprobe": 4}), ("hnsw", {"M": 16, "ef_search": 64})],
)
def test_approximate_kinds_have_high_recall(kind, params):
    x, labels, centres = clustered(40, 50, 32, noise=0.5, seed=2)
    rng = np.random.default_rng(3)
    queries = centres[rng.integers(0, 40, 30)] + 0.5 * rng.normal(size=(30, 32))
    index = FeatureIndex(kind, params=params).add(x, labels)
    sims, idx = index.search(queries, 10)
    _, ref_idx = brute_force_cosine(queries, x, 10)
    assert recall_at_k(idx, ref_idx) >= 0.9
    # Reported similarities are true cosines of the returned rows.
    ok = idx >= 0
    true = np.einsum("qd,qkd->qk", l2_normalize(queries), l2_normalize(x)[np.maximum(idx, 0)])
    np.testing.assert_allclose(sims[ok], true[ok], atol=1e-5)


def test_ivf_default_nlist_and_too_small_training():
    x, labels, _ = clustered(10, 40, 16, noise=0.3, seed=4)
    index = FeatureIndex("ivf").add(x, labels)
    assert 1 <= index.params_["nlist"] <= x.shape[0] // 39
    with pytest.raises(ConfigError, match="training vectors"):
        FeatureIndex("ivf", params={"nlist": 64}).train(x[:10])


def _chunks(x, labels, sizes):
    start = 0
    for m in sizes:
        yield x[start : start + m], labels[start : start + m]
        start += m


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_chunked_build_equals_all_at_once(planted, kind):
    x, labels, queries = planted
    sample = x[::3]
    params = {"nlist": 8, "nprobe": 8} if kind == "ivf" else None
    whole = FeatureIndex(kind, params=params)
    if kind == "ivf":
        whole.train(sample)
    whole.add(x, labels)
    chunked = FeatureIndex(kind, params=params).add_chunks(
        _chunks(x, labels, [100, 7, 250, 243]),
        train_sample=sample if kind == "ivf" else None,
        progress=False,
    )
    assert chunked.ntotal == whole.ntotal == x.shape[0]
    np.testing.assert_array_equal(chunked.labels_, whole.labels_)
    s1, i1 = whole.search(queries, 5)
    s2, i2 = chunked.search(queries, 5)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)


def test_ivf_chunks_without_sample_buffer_until_trained(planted):
    x, labels, queries = planted
    index = FeatureIndex("ivf", params={"nlist": 4, "nprobe": 4, "train_size": 200})
    index.add_chunks(_chunks(x, labels, [150, 150, 300]), progress=False)
    assert index.ntotal == x.shape[0] and index.is_trained
    np.testing.assert_array_equal(index.labels_, labels)
    _, idx = index.search(queries, 5)
    _, ref = brute_force_cosine(queries, x, 5)
    assert recall_at_k(idx, ref) == 1.0  # nprobe == nlist: exhaustive


def _write_store(tmp_path, x, labels, shard_size, skipped_index):
    from fmri2image.features.databases import ImageDatabase
    from fmri2image.features.shards import FeatureStoreWriter, open_feature_store

    n = x.shape[0]
    paths = [str(tmp_path / "imgs" / f"{labels[i]}_{i}.JPEG") for i in range(n)]
    db = ImageDatabase.from_paths(paths, list(labels), root=tmp_path / "imgs")
    spec = {
        "name": "fake", "weights": "none", "layer": "x", "dim": x.shape[1],
        "image_size": 8, "preprocessing": "none", "license": "none",
    }  # fmt: skip
    writer = FeatureStoreWriter.create(
        tmp_path / "store", database=db, spec=spec, config={}, shard_size=shard_size
    )
    for k in range(writer.n_shards):
        start, stop = writer.shard_range(k)
        keep = [i for i in range(start, stop) if i != skipped_index]
        skipped = (
            [(skipped_index, paths[skipped_index], "broken")] if len(keep) < stop - start else []
        )
        writer.write_shard(k, x[keep], skipped)
    assert writer.finalize()
    return open_feature_store(tmp_path / "store"), np.array(paths)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_from_store_reads_shards_and_keeps_rows_aligned(tmp_path, planted, kind):
    x, labels, queries = planted
    store, paths = _write_store(tmp_path, x, labels, shard_size=128, skipped_index=200)
    keep = np.arange(x.shape[0]) != 200
    params = {"nlist": 8, "nprobe": 8} if kind == "ivf" else None
    index = FeatureIndex.from_store(store, kind=kind, params=params, progress=False)
    assert index.ntotal == x.shape[0] - 1
    np.testing.assert_array_equal(index.labels_, labels[keep])
    np.testing.assert_array_equal(index.items_, paths[keep])
    _, idx = index.search(queries, 5)
    _, ref = brute_force_cosine(queries, x[keep], 5)
    assert recall_at_k(idx, ref) == 1.0
    by_path = FeatureIndex.from_store(tmp_path / "store", progress=False)
    assert by_path.ntotal == index.ntotal


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, planted, kind):
    x, labels, queries = planted
    items = [f"img{i}.jpg" for i in range(x.shape[0])]
    params = {"nlist": 8, "nprobe": 3} if kind == "ivf" else None
    index = FeatureIndex(kind, params=params, seed=5).add(x, labels, items)
    out = index.save(tmp_path / "ix")
    assert sorted(p.name for p in out.iterdir()) == [
        "index.faiss", "index.json", "items.npy", "labels.npy",
    ]  # fmt: skip
    loaded = FeatureIndex.load(out)
    assert (loaded.kind, loaded.metric, loaded.seed, loaded.dim_) == (kind, "cosine", 5, 32)
    assert loaded.params_ == index.params_
    np.testing.assert_array_equal(loaded.labels_, labels)
    np.testing.assert_array_equal(loaded.items_, items)
    s1, i1 = index.search(queries, 4)
    s2, i2 = loaded.search(queries, 4)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2)
    # No pickle anywhere: labels load with allow_pickle=False.
    assert np.load(out / "labels.npy", allow_pickle=False).dtype.kind == "U"


def test_load_mmap_and_errors(tmp_path, planted):
    x, labels, queries = planted
    index = FeatureIndex().add(x, labels)
    out = index.save(tmp_path / "ix")
    mm = FeatureIndex.load(out, mmap=True)
    np.testing.assert_array_equal(mm.search(queries, 3)[1], index.search(queries, 3)[1])
    np.save(out / "labels.npy", labels[:-1])  # a file of another build: its checksum differs
    with pytest.raises(DataFormatError, match=r"labels\.npy does not match the SHA-256"):
        FeatureIndex.load(out)
    with pytest.raises(MissingDataFileError, match="not a saved retrieval index"):
        FeatureIndex.load(tmp_path / "nothing")


def test_input_validation(planted):
    x, labels, queries = planted
    with pytest.raises(ConfigError, match="empty"):
        FeatureIndex().search(queries, 3)
    with pytest.raises(ConfigError, match="one label"):
        FeatureIndex().add(x, labels[:-1])
    index = FeatureIndex().add(x, labels)
    with pytest.raises(ConfigError, match="dimension"):
        index.search(queries[:, :5], 3)
    bad = queries.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataFormatError, match="NaN"):
        index.search(bad, 3)
    with pytest.raises(ConfigError, match="metric"):
        FeatureIndex(metric="l2")
    with pytest.raises(ConfigError, match="nprobe"):
        FeatureIndex("flat", params={"nprobe": 3})
    with pytest.raises(ConfigError, match="backend"):
        FeatureIndex("flat", params={"backend": "torch"})
    # k larger than the database is clipped.
    _, idx = FeatureIndex().add(x[:3], labels[:3]).search(queries, 10)
    assert idx.shape == (15, 3)


def test_threads_parameter_restores_faiss_setting(planted):
    import faiss

    x, labels, queries = planted
    before = faiss.omp_get_max_threads()
    _, idx1 = FeatureIndex(threads=1).add(x, labels).search(queries, 5)
    assert faiss.omp_get_max_threads() == before
    _, idx2 = FeatureIndex().add(x, labels).search(queries, 5)
    np.testing.assert_array_equal(idx1, idx2)


def test_labels_of_marks_missing_neighbours(planted):
    x, labels, _ = planted
    index = FeatureIndex().add(x, labels)
    out = index.labels_of(np.array([[0, -1], [5, 1]]))
    np.testing.assert_array_equal(out, [[labels[0], ""], [labels[5], labels[1]]])


def test_importing_retrieval_does_not_import_faiss():
    code = "import sys, fmri2image.retrieval; assert 'faiss' not in sys.modules, 'faiss imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_changed_index_bytes_are_refused(tmp_path, planted):
    """A saved index whose file changed would return wrong neighbours: refused on load."""
    import json

    x, labels, _ = planted
    out = FeatureIndex("flat").add(x, labels).save(tmp_path / "ix")
    data = bytearray((out / "index.faiss").read_bytes())
    data[-8] ^= 0xFF  # one vector component flipped, same size
    (out / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match=r"index\.faiss does not match the SHA-256"):
        FeatureIndex.load(out)
    out2 = FeatureIndex("flat").add(x, labels).save(tmp_path / "ix2")
    (out2 / "labels.npy").unlink()
    with pytest.raises(DataFormatError, match=r"labels\.npy is missing"):
        FeatureIndex.load(out2)
    out3 = FeatureIndex("flat").add(x, labels).save(tmp_path / "ix3")
    meta = json.loads((out3 / "index.json").read_text())
    del meta["files"]
    (out3 / "index.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match="without file checksums"):
        FeatureIndex.load(out3)
