r"""The low-level pathway: a compact image code and the ``lowlevel`` generator.

Brain-Diffuser (Ozcelik & VanRullen 2023) and MindEye2 (Scotti et al. 2024) make
two pictures per test image: a semantic one from high-level embeddings, and a
*blurry* one that carries the layout and colour early visual cortex encodes.  The
blurry picture is decoded from a linear map of V1–V3 to a compact image code fitted
on the training stimuli (a VDVAE or Stable Diffusion VAE latent in the papers), and
then serves as the initial image of the semantic generator (img2img), so that the
final picture keeps the coarse layout.

Here the code is an :class:`ImageCode`, fitted on the *training stimuli only*:

* ``pca`` (:class:`PCACode`, default): the stimuli are centre-cropped to a square,
  resized to ``resolution`` pixels (PIL bilinear, antialiased), scaled to [0, 1] and
  flattened to :math:`x \in \mathbb{R}^{3 R^2}`; the code of an image is its
  projection on the ``n_components`` leading principal components of the training
  stimuli, :math:`c = V_K (x - \bar x)`, and a code decodes to
  :math:`\mathrm{clip}(\bar x + V_K^\top c, 0, 1)`.  Pure numpy, no weights.
* ``vae`` (:class:`VAECode`): the latent mean of a diffusers ``AutoencoderKL`` (the
  Stable Diffusion VAE by default) at ``resolution`` pixels, times the VAE's scaling
  factor, flattened; decoding runs the VAE's decoder.  Needs diffusers and the VAE's
  weights (hub id or ``save_pretrained`` folder, loaded as the diffusion generators
  load theirs).

A code is saved as a folder (:meth:`ImageCode.save`, :func:`load_code`):
``codebook.json`` (format, version, kind, sizes, the checksum of the arrays) and
``codebook.safetensors`` (the fitted arrays), both written atomically.

The ``lowlevel`` generator decodes each request's ``embedding`` — a code vector
predicted from the early visual ROI (``roi``, ``ROI_LVC`` by default) by a mapping
fitted on the training stimuli's codes — through the codebook a run hands it (the
``codebook`` pipeline input), and resizes the result to ``size`` pixels.  It is
deterministic: no seed changes a picture.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from fmri2image.errors import ConfigError, DataFormatError, ModelUnavailableError
from fmri2image.generation.base import (
    GenerationRequest,
    GenerationResult,
    Generator,
    image_seed,
)
from fmri2image.registry import Needs

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "CODES",
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "ImageCode",
    "LowLevelGenerator",
    "LowLevelOptions",
    "PCACode",
    "VAECode",
    "codebook_digest",
    "load_code",
    "load_vae",
    "make_code",
    "square_pixels",
]

logger = logging.getLogger(__name__)

#: The image codes a ``lowlevel`` generator can decode.
CODES = ("pca", "vae")
FORMAT = "fmri2image.lowlevel-code"
FORMAT_VERSION = 1
CONFIG_FILE = "codebook.json"
WEIGHTS_FILE = "codebook.safetensors"
DEFAULT_VAE = "stabilityai/sd-vae-ft-mse"


@dataclass(frozen=True)
class LowLevelOptions:
    """Options of the ``lowlevel`` generator (the low-level pathway).

    Attributes
    ----------
    roi : str
        Early visual ROI the run maps to the image code (ROI_LVC = V1 + V2 + V3).
    code : str
        pca: principal components of the training stimuli's pixels at resolution;
        vae: latents of a Stable Diffusion VAE (needs diffusers and its weights).
    resolution : int
        Side in pixels of the square image the code describes: pca is fitted on the
        stimuli at this size; vae encodes at it (a multiple of 8; the SD VAE's
        latent is 4 x resolution/8 x resolution/8, so use 64 or 128 there).
    n_components : int
        pca: principal components kept (at most the number of training stimuli
        minus one; fewer are kept when the training set is smaller).
    vae : str
        vae: hub id or local folder of a diffusers AutoencoderKL (a VAE folder, or a
        pipeline folder with a vae/ sub-folder).
    size : int
        Side in pixels of the picture returned (bicubic upsampling of the decoded
        code).
    codebook : str or None
        Folder of the fitted code (codebook.json + codebook.safetensors); a run sets
        it to what its lowlevel stage fitted on the training stimuli.
    batch_size : int
        vae: images per VAE encoder or decoder call.
    """

    roi: str = "ROI_LVC"
    code: str = "pca"
    resolution: int = 32
    n_components: int = 128
    vae: str = DEFAULT_VAE
    size: int = 256
    codebook: str | None = None
    batch_size: int = 16

    def __post_init__(self) -> None:
        problems = []

        def whole(name: str, lo: int, hi: int) -> bool:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= v <= hi:
                problems.append(f"{name} must be a whole number from {lo} to {hi} (got {v!r})")
                return False
            return True

        if not isinstance(self.roi, str) or not self.roi.strip():
            problems.append(f"roi must name an ROI such as ROI_LVC (got {self.roi!r})")
        if self.code not in CODES:
            problems.append(f"code must be one of {', '.join(CODES)} (got {self.code!r})")
        if whole("resolution", 4, 1024) and self.code == "vae" and self.resolution % 8:
            problems.append(
                f"resolution must be a multiple of 8 for code=vae (got {self.resolution})"
            )
        whole("n_components", 1, 100_000)
        whole("size", 8, 4096)
        whole("batch_size", 1, 4096)
        if not isinstance(self.vae, str) or not self.vae.strip():
            problems.append(f"vae must be a hub id or a folder (got {self.vae!r})")
        if self.codebook is not None and (
            not isinstance(self.codebook, str | os.PathLike) or not str(self.codebook).strip()
        ):
            problems.append(f"codebook must be a folder or none (got {self.codebook!r})")
        if problems:
            raise ConfigError(
                "Invalid options for generator 'lowlevel': " + "; ".join(problems) + ". "
                "See `fmri2image generate --generator lowlevel --list-options` for each "
                "option's meaning and default."
            )


# ------------------------------------------------------------------ pixels
def square_pixels(images: Sequence[Image.Image], side: int) -> np.ndarray:
    """Stimuli as the codes see them: centre square, ``side`` pixels, RGB in [0, 1].

    Parameters
    ----------
    images : sequence of PIL.Image.Image
        Any mode (converted to RGB) and aspect ratio (the central square is kept).
    side : int

    Returns
    -------
    ndarray of shape (n, side, side, 3), float32
        PIL bilinear resize (antialiased when shrinking), divided by 255.
    """
    from PIL import Image as PILImage

    from fmri2image.data.images import center_square

    out = np.empty((len(images), side, side, 3), dtype=np.float32)
    for i, img in enumerate(images):
        if not isinstance(img, PILImage.Image):
            raise DataFormatError(
                f"image {i} is a {type(img).__name__}, not a PIL image; decode files with "
                "fmri2image.data.images.decode_image first."
            )
        out[i] = np.asarray(center_square(img, side, "bilinear"), dtype=np.float32) / 255.0
    return out


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return (np.clip(pixels, 0.0, 1.0) * 255.0).round().astype(np.uint8)


# ------------------------------------------------------------------ codes
class ImageCode(abc.ABC):
    """A compact image code fitted on training stimuli: images <-> code vectors.

    Subclasses set :attr:`kind` and implement :meth:`fit`, :meth:`encode`,
    :meth:`decode`, :attr:`dim`, :meth:`_state` and :meth:`_from_state`.

    Attributes
    ----------
    kind : str
        One of :data:`CODES`.
    resolution : int
        Side of the square images the code describes (and decodes to).
    """

    kind: ClassVar[str] = ""
    resolution: int

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Length of a code vector."""

    @property
    def fitted(self) -> bool:
        return True

    @abc.abstractmethod
    def fit(self, images: Sequence[Image.Image]) -> ImageCode:
        """Fit on the training stimuli (never test images); returns ``self``."""

    @abc.abstractmethod
    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Codes of ``images``, shape (n, dim), float32."""

    @abc.abstractmethod
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Pictures of ``codes`` (n, dim): shape (n, resolution, resolution, 3), uint8."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A few words for a result's conditioning (``"pca code (64 components)"``)."""

    @abc.abstractmethod
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON fields) to save."""

    @classmethod
    @abc.abstractmethod
    def _from_state(
        cls, config: dict[str, Any], tensors: dict[str, np.ndarray], **kwargs: Any
    ) -> ImageCode:
        """Rebuild from what :meth:`_state` saved (``DataFormatError`` if inconsistent)."""

    def _codes(self, codes: np.ndarray) -> np.ndarray:
        """``codes`` as float32 rows of length :attr:`dim` (ConfigError otherwise)."""
        C = np.asarray(codes, dtype=np.float32)
        if C.ndim == 1:
            C = C[None]
        if C.ndim != 2 or C.shape[1] != self.dim:
            raise ConfigError(
                f"{self.describe()}: codes must have {self.dim} values per image; got an array "
                f"of shape {np.shape(codes)}. Predict the codes of this codebook (the mapping "
                "must be fitted on ImageCode.encode of the training stimuli)."
            )
        if not np.isfinite(C).all():
            raise ConfigError(f"{self.describe()}: the codes contain NaN or infinite values.")
        return C

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the fitted code to ``folder`` (created): the arrays, then the JSON.

        The JSON, written last, records the arrays' SHA-256, so a folder whose save
        was interrupted or whose arrays changed is refused by :func:`load_code`.
        """
        from fmri2image import __version__
        from fmri2image._io import file_sha256, save_json, save_safetensors

        if not self.fitted:
            raise ConfigError(
                f"The {self.kind} code is not fitted: call fit(training_images) before save."
            )
        tensors, fields = self._state()
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        weights = save_safetensors(out / WEIGHTS_FILE, tensors, metadata={"format": FORMAT})
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "fmri2image_version": __version__,
            "kind": self.kind,
            "resolution": int(self.resolution),
            "dim": int(self.dim),
            **fields,
            "weights_file": WEIGHTS_FILE,
            "weights_sha256": file_sha256(weights),
        }
        save_json(out / CONFIG_FILE, config)
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike, **kwargs: Any) -> ImageCode:
        """Read a code saved by :meth:`save` (of this class, or any kind on the base).

        ``kwargs`` go to the kind's loader (``device``, ``dtype`` for vae).

        Raises
        ------
        DataFormatError
            Missing or damaged files, another format, a newer version, a checksum
            mismatch, or a code of another kind than ``cls``.
        """
        config, tensors = _read_codebook(Path(folder))
        target = _CODE_CLASSES[config["kind"]]
        if cls is not ImageCode and not issubclass(target, cls):
            raise DataFormatError(
                f"{folder} holds a {config['kind']} code, not a {cls.kind} code; use "
                "fmri2image.generation.lowlevel.load_code to read any kind."
            )
        try:
            return target._from_state(config, tensors, **kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(
                f"{folder} does not hold a valid {config['kind']} code ({exc}); it is damaged "
                "or from an incompatible version. Fit and save the code again."
            ) from exc


def _read_codebook(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from fmri2image._io import file_sha256, load_json, load_safetensors

    cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise DataFormatError(
            f"{folder} is not a saved image code: it must hold {CONFIG_FILE} and "
            f"{WEIGHTS_FILE} (written by ImageCode.save, e.g. by a run's lowlevel stage)."
        )
    config = load_json(cfg_path)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DataFormatError(f"{cfg_path} does not describe an image code (format {FORMAT!r}).")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataFormatError(
            f"{cfg_path} has format version {version!r}, newer than this fmri2image "
            f"understands ({FORMAT_VERSION}); upgrade fmri2image."
        )
    if config.get("kind") not in _CODE_CLASSES:
        raise DataFormatError(
            f"{cfg_path} names the code kind {config.get('kind')!r}; known: {', '.join(CODES)}."
        )
    if file_sha256(w_path) != config.get("weights_sha256"):
        raise DataFormatError(
            f"{w_path} does not match the checksum recorded in {cfg_path}: the files come "
            "from different saves or were modified. Fit and save the code again."
        )
    try:
        tensors, _ = load_safetensors(w_path)
    except Exception as exc:  # safetensors raises its own error types
        raise DataFormatError(f"{w_path} cannot be read ({exc}).") from exc
    return config, tensors


class PCACode(ImageCode):
    """Principal components of the training stimuli's low-resolution pixels.

    Parameters
    ----------
    resolution : int
        Side of the square, RGB images the components describe (``3 resolution²``
        values each).
    n_components : int
        Components to keep; at most ``n_train - 1`` (and the rank of the centred
        training pixels) are kept.

    Attributes
    ----------
    mean_ : ndarray of shape (3 R²,), float32
        Mean training image (R, R, 3 flattened), in [0, 1].
    components_ : ndarray of shape (K, 3 R²), float32
        Orthonormal rows: the leading right singular vectors of the centred training
        pixels, each signed so that its largest loading is positive.
    singular_values_ : ndarray of shape (K,), float32
    explained_variance_ratio_ : ndarray of shape (K,), float32
        Share of the training pixels' variance along each component.
    n_train_ : int
    """

    kind: ClassVar[str] = "pca"

    def __init__(self, resolution: int = 32, n_components: int = 128) -> None:
        self.resolution = int(resolution)
        self.n_components = int(n_components)
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self.components_ is not None

    @property
    def dim(self) -> int:
        if self.components_ is None:
            raise ConfigError("The pca code is not fitted: call fit(training_images) first.")
        return int(self.components_.shape[0])

    def _pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        return square_pixels(images, self.resolution).reshape(len(images), -1)

    def fit(self, images: Sequence[Image.Image]) -> PCACode:
        X = self._pixels(images).astype(np.float64)
        if len(X) < 2:
            raise ConfigError(f"The pca code needs at least 2 training images; got {len(X)}.")
        mean = X.mean(axis=0)
        _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
        rank = int((s > s[0] * 1e-6).sum()) if s[0] > 0 else 0
        if rank == 0:
            raise ConfigError("The pca code cannot be fitted: every training image is the same.")
        keep = min(self.n_components, len(X) - 1, rank)
        if keep < self.n_components:
            logger.info(
                "pca code: %d components kept of the %d asked (%d training images, rank %d)",
                keep, self.n_components, len(X), rank,
            )  # fmt: skip
        vt = vt[:keep]
        vt *= np.sign(vt[np.arange(keep), np.abs(vt).argmax(axis=1)])[:, None]
        self.mean_ = mean.astype(np.float32)
        self.components_ = vt.astype(np.float32)
        self.singular_values_ = s[:keep].astype(np.float32)
        self.explained_variance_ratio_ = (s[:keep] ** 2 / (s**2).sum()).astype(np.float32)
        self.n_train_ = len(X)
        return self

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        if self.components_ is None or self.mean_ is None:
            raise ConfigError("The pca code is not fitted: call fit(training_images) first.")
        X = self._pixels(images)
        return ((X - self.mean_) @ self.components_.T).astype(np.float32)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        C = self._codes(codes)
        assert self.mean_ is not None and self.components_ is not None
        X = self.mean_ + C @ self.components_
        R = self.resolution
        return _to_uint8(X).reshape(len(C), R, R, 3)

    def describe(self) -> str:
        k = self.dim if self.fitted else self.n_components
        return f"pca code ({k} components of {self.resolution} px images)"

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors = {
            "mean": self.mean_,
            "components": self.components_,
            "singular_values": self.singular_values_,
            "explained_variance_ratio": self.explained_variance_ratio_,
        }
        fields = {
            "n_components": int(self.dim),
            "n_components_asked": int(self.n_components),
            "n_train": int(self.n_train_),
            "explained_variance": float(self.explained_variance_ratio_.sum()),
        }
        return tensors, fields  # type: ignore[return-value]

    @classmethod
    def _from_state(
        cls, config: dict[str, Any], tensors: dict[str, np.ndarray], **kwargs: Any
    ) -> PCACode:
        R, k = int(config["resolution"]), int(config["n_components"])
        code = cls(R, int(config.get("n_components_asked", k)))
        mean = np.asarray(tensors["mean"], dtype=np.float32)
        comps = np.asarray(tensors["components"], dtype=np.float32)
        if mean.shape != (3 * R * R,) or comps.shape != (k, 3 * R * R):
            raise ValueError(
                f"mean {mean.shape} and components {comps.shape} do not fit {k} components "
                f"of {R} px images"
            )
        if not (np.isfinite(mean).all() and np.isfinite(comps).all()):
            raise ValueError("non-finite values in the arrays")
        code.mean_, code.components_ = mean, comps
        code.singular_values_ = np.asarray(tensors["singular_values"], dtype=np.float32)
        code.explained_variance_ratio_ = np.asarray(
            tensors["explained_variance_ratio"], dtype=np.float32
        )
        code.n_train_ = int(config["n_train"])
        return code


# ------------------------------------------------------------------ vae
def _is_folder(source: str) -> bool:
    from fmri2image.features.encoders._hf import _is_pathlike

    return _is_pathlike(source)


def load_vae(
    model: str,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    local_files_only: bool | None = None,
    cache_dir: str | None = None,
) -> Any:
    """A diffusers ``AutoencoderKL`` from a hub id or a folder (safetensors only).

    A folder may be the VAE's own (``config.json``) or a pipeline's (its ``vae/``
    sub-folder is read).  Offline handling is the encoders'
    (:mod:`fmri2image.features.encoders._net`): with ``HF_HUB_OFFLINE=1`` or an
    unreachable hub a VAE missing from the cache fails at once, saying how to get it.

    Raises
    ------
    ModelUnavailableError
        Not found, not a VAE folder, or no safetensors weights.
    DependencyError
        diffusers is not installed.
    """
    import torch

    from fmri2image.errors import require
    from fmri2image.features.encoders._hf import _first_line
    from fmri2image.features.encoders._net import hub_access, offline_help

    diffusers = require("diffusers", "diffusion", "The lowlevel generator's vae code")
    if dtype == "auto":  # the CLI's default: half precision on CUDA only
        dtype = "float16" if str(device).startswith("cuda") else "float32"
    if dtype not in ("float32", "float16", "bfloat16"):
        raise ConfigError(f"--dtype {dtype!r}: choose float32, float16, bfloat16 or auto.")
    kwargs: dict[str, Any] = {"torch_dtype": getattr(torch, dtype), "use_safetensors": True}
    if _is_folder(model):
        path = os.path.expanduser(model)
        if os.path.isfile(os.path.join(path, "config.json")):
            subfolder = None
        elif os.path.isfile(os.path.join(path, "vae", "config.json")):
            subfolder = "vae"
        else:
            raise ModelUnavailableError(
                f"'{model}' is not a VAE folder: it has neither config.json nor vae/config.json. "
                "Save one with vae.save_pretrained(dir, safe_serialization=True), or pass a "
                f"hub id such as {DEFAULT_VAE}."
            )
        source, access = path, None
        kwargs.update(subfolder=subfolder, local_files_only=True)
    else:
        access = hub_access(local_files_only)
        source = model
        kwargs.update(cache_dir=cache_dir, local_files_only=access.offline)
    try:
        level = diffusers.utils.logging.get_verbosity()
        diffusers.utils.logging.set_verbosity_error()
        try:
            with warnings.catch_warnings():  # the hub client's deprecation chatter
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", UserWarning)
                vae = diffusers.AutoencoderKL.from_pretrained(source, **kwargs)
        finally:
            diffusers.utils.logging.set_verbosity(level)
    except (OSError, ValueError) as exc:
        if access is None:
            raise ModelUnavailableError(
                f"Cannot load the VAE in '{model}' ({_first_line(exc)}). It must hold "
                "config.json and diffusion_pytorch_model.safetensors, as written by "
                "vae.save_pretrained(dir, safe_serialization=True)."
            ) from exc
        files = '--include "config.json" "diffusion_pytorch_model.safetensors"'
        raise ModelUnavailableError(
            f"VAE '{model}' is not in the local Hugging Face cache and {access.describe()}. "
            f"{offline_help(model, files=files, cache_dir=cache_dir)} Or download the folder "
            f"and pass it as --option vae=/path/to/folder. Details: {_first_line(exc)}"
        ) from exc
    return vae.to(device).eval()


class VAECode(ImageCode):
    """Latents of a diffusers ``AutoencoderKL`` (the Stable Diffusion VAE by default).

    The code of an image is the mean of the VAE's latent distribution at
    ``resolution`` pixels, shifted and scaled as the VAE's diffusion model sees it
    (``(z - shift_factor) * scaling_factor``), flattened (C x h x w).  Nothing is
    learned from the stimuli: :meth:`fit` records the training codes' mean and
    standard deviation (saved with the code, for reference).  The VAE loads on first
    use (:func:`load_vae`).

    Parameters
    ----------
    model : str
        Hub id or folder of the VAE.
    resolution : int
        Side of the square images the VAE encodes (a multiple of its downsampling
        factor, 8 for Stable Diffusion's).
    device, dtype : str
    batch_size : int
        Images per VAE call.
    vae : AutoencoderKL, optional
        An already loaded VAE (then ``model`` only names it).
    """

    kind: ClassVar[str] = "vae"

    def __init__(
        self,
        model: str = DEFAULT_VAE,
        resolution: int = 64,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 16,
        vae: Any = None,
    ) -> None:
        self.model = str(model)
        self.resolution = int(resolution)
        self.device, self.dtype, self.batch_size = device, dtype, int(batch_size)
        self._vae = vae
        self._expected: dict[str, Any] | None = None  # what a loaded codebook recorded
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.n_train_ = 0

    @property
    def vae(self) -> Any:
        """The loaded ``AutoencoderKL`` (loaded on first use)."""
        if self._vae is None:
            vae = load_vae(self.model, device=self.device, dtype=self.dtype)
            self._check_vae(vae)
            self._vae = vae
        return self._vae

    def _check_vae(self, vae: Any) -> None:
        """Refuse a VAE other than the one a loaded codebook was fitted with."""
        found = _geometry(vae, self.resolution)
        if self._expected is not None and found != self._expected:
            raise ConfigError(
                f"The VAE '{self.model}' is not the one this codebook was fitted with: it "
                f"gives {found}, the codebook recorded {self._expected}."
            )

    def _factor(self) -> int:
        return _downsampling(self.vae)

    def _geometry(self) -> dict[str, Any]:
        return _geometry(self.vae, self.resolution)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        shape = (self._expected or self._geometry())["latent_shape"]
        return int(shape[0]), int(shape[1]), int(shape[2])

    @property
    def dim(self) -> int:
        c, h, w = self.latent_shape
        return c * h * w

    @property
    def fitted(self) -> bool:
        return self.mean_ is not None

    def _check_resolution(self) -> None:
        if self.resolution % self._factor():
            raise ConfigError(
                f"The VAE '{self.model}' downsamples by {self._factor()}: resolution must be a "
                f"multiple of it (got {self.resolution})."
            )

    def fit(self, images: Sequence[Image.Image]) -> VAECode:
        Z = self.encode(images).astype(np.float64)
        self.mean_ = Z.mean(axis=0).astype(np.float32)
        self.std_ = Z.std(axis=0).astype(np.float32)
        self.n_train_ = len(Z)
        return self

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        self._check_resolution()
        vae, geo = self.vae, self._geometry()
        shift = geo["shift_factor"] or 0.0
        out = []
        for start in range(0, len(images), self.batch_size):
            px = square_pixels(images[start : start + self.batch_size], self.resolution)
            x = torch.from_numpy(px).permute(0, 3, 1, 2) * 2.0 - 1.0
            x = x.to(device=vae.device, dtype=vae.dtype)
            with torch.no_grad():
                z = vae.encode(x).latent_dist.mean
            z = (z.float() - shift) * geo["scaling_factor"]
            out.append(z.reshape(len(px), -1).cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        import torch

        C = self._codes(codes)
        vae, geo = self.vae, self._geometry()
        shift = geo["shift_factor"] or 0.0
        out = []
        for start in range(0, len(C), self.batch_size):
            z = torch.from_numpy(C[start : start + self.batch_size])
            z = z.reshape(-1, *self.latent_shape) / geo["scaling_factor"] + shift
            with torch.no_grad():
                x = vae.decode(z.to(device=vae.device, dtype=vae.dtype)).sample
            px = ((x.float() + 1.0) / 2.0).permute(0, 2, 3, 1).cpu().numpy()
            out.append(_to_uint8(px))
        R = self.resolution
        return np.concatenate(out) if out else np.zeros((0, R, R, 3), np.uint8)

    def describe(self) -> str:
        c, h, w = self.latent_shape
        return f"vae code ({self.model}, {c}x{h}x{w} latent of {self.resolution} px images)"

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        model = self.model
        if _is_folder(model):
            model = str(Path(model).expanduser().resolve())
        fields = {"vae": model, **(self._expected or self._geometry()), "n_train": self.n_train_}
        return {"mean": self.mean_, "std": self.std_}, fields  # type: ignore[dict-item]

    @classmethod
    def _from_state(
        cls,
        config: dict[str, Any],
        tensors: dict[str, np.ndarray],
        *,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 16,
        vae: Any = None,
    ) -> VAECode:
        code = cls(
            config["vae"], int(config["resolution"]), device=device, dtype=dtype,
            batch_size=batch_size, vae=vae,
        )  # fmt: skip
        shape = [int(v) for v in config["latent_shape"]]
        shift = config.get("shift_factor")
        code._expected = {
            "latent_shape": shape,
            "scaling_factor": float(config["scaling_factor"]),
            "shift_factor": None if shift is None else float(shift),
        }
        dim = int(np.prod(shape))
        mean, std = np.asarray(tensors["mean"], np.float32), np.asarray(tensors["std"], np.float32)
        if mean.shape != (dim,) or std.shape != (dim,) or int(config["dim"]) != dim:
            raise ValueError(f"training statistics of shape {mean.shape} for a {shape} latent")
        code.mean_, code.std_, code.n_train_ = mean, std, int(config["n_train"])
        if vae is not None:
            code._check_vae(vae)
        return code


def _downsampling(vae: Any) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _geometry(vae: Any, resolution: int) -> dict[str, Any]:
    """Latent shape at ``resolution`` and the latent scaling of a VAE."""
    cfg = vae.config
    shift = getattr(cfg, "shift_factor", None)
    side = resolution // _downsampling(vae)
    return {
        "latent_shape": [int(cfg.latent_channels), side, side],
        "scaling_factor": float(cfg.scaling_factor),
        "shift_factor": None if shift is None else float(shift),
    }


_CODE_CLASSES: dict[str, type[ImageCode]] = {"pca": PCACode, "vae": VAECode}


def make_code(
    options: LowLevelOptions, *, device: str = "cpu", dtype: str = "float32"
) -> ImageCode:
    """The (unfitted) image code ``options`` describe: a :class:`PCACode` or :class:`VAECode`.

    The VAE is not loaded until the code is used.
    """
    if options.code == "pca":
        return PCACode(options.resolution, options.n_components)
    return VAECode(
        options.vae, options.resolution, device=device, dtype=dtype,
        batch_size=options.batch_size,
    )  # fmt: skip


def load_code(
    folder: str | os.PathLike, *, device: str = "cpu", dtype: str = "float32", **kwargs: Any
) -> ImageCode:
    """Read a code saved by :meth:`ImageCode.save`, whichever kind it is.

    ``device``, ``dtype`` and ``kwargs`` (``batch_size``, ``vae``: an already loaded
    VAE) apply to a vae code; a pca code runs in numpy.

    Raises
    ------
    DataFormatError
        Missing or damaged files (see :meth:`ImageCode.load`).
    """
    return ImageCode.load(folder, device=device, dtype=dtype, **kwargs)


# ------------------------------------------------------------------ generator
class LowLevelGenerator(Generator):
    """``lowlevel``: decode predicted image codes into blurry pictures.

    Each request's ``embedding`` is a code vector of the codebook (``options.codebook``,
    loaded once and kept), predicted from the early visual ROI; its encoder name, if
    any, is ignored.  The decoded ``resolution``-pixel image is resized to ``size``
    (bicubic).  Deterministic: the result's ``seed`` is recorded for the run's
    bookkeeping only.

    Parameters
    ----------
    device, dtype : str
        Where a vae code's decoder runs (pca runs in numpy).
    **options
        :class:`LowLevelOptions` fields.
    """

    name: ClassVar[str] = "lowlevel"
    takes_init: ClassVar[bool] = False
    conditioning: ClassVar[str] = "embedding"
    description: ClassVar[str] = (
        "blurry picture decoded from an early-visual-cortex map to a compact image code "
        "(Brain-Diffuser/MindEye2 low-level pathway)"
    )
    needs: ClassVar[Needs] = Needs(offline=True, inputs=("codebook",))
    Options: ClassVar[type] = LowLevelOptions

    def __init__(self, *, device: str = "cpu", dtype: str = "float32", **options: Any) -> None:
        super().__init__(device=device, dtype=dtype, **options)
        self._code: ImageCode | None = None
        self._code_key: tuple | None = None

    def check(self, encoder: str | None) -> None:
        """Accept any encoder: the requests carry code vectors, not encoder embeddings."""
        return None

    def code(self) -> ImageCode:
        """The codebook's :class:`ImageCode`, read once (again if its files change)."""
        opts: LowLevelOptions = self.options
        if opts.codebook is None:
            raise ConfigError(
                "Generator 'lowlevel' decodes image codes through a codebook fitted on the "
                "training stimuli, and none was given. A run fits it in its lowlevel stage and "
                "hands it over (the 'codebook' input); else pass --option codebook=DIR, a folder "
                "written by ImageCode.save."
            )
        folder = Path(opts.codebook).expanduser()
        cfg = folder / CONFIG_FILE
        key = (str(folder), cfg.stat().st_mtime_ns if cfg.is_file() else None)
        if self._code is None or key != self._code_key:
            self._code = load_code(folder, device=self.device, dtype=self.dtype)
            self._code_key = key
        if self._code.kind != opts.code:
            logger.info(
                "lowlevel: the codebook holds a %s code (option code=%s); decoding it",
                self._code.kind, opts.code,
            )  # fmt: skip
        return self._code

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One decoded picture per request, in request order."""
        from PIL import Image as PILImage

        requests = list(requests)
        if not requests:
            return []
        code = self.code()
        rows = []
        for r in requests:
            if r.embedding is None:
                raise ConfigError(
                    f"Generator 'lowlevel' needs a predicted image code in every request; "
                    f"request {r.stem!r} has none."
                )
            v = np.asarray(r.embedding, dtype=np.float32).reshape(-1)
            if v.shape[0] != code.dim:
                raise ConfigError(
                    f"Request {r.stem!r}: the code has {v.shape[0]} values but the codebook "
                    f"{self.options.codebook} holds a {code.describe()} with {code.dim}; map the "
                    "early visual ROI to this codebook's codes of the training stimuli."
                )
            rows.append(v)
        t0 = time.perf_counter()
        pixels = code.decode(np.stack(rows))
        side = int(self.options.size)
        seconds = (time.perf_counter() - t0) / len(requests)
        what = code.describe()
        out = []
        for r, p in zip(requests, pixels):
            image = PILImage.fromarray(p)
            if image.size != (side, side):
                image = image.resize((side, side), PILImage.Resampling.BICUBIC)
            out.append(
                GenerationResult(
                    stem=r.stem,
                    images=(image,),
                    conditioning=f"{what} decoded",
                    seed=image_seed(r.seed, r.stem),
                    seconds=seconds,
                    extra={
                        "code": code.kind,
                        "dim": int(code.dim),
                        "resolution": int(code.resolution),
                        "size": side,
                        "codebook": str(self.options.codebook),
                        "code_norm": float(np.linalg.norm(r.embedding)),
                    },
                )
            )
        return out


def codebook_digest(folder: str | os.PathLike) -> str:
    """SHA-256 of a codebook's JSON (it records the arrays' checksum): its identity."""
    return hashlib.sha256((Path(folder) / CONFIG_FILE).read_bytes()).hexdigest()
