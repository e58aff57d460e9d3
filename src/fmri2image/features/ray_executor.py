"""Ray Data backend of the extraction engine (``extract_features(..., executor="ray")``).

The plan (which batches of which shards, for which encoders) is made by the driver
exactly as for the local executor.  Each planned batch becomes one row of a Ray
Dataset; ``map_batches`` sends rows to a pool of actors (a callable class holding the
encoders, ``num_gpus`` when the device is CUDA).  An actor decodes the batch's images
once with :func:`~fmri2image.features.extract.load_batch` (threads overlap the
decode), embeds them with :func:`~fmri2image.features.extract.embed_batch`, and
returns the embeddings.  The driver receives them in plan order
(``preserve_order``) and writes shards and manifests itself, so workers need read
access to the images but no shared output folder.  Shard boundaries, row order and
skipped images are identical to the local executor's; the numbers agree to float32
rounding (actors run torch with their own thread count, which can change the last
bits of a convolution), and a resumed Ray run is byte-identical to an uninterrupted
one on the same cluster.

Cluster selection: ``address=`` argument, else the ``RAY_ADDRESS`` environment
variable, else a local Ray instance (started here and shut down afterwards).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image.errors import ConfigError, require

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.features.base import Encoder
    from fmri2image.features.extract import BatchSpec

__all__ = ["RayExtractor", "iter_ray_batches"]

logger = logging.getLogger(__name__)

_SEP = "\0"  # joins a batch's paths into one string cell (NUL never occurs in a path)
_OPTION_KEYS = frozenset(
    {"num_actors", "num_cpus_per_actor", "num_gpus_per_actor", "decode_threads", "init_kwargs"}
)


class RayExtractor:
    """Ray Data callable class: decode + preprocess + embed one planned batch per row.

    Parameters
    ----------
    encoders : list of Encoder or str
        Encoder objects (shipped once per actor) or registry names (built in the actor
        with ``get_encoder(name, device=device, dtype=dtype)``).
    device, dtype : str
        For encoders given by name.
    min_side : int or None
        JPEG draft-decode bound, as in the local executor.
    decode_threads : int
        Threads decoding images of a batch in parallel (PIL releases the GIL).
    """

    def __init__(
        self,
        encoders: Sequence[Encoder | str],
        device: str,
        dtype: str,
        min_side: int | None,
        decode_threads: int = 1,
    ) -> None:
        if str(device).startswith("cuda"):
            import torch

            # This actor's own process: deterministic cuDNN, as the local executor.
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        encs = []
        for e in encoders:
            if isinstance(e, str):
                from fmri2image.features import get_encoder

                e = get_encoder(e, device=device, dtype=dtype)
            encs.append(e)
        self.encoders = encs
        self.min_side = min_side
        self.pool = ThreadPoolExecutor(decode_threads) if decode_threads > 1 else None

    def _load(self, paths: list[str], start: int, enc_ids: list[int]) -> dict[str, Any]:
        import torch

        from fmri2image.features.extract import load_batch

        fns = [self.encoders[j].preprocess for j in enc_ids]
        if self.pool is None:
            return load_batch(paths, 0, len(paths), fns, self.min_side) | {"offset": start}
        # One image per task; merged in order, so the batch equals the sequential one.
        parts = list(
            self.pool.map(
                lambda i: load_batch(paths, i, i + 1, fns, self.min_side), range(len(paths))
            )
        )
        index = np.concatenate([p["index"] for p in parts])
        skipped = [s for p in parts for s in p["skipped"]]
        tensors = []
        for j in range(len(fns)):
            ts = [p["tensors"][j] for p in parts if p["tensors"][j] is not None]
            tensors.append(torch.cat(ts) if ts else None)
        return {"index": index, "skipped": skipped, "tensors": tensors, "offset": start}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from fmri2image.features.extract import embed_batch

        out: dict[str, list] = {"b": [], "meta": []}
        out.update({f"emb{j}": [] for j in range(len(self.encoders))})
        for b, paths_cell, start, encs in zip(
            batch["b"], batch["paths"], batch["start"], batch["encoders"]
        ):
            paths = str(paths_cell).split(_SEP)
            enc_ids = [int(x) for x in str(encs).split(",")]
            item = self._load(paths, int(start), enc_ids)
            with torch.inference_mode():
                embs = {
                    j: embed_batch(self.encoders[j], t) for j, t in zip(enc_ids, item["tensors"])
                }
            out["b"].append(int(b))
            index = (item["index"] + int(start)).tolist()
            skipped = [(int(i) + int(start), p, r) for i, p, r in item["skipped"]]
            out["meta"].append(json.dumps({"index": index, "skipped": skipped}))
            for j in range(len(self.encoders)):
                arr = embs.get(j)
                out[f"emb{j}"].append(
                    b"" if arr is None else np.ascontiguousarray(arr, np.float32).tobytes()
                )
        return {
            "b": np.asarray(out["b"], dtype=np.int64),
            "meta": np.asarray(out["meta"], dtype=object),
            **{k: np.asarray(v, dtype=object) for k, v in out.items() if k.startswith("emb")},
        }


def _init_ray(ray, address: str | None, init_kwargs: Mapping[str, Any]) -> bool:
    """Connect to / start Ray unless already initialized; True if we initialized it."""
    if ray.is_initialized():
        return False
    addr = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {"include_dashboard": False, "log_to_driver": False, **dict(init_kwargs)}
    if addr:
        kwargs.pop("num_cpus", None)
        kwargs.pop("num_gpus", None)
    logger.info("starting Ray (%s)", addr or "local")
    ray.init(address=addr, **kwargs)
    return True


def iter_ray_batches(
    paths: np.ndarray,
    batches: Sequence[BatchSpec],
    encoders: Sequence[Encoder | str],
    built: Sequence[Encoder],
    *,
    address: str | None = None,
    options: Mapping[str, Any] | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    min_side: int | None = None,
) -> Iterator[tuple[BatchSpec, np.ndarray, list, dict[int, np.ndarray]]]:
    """Run planned batches on Ray; yield ``(spec, index, skipped, embeddings)`` in plan order.

    Parameters
    ----------
    paths : ndarray of bytes, shape (n_images,)
        The image list.
    batches : sequence of BatchSpec
        The plan made by the driver.
    encoders : sequence of Encoder or str
        What the user passed (names are rebuilt in the actors; objects are shipped).
    built : sequence of Encoder
        The driver's encoders (for dims).
    options : mapping, optional
        ``num_actors`` (default: cluster CPUs // ``num_cpus_per_actor``, or GPUs),
        ``num_cpus_per_actor`` (1 on CPU, 4 with GPUs), ``num_gpus_per_actor``
        (1 when ``device`` is CUDA, else 0), ``decode_threads`` (=
        ``num_cpus_per_actor``), ``init_kwargs`` (for ``ray.init``).
    """
    options = dict(options or {})
    unknown = set(options) - _OPTION_KEYS
    if unknown:
        raise ConfigError(
            f"Unknown Ray executor options {sorted(unknown)}; known: {sorted(_OPTION_KEYS)}."
        )
    feature = "The Ray executor (executor='ray')"
    ray = require("ray", "ray", feature)
    require("ray.data", "ray", feature)

    started = _init_ray(ray, address, options.get("init_kwargs", {}))
    try:
        gpu = str(device).startswith("cuda")
        n_gpus = float(options.get("num_gpus_per_actor", 1 if gpu else 0))
        n_cpus = float(options.get("num_cpus_per_actor", 4 if n_gpus else 1))
        resources = ray.cluster_resources()
        if options.get("num_actors"):
            n_actors = int(options["num_actors"])
        elif n_gpus:
            n_actors = max(1, int(resources.get("GPU", 0) // n_gpus))
        else:
            n_actors = max(1, int(resources.get("CPU", 1) // n_cpus))
        n_actors = min(n_actors, len(batches))
        threads = int(options.get("decode_threads", max(1, int(n_cpus))))
        actor_device = device if (n_gpus or not gpu) else "cpu"

        rows = [
            {
                "b": i,
                "paths": _SEP.join(p.decode() for p in paths[b.start : b.stop]),
                "start": b.start,
                "encoders": ",".join(str(j) for j in b.encoders),
            }
            for i, b in enumerate(batches)
        ]
        ctx = ray.data.DataContext.get_current()
        saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        try:
            ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), 4 * n_actors))
            ds = ds.map_batches(
                RayExtractor,
                batch_size=1,
                batch_format="numpy",
                fn_constructor_kwargs={
                    "encoders": list(encoders),
                    "device": actor_device,
                    "dtype": dtype,
                    "min_side": min_side,
                    "decode_threads": threads,
                },
                concurrency=n_actors,
                num_cpus=n_cpus,
                num_gpus=n_gpus,
            )
            expected = 0
            for row in ds.iter_rows():
                b = int(row["b"])
                if b != expected:  # pragma: no cover - guards preserve_order
                    raise RuntimeError(f"Ray returned batch {b} while expecting {expected}")
                expected += 1
                spec = batches[b]
                meta = json.loads(row["meta"])
                embs = {
                    j: np.frombuffer(row[f"emb{j}"], dtype=np.float32).reshape(-1, built[j].dim)
                    for j in spec.encoders
                }
                skipped = [tuple(s) for s in meta["skipped"]]
                yield spec, np.asarray(meta["index"], dtype=np.int64), skipped, embs
        finally:
            ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
    finally:
        if started:
            ray.shutdown()
