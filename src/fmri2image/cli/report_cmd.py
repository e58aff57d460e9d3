"""``fmri2image report``: one self-contained HTML page of a run's results."""

from __future__ import annotations

import argparse

from fmri2image.cli import _options

_EPILOG = """\
examples:
  fmri2image report demo-output/results            # demo-output/results/report.html
  fmri2image report demo-output/results --out demo-report.html

The page is one file: pictures, style and plots are embedded, it loads nothing from
anywhere and needs no script, so it can be mailed or opened offline.  Beside it:
FILE.md (the comparison, paired and decoding tables as GitHub markdown) and the
folder FILE/ (the same tables, and the retrieved labels, as CSV), all written at
once.  Only the run folder is read: its tables, summary.json, images/, maps/,
config.toml and stages.json; and, for the package versions the evaluations
recorded, their stage folders inside the run's cache.  A damaged table or
stages.json is named (exit 2); a damaged picture is left out with a warning.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML page (and markdown tables) of a run/compare/demo result",
        description=(
            "Write the comparison report of a run folder: what was run, every metric with "
            "its 95% CI beside its floor, ceiling and chance, the paired tests between "
            "models, the decoding tables, the reconstructions with their retrieved labels, "
            "plots, and the configuration and versions."
        ),
        epilog=_EPILOG,
        formatter_class=_options.HelpFormatter,
    )
    p.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="the output folder of `fmri2image run` / `compare` (of `demo`: OUT/results)",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="the HTML file to write (default: RUN_DIR/report.html); FILE.md and FILE/ "
        "(the CSV tables) go beside it",
    )
    p.add_argument(
        "--thumbnail",
        type=_options.int_at_least(16),
        default=160,
        metavar="PX",
        help="longest side of the embedded pictures, in pixels",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmri2image.pipeline.report import write_report

    paths = write_report(args.run_dir, html_path=args.out, thumbnail=args.thumbnail)
    page = paths["html"].resolve()
    print(f"report: {page} ({page.stat().st_size / 1e6:.1f} MB; open it in a browser)")
    print(f"  tables: {paths['md'].resolve()}")
    print(f"  csv:    {paths['comparison_csv'].resolve().parent}")
    return 0
