"""sd15 / sd-turbo / diffusers:<folder> on a tiny Stable Diffusion saved like a real one.

The pipeline folder is loaded by the generators through the same ``from_pretrained``
path a user's hub id takes (a folder, and a fake hub cache under the real sd15 id).
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from fmri2image.errors import ConfigError, DependencyError, ModelUnavailableError
from fmri2image.generation import (
    GenerationRequest,
    generator_options,
    get_generator,
    image_seed,
    list_generators,
)

pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("torch_one_thread")

FAST = {"size": 64, "steps": 2}


def req(stem: str = "n02123045_1", name: str | None = "tabby cat", **kw) -> GenerationRequest:
    return GenerationRequest(stem=stem, seed=kw.pop("seed", 0), wnid=stem.split("_")[0],
                             name=name, **kw)  # fmt: skip


def px(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def assert_same_picture(a: Image.Image, b: Image.Image) -> None:
    """Same noise and conditioning: equal up to the float rounding of batched kernels."""
    d = np.abs(px(a) - px(b))
    assert d.max() <= 2 and (d == 0).mean() > 0.98, (d.max(), (d == 0).mean())


def assert_different(a: Image.Image, b: Image.Image) -> None:
    assert np.abs(px(a) - px(b)).mean() > 2


@pytest.fixture(scope="module")
def sd(tiny_sd_dir):
    return get_generator("sd15", model=str(tiny_sd_dir), **FAST)


@pytest.fixture(scope="module")
def alone(sd):
    """The reference picture of n02123045_1, made alone."""
    return sd.generate([req()])[0]


class FlagFirst:
    """Stand-in safety-checker forward: flags (and blanks) images by a per-call script."""

    def __init__(self, script):
        self.script = [list(s) for s in script]
        self.calls = 0

    def __call__(self, clip_input, images):
        self.calls += 1
        flags = self.script.pop(0) if self.script else [False] * len(images)
        for i, flag in enumerate(flags):
            if flag:
                images[i] = images[i] * 0  # diffusers returns flagged images black
        return images, flags


# ------------------------------------------------------------------------ seeds
def test_one_seed_per_image_alone_or_batched(sd, alone):
    assert alone.conditioning == "a photo of a tabby cat"
    assert alone.seed == image_seed(0, "n02123045_1") and alone.attempts == 1
    assert not alone.flagged and alone.image.size == (64, 64) and alone.image.mode == "RGB"
    extra = alone.extra
    assert extra["scheduler"] == "DPMSolverMultistepScheduler" and extra["safety_checker"] == "on"
    assert (extra["mode"], extra["steps"], extra["size"]) == ("text2img", 2, [64, 64])
    assert px(sd.generate([req()])[0].image).tolist() == px(alone.image).tolist()  # exact
    dog, cat = sd.generate([req("n02084071_7", name="dog"), req()])
    assert cat.seed == alone.seed
    assert_same_picture(cat.image, alone.image)
    assert_different(dog.image, alone.image)
    other_stem = sd.generate([req("n02123045_2")])[0]  # same prompt, another stimulus
    assert_different(other_stem.image, alone.image)
    other_run = sd.generate([req(seed=1)])[0]
    assert other_run.seed == image_seed(1, "n02123045_1")
    assert_different(other_run.image, alone.image)


def test_more_pictures_per_request_keep_the_first(tiny_sd_dir, alone):
    gen = get_generator("sd15", model=str(tiny_sd_dir), images_per_request=2, **FAST)
    [res] = gen.generate([req()])
    assert len(res.images) == 2 and res.seed == alone.seed
    assert res.extra["seeds"] == [image_seed(0, "n02123045_1"), image_seed(0, "n02123045_1#1")]
    assert_same_picture(res.images[0], alone.image)
    assert_different(res.images[1], alone.image)


# ---------------------------------------------------------------------- loading
def test_prefix_folder_and_hub_id_take_the_same_path(tiny_sd_dir, diffusion_hub_cache, alone):
    from _tiny_models import FAKE_COMMIT

    by_prefix = get_generator(f"diffusers:{tiny_sd_dir}", **FAST)
    assert by_prefix.name == f"diffusers:{tiny_sd_dir}"
    assert by_prefix.describe()["options"]["model"] == str(tiny_sd_dir)
    assert by_prefix.describe()["revision"] is None  # a folder has no hub commit
    t0 = time.perf_counter()
    by_id = get_generator("sd15", cache_dir=str(diffusion_hub_cache), **FAST)
    assert time.perf_counter() - t0 < 5  # locating reads model_index.json, no weights
    assert by_id._pipe is None
    assert by_id.describe()["revision"] == FAKE_COMMIT
    assert by_id.options.model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    for gen in (by_prefix, by_id):
        [res] = gen.generate([req()])
        assert px(res.image).tolist() == px(alone.image).tolist()
    assert res.extra["revision"] == FAKE_COMMIT
    with pytest.raises(ConfigError, match="already names the model"):
        get_generator(f"diffusers:{tiny_sd_dir}", model="someone/else")


def test_missing_models_fail_fast_with_what_to_do(tmp_path, tiny_unclip_dir):
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        get_generator("sd15", cache_dir=str(tmp_path / "empty"))
    assert time.perf_counter() - t0 < 5
    msg = str(info.value)
    assert "downloads are disabled (HF_HUB_OFFLINE=1)" in msg  # tests/conftest.py sets it
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5" in msg and "HF_HOME" in msg
    assert str(tmp_path / "empty") in msg and "--option model=/path/to/folder" in msg
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        get_generator("sd15", model=str(tmp_path / "nowhere"))
    (tmp_path / "not-a-pipeline").mkdir()
    with pytest.raises(ModelUnavailableError, match=r"no model_index\.json"):
        get_generator("sd15", model=str(tmp_path / "not-a-pipeline"))
    with pytest.raises(ConfigError, match="--generator unclip"):
        get_generator("sd15", model=str(tiny_unclip_dir))


def test_pickled_weights_are_refused(tmp_path, tiny_sd_dir):
    import shutil

    folder = tmp_path / "bin-unet"
    shutil.copytree(tiny_sd_dir, folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").rename(
        folder / "unet" / "diffusion_pytorch_model.bin"
    )
    gen = get_generator("sd15", model=str(folder), **FAST)
    with pytest.raises(ModelUnavailableError, match="safetensors"):
        gen.generate([req()])


# ----------------------------------------------------------------------- safety
def test_flagged_images_are_regenerated_with_derived_seeds(tiny_sd_dir, alone):
    import torch

    gen = get_generator("sd15", model=str(tiny_sd_dir), **FAST)
    stub = FlagFirst([[True], [True]])  # the first two attempts are flagged
    gen.pipeline.safety_checker.forward = stub
    [res] = gen.generate([req()])
    assert stub.calls == 3 and res.attempts == 3 and not res.flagged
    assert res.seed == image_seed(0, "n02123045_1", attempt=2)
    ref = gen.pipeline(
        prompt=["a photo of a tabby cat"], num_inference_steps=2, guidance_scale=7.5,
        height=64, width=64, generator=[torch.Generator("cpu").manual_seed(res.seed)],
    ).images[0]  # fmt: skip
    assert px(res.image).tolist() == px(ref).tolist()
    assert_different(res.image, alone.image)

    # Flagged on every attempt: returned black and marked flagged, after max_retries more.
    gen.pipeline.safety_checker.forward = stub = FlagFirst([[True]] * 10)
    [res] = gen.generate([req()])
    assert res.flagged and res.attempts == 4 and stub.calls == 4
    assert res.seed == image_seed(0, "n02123045_1", attempt=3)
    assert px(res.image).max() == 0


def test_only_flagged_images_of_a_batch_are_regenerated(tiny_sd_dir, alone):
    gen = get_generator("sd15", model=str(tiny_sd_dir), max_retries=1, **FAST)
    gen.pipeline.safety_checker.forward = stub = FlagFirst([[True, False], [True]])
    first, second = gen.generate([req("n02084071_7", name="dog"), req()])
    assert stub.calls == 2
    assert (first.flagged, first.attempts) == (True, 2)
    assert first.seed == image_seed(0, "n02084071_7", attempt=1)
    assert (second.flagged, second.attempts, second.seed) == (False, 1, alone.seed)
    assert_same_picture(second.image, alone.image)


def test_safety_checker_off_is_recorded(tiny_sd_dir):
    gen = get_generator("sd15", model=str(tiny_sd_dir), safety_checker=False, **FAST)
    [res] = gen.generate([req()])
    assert gen.pipeline.safety_checker is None
    assert res.extra["safety_checker"] == "off" and not res.flagged
    assert gen.describe()["options"]["safety_checker"] is False


# ---------------------------------------------------------------------- img2img
def test_img2img_shares_the_components_and_the_seeds(tiny_sd_dir, sd, alone):
    red = Image.new("RGB", (100, 80), (220, 30, 30))
    blue = Image.new("RGB", (90, 90), (20, 40, 230))
    [from_red] = sd.generate([req(init_image=red)])
    i2i = sd.img2img_pipeline()
    assert type(i2i).__name__ == "StableDiffusionImg2ImgPipeline"
    assert i2i.unet is sd.pipeline.unet and i2i.vae is sd.pipeline.vae  # no second load
    assert i2i.scheduler is sd.pipeline.scheduler
    extra = from_red.extra
    assert (extra["mode"], extra["strength"], extra["size"]) == ("img2img", 0.75, [64, 64])
    assert from_red.seed == alone.seed and from_red.conditioning == alone.conditioning
    assert_different(from_red.image, alone.image)
    # A mixed batch: each request goes to its own pipeline, pictures as made alone.
    plain, from_blue = sd.generate([req(), req(init_image=blue)])
    assert_same_picture(plain.image, alone.image)
    assert_same_picture(sd.generate([req(init_image=blue)])[0].image, from_blue.image)
    # The initial image is used: same noise and prompt, only the initial image differs
    # (the tiny random VAE passes little of it on, but far more than rounding).
    black, white = sd.generate([req(init_image=Image.new("RGB", (64, 64))),
                                req(init_image=Image.new("RGB", (64, 64), (255,) * 3))])  # fmt: skip
    assert np.abs(px(black.image) - px(white.image)).max() > 4


def test_img2img_always_denoises_at_least_once(tiny_sd_dir):
    from fmri2image.generation.diffusion import img2img_steps

    assert [img2img_steps(1, 0.75), img2img_steps(1, 0.5), img2img_steps(1, 0.3)] == [2, 2, 4]
    assert img2img_steps(25, 0.75) == 25 and img2img_steps(1, 1.0) == 1
    turbo = get_generator("sd-turbo", model=str(tiny_sd_dir), size=64, strength=0.5)
    init = Image.new("RGB", (64, 64), (120, 200, 40))
    [res] = turbo.generate([req(init_image=init)])
    assert res.extra["steps"] == 2 and res.extra["guidance"] == 0.0
    assert res.extra["scheduler"] == "DDIMScheduler"  # sd-turbo keeps the model's own


# ---------------------------------------------------------------------- prompts
def test_prompt_template_and_missing_label(tiny_sd_dir, sd):
    from fmri2image.generation.diffusion import prompt_for

    r = req("n02123045_1", name="tabby cat")
    assert prompt_for("{name}, {wnid}", r, "sd15") == "tabby cat, n02123045"
    with pytest.raises(ConfigError, match=r"no name.*--database.*--option prompt"):
        sd.generate([GenerationRequest(stem="n02123045_1")])
    assert prompt_for("a photo", GenerationRequest(stem="x"), "sd15") == "a photo"
    with pytest.raises(ConfigError, match=r"--option prompt=.*\{label\}"):
        get_generator("sd15", model=str(tiny_sd_dir), prompt="a photo of a {label}")
    with pytest.raises(ConfigError, match="--option negative_prompt="):
        get_generator("sd15", model=str(tiny_sd_dir), negative_prompt="blurry {")


# ---------------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"steps": 0}, "--option steps="),
        ({"guidance": -1.0}, "--option guidance="),
        ({"scheduler": "euler"}, "--option scheduler="),
        ({"size": 100}, "--option size="),
        ({"strength": 0.0}, "--option strength="),
        ({"strength": 1.5}, "--option strength="),
        ({"max_retries": -1}, "--option max_retries="),
        ({"images_per_request": 0}, "--option images_per_request="),
        ({"offload": True}, "--device cuda"),
        ({"steps": 2, "seed": 3}, "--seed does not apply"),
    ],
)
def test_options_are_checked_before_anything_loads(options, flag):
    # No model is located for these: the options fail first (sd15's hub id is not cached).
    with pytest.raises(ConfigError, match=flag.replace("(", r"\(")):
        get_generator("sd15", **options)


def test_precision_and_offload_requirements(tiny_sd_dir):
    with pytest.raises(ConfigError, match="--dtype float32"):
        get_generator("sd15", model=str(tiny_sd_dir), dtype="float16")
    with pytest.raises(ConfigError, match="--dtype 'double'"):
        get_generator("sd15", model=str(tiny_sd_dir), dtype="double")
    assert get_generator("sd15", model=str(tiny_sd_dir), dtype="auto").dtype == "float32"
    try:
        import accelerate  # noqa: F401
    except ImportError:
        with pytest.raises(DependencyError, match=r"accelerate.*fmri2image\[diffusion\]"):
            get_generator("sd15", model=str(tiny_sd_dir), device="cuda", offload=True)
    else:  # pragma: no cover - accelerate and a GPU are not on the test machines
        pytest.skip("CPU offload needs a CUDA device to test")


def test_registry_entries_and_options_for_the_cli():
    from fmri2image.cli.generate_cmd import _field_docs

    names = list_generators()
    assert {"sd15", "sd-turbo", "unclip", "ip-adapter", "diffusers:<...>"} <= set(names)
    sd15, turbo = generator_options("sd15")(), generator_options("sd-turbo")()
    assert sd15.model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert (sd15.steps, sd15.guidance, sd15.scheduler, sd15.size) == (25, 7.5, "dpm++", 512)
    assert (sd15.prompt, sd15.max_retries, sd15.safety_checker) == ("a photo of a {name}", 3, True)
    assert turbo.model == "stabilityai/sd-turbo"
    assert (turbo.steps, turbo.guidance, turbo.scheduler, turbo.size) == (1, 0.0, "model", 512)
    assert generator_options("diffusers:some/model")().model is None
    for name in ("sd15", "sd-turbo", "diffusers:x", "unclip", "ip-adapter"):
        cls = generator_options(name)
        docs = _field_docs(cls)
        undocumented = [f for f in cls.__dataclass_fields__ if not docs.get(f)]
        assert not undocumented, (name, undocumented)


def test_reading_options_imports_neither_torch_nor_diffusers():
    code = (
        "import sys\n"
        "from fmri2image.generation import generator_options\n"
        "for n in ('sd15', 'sd-turbo', 'unclip', 'ip-adapter', 'diffusers:x'):\n"
        "    generator_options(n)()\n"
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
