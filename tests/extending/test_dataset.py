"""A new dataset: one ``Dataset`` subclass and one ``register_dataset`` call, then ``run
--dataset``.  This one is what GOD is not: its stimuli are arrays inside a container
file (as NSD ships them), its labels free text, its subjects one file each."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from _cli import run

from fmri2image.data import DATASETS, Dataset, Recording, Stimuli, register_dataset
from fmri2image.errors import MissingDataFileError

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220),
           "yellow": (230, 220, 40), "purple": (150, 40, 170), "cyan": (40, 210, 210)}  # fmt: skip
SHAPES = ("square", "bar")


def _picture(colour, shape, rng):
    img = np.full((32, 32, 3), 128, dtype=np.uint8)
    if shape == "square":
        img[8:24, 8:24] = COLOURS[colour]
    else:
        img[12:20, 2:30] = COLOURS[colour]
    noise = rng.integers(-12, 13, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def write_toy_dataset(root: Path, *, n_voxels: int = 24, seed: int = 0) -> None:
    """``stimuli.npz`` (the pictures, their names and labels) and ``sub-01.npz`` (voxels
    that read the pictures' mean colour, every sample's split, stimulus and run)."""
    rng = np.random.default_rng(seed)
    train = [(c, s) for c in COLOURS for s in SHAPES for _ in range(3)]
    test = [(c, s) for c in COLOURS for s in SHAPES]
    arrays = {}
    for split, items in (("train", train), ("test", test)):
        arrays[f"{split}_images"] = np.stack([_picture(c, s, rng) for c, s in items])
        arrays[f"{split}_labels"] = np.array([f"{c} {s}" for c, s in items])
        arrays[f"{split}_stems"] = np.array([f"{split}-{i:03d}" for i in range(len(items))])
    np.savez(root / "stimuli.npz", **arrays)
    A = rng.normal(size=(3, n_voxels))
    rows, split, runs = [], [], []
    for _r in range(2):  # two runs of every training picture ...
        rows += [("train", i) for i in range(len(train))]
    for _r in range(3):  # ... and three repeats of every test picture
        rows += [("test", i) for i in range(len(test))]
    voxels, stimulus = [], []
    for k, (s, i) in enumerate(rows):
        mean = arrays[f"{s}_images"][i].reshape(-1, 3).mean(0) / 255.0
        voxels.append(mean @ A + rng.normal(0, 0.3, n_voxels))
        split.append(s)
        stimulus.append(i)
        runs.append(k // 12)
    np.savez(root / "sub-01.npz", voxels=np.array(voxels, dtype=np.float32),
             split=np.array(split), stimulus=np.array(stimulus), runs=np.array(runs))  # fmt: skip


class ToyColours(Dataset):
    """Coloured shapes seen by a simulated subject; pictures stored as arrays."""

    name = "toy-colours"
    description = "coloured shapes, arrays in stimuli.npz, one sub-NN.npz per subject"
    vocabulary = "text"

    def subjects(self):
        return tuple(int(p.stem[4:]) for p in sorted(self.path.glob("sub-*.npz")))

    def files(self, subject):
        path = self.path / f"sub-{subject:02d}.npz"
        if not path.is_file():
            raise MissingDataFileError(f"{path} does not exist; subjects: {self.subjects()}.")
        return (path,)

    def load(self, subject, roi, *, drop_nan_voxels=False):
        (path,) = self.files(subject)
        with np.load(path) as f:
            voxels, split, stimulus, runs = f["voxels"], f["split"], f["stimulus"], f["runs"]
        half = voxels.shape[1] // 2
        rois = {"all": slice(None), "first": slice(0, half), "second": slice(half, None)}
        labels = {s: self.stimuli(s).labels for s in ("train", "test")}
        groups = [labels[s][i] for s, i in zip(split, stimulus)]
        return Recording(
            subject=subject, roi=roi, voxels=np.ascontiguousarray(voxels[:, rois[roi]]),
            split=split.astype(object), stimulus=stimulus.astype(np.int64),
            runs=runs.astype(np.int64), groups=np.unique(groups, return_inverse=True)[1],
            roi_sizes={k: len(range(voxels.shape[1])[v]) for k, v in rois.items()},
            sources=(path,),
        )  # fmt: skip

    def stimuli(self, split):
        path = self.path / "stimuli.npz"
        with np.load(path) as f:
            stems, labels = f[f"{split}_stems"], f[f"{split}_labels"]

        def read(rows):
            with np.load(path) as f:
                return f[f"{split}_images"][list(rows)]

        return Stimuli(split, tuple(map(str, stems)), tuple(map(str, labels)), read=read,
                       source=path)  # fmt: skip


@pytest.fixture
def toy_dataset(tmp_path):
    register_dataset("toy-colours", ToyColours)
    write_toy_dataset(tmp_path)
    yield tmp_path
    DATASETS.unregister("toy-colours")


def test_a_registered_dataset_runs_end_to_end(toy_dataset, pool48, tmp_path):
    out = tmp_path / "out"
    assert run("run", "--dataset", "toy-colours", "--data", str(toy_dataset), "--model", pool48,
               "--rois", "all", "first", "--cv", "3", "--database", "prototypes",
               "--generators", "invert", "--set",
               "generation.options={ invert = { iterations = 2, size = 32 } }",
               "--metrics", "pixcorr", "ssim", "--out", str(out)) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "toy-colours"
    blocks = {b["roi"]: b for b in summary["blocks"]}
    assert set(blocks) == {"all", "first"}
    assert blocks["all"]["true_labels"][:2] == ["red square", "red bar"]  # free text
    assert blocks["all"]["info"]["n_train"] == 72 and blocks["first"]["info"]["n_voxels"] == 12
    rows = {(r["roi"], r["encoder"]): r for r in summary["encoders"]}
    assert rows[("all", "pool48")]["pairwise_id"] > 0.7  # the subject sees the colours
    # Labels are text: hits by equality, no WordNet similarity for them.
    (ret,) = rows[("all", "pool48")]["retrieval"]
    assert ret["wup"] is None and ret["hit1"] == 0.0
    # The arrays were written once as pictures, shared by both ROIs: the ground truth.
    gt = out / "images" / "s1-all" / "ground_truth"
    assert sorted(p.name for p in gt.iterdir())[:2] == ["test-000.png", "test-001.png"]
    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert sorted(s["name"] for s in stages if s["name"].startswith("stimuli/")) == [
        "stimuli/test", "stimuli/train"
    ]  # fmt: skip
    scores = list(csv.DictReader((out / "tables" / "scores.csv").open()))
    assert {r["roi"] for r in scores} == {"all", "first"}
    assert "toy-colours" in (out / "report.html").read_text()


def test_a_label_generator_is_prompted_with_the_text_labels(toy_dataset, pool48, tmp_path):
    """Label prompts use what exists: the dataset's own text for the true bound."""
    from fmri2image.generation import GENERATORS, GenerationResult, Generator, register_generator

    class Say(Generator):
        name = "toy-say"
        conditioning = "label"

        def generate(self, requests):
            from PIL import Image

            def paint(name):  # a colour the label names, on grey
                img = Image.new("RGB", (8, 8), (128, 128, 128))
                img.paste(COLOURS[name.split()[0]], (2, 2, 6, 6))
                return img

            return [
                GenerationResult(r.stem, (paint(r.name),), f"say {r.name}", 0) for r in requests
            ]

    register_generator("toy-say", Say)
    try:
        out = tmp_path / "out"
        assert run("run", "--dataset", "toy-colours", "--data", str(toy_dataset), "--model",
                   pool48, "--rois", "all", "--cv", "3", "--generators", "toy-say",
                   "--set", 'generation.conditions=["true"]',
                   "--metrics", "ssim", "--out", str(out)) == 0  # fmt: skip
    finally:
        GENERATORS.unregister("toy-say")
    folder = out / "images" / "s1-all" / "pool48" / "ridge" / "toy-say" / "true"
    rec = json.loads((folder / "test-000.json").read_text())
    assert rec["conditioning"] == "say red square" and rec["wnid"] is None
    assert rec["label"] == "red square"


def test_unknown_subject_is_one_clear_error(toy_dataset, pool48, tmp_path, capsys):
    out = tmp_path / "out"
    assert run("decode", "--dataset", "toy-colours", "--data", str(toy_dataset), "--model",
               pool48, "--subject", "2", "--rois", "all", "--out", str(out)) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "sub-02.npz does not exist" in err and "Traceback" not in err and not out.exists()
