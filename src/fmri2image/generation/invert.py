"""Feature inversion: an image whose encoder embedding matches the predicted one.

The ``invert`` generator is the offline form of Shen, Horikawa, Majima & Kamitani
(2019, "Deep image reconstruction from human brain activity"): starting from a
seeded, nearly grey image it runs gradient steps on the pixels so that the
encoder's embedding of the image points where the fMRI prediction points.  It works
through any encoder with a differentiable pixel path
(:meth:`fmri2image.features.base.Encoder.embed_pixels`), so inverting the same brain
through ``effnet-lite0`` and ``effnet-lite2`` compares the two encoders with no
downloaded generator.

A pooled 1280-d embedding constrains an image only loosely; unconstrained pixel
optimisation finds high-frequency patterns ("adversarial noise") that match it.
The priors below make the optimum a picture instead:

* **decorrelated parametrisation**: the image is a Fourier spectrum per colour
  component, scaled by ``1 / f ** decay`` so that every spatial frequency starts with
  the same influence (natural images have a ``1/f`` amplitude spectrum), mixed to
  RGB through the principal colour axes of photographs (luminance first), then
  squashed to [0, 1] with a sigmoid;
* **blur schedule** (Shen et al.'s sigma 2 -> 0.5, here in the Fourier domain): a
  Gaussian low-pass whose sigma shrinks geometrically from ``blur_start`` to
  ``blur_end`` pixels, so coarse layout and colour settle before detail is allowed;
* **random views**: every step the encoder sees the image shifted by up to
  ``jitter`` pixels, zoomed by up to ``scale_jitter`` and rotated by up to ``rotate``
  degrees, so no pattern that needs pixel-exact alignment survives;
* **total variation** (``tv_weight``) against speckle.

The loss is ``1 - cosine`` between embeddings.  By default (``match="deviation"``) it
compares *deviations from the training-mean embedding*: ridge predictions are shrunk
towards that mean, and CNN features are non-negative, so the raw cosine of any
natural image with the prediction is already high and carries little of what
distinguishes one test image from another; the direction of the deviation is what
the brain predicted.  The mean (``request.stats.mean``) is a training statistic, so
nothing about the test set leaks in.  Cosine is scale-free, which also makes the
shrinkage of the prediction harmless (Shen et al. rescale decoded features to the
training std for the same reason).  Requests without ``stats`` are matched raw.

A request with an ``init_image`` (e.g. the ``lowlevel`` generator's blurry picture
of the same stimulus) starts from it instead of a random texture: the spectra are
set so that the rendering before blur is that image (the parametrisation inverted:
logit, colour unmixing, Fourier transform, division by the ``1/f`` scaling), the blur
schedule starts at ``init_blur_start``, and ``init_weight`` times the mean squared
pixel distance to the initial image (blurred as the image is at each step) keeps its
layout.  Requests without one are made exactly as before.

Randomness is per image: the initial spectrum and the random views of an image
come from its own generator seeded with
:func:`~fmri2image.generation.base.image_seed`, and the loss of a batch is a sum of
per-image terms, so an image is the same (to float rounding) alone or in any batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from fmri2image.errors import ConfigError
from fmri2image.generation.base import (
    GenerationRequest,
    GenerationResult,
    Generator,
    image_seed,
    require_embeddings,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

    from fmri2image.features.base import Encoder

__all__ = ["MATCHES", "InvertGenerator", "InvertOptions", "default_size", "invert_embeddings"]

#: What the loss compares: deviations from the training mean, or raw embeddings.
MATCHES = ("deviation", "raw")

# Principal colour axes of photographs: eigenvectors of the RGB covariance of the
# scikit-image / scikit-learn sample photos (chelsea, coffee, astronaut, rocket,
# china, flower), scaled by the square roots of their eigenvalues relative to the
# first (1 : 0.42 : 0.11).  The chroma axes are then widened (blue-red x 1.4,
# green-magenta floored at 0.25): with the photos' own ratios a budget of ~100 steps
# leaves the images nearly grey (judged on the demo grid, docs/generation.md).
# Rows R, G, B; columns: luminance, blue-red, green-magenta.
_COLOUR_AXES = (
    (0.648, -0.424, 0.080),
    (0.560, 0.130, -0.250),
    (0.516, 0.391, 0.171),
)

#: Pixels of an initial image are clipped to [eps, 1 - eps] before the logit (the
#: sigmoid never reaches 0 or 1; 0.01 is 2.5 grey levels).
_INIT_EPS = 0.01

#: Standard deviation of the initial Fourier coefficients: a faint random texture.  A
#: flat grey start is a dead end: its pooled ReLU6 features are nearly all zero, so
#: the cosine has no gradient.
_INIT_STD = 0.2


@dataclass(frozen=True)
class InvertOptions:
    """Options of the ``invert`` generator (feature inversion).

    Attributes
    ----------
    iterations : int
        Adam steps per image; the time per image grows linearly with it.
    lr : float
        Adam learning rate on the normalised Fourier coefficients.
    size : int or None
        Side in pixels of the square image made; none: the size the encoder resizes to
        before its centre crop (256 for effnet-lite0), so no resampling happens.
    jitter : int
        Largest random shift in pixels of the view the encoder sees at each step.
    scale_jitter : float
        Largest random zoom of that view, as a fraction (0.1: between 0.9x and 1.1x).
    rotate : float
        Largest random rotation of that view in degrees.
    blur_start : float
        Gaussian blur sigma in pixels at the first step (coarse layout first).
    blur_end : float
        Blur sigma at the last step and in the image returned.
    decay : float
        Exponent of the 1/f frequency scaling of the parametrisation (0: white; 1: the
        natural-image spectrum; larger: smoother images).
    tv_weight : float
        Weight of the total-variation penalty (0: none).
    match : str
        deviation: match the prediction's deviation from the training-mean embedding
        (needs the training statistics); raw: match the embedding itself.
    batch_size : int
        Images optimised together in one forward/backward pass.
    init_weight : float
        Requests with an initial image (e.g. a lowlevel picture) start from it; this
        weighs the mean squared pixel distance to it (blurred as the image is at
        each step) against the embedding loss, keeping its layout (0: start from it
        only).
    init_blur_start : float
        Blur sigma in pixels at the first step when starting from an initial image
        (its coarse layout is already there; at most blur_start).
    view_scale : float
        The encoder sees each view at this fraction of its input size (convolutional
        encoders only): 0.75 makes a step about 2.5x cheaper on a CPU, at some cost
        in how well the picture matches the embedding, which was computed at full
        size (the demo's setting; docs/generation.md).
    """

    iterations: int = 96
    lr: float = 0.1
    size: int | None = None
    jitter: int = 16
    scale_jitter: float = 0.1
    rotate: float = 5.0
    blur_start: float = 6.0
    blur_end: float = 2.0
    decay: float = 2.0
    tv_weight: float = 2.0
    match: str = "deviation"
    batch_size: int = 10
    init_weight: float = 1.0
    init_blur_start: float = 2.0
    view_scale: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if int(self.iterations) < 1:
            problems.append(f"iterations must be at least 1 (got {self.iterations})")
        if not self.lr > 0:
            problems.append(f"lr must be positive (got {self.lr})")
        if self.size is not None and int(self.size) < 32:
            problems.append(f"size must be at least 32 pixels or none (got {self.size})")
        if int(self.jitter) < 0:
            problems.append(f"jitter must be 0 or more pixels (got {self.jitter})")
        if not 0 <= self.scale_jitter < 1:
            problems.append(f"scale_jitter must be in [0, 1) (got {self.scale_jitter})")
        if not 0 <= self.rotate <= 180:
            problems.append(f"rotate must be between 0 and 180 degrees (got {self.rotate})")
        if not (self.blur_start >= 0 and self.blur_end >= 0):
            problems.append(
                f"blur_start and blur_end must be 0 or more (got {self.blur_start}, "
                f"{self.blur_end})"
            )
        if not self.decay >= 0:
            problems.append(f"decay must be 0 or more (got {self.decay})")
        if not self.tv_weight >= 0:
            problems.append(f"tv_weight must be 0 or more (got {self.tv_weight})")
        if self.match not in MATCHES:
            problems.append(f"match must be one of {', '.join(MATCHES)} (got {self.match!r})")
        if int(self.batch_size) < 1:
            problems.append(f"batch_size must be at least 1 (got {self.batch_size})")
        if not self.init_weight >= 0:
            problems.append(f"init_weight must be 0 or more (got {self.init_weight})")
        if not self.init_blur_start >= 0:
            problems.append(f"init_blur_start must be 0 or more (got {self.init_blur_start})")
        if not 0.25 <= self.view_scale <= 1:
            problems.append(f"view_scale must be between 0.25 and 1 (got {self.view_scale})")
        if problems:
            raise ConfigError(
                "Invalid options for generator 'invert': " + "; ".join(problems) + ". "
                "See `fmri2image generate --generator invert --list-options` for each "
                "option's meaning and default."
            )


def default_size(encoder: Encoder) -> int:
    """Side of the image ``invert`` makes for ``encoder`` when ``size`` is not given.

    The length the encoder resizes the shorter side to before its centre crop (a
    square image of that side passes through unresampled), else its input size.
    """
    transform = getattr(encoder, "pixel_transform", None)
    resize = getattr(transform, "resize", None)
    if isinstance(resize, int):
        return resize
    if isinstance(resize, tuple):
        return max(resize)
    crop = getattr(transform, "crop", None)
    return int(crop or encoder.spec.image_size or 224)


# ----------------------------------------------------------------- parametrisation
class _FourierImage:
    """A batch of images as colour-decorrelated, 1/f-scaled Fourier spectra."""

    def __init__(self, spectra: torch.Tensor, size: int, decay: float) -> None:
        import torch

        self.size = size
        self.spectra = spectra.requires_grad_(True)  # (B, 3, size, size // 2 + 1, 2)
        device = spectra.device
        fy = torch.fft.fftfreq(size, device=device).view(-1, 1)
        fx = torch.fft.rfftfreq(size, device=device).view(1, -1)
        self.freq2 = fy**2 + fx**2  # squared frequency, cycles per pixel
        scale = torch.clamp(self.freq2.sqrt(), min=1.0 / size) ** (-decay)
        # Unit-variance coefficients then give pixels of unit-order variance.
        self.scale = scale / scale.pow(2).mean().sqrt()
        self.axes = torch.tensor(_COLOUR_AXES, dtype=torch.float32, device=device)

    @classmethod
    def seeded(
        cls,
        seeds: Sequence[int],
        size: int,
        decay: float,
        std: float = _INIT_STD,
        device: str = "cpu",
    ) -> _FourierImage:
        """Random spectra, one CPU generator per image (batch- and device-independent)."""
        import torch

        shape = (3, size, size // 2 + 1, 2)
        rows = [
            torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) * std for s in seeds
        ]
        return cls(torch.stack(rows).to(device), size, decay)

    @classmethod
    def from_pixels(cls, pixels: np.ndarray, decay: float, device: str = "cpu") -> _FourierImage:
        """Spectra whose unblurred rendering is ``pixels`` (B, size, size, 3) in [0, 1].

        Inverts :meth:`render`: the logit of the pixels (clipped to [eps, 1 - eps]),
        unmixed from RGB to the colour components, Fourier transformed and divided
        by the ``1/f`` scaling.
        """
        import torch

        x = torch.as_tensor(np.asarray(pixels, dtype=np.float32), device=device)
        B, size = x.shape[0], x.shape[1]
        x = x.permute(0, 3, 1, 2).clamp(_INIT_EPS, 1.0 - _INIT_EPS)
        logit = torch.log(x) - torch.log1p(-x)
        image = cls(torch.zeros(B, 3, size, size // 2 + 1, 2, device=device), size, decay)
        unmix = torch.linalg.inv(image.axes)  # (component, RGB)
        decorrelated = torch.einsum("dc,bchw->bdhw", unmix, logit)
        spectrum = torch.fft.rfft2(decorrelated, norm="ortho") / image.scale
        image.spectra = torch.view_as_real(spectrum).contiguous().requires_grad_(True)
        return image

    def render(self, blur: float, spectra: torch.Tensor | None = None) -> torch.Tensor:
        """RGB images (B, 3, size, size) in [0, 1], low-passed with Gaussian ``blur``.

        ``spectra`` renders other coefficients (of the same shape) the same way.
        """
        import torch

        weight = self.scale
        if blur > 0:  # transfer function of a Gaussian of sigma ``blur`` pixels
            weight = weight * torch.exp(-2.0 * math.pi**2 * blur**2 * self.freq2)
        coefficients = self.spectra if spectra is None else spectra
        spectrum = torch.view_as_complex(coefficients) * weight
        decorrelated = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho")
        rgb = torch.einsum("cd,bdhw->bchw", self.axes, decorrelated)
        return torch.sigmoid(rgb)


def _random_views(
    images: torch.Tensor, gens: Sequence[torch.Generator], shift: float, scale: float, rotate: float
) -> torch.Tensor:
    """One random shift (pixels), zoom (fraction) and rotation (degrees) per image.

    A single batched bilinear warp with reflected borders; each image's transform
    comes from its own generator, so it does not depend on the rest of the batch.
    """
    import torch
    import torch.nn.functional as F

    _, _, H, W = images.shape
    thetas = []
    for g in gens:
        u = (torch.rand(4, generator=g, dtype=torch.float64) * 2 - 1).tolist()
        zoom = 1.0 + scale * u[0]
        angle = math.radians(rotate * u[1])
        c, s = math.cos(angle) / zoom, math.sin(angle) / zoom
        # affine_grid works in [-1, 1] coordinates: a shift of p pixels is 2 p / size.
        thetas.append([[c, -s, 2 * shift * u[2] / W], [s, c, 2 * shift * u[3] / H]])
    theta = torch.tensor(thetas, dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def _total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute neighbour difference per image, shape (B,)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    return dy + dx


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-8)


def invert_embeddings(
    encoder: Encoder,
    targets: np.ndarray,
    seeds: Sequence[int],
    options: InvertOptions | None = None,
    *,
    means: np.ndarray | None = None,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Optimise one image per target embedding through ``encoder`` (one batch).

    Parameters
    ----------
    encoder : Encoder
        With :attr:`~fmri2image.features.base.Encoder.supports_pixels`.
    targets : ndarray of shape (B, dim)
        Embeddings to match.
    seeds : sequence of int, length B
        Seed of each image (initial spectrum and random views).
    options : InvertOptions, optional
        Defaults when omitted; ``options.match`` is ignored here (``means`` decides).
    means : ndarray of shape (B, dim) or (dim,), optional
        Per-image reference the deviations are taken from (the training-mean
        embedding); ``None`` matches the raw embeddings.
    init : ndarray of shape (B, size, size, 3), optional
        Initial images (uint8, or float in [0, 1]): the optimisation starts from
        spectra that render them exactly (before blur), the blur schedule starts at
        ``min(blur_start, init_blur_start)`` (not below ``blur_end``), and
        ``init_weight`` times their mean squared pixel distance (each blurred as the
        image is at that step) is added to the loss.  ``None``: a seeded faint
        texture, as without.

    Returns
    -------
    images : ndarray of shape (B, size, size, 3), uint8
    info : dict
        ``loss`` (B,): the final embedding loss of each image during optimisation;
        with ``init`` also ``init_mse`` (B,): its final mean squared distance to the
        (blurred) initial image.
    """
    import torch

    opts = options or InvertOptions()
    if not encoder.supports_pixels:
        encoder.embed_pixels(torch.zeros(1, 3, 8, 8))  # raises the encoder's ConfigError
    T = torch.tensor(np.asarray(targets, dtype=np.float32))
    if T.ndim != 2 or T.shape[1] != encoder.dim or len(seeds) != T.shape[0]:
        raise ConfigError(
            f"invert: targets must have shape (n, {encoder.dim}) for {encoder.name!r} with one "
            f"seed per row; got targets {tuple(T.shape)} and {len(seeds)} seeds."
        )
    M = None
    if means is not None:
        M = torch.tensor(np.asarray(means, dtype=np.float32)).expand_as(T).to(encoder.device)
    T = T.to(encoder.device)
    if M is not None:
        T = T - M
    size = int(opts.size or default_size(encoder))
    anchor = None
    blur_start = float(opts.blur_start)
    if init is None:
        image = _FourierImage.seeded(seeds, size, opts.decay, device=str(encoder.device))
    else:
        px = np.asarray(init)
        if px.shape != (len(seeds), size, size, 3):
            raise ConfigError(
                f"invert: initial images must have shape ({len(seeds)}, {size}, {size}, 3) "
                f"(one per target, at the size made); got {px.shape}."
            )
        px = px.astype(np.float32) / 255.0 if px.dtype == np.uint8 else px.astype(np.float32)
        image = _FourierImage.from_pixels(px, opts.decay, device=str(encoder.device))
        anchor = image.spectra.detach().clone()
        blur_start = max(min(blur_start, float(opts.init_blur_start)), float(opts.blur_end))
    # The random views have their own stream per image, apart from the initial spectrum.
    gens = [torch.Generator().manual_seed(int(s) ^ 0x5EED) for s in seeds]
    optimizer = torch.optim.Adam([image.spectra], lr=opts.lr)
    n = int(opts.iterations)
    augment = bool(opts.jitter or opts.scale_jitter or opts.rotate)
    losses = torch.zeros(len(seeds))
    distances = torch.zeros(len(seeds))
    for step in range(n):
        blur = _blur_at(blur_start, opts.blur_end, step / (n - 1) if n > 1 else 1.0)
        rendered = image.render(blur)
        x = rendered
        if augment:
            x = _random_views(x, gens, opts.jitter, opts.scale_jitter, opts.rotate)
        scale = float(opts.view_scale)
        emb = encoder.embed_pixels(x, view_scale=scale) if scale != 1 else encoder.embed_pixels(x)
        if M is not None:
            emb = emb - M
        per_image = 1.0 - _cosine(emb, T)
        loss = per_image.sum()  # a sum: each image's gradient is its own term's
        if opts.tv_weight > 0:
            loss = loss + opts.tv_weight * _total_variation(rendered).sum()
        if anchor is not None:
            with torch.no_grad():
                target = image.render(blur, anchor)
            distance = (rendered - target).pow(2).mean(dim=(1, 2, 3))
            if opts.init_weight > 0:
                loss = loss + opts.init_weight * distance.sum()
            distances = distance.detach().cpu()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses = per_image.detach().cpu()
    with torch.no_grad():
        final = image.render(opts.blur_end)
    pixels = (final.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    info = {"loss": losses.numpy()}
    if anchor is not None:
        info["init_mse"] = distances.numpy()
    return pixels, info


def _blur_at(start: float, end: float, frac: float) -> float:
    """Geometric interpolation from ``start`` to ``end`` (linear when one is 0)."""
    if start > 0 and end > 0:
        return float(start * (end / start) ** frac)
    return float(start + (end - start) * frac)


# ----------------------------------------------------------------------- generator
class InvertGenerator(Generator):
    """Feature inversion through the request's encoder (see the module docstring).

    Parameters
    ----------
    device, dtype : str
        Where the encoder runs during the optimisation (default CPU, float32).
    **options
        :class:`InvertOptions` fields.

    Notes
    -----
    Encoders are built with :func:`fmri2image.features.get_encoder` on first use and
    kept for the life of the generator.
    """

    name: ClassVar[str] = "invert"
    conditioning: ClassVar[str] = "embedding"
    Options: ClassVar[type] = InvertOptions

    def __init__(self, *, device: str = "cpu", dtype: str = "float32", **options: Any) -> None:
        super().__init__(device=device, dtype=dtype, **options)
        self._encoders: dict[str, Encoder] = {}

    @property
    def preferred_batch(self) -> int:
        """Its ``batch_size`` option: the images of one optimisation."""
        return int(self.options.batch_size)

    def encoder(self, name: str) -> Encoder:
        """The encoder ``name``, built once per generator."""
        if name not in self._encoders:
            from fmri2image.features import get_encoder

            self._encoders[name] = get_encoder(name, device=self.device, dtype=self.dtype)
        return self._encoders[name]

    def check(self, encoder: str | None) -> None:
        """Refuse an encoder without a differentiable pixel path (builds it, once)."""
        if encoder is None:
            raise ConfigError(
                "Generator 'invert' optimises an image through the encoder whose embedding "
                "was predicted, and no encoder was named; pass the requests' encoder "
                "(GenerationRequest.encoder, e.g. 'effnet-lite0')."
            )
        enc = self.encoder(encoder)
        if not enc.supports_pixels:
            raise ConfigError(
                f"Generator 'invert' cannot optimise images through encoder {encoder!r}: its "
                "preprocessing has no differentiable torch equivalent (Encoder.supports_pixels "
                "is False). Invert through an encoder with resize / centre-crop / mean-std "
                "preprocessing (effnet-lite0, effnet-lite2, resnet50, vit, clip, most hf:, "
                "timm: and open_clip: models), or use --generator retrieve."
            )
        scale = float(self.options.view_scale)
        if scale != 1 and not enc.any_input_size:
            raise ConfigError(
                f"Generator 'invert': view_scale {scale:g} needs an encoder that takes inputs "
                f"of any size (a convolutional network); {encoder!r} has a fixed input size. "
                "Use view_scale 1 (the default) with it."
            )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One inverted image per request, batched by encoder, in request order."""
        from PIL import Image

        require_embeddings("invert", requests)
        opts: InvertOptions = self.options
        results: list[GenerationResult | None] = [None] * len(requests)
        by_encoder: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            by_encoder.setdefault(str(r.encoder), []).append(i)
        for name, rows in by_encoder.items():
            self.check(name)
            enc = self.encoder(name)
            for start in range(0, len(rows), int(opts.batch_size)):
                chunk = [requests[i] for i in rows[start : start + int(opts.batch_size)]]
                t0 = time.perf_counter()
                made = self._invert(enc, chunk)
                seconds = (time.perf_counter() - t0) / len(chunk)
                for i, (pixels, res) in zip(rows[start:], made):
                    results[i] = GenerationResult(
                        stem=res["stem"],
                        images=(Image.fromarray(pixels),),
                        conditioning=res["conditioning"],
                        seed=res["seed"],
                        seconds=seconds,
                        extra=res["extra"],
                    )
        return [r for r in results if r is not None]

    def _invert(self, enc: Encoder, chunk: list[GenerationRequest]) -> list[tuple]:
        opts: InvertOptions = self.options
        for r in chunk:
            if np.asarray(r.embedding).reshape(-1).shape[0] != enc.dim:
                raise ConfigError(
                    f"Request {r.stem!r}: the embedding has "
                    f"{np.asarray(r.embedding).size} values but encoder {enc.name!r} gives "
                    f"{enc.dim}-d embeddings; pass the embedding predicted for that encoder."
                )
        targets = np.stack([np.asarray(r.embedding, dtype=np.float32).reshape(-1) for r in chunk])
        seeds = [image_seed(r.seed, r.stem) for r in chunk]
        deviation = opts.match == "deviation" and all(r.stats is not None for r in chunk)
        means = (
            np.stack([np.asarray(r.stats.mean, dtype=np.float32) for r in chunk])  # type: ignore[union-attr]
            if deviation
            else None
        )
        if opts.match == "deviation" and not deviation and any(r.stats is not None for r in chunk):
            # Mixed chunk: keep each image's own treatment by splitting it.
            return [self._invert(enc, [r])[0] for r in chunk]
        has_init = [r.init_image is not None for r in chunk]
        if any(has_init) and not all(has_init):  # one start per optimisation: split
            made: dict[int, tuple] = {}
            for flag in (False, True):
                rows = [i for i, h in enumerate(has_init) if h == flag]
                made.update(zip(rows, self._invert(enc, [chunk[i] for i in rows])))
            return [made[i] for i in range(len(chunk))]
        init = None
        if all(has_init):
            side = int(opts.size or default_size(enc))
            init = np.stack([_square(r.init_image, side) for r in chunk])  # type: ignore[arg-type]
        pixels, info = invert_embeddings(enc, targets, seeds, opts, means=means, init=init)
        cos, dev = _final_cosines(enc, pixels, targets, means)
        what = (
            "the prediction's deviation from the training-mean embedding"
            if deviation
            else "the predicted embedding"
        )
        start = (
            f"from the initial image (pixel weight {float(opts.init_weight):g}) "
            if init is not None
            else ""
        )
        out = []
        for k, r in enumerate(chunk):
            extra: dict[str, Any] = {
                "encoder": enc.name,
                "match": "deviation" if deviation else "raw",
                "iterations": int(opts.iterations),
                "size": int(pixels.shape[1]),
                "final_loss": float(info["loss"][k]),
                "cosine": float(cos[k]),
            }
            if dev is not None:
                extra["deviation_cosine"] = float(dev[k])
            if init is not None:
                extra["init"] = True
                extra["init_weight"] = float(opts.init_weight)
                extra["init_mse"] = float(info["init_mse"][k])
                extra["init_pixcorr"] = _pearson(pixels[k], init[k])
            conditioning = (
                f"feature inversion through {enc.name}: {int(opts.iterations)} Adam steps "
                f"{start}matching {what} "
                f"(cosine {float(dev[k] if dev is not None else cos[k]):.3f})"
            )
            out.append(
                (
                    pixels[k],
                    {
                        "stem": r.stem,
                        "seed": seeds[k],
                        "conditioning": conditioning,
                        "extra": extra,
                    },
                )
            )
        return out


def _square(image: Image.Image, side: int) -> np.ndarray:
    """An initial image as invert starts from it: central square, ``side`` px, RGB uint8."""
    from fmri2image.data.images import center_square

    return np.asarray(center_square(image, side, "bicubic"), dtype=np.uint8)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two images' pixels (PixCorr at their own size); 0 if one is flat."""
    x = np.asarray(a, np.float64).ravel() - np.mean(a)
    y = np.asarray(b, np.float64).ravel() - np.mean(b)
    d = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / d) if d > 0 else 0.0


def _final_cosines(
    enc: Encoder, pixels: np.ndarray, targets: np.ndarray, means: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cosines of the saved 8-bit images' embeddings (the encoder's usual path)."""
    import torch
    from PIL import Image

    batch = torch.stack([enc.preprocess(Image.fromarray(p)) for p in pixels])
    emb = enc.embed(batch).numpy().astype(np.float64)
    T = np.asarray(targets, dtype=np.float64)

    def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        return (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)

    dev = None if means is None else cos(emb - means, T - means)
    return cos(emb, T), dev
