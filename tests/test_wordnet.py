"""Offline WordNet reader: hand-made database, and agreement with nltk's reader."""

from __future__ import annotations

import random
import shutil

import pytest

from _wordnet_fixture import write_mini_wordnet
from fmri2image.errors import DataFormatError, DependencyError
from fmri2image.wordnet import (
    LEXNAMES,
    SynsetNotFoundError,
    WordNet,
    find_wordnet_dir,
)

# -- a tiny database written in the real format --------------------------------------


@pytest.fixture
def mini(tmp_path):
    ids = write_mini_wordnet(tmp_path / "wn")
    return WordNet(tmp_path / "wn"), ids


def test_parse_record(mini):
    wn, ids = mini
    dog = wn.synset(ids["dog"])
    assert dog.lemma_names == ("dog", "domestic_dog")
    assert dog.name == "dog" and dog.lexname == "noun.animal"
    assert dog.hypernyms == (ids["animal"],) and dog.instance_hypernyms == ()
    assert dog.gloss == 'a canine; "the dog barked"' and dog.definition == "a canine"
    assert dog.offset == int(ids["dog"][1:])
    fido = wn.synset(ids["fido"])
    assert fido.hypernyms == () and fido.instance_hypernyms == (ids["dog"],)
    assert fido.parents == (ids["dog"],)
    assert wn.synset_name(ids["object"]) == "object.n.01"
    assert wn.synset_name(ids["fido"]) == "fido.n.01"
    # ... and back (THINGS' concept table names some synsets this way).
    assert wn.wnid_of_name("fido.n.01") == ids["fido"]
    assert wn.wnid_of_name("dog.n.01") == ids["dog"]
    assert wn.wnid_of_name("dog.n.09") is None and wn.wnid_of_name("dog") is None


def test_hierarchy_by_hand(mini):
    wn, ids = mini
    e, o, a, d, c, f, _, car = (
        ids[k] for k in ("entity", "object", "animal", "dog", "cat", "fido", "vehicle", "car")
    )
    assert wn.hypernym_paths(f) == [(e, o, a, d, f)]
    assert (wn.depth(d), wn.min_depth(e), wn.max_depth(f)) == (3, 0, 4)
    assert wn.ancestors(d) == {d, a, o, e}
    assert wn.common_hypernyms(d, car) == {o, e}
    assert wn.lowest_common_hypernyms(d, c) == [a]
    assert wn.lowest_common_hypernyms(f, d) == [d]
    assert wn.shortest_path_distance(d, car) == 4
    assert wn.wup_similarity(d, c) == pytest.approx(2 * 3 / (4 + 4))
    assert wn.wup_similarity(d, car) == pytest.approx(2 * 2 / (4 + 4))
    assert wn.wup_similarity(f, d) == pytest.approx(2 * 4 / (5 + 4))
    assert wn.path_similarity(d, c) == pytest.approx(1 / 3)
    assert wn.wup_similarity(d, d) == wn.path_similarity(d, d) == 1.0


def test_unknown_and_malformed_ids(mini):
    wn, ids = mini
    assert ids["dog"] in wn
    for bad in ("n00000005", "n99999999", "dog", "02084071", ids["dog"] + "0"):
        assert bad not in wn
        with pytest.raises(SynsetNotFoundError, match=r"not a WordNet 3\.0 noun synset"):
            wn.synset(bad)
    with pytest.raises(KeyError):  # also a KeyError for dict-like use
        wn.synset("n12345678")


def test_search_path(tmp_path, monkeypatch):
    write_mini_wordnet(tmp_path / "a")
    write_mini_wordnet(tmp_path / "b")
    monkeypatch.setenv("FMRI2IMAGE_WORDNET_DIR", str(tmp_path / "b"))
    assert find_wordnet_dir() == tmp_path / "b"
    assert find_wordnet_dir(tmp_path / "a") == tmp_path / "a"  # explicit argument wins
    assert WordNet.load(tmp_path / "a") is WordNet.load(tmp_path / "a")  # cached
    monkeypatch.setenv("FMRI2IMAGE_WORDNET_DIR", str(tmp_path / "missing"))
    with pytest.raises(DependencyError, match="apt-get install wordnet-base"):
        WordNet.load()


def test_system_then_nltk_data_folders(tmp_path, monkeypatch):
    import fmri2image.wordnet as wordnet_module

    monkeypatch.delenv("FMRI2IMAGE_WORDNET_DIR", raising=False)
    monkeypatch.delenv("WNSEARCHDIR", raising=False)
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nltk_data"))
    monkeypatch.setattr(wordnet_module, "SYSTEM_DIRS", (tmp_path / "usr-share-wordnet",))
    write_mini_wordnet(tmp_path / "nltk_data" / "corpora" / "wordnet")
    assert find_wordnet_dir() == tmp_path / "nltk_data" / "corpora" / "wordnet"
    write_mini_wordnet(tmp_path / "usr-share-wordnet")
    assert find_wordnet_dir() == tmp_path / "usr-share-wordnet"


def test_other_wordnet_version_is_refused(tmp_path):
    write_mini_wordnet(tmp_path)
    data = tmp_path / "data.noun"
    data.write_bytes(data.read_bytes().replace(b"WordNet 3.0", b"WordNet 3.1"))
    with pytest.raises(DataFormatError, match=r"WordNet 3\.1, not WordNet 3\.0"):
        WordNet(tmp_path)


def test_lexnames_are_the_45_fixed_names():
    assert len(LEXNAMES) == 45
    assert (LEXNAMES[3], LEXNAMES[5], LEXNAMES[6], LEXNAMES[44]) == (
        "noun.Tops", "noun.animal", "noun.artifact", "adj.ppl",
    )  # fmt: skip


# -- the real WordNet 3.0 against nltk -----------------------------------------------

PAIRS = [
    # cats and dogs
    ("n02123045", "n02123159"),  # tabby / tiger cat
    ("n02123045", "n02124075"),  # tabby / Egyptian cat
    ("n02121620", "n02084071"),  # cat / dog
    ("n02085620", "n02099601"),  # Chihuahua / golden retriever
    ("n02110958", "n02123045"),  # pug / tabby
    ("n02084071", "n02084071"),  # identical
    ("n02084071", "n01317541"),  # dog / domestic animal (a direct hypernym)
    # vehicles
    ("n02958343", "n04285008"),  # car / sports car
    ("n03792782", "n04467665"),  # mountain bike / trailer truck
    ("n02690373", "n04273569"),  # airliner / speedboat
    ("n02951358", "n04252077"),  # canoe / snowmobile
    # instruments
    ("n03272010", "n02676566"),  # electric / acoustic guitar
    ("n03452741", "n04141076"),  # grand piano / sax
    ("n02787622", "n03838899"),  # banjo / oboe
    ("n03495258", "n03272010"),  # harp / electric guitar
    # across domains, incl. GOD-style categories
    ("n01943899", "n02071294"),  # conch / killer whale
    ("n03584254", "n07734744"),  # iPod / mushroom
    ("n03124170", "n04597913"),  # cowboy hat / wooden spoon
    ("n01677366", "n02437136"),  # common iguana / camel (21k)
    ("n03710193", "n02123045"),  # mailbox / tabby
    ("n03630383", "n03379051"),  # tie between lowest common hypernyms (name order decides)
    ("n10954498", "n09918248"),  # Einstein (instance hypernym) / child
    ("n00001740", "n02084071"),  # root entity / dog
]


def _random_21k_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    from fmri2image.imagenet import _lemma_table, imagenet1k_wnids

    in1k = set(imagenet1k_wnids())
    only21k = sorted(w for w in _lemma_table() if w not in in1k)
    rng = random.Random(seed)
    return [(rng.choice(only21k), rng.choice(only21k)) for _ in range(n)]


@pytest.fixture(scope="module")
def system_wordnet() -> WordNet:
    try:
        return WordNet.load()
    except DependencyError as exc:
        pytest.skip(f"WordNet 3.0 files not installed (apt-get install wordnet-base): {exc}")


@pytest.fixture(scope="module")
def nltk_wordnet(system_wordnet, tmp_path_factory):
    """nltk's own reader over a private nltk_data copy of the same files.

    nltk refuses symlinks and hard links that leave its data folder, so the files
    are copied; Debian omits ``lexnames``, which is written from lexnames(5WN).
    """
    nltk = pytest.importorskip("nltk")
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class Reader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):  # no other WordNet version to map from
            return None

    root = tmp_path_factory.mktemp("nltk_data")
    corpus = root / "corpora" / "wordnet"
    corpus.mkdir(parents=True)
    src = system_wordnet.directory
    for pattern in ("data.*", "index.*", "*.exc"):
        for f in src.glob(pattern):
            if f.name != "index.sense":
                shutil.copyfile(f, corpus / f.name)
    category = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
    (corpus / "lexnames").write_text(
        "".join(f"{i:02d}\t{n}\t{category[n.split('.')[0]]}\n" for i, n in enumerate(LEXNAMES))
    )
    nltk.data.path.insert(0, str(root))
    try:
        with pytest.warns(UserWarning, match="multilingual"):
            reader = Reader(str(corpus), None)
        yield reader
    finally:
        nltk.data.path.remove(str(root))


def _nltk_synset(reader, wnid):
    return reader.synset_from_pos_and_offset("n", int(wnid[1:]))


@pytest.mark.wordnet
@pytest.mark.parametrize(("a", "b"), PAIRS + _random_21k_pairs(25))
def test_similarities_match_nltk(system_wordnet, nltk_wordnet, a, b):
    wn, sa, sb = system_wordnet, _nltk_synset(nltk_wordnet, a), _nltk_synset(nltk_wordnet, b)
    assert wn.wup_similarity(a, b) == pytest.approx(sa.wup_similarity(sb), abs=1e-12)
    assert wn.path_similarity(a, b) == pytest.approx(sa.path_similarity(sb), abs=1e-12)
    assert wn.shortest_path_distance(a, b) == sa.shortest_path_distance(sb)
    for use_min_depth in (False, True):
        expected = [
            f"n{s.offset():08d}"
            for s in sa.lowest_common_hypernyms(sb, use_min_depth=use_min_depth)
        ]
        assert wn.lowest_common_hypernyms(a, b, use_min_depth=use_min_depth) == expected


@pytest.mark.wordnet
@pytest.mark.parametrize("wnid", sorted({w for p in PAIRS for w in p}))
def test_synsets_and_paths_match_nltk(system_wordnet, nltk_wordnet, wnid):
    wn, ref = system_wordnet, _nltk_synset(nltk_wordnet, wnid)
    syn = wn.synset(wnid)
    assert list(syn.lemma_names) == ref.lemma_names()
    assert syn.definition == ref.definition()
    assert syn.lexname == ref.lexname()
    assert wn.synset_name(wnid) == ref.name()
    assert wn.wnid_of_name(ref.name()) == wnid
    assert sorted(syn.hypernyms) == sorted(f"n{s.offset():08d}" for s in ref.hypernyms())
    assert sorted(syn.instance_hypernyms) == sorted(
        f"n{s.offset():08d}" for s in ref.instance_hypernyms()
    )
    assert (wn.min_depth(wnid), wn.max_depth(wnid)) == (ref.min_depth(), ref.max_depth())
    # nltk orders paths by set hashing (varies between runs): compare as sets.
    ours = sorted(wn.hypernym_paths(wnid))
    theirs = sorted(tuple(f"n{s.offset():08d}" for s in p) for p in ref.hypernym_paths())
    assert ours == theirs


@pytest.mark.wordnet
def test_known_values(system_wordnet):
    wn = system_wordnet
    assert wn.synset("n02084071").lemma_names[:2] == ("dog", "domestic_dog")
    assert wn.synset_name("n02121620") == "cat.n.01"
    assert wn.wup_similarity("n02084071", "n02121620") == pytest.approx(0.8571428571428571)
    assert wn.path_similarity("n02084071", "n02121620") == pytest.approx(0.2)
