"""Class-prototype databases (one row per ImageNet class)."""

from __future__ import annotations

import numpy as np
import pytest

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.features.base import Encoder, EncoderSpec
from fmri2image.imagenet import imagenet1k_wnids
from fmri2image.retrieval import prototype_index, retrieve


class _HeadEncoder(Encoder):
    """Minimal encoder with a fixed linear head (no torch needed)."""

    def __init__(self, weights=None):
        self.spec = EncoderSpec("toy", "none", "x", 16, 8, "none", "none")
        self._weights = weights

    def preprocess(self, image):  # pragma: no cover - not used
        raise NotImplementedError

    def embed(self, batch):  # pragma: no cover - not used
        raise NotImplementedError

    def class_prototypes(self):
        if self._weights is None:
            return None
        return self._weights, list(imagenet1k_wnids())


@pytest.fixture
def head():
    rng = np.random.default_rng(0)
    # Unequal row norms so cosine and inner product rank differently.
    return (rng.normal(size=(1000, 16)) * rng.uniform(0.2, 3.0, size=(1000, 1))).astype(np.float32)


def test_prototype_index_from_encoder(head):
    index = prototype_index(_HeadEncoder(head))
    assert index.ntotal == 1000 and index.kind == "flat" and index.metric == "cosine"
    np.testing.assert_array_equal(index.labels_, imagenet1k_wnids())
    # A query equal to a prototype retrieves its class.
    res = retrieve(head[[3, 500]] * 7.0, index, k=5)
    np.testing.assert_array_equal(res.top1, [imagenet1k_wnids()[3], imagenet1k_wnids()[500]])


def test_ip_metric_ranks_like_the_classifier_logits(head):
    rng = np.random.default_rng(1)
    feats = np.abs(rng.normal(size=(20, 16))).astype(np.float32)
    logits = feats.astype(np.float64) @ head.T.astype(np.float64)
    ip = retrieve(feats, prototype_index((head, imagenet1k_wnids()), metric="ip"), k=5)
    np.testing.assert_array_equal(ip.indices[:, 0], logits.argmax(axis=1))
    cos = retrieve(feats, prototype_index((head, imagenet1k_wnids())), k=5)
    cosine = logits / np.linalg.norm(head, axis=1)
    np.testing.assert_array_equal(cos.indices[:, 0], cosine.argmax(axis=1))
    assert not np.array_equal(ip.indices[:, 0], cos.indices[:, 0])


def test_encoder_without_head_and_bad_shapes(head):
    with pytest.raises(ConfigError, match="no classification head"):
        prototype_index(_HeadEncoder(None))
    with pytest.raises(DataFormatError, match="one wnid per row"):
        prototype_index((head[:10], imagenet1k_wnids()))
    with pytest.raises(DataFormatError, match="repeat"):
        prototype_index((head[:2], ["n01440764", "n01440764"]))


@pytest.mark.slow
def test_real_effnet_prototypes_label_a_cat_photo():
    """Real EfficientNet-Lite0 weights: a cat photo's embedding retrieves cat classes."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from PIL import Image
    from skimage import data

    from fmri2image.evaluation import semantic_metrics
    from fmri2image.features import embed_images, get_encoder

    encoder = get_encoder("effnet-lite0")
    emb = embed_images(encoder, [Image.fromarray(data.chelsea())], progress=False)
    weights, wnids = encoder.class_prototypes()
    logits = emb.astype(np.float64) @ weights.T.astype(np.float64)
    ip = retrieve(emb, prototype_index(encoder, metric="ip"), k=5)
    assert ip.top1[0] == wnids[int(logits.argmax())]  # the classifier's own top-1 (no bias)
    res = retrieve(emb, prototype_index(encoder), k=5)
    cats = {"n02123045", "n02123159", "n02124075", "n02123394", "n02127052"}
    assert cats & set(res.ranked_labels[0])
    m = semantic_metrics(res, ["n02123045"], wordnet=False)  # tabby
    assert m["hit5"] == 1.0 and m["n_database_classes"] == 1000
