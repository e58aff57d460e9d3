"""With the hub unreachable, a missing model fails in seconds with advice a CLI user can follow.

No test touches the network: the ``unreachable_hub`` fixture points ``HF_ENDPOINT`` at
a closed local port (and the hub libraries were imported with ``HF_HUB_OFFLINE=1``);
the torchvision test replaces the probe.
"""

from __future__ import annotations

import http.server
import re
import threading
import time
from pathlib import Path

import pytest

from fmri2image.errors import ModelUnavailableError
from fmri2image.features import get_encoder
from fmri2image.features.encoders import _net


def _outside_python_hints(message: str) -> str:
    """The message without its "(In Python: ...)" aside."""
    return re.sub(r"\(In Python:[^)]*\)", "", message)


@pytest.mark.parametrize(
    ("name", "library"),
    [
        ("hf:org/not-cached", "transformers"),
        ("vit", "transformers"),
        ("timm:resnet18.a1_in1k", "timm"),
        ("open_clip:ViT-B-32:laion2b_s34b_b79k", "open_clip"),
    ],
)
def test_missing_hub_model_fails_fast_with_cli_advice(name, library, unreachable_hub, tmp_path):
    pytest.importorskip(library)
    t0 = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        get_encoder(name, cache_dir=str(tmp_path / "empty-cache"))
    elapsed = time.monotonic() - t0
    assert elapsed < 5, f"{name} took {elapsed:.1f} s to fail"
    msg = str(info.value)
    assert f"{unreachable_hub} could not be reached" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "HF_HOME" in msg and "hf download" in msg
    rest = _outside_python_hints(msg)
    assert "local_files_only" not in rest and "cache_dir" not in rest
    assert str(tmp_path / "empty-cache") in msg  # where this machine looked


def test_offline_setting_is_named_in_the_message(tmp_path):
    # conftest sets HF_HUB_OFFLINE=1 for the whole session.
    with pytest.raises(ModelUnavailableError, match=r"downloads are disabled \(HF_HUB_OFFLINE=1\)"):
        get_encoder("hf:org/not-cached", cache_dir=str(tmp_path))


def test_torchvision_download_is_not_attempted_when_unreachable(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")
    import torch

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _net.clear_probe_cache()
    probed = []

    def fake_probe(url, *, timeout=None):
        probed.append(url)
        return "connection refused"

    def no_download(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(_net, "probe_url", fake_probe)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    with pytest.raises(ModelUnavailableError) as info:
        get_encoder("resnet50")
    _net.clear_probe_cache()
    msg = str(info.value)
    assert probed == ["https://download.pytorch.org/"]
    assert "https://download.pytorch.org could not be reached" in msg
    assert "resnet50-11ad3fa6.pth" in msg and "TORCH_HOME" in msg


# --------------------------------------------------------------------------- torchvision downloads
# A checkpoint that is downloaded is read like a cached one, with
# torch.load(weights_only=True): a file whose pickle would run code is refused unrun.


class _RunsCodeWhenUnpickled:
    """Unpickling this writes ``marker`` (what a malicious checkpoint could do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture
def fake_torchvision_download(tmp_path, monkeypatch):
    """Downloads allowed and the server reachable, but ``torch.hub.download_url_to_file``
    copies ``payload["file"]`` instead of fetching; calls are recorded."""
    pytest.importorskip("torchvision")
    import shutil

    import torch

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(_net, "probe_url", lambda url, *, timeout=None: None)
    _net.clear_probe_cache()
    payload = {"file": None, "calls": []}

    def fake_download(url, dst, hash_prefix=None, progress=True):
        payload["calls"].append((url, dst, hash_prefix))
        shutil.copyfile(payload["file"], dst)

    # torch.hub.load_state_dict_from_url is left as it is: it downloads through the fake,
    # so a loader that used it would unpickle the file with weights_only=False.
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    yield payload
    _net.clear_probe_cache()


def test_downloaded_torchvision_checkpoint_that_runs_code_is_refused_unrun(
    tmp_path, fake_torchvision_download
):
    import torch
    from torchvision.models import MobileNet_V3_Small_Weights

    from fmri2image.features.encoders._torchvision import checkpoint_path

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"features.0.0.weight": torch.zeros(1), "x": _RunsCodeWhenUnpickled(marker)}, evil)
    # The payload is real: a plain unpickling runs it.
    torch.load(evil, weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()

    fake_torchvision_download["file"] = evil
    cache = tmp_path / "checkpoints"
    name = "torchvision:mobilenet_v3_small:IMAGENET1K_V1"
    with pytest.raises(ModelUnavailableError) as info:
        get_encoder(name, cache_dir=str(cache))
    assert not marker.exists(), "unpickling the downloaded checkpoint ran its code"
    weights = MobileNet_V3_Small_Weights.IMAGENET1K_V1
    path = checkpoint_path(weights, cache)
    [(url, dst, hash_prefix)] = fake_torchvision_download["calls"]
    assert (url, dst) == (weights.url, str(path))
    assert hash_prefix and path.name.endswith(f"-{hash_prefix}.pth")  # the hash is checked
    msg = str(info.value)
    assert str(path) in msg and "weights_only=True" in msg and "nothing in it was run" in msg
    assert "Delete the file and download it again" in msg
    # Read again from the cache (no download this time): refused the same way, unrun.
    with pytest.raises(ModelUnavailableError, match="nothing in it was run"):
        get_encoder(name, cache_dir=str(cache))
    assert not marker.exists() and len(fake_torchvision_download["calls"]) == 1


def test_downloaded_torchvision_state_dict_loads(tmp_path, fake_torchvision_download, chelsea):
    import torch
    from torchvision.models import MobileNet_V3_Small_Weights, mobilenet_v3_small

    from fmri2image.features.encoders._torchvision import checkpoint_path

    torch.manual_seed(0)
    reference = mobilenet_v3_small(weights=None).eval()
    legit = tmp_path / "legit.pth"
    torch.save(reference.state_dict(), legit)
    fake_torchvision_download["file"] = legit
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"  # created by the download
    enc = get_encoder("torchvision:mobilenet_v3_small:IMAGENET1K_V1", cache_dir=str(cache))
    weights = MobileNet_V3_Small_Weights.IMAGENET1K_V1
    assert checkpoint_path(weights, cache).is_file()  # kept where torchvision caches it
    assert len(fake_torchvision_download["calls"]) == 1
    batch = enc.preprocess(chelsea)[None]
    reference.classifier[3] = torch.nn.Identity()
    with torch.inference_mode():
        torch.testing.assert_close(enc.embed(batch), reference(batch))


def test_torchvision_download_goes_where_torchvision_caches(tmp_path, monkeypatch):
    # No cache_dir: $TORCH_HOME/hub/checkpoints/<file>, torch.hub's own location, so a
    # file torchvision downloaded is found and one downloaded here serves torchvision.
    pytest.importorskip("torchvision")
    import torch
    from torchvision.models import ResNet50_Weights

    from fmri2image.features.encoders._torchvision import checkpoint_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    assert checkpoint_path(ResNet50_Weights.IMAGENET1K_V2) == expected
    assert Path(torch.hub.get_dir()) / "checkpoints" / expected.name == expected


def test_probe_answers_refused_quickly_and_http_errors_as_reachable(unreachable_hub):
    t0 = time.monotonic()
    reason = _net.probe_url(unreachable_hub + "/")
    assert reason and time.monotonic() - t0 < 2

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert _net.probe_url(f"http://127.0.0.1:{server.server_port}/") is None
    finally:
        server.shutdown()
        server.server_close()


def test_probe_result_is_remembered_per_endpoint(unreachable_hub, monkeypatch):
    calls = []
    real = _net.probe_url

    def counting(url, *, timeout=None):
        calls.append(url)
        return real(url, timeout=timeout)

    monkeypatch.setattr(_net, "probe_url", counting)
    first = _net.hub_access()
    second = _net.hub_access()
    assert first == second and first.offline and first.unreachable
    assert len(calls) == 1
    assert _net.hub_access(local_files_only=True).reason == "local_files_only=True"
