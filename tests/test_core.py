import json
import subprocess
import sys

import numpy as np
import pytest

from fmri2image import _io
from fmri2image.errors import ConfigError
from fmri2image.imagenet import imagenet1k_wnids, resolve_class_name, wnid_name
from fmri2image.registry import Registry


def test_registry_names_prefixes_and_errors():
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1)

    @reg.register("b")
    def _b():
        return 2

    reg.register_prefix("x", lambda arg: len(arg))
    assert reg.get("a") == 1
    assert reg.get("b")() == 2
    assert reg.get("x:abcd") == 4
    assert "a" in reg and "zz" not in reg
    with pytest.raises(ConfigError, match="Did you mean: a"):
        reg.get("aa")
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a", 3)
    with pytest.raises(ConfigError, match="needs a value"):
        reg.get("x:")


def test_atomic_write_keeps_old_file_on_crash(tmp_path):
    target = tmp_path / "f.json"
    _io.save_json(target, {"v": 1})
    with pytest.raises(RuntimeError), _io.atomic_write(target) as fh:
        fh.write("partial")
        raise RuntimeError("crash")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_safetensors_roundtrip(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.arange(3)}
    _io.save_safetensors(tmp_path / "a.safetensors", arrays, {"k": "v"})
    back, meta = _io.load_safetensors(tmp_path / "a.safetensors")
    assert meta == {"k": "v"}
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])


def test_imagenet_lists():
    wnids = imagenet1k_wnids()
    assert wnids[0] == "n01440764" and len(set(wnids)) == 1000
    assert wnid_name("n02123045") == "tabby"
    assert resolve_class_name("Tabby_Cat") == ("n02123045",)
    assert resolve_class_name("n01518878") == ("n01518878",)
    # ambiguous names return every candidate
    assert len(resolve_class_name("crane")) == 2


def test_cli_help_is_fast_and_lazy():
    code = (
        "import sys, fmri2image.cli.main as m\n"
        "try:\n    m.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [k for k in ('torch', 'faiss', 'transformers', 'diffusers', 'ray') if k in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout


def test_written_files_respect_the_umask(tmp_path):
    """Results are as readable as any file the user makes (not mkstemp's 0600)."""
    import os

    old = os.umask(0o022)
    try:
        assert _io.current_umask() == 0o022
        p = _io.save_json(tmp_path / "a.json", {"x": 1})
        assert p.stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        q = _io.save_npy(tmp_path / "b.npy", np.zeros(3))
        assert q.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_json_is_strict_nan_becomes_null(tmp_path):
    p = _io.save_json(
        tmp_path / "s.json",
        {"a": float("nan"), "b": [np.float32("inf"), 1.5], "c": np.array([np.nan, 2.0])},
    )
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": [None, 2.0]}
