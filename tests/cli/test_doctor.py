"""``fmri2image doctor``: this machine's real state, and simulated missing pieces."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import sys
import time
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import pytest
from _planted import write_planted_god

from fmri2image import doctor
from fmri2image.cli.main import main
from fmri2image.errors import ConfigError

SECTIONS = {
    "system",
    "packages",
    "plugins",
    "encoders",
    "mappers",
    "generators",
    "metric_networks",
    "metrics",
    "datasets",
    "wordnet",
    "god",
    "disk",
}
CHECK_KEYS = {"name", "ok", "detail", "fix", "warning"}


def _json(capsys, *argv):
    rc = main(["doctor", "--json", *argv])
    out = capsys.readouterr().out
    return rc, json.loads(out)


def _check(data, section, name):
    (hit,) = [c for c in data["sections"][section] if c["name"] == name]
    return hit


def test_real_state_as_json(capsys):
    import torch

    rc, data = _json(capsys)
    assert set(data) == {"sections", "problems", "warnings"}
    assert set(data["sections"]) == SECTIONS
    failed = [c for checks in data["sections"].values() for c in checks if not c["ok"]]
    for checks in data["sections"].values():
        assert checks
        for c in checks:
            assert set(c) == CHECK_KEYS and isinstance(c["ok"], bool) and c["detail"]
    assert all(c["fix"] for c in failed), "every failed check says how to fix it"
    assert data["problems"] == len(failed)
    assert rc == (1 if failed else 0)

    assert _check(data, "system", "python")["detail"] == platform.python_version()
    assert _check(data, "system", "torch")["detail"] == torch.__version__
    lite0 = _check(data, "encoders", "effnet-lite0")
    assert lite0["ok"] and "available offline" in lite0["detail"]
    for name in ("invert", "retrieve"):
        gen = _check(data, "generators", name)
        assert gen["ok"] and "offline" in gen["detail"]
    assert "downloads" in _check(data, "generators", "sd15")["detail"]
    assert _check(data, "metric_networks", "lite0")["ok"]
    god = _check(data, "god", "GOD folder")
    assert god["ok"] and "pass --god DIR" in god["detail"]
    disk = [c["name"] for c in data["sections"]["disk"]]
    assert disk == ["hub cache", "torch checkpoints", "current folder"]


def test_fmri2image_version_is_reported(capsys):
    from fmri2image import __version__

    _, data = _json(capsys)
    assert _check(data, "system", "fmri2image")["detail"].startswith(__version__)


def test_a_missing_extra_fails_with_its_pip_command(monkeypatch, capsys):
    real = doctor.module_available
    monkeypatch.setattr(doctor, "module_available", lambda m: m != "diffusers" and real(m))
    rc, data = _json(capsys)
    assert rc == 1
    extra = _check(data, "packages", "fmri2image[diffusion]")
    assert not extra["ok"] and "diffusers" in extra["detail"]
    assert "pip install 'diffusers>=0.27'" in extra["fix"]
    assert "fmri2image[diffusion]" in extra["fix"]
    sd15 = _check(data, "generators", "sd15")
    assert not sd15["ok"] and "diffusers" in sd15["fix"]
    assert _check(data, "generators", "invert")["ok"]  # needs no extra

    assert main(["doctor"]) == 1
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if "fmri2image[diffusion]" in ln)
    assert line.split()[0] == "FAIL"
    assert "fix: pip install 'diffusers>=0.27'" in text
    assert "problem" in text.splitlines()[-1]


def test_a_missing_transformers_fails_the_hf_encoders(monkeypatch, capsys):
    real = doctor.module_available
    monkeypatch.setattr(doctor, "module_available", lambda m: m != "transformers" and real(m))
    _, data = _json(capsys)
    vit = _check(data, "encoders", "vit")
    assert not vit["ok"] and "pip install 'transformers>=4.40'" in vit["fix"]
    assert _check(data, "encoders", "effnet-lite0")["ok"]


def test_missing_wordnet_fails_with_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMRI2IMAGE_WORDNET_DIR", str(tmp_path))  # an empty folder
    rc, data = _json(capsys)
    assert rc == 1
    (check,) = data["sections"]["wordnet"]
    assert not check["ok"] and str(tmp_path) in check["detail"]
    assert "wordnet-base" in check["fix"] and "nltk" in check["fix"]
    assert "FMRI2IMAGE_WORDNET_DIR" in check["fix"]
    main(["doctor"])
    assert "fix: apt-get install wordnet-base" in capsys.readouterr().out


def test_wordnet_found_names_its_folder(monkeypatch, capsys):
    from fmri2image.wordnet import find_wordnet_dir

    try:
        folder = find_wordnet_dir()
    except Exception:
        pytest.skip("no WordNet 3.0 data on this machine")
    _, data = _json(capsys)
    (check,) = data["sections"]["wordnet"]
    assert check["ok"] and str(folder) in check["detail"]


def test_metric_network_weights_present_or_missing(tmp_path, monkeypatch, capsys):
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "alexnet-owt-7be5be79.pth").write_bytes(b"never read")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    rc, data = _json(capsys)
    assert rc == 1
    alex = _check(data, "metric_networks", "alexnet")
    assert alex["ok"] and str(checkpoints / "alexnet-owt-7be5be79.pth") in alex["detail"]
    incep = _check(data, "metric_networks", "inception")
    expected = checkpoints / "inception_v3_google-0cc3c7bd.pth"
    assert not incep["ok"] and str(expected) in incep["detail"]
    assert "--metric-weights inception=PATH" in incep["fix"]
    assert "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth" in incep["fix"]
    swav = _check(data, "metric_networks", "swav")
    assert not swav["ok"] and "swav_800ep_pretrain.pth.tar" in swav["fix"]


def test_a_metric_network_pointed_at_a_missing_file_fails(tmp_path, monkeypatch, capsys):
    real = doctor.metric_weights_path
    gone = tmp_path / "nowhere" / "alexnet.pth"

    def fake(name):
        return (gone, "https://example.invalid/alexnet.pth") if name == "alexnet" else real(name)

    monkeypatch.setattr(doctor, "metric_weights_path", fake)
    assert main(["doctor"]) == 1
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.split()[1:2] == ["alexnet"])
    assert line.split()[0] == "FAIL" and str(gone) in line
    assert "--metric-weights alexnet=PATH" in text


def test_metric_weights_path_is_the_loaders_path(tmp_path, monkeypatch):
    """The path checked is the one load_network reads (computed without torchvision)."""
    import torch

    from fmri2image.evaluation.networks import _TORCH_HUB_NETS
    from fmri2image.features.encoders._torchvision import _resolve, checkpoint_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    for name, cfg in _TORCH_HUB_NETS.items():
        path, url = doctor.metric_weights_path(name)
        if cfg.weights_enum is not None:
            _, enum = _resolve(cfg.builder, cfg.weights_enum)
            assert (path, url) == (checkpoint_path(enum), enum.url), name
        else:
            want = tmp_path / "th" / "hub" / "checkpoints" / os.path.basename(cfg.url)
            assert (path, url) == (want, cfg.url)
        assert path.parent == tmp_path / "th" / "hub" / "checkpoints"
        assert path.parent == Path(torch.hub.get_dir()) / "checkpoints"
    assert doctor.metric_weights_path("clip") is None
    assert doctor.metric_weights_path("lite0") is None


def test_clip_metric_network_found_in_the_hub_cache(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "hub" / "models--openai--clip-vit-large-patch14"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    for f in ("config.json", "model.safetensors"):
        (snap / f).write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    _, data = _json(capsys)
    clip = _check(data, "metric_networks", "clip")
    assert clip["ok"] and str(snap) in clip["detail"]
    (snap / "model.safetensors").unlink()
    _, data = _json(capsys)
    clip = _check(data, "metric_networks", "clip")
    assert not clip["ok"] and "model.safetensors" in clip["detail"]
    assert "hf download openai/clip-vit-large-patch14" in clip["fix"]
    assert "--metric-weights clip=PATH" in clip["fix"]


def test_god_folder_lists_subjects_and_images(small_god, capsys):
    _, data = _json(capsys, "--god", str(small_god))
    god = {c["name"]: c for c in data["sections"]["god"]}
    assert god["GOD folder"]["ok"]
    assert god["subject 1"]["ok"] and "Subject1.h5" in god["subject 1"]["detail"]
    assert "spm" in god["subject 1"]["detail"]
    train, test = god["training stimuli"], god["test stimuli"]
    assert train["ok"] and train["detail"].startswith("48 of 48 images")
    assert test["ok"] and test["detail"].startswith("3 of 3 images")
    assert not [c for c in data["sections"]["god"] if not c["ok"]]

    main(["doctor", "--god", str(small_god)])
    text = capsys.readouterr().out
    assert "subject 1" in text and "48 of 48 images" in text


def test_god_folder_with_missing_images_and_split_release(tmp_path, capsys):
    root = tmp_path / "god"
    write_planted_god(
        root,
        n_train_categories=2,
        images_per_category=2,
        n_test_categories=1,
        n_voxels=8,
        planted=False,
    )
    victim = sorted((root / "training").iterdir())[0]
    victim.unlink()
    (root / "Subject2_ImageNetTraining.h5").write_bytes(b"")  # the test part is missing
    rc, data = _json(capsys, "--god", str(root))
    assert rc == 1
    god = {c["name"]: c for c in data["sections"]["god"]}
    assert god["subject 1"]["ok"]
    assert not god["subject 2"]["ok"] and "Subject2_ImageNetTest.h5" in god["subject 2"]["fix"]
    train = god["training stimuli"]
    assert not train["ok"] and train["detail"].startswith("3 of 4 images")
    assert victim.stem in train["detail"] and "data-info" in train["fix"]
    assert god["test stimuli"]["ok"]


def test_god_folder_without_stimuli(tmp_path, capsys):
    (tmp_path / "Subject3.h5").write_bytes(b"")
    _, data = _json(capsys, "--god", str(tmp_path))
    god = {c["name"]: c for c in data["sections"]["god"]}
    assert god["subject 3"]["ok"]
    assert (
        not god["training stimuli"]["ok"]
        and "imageID_training.csv" in god["training stimuli"]["fix"]
    )


def test_missing_god_folder_is_a_failed_check_not_a_traceback(tmp_path, capsys):
    missing = tmp_path / "no-such-god"
    assert main(["doctor", "--god", str(missing)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    line = next(ln for ln in out.splitlines() if "GOD folder" in ln)
    assert line.split()[0] == "FAIL" and "does not exist" in line
    assert "fix: pass the folder that holds SubjectN.h5" in out
    rc, data = _json(capsys, "--god", str(missing))
    (check,) = data["sections"]["god"]
    assert rc == 1 and not check["ok"] and "make-demo-data" in check["fix"]


def test_low_disk_space_is_a_warning(tmp_path, monkeypatch, capsys):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        doctor.shutil, "disk_usage", lambda p: usage(100 * 10**9, 97 * 10**9, 3 * 10**9)
    )
    cache = tmp_path / "cache" / "not-yet"
    rc, data = _json(capsys, "--cache", str(cache))
    disk = data["sections"]["disk"]
    assert [c["name"] for c in disk] == ["cache (--cache)", "current folder"]
    assert all(c["ok"] and c["warning"] and "free some space" in c["fix"] for c in disk)
    assert "3.0 GB free" in disk[0]["detail"] and str(cache) in disk[0]["detail"]
    assert "measured at" in disk[0]["detail"]
    assert data["warnings"] >= 2
    assert rc == (1 if data["problems"] else 0)  # warnings never fail the run


def test_real_disk_space(tmp_path, capsys):
    _, data = _json(capsys, "--cache", str(tmp_path))
    check = _check(data, "disk", "cache (--cache)")
    free = shutil.disk_usage(tmp_path).free
    assert check["ok"] and check["warning"] == (free < doctor.LOW_DISK_BYTES)


def test_cuda_checks_with_a_fake_torch(monkeypatch):
    def fake_torch(available, cuda="12.1", names=()):
        return SimpleNamespace(
            version=SimpleNamespace(cuda=cuda),
            cuda=SimpleNamespace(
                is_available=lambda: available,
                device_count=lambda: len(names),
                get_device_name=lambda i: names[i],
            ),
        )

    ok = doctor._cuda_check(fake_torch(True, names=("NVIDIA H200",)))
    assert ok.ok and "NVIDIA H200" in ok.detail and "CUDA 12.1" in ok.detail
    monkeypatch.setattr(doctor, "_nvidia_driver", lambda: None)
    assert doctor._cuda_check(fake_torch(False)).ok  # no GPU: nothing wrong
    monkeypatch.setattr(doctor, "_nvidia_driver", lambda: "470.82")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    bad = doctor._cuda_check(fake_torch(False))
    assert not bad.ok and "470.82" in bad.detail and "driver" in bad.fix
    cpu_build = doctor._cuda_check(fake_torch(False, cuda=None))
    assert not cpu_build.ok and "--index-url" in cpu_build.fix
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert doctor._cuda_check(fake_torch(False)).ok


def test_requirement_parsing():
    r = doctor._parse_requirement("ray[data]>=2.9; extra == 'ray'")
    assert (r.name, r.extras, r.specifier, r.group, r.text) == (
        "ray",
        ("data",),
        ">=2.9",
        "ray",
        "ray[data]>=2.9",
    )
    core = doctor._parse_requirement('tomli>=2.0; python_version < "3.0"')
    assert core.group is None and not core.applies


def test_never_touches_the_network(monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("doctor opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    rc, data = _json(capsys)
    assert rc in (0, 1) and set(data["sections"]) == SECTIONS


def test_fast(capsys):
    main(["doctor", "--json"])  # torch and the registries imported once
    capsys.readouterr()
    t0 = time.perf_counter()
    main(["doctor", "--json"])
    assert time.perf_counter() - t0 < 5.0
    capsys.readouterr()


def test_help_documents_exit_status_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "exit status:" in text and "1  at least one check failed" in text
    assert "--god DIR" in text and "--cache DIR" in text and "--json" in text
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--no-such-flag"])
    assert exc.value.code == 2


def test_an_error_inside_a_check_is_a_failed_check_not_a_crash(monkeypatch, capsys):
    def broken():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(doctor, "_wordnet_checks", broken)
    rc, data = _json(capsys)
    assert rc == 1
    (check,) = data["sections"]["wordnet"]
    assert not check["ok"] and "disk on fire" in check["detail"] and check["fix"]
    assert data["sections"]["disk"]  # the other sections are still checked


# ------------------------------------------------------------ declarations, not special cases


def test_a_registered_component_is_checked_by_its_declared_needs(capsys):
    """Components registered by user code are checked like built-in ones: by their Needs."""
    from fmri2image.data import DATASETS, register_dataset
    from fmri2image.data.god import GODDataset
    from fmri2image.features import ENCODERS, register_encoder
    from fmri2image.generation import GENERATORS, register_generator
    from fmri2image.generation.invert import InvertGenerator
    from fmri2image.mapping import MAPPERS, register_mapper
    from fmri2image.registry import Needs

    missing = Needs(extra="hf", packages=("not-installed-pkg",))
    register_generator("needy-gen", InvertGenerator, needs=missing)
    register_encoder("needy-enc", lambda **kw: None, needs=missing)
    register_mapper("needy-map", "fmri2image.mapping._ridge:RidgeMapping", needs=missing)
    register_dataset("needy-data", GODDataset, needs=Needs(packages=("not-installed-pkg",)))
    try:
        rc, data = _json(capsys)
    finally:
        GENERATORS.unregister("needy-gen")
        ENCODERS.unregister("needy-enc")
        MAPPERS.unregister("needy-map")
        DATASETS.unregister("needy-data")
    assert rc == 1
    for section, name, flag in (
        ("generators", "needy-gen", "--generator"),
        ("encoders", "needy-enc", "--model"),
        ("mappers", "needy-map", "mapping.mappers"),
    ):
        check = _check(data, section, name)
        assert not check["ok"], name
        assert "not-installed-pkg (not installed)" in check["detail"]
        assert check["fix"].startswith(
            "pip install not-installed-pkg (or pip install 'fmri2image[hf]')"
        )
        assert check["fix"].endswith(f"to use {flag} {name}")
    dataset = _check(data, "datasets", "needy-data")
    assert (
        not dataset["ok"]
        and dataset["fix"] == "pip install not-installed-pkg to use --dataset needy-data"
    )
    assert _check(data, "datasets", "god")["ok"]
    assert _check(data, "mappers", "ridge")["ok"]


def test_a_generator_that_declares_only_its_extra_is_checked_against_it(monkeypatch, capsys):
    from fmri2image.generation import GENERATORS, register_generator
    from fmri2image.generation.invert import InvertGenerator
    from fmri2image.registry import Needs

    real = doctor.module_available
    monkeypatch.setattr(doctor, "module_available", lambda m: m != "accelerate" and real(m))
    register_generator("extra-gen", InvertGenerator, needs=Needs(extra="diffusion"))
    try:
        _, data = _json(capsys)
    finally:
        GENERATORS.unregister("extra-gen")
    check = _check(data, "generators", "extra-gen")
    assert not check["ok"] and "accelerate" in check["detail"]
    assert (
        "pip install 'accelerate>=0.25'" in check["fix"] and "fmri2image[diffusion]" in check["fix"]
    )


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    """An installed plugin distribution: a generator that needs a missing package, and
    an encoder whose module cannot be imported."""
    from fmri2image.features import ENCODERS
    from fmri2image.generation import GENERATORS

    site = tmp_path / "site"
    dist = site / "fmri2image_doctor_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fmri2image-doctor-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[fmri2image.generators]\nplugged-gen = fmri2image_doctor_plugin:PluggedGenerator\n\n"
        "[fmri2image.encoders]\nbroken-enc = fmri2image_doctor_plugin_missing:build\n"
    )
    (site / "fmri2image_doctor_plugin.py").write_text(
        "from fmri2image.generation.invert import InvertGenerator\n"
        "from fmri2image.registry import Needs\n\n"
        "class PluggedGenerator(InvertGenerator):\n"
        "    needs = Needs(packages=('not-installed-pkg',), offline=True)\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "fmri2image_doctor_plugin", raising=False)
    for registry in (ENCODERS, GENERATORS):  # rediscover the installed entry points
        monkeypatch.setattr(registry, "_entry_points", None)
        monkeypatch.setattr(registry, "plugin_errors", {})
    yield
    sys.modules.pop("fmri2image_doctor_plugin", None)
    with contextlib.suppress(ConfigError):  # registered if a test loaded it
        GENERATORS.unregister("plugged-gen")


def test_plugin_errors_and_plugin_needs_are_reported(plugin_package, capsys):
    rc, data = _json(capsys)
    assert rc == 1
    broken = _check(data, "plugins", "encoder plugin broken-enc")
    assert not broken["ok"] and "fmri2image_doctor_plugin_missing:build" in broken["detail"]
    assert "ModuleNotFoundError" in broken["detail"]
    assert "pip install --upgrade --force-reinstall fmri2image-doctor-plugin" in broken["fix"]
    assert "pip uninstall fmri2image-doctor-plugin" in broken["fix"]
    # reported once, under plugins: not again as an encoder
    assert not [c for c in data["sections"]["encoders"] if c["name"] == "broken-enc"]
    plugged = _check(data, "generators", "plugged-gen")
    assert not plugged["ok"] and "offline" in plugged["detail"]
    assert plugged["fix"] == "pip install not-installed-pkg to use --generator plugged-gen"

    main(["doctor"])
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if "encoder plugin broken-enc" in ln)
    assert line.split()[0] == "FAIL"


def test_listing_a_registry_imports_no_plugin(plugin_package):
    from fmri2image.features import ENCODERS
    from fmri2image.generation import GENERATORS

    assert "plugged-gen" in GENERATORS.names() and "broken-enc" in ENCODERS.names()
    assert "fmri2image_doctor_plugin" not in sys.modules
    assert not ENCODERS.plugin_errors


def test_models_lists_a_broken_encoder_plugin_instead_of_failing(plugin_package):
    from fmri2image.features import model_catalog

    (row,) = [r for r in model_catalog(cached=False) if r.name == "broken-enc"]
    assert row.family == "plugin" and row.available is False
    assert "fmri2image_doctor_plugin_missing" in row.notes[0] and "reinstall" in row.how_to_get


# ------------------------------------------------------------------------- data (--data)


def test_data_and_its_god_alias_check_a_god_folder(small_god, capsys):
    _, by_data = _json(capsys, "--data", str(small_god))
    _, by_god = _json(capsys, "--god", str(small_god))
    _, explicit = _json(capsys, "--dataset", "god", "--data", str(small_god))
    sections = [d["sections"]["god"] for d in (by_data, by_god, explicit)]
    assert sections[0] == sections[1] == sections[2]
    god = {c["name"]: c for c in sections[0]}
    assert list(god) == ["GOD folder", "subject 1", "training stimuli", "test stimuli"]
    assert all(c["ok"] for c in god.values())
    assert god["GOD folder"]["detail"] == str(small_god)
    assert god["subject 1"]["detail"] == "spm release: Subject1.h5"
    assert god["training stimuli"]["detail"] == (
        f"48 of 48 images listed in imageID_training.csv present in {small_god / 'training'}"
    )


def test_a_god_subject_in_both_releases_is_a_warning(tmp_path, capsys):
    root = tmp_path / "god"
    write_planted_god(
        root, n_train_categories=2, images_per_category=2, n_test_categories=1, n_voxels=8,
        planted=False,
    )  # fmt: skip
    for part in ("ImageNetTraining", "ImageNetTest"):
        shutil.copy(root / "Subject1.h5", root / f"Subject1_{part}.h5")
    _, data = _json(capsys, "--data", str(root))
    subject = _check(data, "god", "subject 1")
    assert subject["ok"] and subject["warning"]
    assert "spm release: Subject1.h5" in subject["detail"]
    assert "fmriprep release: Subject1_ImageNetTraining.h5" in subject["detail"]
    assert "--release spm|fmriprep" in subject["fix"]


def test_an_unknown_dataset_is_a_failed_check(tmp_path, capsys):
    rc, data = _json(capsys, "--dataset", "no-such-set", "--data", str(tmp_path))
    (check,) = data["sections"]["god"]
    assert rc == 1 and not check["ok"]
    assert check["name"] == "NO-SUCH-SET folder" and "no-such-set" in check["detail"]
    assert "god" in check["fix"]


def test_another_dataset_is_checked_through_the_seam(tmp_path, capsys):
    """A registered dataset needs no doctor code: subjects, files and stimuli come from it."""
    from fmri2image.data import DATASETS, Dataset, Stimuli, register_dataset
    from fmri2image.errors import MissingDataFileError

    class FlatDataset(Dataset):
        name = "flat"
        description = "sub-N.npy files and a stimuli/ folder of PNGs"
        vocabulary = "text"

        def subjects(self):
            return tuple(sorted(int(p.stem[4:]) for p in self.path.glob("sub-*.npy")))

        def files(self, subject):
            path = self.path / f"sub-{subject}.npy"
            if path.stat().st_size == 0:
                raise MissingDataFileError(f"{path} is empty: copy sub-{subject}.npy again.")
            return (path,)

        def load(self, subject, roi, *, drop_nan_voxels=False):
            raise NotImplementedError

        def stimuli(self, split):
            if split == "test":
                raise MissingDataFileError(f"no test list: put test.txt in {self.path}.")
            names = ("a", "b", "c")
            files = tuple(self.path / "stimuli" / f"{n}.png" for n in names)
            return Stimuli(split, names, names, files=files, source=self.path / "train.txt")

    (tmp_path / "sub-1.npy").write_bytes(b"x")
    (tmp_path / "sub-2.npy").write_bytes(b"")
    (tmp_path / "stimuli").mkdir()
    for n in ("a", "b"):
        (tmp_path / "stimuli" / f"{n}.png").write_bytes(b"")
    register_dataset("flat", FlatDataset)
    try:
        rc, data = _json(capsys, "--dataset", "flat", "--data", str(tmp_path))
    finally:
        DATASETS.unregister("flat")
    checks = {c["name"]: c for c in data["sections"]["god"]}
    assert rc == 1
    assert checks["FLAT folder"]["ok"]
    assert checks["subject 1"] == {
        "name": "subject 1", "ok": True, "detail": "sub-1.npy", "fix": None, "warning": False,
    }  # fmt: skip
    assert not checks["subject 2"]["ok"] and "copy sub-2.npy again" in checks["subject 2"]["fix"]
    train = checks["training stimuli"]
    assert not train["ok"] and train["detail"].startswith("2 of 3 images listed in train.txt")
    assert "missing e.g. c.png" in train["detail"] and "1 missing" in train["fix"]
    test = checks["test stimuli"]
    assert not test["ok"] and "put test.txt" in test["fix"]
    assert _check(data, "datasets", "flat")["detail"].startswith(FlatDataset.description)

    rc, data = _json(capsys, "--dataset", "flat", "--data", str(tmp_path / "nowhere"))
    (folder,) = data["sections"]["god"]
    assert rc == 1 and "Unknown dataset" in folder["detail"]  # unregistered again


# --------------------------------------------------------------------------- unreadable data
# A file that is there but that this user cannot read is a failed check whose fix names
# the permission (never "reinstall"). "real": chmod 000 as a user it binds (skipped as
# root, for whom it binds nothing); "emulated": the same files, with what a non-root
# owner may do emulated from the owner bits, so the checks also run as root (CI).


def _owner_may(path, mode) -> bool:
    """What ``os.access(path, mode)`` answers for a non-root owner of every file."""
    import stat as st

    try:
        bits = os.stat(path).st_mode
    except OSError:
        return False
    parents = Path(os.fspath(path)).absolute().parents
    if any(not os.stat(folder).st_mode & st.S_IXUSR for folder in parents):
        return False
    need = (st.S_IRUSR if mode & os.R_OK else 0) | (st.S_IXUSR if mode & os.X_OK else 0)
    return bits & need == need


def _chmod_000_binds(folder: Path) -> bool:
    probe = folder / "chmod-000-probe"
    probe.write_text("x")
    probe.chmod(0o000)
    try:
        probe.read_text()
    except PermissionError:
        return True
    else:
        return False
    finally:
        probe.chmod(0o644)
        probe.unlink()


@pytest.fixture(params=["real", "emulated"])
def unreadable_by_owner(request, monkeypatch, tmp_path):
    """chmod 000 binds: really (a non-root user) or emulated (as root)."""
    if request.param == "real":
        if not _chmod_000_binds(tmp_path):  # root (os.geteuid() == 0) with its capabilities
            pytest.skip("chmod 000 does not stop this user (root) from reading")
        return
    import builtins

    from fmri2image.data import stimuli

    real_open, real_scandir = builtins.open, os.scandir

    def denied(path):
        return PermissionError(13, "Permission denied", os.fspath(path))

    def fake_open(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and not _owner_may(file, os.R_OK):
            raise denied(file)
        return real_open(file, *args, **kwargs)

    def fake_scandir(path="."):
        if not _owner_may(path, os.R_OK | os.X_OK):
            raise denied(path)
        return real_scandir(path)

    monkeypatch.setattr(doctor, "_can", _owner_may)
    monkeypatch.setattr(stimuli, "open", fake_open, raising=False)
    monkeypatch.setattr(os, "scandir", fake_scandir)


@pytest.fixture
def god_to_spoil(tmp_path):
    root = tmp_path / "god"
    write_planted_god(
        root, n_train_categories=2, images_per_category=2, n_test_categories=1, n_voxels=8,
        planted=False,
    )  # fmt: skip
    spoiled: list[Path] = []

    def chmod(path, mode):
        spoiled.append(path)
        path.chmod(mode)

    yield root, chmod
    for path in reversed(spoiled):  # let pytest clean up
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_unreadable_fmri_file_image_and_id_file_are_failed_checks(
    god_to_spoil, unreadable_by_owner, capsys
):
    root, chmod = god_to_spoil
    subject, id_file = root / "Subject1.h5", root / "imageID_test.csv"
    image = sorted((root / "training").iterdir())[0]
    for path in (subject, image, id_file):
        chmod(path, 0o000)
    rc, data = _json(capsys, "--god", str(root))
    assert rc == 1
    god = {c["name"]: c for c in data["sections"]["god"]}
    assert god["GOD folder"]["ok"]

    fmri = god["subject 1"]
    assert not fmri["ok"]
    assert "Subject1.h5 is not readable by this user (mode 000)" in fmri["detail"]
    assert fmri["fix"] == f"chmod u+r {subject}"

    train = god["training stimuli"]
    assert not train["ok"] and train["detail"].startswith("4 of 4 images")  # all present
    assert (
        f"1 not readable: {image.name} is not readable by this user (mode 000)" in (train["detail"])
    )
    assert train["fix"] == f"chmod u+r {image}"

    test = god["test stimuli"]
    assert not test["ok"]
    assert "imageID_test.csv is not readable by this user (mode 000)" in test["detail"]
    assert test["fix"] == f"chmod u+r {id_file}"

    fixes = [c["fix"] or "" for checks in data["sections"].values() for c in checks]
    assert not any("reinstall fmri2image" in fix for fix in fixes)

    main(["doctor", "--god", str(root)])
    text = capsys.readouterr().out
    assert f"fix: chmod u+r {subject}" in text and "Traceback" not in text


def test_unreadable_image_folder_and_many_unreadable_images(
    god_to_spoil, unreadable_by_owner, capsys
):
    root, chmod = god_to_spoil
    chmod(root / "test", 0o000)
    images = sorted((root / "training").iterdir())
    for image in images[:3]:
        chmod(image, 0o200)  # write-only
    _, data = _json(capsys, "--god", str(root))
    god = {c["name"]: c for c in data["sections"]["god"]}
    assert god["subject 1"]["ok"]
    train = god["training stimuli"]
    assert not train["ok"] and "3 not readable by this user" in train["detail"]
    assert "(mode 200)" in train["detail"]
    assert train["fix"].endswith(f"chmod -R u+rX {root / 'training'}")
    test = god["test stimuli"]
    assert not test["ok"]
    assert "folder test is not readable by this user (mode 000)" in test["detail"]
    assert test["fix"] == f"chmod u+rx {root / 'test'}"


def test_unreadable_data_folder_names_the_permission(god_to_spoil, unreadable_by_owner, capsys):
    root, chmod = god_to_spoil
    chmod(root, 0o000)
    rc, data = _json(capsys, "--god", str(root))
    (check,) = data["sections"]["god"]
    assert rc == 1 and not check["ok"]
    assert "folder god is not readable by this user (mode 000)" in check["detail"]
    assert check["fix"] == f"chmod u+rx {root}"


def test_readability_check_costs_one_access_per_image(small_god, monkeypatch, capsys):
    """Images are neither opened nor decoded: os.access each (cheap on thousands)."""
    import builtins

    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if str(file).endswith((".JPEG", ".jpg", ".png")):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    calls: list[str] = []
    real_can = doctor._can

    def counting_can(path, mode):
        calls.append(os.fspath(path))
        return real_can(path, mode)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(doctor, "_can", counting_can)
    _, data = _json(capsys, "--god", str(small_god))
    assert all(c["ok"] for c in data["sections"]["god"])
    n_images = sum(1 for _ in (small_god / "training").iterdir()) + sum(
        1 for _ in (small_god / "test").iterdir()
    )
    assert not opened
    assert sum(p.endswith((".JPEG", ".jpg", ".png")) for p in calls) == n_images


def test_a_permission_error_inside_a_check_names_the_file_not_a_reinstall(
    tmp_path, monkeypatch, capsys
):
    locked = tmp_path / "locked.txt"
    locked.write_text("x")
    locked.chmod(0o000)

    def boom():
        raise PermissionError(13, "Permission denied", str(locked))

    monkeypatch.setattr(doctor, "_can", _owner_may)
    monkeypatch.setattr(doctor, "_wordnet_checks", boom)
    try:
        _, data = _json(capsys)
    finally:
        locked.chmod(0o644)
    (check,) = data["sections"]["wordnet"]
    assert (
        not check["ok"]
        and "locked.txt is not readable by this user (mode 000)" in (check["detail"])
    )
    assert check["fix"] == f"chmod u+r {locked}" and "reinstall" not in check["fix"]


def test_an_image_folder_that_cannot_be_entered_names_the_folder(
    god_to_spoil, unreadable_by_owner, capsys
):
    root, chmod = god_to_spoil
    chmod(root / "test", 0o644)  # listable, but its files cannot be reached (no x)
    _, data = _json(capsys, "--god", str(root))
    test = _check(data, "god", "test stimuli")
    assert not test["ok"] and "test" in test["detail"] and "(mode 644)" in test["detail"]
    assert test["fix"] == f"chmod u+rx {root / 'test'}"
    assert _check(data, "god", "training stimuli")["ok"]


def test_an_unreadable_id_file_behind_a_dataset_error_names_the_permission(
    god_to_spoil, unreadable_by_owner, monkeypatch, capsys
):
    """A dataset that wraps the PermissionError in its own error is diagnosed the same."""
    from fmri2image.data import stimuli
    from fmri2image.errors import DataFormatError

    root, chmod = god_to_spoil
    id_file = root / "imageID_training.csv"
    chmod(id_file, 0o000)
    real = stimuli.read_id_file

    def wrapping(path):
        try:
            return real(path)
        except PermissionError as exc:
            raise DataFormatError(f"cannot read {path}") from exc

    monkeypatch.setattr(stimuli, "read_id_file", wrapping)
    _, data = _json(capsys, "--god", str(root))
    train = _check(data, "god", "training stimuli")
    assert not train["ok"]
    assert "imageID_training.csv is not readable by this user (mode 000)" in train["detail"]
    assert train["fix"] == f"chmod u+r {id_file}"
