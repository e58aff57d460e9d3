"""The run configuration: TOML + --set, typed, unknown keys refused, round trip."""

from __future__ import annotations

import pytest

from fmri2image.errors import ConfigError
from fmri2image.pipeline.config import RunConfig, load_config

EXAMPLE = """
models = ["effnet-lite0", "effnet-lite2"]
seed = 3

[data]
god = "/data/GOD"
subjects = [1, 2]
rois = ["ROI_V1", "ROI_HVC"]

[mapping]
cv = "loo"
alphas = "1e-1:1e5:7"

[generation]
generators = ["invert", "retrieve"]
options = { invert = { iterations = 20 } }

[evaluation]
metrics = ["pixcorr", "ssim", "lite0"]
"""


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_file_and_overrides_are_typed(tmp_path):
    cfg = load_config(
        write(tmp_path, EXAMPLE), ["mapping.cv=3", "data.subjects=[4]", "device=cuda"]
    )
    assert cfg.models == ("effnet-lite0", "effnet-lite2") and cfg.seed == 3
    assert cfg.data.subjects == (4,) and cfg.data.rois == ("ROI_V1", "ROI_HVC")
    assert cfg.mapping.cv == 3 and cfg.mapping.alphas == "1e-1:1e5:7" and cfg.device == "cuda"
    assert cfg.generation.options == {"invert": {"iterations": 20}}
    assert cfg.generation.options_for("invert") == {"iterations": 20}
    assert cfg.generation.options_for("retrieve") == {}
    assert load_config(None, ["mapping.cv=loo"]).mapping.cv == "loo"  # bare word: a string
    assert load_config(None, ["models=clip"]).models == ("clip",)
    assert load_config() == RunConfig()


def test_the_mapping_section_builds_the_mapper(tmp_path):
    cfg = load_config(write(tmp_path, EXAMPLE))
    mapper = cfg.mapping.make_mapper("ridge")
    assert mapper.cv == "loo" and len(mapper.alphas) == 7 and len(cfg.mapping.alpha_grid()) == 7
    cfg.validate()


def test_keys_of_earlier_versions_still_read(tmp_path):
    """A config.toml written before the dataset seam: data.god and data.release."""
    old = load_config(write(tmp_path, '[data]\ngod = "/g"\nrelease = "spm"\n'))
    assert old.data.path == "/g" and old.data.options == {"release": "spm"}
    assert old.data.dataset == "god"
    assert load_config(None, ["data.god=/h", "data.release=fmriprep"]).data.options == {
        "release": "fmriprep"
    }
    with pytest.raises(ConfigError, match="release must be auto, spm or fmriprep"):
        load_config(None, ["data.release=new"]).validate()
    with pytest.raises(ConfigError, match="Unknown dataset 'nds'"):
        load_config(None, ["data.dataset=nds"]).validate()
    with pytest.raises(ConfigError, match=r"data.options nosuch .*dataset 'god'.*release"):
        load_config(None, ["data.options={ nosuch = 1 }"]).validate()


def test_generator_options_are_checked_per_generator(tmp_path):
    """A shared key must apply to every generator; a table names one generator: a
    misspelt one is refused, one the run does not use (--generators over a config
    file) is kept unused."""
    shared = load_config(write(tmp_path, EXAMPLE), ["generation.options={ steps = 20 }"])
    with pytest.raises(ConfigError, match="--steps does not apply to generator 'invert'"):
        shared.validate()
    typo = load_config(write(tmp_path, EXAMPLE), ["generation.options={ sd16 = { steps = 2 } }"])
    with pytest.raises(ConfigError, match=r"sd16.*not a registered generator"):
        typo.validate()
    unused = load_config(write(tmp_path, EXAMPLE), ["generation.options={ sd15 = { steps = 2 } }"])
    unused.validate()
    assert unused.generation.options_for("invert") == {}


@pytest.mark.parametrize(
    ("text", "overrides", "needles"),
    [
        ("modles = ['clip']", [], ["unknown key 'modles'", "did you mean models"]),
        ("[mapping]\ncvv = 3", [], ["[mapping]", "unknown key 'cvv'", "cv"]),
        ("[maping]\ncv = 3", [], ["unknown key 'maping'", "mapping"]),
        ("seed = 'zero'", [], ["seed: expected an integer"]),
        ("[data]\nsubjects = 1", [], ["subjects: expected a list"]),
        ("[mapping]\nalpha_per_target = 1", [], ["expected true or false"]),
        ("models = [", [], ["is not valid TOML"]),
        ("", ["mapping.cvv=3"], ["--set mapping.cvv=3", "did you mean cv"]),
        ("", ["nope"], ["--set 'nope'", "KEY=VALUE"]),
        ("", ["mapping=3"], ["is a section"]),
        ("", ["mapping.cv.x.y=1"], ["keys are 'name', 'section.name' or 'section.table.key'"]),
        ("", ["a=1"], ["unknown key 'a'. Known keys: models"]),
    ],
)
def test_mistakes_are_config_errors(tmp_path, text, overrides, needles):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), overrides)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["data.normalization=zscore"], "normalization"),
        (["generation.generators=['sd16']"], "sd16"),
        (["evaluation.metrics=['ssmi']"], "ssmi"),
        (["models=[]"], "models is empty"),
        (["mapping.cv=1"], "cv"),
    ],
)
def test_values_are_checked_by_the_stages_validators(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, overrides).validate()


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config(tmp_path / "nope.toml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, EXAMPLE), ["mapping.n_voxels=500"])
    path = cfg.save(tmp_path / "out")
    assert path.name == "config.toml"
    assert load_config(path) == cfg
    assert load_config(RunConfig().save(tmp_path / "defaults")) == RunConfig()


def test_demo_settings_reach_the_sections(tmp_path):
    """`demo --alphas/--split/--normalization/--batch-size` are used, not dropped."""
    from fmri2image.pipeline.demo import demo_config

    cfg = demo_config(tmp_path, alphas=(0.1, 10.0), split="imagery", normalization="train",
                      batch_size=8, cv=3)  # fmt: skip
    assert cfg.mapping.alpha_grid() == (0.1, 10.0) and cfg.mapping.cv == 3
    assert cfg.data.split == "imagery" and cfg.data.normalization == "train"
    assert cfg.batch_size == 8
    cfg.validate()
    cfg.save(tmp_path)
    assert load_config(tmp_path / "config.toml") == cfg  # a tuple of alphas round-trips
    with pytest.raises(TypeError, match="nosuch"):
        demo_config(tmp_path, nosuch=1)


def test_names_of_the_old_pipeline_say_what_replaced_them():
    with pytest.raises(ImportError, match=r"replaced by the one engine: use RunConfig"):
        from fmri2image.pipeline import DecodingConfig  # noqa: F401
    with pytest.raises(ImportError, match="run_experiment"):
        from fmri2image.pipeline import run_generate  # noqa: F401
