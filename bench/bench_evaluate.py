"""Benchmark of ``fmri2image evaluate`` with the offline metrics, on the CPU.

Ground truths are crops of real photos (scikit-image, scikit-learn) at GOD's size
range; reconstructions are blurred, noisy copies at 512 x 512 (a generator's size).

Figures (each a ratio against a reference measured in the same run):

* ``ssim_vs_skimage``: images/s of :func:`fmri2image.evaluation.ssim` divided by a
  bare loop doing the protocol by hand (PIL resize, ``rgb2gray``,
  ``structural_similarity``) on the same images (goal >= 0.9: no overhead).
* ``features_vs_forward``: images/s of :func:`network_features` with the Lite0
  metric network (decode-free: PIL images in memory -> resize -> batched forward)
  divided by the bare forward pass on tensors prepared beforehand (goal >= 0.7:
  the preprocessing costs little beside inference).
* ``evaluate_images_per_s``: end-to-end images/s of ``evaluate_images`` with
  ``pixcorr ssim lite0 lite0_nway lite2 lite2_nway`` (an image = one reconstruction
  and its ground truth, so each network runs on two images), printed with the time
  per metric network; its goal (>= 1 on this 2-core CPU) is a usability floor, not a
  ratio: the 50 GOD test images in under a minute.

    python bench/bench_evaluate.py --quick     # < 1 minute
    python bench/bench_evaluate.py             # 50 images, as GOD's test set
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from _figures import figure  # bench/_figures.py (the script's folder is on sys.path)

os.environ.setdefault("TQDM_DISABLE", "1")


def make_pairs(n: int, seed: int = 0):
    """``n`` (ground truth, reconstruction) PIL pairs from real photos."""
    from PIL import Image, ImageFilter
    from skimage import data
    from sklearn.datasets import load_sample_image

    photos = [getattr(data, k)() for k in ("astronaut", "chelsea", "coffee", "rocket")]
    photos += [load_sample_image(f) for f in ("china.jpg", "flower.jpg")]
    rng = np.random.default_rng(seed)
    true, pred = [], []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 0.9)), int(w * rng.uniform(0.6, 0.9))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        gt = Image.fromarray(img[y : y + ch, x : x + cw]).convert("RGB").resize((500, 375))
        rec = gt.resize((512, 512)).filter(ImageFilter.GaussianBlur(3))
        noisy = np.asarray(rec, float) + rng.normal(0, 15, (512, 512, 3))
        true.append(gt)
        pred.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))
    return true, pred


def bench_ssim(true, pred) -> float:
    from PIL import Image
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    from fmri2image.evaluation import ssim

    def by_hand():
        out = []
        for t, p in zip(true, pred):
            a = np.asarray(t.resize((425, 425), Image.Resampling.BILINEAR), float) / 255
            b = np.asarray(p.resize((425, 425), Image.Resampling.BILINEAR), float) / 255
            out.append(
                structural_similarity(
                    rgb2gray(b),
                    rgb2gray(a),
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                    data_range=1.0,
                )
            )
        return np.array(out)

    t_ref, t_ours = [], []
    for _ in range(5):  # alternate, keep the best of each: robust to load spikes
        t0 = time.perf_counter()
        ref = by_hand()
        t_ref.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours = ssim(true, pred)
        t_ours.append(time.perf_counter() - t0)
    assert np.allclose(ours, ref, atol=1e-6)
    t_ref, t_ours = min(t_ref), min(t_ours)
    print(f"ssim: ours {len(true) / t_ours:.1f} img/s, by hand {len(true) / t_ref:.1f} img/s")
    return t_ref / t_ours


def bench_features(true, batch_size: int) -> float:
    import torch

    from fmri2image.evaluation.networks import load_network, network_features

    net = load_network("lite0")
    tensors = [
        torch.stack([net.preprocess(im) for im in true[s : s + batch_size]])
        for s in range(0, len(true), batch_size)
    ]
    net.embed(tensors[0])  # warm-up: the first passes of a batch shape are slower
    t0 = time.perf_counter()
    for b in tensors:
        net.embed(b)
    t_forward = time.perf_counter() - t0
    t0 = time.perf_counter()
    network_features(net, true, batch_size=batch_size, progress=False)
    t_ours = time.perf_counter() - t0
    print(
        f"lite0 features: ours {len(true) / t_ours:.1f} img/s, bare forward "
        f"{len(true) / t_forward:.1f} img/s"
    )
    return t_forward / t_ours


def bench_evaluate(true, pred, batch_size: int) -> float:
    from fmri2image.evaluation import evaluate_images
    from fmri2image.evaluation.images import ImagePairs

    stems = tuple(f"img{i:04d}" for i in range(len(true)))
    pairs = ImagePairs(stems=stems, true=true, pred=pred, excluded={}, blank=(), notes=())
    metrics = ["pixcorr", "ssim", "lite0", "lite0_nway", "lite2", "lite2_nway"]
    t0 = time.perf_counter()
    ev = evaluate_images(pairs, metrics, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - t0
    for name, t in ev.timing.items():
        print(f"  {name:<8} {t['seconds']:7.2f} s  ({t['images_per_second']} img/s)")
    print(ev.format())
    return len(true) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16 images (< 1 minute)")
    ap.add_argument("--n", type=int, default=None, help="image pairs (default 50, quick 16)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    n = args.n or (16 if args.quick else 50)
    true, pred = make_pairs(n)
    figures = {
        "ssim_vs_skimage": figure(bench_ssim(true, pred), ">= 0.9"),
        "features_vs_forward": figure(bench_features(true, args.batch_size), ">= 0.7"),
        "evaluate_images_per_s": figure(bench_evaluate(true, pred, args.batch_size), ">= 1"),
    }
    print(json.dumps({"bench": "evaluate", "figures": figures}))


if __name__ == "__main__":
    main()
