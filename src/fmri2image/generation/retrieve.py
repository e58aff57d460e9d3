"""The nearest picture of an image database: retrieval as a reconstruction.

``retrieve`` answers "which image that exists points where the brain points?": it
searches an image database's features (a feature store written by
``fmri2image extract``, or the ``database`` stage of a run that was given an image
folder: a run hands it to the generator itself, as the ``database`` input its
registry entry declares) for the row nearest to the predicted
embedding, by cosine, and returns that image as stored.  It is the ceiling of
what label retrieval plus a generator could show, and the floor any generator
should beat on low-level metrics: a real photo of a neighbouring class.

A database is given as ``database=DIR``; ``DIR`` is either one encoder's store
(it holds ``manifest.json``) or a folder with one store per encoder
(``DIR/<store name of the encoder>/``, see
:func:`fmri2image.features.shards.store_dirname`).  Prototype databases (classifier
weights, text prototypes) have no images and are refused up front.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from fmri2image.errors import ConfigError, MissingImageError
from fmri2image.generation.base import (
    GenerationRequest,
    GenerationResult,
    Generator,
    image_seed,
    require_embeddings,
)

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.features.shards import FeatureStore
    from fmri2image.retrieval.index import FeatureIndex

__all__ = ["MATCHES", "RetrieveGenerator", "RetrieveOptions"]

#: How the prediction is compared with the database rows.
MATCHES = ("raw", "deviation")


@dataclass(frozen=True)
class RetrieveOptions:
    """Options of the ``retrieve`` generator (nearest database image).

    Attributes
    ----------
    database : str or None
        Feature folder of an image database: one encoder's store (holding
        manifest.json, from `fmri2image extract`) or a folder with one store per
        encoder; a run sets it to its first image database's features.
    match : str
        raw: cosine between the prediction and the database features, as decode's
        label retrieval ranks; deviation: cosine of both after subtracting the
        training-mean embedding (needs the training statistics).
    """

    database: str | None = None
    match: str = "raw"

    def __post_init__(self) -> None:
        if self.match not in MATCHES:
            raise ConfigError(
                f"Option match of generator 'retrieve' must be one of {', '.join(MATCHES)}, "
                f"got {self.match!r}."
            )


_HOW = (
    "Give the run an image database (--database IMAGE_FOLDER, or the --out of `fmri2image "
    "extract --images IMAGE_FOLDER`), which it hands to retrieve, or pass --option "
    "database=DIR with such a feature folder (one store per encoder under it)."
)


class RetrieveGenerator(Generator):
    """The database image nearest to each predicted embedding (see the module docstring).

    Parameters
    ----------
    device, dtype : str
        Unused (the search runs on the CPU); accepted for the common signature.
    **options
        :class:`RetrieveOptions` fields; ``database`` is required.

    Raises
    ------
    ConfigError
        No ``database``, or it is not a feature folder.
    """

    name: ClassVar[str] = "retrieve"
    takes_init: ClassVar[bool] = False
    conditioning: ClassVar[str] = "embedding"
    Options: ClassVar[type] = RetrieveOptions

    def __init__(self, *, device: str = "cpu", dtype: str = "float32", **options: Any) -> None:
        super().__init__(device=device, dtype=dtype, **options)
        if not self.options.database:
            raise ConfigError(f"Generator 'retrieve' needs an image database. {_HOW}")
        root = Path(self.options.database).expanduser()
        if not root.is_dir():
            raise ConfigError(f"--option database={root}: no such folder. {_HOW}")
        self.root = root
        self._stores: dict[str, FeatureStore] = {}
        self._indexes: dict[tuple[str, bytes | None], FeatureIndex] = {}
        self._single: FeatureStore | None = None
        if (root / "manifest.json").is_file():  # one encoder's store: check it now
            from fmri2image.features.shards import open_feature_store

            self._single = _image_store(open_feature_store(root))
        elif not self._held():
            raise ConfigError(
                f"--option database={root} holds no feature store (no manifest.json in it "
                f"or in its sub-folders). {_HOW}"
            )

    def _held(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").is_file())

    # -------------------------------------------------------------- database
    def store(self, encoder: str) -> FeatureStore:
        """The feature store of ``encoder`` in the database (opened once).

        Raises
        ------
        ConfigError
            No store of ``encoder`` there, a store of another encoder, a prototype
            database, or a store without image paths.
        """
        if encoder in self._stores:
            return self._stores[encoder]
        from fmri2image.features.shards import open_feature_store, store_dirname

        if self._single is not None:
            store = self._single
        else:
            path = self.root / store_dirname(encoder)
            if (self.root / f"{path.name}.prototypes" / "manifest.json").is_file() and not (
                path / "manifest.json"
            ).is_file():
                raise ConfigError(
                    f"The database {self.root} holds only class prototypes of {encoder!r} "
                    f"(one row per class, no pictures), so there is no image to return. {_HOW}"
                )
            if not (path / "manifest.json").is_file():
                held = self._held()
                raise ConfigError(
                    f"The database {self.root} has no features of encoder {encoder!r} "
                    f"(expected {path}/manifest.json); it holds "
                    f"{', '.join(held) if held else 'no feature stores'}. Extract them with "
                    f"`fmri2image extract --model {encoder} --images IMAGE_FOLDER --out "
                    f"{self.root}`, or generate for an encoder the database has."
                )
            store = _image_store(open_feature_store(path))
        if store.encoder_name != encoder:
            raise ConfigError(
                f"The feature store {store.path} holds features of encoder "
                f"{store.encoder_name!r}, but the predictions are {encoder!r} embeddings; "
                "nearest neighbours across two embedding spaces mean nothing. Pass the "
                f"folder holding one store per encoder, or that of {encoder!r}."
            )
        self._stores[encoder] = store
        return store

    def check(self, encoder: str | None) -> None:
        """Refuse an encoder the database holds no image features of (reads manifests only)."""
        if encoder is None:
            raise ConfigError(
                "Generator 'retrieve' searches the database features of the predictions' "
                "encoder, and no encoder was named (GenerationRequest.encoder)."
            )
        self.store(encoder)

    def _index(self, encoder: str, mean: np.ndarray | None) -> FeatureIndex:
        from fmri2image.retrieval.index import FeatureIndex

        key = (encoder, None if mean is None else np.asarray(mean, np.float32).tobytes())
        if key not in self._indexes:
            store = self.store(encoder)
            if mean is None:
                index = FeatureIndex.from_store(store, progress=False)
            else:
                feats = store.load() - np.asarray(mean, dtype=np.float32)
                index = FeatureIndex.from_arrays(feats, list(store.wnids), items=list(store.paths))
            self._indexes[key] = index
        return self._indexes[key]

    # ------------------------------------------------------------- generation
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """The nearest database image of each request's embedding, in request order."""
        from fmri2image.features.embed import load_rgb

        require_embeddings("retrieve", requests)
        for r in requests:
            if self.options.match == "deviation" and r.stats is None:
                raise ConfigError(
                    f"Option match=deviation of generator 'retrieve' needs the training "
                    f"statistics of the embeddings (GenerationRequest.stats); request "
                    f"{r.stem!r} has none. Pass them, or use match=raw."
                )
        results = []
        for r in requests:
            t0 = time.perf_counter()
            store = self.store(str(r.encoder))
            query = np.asarray(r.embedding, dtype=np.float32).reshape(1, -1)
            if query.shape[1] != store.dim:
                raise ConfigError(
                    f"Request {r.stem!r}: the embedding has {query.shape[1]} values but the "
                    f"database's {r.encoder!r} features are {store.dim}-d."
                )
            mean = None
            if self.options.match == "deviation":
                mean = np.asarray(r.stats.mean, dtype=np.float32)  # type: ignore[union-attr]
                query = query - mean
            index = self._index(str(r.encoder), mean)
            sims, idx = index.search(query, k=1)
            row = int(idx[0, 0])
            path = str(index.items_[row]) if index.items_ is not None else ""
            try:
                image = load_rgb(path)
            except MissingImageError as exc:
                raise MissingImageError(
                    f"The nearest database image of {r.stem!r}, {path}, is gone: {exc} The "
                    f"feature store {store.path} refers to images that moved; extract the "
                    "database again from its current folder."
                ) from exc
            cosine = float(sims[0, 0])
            results.append(
                GenerationResult(
                    stem=r.stem,
                    images=(image,),
                    conditioning=f"nearest database image: {path} (cosine {cosine:.3f})",
                    seed=image_seed(r.seed, r.stem),
                    seconds=time.perf_counter() - t0,
                    extra={
                        "path": path,
                        "wnid": str(index.labels_[row]),
                        "cosine": cosine,
                        "match": self.options.match,
                        "database": str(store.path),
                    },
                )
            )
        return results


def _image_store(store: FeatureStore) -> FeatureStore:
    """``store`` if it holds image features with paths, else a :class:`ConfigError`."""
    if store.kind != "images":
        raise ConfigError(
            f"The feature store {store.path} is a {store.kind} database (one row per class, "
            f"no pictures), so there is no image to return. {_HOW}"
        )
    if store.n == 0 or not any(store.paths):
        raise ConfigError(
            f"The feature store {store.path} records no image paths for its rows, so there "
            f"is no image to return. {_HOW}"
        )
    return store
