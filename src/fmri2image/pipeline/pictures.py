"""Pictures, one per request, written resumably: what the generation stage runs.

For each test image a :class:`~fmri2image.generation.GenerationRequest` carries the
label (retrieved, true or random), the embedding with the training statistics of
its encoder, the image's seed and optionally an initial image (img2img).
:func:`make_images` makes the picture of every request not already in the folder::

    <stem>.png           the picture
    <stem>.json          its record: a verified manifest (fmri2image._manifest) with the
                         request's key, the picture's SHA-256, the prompt or conditioning,
                         the label the picture shows, seed, flagged, attempts, seconds
    generation.parquet   the records as one table

Each picture is written atomically and its record after it, so a killed run keeps
every finished image, and a rerun skips an image whose record carries the same key
(a hash of the generator, its options and the request) and whose picture still
matches the record.  Pictures are made in this process or by Ray actors (one
generator replica each; :func:`ray_runner`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image import _io
from fmri2image._manifest import manifest_problem, write_manifest
from fmri2image.errors import ConfigError
from fmri2image.imagenet import is_wnid, prompt_name

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.generation import GenerationRequest, GenerationResult, Generator

log = logging.getLogger(__name__)

__all__ = [
    "EXECUTION_OPTIONS",
    "RECORD_FORMAT",
    "build_requests",
    "make_images",
    "random_training_rows",
    "ray_runner",
    "read_records",
    "request_key",
]

RECORD_FORMAT = "fmri2image.picture"

#: Options that change where or how fast a generator runs, not the picture it makes:
#: left out of the reuse key, so moving a run to another cache or enabling CPU
#: offload does not remake finished images.
EXECUTION_OPTIONS = frozenset({"local_files_only", "cache_dir", "offload", "attention_slicing"})

#: Columns of ``generation.parquet``.
_TABLE_COLUMNS = (
    "stem", "file", "wnid", "name", "label", "conditioning", "seed", "flagged", "attempts",
    "seconds",
)  # fmt: skip


def _embedding_hash(x: np.ndarray | None) -> str:
    if x is None:
        return ""
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


def _image_hash(img: Any) -> str:
    if img is None:
        return ""
    return hashlib.sha256(img.convert("RGB").tobytes()).hexdigest()[:16]


def request_key(generator: Mapping[str, Any], request: GenerationRequest) -> str:
    """Identity of one picture: generator + options + everything in the request."""
    generator = dict(generator)
    generator["options"] = {
        k: v for k, v in dict(generator.get("options", {})).items() if k not in EXECUTION_OPTIONS
    }
    return _io.json_sha256(
        {
            "generator": generator,
            "stem": request.stem,
            "seed": request.seed,
            "wnid": request.wnid,
            "name": request.name,
            "encoder": request.encoder,
            "embedding": _embedding_hash(request.embedding),
            "init": _image_hash(request.init_image),
        }
    )


def random_training_rows(seed: int, stems: Sequence[str], n_train: int) -> list[int]:
    """The floor's draw: one training stimulus per test image, from the image's own
    seed (so the draw does not depend on which other images are made)."""
    from fmri2image.generation import image_seed

    return [int(np.random.default_rng(image_seed(seed, s)).integers(n_train)) for s in stems]


def build_requests(
    stems: Sequence[str],
    labels: Sequence[str | None],
    embeddings: np.ndarray,
    *,
    seed: int,
    encoder: str,
    stats: Any,
    init_images: Sequence[Any] | None = None,
) -> list[GenerationRequest]:
    """One request per test image: its label (a WordNet id, or free text) and the name
    a prompt says, its embedding, seed and initial image."""
    from fmri2image.generation import GenerationRequest

    inits = list(init_images) if init_images is not None else [None] * len(stems)
    return [
        GenerationRequest(
            stem=stem,
            seed=seed,
            wnid=label if label and is_wnid(label) else None,
            name=prompt_name(label) if label else None,
            embedding=embeddings[i],
            encoder=encoder,
            stats=stats,
            init_image=inits[i],
        )
        for i, (stem, label) in enumerate(zip(stems, labels))
    ]


def _save_png(path: Path, img: Any) -> None:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG", compress_level=_io.PNG_COMPRESS_LEVEL)
    with _io.atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def _save_result(
    folder: Path, request: GenerationRequest, result: GenerationResult, key: str
) -> None:
    """The picture, then its record: a record on disk means its picture is complete."""
    png = f"{result.stem}.png"
    _save_png(folder / png, result.image)
    shown = result.extra.get("wnid") or request.wnid or request.name  # retrieve: its image's
    write_manifest(
        folder / f"{result.stem}.json",
        {
            "format": RECORD_FORMAT,
            "key": key,
            "stem": result.stem,
            "file": png,
            "encoder": request.encoder,
            "wnid": request.wnid,
            "name": request.name,
            "label": shown,
            "conditioning": result.conditioning,
            "seed": int(result.seed),
            "flagged": bool(result.flagged),
            "attempts": int(result.attempts),
            "seconds": float(result.seconds),
            "extra": result.extra,
        },
        files=[png],
    )


def _is_done(folder: Path, stem: str, key: str) -> bool:
    problem = manifest_problem(folder / f"{stem}.json", format=RECORD_FORMAT, identity={"key": key})
    if problem is not None and "changed after" in problem:
        log.warning("%s; making it again", problem)
    return problem is None


def read_records(folder: str | os.PathLike, stems: Sequence[str]) -> list[dict[str, Any]]:
    """The records of the pictures of ``stems`` in ``folder`` that exist."""
    folder = Path(folder)
    return [_io.load_json(folder / f"{s}.json") for s in stems if (folder / f"{s}.json").is_file()]


def _write_table(folder: Path, stems: Sequence[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = read_records(folder, stems)
    if not rows:
        return
    table = pa.table({c: [r.get(c) for r in rows] for c in _TABLE_COLUMNS})
    with _io.atomic_path(folder / "generation.parquet") as tmp:
        pq.write_table(table, tmp)


class _LocalRunner:
    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    def map(self, chunks: Sequence[Sequence[GenerationRequest]]) -> Iterator[tuple[Any, Any]]:
        for chunk in chunks:
            yield chunk, self.generator.generate(chunk)

    def close(self) -> None:
        pass


def make_images(
    generator: Generator,
    requests: Sequence[GenerationRequest],
    folder: Path,
    *,
    batch_size: int = 4,
    progress: bool = True,
    desc: str | None = None,
    runner: Any = None,
) -> dict[str, int]:
    """Make the picture of every request not already in ``folder``, resumably.

    Parameters
    ----------
    generator : Generator
        Describes the pictures (its options are part of each request's key); makes
        them unless ``runner`` is given.
    requests : sequence of GenerationRequest
    folder : Path
    batch_size : int
        Requests per generator call (and per resume step).
    progress : bool
    desc : str, optional
        The progress bar's label.
    runner : optional
        What makes the pictures (:func:`ray_runner`); default: ``generator`` here.

    Returns
    -------
    dict
        ``{"made": n, "reused": n, "flagged": n}``.
    """
    from tqdm.auto import tqdm

    gen_desc = generator.describe()
    keys = {r.stem: request_key(gen_desc, r) for r in requests}
    todo = [r for r in requests if not _is_done(folder, r.stem, keys[r.stem])]
    chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    runner = runner or _LocalRunner(generator)
    bar = tqdm(total=len(todo), desc=desc or f"generate ({generator.name})", unit="img",
               **_io.tqdm_kwargs(progress and bool(todo)))  # fmt: skip
    try:
        for chunk, results in runner.map(chunks):
            if len(results) != len(chunk):
                raise RuntimeError(
                    f"generator {generator.name!r} returned {len(results)} results for "
                    f"{len(chunk)} requests"
                )
            for req, res in zip(chunk, results):
                _save_result(folder, req, res, keys[req.stem])
                if res.flagged:
                    log.warning(
                        "[%s] %s: the safety checker flagged every attempt (%d); the image is "
                        "marked flagged and must not be scored as a reconstruction",
                        req.encoder, req.stem, res.attempts,
                    )  # fmt: skip
            bar.update(len(chunk))
    finally:
        bar.close()
        runner.close()
    stems = [r.stem for r in requests]
    _write_table(folder, stems)
    flagged = sum(bool(r.get("flagged")) for r in read_records(folder, stems))
    return {"made": len(todo), "reused": len(requests) - len(todo), "flagged": flagged}


# ------------------------------------------------------------------------- Ray
def ray_runner(
    name: str,
    options: Mapping[str, Any],
    *,
    device: str,
    dtype: str,
    workers: int | None,
    generator: Generator | None = None,
) -> _RayRunner:
    """Ray actors, each holding a generator replica: built by name, or a copy of
    ``generator`` (an injected one)."""
    from fmri2image.errors import require

    ray = require("ray", "ray", "generation.executor = 'ray' (--executor ray)")
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    gpus = device.startswith("cuda")
    n_gpus = int(ray.cluster_resources().get("GPU", 0)) if gpus else 0
    workers = workers or (n_gpus if gpus and n_gpus else 1)
    if gpus and n_gpus < workers:
        raise ConfigError(
            f"--executor ray --device {device}: {workers} workers need {workers} GPUs, the "
            f"Ray cluster has {n_gpus}; pass --workers {max(n_gpus, 1)} or more GPUs."
        )

    @ray.remote(num_gpus=1 if gpus else 0, num_cpus=1)
    class _Replica:
        def __init__(self, name: str, device: str, dtype: str, opts: dict[str, Any], built) -> None:
            from fmri2image.generation import get_generator

            if built is not None:
                self.gen = built
            else:  # each actor sees its own GPU as cuda:0 (Ray sets CUDA_VISIBLE_DEVICES)
                dev = "cuda" if device.startswith("cuda") else device
                self.gen = get_generator(name, device=dev, dtype=dtype, **opts)

        def generate(self, chunk):
            return self.gen.generate(chunk)

    replicas = [
        _Replica.remote(name, device, dtype, dict(options), generator) for _ in range(workers)
    ]
    return _RayRunner(ray, replicas)


class _RayRunner:
    """Chunks round-robin over the replicas; results come back in submission order."""

    def __init__(self, ray: Any, replicas: list[Any]) -> None:
        self.ray, self.replicas = ray, replicas

    def map(self, chunks: Sequence[Sequence[GenerationRequest]]) -> Iterator[tuple[Any, Any]]:
        window = 2 * len(self.replicas)
        pending: list[tuple[Sequence[GenerationRequest], Any]] = []
        for i, chunk in enumerate(chunks):
            pending.append((chunk, self.replicas[i % len(self.replicas)].generate.remote(chunk)))
            if len(pending) >= window:
                c, ref = pending.pop(0)
                yield c, self.ray.get(ref)
        for c, ref in pending:
            yield c, self.ray.get(ref)

    def close(self) -> None:
        for r in self.replicas:
            self.ray.kill(r)
