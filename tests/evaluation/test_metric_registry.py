"""The metric registry: one declaration per metric, what it needs, its chance level."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fmri2image.errors import ConfigError
from fmri2image.evaluation import METRICS, NETWORKS, Metric, get_metric, image_metrics, list_metrics
from fmri2image.evaluation.evaluate import resolve_metrics

FIELD_TABLE = [
    "pixcorr", "ssim", "pixcorr2", "alex2", "alex5", "incep", "clip", "eff", "swav", "nway",
]  # fmt: skip
OFFLINE = ["lite0", "lite0_nway", "lite2", "lite2_nway"]


def test_image_metrics_in_table_order():
    assert [m.name for m in image_metrics()] == FIELD_TABLE + OFFLINE


def test_every_metric_states_its_facts():
    for m in list_metrics():
        assert isinstance(m.higher_is_better, bool) and m.description
        assert m.kind in ("pixels", "features", "classifier", "embedding", "labels")
        if m.kind in ("features", "classifier"):
            assert m.network in NETWORKS, m.name
            assert m.layer in NETWORKS.get(m.network).layers, m.name
            assert m.score is not None
    assert not get_metric("eff").higher_is_better and not get_metric("swav").higher_is_better
    assert get_metric("alex2").chance == 0.5 and get_metric("nway").chance == pytest.approx(0.02)
    assert get_metric("nway_top1").chance_for(40) == pytest.approx(1 / 40)
    assert get_metric("pixcorr").chance is None  # reported with an unpaired reference
    assert get_metric("nway").gpu_recommended
    # embedding and label metrics of decode live in the same registry
    assert {"pairwise_identification", "r2_uniform", "hit1", "wup"} <= set(METRICS.names())


def test_reading_the_registry_imports_no_heavy_library():
    code = (
        "import sys; from fmri2image.evaluation import list_metrics, network_spec; "
        "[network_spec(m.network) for m in list_metrics() if m.network]; "
        "heavy = [m for m in ('torch', 'skimage', 'transformers', 'torchvision') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_unknown_and_non_image_metrics_are_refused():
    with pytest.raises(ConfigError, match="Did you mean: ssim"):
        resolve_metrics(["ssmi"])
    with pytest.raises(ConfigError, match="computed by `fmri2image decode`"):
        resolve_metrics(["r2_uniform"])


def test_default_on_cpu_leaves_out_gpu_metrics_with_a_reason():
    chosen, skipped = resolve_metrics(None, device="cpu")
    assert "nway" not in [m.name for m in chosen] and "--metrics nway" in skipped["nway"]
    chosen, skipped = resolve_metrics(None, device="cuda")
    assert "nway" in [m.name for m in chosen] and not skipped
    chosen, _ = resolve_metrics(["nway", "ssim", "nway"], device="cpu")  # asked by name: kept
    assert [m.name for m in chosen] == ["nway", "ssim"]


def test_a_registered_metric_is_computed_by_evaluate(photo_pairs):
    from fmri2image.evaluation import evaluate_images, register_metric

    def mean_abs_error(y_true, y_pred, *, seed=0):
        return np.array(
            [np.abs(np.asarray(t, float) - np.asarray(p.resize(t.size), float)).mean() / 255
             for t, p in zip(y_true, y_pred)]
        )  # fmt: skip

    metric = Metric("mae_test", False, "pixels", "mean absolute error (test)", score=mean_abs_error)
    register_metric(metric)
    try:
        with pytest.raises(ConfigError, match="already registered"):
            register_metric(metric)
        assert image_metrics()[-1].name == "mae_test"
        ev = evaluate_images(photo_pairs, ["mae_test"], progress=False)
        assert ev.summary["mae_test"].higher_is_better is False
        assert ev.summary["mae_test"].unpaired > ev.summary["mae_test"].mean
    finally:
        from fmri2image.evaluation import base

        METRICS.unregister("mae_test")
        base._ORDER.remove("mae_test")
