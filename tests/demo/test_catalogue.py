"""The photo catalogue: real WordNet ids, installed photos, and the split rule."""

from __future__ import annotations

import itertools

import pytest
from _demo_helpers import write_fake_debian_photos

from fmri2image.demo import (
    CATALOGUE,
    DEBIAN_PHOTO_ROOTS,
    PIP_PACKAGES,
    available_categories,
    default_n_test_categories,
    find_photo,
    split_categories,
)
from fmri2image.errors import ConfigError
from fmri2image.imagenet import imagenet1k_wnids

PIP_ONLY = {}  # photo_roots that hide every Debian package


def test_catalogue_entries_are_well_formed():
    assert len({c.wnid for c in CATALOGUE}) == len(CATALOGUE)
    packages = set(PIP_PACKAGES) | set(DEBIAN_PHOTO_ROOTS)
    for cat in CATALOGUE:
        assert cat.name and cat.regions, cat
        for r in cat.regions:
            assert r.package in packages, r
            if r.box is not None:
                left, top, right, bottom = r.box
                assert 0 <= left < right and 0 <= top < bottom, r
    # One category per photo region: the same box is never labelled twice.
    regions = [(r.source, r.box) for c in CATALOGUE for r in c.regions]
    assert len(set(regions)) == len(regions)


@pytest.mark.wordnet
def test_every_wnid_is_a_wordnet30_noun_with_the_stated_lemma():
    from fmri2image.errors import DependencyError
    from fmri2image.wordnet import WordNet

    try:
        wn = WordNet.load()
    except DependencyError:
        pytest.skip("WordNet 3.0 (Debian wordnet-base) is not installed")
    for cat in CATALOGUE:
        syn = wn.synset(cat.wnid)  # raises unless 'n%08d' % offset starts a record
        lemmas = {name.replace("_", " ").lower() for name in syn.lemma_names}
        assert cat.name.lower() in lemmas, (cat.wnid, cat.name, syn.lemma_names)


def test_pip_photos_give_19_categories_everywhere():
    pip = available_categories(PIP_ONLY)
    assert len(pip) == 19
    assert all(r.package in PIP_PACKAGES for c in pip for r in c.regions)
    assert all(find_photo(r, PIP_ONLY) is not None for c in pip for r in c.regions)
    assert {c.wnid for c in pip} == {
        c.wnid for c in CATALOGUE if any(r.package in PIP_PACKAGES for r in c.regions)
    }


def test_debian_photos_give_65_categories(tmp_path):
    fake = write_fake_debian_photos(tmp_path)
    full = available_categories(fake)
    assert len(full) == len(CATALOGUE) == 65
    assert full == CATALOGUE  # every region found, nothing dropped
    # A package that is absent drops its photos, and categories left without one.
    no_mate = {k: v for k, v in fake.items() if k != "mate-backgrounds"}
    part = available_categories(no_mate)
    assert len(pip := available_categories(PIP_ONLY)) < len(part) < len(full)
    grass = next(c for c in part if c.name == "grass")
    assert [r.package for r in grass.regions] == ["skimage"]  # its mate photo is gone
    assert len(pip) + sum(
        all(r.package not in PIP_PACKAGES for r in c.regions) for c in full
    ) == len(full)


def test_installed_debian_packages_are_found():
    roots = [d for dirs in DEBIAN_PHOTO_ROOTS.values() for d in dirs]
    if len(available_categories()) < len(CATALOGUE):
        pytest.skip(f"Debian photo packages not all installed (looked in {roots})")
    assert len(available_categories()) == 65


@pytest.mark.parametrize("which", ["pip", "full"])
def test_split_never_shares_a_photo_between_training_and_test(which, tmp_path):
    cats = available_categories(PIP_ONLY if which == "pip" else write_fake_debian_photos(tmp_path))
    for n_test in range(2, len(cats) - 1):
        try:
            split = split_categories(cats, n_test)
        except ConfigError:
            continue  # too few training categories left: refused, not violated
        train_photos = set().union(*(c.photos for c in split.train))
        test_photos = set().union(*(c.photos for c in split.test))
        assert not train_photos & test_photos, n_test
        assert [c.wnid for c in split.test] == [c.wnid for c in cats[:n_test]]
        everything = [c.wnid for c in (*split.train, *split.test, *split.distractors)]
        assert sorted(everything) == sorted(c.wnid for c in cats)
        # Only categories sharing a photo with a test category are held out.
        for c in split.distractors:
            assert c.photos & test_photos


def test_default_split_adapts_to_the_photos(tmp_path):
    in1k = set(imagenet1k_wnids())
    pip = split_categories(available_categories(PIP_ONLY))
    assert (len(pip.train), len(pip.test), len(pip.distractors)) == (13, 6, 0)
    assert [c.name for c in pip.test] == [
        "tabby",
        "espresso",
        "palace",
        "tripod",
        "space rocket",
        "motorcycle",
    ]
    full = split_categories(available_categories(write_fake_debian_photos(tmp_path)))
    assert (len(full.train), len(full.test)) == (54, 10)
    assert [c.name for c in full.distractors] == ["forget-me-not"]  # shares LadyBird.jpg
    # Mostly ImageNet-1k classes, so a 1000-class retrieval database can hit them.
    assert sum(c.wnid in in1k for c in full.test) >= 8
    assert default_n_test_categories(19) == 6 and default_n_test_categories(65) == 10


def test_split_requests_beyond_the_photos_are_explained():
    cats = available_categories(PIP_ONLY)
    with pytest.raises(ConfigError, match="--n-test-categories"):
        split_categories(cats, n_test=len(cats))
    with pytest.raises(ConfigError, match="--n-train-categories 13 or fewer"):
        split_categories(cats, n_test=6, n_train=14)


def test_categories_cut_from_one_photo_are_listed_together():
    by_photo: dict[str, list[str]] = {}
    for c, r in itertools.chain.from_iterable(((c, r) for r in c.regions) for c in CATALOGUE):
        by_photo.setdefault(r.source, []).append(c.name)
    shared = {k: v for k, v in by_photo.items() if len(v) > 1}
    assert shared == {
        "skimage:astronaut.png": ["space shuttle", "astronaut", "space helmet", "flag"],
        "darknet:giraffe.jpg": ["zebra", "giraffe"],
        "mate-backgrounds:nature/LadyBird.jpg": ["ladybug", "forget-me-not"],
        "opencv-doc:messi5.jpg": ["soccer ball", "soccer player"],
        "darknet:dog.jpg": ["pickup", "dog", "bicycle"],
        "opencv-doc:stuff.jpg": ["lighter", "pencil"],
        "darknet:person.jpg": ["horse", "person"],
    }
