"""`fmri2image generate` over a decode run: one picture per test image, resumable.

A tiny test generator (registered for the test) makes each picture from its
request, so the pipeline's reading of the decode run, its keys, resume and records
are checked without any network; the real generators have their own tests in
tests/generation.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from _planted import PoolEncoder, write_planted_god

from fmri2image.errors import ConfigError
from fmri2image.generation import (
    GENERATORS,
    GenerationResult,
    Generator,
    image_seed,
    register_generator,
)
from fmri2image.pipeline import DecodingConfig, run_decoding
from fmri2image.pipeline.generate import GenerateConfig, run_generate


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


@pytest.fixture(scope="module")
def decode_run(tmp_path_factory):
    register_generator("test-echo", EchoGenerator, conditioning="embedding",
                       description="test", offline=True, overwrite=True)  # fmt: skip
    tmp = tmp_path_factory.mktemp("gen")
    god = write_planted_god(tmp / "god", n_train_categories=6, n_test_categories=4, n_voxels=30)
    db = god.write_database(tmp / "imagenet", per_category=2)
    enc = PoolEncoder()
    config = DecodingConfig(encoders=(enc.name,), cv=3, databases=("prototypes", str(db)))
    run_decoding(god.root, tmp / "decode", config, encoders={enc.name: enc}, progress=False)
    yield tmp / "decode"
    GENERATORS.unregister("test-echo")


def test_one_picture_per_test_image_with_records(decode_run, tmp_path):
    out = tmp_path / "gen"
    summary = run_generate(
        decode_run, out, GenerateConfig("test-echo", batch_size=3), progress=False
    )
    stems = json.loads((decode_run / "summary.json").read_text())["test_images"]
    assert summary.n_made == {"pool48": len(stems)} and summary.n_reused == {"pool48": 0}
    for stem in stems:
        assert (out / "pool48" / f"{stem}.png").is_file()
        rec = json.loads((out / "pool48" / f"{stem}.json").read_text())
        assert rec["seed"] == image_seed(0, stem) and rec["conditioning"] == "echo pool48"
    import pyarrow.parquet as pq

    table = pq.read_table(out / "pool48" / "generation.parquet").to_pydict()
    assert table["stem"] == stems and not any(table["flagged"])
    meta = json.loads((out / "generation.json").read_text())
    assert (
        meta["generator"]["generator"] == "test-echo" and meta["generator"]["options"]["size"] == 8
    )


def test_rerun_skips_and_changed_options_remake(decode_run, tmp_path):
    out = tmp_path / "gen"
    cfg = GenerateConfig("test-echo", batch_size=2)
    run_generate(decode_run, out, cfg, progress=False)
    png = next((out / "pool48").glob("*.png"))
    before = png.stat().st_mtime_ns
    again = run_generate(decode_run, out, cfg, progress=False)
    assert sum(again.n_made.values()) == 0 and png.stat().st_mtime_ns == before
    # a killed run: one record lost -> exactly that image is made again
    next((out / "pool48").glob("*.json")).unlink()
    resumed = run_generate(decode_run, out, cfg, progress=False)
    assert resumed.n_made == {"pool48": 1}
    other = run_generate(
        decode_run, out, dataclasses.replace(cfg, options={"size": 6}), progress=False
    )
    assert other.n_reused == {"pool48": 0}


def test_a_changed_picture_is_made_again_not_reused(decode_run, tmp_path, caplog):
    out = tmp_path / "gen"
    cfg = GenerateConfig("test-echo", batch_size=2)
    run_generate(decode_run, out, cfg, progress=False)
    png = sorted((out / "pool48").glob("*.png"))[0]
    original = png.read_bytes()
    from PIL import Image

    Image.new("RGB", (8, 8), "white").save(png)  # another picture under the same name
    with caplog.at_level("WARNING"):
        again = run_generate(decode_run, out, cfg, progress=False)
    assert again.n_made == {"pool48": 1} and png.name in caplog.text
    assert png.read_bytes() == original


def test_bounds_feed_the_true_and_a_random_embedding(decode_run, tmp_path):
    """--condition true / random: the ceiling (true stimulus embedding and label) and the
    floor (a random training stimulus's), recorded and keyed apart from the method."""
    from fmri2image.pipeline.decode_run import DecodeRun

    run = DecodeRun.load(decode_run)
    enc = run.encoders[0]
    true = run.true_test_embeddings(enc)
    assert true.shape == run.outputs(enc).predictions.shape
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
            cfg = GenerateConfig("test-spy", condition=condition, options={"size": size})
            run_generate(decode_run, tmp_path / f"{condition}{size}", cfg, progress=False)
    finally:
        GENERATORS.unregister("test-spy")
    for i, stem in enumerate(run.test_stems):
        emb, wnid = seen[8][stem]
        np.testing.assert_array_equal(emb, true[i])
        assert wnid == run.test_wnids[i]
    train = run.training_embeddings(enc)
    train_wnids = run.training_wnids(enc)
    for stem in run.test_stems:
        emb, wnid = seen[6][stem]
        (row,) = [j for j in range(len(train)) if np.array_equal(train[j], emb)][:1]
        assert wnid == train_wnids[row]
        np.testing.assert_array_equal(seen[7][stem][0], emb)  # drawn from the image's seed
    meta = json.loads((tmp_path / "random6" / "generation.json").read_text())
    assert meta["config"]["condition"] == "random"
    with pytest.raises(ConfigError, match="--condition"):
        run_generate(decode_run, tmp_path / "x", GenerateConfig("test-echo", condition="oracle"))


def test_images_do_not_depend_on_the_batch(decode_run, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_generate(decode_run, a, GenerateConfig("test-echo", batch_size=1), progress=False)
    run_generate(decode_run, b, GenerateConfig("test-echo", batch_size=4), progress=False)
    for p in (a / "pool48").glob("*.png"):
        assert p.read_bytes() == (b / "pool48" / p.name).read_bytes()


def test_flagged_images_are_recorded(decode_run, tmp_path, caplog):
    stems = json.loads((decode_run / "summary.json").read_text())["test_images"]
    cfg = GenerateConfig("test-echo", options={"flag_stems": stems[1]})
    with caplog.at_level("WARNING"):
        summary = run_generate(decode_run, tmp_path / "gen", cfg, progress=False)
    assert summary.n_flagged == {"pool48": 1}
    assert any("flagged" in r.getMessage() and stems[1] in r.getMessage() for r in caplog.records)


def test_cli_generate_and_its_errors(decode_run, tmp_path, capsys):
    from fmri2image.cli.main import main

    out = tmp_path / "gen"
    rc = main(["-q", "generate", "--from", str(decode_run), "--generator", "test-echo",
               "--out", str(out), "--option", "size=5"])  # fmt: skip
    assert rc == 0 and "5 made" not in capsys.readouterr().err
    from PIL import Image

    with Image.open(next((out / "pool48").glob("*.png"))) as im:
        assert im.size == (5, 5)
    for argv, needle in (
        (["--option", "size=big"], "takes a value of type int"),
        (["--option", "steps=3"], "has no such option"),
        (["--encoder", "nope"], "--encoder nope is not in the decode run"),
        (["--init", str(tmp_path / "missing")], "--init must be 'invert' or a folder"),
    ):
        rc = main(["-q", "generate", "--from", str(decode_run), "--generator", "test-echo",
                   "--out", str(tmp_path / "x"), *argv])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and "Traceback" not in err, (argv, err)
        assert not (tmp_path / "x").exists()
    rc = main(["-q", "generate", "--from", str(tmp_path), "--generator", "test-echo",
               "--out", str(tmp_path / "x")])  # fmt: skip
    assert rc == 2 and "not the output of `fmri2image decode`" in capsys.readouterr().err
    assert main(["generate", "--generator", "test-echo", "--list-options"]) == 0
    listing = capsys.readouterr().out
    assert "--option size=...  (default: 8)  Side of the picture." in listing


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
        run_generate(decode_run, local, GenerateConfig("test-echo"), generator=gen, progress=False)
        cfg = GenerateConfig("test-echo", executor="ray", workers=2, batch_size=1)
        run_generate(decode_run, remote, cfg, generator=gen, progress=False)
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    for p in (local / "pool48").glob("*.png"):
        assert p.read_bytes() == (remote / "pool48" / p.name).read_bytes()


def test_a_refused_encoder_stops_before_any_picture(decode_run, tmp_path):
    from fmri2image.errors import ConfigError

    out = tmp_path / "gen"
    with pytest.raises(ConfigError, match="refuses encoder 'pool48'"):
        run_generate(decode_run, out, GenerateConfig("test-echo", options={"refuse": "pool48"}))
    assert not out.exists()


def test_a_damaged_stimulus_cache_says_to_rerun_decode(decode_run, tmp_path):
    """A reader of a decode run (generate) names the command that rebuilds its caches."""
    import shutil

    from fmri2image.errors import DataFormatError
    from fmri2image.pipeline.decode_run import DecodeRun

    copy = tmp_path / "decode"
    shutil.copytree(decode_run, copy)
    run = DecodeRun.load(copy)
    manifest = next((copy / "stimulus_features" / "training").glob("*/manifest.json"))
    manifest.write_text(manifest.read_text().replace('"complete": true', '"complete": false'))
    with pytest.raises(DataFormatError) as err:
        run.training_embeddings(run.encoders[0])
    msg = str(err.value)
    assert "Run `fmri2image decode` again with the same --out" in msg and "extract" not in msg
