"""``fmri2image evaluate``: the field's metrics for any folder of reconstructions."""

from __future__ import annotations

import argparse

from fmri2image.cli import _options

_EPILOG = """\
examples:
  # the offline metrics (no downloads), on the demo's pictures
  fmri2image evaluate --recon demo-output/results/images/s1-ROI_HVC/effnet-lite0/ridge/invert/predicted \\
      --gt demo-output/data/test --metrics pixcorr ssim lite0 lite0_nway lite2 \\
      --out scores/invert.csv

  # with the labels the run retrieved: hit1, hit5 (and wup, path with WordNet) per image too
  fmri2image evaluate --recon demo-output/results/images/s1-ROI_HVC/effnet-lite0/ridge/retrieve/predicted \\
      --gt demo-output/data/test --metrics ssim hit1 hit5 --out scores/retrieve.csv \\
      --labels demo-output/results/maps/s1-ROI_HVC/effnet-lite0/ridge/retrieval/prototypes/semantic_per_query.parquet

  # MindEye's table (AlexNet, Inception, CLIP, EffNet, SwAV weights needed), on a GPU
  fmri2image evaluate --recon recon/ --gt stimuli/ --device cuda --out scores/all.csv

  # another method's reconstructions saved as one array, rows in a stated order
  fmri2image evaluate --recon their_recons.npy --order test_stems.txt --gt stimuli/ \\
      --device cuda --out scores/theirs.csv --compare-to scores/all.csv

  # every metric, what it needs, and its chance level
  fmri2image evaluate --list-metrics

Images are matched by file stem (png, jpg, JPEG, webp); a .npy array holds images of
shape (n, H, W, 3) or (n, 3, H, W), uint8 or floats in [0, 1].  Missing, unreadable
and blank (safety-filtered) images are reported and left out; the valid pairs are
still evaluated.  Output: FILE (column image, then one column per metric) and
FILE.summary.json beside it (means, 95% bootstrap CIs, chance or unpaired
reference, skipped metrics, protocol, images/s).  Low-level metrics follow MindEye:
425x425 PIL bilinear resize, true 2-D grayscale SSIM (scikit-image >= 0.20).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score reconstructions against the seen images (PixCorr, SSIM, AlexNet, CLIP, ...)",
        description=(
            "Compute the field's image metrics (MindEye / Brain-Diffuser / MinD-Vis "
            "protocols) per image for a folder of reconstructions against the seen "
            "images, with bootstrap confidence intervals and chance levels."
        ),
        epilog=_EPILOG,
        formatter_class=_options.HelpFormatter,
    )
    p.add_argument("--recon", metavar="PATH", help="reconstructions: a folder or a .npy array")
    p.add_argument("--gt", metavar="PATH", help="the seen images: a folder or a .npy array")
    p.add_argument("--out", metavar="FILE.csv", help="per-image scores (summary JSON beside it)")
    p.add_argument(
        "--metrics", nargs="+", metavar="NAME",
        help="metrics to compute (default: every image metric; on a CPU all but nway)",
    )  # fmt: skip
    p.add_argument(
        "--order", metavar="FILE",
        help="text file, one stem per line, naming the rows of a .npy --recon/--gt",
    )  # fmt: skip
    p.add_argument(
        "--keep-blank", action="store_true",
        help="also evaluate blank (e.g. safety-filtered) reconstructions",
    )  # fmt: skip
    p.add_argument(
        "--metric-weights", action="append", default=[], metavar="NETWORK=PATH",
        help="local weights for a metric network (repeatable), e.g. alexnet=alexnet.pth, "
        "clip=./clip-vit-large-patch14/",
    )  # fmt: skip
    p.add_argument(
        "--labels", metavar="FILE",
        help="true and predicted WordNet ids per image, for hit1/hit5/wup/path: a CSV "
        "image,true_wnid,pred_wnid or a run's maps/s<S>-<ROI>/<model>/retrieval/<database>/"
        "semantic_per_query.parquet",
    )  # fmt: skip
    p.add_argument(
        "--compare-to", metavar="CSV",
        help="another method's per-image CSV: paired permutation test per shared metric",
    )  # fmt: skip
    p.add_argument(
        "--bootstrap", type=_options.positive_int, default=2000, metavar="N",
        help="bootstrap resamples of each mean's 95%% CI",
    )  # fmt: skip
    p.add_argument("--list-metrics", action="store_true", help="print every metric and exit")
    g = p.add_argument_group("runtime")
    g.add_argument(
        "--device", default="auto",
        help="torch device: auto (a CUDA GPU when there is one), cpu, cuda, cuda:N or mps",
    )  # fmt: skip
    g.add_argument(
        "--batch-size", type=_options.positive_int, default=32, metavar="N",
        help="images per metric-network forward pass",
    )  # fmt: skip
    g.add_argument(
        "--seed", type=_options.non_negative_int, default=0, metavar="S",
        help="seed of every random choice (bootstrap, n-way trials, unpaired references)",
    )  # fmt: skip
    p.set_defaults(func=run)


def _list_metrics() -> str:
    from fmri2image.evaluation import list_metrics, network_spec

    lines = []
    for kind, title in (
        ("pixels", "low-level (pixels, 425x425)"),
        ("features", "high-level (feature networks)"),
        ("classifier", "n-way (ImageNet classifiers)"),
        ("embedding", "computed by decode on predicted embeddings"),
        ("labels", "computed by decode on retrieved labels"),
    ):
        lines.append(f"{title}:")
        for m in list_metrics(kind):
            better = "higher" if m.higher_is_better else "lower"
            chance = f"; chance {m.chance:g}" if isinstance(m.chance, float) else (
                f"; chance {m.chance}" if m.chance else ""
            )  # fmt: skip
            needs = ""
            if m.network:
                spec = network_spec(m.network)
                where = "offline weights" if spec.offline else spec.weights
                gpu = ", GPU recommended" if m.gpu_recommended else ""
                needs = f" [{m.network}: {where}{gpu}]"
            lines.append(f"  {m.name:<24} {better} is better{chance}: {m.description}{needs}")
    return "\n".join(lines)


def _parse_weights(items: list[str]) -> dict[str, str]:
    from fmri2image.errors import ConfigError

    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(
                f"--metric-weights {item!r}: expected NETWORK=PATH, e.g. "
                "--metric-weights alexnet=alexnet.pth."
            )
        out[name.strip()] = path.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from fmri2image.errors import ConfigError
    from fmri2image.pipeline.evaluate import EvaluateConfig, run_evaluate

    if args.list_metrics:
        print(_list_metrics())
        return 0
    missing = [
        f for f, v in (("--recon", args.recon), ("--gt", args.gt), ("--out", args.out)) if not v
    ]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required (see "
            "`fmri2image evaluate --help`)."
        )
    config = EvaluateConfig(
        recon=args.recon,
        gt=args.gt,
        out=args.out,
        metrics=tuple(args.metrics) if args.metrics else None,
        order=args.order,
        keep_blank=args.keep_blank,
        device=args.device,
        batch_size=args.batch_size,
        seed=args.seed,
        n_bootstrap=args.bootstrap,
        metric_weights=_parse_weights(args.metric_weights),
        compare_to=args.compare_to,
        labels=args.labels,
    )
    result = run_evaluate(config, progress=not args.quiet)
    print(result.format())
    print(f"wrote {args.out} and its summary JSON")
    return 0
