"""Text-prototype databases: CLIP text embeddings of one prompt per class."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fmri2image.errors import ConfigError
from fmri2image.features.base import Encoder, EncoderSpec
from fmri2image.imagenet import imagenet1k_wnids
from fmri2image.retrieval import (
    DEFAULT_TEMPLATE,
    class_prompts,
    text_prototype_index,
    text_prototypes,
    vocabulary_wnids,
)

# The tiny-model builders live with the feature tests' fixtures.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "features"))


class HashTextEncoder(Encoder):
    """A text tower stand-in: each prompt's vector is seeded by its characters."""

    def __init__(self, weights: str = "hash v1", dim: int = 8) -> None:
        self.spec = EncoderSpec(
            "hash-text", weights, "none", dim, 8, "none", "none", text_tower=True
        )
        self.calls = 0

    def preprocess(self, image):  # pragma: no cover - images are not used here
        raise NotImplementedError

    def embed(self, batch):  # pragma: no cover
        raise NotImplementedError

    @property
    def has_text_tower(self) -> bool:
        return True

    def embed_text(self, prompts, *, batch_size=256):
        self.calls += 1
        out = np.empty((len(prompts), self.dim), dtype=np.float32)
        for i, p in enumerate(prompts):
            seed = int.from_bytes(p.encode("utf-8")[-16:].ljust(16, b"\0"), "little") % 2**32
            out[i] = np.random.default_rng(seed + len(p)).normal(size=self.dim)
        return out


class NoText(HashTextEncoder):
    @property
    def has_text_tower(self) -> bool:
        return False


def test_vocabularies_and_prompts():
    assert vocabulary_wnids("1k") == imagenet1k_wnids()
    big = vocabulary_wnids("21k")
    assert len(big) == 21844 and len(set(big)) == len(big)
    assert set(imagenet1k_wnids()) <= set(big)
    assert class_prompts(["n01440764", "n02123045"]) == ["a photo of a tench", "a photo of a tabby"]
    assert class_prompts(["n01440764"], "{name}!") == ["tench!"]
    with pytest.raises(ConfigError, match="name"):
        class_prompts(["n01440764"], "a photo of a {label}")
    with pytest.raises(ConfigError, match="21k"):
        vocabulary_wnids("22k")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """The tiny CLIP of the feature tests, in a fake hub cache under the real ``clip`` id."""
    pytest.importorskip("transformers")
    from _tiny_models import CLIP_ID, save_tiny_clip, write_hf_cache

    from fmri2image.features import get_encoder

    folder = save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
    cache = tmp_path_factory.mktemp("hf-cache")
    write_hf_cache(cache, CLIP_ID, folder)
    return get_encoder("clip", cache_dir=str(cache)), folder


def test_index_from_a_clip_text_tower(tiny_clip):
    enc, folder = tiny_clip
    index = text_prototype_index(enc, "1k", batch_size=300, progress=False)
    wnids = list(imagenet1k_wnids())
    assert index.ntotal == 1000 and list(index.labels_) == wnids
    prompts = class_prompts(wnids)
    assert list(index.items_) == prompts and prompts[0] == "a photo of a tench"
    # The rows are the text tower's embeddings of the prompts (equal to get_text_features).
    import torch
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(folder).eval()
    tokens = AutoTokenizer.from_pretrained(folder)(prompts[:5], padding=True, return_tensors="pt")
    with torch.inference_mode():
        ref = model.get_text_features(**tokens)
    ref = getattr(ref, "pooler_output", ref).numpy()
    matrix, got_wnids = text_prototypes(enc, "1k", progress=False)
    assert got_wnids == wnids and matrix.shape == (1000, 512)
    np.testing.assert_allclose(matrix[:5], ref, atol=1e-5)
    # A query equal to a class's prototype retrieves that class (goldfish, Egyptian cat).
    from fmri2image.retrieval import retrieve

    result = retrieve(matrix[[1, 285]], index, k=1)
    assert [r[0] for r in result.ranked_labels] == [wnids[1], wnids[285]]


def test_cache_is_reused_and_invalidated(tmp_path):
    enc = HashTextEncoder()
    first, wnids = text_prototypes(enc, "1k", cache_dir=tmp_path, progress=False)
    assert enc.calls == 4  # 1000 prompts in batches of 256
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".safetensors")
    sidecar = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert sidecar["encoder"]["name"] == "hash-text" and sidecar["count"] == 1000
    assert sidecar["template"] == DEFAULT_TEMPLATE and sidecar["vocabulary"] == "1k"
    assert len(sidecar["files"][files[1]]) == 64 and sidecar["prompts_sha256"]  # the matrix

    again, again_wnids = text_prototypes(enc, "1k", cache_dir=tmp_path, progress=False)
    assert enc.calls == 4 and again_wnids == wnids  # reused: no new embedding
    np.testing.assert_array_equal(again, first)

    text_prototypes(enc, "1k", template="a picture of a {name}", cache_dir=tmp_path, progress=False)
    assert enc.calls == 8  # another template: another entry
    other = HashTextEncoder(weights="hash v2")
    text_prototypes(other, "1k", cache_dir=tmp_path, progress=False)
    assert other.calls == 4  # other weights: not reused

    # A matrix file that no longer matches its sidecar's checksum is recomputed.
    matrix_file = next(
        p for p in tmp_path.glob("*.safetensors") if json.loads(
            p.with_suffix(".json").read_text())["template"] == DEFAULT_TEMPLATE
        and json.loads(p.with_suffix(".json").read_text())["encoder"]["weights"] == "hash v1"
    )  # fmt: skip
    data = bytearray(matrix_file.read_bytes())
    data[-1] ^= 0xFF
    matrix_file.write_bytes(bytes(data))
    fresh, _ = text_prototypes(enc, "1k", cache_dir=tmp_path, progress=False)
    assert enc.calls == 12
    np.testing.assert_array_equal(fresh, first)

    # A sidecar recording something else (here the count) is not trusted either.
    side = matrix_file.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["count"] = 999
    side.write_text(json.dumps(meta))
    text_prototypes(enc, "1k", cache_dir=tmp_path, progress=False)
    assert enc.calls == 16


def test_21k_vocabulary_reaches_beyond_imagenet_1k(tmp_path):
    enc = HashTextEncoder()
    index = text_prototype_index(enc, "21k", batch_size=4096, cache_dir=tmp_path, progress=False)
    assert index.ntotal == 21844
    labels = set(index.labels_)
    # Categories outside ImageNet-1k (swan, bat, coffin) are in the 21k database.
    outside = {"n01858441", "n02139199", "n03064758"}
    assert outside <= labels and not outside & set(imagenet1k_wnids())


def test_encoders_without_text_tower_are_refused(monkeypatch):
    with pytest.raises(ConfigError, match="no text tower"):
        text_prototypes(NoText(), "1k", progress=False)

    def boom(*a, **k):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr("fmri2image.features.get_encoder", boom)
    with pytest.raises(ConfigError, match="--database prototypes"):
        text_prototype_index("resnet50")  # known from the spec: refused before loading
