"""Offline WordNet 3.0 nouns, read straight from the Princeton database files.

ImageNet class ids are WordNet 3.0 noun synsets: ``"n01518878"`` is the synset whose
record starts at byte offset 1518878 of ``data.noun``.  This module reads such
records on demand (memory-mapped, one ``seek`` per synset; the 15 MB file is never
parsed as a whole) and implements the taxonomy measures used to score retrieved
labels: hypernym paths, depth, lowest common hypernyms, Wu–Palmer and path
similarity.  Their definitions follow nltk's ``WordNetCorpusReader`` exactly
(tests compare the two), so numbers are comparable with published work that used
nltk, but nltk itself is not needed.

Where the files are looked for, in order:

1. the ``directory`` argument of :meth:`WordNet.load`;
2. the ``FMRI2IMAGE_WORDNET_DIR`` environment variable;
3. ``/usr/share/wordnet`` (Debian/Ubuntu ``wordnet-base``) and ``$WNSEARCHDIR``;
4. ``corpora/wordnet`` inside nltk_data folders (``$NLTK_DATA``, ``~/nltk_data``,
   ``<sys.prefix>/nltk_data``, ``/usr/share/nltk_data``, ...).

Example
-------
>>> wn = WordNet.load()                                  # doctest: +SKIP
>>> wn.synset("n02084071").lemma_names                   # doctest: +SKIP
('dog', 'domestic_dog', 'Canis_familiaris')
>>> round(wn.wup_similarity("n02084071", "n02121620"), 3)  # dog vs cat  # doctest: +SKIP
0.857
"""

from __future__ import annotations

import math
import mmap
import os
import re
import sys
import threading
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fmri2image.errors import ConfigError, DataFormatError, DependencyError

__all__ = [
    "LEXNAMES",
    "Synset",
    "SynsetNotFoundError",
    "WordNet",
    "find_wordnet_dir",
]

ENV_VAR = "FMRI2IMAGE_WORDNET_DIR"
# Where distributions install the WordNet 3.0 database (Debian/Ubuntu wordnet-base).
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/wordnet"),)

# The 45 lexicographer file names of WordNet 3.0, by file number (lexnames(5WN)).
# Debian's wordnet-base omits the ``lexnames`` file; the numbers are fixed.
LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon",
    "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body",
    "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion",
    "verb.motion", "verb.perception", "verb.possession", "verb.social",
    "verb.stative", "verb.weather", "adj.ppl",
)  # fmt: skip

_WNID = re.compile(r"^n(\d{8})$")


class SynsetNotFoundError(ConfigError, KeyError):
    """A WordNet id does not name a noun synset of WordNet 3.0."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Synset:
    """One WordNet 3.0 noun synset.

    Attributes
    ----------
    wnid : str
        ImageNet-style id, ``"n"`` + 8-digit byte offset in ``data.noun``.
    lexname : str
        Lexicographer file (``"noun.animal"``, ``"noun.artifact"``, ...).
    lemma_names : tuple of str
        Synonyms as stored in WordNet (underscores for spaces), most frequent first.
    gloss : str
        Definition followed by examples, as in the database.
    hypernyms : tuple of str
        wnids of the ``@`` (hypernym) pointers, in file order.
    instance_hypernyms : tuple of str
        wnids of the ``@i`` (instance hypernym) pointers, in file order.
    """

    wnid: str
    lexname: str
    lemma_names: tuple[str, ...]
    gloss: str
    hypernyms: tuple[str, ...]
    instance_hypernyms: tuple[str, ...]

    @property
    def offset(self) -> int:
        return int(self.wnid[1:])

    @property
    def name(self) -> str:
        """Readable name: the first lemma with spaces (``"domestic dog"``)."""
        return self.lemma_names[0].replace("_", " ")

    @property
    def definition(self) -> str:
        """The gloss without its quoted examples (nltk's ``definition()``)."""
        return re.sub(r"\".*?\"", "", self.gloss).strip().strip("; ").strip()

    @property
    def parents(self) -> tuple[str, ...]:
        """Hypernyms followed by instance hypernyms (the is-a edges nltk walks)."""
        return self.hypernyms + self.instance_hypernyms


def _nltk_data_dirs() -> list[Path]:
    dirs: list[Path] = []
    env = os.environ.get("NLTK_DATA")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(Path.home() / "nltk_data")
    for prefix in dict.fromkeys([sys.prefix, getattr(sys, "base_prefix", sys.prefix)]):
        dirs += [Path(prefix) / d for d in ("nltk_data", "share/nltk_data", "lib/nltk_data")]
    dirs += [
        Path("/usr/share/nltk_data"),
        Path("/usr/local/share/nltk_data"),
        Path("/usr/lib/nltk_data"),
        Path("/usr/local/lib/nltk_data"),
    ]
    return dirs


def _candidate_dirs(directory: str | os.PathLike | None) -> list[Path]:
    if directory is not None:
        return [Path(directory)]
    env = os.environ.get(ENV_VAR)
    if env:
        return [Path(env)]
    cands = list(SYSTEM_DIRS)
    if os.environ.get("WNSEARCHDIR"):
        cands.insert(0, Path(os.environ["WNSEARCHDIR"]))
    cands += [d / "corpora" / "wordnet" for d in _nltk_data_dirs()]
    return cands


def find_wordnet_dir(directory: str | os.PathLike | None = None) -> Path:
    """Locate a folder holding the WordNet 3.0 files ``data.noun`` and ``index.noun``.

    Parameters
    ----------
    directory : path, optional
        Use this folder and nothing else. Otherwise the ``FMRI2IMAGE_WORDNET_DIR``
        environment variable, then the system and nltk_data folders are searched.

    Raises
    ------
    DependencyError
        When no folder with ``data.noun`` is found.
    """
    cands = _candidate_dirs(directory)
    for cand in cands:
        if (cand / "data.noun").is_file() and (cand / "index.noun").is_file():
            return cand
    where = ", ".join(str(c) for c in cands[:4]) + (", ..." if len(cands) > 4 else "")
    zipped = [c.with_suffix(".zip") for c in cands if c.with_suffix(".zip").is_file()]
    hint = f" Found a zipped copy at {zipped[0]}: unzip it next to itself." if zipped else ""
    raise DependencyError(
        f"WordNet 3.0 database files (data.noun, index.noun) were not found (looked in: "
        f"{where}).{hint} WordNet similarity of retrieved labels needs them. Install "
        "them with 'apt-get install wordnet-base' (Debian/Ubuntu), or "
        "'python -m nltk.downloader wordnet' and unzip corpora/wordnet.zip, or set "
        f"{ENV_VAR} to a folder that holds the WordNet 3.0 'dict' files."
    )


class WordNet:
    """Reader of the WordNet 3.0 noun hierarchy (thread-safe, lazily cached).

    Use :meth:`load` rather than the constructor: it finds the files and returns
    one shared, cached reader per folder.

    Parameters
    ----------
    directory : path
        Folder holding ``data.noun`` and ``index.noun``.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._data = self._map(self.directory / "data.noun")
        self._index = self._map(self.directory / "index.noun")
        self._check_version()
        self._synsets: dict[str, Synset] = {}
        self._dist: dict[str, dict[str, int]] = {}
        self._min_depth: dict[str, int] = {}
        self._max_depth: dict[str, int] = {}
        self._names: dict[str, str] = {}

    # -- construction --------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | os.PathLike | None = None) -> WordNet:
        """Find the WordNet files (see :func:`find_wordnet_dir`) and return a reader.

        Readers are cached per resolved folder, so repeated calls are free.
        """
        return _load_cached(find_wordnet_dir(directory).resolve())

    @staticmethod
    def _map(path: Path) -> mmap.mmap:
        try:
            with open(path, "rb") as fh:
                return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise DataFormatError(
                f"Cannot read the WordNet file {path} ({exc}). Reinstall the WordNet 3.0 "
                f"database ('apt-get install --reinstall wordnet-base') or point {ENV_VAR} "
                "at an intact copy."
            ) from exc

    def _check_version(self) -> None:
        header = self._data[:4096]
        if b"WordNet 3.0" not in header:
            version = re.search(rb"WordNet (\d+\.\d+)", header)
            found = version.group(1).decode() if version else "unknown"
            raise DataFormatError(
                f"{self.directory / 'data.noun'} is WordNet {found}, not WordNet 3.0. "
                "ImageNet ids are byte offsets into the WordNet 3.0 files only, so other "
                f"versions give wrong synsets. Install WordNet 3.0 (Debian 'wordnet-base') "
                f"or set {ENV_VAR} to a WordNet 3.0 folder."
            )

    def __repr__(self) -> str:
        return f"WordNet({str(self.directory)!r}, cached_synsets={len(self._synsets)})"

    # -- synsets -------------------------------------------------------------------
    def __contains__(self, wnid: object) -> bool:
        if not isinstance(wnid, str):
            return False
        try:
            self.synset(wnid)
        except SynsetNotFoundError:
            return False
        return True

    def synset(self, wnid: str) -> Synset:
        """The noun synset with ImageNet id ``wnid`` (``"n02084071"``).

        Raises
        ------
        SynsetNotFoundError
            When ``wnid`` is malformed or no synset record starts at that offset.
        """
        syn = self._synsets.get(wnid)
        if syn is not None:
            return syn
        m = _WNID.match(wnid) if isinstance(wnid, str) else None
        offset = int(m.group(1)) if m else -1
        line = self._record(offset) if m else None
        if line is None:
            raise SynsetNotFoundError(
                f"{wnid!r} is not a WordNet 3.0 noun synset: ImageNet ids are 'n' followed "
                f"by the 8-digit byte offset of the synset in data.noun (e.g. 'n02084071' "
                f"for dog). Check the id, and that {self.directory} holds WordNet 3.0."
            )
        syn = self._parse(wnid, line)
        with self._lock:
            self._synsets[wnid] = syn
        return syn

    def _record(self, offset: int) -> bytes | None:
        data = self._data
        if offset <= 0 or offset >= len(data) or data[offset - 1 : offset] != b"\n":
            return None
        end = data.find(b"\n", offset)
        line = data[offset : end if end >= 0 else len(data)]
        if not line.startswith(b"%08d " % offset):
            return None
        return line

    def _parse(self, wnid: str, raw: bytes) -> Synset:
        text = raw.decode("utf-8")
        fields_str, _, gloss = text.partition(" | ")
        tok = fields_str.split()
        try:
            lexname = LEXNAMES[int(tok[1])]
            n_words = int(tok[3], 16)
            lemmas = tuple(tok[4 + 2 * i] for i in range(n_words))
            pos = 4 + 2 * n_words
            n_ptr = int(tok[pos])
            hyper: list[str] = []
            inst: list[str] = []
            for i in range(n_ptr):
                sym, off, ppos = tok[pos + 1 + 4 * i : pos + 4 + 4 * i]
                if ppos == "n" and sym in ("@", "@i"):
                    (hyper if sym == "@" else inst).append(f"n{off}")
        except (IndexError, ValueError) as exc:
            raise DataFormatError(
                f"Malformed WordNet record for {wnid} in {self.directory / 'data.noun'} "
                f"({exc}). The file is damaged; reinstall WordNet 3.0 (wordnet-base)."
            ) from exc
        return Synset(
            wnid=wnid,
            lexname=lexname,
            lemma_names=lemmas,
            gloss=gloss.strip(),
            hypernyms=tuple(hyper),
            instance_hypernyms=tuple(inst),
        )

    def synset_name(self, wnid: str) -> str:
        """nltk's canonical name ``"<first lemma>.n.<sense number>"`` (``"dog.n.01"``).

        The sense number is the synset's rank among the senses of its first lemma in
        ``index.noun`` (found by binary search over the memory-mapped file).
        """
        name = self._names.get(wnid)
        if name is not None:
            return name
        syn = self.synset(wnid)
        lemma = syn.lemma_names[0].lower()
        offsets = self._index_offsets(lemma)
        try:
            sense = offsets.index(syn.offset) + 1
        except ValueError:
            raise DataFormatError(
                f"index.noun in {self.directory} does not list {wnid} under its lemma "
                f"{lemma!r}; the WordNet files are inconsistent. Reinstall wordnet-base."
            ) from None
        name = f"{lemma}.n.{sense:02d}"
        self._names[wnid] = name
        return name

    def wnid_of_name(self, name: str) -> str | None:
        """The WordNet id of nltk's synset name (``"fish.n.01"`` -> ``"n02512053"``): the
        inverse of :meth:`synset_name`; None when the lemma has no such noun sense."""
        lemma, sep, rest = str(name).strip().rpartition(".n.")
        if not sep or not lemma or not rest.isdigit():
            return None
        offsets = self._index_offsets(lemma.lower())
        sense = int(rest)
        return f"n{offsets[sense - 1]:08d}" if 1 <= sense <= len(offsets) else None

    def _index_offsets(self, lemma: str) -> list[int]:
        """Synset offsets of ``lemma`` in index.noun (sorted by lemma, byte order)."""
        idx = self._index
        key = lemma.encode("utf-8") + b" "
        # Skip the licence header (its lines start with two spaces).
        lo = 0
        while idx[lo : lo + 1] == b" ":
            lo = idx.find(b"\n", lo) + 1
        hi = len(idx)
        # Binary search over byte positions, snapping each probe to a line start.
        while lo < hi:
            mid = (lo + hi) // 2
            start = idx.rfind(b"\n", lo, mid) + 1 if mid > lo else lo
            start = max(start, lo)
            end = idx.find(b"\n", start)
            end = len(idx) if end < 0 else end
            line = idx[start:end]
            if line.startswith(key):
                tok = line.split()
                n_synsets = int(tok[2])
                n_ptr = int(tok[3])
                first = 4 + n_ptr + 2
                return [int(t) for t in tok[first : first + n_synsets]]
            if line.split(b" ", 1)[0] < key[:-1]:
                lo = end + 1
            else:
                hi = start
        return []

    # -- hierarchy -----------------------------------------------------------------
    def hypernyms(self, wnid: str) -> tuple[str, ...]:
        """Direct hypernyms and instance hypernyms of ``wnid``."""
        return self.synset(wnid).parents

    def _ancestor_distances(self, wnid: str) -> dict[str, int]:
        """Shortest number of is-a edges from ``wnid`` to each ancestor (itself: 0)."""
        dist = self._dist.get(wnid)
        if dist is not None:
            return dist
        dist = {}
        queue = deque([(wnid, 0)])
        while queue:
            node, d = queue.popleft()
            if node in dist:
                continue
            dist[node] = d
            queue.extend((p, d + 1) for p in self.synset(node).parents)
        self._dist[wnid] = dist
        return dist

    def ancestors(self, wnid: str) -> frozenset[str]:
        """All hypernyms of ``wnid`` up to the root, including ``wnid`` itself."""
        return frozenset(self._ancestor_distances(wnid))

    def hypernym_paths(self, wnid: str) -> list[tuple[str, ...]]:
        """Every path from the root (``entity``) down to ``wnid``, as wnid tuples.

        The same set of paths as nltk's ``Synset.hypernym_paths()``; their order
        follows the pointer order in ``data.noun`` (nltk's order depends on set
        hashing and varies between processes).
        """
        parents = self.synset(wnid).parents
        if not parents:
            return [(wnid,)]
        return [(*path, wnid) for p in parents for path in self.hypernym_paths(p)]

    def min_depth(self, wnid: str) -> int:
        """Edges on the shortest path from ``wnid`` to the root (root: 0)."""
        if wnid not in self._min_depth:
            parents = self.synset(wnid).parents
            self._min_depth[wnid] = 1 + min(map(self.min_depth, parents)) if parents else 0
        return self._min_depth[wnid]

    def max_depth(self, wnid: str) -> int:
        """Edges on the longest path from ``wnid`` to the root (root: 0)."""
        if wnid not in self._max_depth:
            parents = self.synset(wnid).parents
            self._max_depth[wnid] = 1 + max(map(self.max_depth, parents)) if parents else 0
        return self._max_depth[wnid]

    def depth(self, wnid: str) -> int:
        """Depth used by Wu–Palmer similarity: :meth:`max_depth` (nltk's convention)."""
        return self.max_depth(wnid)

    def common_hypernyms(self, a: str, b: str) -> frozenset[str]:
        """Synsets that are hypernyms of both (each synset counts as its own)."""
        return frozenset(self._ancestor_distances(a).keys() & self._ancestor_distances(b))

    def lowest_common_hypernyms(self, a: str, b: str, *, use_min_depth: bool = False) -> list[str]:
        """Deepest common hypernym(s) of ``a`` and ``b``, as in nltk.

        Parameters
        ----------
        a, b : str
            wnids.
        use_min_depth : bool, default False
            Rank common hypernyms by :meth:`min_depth` instead of :meth:`max_depth`
            (nltk's Wu–Palmer uses ``True``, its ``lowest_common_hypernyms`` ``False``).

        Returns
        -------
        list of str
            Ties sorted by nltk synset name (``"canine.n.02"``), so the first element is
            the subsumer nltk picks.
        """
        common = self.common_hypernyms(a, b)
        if not common:
            return []
        depth = self.min_depth if use_min_depth else self.max_depth
        best = max(map(depth, common))
        lowest = [s for s in common if depth(s) == best]
        if len(lowest) > 1:
            lowest.sort(key=self.synset_name)
        return lowest

    def shortest_path_distance(self, a: str, b: str) -> float:
        """Fewest is-a edges linking ``a`` and ``b`` through a common hypernym.

        ``nan`` if they share no hypernym (impossible among WordNet 3.0 nouns, which
        all descend from ``entity``).
        """
        if a == b:
            return 0
        da, db = self._ancestor_distances(a), self._ancestor_distances(b)
        if len(db) < len(da):
            da, db = db, da
        best = min((d + db[s] for s, d in da.items() if s in db), default=math.inf)
        return math.nan if math.isinf(best) else best

    def path_similarity(self, a: str, b: str) -> float:
        """``1 / (1 + shortest_path_distance(a, b))``, in (0, 1]; 1 for ``a == b``."""
        dist = self.shortest_path_distance(a, b)
        return 1.0 / (dist + 1.0)

    def wup_similarity(self, a: str, b: str) -> float:
        """Wu–Palmer similarity, defined exactly as nltk's ``wup_similarity``.

        With ``lcs`` the lowest common hypernym by minimum depth (ties: nltk name
        order, ``a`` itself preferred), ``d = max_depth(lcs) + 1`` and
        ``n_x = shortest_path_distance(x, lcs)``::

            wup = 2 d / ((n_a + d) + (n_b + d))

        1.0 for identical synsets, in (0, 1] otherwise.
        """
        subsumers = self.lowest_common_hypernyms(a, b, use_min_depth=True)
        if not subsumers:
            return math.nan
        lcs = a if a in subsumers else subsumers[0]
        depth = self.max_depth(lcs) + 1
        len_a = self.shortest_path_distance(a, lcs) + depth
        len_b = self.shortest_path_distance(b, lcs) + depth
        return 2.0 * depth / (len_a + len_b)


@lru_cache(maxsize=4)
def _load_cached(directory: Path) -> WordNet:
    return WordNet(directory)
