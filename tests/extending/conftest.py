"""What the seam tests share: a small planted GOD folder with an image database, and the
command line run as a user runs it.

Each test file of this folder adds one kind of component (encoder, mapper, generator,
metric, dataset) through the public API only and runs ``fmri2image run`` end to end
with it; test_plugin_package.py installs one from a package, as a third party ships it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "pipeline"))  # _planted: GOD-layout test data


@pytest.fixture(scope="module")
def god(tmp_path_factory):
    """A planted GOD folder and an ImageNet-style image database of its categories."""
    from _planted import write_planted_god

    tmp = tmp_path_factory.mktemp("extending")
    planted = write_planted_god(tmp / "god", n_train_categories=6, n_test_categories=4,
                                n_voxels=30)  # fmt: skip
    db = planted.write_database(tmp / "imagenet", per_category=2)
    return planted.root, db


@pytest.fixture
def pool48():
    """The planted data's pooling 'network', registered as an encoder named pool48 (for
    the seams other than the encoder's)."""
    from _planted import PoolEncoder

    from fmri2image.features import ENCODERS, register_encoder

    register_encoder("pool48", lambda **kw: PoolEncoder(), overwrite=True)
    yield "pool48"
    ENCODERS.unregister("pool48")
