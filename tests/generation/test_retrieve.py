"""The ``retrieve`` generator: the nearest image of an extracted image database."""

from __future__ import annotations

import numpy as np
import pytest
from _offline_helpers import photos, tiny_encoder

from fmri2image.errors import ConfigError
from fmri2image.generation import (
    GENERATORS,
    EmbeddingStats,
    GenerationRequest,
    get_generator,
    image_seed,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

WNIDS = ("n02123045", "n07920052", "n09229709")  # tabby, espresso, bubble


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """A wnid-folder image database (photo crops), its features and a prototype store."""
    from fmri2image.features import class_prototype_database, extract_features

    root = tmp_path_factory.mktemp("retrieve")
    images = root / "images"
    rng = np.random.default_rng(0)
    for k, photo in enumerate(photos()):
        folder = images / WNIDS[k % len(WNIDS)]
        folder.mkdir(parents=True, exist_ok=True)
        w, h = photo.size
        for j in range(2):
            left, top = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
            crop = photo.crop((left, top, left + 2 * w // 3, top + 2 * h // 3))
            crop.save(folder / f"{folder.name}_{k}{j}.png")
    enc = tiny_encoder("tiny-a", head=True)
    other = tiny_encoder("tiny-b", seed=1)
    feats = root / "features"
    extract_features(images, [enc, other], feats, num_workers=0, batch_size=4, progress=False)
    protos = root / "prototypes"
    class_prototype_database(enc, protos)
    return {"features": feats, "prototypes": protos, "encoders": {"tiny-a": enc, "tiny-b": other}}


def _features(database, name):
    from fmri2image.features import open_feature_store

    store = open_feature_store(database["features"] / name)
    return store, store.load()


def test_registry_entry():
    entry = GENERATORS.get("retrieve")
    assert entry.offline and entry.conditioning == "embedding"


def test_returns_the_nearest_database_image(database):
    """Brute-force cosine picks the row; the image comes back as stored (RGB)."""
    from PIL import Image

    store, X = _features(database, "tiny-a")
    rng = np.random.default_rng(1)
    queries = X[[3, 7]] + rng.normal(0, 0.05 * X.std(), size=(2, X.shape[1]))
    gen = get_generator("retrieve", database=str(database["features"]))
    gen.check("tiny-a")
    reqs = [
        GenerationRequest(stem=f"q{i}", seed=3, embedding=q, encoder="tiny-a")
        for i, q in enumerate(queries)
    ]
    results = gen.generate(reqs)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    for q, res in zip(queries, results):
        sims = Xn @ (q / np.linalg.norm(q))
        best = int(np.argmax(sims))
        assert res.extra["path"] == store.paths[best]
        assert res.extra["wnid"] == store.wnids[best]
        assert res.extra["cosine"] == pytest.approx(float(sims[best]), abs=1e-5)
        with Image.open(store.paths[best]) as stored:
            assert np.array_equal(np.asarray(res.image), np.asarray(stored.convert("RGB")))
        assert res.conditioning == (
            f"nearest database image: {store.paths[best]} (cosine {sims[best]:.3f})"
        )
        assert res.image.mode == "RGB" and not res.flagged
    assert results[0].seed == image_seed(3, "q0")


def test_one_store_folder_and_encoder_mismatch(database):
    single = database["features"] / "tiny-b"
    gen = get_generator("retrieve", database=str(single))
    _, X = _features(database, "tiny-b")
    res = gen.generate([GenerationRequest(stem="s", embedding=X[0], encoder="tiny-b")])[0]
    assert res.extra["cosine"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="holds features of encoder 'tiny-b'"):
        gen.check("tiny-a")


def test_deviation_match(database):
    _, X = _features(database, "tiny-a")
    stats = EmbeddingStats.from_embeddings(X)
    gen = get_generator("retrieve", database=str(database["features"]), match="deviation")
    req = GenerationRequest(stem="d", embedding=X[5], encoder="tiny-a", stats=stats)
    res = gen.generate([req])[0]
    assert res.extra["match"] == "deviation" and res.extra["cosine"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="needs the training statistics"):
        gen.generate([GenerationRequest(stem="d", embedding=X[5], encoder="tiny-a")])


def test_refused_before_any_work(database, tmp_path):
    with pytest.raises(ConfigError, match="needs an image database"):
        get_generator("retrieve")
    with pytest.raises(ConfigError, match="no such folder"):
        get_generator("retrieve", database=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="holds no feature store"):
        get_generator("retrieve", database=str(tmp_path))
    # A prototype store: rejected when the generator is built.
    proto_store = next(database["prototypes"].iterdir())
    with pytest.raises(ConfigError, match=r"prototypes database .*no pictures"):
        get_generator("retrieve", database=str(proto_store))
    # A folder of prototype stores: rejected by check(), before any request.
    gen = get_generator("retrieve", database=str(database["prototypes"]))
    with pytest.raises(ConfigError, match="only class prototypes of 'tiny-a'"):
        gen.check("tiny-a")
    gen = get_generator("retrieve", database=str(database["features"]))
    with pytest.raises(ConfigError, match=r"no features of encoder 'effnet-lite0'.*tiny-a, tiny-b"):
        gen.check("effnet-lite0")
    with pytest.raises(ConfigError, match="no encoder was named"):
        gen.check(None)
    with pytest.raises(ConfigError, match="lacks the embedding"):
        gen.generate([GenerationRequest(stem="x", encoder="tiny-a")])
    with pytest.raises(ConfigError, match=r"Option match .* must be one of"):
        get_generator("retrieve", database=str(database["features"]), match="l2")
