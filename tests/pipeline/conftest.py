from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "features"):  # _planted, _tiny_models
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(scope="module")
def god(tmp_path_factory):
    """A planted GOD folder (Subject2.h5 a copy of Subject1.h5) and an image database,
    with the ``test-paint`` generator registered."""
    from _experiment_setup import PaintGenerator
    from _planted import write_planted_god

    from fmri2image.generation import GENERATORS, register_generator

    register_generator("test-paint", PaintGenerator, conditioning="embedding",
                       description="test", offline=True, overwrite=True)  # fmt: skip
    tmp = tmp_path_factory.mktemp("exp")
    planted = write_planted_god(tmp / "god", n_train_categories=6, n_test_categories=4,
                                n_voxels=30)  # fmt: skip
    shutil.copy(planted.root / "Subject1.h5", planted.root / "Subject2.h5")
    db = planted.write_database(tmp / "imagenet", per_category=2)
    yield planted.root, db
    GENERATORS.unregister("test-paint")
