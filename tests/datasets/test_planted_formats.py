"""The same pictures seen by the same simulated brain, written in every release format
(GOD, Deeprecon, THINGS-fMRI, NSD as MindEye2 ships it), decode equally well through
``fmri2image run``: the loaders lose no signal and leak no test data; pure noise
stays at chance in every format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fmri2image.data.fixtures import (
    FixturePictures,
    fixture_pictures,
    noise_response,
    planted_response,
)

N_VOXELS = 90
N_TEST_REPEATS = 3
FORMATS = ("god", "deeprecon", "things", "nsd")


def _pictures() -> tuple[FixturePictures, FixturePictures]:
    train = fixture_pictures(12, 6, seed=0)  # 72 training pictures, each seen once
    test = fixture_pictures(20, 1, seed=1)  # 20 test pictures of other categories
    return train, test


def write_god_layout(root: Path, train, test, respond, seed: int = 0) -> Path:
    """The pictures and responses in GOD's layout (``Subject1.h5``, id files, images)."""
    from fmri2image.data.ids import image_name_to_stimulus_id
    from fmri2image.data.layout import write_god_subject, write_stimulus_set
    from fmri2image.imagenet import imagenet1k_wnids

    rng = np.random.default_rng(seed)
    wnids = list(imagenet1k_wnids())
    train_names = [f"{wnids[c]}_{1000 + i}" for i, c in enumerate(train.categories)]
    test_names = [f"{wnids[500 + c]}_{5000 + i}" for i, c in enumerate(test.categories)]
    write_stimulus_set(root, "training", dict(zip(train_names, train.images)))
    write_stimulus_set(root, "test", dict(zip(test_names, test.images)))
    names = train_names + [n for _ in range(N_TEST_REPEATS) for n in test_names]
    images = np.concatenate([train.images, *[test.images] * N_TEST_REPEATS])
    dtype = [1] * len(train_names) + [2] * len(test_names) * N_TEST_REPEATS
    run = [1 + i // 24 for i in range(len(train_names))] + [
        10 + r for r in range(N_TEST_REPEATS) for _ in test_names
    ]
    voxels = respond(images, rng)
    write_god_subject(
        root / "Subject1.h5", voxels, data_type=dtype, run=run,
        stimulus_id=[image_name_to_stimulus_id(n) for n in names],
        rois={"V1": np.arange(N_VOXELS) < 45, "LOC": np.arange(N_VOXELS) >= 45},
    )  # fmt: skip
    return root


def write_format(fmt: str, root: Path, respond) -> Path:
    train, test = _pictures()
    if fmt == "god":
        return write_god_layout(root, train, test, respond)
    common = {"subjects": (1,), "train": train, "test": test, "respond": respond,
              "n_voxels": N_VOXELS, "n_test_repeats": N_TEST_REPEATS, "seed": 0}  # fmt: skip
    if fmt == "deeprecon":
        from fmri2image.data.deeprecon import write_deeprecon_fixture

        write_deeprecon_fixture(root, n_train_repeats=1, **common)
    elif fmt == "things":
        from fmri2image.data.things import write_things_fixture

        write_things_fixture(root, **common)
    else:
        from fmri2image.data.nsd import write_nsd_fixture

        write_nsd_fixture(root, **common)
    return root


def _run_argv(fmt: str, root: Path, model: str, out: Path) -> list[str]:
    """``fmri2image run`` on one layout (a cheap generator: the decoding is the point)."""
    # The NSD fixture holds 2 sessions, the release 30-40: train on those (MindEye2's
    # --num_sessions).
    options = ["--set", "data.options={ sessions = 2 }"] if fmt == "nsd" else []
    # Every voxel written: the THINGS fixture leaves a fifth of them outside its visual
    # ROIs (in Glasser parcels only), as the whole-brain release does.
    options += ["--roi", "VC + glasser-*"] if fmt == "things" else []
    return ["run", "--dataset", fmt, "--data", str(root), "--model", model, *options,
            "--cv", "3", "--database", "stimuli", "--generators", "invert",
            "--set", "generation.options={ invert = { iterations = 1, size = 32 } }",
            "--no-bounds", "--metrics", "pixcorr", "--out", str(out)]  # fmt: skip


def _pairwise(cli, fmt: str, root: Path, pool48: str, out: Path) -> tuple[float, dict]:
    rc, _, err = cli(*_run_argv(fmt, root, pool48, out))
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    (row,) = summary["encoders"]
    (block,) = summary["blocks"]
    return float(row["pairwise_id"]), block


@pytest.fixture(scope="module")
def god_reference(tmp_path_factory):
    """The planted brain in GOD's layout, run once: the score every layout must match."""
    from _planted import PoolEncoder

    from fmri2image.cli.main import main
    from fmri2image.features import ENCODERS, register_encoder

    tmp = tmp_path_factory.mktemp("god-reference")
    root = write_god_layout(tmp / "god", *_pictures(), _planted_brain())
    register_encoder("pool48", lambda **kw: PoolEncoder(), overwrite=True)
    try:
        assert main(["-q", *_run_argv("god", root, "pool48", tmp / "out")]) == 0
    finally:
        ENCODERS.unregister("pool48")
    (row,) = json.loads((tmp / "out" / "summary.json").read_text())["encoders"]
    return float(row["pairwise_id"])


def _planted_brain():
    return planted_response(N_VOXELS, seed=3, noise=1.0)


@pytest.mark.parametrize("fmt", FORMATS[1:])
def test_planted_signal_decodes_alike_in_every_format(fmt, god_reference, cli, pool48, tmp_path):
    god = god_reference
    score, block = _pairwise(cli, fmt, write_format(fmt, tmp_path / fmt, _planted_brain()),
                             pool48, tmp_path / f"out-{fmt}")  # fmt: skip
    assert block["info"]["n_train"] == 72 and len(block["test_images"]) == 20
    assert block["info"]["n_eval_repeats"] == [N_TEST_REPEATS]
    assert god > 0.8, god  # the planted brain is readable ...
    assert abs(score - god) < 0.06, (fmt, score, god)  # ... as well in every layout


@pytest.mark.parametrize("fmt", FORMATS)
def test_pure_noise_stays_at_chance_in_every_format(fmt, cli, pool48, tmp_path):
    score, _ = _pairwise(cli, fmt, write_format(fmt, tmp_path / fmt, noise_response(N_VOXELS)),
                         pool48, tmp_path / "out")  # fmt: skip
    assert 0.3 < score < 0.7, (fmt, score)
