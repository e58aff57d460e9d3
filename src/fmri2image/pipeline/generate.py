"""``fmri2image generate``: pictures for every test image of a decode run.

For each encoder of the run and each test image, one
:class:`~fmri2image.generation.GenerationRequest` carries the retrieved label, the
predicted embedding with the training statistics of its encoder, and optionally
an initial image (``--init invert``: the feature inversion of the same prediction,
so that text-to-image keeps its low-level structure).  Output::

    OUT/generation.json                  resolved options, generator, source run
    OUT/<encoder>/<stem>.png             one picture per test image
    OUT/<encoder>/<stem>.json            its record (conditioning, seed, flagged, key)
    OUT/<encoder>/generation.parquet     the records as one table
    OUT/<encoder>/init/<stem>.png        initial images, with --init invert

Each picture is written atomically and its record after it, so a killed run keeps
every finished image, and a rerun skips an image whose record carries the same
key (a hash of the generator, its options and the request: label, embedding,
initial image, seed) and whose picture still matches the SHA-256 in the record.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image import _io
from fmri2image._lock import output_lock
from fmri2image.errors import ConfigError
from fmri2image.imagenet import prompt_name
from fmri2image.pipeline.decode_run import DecodeRun

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.generation import GenerationRequest, GenerationResult, Generator

log = logging.getLogger(__name__)

__all__ = [
    "GenerateConfig",
    "GenerateSummary",
    "build_requests",
    "make_images",
    "random_training_rows",
    "request_key",
    "run_generate",
]

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class GenerateConfig:
    """Settings of one generation run (every field is a flag of ``fmri2image generate``).

    Attributes
    ----------
    generator : str
        Registry name (``sd15``, ``sd-turbo``, ``diffusers:<id>``, ``unclip``,
        ``invert``, ``retrieve``).
    encoders : tuple of str, optional
        Encoders of the decode run to generate for (default: all).
    labels_from : str, optional
        Database whose retrieved label conditions label-based generators (default:
        the decode run's first).
    init : str, optional
        ``"invert"`` (feature inversion of the same prediction) or a folder holding
        ``<encoder>/<stem>.png`` from an earlier ``generate``: the initial image of
        img2img.
    seed : int
        Run seed; each image's seed derives from it and the stimulus stem.
    device, dtype : str
        Where and in what precision the generator runs (``dtype="auto"``: float16 on
        CUDA, else float32).
    batch_size : int
        Requests per generator call (and per resume step).
    executor : {"local", "ray"}
        ``ray``: one generator replica per Ray actor (one GPU each on GPU devices).
    workers : int or None
        Ray actors (default: the GPUs, or 1 on CPU).
    options : mapping
        Generator options (see ``fmri2image generate --generator NAME --list-options``).
    condition : {"predicted", "true", "random"}
        What the generator is fed: the decoded embedding and retrieved label (the
        method), the true stimulus embedding and true label (the ceiling a perfect
        decoder reaches), or a random training stimulus's embedding and label, drawn
        per image from its seed (the floor).  Scores between the two bounds are what
        the brain contributes; the rest is the generator's.
    """

    generator: str
    encoders: tuple[str, ...] | None = None
    labels_from: str | None = None
    init: str | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 4
    executor: str = "local"
    workers: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    condition: str = "predicted"

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["options"] = dict(self.options)
        return d


@dataclass(frozen=True)
class GenerateSummary:
    """What a generation run made."""

    out_dir: Path
    generator: dict[str, Any]
    n_made: dict[str, int]
    n_reused: dict[str, int]
    n_flagged: dict[str, int]
    seconds: float

    def format(self) -> str:
        lines = [f"Generated with {self.generator['generator']} into {self.out_dir}:"]
        for enc in self.n_made:
            lines.append(
                f"  {enc}: {self.n_made[enc]} made, {self.n_reused[enc]} reused, "
                f"{self.n_flagged[enc]} flagged by the safety checker"
            )
        lines.append(f"  {self.seconds:.1f} s")
        return "\n".join(lines)


def _embedding_hash(x: np.ndarray | None) -> str:
    if x is None:
        return ""
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


def _image_hash(img: Any) -> str:
    if img is None:
        return ""
    return hashlib.sha256(img.convert("RGB").tobytes()).hexdigest()[:16]


#: Options that change where or how fast a generator runs, not the picture it makes:
#: left out of the reuse key, so moving a run to another cache or enabling CPU
#: offload does not remake finished images.
EXECUTION_OPTIONS = frozenset({"local_files_only", "cache_dir", "offload", "attention_slicing"})


def request_key(generator: Mapping[str, Any], request: GenerationRequest) -> str:
    """Identity of one picture: generator + options + everything in the request."""
    generator = dict(generator)
    generator["options"] = {
        k: v for k, v in dict(generator.get("options", {})).items() if k not in EXECUTION_OPTIONS
    }
    payload = {
        "generator": generator,
        "stem": request.stem,
        "seed": request.seed,
        "wnid": request.wnid,
        "name": request.name,
        "encoder": request.encoder,
        "embedding": _embedding_hash(request.embedding),
        "init": _image_hash(request.init_image),
    }
    text = json.dumps(_io.strict_json(payload), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _save_png(path: Path, img: Any) -> None:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    with _io.atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def _record(
    result: GenerationResult, request: GenerationRequest, key: str, sha256: str
) -> dict[str, Any]:
    return {
        "stem": result.stem,
        "file": f"{result.stem}.png",
        "sha256": sha256,
        "encoder": request.encoder,
        "wnid": request.wnid,
        "name": request.name,
        "conditioning": result.conditioning,
        "seed": int(result.seed),
        "flagged": bool(result.flagged),
        "attempts": int(result.attempts),
        "seconds": float(result.seconds),
        "key": key,
        "extra": result.extra,
    }


def _save_result(
    folder: Path, request: GenerationRequest, result: GenerationResult, key: str
) -> None:
    """The picture, then its record: a record on disk means its picture is complete."""
    png = folder / f"{result.stem}.png"
    _save_png(png, result.image)
    record = _record(result, request, key, _io.file_sha256(png))
    _io.save_json(folder / f"{result.stem}.json", record)


def _load_images(paths: Sequence[Path]) -> list[Any]:
    from fmri2image.data.images import decode_image

    return [decode_image(p, None) for p in paths]


def _is_done(folder: Path, stem: str, key: str) -> bool:
    rec, png = folder / f"{stem}.json", folder / f"{stem}.png"
    if not (rec.is_file() and png.is_file()):
        return False
    try:
        record = _io.load_json(rec)
    except Exception:  # a damaged record: make the image again
        return False
    if record.get("key") != key:
        return False
    # Reused only if the picture is the one the record describes.
    if record.get("sha256") != _io.file_sha256(png):
        log.warning("%s changed since it was generated (checksum); making it again", png)
        return False
    return True


def _write_table(folder: Path, stems: Sequence[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [_io.load_json(folder / f"{s}.json") for s in stems if (folder / f"{s}.json").is_file()]
    if not rows:
        return
    cols = (
        "stem",
        "file",
        "wnid",
        "name",
        "conditioning",
        "seed",
        "flagged",
        "attempts",
        "seconds",
    )
    table = pa.table({c: [r.get(c) for r in rows] for c in cols})
    with _io.atomic_path(folder / "generation.parquet") as tmp:
        pq.write_table(table, tmp)


def make_images(
    generator: Generator,
    requests: Sequence[GenerationRequest],
    folder: Path,
    *,
    batch_size: int = 4,
    progress: bool = True,
    desc: str | None = None,
) -> dict[str, int]:
    """Make the picture of every request not already in ``folder``, resumably.

    Each picture is written with its record (key and SHA-256); a request whose record
    matches is reused.  Writes ``folder/generation.parquet`` at the end.

    Returns
    -------
    dict
        ``{"made": n, "reused": n, "flagged": n}``.
    """
    from tqdm.auto import tqdm

    gen_desc = generator.describe()
    keys = {r.stem: request_key(gen_desc, r) for r in requests}
    todo = [r for r in requests if not _is_done(folder, r.stem, keys[r.stem])]
    bar = tqdm(total=len(todo), desc=desc or f"generate ({generator.name})", unit="img",
               **_io.tqdm_kwargs(progress and bool(todo)))  # fmt: skip
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            _save_chunk(generator.name, chunk, generator.generate(chunk),
                        lambda r: folder, lambda r: keys[r.stem])  # fmt: skip
            bar.update(len(chunk))
    finally:
        bar.close()
    stems = [r.stem for r in requests]
    _write_table(folder, stems)
    made = len(todo)
    return {"made": made, "reused": len(requests) - made, "flagged": _n_flagged(folder, stems)}


def _save_chunk(
    name: str,
    chunk: Sequence[GenerationRequest],
    results: Sequence[GenerationResult],
    folder_of: Callable[[GenerationRequest], Path],
    key_of: Callable[[GenerationRequest], str],
) -> None:
    """Save one generator call's pictures with their records; say which were flagged."""
    if len(results) != len(chunk):
        raise RuntimeError(
            f"generator {name!r} returned {len(results)} results for {len(chunk)} requests"
        )
    for req, res in zip(chunk, results):
        _save_result(folder_of(req), req, res, key_of(req))
        if res.flagged:
            log.warning(
                "[%s] %s: the safety checker flagged every attempt (%d); the image is "
                "marked flagged and must not be scored as a reconstruction",
                req.encoder, req.stem, res.attempts,
            )  # fmt: skip


def _n_flagged(folder: Path, stems: Sequence[str]) -> int:
    """How many of the pictures in ``folder`` their records mark flagged."""
    return sum(bool(_io.load_json(folder / f"{s}.json").get("flagged")) for s in stems)


class _LocalRunner:
    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    def map(self, chunks: Sequence[Sequence[GenerationRequest]]):
        for chunk in chunks:
            yield chunk, self.generator.generate(chunk)

    def close(self) -> None:
        pass


def _inverted_inits(
    requests: dict[str, list[GenerationRequest]], config: GenerateConfig, out: Path
) -> dict[str, list[Any]]:
    """Feature inversions of each prediction, saved under OUT/<encoder>/init/."""
    from fmri2image.features.shards import store_dirname
    from fmri2image.generation import get_generator

    inverter = get_generator("invert", device=config.device)
    for enc in requests:
        inverter.check(enc)
    inits: dict[str, list[Any]] = {}
    for enc, reqs in requests.items():
        folder = out / store_dirname(enc) / "init"
        log.info("[%s] inverting the predictions for --init invert", enc)
        make_images(inverter, reqs, folder, batch_size=config.batch_size,
                    desc=f"invert ({enc}, --init)")  # fmt: skip
        inits[enc] = _load_images([folder / f"{r.stem}.png" for r in reqs])
    return inits


def _folder_inits(
    folder: Path, requests: dict[str, list[GenerationRequest]]
) -> dict[str, list[Any]]:
    from fmri2image.features.shards import store_dirname

    inits: dict[str, list[Any]] = {}
    for enc, reqs in requests.items():
        paths = [folder / store_dirname(enc) / f"{r.stem}.png" for r in reqs]
        for path in paths:
            if not path.is_file():
                raise ConfigError(
                    f"--init {folder}: {path} is missing; pass the --out of an earlier "
                    "`fmri2image generate` run over the same decode run, or --init invert."
                )
        inits[enc] = _load_images(paths)
    return inits


#: What a generator can be fed (GenerateConfig.condition, --condition).
CONDITIONS = ("predicted", "true", "random")


def _conditions(
    run: DecodeRun,
    outputs: Any,
    encoder: str,
    train: np.ndarray,
    labels_from: str | None,
    config: GenerateConfig,
) -> tuple[np.ndarray, list[str | None]]:
    """Embeddings and labels the requests carry, per ``config.condition``."""

    n = len(run.test_stems)
    if config.condition == "predicted":
        labels = outputs.top1_labels(labels_from) if labels_from else [None] * n
        return outputs.predictions, list(labels)
    if config.condition == "true":
        return run.true_test_embeddings(encoder), list(run.test_wnids)
    wnids = run.training_wnids(encoder)
    rows = random_training_rows(config.seed, run.test_stems, len(train))
    return train[rows], [wnids[r] for r in rows]


def random_training_rows(seed: int, stems: Sequence[str], n_train: int) -> list[int]:
    """The floor's draw: one training stimulus per test image, from the image's own
    seed (so the draw does not depend on which other images are made)."""
    from fmri2image.generation import image_seed

    return [int(np.random.default_rng(image_seed(seed, s)).integers(n_train)) for s in stems]


def build_requests(
    stems: Sequence[str],
    wnids: Sequence[str | None],
    embeddings: np.ndarray,
    *,
    seed: int,
    encoder: str,
    stats: Any,
) -> list[GenerationRequest]:
    """One request per test image: its label (and prompt name), embedding, seed."""
    from fmri2image.generation import GenerationRequest

    return [
        GenerationRequest(
            stem=stem,
            seed=seed,
            wnid=wnid,
            name=prompt_name(wnid) if wnid else None,
            embedding=embeddings[i],
            encoder=encoder,
            stats=stats,
        )
        for i, (stem, wnid) in enumerate(zip(stems, wnids))
    ]


def run_generate(
    decode_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: GenerateConfig,
    *,
    generator: Generator | None = None,
    progress: bool = True,
) -> GenerateSummary:
    """Make a picture for every test image of a decode run, per encoder.

    Parameters
    ----------
    decode_dir : path
        The ``--out`` of ``fmri2image decode`` (or a ``demo`` folder).
    out_dir : path
        Where the pictures go (see the module docstring).
    config : GenerateConfig
    generator : Generator, optional
        A built generator to use instead of building ``config.generator`` (tests).
    progress : bool
        Show a progress bar.

    Raises
    ------
    Fmri2ImageError
        Bad options, a generator that cannot take an encoder's embeddings, or a
        decode run that lacks what the generator needs, all before any image is made.
    """
    import dataclasses

    from tqdm.auto import tqdm

    from fmri2image.features.shards import store_dirname
    from fmri2image.generation import EmbeddingStats, get_generator
    from fmri2image.generation.base import GENERATORS
    from fmri2image.pipeline import preflight

    t0 = time.perf_counter()
    if config.executor not in EXECUTORS:
        raise ConfigError(f"--executor must be local or ray, got {config.executor!r}.")
    if config.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {config.batch_size}.")
    if config.condition not in CONDITIONS:
        raise ConfigError(
            f"--condition must be one of {', '.join(CONDITIONS)}, got {config.condition!r}."
        )
    run = DecodeRun.load(decode_dir)
    encoders = tuple(config.encoders or run.encoders)
    outputs = {enc: run.outputs(enc) for enc in encoders}
    entry = GENERATORS.get(config.generator) if generator is None else None
    conditioning = generator.conditioning if generator is not None else entry.conditioning
    labels_from = None
    if conditioning == "label":
        first = outputs[encoders[0]].databases
        labels_from = config.labels_from or (first[0] if first else None)
        if labels_from is None:
            raise ConfigError(f"The decode run {run.root} retrieved no labels; run decode again.")
        for out_ in outputs.values():
            out_.top1_labels(labels_from)  # exists for every encoder, or a ConfigError
    if config.init not in (None, "invert") and not Path(config.init).is_dir():
        raise ConfigError(
            f"--init must be 'invert' or a folder from an earlier `fmri2image generate`, "
            f"got {config.init!r} (no such folder)."
        )
    options = dict(config.options)
    if config.generator == "retrieve" and "database" not in options and generator is None:
        store = run.image_database_store(encoders[0])
        if store is None:
            raise ConfigError(
                "--generator retrieve needs an image database, and the decode run used "
                "none; decode with --database IMAGE_FOLDER (or a feature folder from "
                "`fmri2image extract`), or pass --option database=DIR."
            )
        options["database"] = str(store.parent)
    preflight.check_device(config.device)
    out = Path(out_dir)
    preflight.check_output_dir(out)
    injected = generator is not None
    if generator is None:
        generator = get_generator(
            config.generator, device=config.device, dtype=config.dtype, **options
        )
    for enc in encoders:  # e.g. unclip refuses resnet50 here, before any image is made
        generator.check(enc)
    desc = generator.describe()

    # One writer at a time: two generate runs into one --out would mix their pictures.
    with output_lock(out):
        requests: dict[str, list[GenerationRequest]] = {}
        for enc in encoders:
            train = run.training_embeddings(enc)
            stats = EmbeddingStats.from_embeddings(train)
            embeddings, labels = _conditions(run, outputs[enc], enc, train, labels_from, config)
            requests[enc] = build_requests(
                run.test_stems, labels, embeddings, seed=config.seed, encoder=enc, stats=stats
            )
        if config.init == "invert":
            inits = _inverted_inits(requests, config, out)
        elif config.init:
            inits = _folder_inits(Path(config.init), requests)
        else:
            inits = {}
        for enc, images in inits.items():
            requests[enc] = [
                dataclasses.replace(r, init_image=img) for r, img in zip(requests[enc], images)
            ]

        _io.save_json(
            out / "generation.json",
            {
                "decode_run": str(run.root),
                "config": config.to_dict(),
                "generator": desc,
                "encoders": list(encoders),
                "labels_from": labels_from,
            },
        )
        todo: list[GenerationRequest] = []
        keys: dict[tuple[str, str], str] = {}
        n_reused = {enc: 0 for enc in encoders}
        for enc, reqs in requests.items():
            folder = out / store_dirname(enc)
            for r in reqs:
                key = request_key(desc, r)
                keys[(enc, r.stem)] = key
                if _is_done(folder, r.stem, key):
                    n_reused[enc] += 1
                else:
                    todo.append(r)
        chunks = [todo[i : i + config.batch_size] for i in range(0, len(todo), config.batch_size)]
        runner: Any = (
            _LocalRunner(generator)
            if config.executor == "local"
            else _ray_runner(config, options, generator if injected else None)
        )
        n_made = {enc: 0 for enc in encoders}
        bar = tqdm(total=len(todo), desc=f"generate ({config.generator})", unit="img",
                   **_io.tqdm_kwargs(progress and bool(todo)))  # fmt: skip
        try:
            for chunk, results in runner.map(chunks):
                _save_chunk(config.generator, chunk, results,
                            lambda r: out / store_dirname(r.encoder),
                            lambda r: keys[(r.encoder, r.stem)])  # fmt: skip
                for req in chunk:
                    n_made[req.encoder] += 1
                bar.update(len(chunk))
        finally:
            bar.close()
            runner.close()
        n_flagged = {}
        for enc in encoders:
            folder = out / store_dirname(enc)
            _write_table(folder, run.test_stems)
            n_flagged[enc] = _n_flagged(folder, run.test_stems)
        return GenerateSummary(out, desc, n_made, n_reused, n_flagged, time.perf_counter() - t0)

    # ------------------------------------------------------------------------- Ray


def _ray_runner(config: GenerateConfig, options: Mapping[str, Any], generator: Generator | None):
    """Ray actors, each holding a replica: built by name, or a copy of ``generator``."""
    from fmri2image.errors import require

    ray = require("ray", "ray", "--executor ray")
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    gpus = config.device.startswith("cuda")
    n_gpus = int(ray.cluster_resources().get("GPU", 0)) if gpus else 0
    workers = config.workers or (n_gpus if gpus and n_gpus else 1)
    if gpus and n_gpus < workers:
        raise ConfigError(
            f"--executor ray --device {config.device}: {workers} workers need {workers} GPUs, "
            f"the Ray cluster has {n_gpus}; pass --workers {max(n_gpus, 1)} or more GPUs."
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
        _Replica.remote(config.generator, config.device, config.dtype, dict(options), generator)
        for _ in range(workers)
    ]
    return _RayRunner(ray, replicas)


class _RayRunner:
    """Chunks round-robin over the replicas; results come back in submission order."""

    def __init__(self, ray: Any, replicas: list[Any]) -> None:
        self.ray, self.replicas = ray, replicas

    def map(self, chunks: Sequence[Sequence[GenerationRequest]]):
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
