"""The generator contract: typed requests in, typed results out, seeds by stimulus.

A :class:`Generator` turns what decoding produced for one test image — the
retrieved label, the predicted embedding, optionally an initial image — into
pictures.  Generators are built by name from :data:`GENERATORS`
(:func:`get_generator`), with their options validated up front; heavy libraries
(torch, diffusers) are imported only when a generator is built.

Randomness is per image, never per batch: the seed of an image is derived from the
run seed and the stimulus stem (:func:`image_seed`), so an image is the same whether
it is made alone, in a batch, on another worker, or after a resumed run.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from fmri2image.errors import ConfigError
from fmri2image.registry import ENTRY_POINT_GROUPS, Needs, Registry

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image

__all__ = [
    "CONDITIONINGS",
    "GENERATORS",
    "PIPELINE_INPUTS",
    "EmbeddingStats",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "GeneratorEntry",
    "generator_options",
    "generator_takes_init",
    "get_generator",
    "image_seed",
    "list_generators",
    "register_generator",
]

#: What a generator is conditioned on.
CONDITIONINGS = ("label", "embedding")

#: Inputs the pipeline can hand a generator, by the option name it fills
#: (:attr:`Needs.inputs <fmri2image.registry.Needs>`): a generator whose entry declares
#: ``inputs=("database",)`` gets its ``database`` option set by the run.
PIPELINE_INPUTS = {
    "database": "the feature folder of the run's first image database (retrieval.databases: "
    "an image folder, or a feature folder from `fmri2image extract`)",
    "codebook": "the low-level image code fitted on the training stimuli by the run's lowlevel "
    "stage",
}


def image_seed(run_seed: int, stem: str, attempt: int = 0) -> int:
    """The seed of one image: a stable hash of (run seed, stimulus stem, attempt).

    ``attempt`` > 0 derives the seeds of regenerations (e.g. after the safety
    checker blanked an image).  Returns a non-negative 63-bit integer, valid for
    ``torch.Generator.manual_seed`` and ``numpy.random.default_rng``.
    """
    digest = hashlib.sha256(f"{int(run_seed)}\x00{stem}\x00{int(attempt)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True, eq=False)
class EmbeddingStats:
    """Training statistics of an encoder's embeddings (never test statistics).

    Attributes
    ----------
    mean, std : ndarray of shape (dim,)
        Per-dimension mean and standard deviation of the training stimuli's
        embeddings.
    norm : float
        Mean L2 norm of the training embeddings.

    Generators that feed a predicted embedding to a network trained on real
    embeddings (unCLIP, IP-Adapter) bring the prediction to this scale first: ridge
    predictions are shrunk towards the mean.
    """

    mean: np.ndarray
    std: np.ndarray
    norm: float

    @classmethod
    def from_embeddings(cls, Y_train: np.ndarray) -> EmbeddingStats:
        import numpy as np

        Y = np.asarray(Y_train, dtype=np.float64)
        return cls(
            mean=Y.mean(axis=0),
            std=Y.std(axis=0),
            norm=float(np.linalg.norm(Y, axis=1).mean()),
        )


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """What to make one picture from.

    Attributes
    ----------
    stem : str
        Stimulus stem of the test image (``"n01443537_22563"``): names the output
        file and, with ``seed``, fixes the image's randomness.
    seed : int
        Run seed.
    wnid : str, optional
        Retrieved top-1 WordNet id (label-conditioned generators).
    name : str, optional
        Its name for a prompt: the first WordNet lemma with spaces.
    embedding : ndarray of shape (dim,), optional
        The embedding predicted from fMRI (embedding-conditioned generators).
    encoder : str, optional
        Registry name of the encoder whose space ``embedding`` lives in.
    stats : EmbeddingStats, optional
        Training statistics of that encoder's embeddings.
    init_image : PIL.Image.Image, optional
        Starting image (img2img: low-level structure to keep).
    """

    stem: str
    seed: int = 0
    wnid: str | None = None
    name: str | None = None
    embedding: np.ndarray | None = None
    encoder: str | None = None
    stats: EmbeddingStats | None = None
    init_image: Image.Image | None = None


@dataclass(frozen=True, eq=False)
class GenerationResult:
    """The picture(s) made for one request.

    Attributes
    ----------
    stem : str
    images : tuple of PIL.Image.Image
        RGB images (one unless the generator was asked for several per request).
    conditioning : str
        The prompt, or a description of the conditioning used (e.g.
        ``"image_embeds of clip-l14, rescaled to training norm"``).
    seed : int
        The seed that produced ``images`` (after any regeneration).
    flagged : bool
        The safety checker (or the generator) rejected every attempt: ``images``
        are not a reconstruction and must never be scored as one silently.
    attempts : int
        How many times the image was generated.
    seconds : float
        Wall time spent on this request.
    extra : dict
        Generator-specific facts worth recording (final loss, steps, ...).
    """

    stem: str
    images: tuple[Image.Image, ...]
    conditioning: str
    seed: int
    flagged: bool = False
    attempts: int = 1
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def image(self) -> Image.Image:
        """The first image."""
        return self.images[0]


class Generator(abc.ABC):
    """Makes pictures from decoding results.

    Subclasses set :attr:`name`, :attr:`conditioning` and an ``Options`` dataclass
    (all fields with defaults), and implement :meth:`generate`.  The constructor
    takes ``device``, ``dtype`` and the options as keyword arguments.  The class is
    what :func:`register_generator` (and an ``fmri2image.generators`` entry point)
    takes; its ``description`` and ``needs`` are read from it.

    Attributes
    ----------
    name : str
        Registry name.
    conditioning : {"label", "embedding"}
        What the requests must carry.
    description : str
        One line for listings.
    needs : Needs
        What it needs (extra, weights, pipeline inputs).
    options : dataclass instance
        The resolved options (recorded beside the images, and part of the key that
        decides whether an existing image can be reused).
    """

    name: ClassVar[str] = ""
    conditioning: ClassVar[str] = "label"
    #: Whether it uses a request's ``init_image`` (img2img, ``invert``): a run's
    #: ``generation.init`` feeds only those (``retrieve`` and ``lowlevel`` do not).
    takes_init: ClassVar[bool] = True
    description: ClassVar[str] = ""
    #: Undeclared: assumed to download weights (declare ``Needs(offline=True)`` if not).
    needs: ClassVar[Needs] = Needs(offline=False)
    Options: ClassVar[type] = type("Options", (), {})

    def __init__(self, *, device: str = "cpu", dtype: str = "float32", **options: Any) -> None:
        self.device = device
        self.dtype = dtype
        self.options = make_options(self.Options, options, generator=self.name)

    @property
    def preferred_batch(self) -> int | None:
        """Requests this generator processes together (None: no preference).

        A run hands it at least this many per call (``generation.batch_size`` is the
        lower bound): ``invert`` optimises its ``batch_size`` images in one pass, and
        smaller calls would split that pass.
        """
        return None

    def check(self, encoder: str | None) -> None:
        """Raise :class:`ConfigError` (before any work) if this generator cannot take
        embeddings of ``encoder`` (e.g. unCLIP needs CLIP ViT-L/14 image embeddings).

        The default accepts every encoder.
        """
        return None

    @abc.abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in request order."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of the generator: name, conditioning, device, options."""
        return {
            "generator": self.name,
            "conditioning": self.conditioning,
            "device": self.device,
            "dtype": self.dtype,
            "options": dataclasses.asdict(self.options)
            if dataclasses.is_dataclass(self.options)
            else {},
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, device={self.device!r})"


def require_embeddings(generator: str, requests: Sequence[GenerationRequest]) -> None:
    """Raise :class:`ConfigError` unless every request carries an embedding and its encoder."""
    for r in requests:
        if r.embedding is None or r.encoder is None:
            raise ConfigError(
                f"Generator {generator!r} needs a predicted embedding and its encoder in every "
                f"request; request {r.stem!r} lacks "
                f"{'the embedding' if r.embedding is None else 'the encoder name'}."
            )


def make_options(cls: type, given: Mapping[str, Any], *, generator: str) -> Any:
    """Build an options dataclass, rejecting unknown names with the valid ones."""
    if not dataclasses.is_dataclass(cls):
        if given:
            raise ConfigError(f"Generator {generator!r} takes no options; got {sorted(given)}.")
        return cls()
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(given) - set(names))
    if unknown:
        flags = ", ".join("--" + n.replace("_", "-") for n in unknown)
        valid = ", ".join("--" + n.replace("_", "-") for n in names) or "(none)"
        raise ConfigError(
            f"{flags} does not apply to generator {generator!r}; its options are: {valid}."
        )
    return cls(**dict(given))


# ------------------------------------------------------------------- registry
GeneratorFactory = Callable[..., Generator]


@dataclass(frozen=True)
class GeneratorEntry:
    """How to build a generator, and what it is, without building it.

    Attributes
    ----------
    factory : callable
        ``factory(*, device, dtype, **options) -> Generator``.
    conditioning : {"label", "embedding"}
    description : str
        One line for ``--help`` and ``fmri2image models``-style listings.
    needs : Needs
        What it needs: extra and packages, weights, whether it runs offline, and the
        pipeline inputs a run must give it (:data:`PIPELINE_INPUTS`).
    """

    factory: GeneratorFactory
    conditioning: str
    description: str
    needs: Needs = field(default_factory=lambda: Needs(offline=False))

    @property
    def offline(self) -> bool:
        """Runs without downloading weights (the demo's generators)."""
        return self.needs.offline


def _plugin(name: str, obj: Any) -> None:
    register_generator(name, obj)


#: The generators; plugins register through the ``fmri2image.generators`` entry points.
GENERATORS: Registry[GeneratorEntry] = Registry(
    "generator", group=ENTRY_POINT_GROUPS["generator"], plugin=_plugin
)


def register_generator(
    name: str,
    factory: GeneratorFactory,
    *,
    conditioning: str | None = None,
    description: str | None = None,
    needs: Needs | None = None,
    offline: bool | None = None,
    overwrite: bool = False,
) -> GeneratorEntry:
    """Add a generator to :data:`GENERATORS` (one call per model).

    Parameters
    ----------
    name : str
    factory : Generator subclass or callable
        ``factory(*, device, dtype, **options) -> Generator``; a :class:`Generator`
        subclass is one, and the object of an ``fmri2image.generators`` entry point.
    conditioning, description, needs : optional
        Default: the factory's class attributes of these names.
    offline : bool, optional
        Shorthand for ``needs.offline``.
    overwrite : bool
    """
    if not callable(factory):
        raise ConfigError(
            f"register_generator({name!r}, ...): the factory must be a Generator subclass or "
            f"a callable returning a Generator, got {factory!r}."
        )
    conditioning = conditioning or getattr(factory, "conditioning", None)
    if conditioning not in CONDITIONINGS:
        raise ConfigError(
            f"Generator {name!r}: conditioning must be one of {CONDITIONINGS}, got "
            f"{conditioning!r} (set the class attribute or pass conditioning=)."
        )
    description = description or getattr(factory, "description", "") or name
    if needs is None:
        needs = getattr(factory, "needs", None)
        needs = needs if isinstance(needs, Needs) else Needs(offline=False)
    if offline is not None:
        needs = dataclasses.replace(needs, offline=offline)
    unknown = sorted(set(needs.inputs) - set(PIPELINE_INPUTS))
    if unknown:
        raise ConfigError(
            f"Generator {name!r} declares pipeline inputs {unknown} that no run supplies; "
            f"known: {', '.join(PIPELINE_INPUTS)}."
        )
    entry = GeneratorEntry(factory, conditioning, description, needs)
    GENERATORS.register(name, entry, overwrite=overwrite)
    return entry


def get_generator(
    name: str, *, device: str = "cpu", dtype: str = "float32", **options: Any
) -> Generator:
    """Build a generator by registry name (``"sd15"``, ``"invert"``, ``"diffusers:<id>"``).

    Raises
    ------
    ConfigError
        Unknown name (with suggestions) or an option the generator does not take.
    ModelUnavailableError, DependencyError
        Weights or optional packages missing (the message says how to get them).
    """
    entry = GENERATORS.get(name)
    return entry.factory(device=device, dtype=dtype, **options)


def generator_takes_init(name: str) -> bool:
    """Whether generator ``name`` uses initial images (its class's ``takes_init``; a
    custom factory function is assumed to)."""
    factory = GENERATORS.get(name).factory
    resolve = getattr(factory, "resolve", None)
    cls = resolve() if callable(resolve) else factory
    return bool(getattr(cls, "takes_init", True))


def generator_options(name: str) -> type | None:
    """The ``Options`` dataclass of a registered generator, without building it.

    ``None`` when the factory does not expose its class (a custom factory function).
    """
    factory = GENERATORS.get(name).factory
    resolve = getattr(factory, "resolve", None)
    cls = resolve() if callable(resolve) else factory
    options = getattr(cls, "Options", None)
    return options if dataclasses.is_dataclass(options) else None


def list_generators() -> list[str]:
    """Registered generator names, then the prefix forms (``"diffusers:<...>"``)."""
    return GENERATORS.names() + [f"{p}:<...>" for p in GENERATORS.prefixes()]
