"""A new generator: one class and one ``register_generator`` call, then ``run
--generators``; one that needs a run resource (the image database) declares it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from _cli import run

from fmri2image.generation import (
    GENERATORS,
    GenerationResult,
    Generator,
    image_seed,
    register_generator,
)
from fmri2image.registry import Needs


@dataclasses.dataclass(frozen=True)
class MosaicOptions:
    """Options of the mosaic generator.

    Attributes
    ----------
    tiles : int
        Tiles per side.
    database : str or None
        The run's image database (given by the run: a declared input).
    """

    tiles: int = 4
    database: str | None = None


class Mosaic(Generator):
    """Tiles the database image nearest to the prediction's first dimensions' pattern
    (a toy): it needs the run's image database, which it declares."""

    name = "toy-mosaic"
    conditioning = "embedding"
    description = "a mosaic of the prediction's signs, tinted by the database's first image"
    needs = Needs(offline=True, inputs=("database",))
    Options = MosaicOptions

    def generate(self, requests):
        from PIL import Image

        assert self.options.database is not None, "the run supplies its database"
        out = []
        for r in requests:
            t = self.options.tiles
            signs = np.resize(np.asarray(r.embedding) > r.stats.mean, (t, t))
            tile = np.kron(signs, np.ones((8, 8)))[..., None] * np.array([200, 120, 40])
            img = Image.fromarray(tile.astype(np.uint8))
            out.append(
                GenerationResult(
                    r.stem,
                    (img,),
                    f"mosaic of {r.encoder}",
                    image_seed(r.seed, r.stem),
                    extra={"database": self.options.database},
                )
            )
        return out


@pytest.fixture
def toy_generator():
    register_generator("toy-mosaic", Mosaic)
    yield "toy-mosaic"
    GENERATORS.unregister("toy-mosaic")


def test_a_registered_generator_runs_end_to_end_with_its_declared_input(
    god, pool48, toy_generator, tmp_path
):
    root, db = god
    out = tmp_path / "out"
    assert run("run", "--data", str(root), "--model", pool48, "--cv", "3", "--database",
               "prototypes", "--database", str(db), "--generators", toy_generator,
               "--set", "generation.options={ toy-mosaic = { tiles = 2 } }",
               "--metrics", "pixcorr", "ssim", "--out", str(out)) == 0  # fmt: skip
    for cond in ("predicted", "true", "random"):  # the method and its bounds
        folder = out / "images" / "s1-ROI_VC" / "pool48" / "ridge" / "toy-mosaic" / cond
        pngs = sorted(folder.glob("*.png"))
        assert len(pngs) == 4
        rec = json.loads(pngs[0].with_suffix(".json").read_text())
        # the run gave it the features of its image database, embedded by this run
        assert Path(rec["extra"]["database"]).parts[-2].startswith("database_pool48")
    summary = (out / "tables" / "summary.csv").read_text()
    assert "toy-mosaic" in summary
    assert "toy-mosaic" in (out / "report.html").read_text()


def test_a_run_without_the_input_it_needs_stops_before_any_work(
    god, pool48, toy_generator, tmp_path, capsys
):
    root, _ = god
    out = tmp_path / "out"
    assert run("run", "--data", str(root), "--model", pool48, "--database", "prototypes",
               "--generators", toy_generator, "--out", str(out)) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "Generator 'toy-mosaic' needs the feature folder of the run's first image" in err
    assert not out.exists()
