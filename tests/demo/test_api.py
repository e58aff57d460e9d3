"""The demo package's public surface: cheap to import, the old data-layer name gone."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_cheap_and_exports_the_api():
    code = (
        "import sys, fmri2image.demo as d; "
        "print(sorted(m for m in ('torch', 'PIL', 'h5py', 'sklearn') if m in sys.modules)); "
        "print(all(hasattr(d, n) for n in d.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


def test_data_layer_exports_the_layout_writer_not_the_demo():
    import fmri2image.data as data

    assert "write_demo_dataset" not in data.__all__
    for name in ("write_god_subject", "write_stimulus_set", "write_id_file"):
        assert name in data.__all__ and callable(getattr(data, name))
