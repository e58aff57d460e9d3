"""Which cross-validation scheme should choose RidgeMapping's alphas?  Evidence.

Compares, on held-out TEST data (never seen by any CV), the schemes

* folds grouped by category / ungrouped (contiguous blocks, i.e. whole runs), ×
  criterion 5-fold fold-mean R² / pooled R² / pooled correlation, ×
  alpha per target / one shared alpha;
* exact leave-one-out (GCV, ungrouped), per target and shared;
* scikit-learn ``RidgeCV(alphas, alpha_per_target=True)`` behind a
  ``StandardScaler`` (the reference);
* two *oracles* that are not methods: the one shared alpha that is best on the
  test set for identification, resp. for R² (how much any CV could gain);

always with the grid ``DEFAULT_ALPHAS`` (1e-2 .. 1e10, 13 values).  Reported:
pairwise identification of the predicted test embeddings (chance 0.5),
variance-weighted R² (beside the training-mean baseline), the share of targets at
the low / high grid end, and the fit's CPU seconds (one BLAS thread by default).

Data sets:

a. planted signal of GOD's size, unseen test categories: 150 training categories
   × 8 images, 50 other test categories (one image each, mean of 35 trials),
   1280-d embeddings, 4500 voxels (``fmri2image.mapping._simulate``);
b. the same with test images from training categories;
d. fewer categories (10 / 20 / 40 training categories × 8, 20 unseen test
   categories, 1000 voxels), the regime of the demo dataset;
e. other regimes at 40 categories × 8: dimensions of very unequal SNR, single-trial
   test patterns, and two no-signal controls (X rows permuted; p > n and n > p),
   where an honest map must shrink to the training mean (R² at the baseline);
c. demo dataset folders (``--demo-dir``, repeatable; written by
   ``fmri2image make-demo-data``): subject 1, ROI_HVC and ROI_VC, targets = real
   ``effnet-lite0`` / ``effnet-lite2`` features of the stimuli.

Usage::

    python bench/bench_cv.py [--quick] [--seeds 2] [--threads 1] [--demo-dir DIR ...]

``--quick`` (under a minute): small planted data only (40 × 8 categories, one
seed), and the demo folders if given.  The full run prints the evidence tables (markdown) and
takes a few minutes.  The last line is one JSON object::

    {"bench": "cv", "figures": {NAME: {"value": V, "goal": ">= ...", "met": true}, ...}}
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from _figures import figure  # bench/_figures.py (the script's folder is on sys.path)

#: The grouping the pipeline is advised to use by default (see docs/mapping.md).
RECOMMENDED_GROUPING = "none"


@dataclass(frozen=True)
class Dataset:
    """Training data (with category groups) and held-out test data."""

    name: str
    X_train: np.ndarray
    Y_train: np.ndarray
    groups: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray


@dataclass(frozen=True)
class Scheme:
    """One way of choosing alphas."""

    name: str
    grouping: str  # "category", "none" or "-" (leave-one-out, scikit-learn)
    params: dict[str, Any] = field(default_factory=dict)
    kind: str = "ours"  # "ours", "sklearn"

    def fit_predict(self, ds: Dataset, alphas: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        if self.kind == "sklearn":
            from sklearn.linear_model import RidgeCV
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas, alpha_per_target=True))
            model.fit(ds.X_train, ds.Y_train)
            chosen = np.broadcast_to(model[-1].alpha_, (ds.Y_train.shape[1],))
            edges = {
                "share_low": float(np.mean(chosen == alphas.min())),
                "share_high": float(np.mean(chosen == alphas.max())),
                "alpha_median": float(np.median(chosen)),
            }
            return model.predict(ds.X_test), edges
        from fmri2image.mapping import RidgeMapping

        groups = ds.groups if self.grouping == "category" else None
        model = RidgeMapping(alphas, **self.params).fit(ds.X_train, ds.Y_train, groups=groups)
        d = model.diagnostics_
        edges = {
            "share_low": d.share_low,
            "share_high": d.share_high,
            "alpha_median": d.alpha_median,
        }
        return model.predict(ds.X_test), edges


CRITERIA = {
    "fold-mean R²": {"scoring": "r2", "score_pooling": "fold-mean"},
    "pooled R²": {"scoring": "r2", "score_pooling": "pooled"},
    "pooled r": {"scoring": "correlation", "score_pooling": "pooled"},
}


def all_schemes() -> list[Scheme]:
    out = []
    for grouping in ("category", "none"):
        for crit, params in CRITERIA.items():
            for per_target in (True, False):
                name = (
                    f"{'grouped' if grouping == 'category' else 'ungrouped'} 5-fold, {crit}, "
                    f"{'per-target' if per_target else 'shared'} alpha"
                )
                out.append(
                    Scheme(name, grouping, {"cv": 5, "alpha_per_target": per_target, **params})
                )
    out.append(
        Scheme(
            "ungrouped shuffled 5-fold, pooled R², per-target alpha",
            "none",
            {"cv": 5, "random_state": 0, **CRITERIA["pooled R²"]},
        )
    )
    out.append(Scheme("ungrouped LOO (GCV), per-target alpha", "none", {"cv": "loo"}))
    out.append(
        Scheme(
            "ungrouped LOO (GCV), shared alpha", "none", {"cv": "loo", "alpha_per_target": False}
        )
    )
    out.append(Scheme("sklearn RidgeCV(alpha_per_target=True)", "-", kind="sklearn"))
    return out


def default_scheme_name() -> str:
    """The row that ``RidgeMapping()`` with :data:`RECOMMENDED_GROUPING` reproduces."""
    from fmri2image.mapping import RidgeMapping

    p = RidgeMapping().get_params()
    for s in all_schemes():
        full = {
            "alpha_per_target": True,
            "scoring": "r2",
            "score_pooling": "pooled",
            "random_state": None,
            **s.params,
        }
        if s.kind == "ours" and s.grouping == RECOMMENDED_GROUPING:
            if all(p[k] == v for k, v in full.items()):
                return s.name
    raise RuntimeError("the default RidgeMapping is not among the benchmarked schemes")


# ---------------------------------------------------------------------- metrics
def test_scores(ds: Dataset, Y_pred: np.ndarray) -> dict[str, float]:
    from fmri2image.evaluation import prediction_metrics

    m = prediction_metrics(ds.Y_test, Y_pred, ds.Y_train.mean(axis=0)).summary
    return {
        "pid": m["pairwise_identification"].value,
        "r2": m["r2_variance_weighted"].value,
        "r2_base": float(m["r2_variance_weighted"].baseline),
    }


def oracle_rows(ds: Dataset, alphas: np.ndarray) -> dict[str, dict[str, float]]:
    """Best single alpha chosen on the TEST set (an upper reference, not a method)."""
    from fmri2image.mapping._cv import fit_scaler
    from fmri2image.mapping._solvers import SOLVERS, resolve_solver_name

    X = ds.X_train.astype(np.float64)
    xs, ys = fit_scaler(X, scale=True), fit_scaler(ds.Y_train.astype(np.float64), scale=True)
    name = resolve_solver_name("auto", *X.shape)
    state = SOLVERS.get(name).decompose(xs.transform(X), xs.transform(ds.X_test.astype(np.float64)))
    Yz = ys.transform(ds.Y_train.astype(np.float64))
    per_alpha = [
        test_scores(ds, ys.inverse_transform(p))
        for p in SOLVERS.get(name).path_predict(state, Yz, alphas)
    ]
    out = {}
    for key, label in (("pid", "identification"), ("r2", "R²")):
        k = int(np.argmax([s[key] for s in per_alpha]))
        row = dict(per_alpha[k])
        row.update(
            share_low=np.nan, share_high=np.nan, alpha_median=float(alphas[k]), seconds=np.nan
        )
        out[f"oracle: best fixed alpha for test {label} ({alphas[k]:.0e})"] = row
    return out


def evaluate(
    ds: Dataset, schemes: Iterable[Scheme], alphas: np.ndarray, threads: int
) -> dict[str, dict[str, float]]:
    from threadpoolctl import threadpool_limits

    rows: dict[str, dict[str, float]] = {}
    with threadpool_limits(limits=threads, user_api="blas"):
        for s in schemes:
            c0 = time.process_time()
            Y_pred, edges = s.fit_predict(ds, alphas)
            seconds = time.process_time() - c0
            rows[s.name] = {**test_scores(ds, Y_pred), **edges, "seconds": seconds}
        rows.update(oracle_rows(ds, alphas))
    return rows


def mean_rows(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Average the rows of several runs (seeds, folders); oracle labels are merged."""

    def key(name: str) -> str:
        return name.split(" (")[0] if name.startswith("oracle") else name

    merged: dict[str, list[dict[str, float]]] = {}
    for rows in runs:
        for name, row in rows.items():
            merged.setdefault(key(name), []).append(row)
    return {
        name: {
            k: float(np.nanmean([r[k] for r in rs]))
            if not all(np.isnan(r[k]) for r in rs)
            else np.nan
            for k in rs[0]
        }
        for name, rs in merged.items()
    }


# ------------------------------------------------------------------------ data
def planted(quick: bool, seed: int, test_from_training: bool) -> Dataset:
    from fmri2image.mapping._simulate import simulate_god_like

    if quick:
        size = dict(n_train_categories=40, n_test_categories=20, n_dims=256, n_voxels=1000)
        size["snr"] = 0.02
    else:
        size = dict(n_train_categories=150, n_test_categories=50, n_dims=1280, n_voxels=4500)
    d = simulate_god_like(test_from_training=test_from_training, seed=seed, **size)
    tag = "seen" if test_from_training else "unseen"
    return Dataset(f"planted-{tag}", d.X_train, d.Y_train, d.groups, d.X_test, d.Y_test)


def planted_few(n_categories: int, seed: int) -> Dataset:
    from fmri2image.mapping._simulate import simulate_god_like

    d = simulate_god_like(
        n_train_categories=n_categories,
        n_test_categories=20,
        n_dims=512,
        n_voxels=1000,
        snr=0.05,
        seed=seed,
    )
    return Dataset(f"planted-{n_categories}cat", d.X_train, d.Y_train, d.groups, d.X_test, d.Y_test)


#: Other regimes, at 40 training categories x 8 images, 1000 voxels, 512 dims.
VARIANTS = {
    "unequal dims": "dimensions of very unequal SNR (mixed_dims=False), unseen test categories",
    "1-trial test": "test patterns are single trials (n_test_repeats=1), unseen categories",
    "null p>n": "no signal: training rows of X permuted (1000 voxels)",
    "null n>p": "no signal: training rows of X permuted, 100 voxels (n_samples > n_voxels)",
    "null tiny": "no signal: Gaussian X (100 samples x 80 voxels), 6 Gaussian targets + 3, "
    "50 test samples, 20 groups of 5",
}


def planted_variant(variant: str, seed: int) -> Dataset:
    from fmri2image.mapping._simulate import simulate_god_like

    if variant == "null tiny":
        rng = np.random.default_rng(8 + seed)
        X, Y = rng.standard_normal((150, 80)), rng.standard_normal((150, 6)) + 3.0
        groups = np.repeat(np.arange(20), 5)
        return Dataset(variant, X[:100], Y[:100], groups, X[100:], Y[100:])
    kw: dict[str, Any] = dict(
        n_train_categories=40, n_test_categories=20, n_dims=512, n_voxels=1000, snr=0.05
    )
    if variant == "unequal dims":
        kw["mixed_dims"] = False
    elif variant == "1-trial test":
        kw["n_test_repeats"] = 1
    elif variant == "null n>p":
        kw["n_voxels"] = 100
    d = simulate_god_like(seed=seed, **kw)
    X_train = d.X_train
    if variant.startswith("null"):
        X_train = np.random.default_rng(seed).permutation(X_train)
    return Dataset(variant, X_train, d.Y_train, d.groups, d.X_test, d.Y_test)


def demo_datasets(demo_dir: Path, encoders: list[str], rois: list[str]) -> list[Dataset]:
    from fmri2image.data import load_god_subject, load_stimulus_set, make_splits
    from fmri2image.data.ids import stimulus_ids_to_categories
    from fmri2image.features import embed_images, get_encoder

    train_set = load_stimulus_set(demo_dir, "training")
    test_set = load_stimulus_set(demo_dir, "test")
    feats = {}
    for name in encoders:
        enc = get_encoder(name)
        feats[name] = (
            embed_images(enc, list(train_set.paths), progress=False),
            embed_images(enc, list(test_set.paths), progress=False),
        )
    out = []
    for roi in rois:
        splits = make_splits(load_god_subject(demo_dir, 1, roi=roi))
        groups = stimulus_ids_to_categories(splits.train_ids)
        tr, te = train_set.index_of(splits.train_ids), test_set.index_of(splits.test_ids)
        for name, (F_tr, F_te) in feats.items():
            X_tr, Y_tr, X_te, Y_te = splits.X_train, F_tr[tr], splits.X_test, F_te[te]
            out.append(Dataset(f"demo {roi} {name}", X_tr, Y_tr, np.asarray(groups), X_te, Y_te))
    return out


# ---------------------------------------------------------------------- report
def table(
    title: str, columns: dict[str, dict[str, dict[str, float]]], default: str, full: bool
) -> str:
    """Markdown table: one row per scheme, per data set test identification and R²."""
    names = list(next(iter(columns.values())))
    head = ["scheme"]
    for col in columns:
        head += [f"{col} ident.", f"{col} R²"] + ([f"{col} at top"] if full else [])
    if full:
        head += ["at bottom", "median α", "CPU s"]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    first = next(iter(columns.values()))
    for name in names:
        cells = [f"**{name}** (default)" if name == default else name]
        for rows in columns.values():
            r = rows[name]
            cells += [f"{r['pid']:.3f}", f"{r['r2']:.3f}"]
            if full:
                cells.append("–" if np.isnan(r["share_high"]) else f"{100 * r['share_high']:.0f}%")
        if full:
            r = first[name]
            cells += [
                "–" if np.isnan(r["share_low"]) else f"{100 * r['share_low']:.0f}%",
                f"{r['alpha_median']:.0e}",
                "–" if np.isnan(r["seconds"]) else f"{r['seconds']:.1f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    base = ", ".join(
        f"{col} {next(iter(rows.values()))['r2_base']:.3f}" for col, rows in columns.items()
    )
    lines += ["", f"R² of the training-mean baseline: {base}; identification chance 0.5.", ""]
    return "\n".join(lines)


def best_of(rows: dict[str, dict[str, float]], key: str) -> float:
    return max(r[key] for name, r in rows.items() if not name.startswith("oracle"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small planted data (< 1 min)")
    parser.add_argument(
        "--seeds", type=int, default=None, help="planted seeds (default 2; quick 1)"
    )
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument(
        "--demo-dir", type=Path, action="append", default=[],
        help="a demo dataset folder (fmri2image make-demo-data DIR); repeat to average",
    )  # fmt: skip
    parser.add_argument(
        "--encoders", default="effnet-lite0,effnet-lite2", help="demo targets (comma-separated)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger("fmri2image").setLevel(logging.WARNING)

    from fmri2image.mapping import DEFAULT_ALPHAS

    alphas = np.asarray(DEFAULT_ALPHAS)
    n_seeds = args.seeds or (1 if args.quick else 2)
    schemes = all_schemes()
    default = default_scheme_name()
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)

    columns: dict[str, dict[str, dict[str, float]]] = {}
    for tag, seen in (("a unseen", False), ("b seen", True)):
        runs = []
        for seed in range(n_seeds):
            ds = planted(args.quick, seed, seen)
            log(f"{ds.name} seed {seed}: {ds.X_train.shape} -> {ds.Y_train.shape[1]} dims")
            runs.append(evaluate(ds, schemes, alphas, args.threads))
        columns[tag] = mean_rows(runs)
    size = "40 × 8 categories, 1000 voxels, 256 dims" if args.quick else "GOD size"
    print(table(f"Planted signal ({size}; mean of {n_seeds} seed(s))", columns, default, True))

    few: dict[str, dict[str, dict[str, float]]] = {}
    others: dict[str, dict[str, dict[str, float]]] = {}
    if not args.quick:
        for n_cat in (10, 20, 40):
            runs = []
            for seed in range(3):
                ds = planted_few(n_cat, seed)
                log(f"{ds.name} seed {seed}")
                runs.append(evaluate(ds, schemes, alphas, args.threads))
            few[f"{n_cat} cat."] = mean_rows(runs)
        print(table("Few categories (planted; mean of 3 seeds)", few, default, False))
    n_var = 1 if args.quick else 3
    for variant in VARIANTS:
        runs = []
        for seed in range(n_var):
            ds = planted_variant(variant, seed)
            log(f"{variant} seed {seed}")
            runs.append(evaluate(ds, schemes, alphas, args.threads))
        others[variant] = mean_rows(runs)
    title = f"Other regimes (planted, 40 categories × 8; mean of {n_var} seed(s))"
    print(table(title, others, default, False))
    print("".join(f"* {v}: {what}\n" for v, what in VARIANTS.items()))

    demo: dict[str, dict[str, dict[str, float]]] = {}
    if args.demo_dir:
        encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
        by_col: dict[str, list[dict[str, dict[str, float]]]] = {}
        for folder in args.demo_dir:
            for ds in demo_datasets(folder, encoders, ["ROI_HVC", "ROI_VC"]):
                log(f"{ds.name} ({folder}): {ds.X_train.shape}, {len(ds.Y_test)} test images")
                col = ds.name.removeprefix("demo ").replace("ROI_", "")
                by_col.setdefault(col, []).append(evaluate(ds, schemes, alphas, args.threads))
        demo = {col: mean_rows(runs) for col, runs in by_col.items()}
        print(table(f"Demo dataset (mean of {len(args.demo_dir)} folder(s))", demo, default, False))

    a, b = columns["a unseen"], columns["b seen"]
    ref = "sklearn RidgeCV(alpha_per_target=True)"
    r2_scored = {n: r for n, r in a.items() if "pooled r," not in n}
    figures = {
        "unseen_ident_default_minus_ridgecv": figure(a[default]["pid"] - a[ref]["pid"], ">= -0.05"),
        "seen_ident_default_minus_ridgecv": figure(b[default]["pid"] - b[ref]["pid"], ">= -0.05"),
        "unseen_ident_default_minus_best": figure(
            a[default]["pid"] - best_of(a, "pid"), ">= -0.05"
        ),
        "unseen_r2_default_minus_best_r2_scored": figure(
            a[default]["r2"] - best_of(r2_scored, "r2"), ">= -0.01"
        ),
        "unseen_default_share_at_top": figure(a[default]["share_high"], "<= 0.1"),
    }
    for col, rows in {**few, **demo}.items():
        slug = col.replace(" ", "_").replace(".", "")
        figures[f"{slug}_ident_default_minus_ridgecv"] = figure(
            rows[default]["pid"] - rows[ref]["pid"], ">= -0.05"
        )
    for col in ("null p>n", "null n>p", "null tiny"):
        if col in others:
            r = others[col][default]
            slug = col.replace(" ", "_").replace(">", "_gt_")
            figures[f"{slug}_r2_default_minus_baseline"] = figure(
                r["r2"] - r["r2_base"], ">= -0.02"
            )
    log("done")
    print(json.dumps({"bench": "cv", "figures": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
