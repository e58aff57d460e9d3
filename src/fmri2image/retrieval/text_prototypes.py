"""A retrieval database with one row per class from a CLIP text tower: no images needed.

CLIP-family encoders (``clip``, ``hf:`` CLIP checkpoints, ``open_clip:``) embed text
and images in one space, so the text embedding of ``"a photo of a {name}"`` serves
as a class prototype, as in CLIP's zero-shot classification.  Unlike classifier-head
prototypes (:func:`~fmri2image.retrieval.prototype_index`), the class list is free:

``vocabulary="1k"``
    The 1000 ILSVRC-2012 classes (:func:`fmri2image.imagenet.imagenet1k_wnids`).
``vocabulary="21k"``
    All 21,844 ImageNet-21k synsets packaged with fmri2image
    (``resources/imagenet21k_lemmas.tsv.gz``): every GOD test category is reachable.

Each class is named by its first WordNet lemma (underscores as spaces).  WordNet
reuses lemmas ("crane" is a bird and a machine; 2 such pairs in 1k, 1,444 shared
names in 21k): such classes get the same prompt, hence identical rows, and tie in
retrieval; the index keeps both labels.

Embedding 21k prompts takes minutes on a CPU, so the matrix can be cached
(``cache_dir``): ``<encoder>.text-<vocabulary>-<key>.safetensors`` plus a JSON sidecar,
a verified manifest (:mod:`fmri2image._manifest`) recording the encoder, template,
vocabulary, class count, a hash of the prompts and the file's SHA-256.  The cache is
reused only when all of them match.  (A run caches them as a stage of its own,
``prototypes/<model>/text-<vocabulary>``, computed once per encoder and label set.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image._io import load_safetensors, save_safetensors, tqdm_kwargs
from fmri2image._manifest import manifest_problem, write_manifest
from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.features.capabilities import TEXT_VOCABULARIES
from fmri2image.imagenet import imagenet1k_wnids, imagenet21k_wnids, prompt_name
from fmri2image.retrieval.index import FeatureIndex

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.features.base import Encoder

__all__ = [
    "DEFAULT_TEMPLATE",
    "TEXT_VOCABULARIES",
    "class_prompts",
    "embed_prompts",
    "text_prototype_index",
    "text_prototypes",
    "vocabulary_wnids",
]

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "a photo of a {name}"
CACHE_FORMAT = "fmri2image.retrieval.text_prototypes"
CACHE_FORMAT_VERSION = 1


def vocabulary_wnids(vocabulary: str = "1k") -> tuple[str, ...]:
    """The wnids of a text-prototype vocabulary: ``"1k"`` (1000) or ``"21k"`` (21,844)."""
    if vocabulary == "1k":
        return imagenet1k_wnids()
    if vocabulary == "21k":
        return imagenet21k_wnids()
    raise ConfigError(
        f"Unknown vocabulary {vocabulary!r}; use one of {', '.join(TEXT_VOCABULARIES)} "
        "(ImageNet-1k classes or all ImageNet-21k synsets)."
    )


def _check_template(template: str) -> None:
    if not isinstance(template, str) or "{name}" not in template:
        raise ConfigError(
            f"Prompt template {template!r} must contain '{{name}}', e.g. {DEFAULT_TEMPLATE!r}."
        )
    try:
        template.format(name="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"Prompt template {template!r} has fields other than {{name}} ({exc}); write "
            "literal braces as '{{' and '}}'."
        ) from exc


def class_prompts(wnids: Sequence[str], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """One prompt per class: ``template.format(name=first lemma, underscores as spaces)``."""
    _check_template(template)
    return [template.format(name=prompt_name(w)) for w in wnids]


def _prompts_hash(prompts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in prompts:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _encoder_identity(encoder: Encoder) -> dict[str, Any]:
    """What decides the text embeddings: the encoder's name, weights and revision.

    For weights on local disk (``hf:/folder``, an open_clip file) the size and mtime
    of the weight files are added, so a re-saved model invalidates the cache.
    """
    spec = encoder.spec
    ident: dict[str, Any] = {
        "name": spec.name,
        "weights": spec.weights,
        "dim": spec.dim,
        "revision": spec.extra.get("revision"),
        "family": spec.extra.get("family"),
    }
    files = {}
    for candidate in (spec.extra.get("pretrained"), _local_dir(spec.weights)):
        if not candidate:
            continue
        path = Path(candidate)
        paths = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
        for p in paths:
            if p.is_file():
                st = p.stat()
                files[str(p)] = [st.st_size, st.st_mtime_ns]
    if files:
        ident["files"] = files
    return ident


def _local_dir(weights: str) -> str | None:
    prefix = "local directory "
    return weights[len(prefix) :] if weights.startswith(prefix) else None


def _cache_key(ident: dict[str, Any], template: str, vocabulary: str, prompts_sha: str) -> str:
    blob = json.dumps(
        {"encoder": ident, "template": template, "vocabulary": vocabulary, "prompts": prompts_sha},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _cache_paths(cache_dir: str | os.PathLike, name: str, vocabulary: str, key: str):
    from fmri2image.features.shards import store_dirname

    stem = f"{store_dirname(name)}.text-{vocabulary}-{key}"
    root = Path(cache_dir)
    return root / f"{stem}.safetensors", root / f"{stem}.json"


def _load_cached(matrix_path: Path, sidecar_path: Path, expected: dict[str, Any]):
    """The cached matrix if its manifest (the sidecar) verifies for ``expected``."""
    problem = manifest_problem(
        sidecar_path,
        format=CACHE_FORMAT,
        identity={"format_version": CACHE_FORMAT_VERSION, **expected},
        folder=matrix_path.parent,
    )
    if problem is not None:
        if problem != "not computed yet":
            logger.info("text prototypes cache %s is not reused: %s", matrix_path.name, problem)
        return None
    tensors, _ = load_safetensors(matrix_path)
    matrix = tensors.get("prototypes")
    if matrix is None or matrix.shape != (expected["count"], expected["dim"]):
        return None
    return np.asarray(matrix, dtype=np.float32)


def text_prototypes(
    encoder: Encoder,
    vocabulary: str = "1k",
    *,
    template: str = DEFAULT_TEMPLATE,
    batch_size: int = 256,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """Text embeddings of one prompt per class, and the classes' wnids.

    Parameters
    ----------
    encoder : Encoder
        A CLIP-family encoder (``encoder.has_text_tower``).
    vocabulary : {"1k", "21k"}
        ImageNet-1k classes or all ImageNet-21k synsets.
    template : str
        Prompt with a ``{name}`` field (default ``"a photo of a {name}"``).
    batch_size : int
        Prompts per forward pass of the text tower.
    cache_dir : path, optional
        Folder to reuse/store the matrix in (see the module docstring).
    progress : bool
        Show a progress bar while embedding.

    Returns
    -------
    prototypes : ndarray of shape (n_classes, dim), float32
        Unnormalized projected text embeddings.
    wnids : list of str
        One WordNet id per row.
    """
    if not getattr(encoder, "has_text_tower", False):
        from fmri2image.features.capabilities import EncoderCapabilities

        caps = EncoderCapabilities(
            encoder.name, class_prototypes=encoder.spec.classifier_head, text_prototypes=False
        )
        caps.check("text-prototypes")  # raises, saying what would work instead
    wnids = list(vocabulary_wnids(vocabulary))
    prompts = class_prompts(wnids, template)
    prompts_sha = _prompts_hash(prompts)
    ident = _encoder_identity(encoder)
    expected = {
        "encoder": ident,
        "template": template,
        "vocabulary": vocabulary,
        "count": len(wnids),
        "dim": int(encoder.dim),
        "prompts_sha256": prompts_sha,
    }
    paths = None
    if cache_dir is not None:
        paths = _cache_paths(
            cache_dir,
            encoder.name,
            vocabulary,
            _cache_key(ident, template, vocabulary, prompts_sha),
        )
        cached = _load_cached(*paths, expected)
        if cached is not None:
            logger.info("text prototypes: reusing %s", paths[0])
            return cached, wnids
    matrix = _embed_prompts(encoder, prompts, batch_size=batch_size, progress=progress)
    if not np.isfinite(matrix).all():
        raise DataFormatError(
            f"{encoder.name}: the text tower produced non-finite embeddings; try "
            "dtype='float32' if a half precision was used."
        )
    if paths is not None:
        matrix_path, sidecar_path = paths
        save_safetensors(matrix_path, {"prototypes": matrix}, metadata={"format": CACHE_FORMAT})
        write_manifest(
            sidecar_path,
            {
                "format": CACHE_FORMAT,
                "format_version": CACHE_FORMAT_VERSION,
                **expected,
                "spec": encoder.spec.to_dict(),
                "file": matrix_path.name,
            },
            files=[matrix_path.name],
        )  # the sidecar is written last: it vouches for a complete matrix file
    return matrix, wnids


def embed_prompts(
    encoder: Encoder, prompts: Sequence[str], *, batch_size: int = 256, progress: bool = True
) -> np.ndarray:
    """The text tower's embeddings of ``prompts``, float32 (n, dim), checked finite."""
    if not getattr(encoder, "has_text_tower", False):
        from fmri2image.features.capabilities import EncoderCapabilities

        caps = EncoderCapabilities(
            encoder.name, class_prototypes=encoder.spec.classifier_head, text_prototypes=False
        )
        caps.check("captions")  # raises, saying what would work instead
    matrix = _embed_prompts(encoder, list(prompts), batch_size=batch_size, progress=progress)
    if not np.isfinite(matrix).all():
        raise DataFormatError(
            f"{encoder.name}: the text tower produced non-finite embeddings; try "
            "dtype='float32' if a half precision was used."
        )
    return matrix


def _embed_prompts(encoder: Encoder, prompts: list[str], *, batch_size: int, progress: bool):
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}.")
    out = np.empty((len(prompts), encoder.dim), dtype=np.float32)
    # Batches of similar length pad less (a third fewer tokens on the 21k names with
    # CLIP's BPE). A prompt's embedding does not depend on its batch: padding sits at
    # the end of a causal text transformer.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    with tqdm(
        total=len(prompts), desc=f"text prototypes ({encoder.name})", unit="prompt",
        leave=False, **tqdm_kwargs(progress),
    ) as bar:  # fmt: skip
        for start in range(0, len(prompts), batch_size):
            rows = order[start : start + batch_size]
            chunk = [prompts[i] for i in rows]
            out[rows] = encoder.embed_text(chunk, batch_size=batch_size)
            bar.update(len(chunk))
    return out


def text_prototype_index(
    encoder: Encoder | str,
    vocabulary: str = "1k",
    *,
    template: str = DEFAULT_TEMPLATE,
    batch_size: int = 256,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    metric: str = "cosine",
    threads: int | None = None,
    **encoder_kwargs: Any,
) -> FeatureIndex:
    """Exact index over the text prototypes of a CLIP-family encoder.

    Parameters
    ----------
    encoder : Encoder or str
        An encoder with a text tower, or its registry name (then built with
        ``get_encoder(encoder, **encoder_kwargs)``).
    vocabulary, template, batch_size, cache_dir, progress
        See :func:`text_prototypes`.
    metric : {"cosine", "ip"}, default "cosine"
        Cosine is CLIP's own zero-shot rule.
    threads : int, optional
        FAISS threads.

    Returns
    -------
    FeatureIndex
        A ``"flat"`` index with one row per class, labelled with its wnid; the
        prompts are kept as the rows' items.
    """
    if isinstance(encoder, str):
        from fmri2image.features import encoder_capabilities, get_encoder

        encoder_capabilities(encoder, cache_dir=encoder_kwargs.get("cache_dir")).check(
            "text-prototypes"
        )  # before any weights load
        encoder = get_encoder(encoder, **encoder_kwargs)
    matrix, wnids = text_prototypes(
        encoder, vocabulary, template=template, batch_size=batch_size,
        cache_dir=cache_dir, progress=progress,
    )  # fmt: skip
    prompts = class_prompts(wnids, template)
    return FeatureIndex("flat", metric=metric, threads=threads).add(matrix, wnids, prompts)
