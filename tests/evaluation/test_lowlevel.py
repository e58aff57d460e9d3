"""PixCorr and SSIM equal the field's protocol, written out here step by step (FIELD.md §3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter
from skimage import data as skdata
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity
from sklearn.datasets import load_sample_image

from fmri2image.errors import DataFormatError
from fmri2image.evaluation.lowlevel import (
    PROTOCOL_SIZE,
    pixcorr,
    pixcorr_identification,
    protocol_info,
    protocol_pixels,
    ssim,
)

TOL = 1e-6


# ---------------------------------------------------------------- the protocol, by hand


def reference_pixels(image: Image.Image) -> np.ndarray:
    """MindEye: PIL bilinear resize to 425×425, then to [0, 1]."""
    resized = image.convert("RGB").resize((425, 425), Image.BILINEAR)
    return np.asarray(resized).astype(np.float64) / 255.0


def reference_pixcorr(true: Image.Image, pred: Image.Image) -> float:
    a, b = reference_pixels(true), reference_pixels(pred)
    return float(np.corrcoef(a.flatten(), b.flatten())[0, 1])


def reference_ssim(true: Image.Image, pred: Image.Image) -> float:
    gray_true = rgb2gray(reference_pixels(true))
    gray_pred = rgb2gray(reference_pixels(pred))
    return float(
        structural_similarity(
            gray_pred,
            gray_true,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
    )


# ---------------------------------------------------------------- test images


def random_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    """Real photographs of different sizes and aspect ratios."""
    arrays = [
        skdata.astronaut(),  # 512×512
        skdata.chelsea(),  # 451×300
        skdata.coffee(),  # 600×400
        skdata.rocket(),  # 640×427
        load_sample_image("china.jpg"),  # 640×427
        load_sample_image("flower.jpg"),  # 640×427
    ]
    return [Image.fromarray(a) for a in arrays]


def degraded(photos: list[Image.Image]) -> list[Image.Image]:
    """Reconstruction-like versions: blurred, noisy, shifted, resized, another photo."""
    rng = np.random.default_rng(0)
    out = []
    for i, im in enumerate(photos):
        kind = i % 4
        if kind == 0:
            out.append(im.filter(ImageFilter.GaussianBlur(6)))
        elif kind == 1:
            arr = np.asarray(im).astype(np.int16) + rng.integers(-60, 61, (*im.size[::-1], 3))
            out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
        elif kind == 2:
            out.append(im.resize((256, 256), Image.BICUBIC))  # other size and aspect
        else:
            out.append(photos[(i + 1) % len(photos)])  # a wrong image
    return out


# ---------------------------------------------------------------- agreement with the protocol


def test_protocol_pixels_are_the_pil_bilinear_resize():
    im = random_image(np.random.default_rng(1), 300, 200)
    px = protocol_pixels(im)
    assert px.shape == (PROTOCOL_SIZE, PROTOCOL_SIZE, 3)
    assert px.dtype == np.float64
    assert 0.0 <= px.min() and px.max() <= 1.0
    np.testing.assert_array_equal(px, reference_pixels(im))
    assert protocol_pixels(im, size=64).shape == (64, 64, 3)


def test_protocol_resize_is_antialiased():
    """Shrinking noise 8× averages ~64 pixels per output pixel (a non-antialiased bilinear
    resize would average 4 and keep about half of the noise's spread)."""
    noise = np.random.default_rng(2).integers(0, 256, (8 * 425, 8 * 425), dtype=np.uint8)
    px = protocol_pixels(Image.fromarray(noise, mode="L"))
    assert px[..., 0].std() < 0.2 * (noise / 255.0).std()


def test_protocol_pixels_convert_grayscale_and_rgba():
    gray = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), mode="L")
    px = protocol_pixels(gray)
    np.testing.assert_array_equal(px[..., 0], px[..., 2])
    rgba = gray.convert("RGBA")
    np.testing.assert_array_equal(protocol_pixels(rgba), px)


@pytest.mark.parametrize("seed", [3, 4])
def test_random_images_match_the_protocol(seed):
    rng = np.random.default_rng(seed)
    sizes = [(425, 425), (64, 80), (500, 375), (1000, 30)]
    true = [random_image(rng, w, h) for w, h in sizes]
    # correlated reconstructions, so r and SSIM are not all ~0
    pred = [
        Image.blend(t, random_image(rng, *t.size), alpha=a)
        for t, a in zip(true, [0.2, 0.5, 0.8, 0.3])
    ]
    np.testing.assert_allclose(
        pixcorr(true, pred), [reference_pixcorr(t, p) for t, p in zip(true, pred)], atol=TOL
    )
    np.testing.assert_allclose(
        ssim(true, pred), [reference_ssim(t, p) for t, p in zip(true, pred)], atol=TOL
    )


def test_real_photos_match_the_protocol(photos):
    pred = degraded(photos)
    r = pixcorr(photos, pred)
    s = ssim(photos, pred)
    assert r.shape == s.shape == (len(photos),)
    np.testing.assert_allclose(r, [reference_pixcorr(t, p) for t, p in zip(photos, pred)], atol=TOL)
    np.testing.assert_allclose(s, [reference_ssim(t, p) for t, p in zip(photos, pred)], atol=TOL)
    # a spread of real values, not a degenerate case
    assert r.max() - r.min() > 0.3
    assert s.max() - s.min() > 0.1


def test_identical_images_score_one(photos):
    np.testing.assert_allclose(pixcorr(photos, photos), 1.0, atol=TOL)
    np.testing.assert_allclose(ssim(photos, photos), 1.0, atol=TOL)


def test_pixcorr_identification_is_the_two_way_protocol_on_pixels(photos):
    """Brute force: reconstruction j is identified against ground truth i when its
    PixCorr with its own ground truth beats the one with i."""
    pred = degraded(photos)
    got = pixcorr_identification(photos, pred)
    true_px = [reference_pixels(im).ravel() for im in photos]
    pred_px = [reference_pixels(im).ravel() for im in pred]
    n = len(photos)
    r = np.array([[np.corrcoef(true_px[i], pred_px[j])[0, 1] for j in range(n)] for i in range(n)])
    want = [np.mean([r[i, j] < r[j, j] for i in range(n) if i != j]) for j in range(n)]
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(pixcorr_identification(photos, photos), 1.0)
    shuffled = pixcorr_identification(photos, pred[1:] + pred[:1])
    assert shuffled.mean() < got.mean()


def test_both_metrics_are_symmetric(photos):
    pred = degraded(photos)
    np.testing.assert_allclose(pixcorr(photos, pred), pixcorr(pred, photos), atol=TOL)
    np.testing.assert_allclose(ssim(photos, pred), ssim(pred, photos), atol=TOL)


def test_ssim_is_true_2d_not_columnwise(photos):
    """scikit-image <= 0.19's multichannel=True on a 2-D array gave the mean of 1-D SSIMs
    down the columns; the protocol is the 2-D SSIM, which differs."""
    true, pred = photos[0], degraded(photos)[0]
    gt, gp = rgb2gray(reference_pixels(true)), rgb2gray(reference_pixels(pred))
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    columnwise = np.mean(
        [structural_similarity(gp[:, j], gt[:, j], data_range=1.0, **kw) for j in range(425)]
    )
    assert abs(ssim([true], [pred])[0] - columnwise) > 0.01


def test_array_input_equals_pil_input(photos):
    pred = degraded(photos)
    true_arr = np.stack([protocol_pixels(im) for im in photos])
    pred_arr = np.stack([protocol_pixels(im) for im in pred])
    np.testing.assert_allclose(pixcorr(true_arr, pred_arr), pixcorr(photos, pred), atol=1e-12)
    np.testing.assert_allclose(ssim(true_arr, pred_arr), ssim(photos, pred), atol=1e-12)
    # mixed: array ground truths, PIL reconstructions; float32 arrays are accepted
    np.testing.assert_allclose(
        pixcorr(true_arr.astype(np.float32), pred), pixcorr(photos, pred), atol=TOL
    )


def test_more_images_than_one_batch():
    rng = np.random.default_rng(5)
    true = [random_image(rng, 40, 30) for _ in range(20)]
    pred = [random_image(rng, 30, 40) for _ in range(20)]
    r = pixcorr(true, pred)
    assert r.shape == (20,)
    np.testing.assert_allclose(r, [reference_pixcorr(t, p) for t, p in zip(true, pred)], atol=TOL)


def test_empty_inputs_give_empty_scores():
    assert pixcorr([], []).shape == (0,)
    assert ssim([], []).shape == (0,)


# ---------------------------------------------------------------- constant images


def test_constant_image_gives_nan_pixcorr_not_zero(photos):
    black = Image.new("RGB", (300, 200), (0, 0, 0))
    gray = Image.new("RGB", (64, 64), (77, 77, 77))
    r = pixcorr([photos[0], photos[1], photos[2]], [black, photos[1], gray])
    assert np.isnan(r[0]) and np.isnan(r[2])
    assert r[1] == pytest.approx(1.0)
    # the constant may sit on either side
    assert np.isnan(pixcorr([black], [photos[0]])[0])
    s = ssim([photos[0]], [black])
    assert np.isfinite(s).all()
    assert s[0] == pytest.approx(reference_ssim(photos[0], black), abs=TOL)


# ---------------------------------------------------------------- bad input


def test_length_mismatch_is_an_error(photos):
    with pytest.raises(DataFormatError, match="6 images but y_pred has 5"):
        pixcorr(photos, photos[:5])
    with pytest.raises(DataFormatError, match="pair"):
        ssim(photos[:2], photos[:3])


def _one_bad_value(value: float) -> np.ndarray:
    array = np.full((2, 425, 425, 3), 0.5)
    array[1, 200, 17, 2] = value
    return array


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((2, 424, 424, 3)), "shape"),
        (np.zeros((2, 3, 425, 425)), "shape"),
        (np.zeros((425, 425, 3)), "shape"),
        (np.full((2, 425, 425, 3), np.nan), "NaN"),
        (_one_bad_value(np.nan), "NaN"),
        (_one_bad_value(np.inf), "infinite"),
        (_one_bad_value(-np.inf), "infinite"),
        (np.full((2, 425, 425, 3), 2.0), r"outside \[0, 1\]"),
        (np.full((2, 425, 425, 3), -0.5), r"\(x \+ 1\) / 2"),
        (np.zeros((2, 425, 425, 3), dtype=np.uint8), "dtype uint8"),
    ],
)
def test_bad_arrays_are_errors(array, match):
    good = np.full((2, 425, 425, 3), 0.5)
    with pytest.raises(DataFormatError, match=match):
        pixcorr(array, good)
    with pytest.raises(DataFormatError, match=match):
        ssim(good, array)


def test_non_images_are_errors(photos):
    with pytest.raises(DataFormatError, match=r"y_pred\[1\] is a ndarray"):
        pixcorr(photos[:2], [photos[0], np.zeros((10, 10, 3))])
    with pytest.raises(DataFormatError, match="sequence of PIL images"):
        pixcorr("a.png", "b.png")
    with pytest.raises(DataFormatError, match="PIL image"):
        protocol_pixels(np.zeros((10, 10, 3)))


# ---------------------------------------------------------------- provenance


def test_protocol_info_records_protocol_and_versions():
    import PIL
    import skimage

    info = protocol_info()
    json.dumps(info)
    assert info["size"] == 425
    assert "BILINEAR" in info["resize"]
    assert info["ssim"]["kwargs"] == {
        "gaussian_weights": True,
        "sigma": 1.5,
        "use_sample_covariance": False,
        "data_range": 1.0,
    }
    assert "2-D" in info["ssim"]["dimensions"]
    assert info["versions"]["scikit-image"] == skimage.__version__
    assert info["versions"]["Pillow"] == PIL.__version__
