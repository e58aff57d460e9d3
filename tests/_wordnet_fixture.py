"""Write a tiny WordNet 3.0-format database (real byte offsets) for tests.

Taxonomy::

    entity
    └── object
        ├── animal ── dog (instance: Fido), cat
        └── vehicle ── car
"""

from __future__ import annotations

from pathlib import Path

HEADER = (
    "  1 This is a test copy in the format of the Princeton WordNet database files.  \n"
    "  2 WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.  \n"
)

# name: (lexfile number, lemmas, [(pointer symbol, target name)], gloss)
SYNSETS = {
    "entity": (3, ["entity"], [("~", "object")], "that which is perceived to exist"),
    "object": (3, ["object", "physical_object"], [("@", "entity")], "a tangible thing"),
    "animal": (5, ["animal", "beast"], [("@", "object"), ("~", "dog")], "a living organism"),
    "dog": (
        5,
        ["dog", "domestic_dog"],
        [("@", "animal"), ("~i", "fido")],
        'a canine; "the dog barked"',
    ),
    "cat": (5, ["cat"], [("@", "animal")], "a feline"),
    "fido": (18, ["Fido"], [("@i", "dog")], "a famous dog"),
    "vehicle": (6, ["vehicle"], [("@", "object")], "a conveyance"),
    "car": (6, ["car", "auto"], [("@", "vehicle")], "a motor vehicle"),
}


def _record(name: str, offsets: dict[str, int]) -> str:
    lex, lemmas, ptrs, gloss = SYNSETS[name]
    words = " ".join(f"{w} 0" for w in lemmas)
    pointers = " ".join(f"{sym} {offsets[t]:08d} n 0000" for sym, t in ptrs)
    return f"{offsets[name]:08d} {lex:02d} n {len(lemmas):02x} {words} {len(ptrs):03d} {pointers} | {gloss}  \n"


def write_mini_wordnet(directory: str | Path) -> dict[str, str]:
    """Write ``data.noun`` and ``index.noun`` into ``directory``; returns name -> wnid."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    placeholder = dict.fromkeys(SYNSETS, 0)
    offsets, pos = {}, len(HEADER.encode())
    for name in SYNSETS:  # record lengths do not depend on the offsets (fixed width)
        offsets[name] = pos
        pos += len(_record(name, placeholder).encode())
    (directory / "data.noun").write_bytes(
        (HEADER + "".join(_record(n, offsets) for n in SYNSETS)).encode()
    )
    entries = sorted(
        (lemma.lower(), offsets[name])
        for name, (_, lemmas, _, _) in SYNSETS.items()
        for lemma in lemmas
    )
    index = "".join(f"{lemma} n 1 0 1 0 {off:08d}  \n" for lemma, off in entries)
    (directory / "index.noun").write_text(HEADER + index)
    return {name: f"n{off:08d}" for name, off in offsets.items()}
