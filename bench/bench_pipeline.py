"""Benchmark of ``fmri2image demo``: cold and warm wall times, and where the time goes.

The demo dataset is written once into a temporary folder (timed on its own, not
counted below), then the demo runs twice on the CPU:

* cold: the first run on a fresh results folder, every stage computed (asserted);
* warm: the same call again, every stage reused from the verified cache (asserted).

Each run is timed with ``time.perf_counter`` around the call (wall) and also
reports ``ExperimentResult.seconds``.  The cold run's stages are grouped by kind
(``data``, ``features``, ``database``, ``mapping``, ``retrieval``, ``generation``,
``evaluation``) in a table with the warm seconds beside them, followed by the five
slowest cold stages.

Figures:

* ``warm_over_cold``: warm wall time divided by cold wall time (goal <= 0.05: a
  rerun with nothing changed costs a small fraction of the first run).  In full
  mode the warm run is ``run_demo`` itself, so it includes the manifest check of
  the dataset (no encoder's weights are loaded: every stage is reused).
* ``stages_reused_warm``: fraction of the stages reused in the warm run (goal >= 1.0).
* ``cold_s``: the cold wall time in seconds (full mode: goal <= 120, the two-minute
  demo; quick mode: informational); ``warm_s``: the warm one (informational);
  ``cold_<kind>_s``: the cold seconds of each kind of stage (informational).

Modes:

* full (default): the default demo, ``run_demo(out)`` (both ``DEMO_ENCODERS``, the
  default ``DEMO_GENERATORS``) on the default dataset (~35 s to write on an idle
  2-core machine; the cold run takes about two minutes there, a third of it feature
  inversion).
* ``--quick`` (< 1 minute on 2 cores, dataset included, on an idle machine): a
  smaller dataset (pip photos only, 8 training categories of 4 images, 4 test
  categories, 2 database images per class), one encoder (``effnet-lite0``) and the
  ``retrieve`` generator.  ``run_demo`` would rewrite a dataset that is not the
  default one (its reuse check compares the manifest with what ``seed`` writes), so
  quick mode calls ``run_experiment(demo_config(out, ...))`` directly: the same
  configuration and stages, without ``run_demo``'s up-front weight loading.

    python bench/bench_pipeline.py --quick     # < 1 minute
    python bench/bench_pipeline.py             # the default demo
    python bench/bench_pipeline.py --keep DIR  # run in DIR, keep everything there
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _figures import figure  # bench/_figures.py (the script's folder is on sys.path)

os.environ.setdefault("TQDM_DISABLE", "1")

KINDS = ("data", "features", "database", "mapping", "retrieval", "generation", "evaluation")

#: ``write_demo_dataset`` arguments of the quick mode's smaller dataset.
QUICK_DATASET = dict(
    photo_roots={},  # the photos of the scikit-image / scikit-learn wheels only
    n_train_categories=8,
    images_per_category=4,
    n_test_categories=4,
    database_images_per_category=2,
)
QUICK_ENCODERS = ("effnet-lite0",)
QUICK_GENERATORS = ("retrieve",)


def prepare_dataset(data_dir: Path, dataset_kw: dict) -> tuple[float | None, str]:
    """Write the demo dataset into ``data_dir`` unless exactly that one is there.

    Returns the seconds taken (None when reused) and the dataset's summary.
    """
    from fmri2image.demo import DemoDatasetInfo, write_demo_dataset
    from fmri2image.errors import Fmri2ImageError

    if (data_dir / "demo_dataset.json").exists():
        try:
            info = DemoDatasetInfo.load(data_dir)
            if not info.differences(seed=0, **dataset_kw):
                return None, info.summary()
        except Fmri2ImageError:
            pass
    t0 = time.perf_counter()
    info = write_demo_dataset(data_dir, seed=0, overwrite=True, progress=False, **dataset_kw)
    return time.perf_counter() - t0, info.summary()


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def breakdown(cold, warm) -> str:
    """The per-kind table (cold and warm seconds) and the five slowest cold stages."""
    warm_s = {r.name: r.seconds for r in warm.records}
    rows = []
    kinds = list(KINDS) + sorted({r.name.split("/")[0] for r in cold.records} - set(KINDS))
    for kind in kinds:
        recs = [r for r in cold.records if r.name.split("/")[0] == kind]
        if recs:
            c = sum(r.seconds for r in recs)
            w = sum(warm_s.get(r.name, 0.0) for r in recs)
            rows.append((kind, len(recs), c, w))
    total_c = sum(r.seconds for r in cold.records)
    total_w = sum(r.seconds for r in warm.records)
    lines = [f"{'kind':<12} {'stages':>6} {'cold s':>9} {'warm s':>9}"]
    lines += [f"{k:<12} {n:>6} {c:>9.2f} {w:>9.3f}" for k, n, c, w in rows]
    lines.append(f"{'all':<12} {len(cold.records):>6} {total_c:>9.2f} {total_w:>9.3f}")
    lines.append("")
    lines.append("slowest cold stages:")
    slowest = sorted(cold.records, key=lambda r: r.seconds, reverse=True)[:5]
    width = max(len(r.name) for r in slowest)
    lines += [f"  {r.name:<{width}} {r.seconds:8.2f} s" for r in slowest]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="small dataset, one encoder, retrieve (< 1 min)"
    )
    ap.add_argument("--keep", type=Path, help="run in this folder and keep everything there")
    args = ap.parse_args(argv)

    from fmri2image.pipeline.demo import DEMO_ENCODERS, DEMO_GENERATORS, demo_config, run_demo
    from fmri2image.pipeline.experiment import run_experiment

    if args.quick:
        dataset_kw, encoders, generators = QUICK_DATASET, QUICK_ENCODERS, QUICK_GENERATORS
        config = None  # built once the dataset exists (demo_config reads its database)

        def run():
            return run_experiment(config, progress=False)

    else:
        dataset_kw, encoders, generators = {}, DEMO_ENCODERS, DEMO_GENERATORS

        def run():
            return run_demo(out, encoders=encoders, generators=generators, progress=False)

    tmp_ctx = tempfile.TemporaryDirectory(prefix="bench-pipeline-") if args.keep is None else None
    out = Path(tmp_ctx.name) if tmp_ctx else args.keep
    try:
        out.mkdir(parents=True, exist_ok=True)
        t_data, summary = prepare_dataset(out / "data", dataset_kw)
        print(summary, file=sys.stderr)
        print(
            "dataset: reused" if t_data is None else f"dataset: written in {t_data:.1f} s",
            file=sys.stderr,
        )
        if (out / "results").exists():  # --keep on a folder run before: start cold
            shutil.rmtree(out / "results")
        if args.quick:
            config = demo_config(out, encoders=encoders, generators=generators)
        print(
            f"encoders {', '.join(encoders)}; generators {', '.join(generators)}; "
            f"cpus {os.cpu_count()}",
            file=sys.stderr,
        )

        cold, t_cold = timed(run)
        bad = [r.name for r in cold.records if r.reused]
        assert not bad, f"cold run reused stages: {bad}"
        print(
            f"cold: {t_cold:.2f} s wall, result.seconds {cold.seconds:.2f} "
            f"({cold.stage_summary()})",
            file=sys.stderr,
        )
        warm, t_warm = timed(run)
        assert warm.computed == [], f"warm run computed stages: {warm.computed}"
        print(
            f"warm: {t_warm:.3f} s wall, result.seconds {warm.seconds:.3f} "
            f"({warm.stage_summary()})",
            file=sys.stderr,
        )
        print(breakdown(cold, warm), file=sys.stderr)
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()

    reused = sum(r.reused for r in warm.records) / max(len(warm.records), 1)
    figures = {
        "warm_over_cold": figure(t_warm / t_cold, "<= 0.05", digits=4),
        # The default demo's goal: a first contact of about two minutes on 2 cores.
        "cold_s": figure(t_cold, "info" if args.quick else "<= 120", digits=2),
        "warm_s": figure(t_warm, "info", digits=3),
        "stages_reused_warm": figure(reused, ">= 1.0"),
    }
    for kind in dict.fromkeys(r.name.split("/")[0] for r in cold.records):
        seconds = sum(r.seconds for r in cold.records if r.name.split("/")[0] == kind)
        figures[f"cold_{kind}_s"] = figure(seconds, "info", digits=2)
    print(json.dumps({"bench": "pipeline", "figures": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
