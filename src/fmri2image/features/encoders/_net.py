"""Deciding quickly whether weights can be downloaded, and saying what to do if not.

Why this exists: when ``huggingface.co`` cannot be reached and a file is not in the
cache, ``huggingface_hub`` (>= 1.0) retries the metadata request five times with
exponential back-off (1 + 2 + 4 + 8 + 8 s), so a missing model took ~27 s to fail
(``timm:`` and ``open_clip:`` twice that, one back-off per candidate file).  No
environment variable shortens that back-off: ``HF_HUB_ETAG_TIMEOUT`` and
``HF_HUB_DOWNLOAD_TIMEOUT`` bound each request, not the retries.

So before any download may be attempted, :func:`hub_access` sends one ``HEAD``
request to the endpoint (``HF_ENDPOINT``, default ``https://huggingface.co``) with a
short timeout (``FMRI2IMAGE_NET_TIMEOUT``, default 3 s), through the proxies set in
the environment.  If no HTTP answer comes back, the loaders continue *as if*
``HF_HUB_OFFLINE=1`` had been set: cached files are used, missing ones fail at
once with a message that says how to get them.  The answer is remembered for a
minute per endpoint, so a run that loads several models probes once.

Nothing here imports torch or huggingface_hub at module import time.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

__all__ = [
    "HubAccess",
    "download_checkpoint",
    "hf_cache_dir",
    "hub_access",
    "hub_endpoint",
    "offline_help",
    "probe_url",
    "torch_checkpoint_dir",
    "url_access",
]

logger = logging.getLogger(__name__)

_DEFAULT_TIMEOUT = 3.0
_TTL = 60.0
_lock = threading.Lock()
_probe_cache: dict[str, tuple[float, str | None]] = {}


def _timeout() -> float:
    raw = os.environ.get("FMRI2IMAGE_NET_TIMEOUT", "").strip()
    try:
        return max(0.1, float(raw)) if raw else _DEFAULT_TIMEOUT
    except ValueError:
        return _DEFAULT_TIMEOUT


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    """The Hugging Face endpoint downloads go to (``HF_ENDPOINT``, read now)."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hf_cache_dir(cache_dir: str | os.PathLike | None = None) -> str:
    """The hub cache folder in use: ``cache_dir``, else ``HF_HUB_CACHE``, else ``HF_HOME/hub``."""
    if cache_dir:
        return os.fspath(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return os.path.join(os.path.expanduser(home), "hub")


def torch_checkpoint_dir() -> str:
    """``$TORCH_HOME/hub/checkpoints`` as torch resolves it, without importing torch."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch"
    )
    return os.path.join(os.path.expanduser(home), "hub", "checkpoints")


def download_checkpoint(url: str, path: str | os.PathLike) -> str:
    """Download a torch hub checkpoint to ``path``, never unpickling it.

    The file is fetched with ``torch.hub.download_url_to_file`` (to a temporary file
    beside ``path``, renamed when complete) and the SHA-256 prefix in its name
    (``resnet50-11ad3fa6.pth``), when there is one, is checked, as
    ``torch.hub.load_state_dict_from_url(check_hash=True)`` does.  Unlike that
    function it does not then ``torch.load`` the file with ``weights_only=False``:
    the caller reads it with ``weights_only=True``.  ``path`` is where torch's own
    downloader puts it (``$TORCH_HOME/hub/checkpoints/<file>``), so either finds the
    other's downloads.  Errors (network, hash mismatch, disk) propagate.
    """
    import torch

    path = os.fspath(path)
    match = torch.hub.HASH_REGEX.search(os.path.basename(path))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.hub.download_url_to_file(url, path, match.group(1) if match else None, progress=True)
    return path


def probe_url(url: str, *, timeout: float | None = None) -> str | None:
    """One ``HEAD`` request: ``None`` if any HTTP answer came back, else the reason.

    An HTTP error status (404, 401, 500, ...) still proves the server is reachable;
    only failures to resolve, connect or receive within ``timeout`` seconds count.
    A TLS failure is reported as reachable: the download libraries have their own
    certificate settings and deserve the chance to succeed or explain.
    """
    timeout = _timeout() if timeout is None else timeout
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLError):
            return None
        return _reason_text(reason)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except ssl.SSLError:
        return None
    except (OSError, ValueError) as exc:
        return _reason_text(exc)


def _reason_text(reason: object) -> str:
    if isinstance(reason, TimeoutError | socket.timeout):
        return "no answer within the timeout"
    if isinstance(reason, socket.gaierror):
        return f"host name not resolved: {reason.strerror or reason}"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)


def _cached_probe(url: str) -> str | None:
    parsed = urlparse(url)
    origin = f"{parsed.scheme}://{parsed.netloc}"
    now = time.monotonic()
    with _lock:
        hit = _probe_cache.get(origin)
        if hit is not None and now - hit[0] < _TTL:
            return hit[1]
    t0 = time.monotonic()
    reason = probe_url(origin + "/")
    logger.debug("probe %s: %s (%.2f s)", origin, reason or "reachable", time.monotonic() - t0)
    with _lock:
        _probe_cache[origin] = (time.monotonic(), reason)
    return reason


def clear_probe_cache() -> None:
    """Forget remembered probe results (tests; a network that just came back)."""
    with _lock:
        _probe_cache.clear()


@dataclass(frozen=True)
class HubAccess:
    """Whether downloads may be attempted now, and if not, why.

    Attributes
    ----------
    offline : bool
        True when only local files may be used.
    reason : str
        Why downloads are off: ``"HF_HUB_OFFLINE=1"``, ``"local_files_only=True"``,
        or ``"<endpoint> could not be reached (<cause>)"``; empty when online.
    endpoint : str
        The endpoint that was (or would have been) asked.
    """

    offline: bool
    reason: str = ""
    endpoint: str = ""

    @property
    def unreachable(self) -> bool:
        """True when the network, not a setting, made us offline."""
        return self.offline and "could not be reached" in self.reason

    def describe(self) -> str:
        """A clause for error messages: why nothing was downloaded."""
        if not self.offline:
            return "it could not be downloaded"
        if self.unreachable:
            return f"nothing could be downloaded: {self.reason}"
        return f"downloads are disabled ({self.reason})"


def hub_access(local_files_only: bool | None = None) -> HubAccess:
    """Decide whether the Hugging Face hub may be asked for files.

    Parameters
    ----------
    local_files_only : bool, optional
        An explicit choice wins; default: ``HF_HUB_OFFLINE``, then a quick probe of
        ``HF_ENDPOINT`` (see the module docstring).
    """
    endpoint = hub_endpoint()
    if local_files_only:
        return HubAccess(True, "local_files_only=True", endpoint)
    if local_files_only is None and _env_flag("HF_HUB_OFFLINE"):
        return HubAccess(True, "HF_HUB_OFFLINE=1", endpoint)
    return url_access(endpoint)


def url_access(url: str) -> HubAccess:
    """:class:`HubAccess` for any download server (the probe only, no settings)."""
    parsed = urlparse(url)
    origin = f"{parsed.scheme}://{parsed.netloc}"
    reason = _cached_probe(url)
    if reason is None:
        return HubAccess(False, "", origin)
    logger.info("%s is unreachable (%s); using locally cached files only", origin, reason)
    return HubAccess(True, f"{origin} could not be reached ({reason})", origin)


def offline_help(
    repo_id: str, *, files: str = "", cache_dir: str | os.PathLike | None = None
) -> str:
    """How to make a hub model available with no network, for CLI users first.

    ``files`` optionally names the files to download (``"model.safetensors"``).
    """
    what = f"{repo_id} {files}".strip()
    return (
        f"On a machine with internet run `hf download {what}` (older huggingface_hub: "
        f"`huggingface-cli download {what}`), copy its Hugging Face cache (the folder "
        "holding hub/) here and set HF_HOME to it, or set HF_HUB_CACHE to the hub folder "
        f"itself; this machine looks in {hf_cache_dir(cache_dir)}. Set HF_HUB_OFFLINE=1 "
        "to skip the connection attempt when working offline."
    )
