"""Checks that need the machine or the file system, run before any expensive work.

The values of a run are checked by :meth:`~fmri2image.pipeline.config.RunConfig.validate`
(pure, no I/O).  What needs more is here: :func:`parse_database` resolves each
retrieval database (a keyword or a folder); :func:`check_encoders_and_databases`
checks that every encoder can use every requested database without loading a
weight; :func:`check_device` that the accelerator is there; :func:`check_output_dir`
proves that the results folder can be created and written, and leaves nothing
behind.  Messages name the command-line flags (``--database``, ``--out``), as the
CLI is how most users meet them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fmri2image.errors import ConfigError

__all__ = [
    "AUTO_K",
    "DatabaseSpec",
    "check_device",
    "check_encoders_and_databases",
    "check_output_dir",
    "database_name",
    "encoder_store",
    "parse_database",
]

#: Neighbours per query when ``k`` is not given: one item per class in a
#: prototype database, many images per class in an image database (enough for
#: five distinct labels, so hit@5 means something).
AUTO_K = {
    "prototypes": 5,
    "text-prototypes": 5,
    "features": 50,
    "images": 50,
    "stimuli": 10,
    "captions": 5,
}


@dataclass(frozen=True)
class DatabaseSpec:
    """One retrieval database as the user named it.

    Attributes
    ----------
    kind : {"prototypes", "text-prototypes", "features", "images", "stimuli", "captions"}
        ``prototypes``: the encoder's ImageNet-1k classifier head;
        ``stimuli``: the dataset's training stimuli with their labels;
        ``captions``: text embeddings of the training stimuli's distinct labels;
        ``text-prototypes``: CLIP text embeddings of one prompt per class;
        ``features``: a folder written by ``fmri2image extract`` (one feature store
        per encoder); ``images``: an ImageNet-style folder of labelled images,
        embedded by the run itself (and cached in its output folder).
    source : str
        The value given to ``--database``.
    path : pathlib.Path or None
        The folder, for ``features`` and ``images``.
    vocabulary : str
        ``"1k"`` or ``"21k"`` for ``text-prototypes``.
    name : str
        Short name used for result folders and tables.
    """

    kind: str
    source: str
    path: Path | None = None
    vocabulary: str = "1k"
    name: str = ""

    @property
    def label(self) -> str:
        """How tables show the database."""
        if self.kind == "prototypes":
            return "prototypes (1k heads)"
        if self.kind == "text-prototypes":
            return f"text-prototypes ({self.vocabulary})"
        if self.kind == "stimuli":
            return "stimuli (the training images)"
        if self.kind == "captions":
            return "captions (text of the training labels)"
        return f"{self.name} ({'images' if self.kind == 'images' else 'features'})"


def _is_feature_store_root(path: Path) -> bool:
    if (path / "manifest.json").is_file():
        return True
    try:
        return any((child / "manifest.json").is_file() for child in path.iterdir())
    except OSError:
        return False


def database_name(value: str) -> str:
    """The name tables give a ``--database`` value, without looking at the disk."""
    from fmri2image.features import parse_database as parse_choice

    text = str(value).strip()
    choice = parse_choice(text)
    if choice.kind in ("prototypes", "stimuli", "captions"):
        return choice.kind
    if choice.kind == "text-prototypes":
        return f"text-prototypes-{choice.vocabulary or '1k'}"
    return Path(text).expanduser().resolve().name or "database"


def parse_database(value: str) -> DatabaseSpec:
    """Interpret one ``--database`` value (no weights, no image decoding).

    Keywords are parsed by :func:`fmri2image.features.parse_database`; a folder
    is a feature database when it (or a sub-folder) holds a feature store's
    ``manifest.json``, else an image folder.

    Raises
    ------
    ConfigError
        Unknown vocabulary, missing folder, or a file instead of a folder.
    """
    from fmri2image.features import parse_database as parse_choice

    text = str(value).strip()
    choice = parse_choice(text)
    if choice.kind in ("prototypes", "stimuli", "captions"):
        return DatabaseSpec(choice.kind, text, name=choice.kind)
    if choice.kind == "text-prototypes":
        vocab = choice.vocabulary or "1k"
        return DatabaseSpec(
            "text-prototypes", text, vocabulary=vocab, name=f"text-prototypes-{vocab}"
        )
    path = Path(text).expanduser()
    if not path.exists():
        raise ConfigError(
            f"--database {text}: no such folder, and not one of the keywords 'prototypes', "
            "'text-prototypes', 'text-prototypes:21k', 'stimuli', 'captions'. Pass a folder written by "
            "`fmri2image extract`, an ImageNet-style image folder (one sub-folder of "
            "images per WordNet id), or a keyword."
        )
    if not path.is_dir():
        raise ConfigError(
            f"--database {text} is a file; pass a folder (written by `fmri2image extract`, "
            "or holding one sub-folder of images per WordNet id)."
        )
    name = path.resolve().name or "database"
    kind = "features" if _is_feature_store_root(path) else "images"
    return DatabaseSpec(kind, text, path=path, name=name)


def encoder_store(root: Path, encoder: str) -> Path | None:
    """The feature store of ``encoder`` in a feature database folder, or None.

    ``root`` may hold one store per encoder (``fmri2image extract``'s layout, by
    :func:`~fmri2image.features.shards.store_dirname` or by the plain name) or be a
    single store itself.
    """
    from fmri2image.features.shards import store_dirname

    for candidate in (root / store_dirname(encoder), root / encoder, root):
        if (candidate / "manifest.json").is_file():
            return candidate
    return None


def check_device(device: str) -> None:
    """Fail early when the requested accelerator is not there (imports torch)."""
    if device == "cpu":
        return
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device}: this torch ({torch.__version__}) sees no CUDA GPU; "
                "use --device cpu, or install a CUDA build of torch on a GPU machine."
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are "
                "visible; use --device cuda:0 or set CUDA_VISIBLE_DEVICES."
            )
    elif device == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ConfigError("--device mps: MPS is not available here; use --device cpu.")


def check_encoders_and_databases(
    encoders: Sequence[str], databases: Sequence[DatabaseSpec]
) -> None:
    """Every encoder exists and can use every database; checked without weights.

    Raises
    ------
    ConfigError
        Unknown encoder (with suggestions), an encoder that has no classifier head
        for ``--database prototypes`` or no text tower for ``text-prototypes``, or a
        feature database that lacks an encoder's store.
    """
    from fmri2image.features import ENCODERS, encoder_capabilities

    for name in encoders:
        ENCODERS.get(name)  # ConfigError with close matches for a typo
    for db in databases:
        for name in encoders:
            if db.kind in ("prototypes", "text-prototypes", "captions"):
                # Known not to work -> ConfigError naming what does; unknown (some
                # prefix forms) -> checked on the built encoder, still before any work.
                encoder_capabilities(name).check(db.source)
            if db.kind == "features":
                from fmri2image.features.shards import store_dirname

                assert db.path is not None
                if encoder_store(db.path, name) is None:
                    raise ConfigError(
                        f"--database {db.source} has no features of encoder {name!r} "
                        f"(expected {db.path / store_dirname(name)}/manifest.json). Build "
                        f"them with: fmri2image extract --model {name} --images "
                        f"IMAGENET_DIR --out {db.source}"
                    )


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def check_output_dir(out: str | os.PathLike, *, flag: str = "--out") -> Path:
    """Prove that ``out`` can be created and written; leave nothing behind.

    Creates the missing folders, writes and deletes a probe file, then removes the
    folders it created, so a run that fails a later check leaves no empty
    results folder.

    Raises
    ------
    ConfigError
        ``out`` is a file, lies under a file, or cannot be created or written
        (permissions, read-only file system, full disk).
    """
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out} is a file, not a folder; choose a folder for the results.")
    anchor = _nearest_existing(out)
    if not anchor.is_dir():
        raise ConfigError(
            f"{flag} {out} lies under {anchor}, which is a file, not a folder; choose "
            "another results folder."
        )
    created: list[Path] = []
    p = out
    while not p.exists():
        created.append(p)
        p = p.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".fmri2image-write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"{flag} {out} cannot be written ({exc.strerror or exc}). Choose a folder you "
            "can write to (check its permissions, free disk space and that the file "
            "system is not read-only)."
        ) from exc
    finally:
        for d in created:  # deepest first
            shutil.rmtree(d, ignore_errors=True) if d.is_dir() else None
    return out
