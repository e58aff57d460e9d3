"""The low-level pathway through the graph: early visual cortex -> image code -> picture.

On planted GOD-layout data whose V1 voxels read a random linear map of each
stimulus's 4 x 4 colour layout (``_planted``), the ``lowlevel`` pictures must
identify the seen image by their pixels (PixCorr 2-way identification well above
0.5) and beat the feature inversion's pictures on PixCorr and SSIM; started from
them, ``invert`` (the two-pathway reconstruction) keeps their layout.  On pure-noise
voxels they stay at their floor.  The code is fitted on the training stimuli only.
"""

from __future__ import annotations

import pytest
from _planted import PoolEncoder

from fmri2image.errors import ConfigError
from fmri2image.pipeline.config import (
    DataSection,
    EvaluationSection,
    GenerationSection,
    MappingSection,
    RetrievalSection,
    RunConfig,
)
from fmri2image.pipeline.experiment import run_experiment

LOW = {"roi": "ROI_V1", "resolution": 16, "n_components": 32, "size": 64}
OPTIONS = {"lowlevel": LOW, "invert": {"iterations": 8, "size": 32, "batch_size": 16}}
METRICS = ("pixcorr", "ssim", "pixcorr2")


@pytest.fixture(scope="module", autouse=True)
def pool48():
    """The planted data's pooling network as a registered encoder (``invert`` builds
    its encoder by name)."""
    from fmri2image.features import ENCODERS, register_encoder

    register_encoder("pool48", lambda **kw: PoolEncoder(), overwrite=True)
    yield "pool48"
    ENCODERS.unregister("pool48")


def _run(config):
    return run_experiment(config, progress=False)


def _write(root, *, planted):
    from _planted import write_planted_god

    return write_planted_god(
        root, n_train_categories=30, images_per_category=6, n_test_categories=16,
        n_test_repeats=3, n_voxels=160, snr=2.0, planted=planted, seed=3,
    ).root  # fmt: skip


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("low") / "god", planted=True)


@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("noise") / "god", planted=False)


def _config(
    root, out, *, generators=("lowlevel", "invert"), init=None, options=OPTIONS, cache=None
):
    return RunConfig(
        models=("pool48",),
        out=str(out),
        cache=cache,
        data=DataSection(path=str(root), rois=("ROI_VC",)),
        mapping=MappingSection(cv=3),
        retrieval=RetrievalSection(databases=("prototypes",)),
        generation=GenerationSection(generators=generators, options=options, init=init),
        evaluation=EvaluationSection(metrics=METRICS, bootstrap=50),
    )


def _summary(result):
    import pandas as pd

    df = pd.read_parquet(result.out_dir / "tables" / "summary.parquet")
    return {(r.generator, r.condition, r.metric): r for r in df.itertuples()}


@pytest.fixture(scope="module")
def compared(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("low-run") / "out"
    return _run(_config(planted, out))


def test_the_graph_has_the_low_level_stages(compared):
    names = [r.name for r in compared.records]
    assert names.count("codebook/lowlevel-pca") == 1
    assert "data/s1/ROI_V1" in names and "mapping/lowlevel-pca/ridge/s1/ROI_V1" in names
    assert "generation/lowlevel-pca/lowlevel/predicted/s1/ROI_VC" in names
    pictures = compared.out_dir / "images" / "s1-ROI_VC" / "pool48" / "ridge" / "lowlevel"
    for cond in ("predicted", "true", "random"):
        assert len(list((pictures / cond).glob("*.png"))) == 16


def test_lowlevel_pictures_identify_the_seen_image_and_beat_invert(compared):
    s = _summary(compared)
    ident = s[("lowlevel", "predicted", "pixcorr2")]
    assert ident.mean >= 0.8 and ident.p_floor < 0.05, ident
    assert s[("lowlevel", "random", "pixcorr2")].mean < 0.65  # the floor
    for metric in ("pixcorr", "ssim"):
        low, inv = s[("lowlevel", "predicted", metric)], s[("invert", "predicted", metric)]
        assert low.mean > inv.mean, (metric, low.mean, inv.mean)
    assert "★" in compared.comparison  # lowlevel wins its columns, above its floor


def test_invert_started_from_lowlevel_keeps_its_layout(compared, planted, tmp_path):
    cache = str(compared.out_dir / "cache")  # what does not depend on the init is reused
    result = _run(_config(planted, tmp_path / "out", init="lowlevel", cache=cache))
    assert all(r.reused for r in result.records if "invert" not in r.name)
    two = _summary(result)
    plain = _summary(compared)
    # The two-pathway inversion is identified by its pixels far better than from noise.
    assert (
        two[("invert", "predicted", "pixcorr2")].mean
        > plain[("invert", "predicted", "pixcorr2")].mean
    )
    assert (
        two[("invert", "predicted", "pixcorr")].mean
        > plain[("invert", "predicted", "pixcorr")].mean
    )
    # Each invert stage reads the lowlevel pictures of its own condition, made first.
    names = [r.name for r in result.records]
    assert names.index("generation/lowlevel-pca/lowlevel/predicted/s1/ROI_VC") < names.index(
        "generation/pool48/invert/predicted/ridge/s1/ROI_VC"
    )


def test_on_noise_the_lowlevel_pictures_stay_at_their_floor(noise, tmp_path):
    result = _run(_config(noise, tmp_path / "out", generators=("lowlevel",)))  # fmt: skip
    ident = _summary(result)[("lowlevel", "predicted", "pixcorr2")]
    assert abs(ident.mean - 0.5) < 0.15 and not ident.p_floor < 0.05, ident
    assert "★" not in result.comparison.split("Reference")[0]


def test_a_dataset_without_early_visual_rois_is_one_message(planted, tmp_path):
    options = {**OPTIONS, "lowlevel": {k: v for k, v in LOW.items() if k != "roi"}}
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"neither ROI_LVC .* nor ROI_V1 \+ ROI_V2 \+ ROI_V3"):
        _run(_config(planted, out, generators=("lowlevel",), options=options))  # fmt: skip
    assert not out.exists()
