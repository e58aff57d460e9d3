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
    with pytest.raises(ModelUnavailableError) as info:
        get_encoder("resnet50")
    _net.clear_probe_cache()
    msg = str(info.value)
    assert probed == ["https://download.pytorch.org/"]
    assert "https://download.pytorch.org could not be reached" in msg
    assert "resnet50-11ad3fa6.pth" in msg and "TORCH_HOME" in msg


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
