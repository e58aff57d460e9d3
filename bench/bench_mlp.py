"""Benchmark the MLP mapper: training time at GOD's size, and identification against ridge.

Synthetic planted data (:func:`make_data`), fixed seeds, CPU only:

* training time of ``MLPMapping()`` (default settings) at GOD's size: 1200 training
  samples x 4500 voxels -> 1000 targets (``--quick``: 600 x 2000 -> 256);
* two-way identification of the MLP and of ``RidgeMapping()`` on held-out samples of
  planted *linear* data (the MLP should match ridge) and planted *nonlinear* data
  (targets an even function of the latent, which ridge cannot decode);
* ``--sweep``: the table of settings behind the defaults (docs/mapping.md, "The MLP
  mapper"): each setting changed alone from the defaults, on both data sets, mean of
  two data seeds.

Timings are process CPU seconds and wall seconds with ``--threads`` torch threads
(default 1: on the shared 2-core development machine two threads were several times
slower than one while other jobs ran).  The last line of output is one JSON object::

    {"bench": "mlp", "figures": {NAME: {"value": V, "goal": "<= 90", "met": true}, ...}}

The GOD-size fit is timed twice: with the defaults (early stopping) and with
``patience=max_epochs`` (all 30 epochs: the longest a default fit can take).

Usage: ``python bench/bench_mlp.py [--quick] [--sweep] [--threads N]`` (``--quick``:
small sizes, < 1 min).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

from _figures import figure  # bench/_figures.py (the script's folder is on sys.path)

#: Planted data sets of the comparison and the sweep (moderate size).
MODERATE = {"n_train": 600, "n_test": 200, "n_voxels": 1500, "n_targets": 128}
#: Noise levels: linear data where ridge identifies ~0.7 of pairs; nonlinear data
#: with more voxel signal (an even function of a 16-d latent needs it to be learnable).
LEVELS = {"linear": {"snr": 0.1, "noise": 4.0}, "nonlinear": {"snr": 0.3, "noise": 1.0}}

#: ``--sweep``: settings changed one at a time from the defaults.
SWEEP: list[dict[str, Any]] = [
    {},
    {"hidden": 256},
    {"hidden": 768},
    {"hidden": 1024},
    {"n_blocks": 0},
    {"n_blocks": 4},
    {"contrastive_weight": 0.0},
    {"contrastive_weight": 0.1},
    {"contrastive_weight": 0.3},
    {"learning_rate": 1e-3},
    {"learning_rate": 1e-2},
    {"learning_rate": 1e-1},
    {"max_epochs": 15},
    {"max_epochs": 60, "patience": 10},
    {"dropout": 0.1},
    {"dropout": 0.5},
    {"batch_size": 32},
]


def make_data(
    kind: str,
    n_train: int,
    n_test: int,
    n_voxels: int,
    n_targets: int,
    *,
    n_latent: int = 16,
    snr: float = 0.3,
    noise: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Voxels = ``snr`` x a linear image of a latent ``z`` + unit noise; targets from ``z``.

    ``kind="linear"``: ``Y = z @ B``; ``"nonlinear"``: ``Y = |z @ W1| @ W2`` (W1 to
    4 x n_latent units, centered), an even function of ``z`` whose best linear
    prediction from the voxels is zero.  Targets are scaled to unit variance, get
    ``noise`` x independent noise and non-zero means; voxels unequal offsets and scales.
    Returns float32 ``X_train, Y_train, X_test, Y_test``.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    z = rng.standard_normal((n, n_latent))
    X = 3 * snr * z @ rng.standard_normal((n_latent, n_voxels)) / np.sqrt(n_latent)
    X += rng.standard_normal((n, n_voxels))
    if kind == "linear":
        Y = z @ rng.standard_normal((n_latent, n_targets))
    elif kind == "nonlinear":
        H = np.abs(z @ rng.standard_normal((n_latent, 4 * n_latent)) / np.sqrt(n_latent))
        Y = (H - H.mean(axis=0)) @ rng.standard_normal((4 * n_latent, n_targets))
    else:
        raise ValueError(f"kind={kind!r}")
    Y = Y / Y.std() + noise * rng.standard_normal((n, n_targets))
    X = X * rng.uniform(0.5, 2.0, n_voxels) + rng.uniform(-1, 1, n_voxels)
    Y = Y + rng.uniform(0, 3, n_targets)
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    return X[:n_train], Y[:n_train], X[n_train:], Y[n_train:]


def fit_score(model: Any, data: tuple[np.ndarray, ...]) -> tuple[float, float, float, Any]:
    """(identification, CPU s, wall s, fitted model)."""
    from fmri2image.evaluation import two_way_identification

    X, Y, X_te, Y_te = data
    c0, w0 = time.process_time(), time.perf_counter()
    model.fit(X, Y)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    score = float(two_way_identification(Y_te, model.predict(X_te)).mean())
    return score, cpu, wall, model


def compare(sizes: dict[str, int], threads: int, seed: int) -> dict[str, dict[str, float]]:
    """Identification of ridge and the default MLP on both planted data sets."""
    from threadpoolctl import threadpool_limits

    from fmri2image.mapping import MLPMapping, RidgeMapping

    out: dict[str, dict[str, float]] = {}
    for kind, level in LEVELS.items():
        data = make_data(kind, **sizes, **level, seed=seed)
        with threadpool_limits(limits=threads, user_api="blas"):
            ridge, r_cpu, _, _ = fit_score(RidgeMapping(), data)
        mlp, m_cpu, m_wall, model = fit_score(MLPMapping(device="cpu", threads=threads), data)
        out[kind] = {"ridge": ridge, "mlp": mlp, "mlp_cpu_s": m_cpu, "ridge_cpu_s": r_cpu}
        print(
            f"  {kind:<9} ridge {ridge:.3f} ({r_cpu:.1f} CPU s)   MLP {mlp:.3f} ({m_cpu:.1f} "
            f"CPU s, {m_wall:.1f} wall s, {model.history_['epochs_run']} epochs, best "
            f"{model.history_['best_epoch']})",
            file=sys.stderr,
        )
    return out


def sweep(sizes: dict[str, int], threads: int, seeds: list[int]) -> None:
    """Print the markdown table of :data:`SWEEP` (mean over ``seeds``)."""
    from threadpoolctl import threadpool_limits

    from fmri2image.mapping import MLPMapping, RidgeMapping

    data = {
        (kind, s): make_data(kind, **sizes, **level, seed=s)
        for kind, level in LEVELS.items()
        for s in seeds
    }
    ridge = {}
    for kind in LEVELS:
        with threadpool_limits(limits=threads, user_api="blas"):
            ridge[kind] = np.mean([fit_score(RidgeMapping(), data[kind, s])[0] for s in seeds])
    print("| setting | linear | nonlinear | epochs (best) | CPU s per fit |")
    print("|---|---|---|---|---|")
    print(
        f"| ridge (`RidgeMapping()`) | {ridge['linear']:.3f} | {ridge['nonlinear']:.3f} | – | – |"
    )
    for change in SWEEP:
        scores: dict[str, list[float]] = {k: [] for k in LEVELS}
        cpu, epochs, best = [], [], []
        for (kind, _), d in data.items():
            score, c, _, model = fit_score(MLPMapping(device="cpu", threads=threads, **change), d)
            scores[kind].append(score)
            cpu.append(c)
            epochs.append(model.history_["epochs_run"])
            best.append(model.history_["best_epoch"])
        name = ", ".join(f"`{k}={v!r}`" for k, v in change.items()) or "**defaults**"
        print(
            f"| {name} | {np.mean(scores['linear']):.3f} | {np.mean(scores['nonlinear']):.3f} | "
            f"{np.mean(epochs):.0f} ({np.mean(best):.0f}) | {np.mean(cpu):.1f} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    parser.add_argument("--sweep", action="store_true", help="print the table behind the defaults")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and BLAS threads (default 1, see above; 0: torch's own setting for the MLP)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")

    from fmri2image.mapping import MLPMapping

    # A small untimed fit first: no timed fit pays for importing torch or its first-call
    # set-up (about 2-3 CPU s).
    warm = make_data("linear", 100, 10, 50, 8, seed=args.seed)
    MLPMapping(device="cpu", threads=args.threads or None, max_epochs=2).fit(*warm[:2])

    if args.sweep:
        sweep(MODERATE, max(args.threads, 1), [0, 1])
    if args.quick:
        god = {"n_train": 600, "n_test": 50, "n_voxels": 2000, "n_targets": 256}
        sizes = {"n_train": 300, "n_test": 100, "n_voxels": 500, "n_targets": 64}
    else:
        god = {"n_train": 1200, "n_test": 50, "n_voxels": 4500, "n_targets": 1000}
        sizes = MODERATE
    print(
        f"GOD-size timing: {god['n_train']} x {god['n_voxels']} voxels -> {god['n_targets']} "
        f"targets, default settings, {args.threads} thread(s)",
        file=sys.stderr,
    )
    data = make_data("linear", **god, **LEVELS["linear"], seed=args.seed)
    threads = args.threads or None
    score, cpu, wall, model = fit_score(MLPMapping(device="cpu", threads=threads), data)
    h = model.history_
    print(
        f"  defaults: {cpu:.1f} CPU s, {wall:.1f} wall s; hidden {model.hidden_}, "
        f"{h['epochs_run']} epochs (best {h['best_epoch']}), identification {score:.3f}",
        file=sys.stderr,
    )
    # The longest a default fit can take: all max_epochs run (no early stop).
    full = MLPMapping(device="cpu", threads=threads, patience=MLPMapping().max_epochs)
    _, cpu_all, wall_all, full = fit_score(full, data)
    print(
        f"  all {full.history_['epochs_run']} epochs (patience=max_epochs): {cpu_all:.1f} CPU s, "
        f"{wall_all:.1f} wall s",
        file=sys.stderr,
    )
    print(f"planted data ({sizes}): two-way identification (chance 0.5)", file=sys.stderr)
    res = compare(sizes, max(args.threads, 1), args.seed)
    lin, non = res["linear"], res["nonlinear"]
    figures = {
        "mlp_fit_cpu_seconds_god_size": figure(cpu, "<= 90"),
        "mlp_fit_cpu_seconds_god_size_all_epochs": figure(cpu_all, "<= 90"),
        "mlp_over_ridge_identification_nonlinear": figure(non["mlp"] / non["ridge"], ">= 1.2"),
        "mlp_minus_ridge_identification_linear": figure(lin["mlp"] - lin["ridge"], ">= -0.03"),
    }
    info = {
        "mlp_fit_wall_seconds_god_size": round(wall, 3),
        "mlp_fit_wall_seconds_god_size_all_epochs": round(wall_all, 3),
        "god_epochs_run": h["epochs_run"],
        "hidden": model.hidden_,
        "identification": {k: {m: round(v, 4) for m, v in r.items()} for k, r in res.items()},
        "threads": args.threads,
    }
    print(json.dumps({"bench": "mlp", "figures": figures, "info": info}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
