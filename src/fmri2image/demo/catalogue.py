"""The demo's photo catalogue: regions of real photographs labelled with WordNet ids.

Every :class:`DemoCategory` is what a person saw in one or more regions of
photographs that ship with installed packages, labelled with the WordNet 3.0 noun
id (an ImageNet-21k synset) of what the regions show.  Photos come from two kinds of
package:

* pip wheels that every install has: scikit-image (``skimage/data``) and
  scikit-learn (``sklearn/datasets/images``): 18 categories;
* Debian packages, when installed (``make demo`` installs them where it can):
  ``darknet`` (``/usr/share/darknet/data``), ``opencv-doc``
  (``/usr/share/doc/opencv-doc/examples/data``) and ``mate-backgrounds``
  (``/usr/share/backgrounds/mate``): 46 more, 65 in all.

A photo that is absent is skipped; a category is available when at least one of its
photos is.  :data:`DEBIAN_PHOTO_ROOTS` lists where the Debian photos are looked
for; every function that looks takes ``photo_roots=`` to override it (``{}``: the
pip photos only).

The order of :data:`CATALOGUE` is the order in which test categories are chosen
(see :func:`fmri2image.demo.split_categories`): single-photo ImageNet-1k classes
come first, so the default test categories can be hit by an ImageNet-1k retrieval
database, as most of GOD's cannot.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib.util import find_spec
from pathlib import Path

__all__ = [
    "CATALOGUE",
    "DEBIAN_PHOTO_ROOTS",
    "PIP_PACKAGES",
    "CategorySplit",
    "DemoCategory",
    "PhotoRegion",
    "PhotoRoots",
    "available_categories",
    "default_n_test_categories",
    "find_photo",
    "split_categories",
]

#: Package -> folder(s) where its photos are looked for (Debian install paths).
DEBIAN_PHOTO_ROOTS: dict[str, tuple[str, ...]] = {
    "darknet": ("/usr/share/darknet/data",),
    "opencv-doc": ("/usr/share/doc/opencv-doc/examples/data",),
    "mate-backgrounds": ("/usr/share/backgrounds/mate",),
}
#: pip packages with photos, and the data folder inside each installed package.
PIP_PACKAGES: dict[str, tuple[str, ...]] = {
    "skimage": ("data",),
    "sklearn": ("datasets", "images"),
}

#: ``photo_roots`` argument type: package -> a folder or several folders.
PhotoRoots = Mapping[str, "str | os.PathLike | Sequence[str | os.PathLike]"]


@dataclass(frozen=True)
class PhotoRegion:
    """A pixel box of one photograph.

    Attributes
    ----------
    package : str
        Package that ships the photo: ``"skimage"``, ``"sklearn"`` (pip) or
        ``"darknet"``, ``"opencv-doc"``, ``"mate-backgrounds"`` (Debian).
    file : str
        Path of the photo inside the package's photo folder.
    box : tuple of int or None
        ``(left, top, right, bottom)`` pixel box of the region; None for the whole
        photo.
    """

    package: str
    file: str
    box: tuple[int, int, int, int] | None = None

    @property
    def source(self) -> str:
        """``"<package>:<file>"``, the photo's name in manifests."""
        return f"{self.package}:{self.file}"


@dataclass(frozen=True)
class DemoCategory:
    """One demo category: regions of photographs showing one WordNet synset.

    Attributes
    ----------
    wnid : str
        WordNet 3.0 noun id (``"n%08d" % byte offset`` in ``data.noun``).
    name : str
        One lemma of the synset (underscores as spaces), checked by the tests.
    regions : tuple of PhotoRegion
        Where the category is seen; images of the category are crops of these.
    note : str
        What the regions show, where the lemma alone does not say it.
    """

    wnid: str
    name: str
    regions: tuple[PhotoRegion, ...]
    note: str = ""

    @property
    def photos(self) -> frozenset[str]:
        """Sources (``package:file``) of the category's photos."""
        return frozenset(r.source for r in self.regions)

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.package for r in self.regions))


def _c(wnid: str, name: str, *regions: tuple, note: str = "") -> DemoCategory:
    return DemoCategory(wnid, name, tuple(PhotoRegion(*r) for r in regions), note)


_W = None  # the whole photo

#: Every demo category, in test-selection order.  ``# 1k``: an ImageNet-1k class.
CATALOGUE: tuple[DemoCategory, ...] = (
    # -- test candidates first: objects whose synsets are ImageNet-1k classes -------
    _c("n02123045", "tabby", ("skimage", "chelsea.png", (40, 0, 451, 300))),  # 1k
    _c("n07920052", "espresso", ("skimage", "coffee.png", (90, 0, 560, 400))),  # 1k
    _c(
        "n01614925",
        "bald eagle",
        ("darknet", "eagle.jpg", (120, 70, 620, 460)),
        note="a juvenile (brown-headed) bald eagle on a beach",
    ),  # 1k
    _c("n03877845", "palace", ("sklearn", "china.jpg", (0, 0, 380, 427))),  # 1k
    _c(
        "n02391049",
        "zebra",
        ("darknet", "giraffe.jpg", (240, 195, 430, 440)),
        note="shares giraffe.jpg with 'giraffe'",
    ),  # 1k
    _c("n07747607", "orange", ("opencv-doc", "orange.jpg", (20, 40, 480, 500))),  # 1k
    _c("n04485082", "tripod", ("skimage", "camera.png", (60, 0, 420, 512))),  # 1k
    _c(
        "n02086079",
        "Pekinese",
        ("opencv-doc", "chicky_512.png", (0, 0, 512, 512)),
        note="a Pekinese-like small long-haired dog",
    ),  # 1k
    _c(
        "n02165456",
        "ladybug",
        ("mate-backgrounds", "nature/LadyBird.jpg", (1450, 500, 2150, 1150)),
        note="shares LadyBird.jpg with 'forget-me-not'",
    ),  # 1k
    _c(
        "n02439033",
        "giraffe",
        ("darknet", "giraffe.jpg", (160, 20, 445, 300)),
        note="shares giraffe.jpg with 'zebra'",
    ),
    _c("n04265904", "space rocket", ("skimage", "rocket.jpg", (180, 0, 460, 427))),
    _c(
        "n03790512",
        "motorcycle",
        ("skimage", "motorcycle_left.png", (40, 110, 741, 500)),
        ("skimage", "motorcycle_right.png", (20, 90, 660, 460)),
        note="the left and right views of a stereo pair",
    ),
    # -- more ImageNet-1k classes ----------------------------------------------------
    _c(
        "n02486410",
        "baboon",
        ("opencv-doc", "baboon.jpg", _W),
        note="a mandrill's face; WordNet files mandrill under baboon",
    ),  # 1k
    _c("n07749582", "lemon", ("opencv-doc", "fruits.jpg", (315, 245, 512, 480))),  # 1k
    _c(
        "n04254680",
        "soccer ball",
        ("opencv-doc", "messi5.jpg", (300, 250, 412, 342)),
        note="shares messi5.jpg with 'soccer player'",
    ),  # 1k
    _c(
        "n03930630",
        "pickup",
        ("darknet", "dog.jpg", (455, 40, 710, 195)),
        note="shares dog.jpg with 'dog' and 'bicycle'",
    ),  # 1k
    _c("n09428293", "seashore", ("darknet", "kite.jpg", (0, 200, 1352, 900))),  # 1k
    _c(
        "n02802426",
        "basketball",
        ("opencv-doc", "basketball1.png", (90, 55, 215, 180)),
        ("opencv-doc", "basketball2.png", (110, 40, 235, 165)),
        note="the ball in two grey-scale video frames",
    ),  # 1k
    _c(
        "n03991062",
        "flowerpot",
        ("opencv-doc", "aloeL.jpg", (300, 150, 1282, 1110)),
        note="a potted aloe",
    ),  # 1k
    _c(
        "n02971356",
        "carton",
        ("opencv-doc", "box.png", _W),
        note="a cookie carton (grey-scale)",
    ),  # 1k
    _c(
        "n07248320",
        "book jacket",
        ("opencv-doc", "left.jpg", (80, 90, 410, 385)),
        ("opencv-doc", "right.jpg", (210, 95, 560, 420)),
        note="two paperback covers, stereo pair",
    ),  # 1k
    _c(
        "n03666591",
        "lighter",
        ("opencv-doc", "stuff.jpg", (265, 295, 405, 470)),
        note="a disposable lighter; shares stuff.jpg with 'pencil'",
    ),  # 1k
    _c("n04266014", "space shuttle", ("skimage", "astronaut.png", (350, 0, 478, 280))),  # 1k
    # -- synsets outside ImageNet-1k -------------------------------------------------
    _c(
        "n09818022",
        "astronaut",
        ("skimage", "astronaut.png", (40, 0, 350, 512)),
        note="shares astronaut.png with three other categories",
    ),
    _c("n04265428", "space helmet", ("skimage", "astronaut.png", (285, 335, 512, 512))),
    _c("n03354903", "flag", ("skimage", "astronaut.png", (0, 0, 100, 330))),
    _c("n11960245", "dahlia", ("sklearn", "flower.jpg", (150, 0, 500, 427))),
    _c("n13388245", "coin", ("skimage", "coins.png", _W), note="ancient Greek coins (grey-scale)"),
    _c(
        "n02084071",
        "dog",
        ("darknet", "dog.jpg", (125, 210, 320, 545)),
        note="a long-haired mixed-breed dog",
    ),
    _c("n02834778", "bicycle", ("darknet", "dog.jpg", (120, 130, 575, 425))),
    _c(
        "n02374451",
        "horse",
        ("darknet", "horses.jpg", (0, 150, 600, 420)),
        ("darknet", "person.jpg", (400, 130, 605, 355)),
        note="running horses; a grazing white horse (shares person.jpg with 'person')",
    ),
    _c("n00007846", "person", ("darknet", "person.jpg", (150, 90, 320, 380))),
    _c(
        "n03876519",
        "painting",
        ("darknet", "scream.jpg", _W),
        ("opencv-doc", "starry_night.jpg", (10, 10, 742, 590)),
        ("mate-backgrounds", "abstract/Elephants.jpg", (450, 80, 1350, 1000)),
        note="Munch's The Scream, van Gogh's The Starry Night, a painting of elephants",
    ),
    _c("n07739125", "apple", ("opencv-doc", "apple.jpg", (30, 15, 470, 505))),
    _c(
        "n02274259",
        "butterfly",
        ("opencv-doc", "butterfly.jpg", (0, 10, 493, 335)),
        note="a lime swallowtail (no finer WordNet 3.0 synset)",
    ),
    _c(
        "n10618342",
        "soccer player",
        ("opencv-doc", "messi5.jpg", (60, 55, 470, 342)),
    ),
    _c(
        "n02357401",
        "American red squirrel",
        ("opencv-doc", "squirrel_cls.jpg", (110, 80, 410, 380)),
    ),
    _c(
        "n07597365",
        "candy",
        ("opencv-doc", "smarties.png", (0, 40, 413, 356)),
        note="sugar-coated chocolate sweets",
    ),
    _c(
        "n02913152",
        "building",
        ("opencv-doc", "building.jpg", (130, 0, 868, 480)),
        note="a modern hotel facade",
    ),
    _c(
        "n04460130",
        "tower",
        ("opencv-doc", "home.jpg", (220, 0, 512, 384)),
        note="ornate towers of a palace against the sky",
    ),
    _c(
        "n08524735",
        "city",
        ("opencv-doc", "aero1.jpg", _W),
        ("opencv-doc", "aero3.jpg", _W),
        note="two aerial views of a town",
    ),
    _c("n03033986", "circuit board", ("opencv-doc", "board.jpg", _W)),
    _c("n03451798", "graffiti", ("opencv-doc", "graf1.png", _W)),
    _c(
        "n03544360",
        "house",
        ("opencv-doc", "leuvenA.jpg", _W),
        note="brick houses along a cobbled lane",
    ),
    _c(
        "n02958343",
        "car",
        ("opencv-doc", "licenseplate_motion.jpg", _W),
        note="the rear of a car, motion-blurred",
    ),
    _c("n06415419", "notebook", ("opencv-doc", "ela_original.jpg", (0, 0, 902, 640))),
    _c("n03963982", "playing card", ("opencv-doc", "cards.png", (50, 60, 540, 420))),
    _c("n06786012", "sudoku", ("opencv-doc", "sudoku.png", (20, 40, 558, 563))),
    _c("n03908204", "pencil", ("opencv-doc", "stuff.jpg", (50, 80, 350, 260))),
    _c(
        "n12822115",
        "forget-me-not",
        ("mate-backgrounds", "nature/LadyBird.jpg", (50, 100, 750, 750)),
    ),
    _c(
        "n11669335",
        "flower",
        ("mate-backgrounds", "nature/FreshFlower.jpg", _W),
        ("mate-backgrounds", "nature/YellowFlower.jpg", _W),
        note="close-ups of an orange and a yellow composite flower",
    ),
    _c(
        "n12020941",
        "French marigold",
        ("mate-backgrounds", "nature/Garden.jpg", (900, 250, 2560, 1600)),
    ),
    _c(
        "n12103349",
        "beach grass",
        ("mate-backgrounds", "nature/Dune.jpg", _W),
        note="dune grass against the sea",
    ),
    _c("n09445910", "storm cloud", ("mate-backgrounds", "nature/Storm.jpg", (0, 0, 1920, 800))),
    _c(
        "n11501649",
        "raindrop",
        ("mate-backgrounds", "nature/RainDrops.jpg", (0, 0, 1400, 1200)),
        note="raindrops on a leaf",
    ),
    _c(
        "n12024176",
        "dandelion",
        ("mate-backgrounds", "nature/TwoWings.jpg", (750, 350, 2450, 1600)),
        note="dandelion seeds (pappus) over the seed head",
    ),
    _c("n15098161", "wood", ("mate-backgrounds", "nature/Wood.jpg", _W)),
    _c("n13152742", "leaf", ("mate-backgrounds", "nature/Blinds.jpg", _W)),
    # -- scenes and textures from the pip wheels -------------------------------------
    _c("n09344324", "lunar crater", ("skimage", "moon.png", _W)),
    _c("n09436708", "sky", ("skimage", "hubble_deep_field.jpg", _W)),
    _c("n14698884", "gravel", ("skimage", "gravel.png", _W)),
    _c(
        "n12102133",
        "grass",
        ("skimage", "grass.png", _W),
        ("mate-backgrounds", "nature/GreenMeadow.jpg", _W),
    ),
    _c("n02898369", "brickwork", ("skimage", "brick.png", _W)),
    _c("n03927091", "photomicrograph", ("skimage", "ihc.png", _W)),
    _c("n06470073", "document", ("skimage", "page.png", (0, 0, 384, 191))),
)


def _as_dirs(value: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[Path, ...]:
    if isinstance(value, (str, os.PathLike)):
        return (Path(value),)
    return tuple(Path(v) for v in value)


@cache
def _pip_data_dir(package: str) -> Path | None:
    spec = find_spec(package)  # locate the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*PIP_PACKAGES[package])


def _package_dirs(package: str, photo_roots: PhotoRoots | None) -> tuple[Path, ...]:
    if photo_roots is not None and package in photo_roots:
        return _as_dirs(photo_roots[package])
    if package in PIP_PACKAGES:
        found = _pip_data_dir(package)
        return (found,) if found is not None else ()
    if photo_roots is None:
        return _as_dirs(DEBIAN_PHOTO_ROOTS.get(package, ()))
    return ()


def find_photo(region: PhotoRegion, photo_roots: PhotoRoots | None = None) -> Path | None:
    """Path of a region's photo on this machine, or None when it is not installed.

    Parameters
    ----------
    region : PhotoRegion
    photo_roots : mapping of str to folder(s), optional
        Where to look per package instead of :data:`DEBIAN_PHOTO_ROOTS`.  pip
        packages not named are found in their install; Debian packages not named
        are absent.  ``None``: the defaults.
    """
    for folder in _package_dirs(region.package, photo_roots):
        path = folder / region.file
        if path.is_file():
            return path
    return None


def available_categories(
    photo_roots: PhotoRoots | None = None,
    catalogue: Iterable[DemoCategory] = CATALOGUE,
) -> tuple[DemoCategory, ...]:
    """Catalogue entries with at least one photo on this machine, in catalogue order.

    Regions whose photo is absent are dropped from the returned entries.

    Parameters
    ----------
    photo_roots : mapping of str to folder(s), optional
        See :func:`find_photo`; ``{}`` gives the 19 pip-only categories.
    catalogue : iterable of DemoCategory, default CATALOGUE

    Returns
    -------
    tuple of DemoCategory
    """
    out = []
    for cat in catalogue:
        regions = tuple(r for r in cat.regions if find_photo(r, photo_roots) is not None)
        if regions:
            out.append(cat if regions == cat.regions else replace(cat, regions=regions))
    return tuple(out)


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class CategorySplit:
    """Which available categories are training, test, or neither.

    Attributes
    ----------
    train, test : tuple of DemoCategory
        Stimulus categories, in catalogue order (disjoint).
    distractors : tuple of DemoCategory
        Available categories that are not stimuli (only in the image database).
    """

    train: tuple[DemoCategory, ...]
    test: tuple[DemoCategory, ...]
    distractors: tuple[DemoCategory, ...]


def default_n_test_categories(n_available: int) -> int:
    """10 test categories when at least 40 are available (Debian photos), else 6."""
    return 10 if n_available >= 40 else 6


def split_categories(
    categories: Sequence[DemoCategory],
    n_test: int | None = None,
    n_train: int | None = None,
) -> CategorySplit:
    """Choose test and training categories; no photo is seen on both sides.

    Test categories are the first ``n_test`` entries of ``categories``.  A
    category can be a training category only if it shares no photo with any test
    category (so no test pixel is ever seen in training); the first ``n_train``
    such entries are the training categories.  Everything else is a distractor.

    Parameters
    ----------
    categories : sequence of DemoCategory
        Usually :func:`available_categories`.
    n_test : int, optional
        Default :func:`default_n_test_categories`.
    n_train : int, optional
        Default: every category that can be one.

    Returns
    -------
    CategorySplit

    Raises
    ------
    ConfigError
        Not enough categories for the request.
    """
    from fmri2image.errors import ConfigError

    cats = tuple(categories)
    if n_test is None:
        n_test = default_n_test_categories(len(cats))
    debian = ", ".join(DEBIAN_PHOTO_ROOTS)
    more = (
        f"Install the Debian packages {debian} for more categories (make demo does it "
        "where it can), or raise --images-per-category / --n-test-repeats for more data."
    )
    if n_test > len(cats) - 2:
        raise ConfigError(
            f"n_test_categories (--n-test-categories) is {n_test}, but the photos on this "
            f"machine give {len(cats)} categories and at least 2 must remain for "
            f"training. Use --n-test-categories {max(2, len(cats) - 2)} or fewer. {more}"
        )
    test = cats[:n_test]
    test_photos = frozenset().union(*(c.photos for c in test))
    pool = [c for c in cats[n_test:] if not (c.photos & test_photos)]
    if n_train is None:
        n_train = len(pool)
    if n_train > len(pool):
        raise ConfigError(
            f"n_train_categories (--n-train-categories) is {n_train}, but with "
            f"{n_test} test categories only {len(pool)} of the {len(cats)} categories on "
            "this machine can be training categories (a training category may not share "
            f"a photo with a test category). Use --n-train-categories {len(pool)} or "
            f"fewer, or omit it to use them all. {more}"
        )
    train = tuple(pool[:n_train])
    chosen = {c.wnid for c in (*train, *test)}
    return CategorySplit(train, test, tuple(c for c in cats if c.wnid not in chosen))
