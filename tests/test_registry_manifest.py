"""The shared core of the seams: registries that load plugins lazily from entry points,
and the one verified-manifest helper every cache uses."""

from __future__ import annotations

import json
import sys

import pytest

from fmri2image import _manifest
from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.registry import Registry, import_target

GROUP = "fmri2image.test-things"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A fake installed distribution declaring three entry points of GROUP: a good one,
    one whose module fails to import, one that registers nothing."""
    site = tmp_path / "site"
    dist = site / "toy_things-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-things\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{GROUP}]\ngood = toy_things_good:THING\nbroken = toy_things_broken:THING\n"
        "silent = toy_things_good:NOT_A_THING\n"
    )
    (site / "toy_things_good.py").write_text("THING = 'a good thing'\nNOT_A_THING = None\n")
    (site / "toy_things_broken.py").write_text("raise RuntimeError('this plugin is broken')\n")
    monkeypatch.syspath_prepend(str(site))
    yield
    for name in ("toy_things_good", "toy_things_broken"):
        sys.modules.pop(name, None)


def make_registry():
    reg: Registry[str] = Registry("thing", group=GROUP, plugin=lambda name, obj: (
        reg.register(name, obj) if obj is not None else None))  # fmt: skip
    reg.register("builtin", "a built-in thing")
    return reg


def test_plugins_are_listed_without_being_imported(installed):
    reg = make_registry()
    assert reg.names() == ["broken", "builtin", "good", "silent"]
    assert "good" in reg and len(reg) == 4
    assert "toy_things_good" not in sys.modules  # listing reads metadata only


def test_a_plugin_loads_when_first_asked_for(installed):
    reg = make_registry()
    assert reg.get("good") == "a good thing"
    assert "toy_things_good" in sys.modules
    assert reg.get("builtin") == "a built-in thing"


def test_a_broken_plugin_is_recorded_and_breaks_nothing_else(installed, caplog):
    reg = make_registry()
    with pytest.raises(ConfigError, match="this plugin is broken") as err:
        reg.get("broken")
    assert "toy-things" in str(err.value) and "toy_things_broken:THING" in str(err.value)
    assert "broken" in reg.plugin_errors and "broken" not in reg.names()
    reg.load_plugins()  # the others still load
    assert reg.get("good") == "a good thing"
    assert "registered no thing" in reg.plugin_errors["silent"]
    assert "this plugin is broken" in caplog.text


def test_a_name_registered_by_hand_wins_over_the_plugin(installed):
    reg = make_registry()
    reg.register("good", "mine")
    assert reg.get("good") == "mine" and "toy_things_good" not in sys.modules


def test_registry_needs_group_and_plugin_together():
    with pytest.raises(ValueError, match="both"):
        Registry("x", group=GROUP)


def test_import_target():
    assert import_target("fmri2image.registry:Registry") is Registry
    with pytest.raises(ConfigError, match=r"package\.module:Name"):
        import_target("fmri2image.registry")


# ---------------------------------------------------------------------- manifests
def test_a_manifest_vouches_for_its_files_and_inputs(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"abc")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text("{}")
    path = tmp_path / "manifest.json"
    written = _manifest.write_manifest(path, {"format": "t", "key": "k1"}, folder=tmp_path)
    assert set(written["files"]) == {"a.npy", "sub/b.json"}  # not the manifest itself
    assert _manifest.read_manifest(path, format="t") == written
    assert _manifest.manifest_problem(path, format="t", identity={"key": "k1"}) is None
    assert "another key" in _manifest.manifest_problem(path, identity={"key": "k2"})
    assert "not a u manifest" in _manifest.manifest_problem(path, format="u")
    (tmp_path / "a.npy").write_bytes(b"abd")
    assert "a.npy changed after it was written" in _manifest.manifest_problem(path)
    (tmp_path / "a.npy").unlink()
    assert "a.npy is missing" in _manifest.manifest_problem(path)
    assert _manifest.manifest_problem(tmp_path / "nope.json") == "not computed yet"


def test_an_edited_manifest_is_refused(tmp_path):
    path = tmp_path / "m.json"
    _manifest.write_manifest(path, {"format": "t", "key": "k"})
    data = json.loads(path.read_text())
    data["key"] = "forged"
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match="changed after it was written"):
        _manifest.read_manifest(path)
    path.write_text("[1, 2]")
    assert "not a manifest" in _manifest.manifest_problem(path)


def test_named_files_only(tmp_path):
    (tmp_path / "x.png").write_bytes(b"png")
    (tmp_path / "y.png").write_bytes(b"other")
    m = _manifest.write_manifest(tmp_path / "x.json", {"format": "p"}, files=["x.png"])
    assert list(m["files"]) == ["x.png"]
    (tmp_path / "y.png").write_bytes(b"changed")  # not vouched for: no problem
    assert _manifest.manifest_problem(tmp_path / "x.json", format="p") is None
