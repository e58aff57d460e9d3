"""ImageNet label lists that ship with the package (no download needed).

WordNet ids (``"n02123045"``) are the project's canonical class labels: the
GOD stimulus ids, ImageNet folders and classifier heads all map onto them.
"""

from __future__ import annotations

import gzip
import re
from functools import lru_cache
from importlib import resources

__all__ = [
    "imagenet1k_wnids",
    "imagenet21k_wnids",
    "is_wnid",
    "lemmas",
    "normalize_class_name",
    "prompt_name",
    "resolve_class_name",
    "wnid_name",
]

_WNID = re.compile(r"^n\d{8}$")


def is_wnid(text: str) -> bool:
    """True for a WordNet noun id like ``"n01518878"``."""
    return bool(_WNID.match(text))


@lru_cache(maxsize=1)
def imagenet1k_wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 wnids in classifier index order."""
    text = resources.files("fmri2image.resources").joinpath("imagenet1k_wnids.txt").read_text()
    wnids = tuple(line.strip() for line in text.splitlines() if line.strip())
    assert len(wnids) == 1000
    return wnids


@lru_cache(maxsize=1)
def _lemma_table() -> dict[str, tuple[str, ...]]:
    raw = resources.files("fmri2image.resources").joinpath("imagenet21k_lemmas.tsv.gz").read_bytes()
    table: dict[str, tuple[str, ...]] = {}
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        wnid, _, names = line.partition("\t")
        if wnid:
            table[wnid] = tuple(n.strip() for n in names.split(",") if n.strip())
    return table


def imagenet21k_wnids() -> tuple[str, ...]:
    """The ImageNet-21k synsets of the packaged lemma table, in table order."""
    return tuple(_lemma_table())


def lemmas(wnid: str) -> tuple[str, ...]:
    """All lemma names of an ImageNet-21k synset (empty tuple if unknown)."""
    return _lemma_table().get(wnid, ())


def wnid_name(wnid: str) -> str:
    """Readable name of a synset (its first lemma), or the wnid itself if unknown."""
    names = lemmas(wnid)
    return names[0] if names else wnid


def prompt_name(wnid: str) -> str:
    """The synset's name as a prompt says it: the first lemma, underscores as spaces."""
    return wnid_name(wnid).replace("_", " ")


def normalize_class_name(name: str) -> str:
    """Canonical form for matching folder names to lemmas: lower case, ``_``/``-`` -> space."""
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


@lru_cache(maxsize=1)
def _name_index() -> dict[str, tuple[str, ...]]:
    """normalized lemma -> wnids; ImageNet-1k synsets listed first (they win ties)."""
    index: dict[str, list[str]] = {}
    in1k = set(imagenet1k_wnids())
    order = list(imagenet1k_wnids()) + [w for w in _lemma_table() if w not in in1k]
    for wnid in order:
        for lemma in lemmas(wnid):
            index.setdefault(normalize_class_name(lemma), []).append(wnid)
    return {k: tuple(v) for k, v in index.items()}


def resolve_class_name(name: str) -> tuple[str, ...]:
    """WordNet ids whose lemma equals ``name`` (after normalization).

    A wnid passes through unchanged. Names are ambiguous in WordNet ("crane" is a
    bird and a machine): all candidates are returned, ImageNet-1k ones first;
    callers decide (and report) how to break ties.
    """
    if is_wnid(name):
        return (name,)
    return _name_index().get(normalize_class_name(name), ())
