"""Real-size encoders through the loaders a user runs, offline (issue 21, item 5).

The other tests build tiny models; this one keeps the real architectures working:
``resnet50``, ``vit``, ``clip`` and ``clip-l14`` at their public sizes, with random
weights (:mod:`fmri2image._random_weights`), are placed where a user's machine caches
the real downloads (``$TORCH_HOME/hub/checkpoints``, the Hugging Face hub cache under
``$HF_HOME``), and ``fmri2image compare`` runs offline on a few demo images.

Cost on 2 idle cores: about 50 s (19 s without ``clip-l14``, whose 428 M parameters
take most of it) and 4.5 GB peak memory.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
from pathlib import Path

import pytest

MODELS = ("resnet50", "vit", "clip", "clip-l14")
DIMS = {"resnet50": 2048, "vit": 768, "clip": 512, "clip-l14": 768}
# What the test needs free: the four checkpoints (~2.7 GB) and the models in memory.
NEED_DISK = 5 * 2**30
NEED_MEMORY = 6 * 2**30


def _tiny_demo(root: Path) -> tuple[Path, Path]:
    """A demo dataset of 8 training and 2 test images, and a 4-image database folder
    (the test categories and two others), so that each model embeds 14 images."""
    from fmri2image.demo import write_demo_dataset

    info = write_demo_dataset(
        root / "data", photo_roots={}, n_train_categories=4, images_per_category=2,
        n_test_categories=2, n_test_repeats=2, n_imagery_repeats=0, n_voxels=300,
        database_images_per_category=1, progress=False,
    )  # fmt: skip
    db = root / "db"
    for wnid in (*info.test_wnids, *info.train_wnids[:2]):
        shutil.copytree(info.database_dir / wnid, db / wnid)
    return root / "data", db


@pytest.mark.slow
def test_real_size_encoders_run_compare_offline_from_the_caches(tmp_path, monkeypatch):
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("transformers")
    free_disk = shutil.disk_usage(tmp_path).free
    free_memory = psutil.virtual_memory().available
    if free_disk < NEED_DISK or free_memory < NEED_MEMORY:
        pytest.skip(
            f"needs {NEED_DISK / 2**30:.0f} GB of free disk and {NEED_MEMORY / 2**30:.0f} GB of "
            f"free memory; {free_disk / 2**30:.1f} GB and {free_memory / 2**30:.1f} GB are free"
        )
    import huggingface_hub.constants as hub_constants
    import torch

    from fmri2image import _random_weights as rw
    from fmri2image.cli.main import main

    torch_home, hf_home = tmp_path / "torch", tmp_path / "hf"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub fixes its cache and offline flag when first imported (earlier in
    # this session); a user's process reads the environment set before it starts.
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)

    data, db = _tiny_demo(tmp_path)
    placed = {name: rw.place_random_weights(name, seed=i) for i, name in enumerate(MODELS)}
    try:
        loaded: list[str] = []
        real_load = torch.load

        def recording_load(f, *args, **kwargs):
            loaded.append(str(f))
            return real_load(f, *args, **kwargs)

        def no_network(self, address, *args, **kwargs):
            raise AssertionError(f"a network connection was attempted offline: {address!r}")

        monkeypatch.setattr(torch, "load", recording_load)
        monkeypatch.setattr(socket.socket, "connect", no_network)
        monkeypatch.setattr(socket.socket, "connect_ex", no_network)
        out = tmp_path / "out"
        code = main([
            "-q", "compare", "--models", *MODELS, "--data", str(data), "--out", str(out),
            "--database", str(db), "--generators", "retrieve", "--metrics", "pixcorr", "ssim",
            "--cv", "2", "--rois", "ROI_VC", "--no-visualize",
        ])  # fmt: skip
        monkeypatch.undo()  # the environment, the socket and torch.load as they were
        assert code == 0

        # The torchvision loader read the placed checkpoint (nothing else named resnet50).
        assert str(placed["resnet50"]) in loaded
        # Each model's training features came from the placed files, at the real size.
        manifests = {}
        for path in (out / "cache").glob("features_*/*/train/*/manifest.json"):
            m = json.loads(path.read_text())
            manifests[m["encoder"]["name"]] = m
        dims = {name: manifests[name]["dim"] for name in MODELS}
        assert dims == DIMS
        for name in ("vit", "clip"):  # the snapshot commit recorded is the one placed
            assert placed[name].name in manifests[name]["encoder"]["weights"]

        summary = json.loads((out / "summary.json").read_text())
        rows = {r["encoder"]: r for r in summary["encoders"]}
        assert sorted(rows) == sorted(MODELS)
        assert all(rows[n]["dim"] == DIMS[n] for n in MODELS)
        assert all(math.isfinite(rows[n]["pairwise_id"]) for n in MODELS)
        import pandas as pd

        scores = pd.read_csv(out / "tables" / "summary.csv")
        predicted = scores[scores["condition"] == "predicted"]
        assert set(predicted["model"]) == set(MODELS)
        assert set(predicted["metric"]) == {"pixcorr", "ssim"}
        assert predicted["mean"].map(math.isfinite).all()
    finally:
        for name in MODELS:
            rw.remove_placed(name, torch_home=torch_home, hf_home=hf_home)
    assert not any(p.exists() for p in placed.values())
