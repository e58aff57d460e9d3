"""evaluate_images on real photos: per-image scores, references, skips, save / load, compare."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.evaluation import Evaluation, evaluate_images, pair_images, pixcorr, ssim
from fmri2image.evaluation.evaluate import read_scores_csv, summary_path

OFFLINE = ["pixcorr", "ssim", "lite0", "lite0_nway"]


@pytest.fixture(scope="module")
def evaluation(photo_pairs):
    return evaluate_images(photo_pairs, OFFLINE, n_bootstrap=500, progress=False)


def test_scores_equal_the_metric_functions(evaluation, photo_pairs):
    assert evaluation.stems == photo_pairs.stems and evaluation.n_images == 8
    np.testing.assert_allclose(
        evaluation.scores["pixcorr"], pixcorr(photo_pairs.true, photo_pairs.pred)
    )
    np.testing.assert_allclose(evaluation.scores["ssim"], ssim(photo_pairs.true, photo_pairs.pred))
    assert list(evaluation.scores) == OFFLINE


def test_references_beside_every_score(evaluation):
    s = evaluation.summary
    for name, m in s.items():
        assert m.ci_low <= m.mean <= m.ci_high, name
        assert m.n == 8
    assert s["lite0"].chance == 0.5 and s["lite0_nway"].chance == pytest.approx(0.02)
    # Degraded versions of the same photos: far above the unpaired reference and chance.
    assert s["pixcorr"].unpaired is not None and s["pixcorr"].mean > s["pixcorr"].unpaired + 0.3
    assert s["ssim"].mean > s["ssim"].unpaired
    assert s["lite0"].mean > 0.8 and s["lite0"].unpaired is None
    assert s["lite0_nway"].mean > 0.3
    assert evaluation.timing["lite0"]["images_per_second"] > 0


def test_identical_images_score_perfectly(photo_pairs):
    same = pair_images_from(photo_pairs.true, photo_pairs.stems)
    ev = evaluate_images(same, ["pixcorr", "ssim", "lite0"], n_bootstrap=100, progress=False)
    np.testing.assert_allclose(ev.scores["pixcorr"], 1.0)
    np.testing.assert_allclose(ev.scores["ssim"], 1.0)
    np.testing.assert_array_equal(ev.scores["lite0"], 1.0)


def test_a_run_computes_the_ground_truths_features_once(evaluation, photo_pairs, monkeypatch):
    """A run scores every set of pictures against the same stimuli: with a shared cache,
    the second set computes only its own features, and the scores do not change."""
    from fmri2image.evaluation import networks as nets

    seen = []
    real = nets.network_features

    def counting(net, images, **kw):
        seen.append(len(images))
        return real(net, images, **kw)

    monkeypatch.setattr(nets, "network_features", counting)
    cache: dict = {}
    first = evaluate_images(photo_pairs, OFFLINE, n_bootstrap=500, progress=False, networks=cache)
    assert len(seen) == 2  # lite0: the ground truth, then the pictures
    again = evaluate_images(photo_pairs, OFFLINE, n_bootstrap=500, progress=False, networks=cache)
    assert len(seen) == 3  # only the pictures
    for ev in (first, again):
        for name in OFFLINE:
            np.testing.assert_array_equal(ev.scores[name], evaluation.scores[name])
    other = pair_images_from(photo_pairs.pred, photo_pairs.stems)  # another ground truth
    evaluate_images(other, ["lite0"], n_bootstrap=10, progress=False, networks=cache)
    assert len(seen) == 5


def pair_images_from(images, stems):
    from fmri2image.evaluation.images import ImagePairs

    return ImagePairs(stems=tuple(stems), true=list(images), pred=list(images), excluded={},
                      blank=(), notes=())  # fmt: skip


def test_unavailable_network_is_skipped_not_zeroed(photo_pairs, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ev = evaluate_images(photo_pairs, ["ssim", "alex2", "alex5"], n_bootstrap=50, progress=False)
    assert list(ev.scores) == ["ssim"]
    assert set(ev.skipped) == {"alex2", "alex5"}
    assert "alexnet" in ev.skipped["alex2"] and "--metric-weights" in ev.skipped["alex2"]
    text = ev.format()
    assert "skipped alex2" in text and "nan" not in text.lower()


def test_two_way_needs_two_pairs(photo_pairs):
    one = pair_images_from(photo_pairs.true[:1], photo_pairs.stems[:1])
    ev = evaluate_images(one, ["pixcorr", "lite0"], progress=False)
    assert "lite0" in ev.skipped and "at least 2" in ev.skipped["lite0"]
    assert np.isnan(ev.summary["pixcorr"].ci_low)  # no interval from one image


def test_save_and_load_round_trip(evaluation, tmp_path):
    csv_path, json_path = evaluation.save(tmp_path / "out" / "scores.csv")
    assert json_path == summary_path(csv_path) == tmp_path / "out" / "scores.summary.json"
    with open(csv_path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image", *OFFLINE]
    assert [r[0] for r in rows[1:]] == list(evaluation.stems)
    summary = json.loads(json_path.read_text())
    assert summary["metrics"]["ssim"]["higher_is_better"] is True
    assert summary["protocol"]["low_level"]["size"] == 425
    assert summary["protocol"]["networks"]["lite0"]["layers"]
    back = Evaluation.load(csv_path)
    assert back.stems == evaluation.stems and back.summary == evaluation.summary
    for name in OFFLINE:
        np.testing.assert_allclose(back.scores[name], evaluation.scores[name], rtol=1e-15)


def test_compare_paired_permutation(evaluation, photo_pairs, tmp_path):
    worse_pairs = pair_images_from(photo_pairs.true, photo_pairs.stems)
    worse_pairs = type(worse_pairs)(
        stems=photo_pairs.stems, true=photo_pairs.true, pred=photo_pairs.pred[1:] + photo_pairs.pred[:1],
        excluded={}, blank=(), notes=(),
    )  # fmt: skip
    worse = evaluate_images(worse_pairs, ["pixcorr", "ssim"], n_bootstrap=50, progress=False)
    path, _ = worse.save(tmp_path / "worse.csv")
    cmp = evaluation.compare(path)
    assert set(cmp.comparison) == {"pixcorr", "ssim"}  # only the shared metrics
    t = cmp.comparison["pixcorr"]
    assert t.n == 8 and t.exact and t.mean_difference > 0.3
    assert t.p_value == pytest.approx(2 / 256)  # every image better: the two extreme patterns
    assert "better" in cmp.format()
    same = evaluation.compare(evaluation)
    assert same.comparison["ssim"].mean_difference == 0 and same.comparison["ssim"].p_value == 1
    with pytest.raises(DataFormatError, match="Nothing to compare"):
        evaluation.compare(worse_pairs_csv(tmp_path))


def worse_pairs_csv(tmp_path):
    p = tmp_path / "other.csv"
    p.write_text("image,fid\nx,1.0\n")
    return p


def test_read_scores_csv_refuses_other_tables(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("name,ssim\na,0.5\n")
    with pytest.raises(DataFormatError, match="first column must be 'image'"):
        read_scores_csv(p)
    p.write_text("image,ssim\na,0.5\na,0.4\n")
    with pytest.raises(DataFormatError, match="twice"):
        read_scores_csv(p)
    p.write_text("image,ssim\na,high\n")
    with pytest.raises(DataFormatError, match="not numeric"):
        read_scores_csv(p)
    p.write_text("image,ssim\na,\n")
    assert np.isnan(read_scores_csv(p)[1]["ssim"][0])


def test_unknown_weights_name(photo_pairs):
    with pytest.raises(ConfigError, match="--metric-weights"):
        evaluate_images(photo_pairs, ["ssim"], weights={"alexnett": "x"}, progress=False)


def test_folders_end_to_end(photo_folders):
    gt, recon = photo_folders
    ev = evaluate_images(pair_images(recon, gt), ["pixcorr"], n_bootstrap=50, progress=False)
    assert ev.n_images == 8 and ev.pairs["n_pairs"] == 8 and ev.pairs["n_excluded"] == 0


def test_the_ground_truths_protocol_pixels_are_resized_once(photo_pairs, monkeypatch):
    """The low-level metrics of a small evaluation share one resize of each side, the
    ground truth's once per run (the shared cache); the scores equal the functions'
    on the images, unpaired references included.  A plugin's pixels metric still
    gets the images."""
    from fmri2image.evaluation import Metric, lowlevel, register_metric
    from fmri2image.evaluation.base import METRICS

    calls = []
    real = lowlevel.protocol_pixels
    monkeypatch.setattr(lowlevel, "protocol_pixels", lambda im: calls.append(1) or real(im))
    received = []

    def plugin(y_true, y_pred, *, seed=0):
        received.append((type(y_true[0]).__name__, type(y_pred[0]).__name__))
        return np.zeros(len(y_true))

    register_metric(Metric("test_protocol_plugin", True, "pixels", "zeros", score=plugin))
    try:
        names = ["pixcorr", "ssim", "pixcorr2", "test_protocol_plugin"]
        cache: dict = {}
        first = evaluate_images(photo_pairs, names, n_bootstrap=10, progress=False, networks=cache)
        assert len(calls) == 16  # 8 ground truths + 8 pictures, for three metrics
        again = evaluate_images(photo_pairs, names, n_bootstrap=10, progress=False, networks=cache)
        assert len(calls) == 24  # the pictures only
    finally:
        from fmri2image.evaluation import base

        METRICS.unregister("test_protocol_plugin")
        base._ORDER.remove("test_protocol_plugin")
    assert set(received) == {("Image", "Image")}
    plain = evaluate_images(photo_pairs, names[:3], n_bootstrap=10, progress=False)
    for ev in (first, again):
        np.testing.assert_allclose(
            ev.scores["pixcorr"], pixcorr(photo_pairs.true, photo_pairs.pred)
        )
        np.testing.assert_allclose(ev.scores["ssim"], ssim(photo_pairs.true, photo_pairs.pred))
        for name in names[:3]:
            np.testing.assert_array_equal(ev.scores[name], plain.scores[name])
            assert ev.summary[name].unpaired == plain.summary[name].unpaired
