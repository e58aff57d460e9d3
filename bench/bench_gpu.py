"""GPU figures of the real-size models: extraction, generation, the MLP mapper, memory.

Speed and memory do not depend on the weights' values, so every model is built from
its public configuration with random weights (seed 0), by
:mod:`fmri2image._random_weights`, and run through the package's own code:

* **extraction** (``resnet50``, ``vit``, ``clip``, ``clip-l14``): the random weights
  are placed where a user's machine caches the downloads (a temporary
  ``TORCH_HOME`` / ``HF_HOME``, offline), the encoder is built by
  ``get_encoder(name, device=..., dtype=...)`` (the weights cast to the dtype, as
  ``fmri2image extract --dtype`` does) and ``encoder.embed`` is timed on
  preprocessed 224 px batches of 64 and 256 images already in memory (JPEG decoding
  and resizing, the data loader's CPU work, are not included: ``bench_extract.py``
  measures those), in float32, float16 and bfloat16 (CPU: float32 and bfloat16);
  figure ``extract_<model>_<dtype>_b<batch>`` in images/s, and
  ``extract_<model>_half_speedup`` = best half-precision images/s over float32's at
  the largest batch;
* **generation** (``sd15``: 25 DPM-Solver++ steps at 512 px, guidance 7.5;
  ``sd-turbo``: 1 step at 512 px; ``img2img``: ``sd15`` from an initial image,
  strength 0.75; ``unclip``: Stable unCLIP (small) at its native 768 px, 20 steps,
  guidance 10): pipelines built from inline component configs (SD 1.5, SD 2.1 and
  stable-diffusion-2-1-unclip-small sizes), written with ``save_pretrained`` and
  driven by the package's generator classes (``SD15Generator``, ``SDTurboGenerator``,
  ``UnclipGenerator``) with ``model=<folder>`` and their default options, the dtype
  ``auto`` (float16 on CUDA).  The safety checker is left out: with random weights its
  verdicts would be arbitrary and trigger regenerations.  After one untimed call
  (loading, compilation of kernels), one call makes ``--images`` pictures; figure
  ``generate_<name>`` in seconds per image;
* **MLP mapper** (``MLPMapping`` with its defaults but ``patience=max_epochs``, so all
  30 epochs run): a fit at GOD's size, 1200 samples x 4643 voxels -> 2048 (ResNet-50)
  and 768 (CLIP ViT-L/14) targets, random data; figure ``mlp_<dim>_fit_s``;
* **peak GPU memory** (``torch.cuda.max_memory_allocated``) of each item:
  ``..._peak_gib``.

Every figure has the goal ``info`` (no target yet).  The output ends with one JSON line
``{"bench": "gpu", "device": ..., "measured": true, "figures": {...}}``.

Modes:

* full (default): real sizes, on CUDA.  Without a CUDA device (and no ``--device``)
  it measures nothing: it says so and prints the JSON line with ``"measured": false``
  and no figures (exit 0), so CI never mistakes a CPU run for GPU figures.
  ``--device cpu`` runs the real sizes on the CPU anyway (slow: minutes per item).
* ``--quick`` (< 1 minute on 2 cores): tiny sizes (same families, one or two narrow
  layers) on the CPU, batches of 2 and 4, 1 denoising step, 3 MLP epochs on 200 x 500
  -> 64: every code path, no meaningful number.

    python bench/bench_gpu.py --quick          # CPU smoke run
    python bench/bench_gpu.py                  # on a GPU machine: every figure
    python bench/bench_gpu.py --only clip sd15 # some items
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _figures import figure  # bench/_figures.py (the script's folder is on sys.path)

os.environ.setdefault("TQDM_DISABLE", "1")

ENCODERS = ("resnet50", "vit", "clip", "clip-l14")
GENERATORS = ("sd15", "sd-turbo", "img2img", "unclip")
ITEMS = (*ENCODERS, *GENERATORS, "mlp")
#: The pipeline each generator runs (img2img is sd15 given an initial image).
ARCH = {"sd15": "sd15", "img2img": "sd15", "sd-turbo": "sd-turbo", "unclip": "unclip"}
#: GOD's training set: 1200 images; Subject 1's visual cortex (ROI_VC): 4643 voxels.
GOD_SIZE = (1200, 4643)
MLP_TARGETS = (2048, 768)


class Timer:
    """Wall seconds of a block, with the device synchronized before and after."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def __enter__(self) -> Timer:
        self.sync()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sync()
        self.seconds = time.perf_counter() - self.t0


def reset_peak(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def dtypes_for(device: str) -> tuple[str, ...]:
    """float32 and both half precisions on a GPU; on the CPU float32, and bfloat16 where
    the CPU computes it natively (float16 is not a CPU precision for these models)."""
    import torch

    if device.startswith("cuda"):
        return ("float32", "float16", "bfloat16")
    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
    return ("float32", "bfloat16") if native else ("float32",)


def bench_encoder(
    name: str, args: argparse.Namespace, homes: dict[str, Path], figures: dict
) -> None:
    import torch

    from fmri2image import _random_weights as rw
    from fmri2image.features import get_encoder

    t0 = time.perf_counter()
    rw.place_random_weights(name, size=args.size, torch_home=homes["torch"], hf_home=homes["hf"])
    size = "real: torchvision has no tiny" if name == "resnet50" else args.size
    print(f"{name}: placed ({size}) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rates: dict[tuple[str, int], float] = {}
    try:
        for dtype in dtypes_for(args.device):
            reset_peak(args.device)
            enc = get_encoder(name, device=args.device, dtype=dtype)
            side = enc.spec.image_size or 224
            if args.quick and name == "resnet50":  # real size even then; convolutions
                side = 64  # take any input size, and 64 px is 12x less work
            for batch in args.batches:
                x = torch.randn(batch, 3, side, side).to(args.device)
                for _ in range(args.warmup):
                    enc.embed(x)
                with Timer(args.device) as t:
                    for _ in range(args.repeats):
                        out = enc.embed(x)
                assert out.shape == (batch, enc.spec.dim), out.shape
                rate = batch * args.repeats / t.seconds
                rates[dtype, batch] = rate
                figures[f"extract_{name}_{dtype}_b{batch}"] = figure(rate, digits=2)
                print(
                    f"  {name} {dtype:<8} batch {batch:>3}: {rate:8.1f} images/s", file=sys.stderr
                )
                del x, out
            peak = peak_gib(args.device)
            if peak is not None:
                figures[f"extract_{name}_{dtype}_peak_gib"] = figure(peak, digits=3)
                print(f"  {name} {dtype:<8} peak GPU memory {peak:.2f} GiB", file=sys.stderr)
            del enc
            reset_peak(args.device)
        big = max(args.batches)
        halves = [rates[d, big] for d in dtypes_for(args.device) if d != "float32"]
        if halves:
            speedup = max(halves) / rates["float32", big]
            figures[f"extract_{name}_half_speedup"] = figure(speedup, digits=3)
    finally:
        rw.remove_placed(name, size=args.size, torch_home=homes["torch"], hf_home=homes["hf"])


def _requests(name: str, n: int, size: int) -> list[Any]:
    import numpy as np
    from PIL import Image

    from fmri2image.generation import EmbeddingStats, GenerationRequest

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        kw: dict[str, Any] = {"stem": f"n02123045_{i}", "seed": 0, "wnid": "n02123045",
                              "name": "tabby"}  # fmt: skip
        if name == "img2img":
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            kw["init_image"] = Image.fromarray(pixels)
        if name == "unclip":
            train = rng.standard_normal((16, 768)).astype(np.float32)
            kw["embedding"] = train[0]
            kw["stats"] = EmbeddingStats.from_embeddings(train)
        out.append(GenerationRequest(**kw))
    return out


def bench_generator(name: str, args: argparse.Namespace, scratch: Path, figures: dict) -> None:
    from fmri2image import _random_weights as rw
    from fmri2image.generation.diffusion import SD15Generator, SDTurboGenerator
    from fmri2image.generation.unclip import UnclipGenerator

    arch = ARCH[name]
    folder = scratch / f"pipeline-{arch}"
    if not folder.exists():
        t0 = time.perf_counter()
        half = "float16" if args.device.startswith("cuda") else "float32"
        rw.save_pipeline(arch, folder, size=args.size, dtype=half)
        print(f"{arch}: built and saved ({args.size}) in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)  # fmt: skip
    options: dict[str, Any] = {"model": str(folder)}
    if args.quick:  # one denoising step at a small size: every code path, in seconds
        options.update(steps=1, size=32)
    cls = {"sd15": SD15Generator, "img2img": SD15Generator, "sd-turbo": SDTurboGenerator,
           "unclip": UnclipGenerator}[name]  # fmt: skip
    if cls is not UnclipGenerator:
        options["safety_checker"] = False
    reset_peak(args.device)
    gen = cls(device=args.device, dtype="auto", **options)
    size = gen.image_size()
    gen.generate(_requests(name, 1, size))  # loads the weights, warms the kernels
    requests = _requests(name, args.images, size)
    with Timer(args.device) as t:
        results = gen.generate(requests)
    assert len(results) == len(requests) and results[0].images[0].size == (size, size)
    per_image = t.seconds / len(requests)
    figures[f"generate_{name}"] = figure(per_image, digits=4)
    peak = peak_gib(args.device)
    extra = f", peak GPU memory {peak:.2f} GiB" if peak is not None else ""
    if peak is not None:
        figures[f"generate_{name}_peak_gib"] = figure(peak, digits=3)
    steps = results[0].extra.get("steps")
    print(f"  {name}: {per_image:.3f} s per image ({size} px, {steps} steps, {gen.dtype}, "
          f"{len(requests)} images in one call){extra}", file=sys.stderr)  # fmt: skip
    del gen, results
    reset_peak(args.device)
    if not any(ARCH.get(p) == arch for p in args.pending):  # no later item needs it
        shutil.rmtree(folder, ignore_errors=True)


def bench_mlp(args: argparse.Namespace, figures: dict) -> None:
    import numpy as np

    from fmri2image.mapping import MLPMapping

    n, v = (200, 500) if args.quick else GOD_SIZE
    targets = (64,) if args.quick else MLP_TARGETS
    epochs = 3 if args.quick else MLPMapping().max_epochs
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, v)).astype(np.float32)
    device = "cuda" if args.device.startswith("cuda") else args.device
    MLPMapping(hidden=8, max_epochs=1, device=device, validation_fraction=0).fit(
        X[:20, :10], X[:20, :3]
    )  # warm-up: no timed fit pays for torch's first-call set-up
    for dim in targets:
        Y = rng.standard_normal((n, dim)).astype(np.float32)
        reset_peak(args.device)
        model = MLPMapping(max_epochs=epochs, patience=epochs, device=args.device,
                           threads=1 if args.quick else None)  # fmt: skip
        with Timer(args.device) as t:
            model.fit(X, Y)
        assert model.history_["epochs_run"] == epochs
        figures[f"mlp_{dim}_fit_s"] = figure(t.seconds, digits=3)
        peak = peak_gib(args.device)
        extra = f", peak GPU memory {peak:.2f} GiB" if peak is not None else ""
        if peak is not None:
            figures[f"mlp_{dim}_peak_gib"] = figure(peak, digits=3)
        print(f"  mlp {n} x {v} -> {dim}: {t.seconds:.2f} s for {epochs} epochs{extra}",
              file=sys.stderr)  # fmt: skip
        del model


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (torch {torch.__version__})"
    import platform

    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores (torch {torch.__version__})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes on the CPU (< 1 minute)")
    parser.add_argument("--device", help="torch device (default: cuda; cpu with --quick)")
    parser.add_argument("--only", nargs="+", choices=ITEMS, metavar="ITEM",
                        help=f"measure these items only ({', '.join(ITEMS)})")  # fmt: skip
    parser.add_argument("--images", type=int, help="pictures per timed generator call "
                        "(default 4; --quick 1)")  # fmt: skip
    parser.add_argument("--keep", type=Path, help="scratch folder to use and keep (default: a "
                        "temporary one, deleted)")  # fmt: skip
    args = parser.parse_args(argv)
    items = [i for i in ITEMS if not args.only or i in args.only]

    import torch

    cuda = torch.cuda.is_available()
    if args.device is None and not args.quick and not cuda:
        print("bench_gpu: no CUDA device here, so no GPU figure is measured. Run it on a GPU "
              "machine, or pass --quick (tiny sizes on the CPU) or --device cpu (real sizes "
              "on the CPU, slow).", file=sys.stderr)  # fmt: skip
        reason = "no CUDA device"
        print(json.dumps({"bench": "gpu", "device": None, "measured": False, "reason": reason,
                          "figures": {}}))  # fmt: skip
        return 0
    args.device = args.device or ("cpu" if args.quick else "cuda")
    args.size = "tiny" if args.quick else "real"
    args.batches = (2, 4) if args.quick else (64, 256)
    args.warmup, args.repeats = (1, 1) if args.quick else (2, 5)
    args.images = args.images or (1 if args.quick else 4)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32

    scratch_ctx = tempfile.TemporaryDirectory(prefix="bench-gpu-") if args.keep is None else None
    scratch = Path(scratch_ctx.name) if scratch_ctx else args.keep
    scratch.mkdir(parents=True, exist_ok=True)
    homes = {"torch": scratch / "torch", "hf": scratch / "hf"}
    # The loaders read the placed files only: no download, no real cache touched.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TORCH_HOME"] = str(homes["torch"])
    os.environ["HF_HOME"] = str(homes["hf"])
    os.environ.pop("HF_HUB_CACHE", None)
    import huggingface_hub.constants as hub_constants  # fixed at import: set them too

    hub_constants.HF_HUB_CACHE = str(homes["hf"] / "hub")
    hub_constants.HF_HUB_OFFLINE = True

    name = device_name(args.device)
    print(f"bench_gpu on {name}, {args.size} sizes", file=sys.stderr)
    figures: dict[str, dict[str, Any]] = {}
    t_all = time.perf_counter()
    try:
        for i, item in enumerate(items):
            args.pending = items[i + 1 :]
            t0 = time.perf_counter()
            if item in ENCODERS:
                bench_encoder(item, args, homes, figures)
            elif item in GENERATORS:
                bench_generator(item, args, scratch, figures)
            else:
                bench_mlp(args, figures)
            print(f"{item}: {time.perf_counter() - t0:.1f} s in all", file=sys.stderr)
    finally:
        if scratch_ctx is not None:
            scratch_ctx.cleanup()
    print(f"total {time.perf_counter() - t_all:.1f} s", file=sys.stderr)
    print(json.dumps({"bench": "gpu", "device": name, "measured": True, "sizes": args.size,
                      "figures": figures}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
