"""Benchmark of a warm run at ImageNet scale: what reuse costs per model, fast vs full.

A warm ``run`` / ``compare`` (every stage reused) must still make sure that what it
reuses is what was computed.  For an image-folder database that means, per model,
the database's scan (its key covers every image file) and the check of its feature
store (one artifact of the stage graph).  This bench builds, in a temporary folder:

* a synthetic ImageNet-style folder: ``--entries`` empty files (they need not be
  real JPEGs to be scanned and keyed) in 1000 class folders named like wnids;
* the database stage of one model over it, made by the real stage graph
  (:func:`fmri2image.pipeline.stages.database_stage` with its ``run`` replaced by one
  that writes a feature store of the real layout without an encoder: one 2048-d
  float32 row per image in ``shard-NNNNN.npy`` files of 4096 rows, *sparse* (so
  they cost no disk), a real ``images.parquet`` and a ``manifest.json``), so the
  artifact manifest, its checksums and its fingerprint are written by the real code.

Then, in the same process, it times what a warm run pays for that model:
``scan_database`` + ``Graph.problems`` with ``verify="fast"`` (three times; the
median is the figure) and with ``verify="full"`` (the reference: every image
listed and stat'ed, every store byte hashed, as every warm run did before).  Last,
it checks that the speed-up loses no safety: one byte of one shard changed in place
with its mtime set back is refused by the next fast check, and an image added to a
class folder gives the database another identity without ``full``.

Figures:

* ``warm_overhead_s_per_model``: the fast warm check of one model (goal <= 2 s).
  The scan is counted in full although ``compare`` shares it between models.
* ``full_over_fast``: the full check's time over the fast one (goal >= 5).
* ``corruption_refused``, ``added_image_rescanned``: 1 when the safety checks hold
  (goal >= 1).
* ``fast_s``, ``full_s``, ``entries``, ``store_gb``: informational.

Modes (check ``df`` first: the image files cost inodes, about 1 KB of disk each
for the folders' entries; the store costs a few blocks):

    python bench/bench_warm.py --quick        # 10^5 entries, < 1 minute on an idle machine
    python bench/bench_warm.py                # 10^6 entries (minutes: 10^6 files)

Making and removing the files is metadata work that a busy disk slows down many
times over; the figures are measured after it, on warm file-system caches, as a
rerun finds them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _figures import figure  # bench/_figures.py (the script's folder is on sys.path)

DIM = 2048
SHARD_ROWS = 4096  # extract_features' default shard size
N_CLASSES = 1000
FIRST_WNID = 1440764  # n01440764, ImageNet's first class


def make_image_folder(root: Path, entries: int) -> None:
    """``entries`` empty ``<wnid>_<i>.JPEG`` files spread over 1000 class folders."""
    per, extra = divmod(entries, N_CLASSES)
    flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
    for c in range(N_CLASSES):
        wnid = f"n{FIRST_WNID + c:08d}"
        folder = root / wnid
        folder.mkdir(parents=True)
        prefix = f"{folder}{os.sep}{wnid}_"
        for i in range(per + (c < extra)):
            os.close(os.open(f"{prefix}{i}.JPEG", flags, 0o644))


def write_sparse_store(folder: Path, images) -> None:
    """A feature store of the real layout, one zero row per image, in sparse files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(images)
    header = np.lib.format
    for k, start in enumerate(range(0, n, SHARD_ROWS)):
        rows = min(SHARD_ROWS, n - start)
        path = folder / f"shard-{k:05d}.npy"
        with open(path, "wb") as fh:
            header.write_array_header_1_0(
                fh, {"descr": "<f4", "fortran_order": False, "shape": (rows, DIM)}
            )
            fh.truncate(fh.tell() + rows * DIM * 4)  # a hole: no disk used
    pq.write_table(
        pa.table({"path": list(images.relpaths), "wnid": list(images.wnids)}),
        folder / "images.parquet",
    )
    n_shards = -(-n // SHARD_ROWS)
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "format": "bench.sparse-store",
                "n_images": n,
                "dim": DIM,
                "shard_size": SHARD_ROWS,
                "n_shards": n_shards,
            }
        )
    )


def warm_check(db, cache: Path, verify: str, model: str):
    """What a warm run pays for one model: the scan, and the check of its store."""
    from fmri2image.pipeline.graph import Graph
    from fmri2image.pipeline.stages import database_stage, scan_database

    t0 = time.perf_counter()
    scanned = scan_database(db, cache=cache, verify=verify)
    stage = database_stage(model, scanned, None, batch_size=1)  # type: ignore[arg-type]
    problems = Graph([stage]).problems(cache, verify=verify)
    return time.perf_counter() - t0, scanned, problems[stage.name]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10^5 entries (< 1 minute)")
    ap.add_argument("--entries", type=int, help="images in the database (default 10^6)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    entries = args.entries or (100_000 if args.quick else 1_000_000)

    from fmri2image.features.shards import store_dirname
    from fmri2image.pipeline.graph import Graph
    from fmri2image.pipeline.preflight import DatabaseSpec
    from fmri2image.pipeline.stages import database_stage, scan_database

    model = "resnet50"
    tmp = Path(tempfile.mkdtemp(prefix="bench-warm-", dir=os.environ.get("TMPDIR", "/tmp")))
    free = shutil.disk_usage(tmp).free
    if free < 2 * 1024**3:
        print(f"only {free / 1024**3:.1f} GB free in {tmp.parent}; need 2 GB", file=sys.stderr)
        return 1
    try:
        root, cache = tmp / "imagenet" / "train", tmp / "cache"
        t0 = time.perf_counter()
        make_image_folder(root, entries)
        print(f"{entries} image files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        cache.mkdir()
        db = DatabaseSpec("images", str(root.parent), root.parent, name="imagenet")

        # Cold: the scan (recorded) and the stage, computed by the real graph.
        t0 = time.perf_counter()
        scanned = scan_database(db, cache=cache, verify="full")
        t_scan = time.perf_counter() - t0

        def run(ctx):
            store = ctx.folder / store_dirname(model)
            store.mkdir()
            write_sparse_store(store, scanned.images)

        stage = dataclasses.replace(
            database_stage(model, scanned, None, batch_size=1), run=run, prepare=None
        )  # type: ignore[arg-type]
        t0 = time.perf_counter()
        result = Graph([stage]).run(cache, progress=False)
        scanned.remember()  # as run_experiment does once it holds the cache's lock
        t_cold = time.perf_counter() - t0
        folder = result.record(stage.name).folder
        shards = sorted((folder / store_dirname(model)).glob("shard-*.npy"))
        store_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(
            f"cold: scan {t_scan:.2f} s, stage (sparse store {store_bytes / 1e9:.2f} GB in "
            f"{len(shards)} shards, written and hashed) {t_cold:.2f} s",
            file=sys.stderr,
        )
        time.sleep(0.05)  # past the clock tick of the fingerprints just written

        fast_times = []
        for _ in range(3):
            seconds, warm, problem = warm_check(db, cache, "fast", model)
            assert warm.reused and problem is None, (warm.reused, problem)
            assert warm.identity == scanned.identity and len(warm.images) == entries
            fast_times.append(seconds)
        fast = statistics.median(fast_times)
        print("fast: " + ", ".join(f"{s:.3f}" for s in fast_times) + " s", file=sys.stderr)
        full, warm, problem = warm_check(db, cache, "full", model)
        assert not warm.reused and problem is None and warm.identity == scanned.identity
        print(f"full: {full:.2f} s (reference)", file=sys.stderr)

        # Safety: one byte changed in place, mtime set back: refused by a fast check.
        victim = shards[len(shards) // 2]
        st = victim.stat()
        with open(victim, "r+b") as fh:
            fh.seek(st.st_size // 2)
            fh.write(b"\x01")
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
        _, _, problem = warm_check(db, cache, "fast", model)
        refused = problem is not None and "changed after it was written" in problem
        print(f"one byte changed in {victim.name}: {problem}", file=sys.stderr)
        # An image added to one class folder: another database identity, without full.
        (root / f"n{FIRST_WNID:08d}" / f"n{FIRST_WNID:08d}_added.JPEG").touch()
        t0 = time.perf_counter()
        added = scan_database(db, cache=cache, verify="fast")
        rescanned = not added.reused and added.identity != scanned.identity
        print(
            f"image added: rescanned in {time.perf_counter() - t0:.2f} s, "
            f"identity {'changed' if rescanned else 'UNCHANGED'}",
            file=sys.stderr,
        )
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    figures = {
        "warm_overhead_s_per_model": figure(fast, "<= 2"),
        "full_over_fast": figure(full / fast, ">= 5", digits=1),
        "corruption_refused": figure(float(refused), ">= 1"),
        "added_image_rescanned": figure(float(rescanned), ">= 1"),
        "fast_s": figure(fast, "info"),
        "full_s": figure(full, "info", digits=2),
        "entries": figure(entries, "info", digits=0),
        "store_gb": figure(store_bytes / 1e9, "info", digits=2),
    }
    print(json.dumps({"bench": "warm", "figures": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
