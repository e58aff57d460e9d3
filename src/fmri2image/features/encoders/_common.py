"""Pieces shared by all encoder families: picklable transforms, dtype/device handling.

Nothing here imports torch at module import time, so the registry can describe
encoders (``list_encoders``, ``encoder_spec``) without loading torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image.errors import ConfigError, DataFormatError, DependencyError
from fmri2image.features.base import Encoder, EncoderSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageTransform",
    "RGBTransform",
    "TorchEncoder",
    "resolve_dtype",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
_DTYPES = ("float32", "float16", "bfloat16")
#: Short spellings users type for the dtypes above.
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}


def canonical_dtype(dtype: str) -> str:
    """``"bf16"`` -> ``"bfloat16"`` etc.; other names pass through (torch-free)."""
    return DTYPE_ALIASES.get(str(dtype), str(dtype))


@dataclass(frozen=True)
class ImageTransform:
    """Resize -> center crop -> scale -> normalize, as a small picklable object.

    It reproduces torchvision's ``Resize``/``CenterCrop``/``ToTensor``/``Normalize``
    chain on PIL images (PIL resampling with antialiasing), so it equals e.g.
    ``ResNet50_Weights.IMAGENET1K_V2.transforms()`` exactly. Being a frozen
    dataclass of numbers, it pickles into DataLoader workers without the model.

    Parameters
    ----------
    resize : int or tuple of int or None
        An int resizes the shorter side to that length (aspect kept); a
        ``(height, width)`` tuple resizes to exactly that size; ``None`` skips.
    crop : int or None
        Side of the center crop, or ``None`` for no crop.
    interpolation : str
        PIL resampling filter name: "bilinear", "bicubic", "nearest", ...
    scale : float
        Pixel values in [0, 255] are multiplied by ``scale`` first
        (``1/255`` for [0, 1] inputs, ``1.0`` to keep 0–255).
    mean, std : tuple of 3 floats
        Per-channel normalization applied after scaling: ``(x * scale - mean) / std``.
    """

    resize: int | tuple[int, int] | None
    crop: int | None
    interpolation: str = "bilinear"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ConfigError(
                f"Unknown interpolation '{self.interpolation}'; use one of {', '.join(_INTERPOLATIONS)}."
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError("ImageTransform mean and std need exactly 3 values (RGB).")
        if isinstance(self.resize, list):  # e.g. read back from JSON
            object.__setattr__(self, "resize", tuple(self.resize))

    @property
    def output_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of the output, when it does not depend on the input."""
        if self.crop is not None:
            return (self.crop, self.crop)
        if isinstance(self.resize, tuple):
            return self.resize
        return None

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """One PIL image -> float32 tensor of shape (3, H, W)."""
        import torch
        from PIL import Image as PILImage

        img = image.convert("RGB") if image.mode != "RGB" else image
        resample = getattr(PILImage.Resampling, self.interpolation.upper())
        if self.resize is not None:
            w, h = img.size
            if isinstance(self.resize, tuple):
                new_h, new_w = self.resize
            else:  # shorter side -> resize, same rounding as torchvision
                short, long = (w, h) if w <= h else (h, w)
                new_short, new_long = self.resize, int(self.resize * long / short)
                new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
            if (new_w, new_h) != (w, h):
                img = img.resize((new_w, new_h), resample=resample)
        if self.crop is not None:
            img = _center_crop(img, self.crop)
        arr = np.asarray(img, dtype=np.float32)  # (H, W, 3), 0..255
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1)
        if self.scale != 1.0:
            x = x * self.scale
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return ((x - mean) / std).contiguous()

    def transform_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """The same chain on a float batch in torch, differentiable (no PIL, no 8 bits).

        Parameters
        ----------
        pixels : Tensor of shape (B, 3, H, W)
            RGB in [0, 1].

        Returns
        -------
        Tensor of shape (B, 3, H', W')
            Equal to :meth:`__call__` on the 8-bit image when no resize happens (the
            image is already at the resize size); otherwise torch's antialiased
            resampling stands in for PIL's (``lanczos``/``box``/``hamming`` by
            bicubic), which differs by a few grey levels.
        """
        import torch
        import torch.nn.functional as F

        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ConfigError(
                f"Pixel batches must have shape (B, 3, H, W), got {tuple(pixels.shape)}."
            )
        x = pixels
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if self.resize is not None:
            if isinstance(self.resize, tuple):
                new_h, new_w = self.resize
            else:  # the shorter side, same rounding as __call__
                short, long = (w, h) if w <= h else (h, w)
                new_short, new_long = self.resize, int(self.resize * long / short)
                new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
            if (new_h, new_w) != (h, w):
                if self.interpolation == "nearest":
                    x = F.interpolate(x, size=(new_h, new_w), mode="nearest")
                else:
                    mode = "bilinear" if self.interpolation == "bilinear" else "bicubic"
                    x = F.interpolate(
                        x, size=(new_h, new_w), mode=mode, align_corners=False, antialias=True
                    )
                h, w = new_h, new_w
        if self.crop is not None:
            size = self.crop
            if h < size or w < size:  # zero padding, centred, as _center_crop
                ph, pw = max(size - h, 0), max(size - w, 0)
                x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
                h, w = int(x.shape[-2]), int(x.shape[-1])
            top, left = round((h - size) / 2.0), round((w - size) / 2.0)
            x = x[..., top : top + size, left : left + size]
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * (255.0 * self.scale) - mean) / std

    def scaled(self, factor: float) -> ImageTransform:
        """The same preprocessing at ``factor`` times the size (resize and crop)."""
        import dataclasses

        def times(n: int) -> int:
            return max(1, round(n * factor))

        resize = self.resize
        if isinstance(resize, tuple):
            resize = (times(resize[0]), times(resize[1]))
        elif resize is not None:
            resize = times(resize)
        crop = times(self.crop) if self.crop is not None else None
        return dataclasses.replace(self, resize=resize, crop=crop)

    def describe(self) -> str:
        """Human-readable description, recorded in :class:`EncoderSpec`."""
        parts = []
        if isinstance(self.resize, tuple):
            parts.append(f"resize to {self.resize[0]}x{self.resize[1]} ({self.interpolation})")
        elif self.resize is not None:
            parts.append(f"resize shorter side to {self.resize} ({self.interpolation})")
        if self.crop is not None:
            parts.append(f"center crop {self.crop}")
        pixel = "x/255" if abs(self.scale - 1 / 255) < 1e-12 else f"x*{self.scale:g}"
        mean = ", ".join(f"{m:g}" for m in self.mean)
        std = ", ".join(f"{s:g}" for s in self.std)
        parts.append(f"({pixel} - [{mean}]) / [{std}] on 0-255 RGB")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "resize": list(self.resize) if isinstance(self.resize, tuple) else self.resize,
            "crop": self.crop,
            "interpolation": self.interpolation,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
        }


@dataclass(frozen=True)
class RGBTransform:
    """Picklable wrapper converting any PIL image to RGB before a library's transform."""

    transform: Any

    def __call__(self, image: Image.Image) -> torch.Tensor:
        img = image.convert("RGB") if image.mode != "RGB" else image
        return self.transform(img).float()


def _center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision's center crop (pads with zeros if the image is smaller)."""
    w, h = img.size
    if w < size or h < size:
        from PIL import Image as PILImage

        canvas = PILImage.new("RGB", (max(w, size), max(h, size)))
        canvas.paste(img, ((max(w, size) - w) // 2, (max(h, size) - h) // 2))
        img, (w, h) = canvas, canvas.size
    top = round((h - size) / 2.0)
    left = round((w - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def resolve_dtype(dtype: str | Any) -> torch.dtype:
    """``"float32" | "float16" | "bfloat16"`` (or a torch dtype) -> ``torch.dtype``."""
    import torch

    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    else:
        name = canonical_dtype(dtype)
    if name not in _DTYPES:
        raise ConfigError(f"Unsupported dtype '{dtype}'; use one of {', '.join(_DTYPES)}.")
    return getattr(torch, name)


def resolve_device(device: str | Any) -> str:
    """Validate a device string; a CUDA device must exist."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"Device '{device}' was requested but CUDA is not available on this machine. "
            "Use device='cpu', or install a CUDA build of torch on a machine with a GPU."
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"Device '{device}' was requested but MPS is not available; use 'cpu'.")
    return str(dev)


def import_package(module: str, pip_name: str, feature: str):
    """Import a required package or raise :class:`DependencyError` naming the pip package.

    For optional extras use :func:`fmri2image.errors.require` instead.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(
            f"{feature} needs the package '{pip_name}', which is not installed or fails to "
            f"import ({exc}). Install it with: pip install {pip_name}"
        ) from exc


def hub_offline(local_files_only: bool | None) -> bool:
    """Whether hub downloads are disabled by a setting (argument, else ``HF_HUB_OFFLINE``).

    Settings only; :func:`fmri2image.features.encoders._net.hub_access` also probes
    whether the hub can be reached.
    """
    if local_files_only is not None:
        return bool(local_files_only)
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


#: Convolutions a model needs before it runs in channels-last layout.
_MIN_CONVS = 8


def _count_convs(model: torch.nn.Module) -> int:
    """The 2-d convolutions of ``model``.  With at least :data:`_MIN_CONVS` of them it
    runs in ``torch.channels_last`` layout:

    oneDNN's CPU convolutions (depthwise ones above all: EfficientNet, MobileNet) and
    cuDNN's half-precision ones run faster on NHWC tensors: measured on 2 CPU cores,
    a feature inversion through EfficientNet-Lite2 took about 15 % less CPU time, and
    a Lite0 forward pass of 32 images 1.3 s instead of 1.9 s.
    Results agree with the default layout to float rounding (~1e-5).  Transformers
    (ViT, CLIP), whose one convolution is the patch embedding, keep the default.
    """
    import torch

    return sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())


class TorchEncoder(Encoder):
    """An :class:`Encoder` made of a picklable transform and a ``torch.nn.Module``.

    Parameters
    ----------
    spec : EncoderSpec
        Description of the encoder.
    model : torch.nn.Module
        Maps a preprocessed batch (B, 3, H, W) to embeddings; ``forward_fn`` may
        pick the embedding out of a richer model output.
    transform : callable
        Picklable ``PIL.Image -> Tensor (3, H, W)``; exposed as :attr:`preprocess`.
    device, dtype : str
        Where and in which precision the model runs. Outputs are always float32 CPU.
    forward_fn : callable, optional
        ``forward_fn(model, batch) -> Tensor (B, dim)``; default ``model(batch)``.
    head : tuple of (ndarray, list of str), optional
        Classifier weights (n_classes, dim) and class wnids, for :meth:`class_prototypes`.
    text_loader : callable, optional
        ``text_loader(device, torch_dtype) -> encode`` where ``encode(prompts: list[str])
        -> Tensor (n, dim)`` embeds text into the image space. Called once, on the first
        :meth:`embed_text`, so the text tower and tokenizer are loaded only when asked.
    pixel_transform : ImageTransform, optional
        The preprocessing as resize / crop / normalization numbers, for the
        differentiable :meth:`embed_pixels`; default ``transform`` itself when it is an
        :class:`ImageTransform`.  Families whose transform is a library object pass
        its equivalent here; without one :attr:`supports_pixels` is False.
    """

    def __init__(
        self,
        spec: EncoderSpec,
        model: torch.nn.Module,
        transform: Any,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        forward_fn: Any = None,
        head: tuple[np.ndarray, list[str]] | None = None,
        text_loader: Callable[[str, Any], Callable[[list[str]], Any]] | None = None,
        pixel_transform: ImageTransform | None = None,
    ) -> None:
        import torch

        torch_dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self.dtype = str(torch_dtype).removeprefix("torch.")
        self.spec = spec
        self.model = model.eval().requires_grad_(False).to(device=self.device, dtype=torch_dtype)
        convs = _count_convs(self.model)
        self._memory_format = torch.channels_last if convs >= _MIN_CONVS else None
        # A transformer has one convolution (its patch embedding) and fixed position
        # embeddings; a convolutional network with global pooling takes any size.
        self._any_input_size = convs >= 2
        if self._memory_format is not None:
            self.model = self.model.to(memory_format=self._memory_format)
        self._transform = transform
        self._forward_fn = forward_fn
        self._head = head
        self._torch_dtype = torch_dtype
        self._text_loader = text_loader
        self._text_encode: Callable[[list[str]], Any] | None = None
        if pixel_transform is None and isinstance(transform, ImageTransform):
            pixel_transform = transform
        self._pixel_transform = pixel_transform

    # A property, not a method: ``encoder.preprocess`` is the transform object itself,
    # so pickling it (DataLoader workers) never drags the model along.
    @property
    def preprocess(self):  # type: ignore[override]
        """Picklable callable: one RGB ``PIL.Image`` -> float32 tensor (3, H, W)."""
        return self._transform

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed batch (B, 3, H, W) -> embeddings (B, dim), float32 on CPU."""
        import torch

        if batch.ndim == 3:
            batch = batch.unsqueeze(0)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ConfigError(
                f"{self.name}: embed() expects a preprocessed batch of shape (B, 3, H, W), got "
                f"{tuple(batch.shape)}. Apply encoder.preprocess to each image first."
            )
        with torch.inference_mode():
            x = batch.to(device=self.device, dtype=self._torch_dtype, non_blocking=True)
            if self._memory_format is not None:
                x = x.contiguous(memory_format=self._memory_format)
            out = self._forward_fn(self.model, x) if self._forward_fn else self.model(x)
            out = out.reshape(out.shape[0], -1)
        if out.shape[1] != self.spec.dim:  # pragma: no cover - guards a registry bug
            raise RuntimeError(
                f"{self.name}: got {out.shape[1]}-d output, spec says {self.spec.dim}"
            )
        # clone() outside inference mode: callers get an ordinary tensor they may modify.
        return out.float().cpu().clone()

    @property
    def pixel_transform(self) -> ImageTransform | None:
        """The preprocessing :meth:`embed_pixels` reproduces in torch, or None."""
        return self._pixel_transform

    @property
    def supports_pixels(self) -> bool:
        return self._pixel_transform is not None

    @property
    def any_input_size(self) -> bool:
        """A convolutional network: more than the one convolution of a transformer's
        patch embedding."""
        return self._any_input_size

    def embed_pixels(self, pixels: torch.Tensor, *, view_scale: float = 1.0) -> torch.Tensor:
        """RGB batch (B, 3, H, W) in [0, 1] -> embeddings (B, dim), float32, with autograd.

        The preprocessing runs in torch (:meth:`ImageTransform.transform_pixels`) and
        the result stays on :attr:`device`, attached to the graph; see
        :meth:`Encoder.embed_pixels`.  ``view_scale`` scales its resize and crop.
        """
        if self._pixel_transform is None:
            return super().embed_pixels(pixels)
        if pixels.ndim == 3:
            pixels = pixels.unsqueeze(0)
        transform = self._pixel_transform
        if view_scale != 1.0:
            if not self.any_input_size:
                raise ConfigError(
                    f"{self.name}: view_scale {view_scale:g} needs a network that takes "
                    "inputs of any size (a convolutional one); this one has a fixed input "
                    "size, use view_scale 1."
                )
            transform = transform.scaled(view_scale)
        x = transform.transform_pixels(pixels.to(self.device))
        x = x.to(self._torch_dtype)
        if self._memory_format is not None:
            x = x.contiguous(memory_format=self._memory_format)
        out = self._forward_fn(self.model, x) if self._forward_fn else self.model(x)
        return out.reshape(out.shape[0], -1).float()

    def class_prototypes(self) -> tuple[np.ndarray, list[str]] | None:
        if self._head is None:
            return None
        weights, wnids = self._head
        return np.array(weights, dtype=np.float32, copy=True), list(wnids)

    @property
    def has_text_tower(self) -> bool:
        return self._text_loader is not None

    def embed_text(self, prompts: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
        """Prompts -> projected text embeddings (n, dim), float32; loads the text tower once."""
        if self._text_loader is None:
            return super().embed_text(prompts, batch_size=batch_size)
        import torch

        if isinstance(prompts, str):
            raise ConfigError("embed_text expects a list of prompts, not one string.")
        prompts = [str(p) for p in prompts]
        if batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size}.")
        if self._text_encode is None:
            self._text_encode = self._text_loader(self.device, self._torch_dtype)
        out = np.empty((len(prompts), self.spec.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                chunk = prompts[start : start + batch_size]
                emb = self._text_encode(chunk).reshape(len(chunk), -1)
                if emb.shape[1] != self.spec.dim:
                    raise DataFormatError(
                        f"{self.name}: the text tower gives {emb.shape[1]}-d embeddings but "
                        f"the image embeddings are {self.spec.dim}-d; the checkpoint's text and "
                        "image projections do not match."
                    )
                out[start : start + len(chunk)] = emb.float().cpu().numpy()
        return out
