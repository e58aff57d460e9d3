"""The feature-extraction engine: one decode pass, several encoders, sharded resumable output.

Data flow of :func:`extract_features`::

    image list --(batches aligned to shards)--> DataLoader workers
        decode once (PIL, RGB)  ->  encoder_1.preprocess, ..., encoder_k.preprocess
    main process, torch.inference_mode:  encoder_j.embed(batch_j) -> (B, dim_j)
    shard complete  ->  <out>/<encoder>/shard-NNNNN.npy (atomic) + manifest.json

Reproducibility: a batch never crosses a shard boundary and batch boundaries inside a
shard are fixed (``shard start + j * batch_size``), so every shard is a pure function
of its image range, the encoder and the config.  A killed run resumes from the
shards already on disk and the result is byte-identical to an uninterrupted run on
the same machine and software.  Peak memory is bounded by the batches in flight
(``num_workers * prefetch_factor + 1``) and one shard of embeddings per encoder; it
does not grow with the number of images.

Unreadable images (missing, truncated, not an image) are skipped, never fatal: they
are left out of the shard, listed with the reason in the manifest and reported in a
warning.  :attr:`FeatureStore.image_index` maps rows back to the image list.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fmri2image._io import tqdm_kwargs, usable_cpus
from fmri2image._lock import output_lock
from fmri2image.data.images import DEFAULT_DECODE_MIN_SIDE, decode_errors, decode_image
from fmri2image.errors import ConfigError, MissingImageError
from fmri2image.features.databases import ImageDatabase, scan_image_folder
from fmri2image.features.shards import FeatureStore, FeatureStoreWriter, store_dirname

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

    from fmri2image.features.base import Encoder, EncoderSpec

__all__ = [
    "DEFAULT_DECODE_MIN_SIDE",
    "ExtractionResult",
    "decode_image",
    "extract_features",
    "load_batch",
]

logger = logging.getLogger(__name__)

Executor = Literal["local", "ray"]


# ---------------------------------------------------------------------------------
# Decoding and preprocessing: shared by the local and the Ray executors.  The image
# decoder itself lives in the data layer (one decoder for stimuli and databases).
# ---------------------------------------------------------------------------------
def load_batch(
    paths: Sequence[str] | np.ndarray,
    start: int,
    stop: int,
    preprocessors: Sequence[Callable[[Image.Image], torch.Tensor]],
    min_side: int | None = DEFAULT_DECODE_MIN_SIDE,
) -> dict[str, Any]:
    """Decode images ``start:stop`` once and apply every preprocessor to each.

    Parameters
    ----------
    paths : sequence of str or ndarray of bytes, length n_images
        The image list.
    start, stop : int
        Image range of the batch.
    preprocessors : sequence of callables
        ``Encoder.preprocess`` of each encoder that needs this batch.

    Returns
    -------
    dict
        ``"index"``: ndarray (n_ok,) image positions decoded; ``"skipped"``: list of
        ``(index, path, reason)``; ``"tensors"``: list (one per preprocessor) of
        float32 tensors (n_ok, 3, H, W), or ``None`` when nothing decoded.
    """
    import torch

    errors = decode_errors()
    # Encoders with equal preprocessing (e.g. several models on the same 224-px ImageNet
    # transform) share one tensor: slot[j] is encoder j's unique preprocessor.
    unique: list[Callable] = []
    slot: list[int] = []
    for fn in preprocessors:
        k = next((u for u, other in enumerate(unique) if _same_transform(fn, other)), None)
        if k is None:
            k = len(unique)
            unique.append(fn)
        slot.append(k)
    per_fn: list[list[torch.Tensor]] = [[] for _ in unique]
    index: list[int] = []
    skipped: list[tuple[int, str, str]] = []
    for i in range(start, stop):
        p = paths[i]
        path = p.decode() if isinstance(p, bytes) else str(p)
        try:
            img = decode_image(path, min_side)
        except errors as exc:
            skipped.append((i, path, f"{type(exc).__name__}: {exc}"))
            continue
        outs = []
        for fn in unique:
            try:
                outs.append(fn(img))
            except Exception as exc:
                raise RuntimeError(
                    f"preprocessing {path} with {getattr(fn, '__self__', fn)!r} failed: {exc}"
                ) from exc
        for lst, t in zip(per_fn, outs):
            lst.append(t)
        index.append(i)
    stacked = [torch.stack(lst) if lst else None for lst in per_fn]
    return {
        "index": np.asarray(index, dtype=np.int64),
        "skipped": skipped,
        "tensors": [stacked[k] for k in slot],
    }


def _same_transform(a: Callable, b: Callable) -> bool:
    """True when two preprocessors are known to give the same output (equal objects)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except Exception:  # pragma: no cover - exotic __eq__
        return False


def embed_batch(encoder: Encoder, tensor: torch.Tensor | None) -> np.ndarray:
    """Run ``encoder.embed`` on one preprocessed batch; returns float32 (B, dim) numpy."""
    import torch

    if tensor is None:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    device = torch.device(getattr(encoder, "device", "cpu") or "cpu")
    if device.type != "cpu":
        tensor = tensor.to(device, non_blocking=True)
    out = encoder.embed(tensor)
    out = out.detach().to("cpu", torch.float32).numpy()
    if out.shape != (tensor.shape[0], encoder.dim):
        raise RuntimeError(
            f"encoder {encoder.name!r}.embed returned shape {out.shape} for a batch of "
            f"{tensor.shape[0]}; its spec promises ({tensor.shape[0]}, {encoder.dim})."
        )
    return out


@contextlib.contextmanager
def _deterministic(devices: Sequence[str]) -> Iterator[None]:
    """Inference mode + deterministic cuDNN for the duration of the run (restored after)."""
    import torch

    cuda = any(str(d).startswith("cuda") for d in devices)
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if cuda:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


# ---------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchSpec:
    """One unit of work: images ``start:stop`` of shard ``k`` for encoders ``encoders``."""

    k: int
    start: int
    stop: int
    encoders: tuple[int, ...]
    last: bool


def plan_batches(writers: Sequence[FeatureStoreWriter], batch_size: int) -> list[BatchSpec]:
    """Batches of every shard that at least one encoder still needs, in image order."""
    pending = [set(w.pending()) for w in writers]
    out: list[BatchSpec] = []
    w0 = writers[0]
    for k in range(w0.n_shards):
        encs = tuple(j for j, p in enumerate(pending) if k in p)
        if not encs:
            continue
        start, stop = w0.shard_range(k)
        starts = list(range(start, stop, batch_size)) or [start]
        for s in starts:
            e = min(s + batch_size, stop)
            out.append(BatchSpec(k, s, e, encs, last=e >= stop))
    return out


@dataclass(frozen=True)
class ExtractionResult:
    """What :func:`extract_features` did.

    Attributes
    ----------
    stores : dict
        Encoder name -> :class:`~fmri2image.features.shards.FeatureStore`.
    n_images : int
        Length of the image list.
    n_skipped : int
        Images that could not be decoded (over the whole store, not only this run).
    n_processed : int
        Images decoded in this run (0 when everything was already on disk).
    seconds : float
        Wall time of this run.
    shards_written, shards_reused : int
        Shard files written now / found complete on disk (summed over encoders).
    shards_seeded : int
        Shard files copied from ``seed_from``'s stores (counted in ``shards_written``
        too).
    """

    stores: dict[str, FeatureStore]
    n_images: int
    n_skipped: int
    n_processed: int
    seconds: float
    shards_written: int
    shards_reused: int
    shards_seeded: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def images_per_second(self) -> float:
        return self.n_processed / self.seconds if self.seconds > 0 else float("nan")

    def __getitem__(self, name: str) -> FeatureStore:
        return self.stores[name]


# ---------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------
def _identity(x: Any) -> Any:
    return x


class _BatchDataset:
    """Map-style dataset whose items are whole, pre-planned batches.

    Paths are kept in one numpy bytes array (no per-item Python objects), so forked
    workers do not copy the image list page by page through reference counting.
    """

    def __init__(
        self,
        paths: np.ndarray,
        batches: Sequence[BatchSpec],
        preprocessors: Sequence[Callable],
        min_side: int | None,
    ) -> None:
        self.paths = paths
        self.batches = list(batches)
        self.preprocessors = list(preprocessors)
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, Any]:
        b = self.batches[i]
        fns = [self.preprocessors[j] for j in b.encoders]
        return load_batch(self.paths, b.start, b.stop, fns, self.min_side)


def auto_num_workers(n_batches: int) -> int:
    """One worker per spare core (at most 8), none for tiny jobs or single-core machines."""
    return max(0, min(8, usable_cpus() - 1, n_batches - 1))


def _iter_local(
    paths: np.ndarray,
    batches: Sequence[BatchSpec],
    encoders: Sequence[Encoder],
    *,
    num_workers: int,
    prefetch_factor: int,
    min_side: int | None,
) -> Iterator[tuple[BatchSpec, np.ndarray, list, dict[int, np.ndarray]]]:
    from torch.utils.data import DataLoader

    ds = _BatchDataset(paths, batches, [e.preprocess for e in encoders], min_side)
    cuda = any(str(getattr(e, "device", "cpu")).startswith("cuda") for e in encoders)
    loader = DataLoader(
        ds,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_identity,
        pin_memory=cuda,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        persistent_workers=False,
    )
    for spec, item in zip(batches, loader):
        embs = {j: embed_batch(encoders[j], t) for j, t in zip(spec.encoders, item["tensors"])}
        del item["tensors"]
        yield spec, item["index"], item["skipped"], embs


# ---------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------
def _as_database(images: ImageDatabase | str | os.PathLike | Sequence) -> ImageDatabase:
    if isinstance(images, ImageDatabase):
        return images
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        if p.is_dir():
            return scan_image_folder(p)
        raise MissingImageError(f"{p} is not an image folder; pass a folder or a list of paths.")
    return ImageDatabase.from_paths(list(images))


@dataclass
class _RemoteEncoder:
    """Driver-side stand-in for an encoder that only Ray actors build (spec, no weights)."""

    spec: EncoderSpec
    device: str
    dtype: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dim(self) -> int:
        return self.spec.dim


def _resolve_encoders(
    encoders: Sequence[Encoder | str], device: str, dtype: str, *, build: bool = True
) -> list[Encoder]:
    """Encoders from objects or registry names; ``build=False`` loads specs only."""
    from fmri2image.features.base import Encoder as _Encoder

    out: list[Any] = []
    for e in encoders:
        if isinstance(e, str) and build:
            from fmri2image.features import get_encoder

            e = get_encoder(e, device=device, dtype=dtype)
        elif isinstance(e, str):
            from fmri2image.features import encoder_spec
            from fmri2image.features.encoders._common import canonical_dtype

            e = _RemoteEncoder(encoder_spec(e), device, canonical_dtype(dtype))
        if not isinstance(e, (_Encoder, _RemoteEncoder)):
            raise ConfigError(
                f"encoders must be Encoder instances or registry names, got {type(e).__name__}."
            )
        out.append(e)
    if not out:
        raise ConfigError("extract_features needs at least one encoder.")
    dirs = [store_dirname(e.name) for e in out]
    if len(set(dirs)) != len(dirs):
        raise ConfigError(f"Two encoders share an output folder name: {dirs}; pass each once.")
    return out


def extract_features(
    images: ImageDatabase | str | os.PathLike | Sequence[str | os.PathLike],
    encoders: Sequence[Encoder | str] | Encoder | str,
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 64,
    num_workers: int | Literal["auto"] = "auto",
    device: str = "cpu",
    dtype: str = "float32",
    shard_size: int = 4096,
    store_dtype: Literal["float32", "float16"] = "float32",
    executor: Executor = "local",
    address: str | None = None,
    ray_options: Mapping[str, Any] | None = None,
    prefetch_factor: int = 2,
    decode_min_side: int | None = DEFAULT_DECODE_MIN_SIDE,
    on_unreadable: Literal["skip", "raise"] = "skip",
    overwrite: bool = False,
    seed_from: str | os.PathLike | None = None,
    progress: bool = True,
) -> ExtractionResult:
    """Embed an image list with one or more encoders into sharded feature stores.

    Each image is decoded once; every encoder preprocesses the same decoded image.
    Outputs go to ``out_dir/<encoder-name>/`` (see :mod:`fmri2image.features.shards`).
    Running the same call again resumes an interrupted extraction (or returns at
    once if it is complete).

    Parameters
    ----------
    images : ImageDatabase, folder or sequence of paths
        What to embed; a folder is scanned with
        :func:`~fmri2image.features.databases.scan_image_folder`.
    encoders : Encoder, str or sequence of them
        Encoders or registry names (built with ``get_encoder(name, device=, dtype=)``).
    out_dir : path-like
        Parent folder of the stores.
    batch_size : int
        Images per forward pass.  Part of the store config: a resumed run must use
        the same value (batch composition can change the last float bits).
    num_workers : int or "auto"
        DataLoader decode workers; ``"auto"`` = spare cores (max 8).
    device, dtype : str
        Where and in which precision encoders given by name run.
    shard_size : int
        Images per shard file (the unit of resumption).
    store_dtype : {"float32", "float16"}
        Storage precision of the shards.
    executor : {"local", "ray"}
        ``"ray"`` runs decode + embedding on a Ray cluster (``address``, else the
        ``RAY_ADDRESS`` environment variable, else a local Ray); needs
        ``fmri2image[ray]``.  Output is the same as the local executor's.
    ray_options : mapping, optional
        Ray executor options (``num_actors``, ``num_cpus_per_actor``,
        ``num_gpus_per_actor``, ``init_kwargs``).
    prefetch_factor : int
        Batches each worker prepares ahead.
    decode_min_side : int or None
        See :func:`decode_image`; ``None`` decodes JPEGs at full resolution.
    on_unreadable : {"skip", "raise"}
        Unreadable images are skipped and recorded (database extraction), or raise
        :class:`~fmri2image.errors.MissingImageError` at the first one (stimulus
        sets, where every image must be embedded).
    overwrite : bool
        Discard stores in the way that were made with another image list / config.
    seed_from : path-like, optional
        The ``out_dir`` of an earlier extraction of the same folder (e.g. before
        images were added): shards whose images are all unchanged there are copied
        from its stores instead of computed
        (:meth:`~fmri2image.features.shards.FeatureStoreWriter.seed_from`); an
        unusable one is ignored.
    progress : bool
        Show a tqdm progress bar over images.

    Returns
    -------
    ExtractionResult
        ``result["effnet-lite0"]`` is that encoder's
        :class:`~fmri2image.features.shards.FeatureStore`.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
    if on_unreadable not in ("skip", "raise"):
        raise ConfigError(f"on_unreadable must be 'skip' or 'raise', got {on_unreadable!r}.")
    if executor not in ("local", "ray"):
        raise ConfigError(f"executor must be 'local' or 'ray', got {executor!r}.")
    if decode_min_side is not None and decode_min_side < 1:
        raise ConfigError(f"decode_min_side must be positive or None, got {decode_min_side}.")
    t0 = time.perf_counter()
    db = _as_database(images)
    if len(db) == 0:
        raise MissingImageError("The image list is empty; nothing to extract.")
    from fmri2image.features.base import Encoder as _Encoder

    enc_args = [encoders] if isinstance(encoders, (str, _Encoder)) else list(encoders)
    # The Ray executor builds encoders given by name inside its actors only.
    encs = _resolve_encoders(enc_args, device, dtype, build=executor == "local")
    if decode_min_side is not None:
        big = [e.name for e in encs if e.spec.image_size > decode_min_side]
        if big:
            warnings.warn(
                f"Encoders {big} take inputs larger than decode_min_side={decode_min_side}; "
                "large JPEGs may be decoded below their input size. Raise decode_min_side.",
                stacklevel=2,
            )
    out_dir = Path(out_dir)
    # One writer at a time: two runs into one folder would mix their stores.
    with output_lock(out_dir):
        writers = []
        for e in encs:
            config = {
                "batch_size": int(batch_size),
                "model_dtype": str(getattr(e, "dtype", None) or dtype),
                "device": str(getattr(e, "device", device)),
                "decode_min_side": decode_min_side,
                "decode": "PIL RGB" + (" draft" if decode_min_side else ""),
                "executor": executor,
            }
            writers.append(
                FeatureStoreWriter.create(
                    out_dir / store_dirname(e.name),
                    database=db,
                    spec=e.spec.to_dict(),
                    config=config,
                    shard_size=shard_size,
                    store_dtype=store_dtype,
                    overwrite=overwrite,
                )
            )
        reused = sum(len(w.done) for w in writers)
        seeded = 0
        if seed_from is not None:
            for e, w in zip(encs, writers):
                source = Path(seed_from) / store_dirname(e.name)
                if w.pending() and source.resolve() != w.path.resolve():
                    seeded += len(w.seed_from(source, db.paths))
        batches = plan_batches(writers, batch_size)
        paths = np.array([p.encode() for p in db.paths])
        if num_workers == "auto":
            num_workers = auto_num_workers(len(batches))
        if int(num_workers) < 0:
            raise ConfigError(f"num_workers must be >= 0 or 'auto', got {num_workers}.")

        if not batches:
            it: Iterator = iter(())
        elif executor == "local":
            it = _iter_local(
                paths,
                batches,
                encs,
                num_workers=int(num_workers),
                prefetch_factor=prefetch_factor,
                min_side=decode_min_side,
            )
        else:
            from fmri2image.features.ray_executor import iter_ray_batches

            it = iter_ray_batches(
                paths,
                batches,
                enc_args,
                encs,
                address=address,
                options=dict(ray_options or {}),
                device=device,
                dtype=dtype,
                min_side=decode_min_side,
            )

        from tqdm.auto import tqdm

        total = sum(b.stop - b.start for b in batches)
        # Nothing to compute (every shard reused): no empty bar.
        bar_kw = tqdm_kwargs(bool(progress and total))
        bar = tqdm(total=total, desc="extracting", unit="img", smoothing=0.1, **bar_kw)
        written = seeded
        processed = 0
        acc: dict[int, tuple[dict[int, list[np.ndarray]], list]] = {}
        with _deterministic([str(getattr(e, "device", "cpu")) for e in encs]), bar:
            for spec, _index, skipped, embs in it:
                parts, skip = acc.setdefault(spec.k, ({j: [] for j in spec.encoders}, []))
                for j, arr in embs.items():
                    parts[j].append(arr)
                if skipped and on_unreadable == "raise":
                    i, path, reason = skipped[0]
                    raise MissingImageError(
                        f"Image {i + 1} of the list (1-based), {path}, cannot be read ({reason}). "
                        "Replace the "
                        "file, or drop it from the list; shards finished so far are kept."
                    )
                skip.extend(skipped)
                processed += spec.stop - spec.start
                bar.update(spec.stop - spec.start)
                if spec.last:
                    for j, chunks in parts.items():
                        feats = np.concatenate(chunks) if chunks else np.zeros((0, encs[j].dim))
                        bad = int((~np.isfinite(feats)).any(axis=1).sum())
                        if bad:
                            warnings.warn(
                                f"{encs[j].name}: {bad} non-finite embeddings in shard {spec.k} "
                                "(try dtype float32).",
                                stacklevel=2,
                            )
                        writers[j].write_shard(spec.k, feats, skip)
                        written += 1
                    del acc[spec.k]
        for w in writers:
            w.finalize()
        from fmri2image.features.shards import open_feature_store

        stores = {e.name: open_feature_store(w.path) for e, w in zip(encs, writers)}
        first = next(iter(stores.values()))
        skipped_all = first.skipped
        if skipped_all and processed:
            shown = "; ".join(f"{s['path']} ({s['reason']})" for s in skipped_all[:3])
            warnings.warn(
                f"{len(skipped_all)} of {len(db)} images could not be decoded and were skipped "
                f"(listed under 'skipped' in each manifest.json): {shown}"
                f"{' ...' if len(skipped_all) > 3 else ''}",
                stacklevel=2,
            )
        return ExtractionResult(
            stores=stores,
            n_images=len(db),
            n_skipped=len(skipped_all),
            n_processed=processed,
            seconds=time.perf_counter() - t0,
            shards_written=written,
            shards_reused=reused,
            shards_seeded=seeded,
            skipped=skipped_all,
        )
