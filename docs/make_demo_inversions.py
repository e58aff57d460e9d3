"""Make docs/img/demo-inversions.png: the demo's test images and their feature inversions.

Reads a finished demo run (``fmri2image demo --out DIR``: DIR/results, through
``fmri2image.pipeline.results``), inverts every predicted
test embedding with the ``invert`` generator at its default options (or the ones
given with ``--option``), through each encoder of the run, and draws one grid: the
stimuli on top, then one row of inversions per encoder.  It also prints how well the
inversions identify their own test image (2-way identification, chance 0.5): the
encoder embedding of each inverted image against the predicted and the true
embeddings of all test images.

    fmri2image demo --out demo-output
    python docs/make_demo_inversions.py --demo demo-output            # ~2.5 min on 2 cores
    python docs/make_demo_inversions.py --demo demo-output --option iterations=32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")

THUMB = 96
CAPTION = 100


def _coerce(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return None if value.lower() == "none" else value


def invert_run(results: Path, encoders: list[str] | None, options: dict, out: Path | None):
    """Invert every prediction of a run (its first subject and ROI); yields per-encoder
    results and scores."""
    import torch

    from fmri2image.evaluation import two_way_identification
    from fmri2image.features.shards import open_feature_store, store_dirname
    from fmri2image.generation import EmbeddingStats, GenerationRequest, get_generator
    from fmri2image.pipeline.results import load_run

    run = load_run(results)
    summary = json.loads((results / "summary.json").read_text())
    block = summary["blocks"][0]
    stems = list(block["test_images"])
    maps = results / "maps" / f"s{block['subject']}-{block['roi']}"
    encoders = encoders or list(dict.fromkeys(row["encoder"] for row in summary["encoders"]))
    gen = get_generator("invert", **options)
    rows = {}
    for name in encoders:
        folder = store_dirname(name)
        features = run.folder(f"features/{name}")
        pred = np.load(maps / folder / "predicted_test_embeddings.npy", allow_pickle=False)
        train = open_feature_store(features / "train" / folder).load()
        test = open_feature_store(features / "test" / folder)
        order = {Path(p).stem: i for i, p in enumerate(test.paths)}
        true = test.load()[[order[s] for s in stems]]
        stats = EmbeddingStats.from_embeddings(train)
        requests = [
            GenerationRequest(stem=s, seed=0, embedding=pred[i], encoder=name, stats=stats)
            for i, s in enumerate(stems)
        ]
        gen.check(name)
        t0 = time.perf_counter()
        made = gen.generate(requests)
        seconds = (time.perf_counter() - t0) / len(made)
        enc = gen.encoder(name)
        E = enc.embed(torch.stack([enc.preprocess(r.image) for r in made])).numpy()
        scores = {
            "seconds_per_image": round(seconds, 2),
            "id_vs_predicted": float(two_way_identification(pred, E).mean()),
            "id_vs_true": float(two_way_identification(true, E).mean()),
            "predicted_vs_true": float(two_way_identification(true, pred).mean()),
            "deviation_cosine": float(np.mean([r.extra["deviation_cosine"] for r in made])),
        }
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), flush=True)
        if out is not None:
            (out / folder).mkdir(parents=True, exist_ok=True)
            for r in made:
                r.image.save(out / folder / f"{r.stem}.png")
        rows[name] = ([r.image for r in made], scores)
    stimuli = [Path(p) for p in open_feature_store(
        run.folder(f"features/{encoders[0]}") / "test" / store_dirname(encoders[0])).paths]  # fmt: skip
    by_stem = {p.stem: p for p in stimuli}
    return [by_stem[s] for s in stems], rows


def _thumb(image, size: int = THUMB):
    """Resize the shorter side to ``size`` and centre-crop a square (as the encoders see it)."""
    from PIL import Image

    img = image.convert("RGB")
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def draw_grid(stimuli: list[Path], rows: dict, path: Path) -> None:
    from PIL import Image, ImageDraw

    n = len(stimuli)
    lines = [("stimulus", "(ground truth)", [Image.open(p) for p in stimuli])]
    for name, (images, scores) in rows.items():
        lines.append((name, f"2-way id {scores['id_vs_true']:.2f}", images))
    pad = 2
    grid = Image.new("RGB", (CAPTION + n * (THUMB + pad), len(lines) * (THUMB + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (title, sub, images) in enumerate(lines):
        y = r * (THUMB + pad)
        draw.text((4, y + THUMB // 2 - 12), title, fill="black")
        draw.text((4, y + THUMB // 2 + 2), sub, fill=(90, 90, 90))
        for c, img in enumerate(images):
            grid.paste(_thumb(img), (CAPTION + c * (THUMB + pad), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    # A 256-colour palette, dithered (no banding in the smooth blobs), keeps the PNG
    # under 200 kB; as RGB it is over 400 kB.
    palette = grid.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    grid.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", required=True, help="the --out of `fmri2image demo`")
    p.add_argument("--encoder", action="append", dest="encoders", help="default: all of the run")
    p.add_argument("--option", action="append", default=[], help="invert option KEY=VALUE")
    p.add_argument(
        "--out", default=str(Path(__file__).parent / "img" / "demo-inversions.png"),
        help="grid PNG (default: docs/img/demo-inversions.png)",
    )  # fmt: skip
    p.add_argument("--save-images", help="also save every inversion under this folder")
    args = p.parse_args(argv)
    results = Path(args.demo) / "results"
    if not (results / "summary.json").is_file():
        print(f"{results} is not a demo run; make one with `fmri2image demo --out {args.demo}`.")
        return 2
    options = {
        k.replace("-", "_"): _coerce(v) for k, _, v in (o.partition("=") for o in args.option)
    }
    stimuli, rows = invert_run(
        results, args.encoders, options, Path(args.save_images) if args.save_images else None
    )
    draw_grid(stimuli, rows, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
