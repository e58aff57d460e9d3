"""The low-level pathway: image codes, the ``lowlevel`` generator, a planted experiment."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from _offline_helpers import blob_images, planted_early_visual, tiny_encoder

from fmri2image.errors import ConfigError, DataFormatError, ModelUnavailableError
from fmri2image.generation import (
    GENERATORS,
    PIPELINE_INPUTS,
    EmbeddingStats,
    GenerationRequest,
    generator_options,
    get_generator,
)
from fmri2image.generation.lowlevel import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ImageCode,
    LowLevelOptions,
    PCACode,
    VAECode,
    load_code,
    make_code,
    square_pixels,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _requests(codes, **kw):
    return [GenerationRequest(stem=f"t{i}", embedding=c, **kw) for i, c in enumerate(codes)]


def pixel_identification(y_true, y_pred) -> float:
    """PixCorr 2-way identification: the protocol pixels (425 px, RGB) of each
    reconstruction correlate more with its own image than with another (chance 0.5)."""
    from fmri2image.evaluation import two_way_identification
    from fmri2image.evaluation.lowlevel import protocol_pixels

    T = np.stack([protocol_pixels(im) for im in y_true]).astype(np.float32)
    P = np.stack([protocol_pixels(im) for im in y_pred]).astype(np.float32)
    return float(two_way_identification(T, P).mean())


@pytest.fixture(scope="module")
def blobs():
    return blob_images(30, seed=3)


@pytest.fixture(scope="module")
def pca_codebook(tmp_path_factory, blobs):
    folder = tmp_path_factory.mktemp("codebook") / "pca"
    PCACode(16, 64).fit(blobs).save(folder)
    return folder


# ------------------------------------------------------------------ registry, options
def test_registry_entry_and_options():
    entry = GENERATORS.get("lowlevel")
    assert entry.offline and entry.conditioning == "embedding"
    assert entry.needs.inputs == ("codebook",) and "codebook" in PIPELINE_INPUTS
    assert "low-level pathway" in entry.description
    cls = generator_options("lowlevel")
    assert cls is LowLevelOptions
    for f in dataclasses.fields(cls):  # one numpydoc line per option, for --list-options
        assert f"    {f.name} : " in cls.__doc__, f.name
    o = LowLevelOptions()
    assert (o.roi, o.code, o.resolution, o.size, o.codebook) == ("ROI_LVC", "pca", 32, 256, None)


def test_options_are_validated():
    with pytest.raises(ConfigError) as err:
        get_generator("lowlevel", code="jpeg", resolution=2, n_components=0, size=4)
    for name in ("code must be one of pca, vae", "resolution", "n_components", "size"):
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="multiple of 8 for code=vae"):
        LowLevelOptions(code="vae", resolution=36)
    with pytest.raises(ConfigError, match="roi must name an ROI"):
        LowLevelOptions(roi="")
    with pytest.raises(ConfigError, match="--steps does not apply"):
        get_generator("lowlevel", steps=3)


def test_missing_codebook_and_bad_requests(pca_codebook):
    gen = get_generator("lowlevel")  # building needs no codebook (the run sets it)
    gen.check("effnet-lite0")  # any encoder: requests carry code vectors
    gen.check(None)
    with pytest.raises(ConfigError, match="none was given"):
        gen.generate(_requests([np.zeros(8)]))
    gen = get_generator("lowlevel", codebook=str(pca_codebook))
    with pytest.raises(ConfigError, match="the code has 5 values but the codebook"):
        gen.generate(_requests([np.zeros(5)]))
    with pytest.raises(ConfigError, match="needs a predicted image code"):
        gen.generate([GenerationRequest(stem="a")])
    assert gen.generate([]) == []


def test_import_is_light():
    code = (
        "import sys, fmri2image.generation.lowlevel; from fmri2image.generation import "
        "generator_options; generator_options('lowlevel'); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ pca code
def test_pca_round_trip_is_exact_at_full_components(blobs, pca_codebook):
    """29 components span 30 centred training images: decode(encode) gives them back."""
    code = load_code(pca_codebook)
    assert isinstance(code, PCACode) and code.dim == 29 and code.n_components == 64
    truth = (square_pixels(blobs, 16) * 255).round().astype(np.uint8)
    back = code.decode(code.encode(blobs))
    assert back.shape == (30, 16, 16, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - truth).max() <= 1
    C = code.components_.astype(np.float64)
    np.testing.assert_allclose(C @ C.T, np.eye(29), atol=1e-5)
    assert code.explained_variance_ratio_.sum() == pytest.approx(1.0, abs=1e-4)
    # Fewer components: the nearest picture in their span, still close.
    small = PCACode(16, 8).fit(blobs)
    r = np.corrcoef(small.decode(small.encode(blobs)).ravel(), truth.ravel())[0, 1]
    assert small.dim == 8 and r > 0.9


def test_pca_save_load_identical(tmp_path, blobs):
    code = make_code(LowLevelOptions(resolution=16, n_components=12)).fit(blobs[:20])
    folder = code.save(tmp_path / "cb")
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    for loaded in (load_code(folder), PCACode.load(folder), ImageCode.load(folder)):
        assert isinstance(loaded, PCACode)
        for name in ("mean_", "components_", "singular_values_", "explained_variance_ratio_"):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(code, name))
        np.testing.assert_array_equal(loaded.encode(blobs[20:]), code.encode(blobs[20:]))
    meta = json.loads((folder / CONFIG_FILE).read_text())
    assert meta["kind"] == "pca" and meta["n_components"] == 12 and meta["n_train"] == 20
    with pytest.raises(ConfigError, match="not fitted"):
        PCACode(16, 4).save(tmp_path / "unfitted")
    with pytest.raises(DataFormatError, match="holds a pca code, not a vae code"):
        VAECode.load(folder)


def test_damaged_codebooks_are_refused(tmp_path, pca_codebook):
    import shutil

    def copy(name):
        return shutil.copytree(pca_codebook, tmp_path / name)

    with pytest.raises(DataFormatError, match="is not a saved image code"):
        load_code(tmp_path / "nowhere")
    truncated = copy("truncated")
    data = (truncated / WEIGHTS_FILE).read_bytes()
    (truncated / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="does not match the checksum"):
        load_code(truncated)
    broken = copy("broken-json")
    (broken / CONFIG_FILE).write_text('{"format": ')
    with pytest.raises(DataFormatError, match="not valid JSON"):
        load_code(broken)
    other = copy("other-format")
    meta = json.loads((other / CONFIG_FILE).read_text())
    (other / CONFIG_FILE).write_text(json.dumps({**meta, "format": "something-else"}))
    with pytest.raises(DataFormatError, match="does not describe an image code"):
        load_code(other)
    newer = copy("newer")
    (newer / CONFIG_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(DataFormatError, match="newer than this fmri2image"):
        load_code(newer)
    shapes = copy("shapes")
    (shapes / CONFIG_FILE).write_text(json.dumps({**meta, "n_components": 7}))
    with pytest.raises(DataFormatError, match="does not hold a valid pca code"):
        load_code(shapes)


def test_generator_decodes_codes_to_pictures(blobs, pca_codebook):
    from fmri2image.evaluation import pixcorr

    code = load_code(pca_codebook)
    gen = get_generator("lowlevel", codebook=str(pca_codebook), size=64)
    res = gen.generate(_requests(code.encode(blobs[:3]), encoder="ignored", seed=4))
    assert [r.stem for r in res] == ["t0", "t1", "t2"]
    assert all(r.image.size == (64, 64) and r.image.mode == "RGB" for r in res)
    assert res[0].conditioning == "pca code (29 components of 16 px images) decoded"
    assert res[0].extra["code"] == "pca" and res[0].extra["dim"] == 29
    assert pixcorr(blobs[:3], [r.image for r in res]).min() > 0.95
    again = gen.generate(_requests(code.encode(blobs[:1]), seed=9))[0]  # no randomness
    assert np.array_equal(np.asarray(again.image), np.asarray(res[0].image))


# ------------------------------------------------------------------ planted experiment
def _lowlevel_pictures(tmp_path, train, X_train, X_test, name):
    """Ridge from the voxels to the training pictures' pca codes, then lowlevel."""
    from fmri2image.mapping import RidgeMapping

    code = make_code(LowLevelOptions()).fit(train)
    folder = code.save(tmp_path / name)
    model = RidgeMapping(cv=5).fit(X_train, code.encode(train))
    gen = get_generator("lowlevel", codebook=str(folder), size=64)
    return [r.image for r in gen.generate(_requests(model.predict(X_test)))]


def _invert_pictures(train, test, X_train, X_test):
    """Ridge from the voxels to a tiny encoder's embeddings, then invert."""
    import torch

    from fmri2image.mapping import RidgeMapping

    enc = tiny_encoder()
    Y = enc.embed(torch.stack([enc.preprocess(im) for im in train])).numpy()
    pred = RidgeMapping(cv=5).fit(X_train, Y).predict(X_test)
    gen = get_generator("invert", iterations=24, size=64, jitter=4)
    gen._encoders["tiny-conv"] = enc
    stats = EmbeddingStats.from_embeddings(Y)
    reqs = _requests(pred, encoder="tiny-conv", stats=stats)
    return [r.image for r in gen.generate(reqs)]


def test_planted_low_level_experiment(tmp_path):
    """Acceptance: early-visual voxels that carry a linear image of the pictures'
    layout and colour decode, through lowlevel, to pictures that identify their
    stimulus by pixels (PixCorr 2-way) and beat feature inversion on PixCorr and SSIM;
    pure-noise voxels give pictures at chance."""
    from fmri2image.evaluation import pixcorr, ssim

    train, test, X_train, X_test = planted_early_visual(200, 20)
    low = _lowlevel_pictures(tmp_path, train, X_train, X_test, "signal")
    ident = pixel_identification(test, low)
    assert ident >= 0.8, ident
    inv = _invert_pictures(train, test, X_train, X_test)
    low_pc, inv_pc = np.nanmean(pixcorr(test, low)), np.nanmean(pixcorr(test, inv))
    low_ssim, inv_ssim = ssim(test, low).mean(), ssim(test, inv).mean()
    assert low_pc > inv_pc + 0.2, (low_pc, inv_pc)
    assert low_ssim > inv_ssim, (low_ssim, inv_ssim)

    train, test, X_train, X_test = planted_early_visual(200, 20, signal=False)
    floor = pixel_identification(test, _lowlevel_pictures(tmp_path, train, X_train, X_test, "n"))
    assert abs(floor - 0.5) <= 0.15, floor


# ------------------------------------------------------------------ vae code
def _tiny_vae(folder, latent_channels=4):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3,
        latent_channels=latent_channels, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=2, scaling_factor=0.5,
    )  # fmt: skip
    vae.save_pretrained(folder, safe_serialization=True)
    return vae


def test_vae_code_round_trip(tmp_path, blobs):
    """Codes are the VAE's latent means x scaling factor; saved and loaded codebooks
    encode and decode identically; the generator decodes them; a different VAE is
    refused."""
    pytest.importorskip("diffusers")
    import torch

    vae = _tiny_vae(tmp_path / "vae")
    opts = LowLevelOptions(code="vae", vae=str(tmp_path / "vae"), resolution=16, batch_size=7)
    code = make_code(opts)
    assert isinstance(code, VAECode) and code.dim == 4 * 8 * 8  # two blocks: factor 2
    Z = code.fit(blobs[:20]).encode(blobs[20:])
    x = torch.from_numpy(square_pixels(blobs[20:], 16)).permute(0, 3, 1, 2) * 2 - 1
    with torch.no_grad():
        ref = vae.encode(x).latent_dist.mean * 0.5
    np.testing.assert_allclose(Z, ref.reshape(10, -1).numpy(), atol=1e-5)
    pics = code.decode(Z)
    assert pics.shape == (10, 16, 16, 3) and pics.dtype == np.uint8
    with torch.no_grad():
        ref_pics = ((vae.decode(ref / 0.5).sample + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.abs(pics.astype(int) - (ref_pics * 255).round()).max() <= 1

    folder = code.save(tmp_path / "cb")
    loaded = load_code(folder)
    assert isinstance(loaded, VAECode) and loaded.latent_shape == (4, 8, 8)
    np.testing.assert_array_equal(loaded.encode(blobs[20:]), Z)
    np.testing.assert_array_equal(loaded.decode(Z), pics)
    np.testing.assert_array_equal(loaded.mean_, code.mean_)
    gen = get_generator("lowlevel", code="vae", codebook=str(folder), size=32)
    res = gen.generate(_requests(Z[:2]))
    assert res[0].image.size == (32, 32) and res[0].conditioning.startswith("vae code (")
    assert "4x8x8 latent of 16 px images" in res[0].conditioning

    _tiny_vae(tmp_path / "vae", latent_channels=2)  # the folder now holds another VAE
    with pytest.raises(ConfigError, match="not the one this codebook was fitted with"):
        load_code(folder).decode(Z)


def test_vae_missing_weights_fail_with_what_to_do(tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code = VAECode("someone/no-such-vae", 64)
    with pytest.raises(ModelUnavailableError, match="not in the local Hugging Face cache"):
        code.encode(blob_images(1))
    with pytest.raises(ModelUnavailableError, match="is not a VAE folder"):
        VAECode(str(tmp_path), 64).encode(blob_images(1))
