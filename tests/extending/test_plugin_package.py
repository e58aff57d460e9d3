"""A third party's plugin package, pip-installed (offline, from a folder), adds an
encoder and a metric through entry points; the command line uses them with no change
to fmri2image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PYPROJECT = """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "fmri2image-toy-plugin"
version = "0.1"
dependencies = []

[project.entry-points."fmri2image.encoders"]
toy-plugin-colour = "fmri2image_toy_plugin:ColourEncoder"

[project.entry-points."fmri2image.metrics"]
toy_brightness = "fmri2image_toy_plugin:BRIGHTNESS"
"""

MODULE = '''
"""A tiny fmri2image plugin: an encoder of mean colours and a brightness metric."""

import numpy as np

from fmri2image.evaluation import Metric
from fmri2image.features import Encoder, EncoderSpec


class _Resize:
    def __call__(self, image):
        import torch
        from PIL import Image

        arr = np.asarray(image.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR))
        return torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()


class ColourEncoder(Encoder):
    spec = EncoderSpec(name="toy-plugin-colour", weights="none", layer="4x4 means", dim=12,
                       image_size=8, preprocessing="resize 8x8, /255", license="MIT")

    def __init__(self, *, device="cpu", dtype="float32", cache_dir=None, local_files_only=None):
        self.device, self.dtype, self._t = device, dtype, _Resize()

    @property
    def preprocess(self):
        return self._t

    def embed(self, batch):
        import torch

        return torch.nn.functional.avg_pool2d(batch, 4).flatten(1).float()


def _brightness_gap(y_true, y_pred, *, seed=0):
    gray = lambda img: np.asarray(img.convert("L"), dtype=float).mean() / 255.0  # noqa: E731
    return np.array([abs(gray(t) - gray(p)) for t, p in zip(y_true, y_pred)])


BRIGHTNESS = Metric("toy_brightness", False, "pixels", "absolute brightness difference",
                    score=_brightness_gap)
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """The plugin package pip-installed into a folder of its own (nothing else changes)."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "fmri2image-toy-plugin"
    src.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "fmri2image_toy_plugin.py").write_text(textwrap.dedent(MODULE))
    site = tmp / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
         "--no-build-isolation", "--target", str(site), str(src)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert (site / "fmri2image_toy_plugin.py").is_file()
    return site


def cli(site, *argv):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "fmri2image", *argv], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_the_plugin_components_are_listed(plugin_site):
    listing = cli(plugin_site, "evaluate", "--list-metrics")
    assert listing.returncode == 0 and "toy_brightness" in listing.stdout, listing.stderr
    doctor = cli(plugin_site, "doctor", "--json")
    report = json.loads(doctor.stdout)
    names = json.dumps(report)
    assert "toy-plugin-colour" in names and "toy_brightness" in names


def test_a_run_uses_the_plugin_encoder_and_metric(plugin_site, god, tmp_path):
    root, db = god
    out = tmp_path / "out"
    done = cli(plugin_site, "-q", "run", "--data", str(root), "--model", "toy-plugin-colour",
               "--cv", "3", "--database", str(db), "--generators", "retrieve",
               "--metrics", "ssim", "toy_brightness", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = json.loads((out / "summary.json").read_text())["encoders"]
    assert row["encoder"] == "toy-plugin-colour" and row["dim"] == 12
    summary = (out / "tables" / "summary.csv").read_text()
    assert "toy_brightness" in summary
    assert "toy_brightness" in done.stdout and "lower is better" in done.stdout
    # Without the plugin installed the name is unknown, with the usual close matches.
    missing = cli(tmp_path, "-q", "run", "--data", str(root), "--model", "toy-plugin-colour",
                  "--out", str(tmp_path / "x"))  # fmt: skip
    assert missing.returncode == 2 and "Unknown encoder 'toy-plugin-colour'" in missing.stderr
