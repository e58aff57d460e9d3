"""`fmri2image generate --from RUN` over a decode run: the run's configuration with one
generator, every upstream stage reused from the run's cache, one picture per test
image, resumable.

A tiny test generator (registered for the test) makes each picture from its
request, and the pooling encoder is registered under a name, so the command line
runs as a user runs it, without any network; the real generators have their own
tests in tests/generation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from _planted import PoolEncoder, write_planted_god

from fmri2image.cli.main import build_parser, main
from fmri2image.errors import ConfigError
from fmri2image.generation import (
    GENERATORS,
    GenerationResult,
    Generator,
    image_seed,
    register_generator,
)
from fmri2image.pipeline.experiment import run_experiment


@dataclasses.dataclass(frozen=True)
class _Opts:
    """Options of the test generator.

    Attributes
    ----------
    size : int
        Side of the picture.
    flag_stems : str
        Comma-separated stems to report as flagged.
    refuse : str
        An encoder whose embeddings the generator refuses.
    """

    size: int = 8
    flag_stems: str = ""
    refuse: str = ""


class EchoGenerator(Generator):
    """Paints the sign pattern of the predicted embedding, plus seeded noise."""

    name = "test-echo"
    conditioning = "embedding"
    Options = _Opts

    def check(self, encoder):
        if encoder == self.options.refuse:
            raise ConfigError(f"test-echo refuses encoder {encoder!r}")

    def generate(self, requests):
        from PIL import Image

        out = []
        for r in requests:
            seed = image_seed(r.seed, r.stem)
            rng = np.random.default_rng(seed)
            s = self.options.size
            emb = np.resize(np.asarray(r.embedding) > r.stats.mean, (s, s))
            arr = (emb[..., None] * 200 + rng.integers(0, 30, (s, s, 3))).astype(np.uint8)
            flagged = r.stem in self.options.flag_stems.split(",")
            out.append(GenerationResult(r.stem, (Image.fromarray(arr),), f"echo {r.encoder}", seed,
                                        flagged=flagged))  # fmt: skip
        return out


MAPS = ("maps", "s1-ROI_VC", "pool48")


@pytest.fixture(scope="module")
def decode_run(tmp_path_factory):
    """`fmri2image decode` of planted data, with the pooling encoder registered as pool48."""
    from fmri2image.features import ENCODERS, register_encoder

    register_generator("test-echo", EchoGenerator, conditioning="embedding",
                       description="test", offline=True, overwrite=True)  # fmt: skip
    register_encoder("pool48", lambda **kw: PoolEncoder(), overwrite=True)
    tmp = tmp_path_factory.mktemp("gen")
    god = write_planted_god(tmp / "god", n_train_categories=6, n_test_categories=4, n_voxels=30)
    db = god.write_database(tmp / "imagenet", per_category=2)
    assert main(["-q", "decode", "--data", str(god.root), "--model", "pool48", "--cv", "3",
                 "--database", "prototypes", "--database", str(db),
                 "--out", str(tmp / "decode")]) == 0  # fmt: skip
    yield tmp / "decode"
    GENERATORS.unregister("test-echo")
    ENCODERS.unregister("pool48")


def generate(decode_run, out, *flags, generator="test-echo", built=None):
    """`fmri2image generate --from decode_run ...` (a built generator may stand in)."""
    from fmri2image.cli.generate_cmd import generate_config

    args = build_parser().parse_args(
        ["generate", "--from", str(decode_run), "--generator", generator, "--out", str(out),
         *flags]
    )  # fmt: skip
    built = {generator: built} if built is not None else None
    return run_experiment(generate_config(args), generators=built, progress=False)


def stems_of(decode_run):
    (block,) = json.loads((decode_run / "summary.json").read_text())["blocks"]
    return block["test_images"]


def pictures(out, generator="test-echo", condition="predicted"):
    return out / "images" / "s1-ROI_VC" / "pool48" / "ridge" / generator / condition


def made(result):
    return {(p["condition"]): p["n_made"] for p in result.pictures}


def test_one_picture_per_test_image_with_records(decode_run, tmp_path):
    out = tmp_path / "gen"
    result = generate(decode_run, out, "--batch-size", "3")
    stems = stems_of(decode_run)
    assert made(result) == {"predicted": len(stems)}
    # Nothing upstream of the pictures is computed again: the decode's cache is shared.
    assert {n.split("/")[0] for n in result.computed} == {"generation", "evaluation"}
    folder = pictures(out)
    for stem in stems:
        assert (folder / f"{stem}.png").is_file()
        rec = json.loads((folder / f"{stem}.json").read_text())
        assert rec["seed"] == image_seed(0, stem) and rec["conditioning"] == "echo pool48"
    import pyarrow.parquet as pq

    table = pq.read_table(folder / "generation.parquet").to_pydict()
    assert table["stem"] == stems and not any(table["flagged"])
    (gen,) = [r for r in result.records if r.name.startswith("generation/")]
    meta = json.loads((gen.folder / "images.json").read_text())
    assert (
        meta["generator"]["generator"] == "test-echo" and meta["generator"]["options"]["size"] == 8
    )
    assert result.config.generation.generators == ("test-echo",)
    assert (out / "report.html").is_file() and (out / "tables" / "scores.csv").is_file()


def test_a_decode_then_a_run_on_its_cache_fit_the_map_once(decode_run, tmp_path):
    """The mapping stage of `decode` is the mapping stage of `run` (stages.json says so)."""
    out = tmp_path / "run"
    cache = decode_run / "cache"
    assert main(["-q", "run", "--config", str(decode_run / "config.toml"), "--generators",
                 "test-echo", "--out", str(out), "--cache", str(cache)]) == 0  # fmt: skip
    stages = json.loads((out / "stages.json").read_text())
    by_kind = {}
    for s in stages["stages"]:
        by_kind.setdefault(s["name"].split("/")[0], set()).add(s["reused"])
    assert by_kind["mapping"] == {True} and by_kind["data"] == {True}
    assert by_kind["features"] == {True} and by_kind["retrieval"] == {True}
    assert "generation" in by_kind  # (made here, or by another generate on this cache)
    assert stages["cache"] == str(cache.resolve())


def test_rerun_skips_and_changed_options_remake(decode_run, tmp_path):
    out = tmp_path / "gen"
    generate(decode_run, out, "--batch-size", "2")
    png = next(pictures(out).glob("*.png"))
    before = png.stat().st_mtime_ns
    again = generate(decode_run, out, "--batch-size", "2")
    assert again.computed == [] and png.stat().st_mtime_ns == before
    # a record lost (a killed run): exactly that image is made again
    (gen,) = [r for r in again.records if r.name.startswith("generation/")]
    next(gen.folder.glob("n*.json")).unlink()
    resumed = generate(decode_run, out, "--batch-size", "2")
    assert made(resumed) == {"predicted": 1}
    other = generate(decode_run, out, "--batch-size", "2", "--option", "size=6")
    assert made(other) == {"predicted": len(stems_of(decode_run))}


def test_a_changed_picture_is_made_again_not_reused(decode_run, tmp_path, caplog):
    out = tmp_path / "gen"
    first = generate(decode_run, out, "--batch-size", "2")
    png = sorted(pictures(out).glob("*.png"))[0]
    original = png.read_bytes()
    from PIL import Image

    # Another picture under the same name in the cached artifact (OUT/images holds
    # copies, which the cache never reads).
    (folder,) = [p["folder"] for p in first.pictures if p["condition"] == "predicted"]
    cached = Path(folder) / png.name
    Image.new("RGB", (8, 8), "white").save(cached)
    with caplog.at_level("WARNING"):
        again = generate(decode_run, out, "--batch-size", "2")
    assert made(again) == {"predicted": 1} and png.name in caplog.text
    assert cached.read_bytes() == original and png.read_bytes() == original


def test_bounds_feed_the_true_and_a_random_embedding(decode_run, tmp_path):
    """--condition true / random: the ceiling (true stimulus embedding and label) and the
    floor (a random training stimulus's), recorded and keyed apart from the method."""
    from fmri2image.features import open_feature_store
    from fmri2image.pipeline.results import load_run

    run = load_run(decode_run)
    features = run.folder("features/pool48")
    train = open_feature_store(features / "train" / "pool48")
    test = open_feature_store(features / "test" / "pool48")
    test_row = {p.rsplit("/", 1)[-1].rsplit(".", 1)[0]: i for i, p in enumerate(test.paths)}
    true, train_x = test.load(), train.load()
    seen = {}

    class Spy(EchoGenerator):
        def generate(self, requests):
            for r in requests:
                seen.setdefault(self.options.size, {})[r.stem] = (np.asarray(r.embedding), r.wnid)
            return super().generate(requests)

    register_generator("test-spy", Spy, conditioning="embedding", description="test",
                       offline=True, overwrite=True)  # fmt: skip
    try:
        for size, condition in ((8, "true"), (6, "random"), (7, "random")):
            result = generate(decode_run, tmp_path / f"{condition}{size}", "--condition",
                              condition, "--option", f"size={size}", generator="test-spy")  # fmt: skip
            assert result.config.generation.conditions == (condition,)
    finally:
        GENERATORS.unregister("test-spy")
    (block,) = json.loads((decode_run / "summary.json").read_text())["blocks"]
    for stem, wnid in zip(block["test_images"], block["true_labels"]):
        emb, got = seen[8][stem]
        np.testing.assert_array_equal(emb, true[test_row[stem]])
        assert got == wnid
    for stem in block["test_images"]:
        emb, wnid = seen[6][stem]
        (row,) = [j for j in range(len(train_x)) if np.array_equal(train_x[j], emb)][:1]
        assert wnid == train.wnids[row]
        np.testing.assert_array_equal(seen[7][stem][0], emb)  # drawn from the image's seed
    assert (pictures(tmp_path / "random6", "test-spy", "random") / "generation.parquet").is_file()


def test_images_do_not_depend_on_the_batch(decode_run, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(decode_run, a, "--batch-size", "1")
    generate(decode_run, b, "--batch-size", "4", "--cache", str(tmp_path / "other-cache"))
    pngs = list(pictures(a).glob("*.png"))
    assert pngs
    for p in pngs:
        assert p.read_bytes() == (pictures(b) / p.name).read_bytes()


def test_flagged_images_are_recorded(decode_run, tmp_path, caplog):
    stems = stems_of(decode_run)
    with caplog.at_level("WARNING"):
        result = generate(decode_run, tmp_path / "gen", "--option", f"flag_stems={stems[1]}")
    (p,) = result.pictures
    assert p["n_flagged"] == 1
    assert any("flagged" in r.getMessage() and stems[1] in r.getMessage() for r in caplog.records)


def test_cli_generate_and_its_errors(decode_run, tmp_path, capsys):
    out = tmp_path / "gen"
    rc = main(["-q", "generate", "--from", str(decode_run), "--generator", "test-echo",
               "--out", str(out), "--option", "size=5"])  # fmt: skip
    printed = capsys.readouterr()
    assert rc == 0 and "4 pictures, 4 made now, 0 flagged" in printed.out
    from PIL import Image

    with Image.open(next(pictures(out).glob("*.png"))) as im:
        assert im.size == (5, 5)
    for argv, needle in (
        (["--option", "size=big"], "takes a value of type int"),
        (["--option", "steps=3"], "has no such option"),
        (["--encoder", "nope"], "--encoder nope is not in the run"),
        (
            ["--init", str(tmp_path / "missing")],
            "--init must be a generator (invert, lowlevel) or a folder",
        ),
        (["--condition", "oracle"], "argument --condition: invalid choice"),
    ):
        rc = run_cli(["-q", "generate", "--from", str(decode_run), "--generator", "test-echo",
                      "--out", str(tmp_path / "x"), *argv])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and "Traceback" not in err, (argv, err)
        assert not (tmp_path / "x").exists()
    rc = main(["-q", "generate", "--from", str(tmp_path), "--generator", "test-echo",
               "--out", str(tmp_path / "x")])  # fmt: skip
    assert rc == 2 and "is not a run folder" in capsys.readouterr().err
    assert main(["generate", "--generator", "test-echo", "--list-options"]) == 0
    listing = capsys.readouterr().out
    assert "--option size=...  (default: 8)  Side of the picture." in listing


def run_cli(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


@pytest.mark.slow
def test_ray_executor_gives_the_same_images(decode_run, tmp_path):
    """Two Ray actors, each with a copy of the generator: the images of the local run."""
    pytest.importorskip("ray")
    import sys

    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test generator
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        local, remote = tmp_path / "local", tmp_path / "ray"
        gen = EchoGenerator()
        generate(decode_run, local, built=gen)
        generate(decode_run, remote, "--executor", "ray", "--workers", "2", "--batch-size", "1",
                 "--cache", str(tmp_path / "ray-cache"), built=gen)  # fmt: skip
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    pngs = list(pictures(local).glob("*.png"))
    assert pngs
    for p in pngs:
        assert p.read_bytes() == (pictures(remote) / p.name).read_bytes()


def test_a_refused_encoder_stops_before_any_picture(decode_run, tmp_path):
    out = tmp_path / "gen"
    with pytest.raises(ConfigError, match="refuses encoder 'pool48'"):
        generate(decode_run, out, "--option", "refuse=pool48")
    assert not out.exists()


def test_a_damaged_upstream_artifact_is_recomputed_not_used(decode_run, tmp_path, caplog):
    """generate verifies the run's stages it reuses: a changed feature shard is
    recomputed (and the pictures equal the ones made from the intact cache)."""
    import shutil

    copy = tmp_path / "decode"
    shutil.copytree(decode_run, copy)
    reference = generate(decode_run, tmp_path / "ref", "--cache", str(tmp_path / "ref-cache"))
    config = (copy / "config.toml").read_text()
    (copy / "stages.json").write_text(
        (copy / "stages.json").read_text().replace(str((decode_run / "cache").resolve()),
                                                   str((copy / "cache").resolve()))
    )  # fmt: skip
    assert config
    (shard,) = (copy / "cache").glob("features_pool48/*/train/pool48/shard-*.npy")
    arr = np.load(shard)
    np.save(shard, arr[::-1].copy())
    with caplog.at_level("WARNING"):
        result = generate(copy, tmp_path / "gen")
    assert "recomputing stage features/pool48" in caplog.text
    assert "features/pool48" in result.computed
    for p in pictures(reference.out_dir).glob("*.png"):
        assert p.read_bytes() == (pictures(result.out_dir) / p.name).read_bytes()
