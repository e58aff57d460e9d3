"""Demo datasets written once per test session.

* ``tiny_demo``: default design on the pip photos only, driven by a tiny seeded conv
  net instead of EfficientNet (seconds, no pretrained weights), two subjects;
* ``full_demo``: the default dataset, fake Debian photos where the real ones are not
  installed, still the tiny encoder;
* ``default_demo`` (slow tests only, in ``tests/conftest.py``): exactly what
  ``fmri2image demo`` writes.
"""

from __future__ import annotations

import pytest
from _demo_helpers import TinyEncoder, write_fake_debian_photos

from fmri2image.demo import CATALOGUE, DemoDatasetInfo, available_categories


@pytest.fixture(scope="session")
def tiny_encoder() -> TinyEncoder:
    return TinyEncoder()


@pytest.fixture(scope="session")
def debian_photo_roots(tmp_path_factory) -> dict[str, list[str]] | None:
    """``photo_roots`` for the full catalogue: None (the defaults) when every Debian
    photo is installed, else fake stand-ins, so the 65-category path runs everywhere."""
    if len(available_categories()) == len(CATALOGUE):
        return None
    return write_fake_debian_photos(tmp_path_factory.mktemp("fake-debian"))


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory, tiny_encoder) -> DemoDatasetInfo:
    """Pip photos only, default design, tiny encoder, two subjects."""
    from fmri2image.demo import write_demo_dataset

    out = tmp_path_factory.mktemp("demo-pip") / "god"
    return write_demo_dataset(
        out, n_subjects=2, encoder=tiny_encoder, photo_roots={}, progress=False
    )


@pytest.fixture(scope="session")
def full_demo(tmp_path_factory, tiny_encoder, debian_photo_roots) -> DemoDatasetInfo:
    """Every catalogue photo (real or fake), default design, tiny encoder."""
    from fmri2image.demo import write_demo_dataset

    out = tmp_path_factory.mktemp("demo-full") / "god"
    return write_demo_dataset(
        out, encoder=tiny_encoder, photo_roots=debian_photo_roots, progress=False
    )
