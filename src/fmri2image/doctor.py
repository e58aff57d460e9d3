"""``fmri2image doctor``: what this machine has, what it lacks, and how to get it.

:func:`diagnose` returns a :class:`Report`: :class:`Section` s of :class:`Check` s, each
saying whether something is in place and, when not, the command or step that fixes
it.  It reads only what is on disk — installed distributions' metadata, the Hugging
Face hub cache, the torch hub checkpoint folder, the WordNet files, a data folder —
and never opens a socket, loads weights or imports the optional model libraries
(transformers, diffusers, ray, ...; a package counts as installed when its
distribution metadata and its top-level module are found).  It imports torch and
torchvision, for their versions and the CUDA / MPS devices, so it takes a few
seconds at most.

What a component needs is read from its registry entry's declaration
(:class:`~fmri2image.registry.Needs`: extra, packages, weights), never from a list
kept here, so a component registered by user code or an installed plugin is checked
like a built-in one.

Sections (the keys of :meth:`Report.to_dict`):

``system``
    Python, the platform, fmri2image, torch (CUDA devices, MPS), torchvision.
``packages``
    The core dependencies and each optional extra of ``pyproject.toml``
    (``[project.optional-dependencies]``, read from the installed metadata), with the
    pip command that installs what is missing.
``plugins``
    The installed plugins (entry points of every registry, loaded for this check):
    one failed check per plugin that does not load.
``encoders``
    Every registered encoder: weights available offline now or how to get them
    (:func:`fmri2image.features.model_catalog`, the rows of ``fmri2image models``),
    then the loadable hub-cache models; and the packages each declares.
``mappers``
    Every mapping model (:data:`~fmri2image.mapping.MAPPERS`) and the packages it
    declares.
``generators``
    Every registered generator: offline or downloading its weights on first use, and
    the packages it declares.
``metric_networks``
    Every metric network of ``fmri2image evaluate``: its standard weights file present
    (where :func:`~fmri2image.evaluation.networks.load_network` looks for it) or the fix.
``metrics``
    The metrics that declare packages, one check each; one line for the others.
``datasets``
    Every registered dataset (:data:`~fmri2image.data.DATASETS`) and the packages it
    declares.
``wordnet``
    The WordNet 3.0 files used for the Wu–Palmer similarity of retrieved labels.
``god``
    With a data folder (``data``, read as dataset ``dataset``, GOD by default) through
    the dataset seam: each subject's fMRI files (for GOD: their release), the training
    and test stimuli and how many of their images are present.  Each file must also
    be readable by this user (``os.access``; the fMRI files are opened and a few bytes
    read, the images are not opened): one that is not fails with the ``chmod`` that
    fixes it.  (The key predates other datasets.)
``disk``
    Free space at the download caches (or a given folder) and the current folder;
    a warning below :data:`LOW_DISK_BYTES`.

A check that fails counts as a problem (:attr:`Report.problems`); a warning (low
disk space, a GOD subject in both releases) is reported but is not a problem.

This module is at the level of the CLI: it imports the stages (lazily, inside the
functions) and nothing imports it but :mod:`fmri2image.cli.doctor_cmd`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import stat
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmri2image.registry import Needs, Registry

__all__ = [
    "LOW_DISK_BYTES",
    "Check",
    "PackageStatus",
    "Report",
    "Section",
    "diagnose",
    "metric_weights_path",
    "module_available",
]

#: Free space below which the disk checks warn (10 GB; Stable Diffusion 1.5 alone is ~5 GB).
LOW_DISK_BYTES = 10 * 10**9

#: Extras that are not features: the developer tools and the union of the others.
_SKIPPED_EXTRAS = ("test", "all")

#: Import names of distributions whose name is not their module's.
_MODULE_NAMES = {
    "pillow": "PIL",
    "scikit-learn": "sklearn",
    "scikit-image": "skimage",
    "faiss-cpu": "faiss",
    "faiss-gpu": "faiss",
    "open-clip-torch": "open_clip",
    "pyyaml": "yaml",
    "import-linter": "importlinter",
}

# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Check:
    """One thing looked at.

    Attributes
    ----------
    name : str
        What was checked (``"torch"``, ``"fmri2image[hf]"``, ``"clip-l14"``, ...).
    ok : bool
        In place and usable; ``False`` is a problem.
    detail : str
        What was found (a version, a path, what is missing).
    fix : str or None
        What to do about it: always given when ``ok`` is false or ``warning`` is true.
    warning : bool
        Usable, but worth a look (e.g. little free disk space); not a problem.
    """

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
            "warning": self.warning,
        }


@dataclass(frozen=True)
class Section:
    """A group of checks (``key`` in the JSON, ``title`` in the text report)."""

    key: str
    title: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Report:
    """Everything :func:`diagnose` found, in report order."""

    sections: tuple[Section, ...]

    def section(self, key: str) -> Section:
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(key)

    @property
    def problems(self) -> tuple[Check, ...]:
        """The failed checks."""
        return tuple(c for s in self.sections for c in s.checks if not c.ok)

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(c for s in self.sections for c in s.checks if c.ok and c.warning)

    @property
    def exit_status(self) -> int:
        """0 when nothing is wrong, 1 when some check failed (warnings do not count)."""
        return 1 if self.problems else 0

    def to_dict(self) -> dict[str, Any]:
        """``{"sections": {key: [check, ...]}, "problems": n, "warnings": n}``."""
        return {
            "sections": {s.key: [c.to_dict() for c in s.checks] for s in self.sections},
            "problems": len(self.problems),
            "warnings": len(self.warnings),
        }

    def to_json(self) -> str:
        """Strict JSON (no NaN)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def format(self) -> str:
        """The aligned text report: one line per check, its fix on the line below."""
        width = max((len(c.name) for s in self.sections for c in s.checks), default=0)
        width = min(width, 32)
        lines: list[str] = []
        for s in self.sections:
            if lines:
                lines.append("")
            lines.append(s.title)
            for c in s.checks:
                mark = "FAIL" if not c.ok else ("warn" if c.warning else "ok")
                lines.append(f"  {mark:<4}  {c.name:<{width}}  {c.detail}".rstrip())
                if c.fix and (not c.ok or c.warning):
                    lines.append(f"  {'':<4}  {'':<{width}}  fix: {c.fix}")
        n, w = len(self.problems), len(self.warnings)
        lines.append("")
        if n:
            lines.append(
                f"{n} problem{'s' if n != 1 else ''}"
                + (f", {w} warning{'s' if w != 1 else ''}" if w else "")
                + ": each FAIL line above is followed by its fix."
            )
        elif w:
            lines.append(f"No problems; {w} warning{'s' if w != 1 else ''} (see 'warn' above).")
        else:
            lines.append("No problems found.")
        return "\n".join(lines)


# --------------------------------------------------------------------------- packages


def module_available(module: str) -> bool:
    """Whether the top-level module ``module`` can be found (it is not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module_of(dist: str) -> str:
    """The import name of distribution ``dist``."""
    key = _normalize(dist)
    if key in _MODULE_NAMES:
        return _MODULE_NAMES[key]
    try:
        top = importlib.metadata.distribution(dist).read_text("top_level.txt")
    except importlib.metadata.PackageNotFoundError:
        top = None
    if top:
        names = [n.strip() for n in top.splitlines() if n.strip() and not n.startswith("_")]
        if names:
            return names[0]
    return key.replace("-", "_")


@dataclass(frozen=True)
class _Requirement:
    """A parsed requirement line (``"ray[data]>=2.9; extra == 'ray'"``)."""

    text: str  # without the marker, as pip takes it
    name: str
    extras: tuple[str, ...]
    specifier: str
    group: str | None  # the extra this line belongs to (None: core)
    applies: bool  # its other markers (python_version, ...) hold here


_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_REQ_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*([^;]*)")


def _parse_requirement(line: str) -> _Requirement:
    spec_part, _, marker = line.partition(";")
    m = _EXTRA_MARKER.search(marker)
    group = m.group(1) if m else None
    applies = True
    try:
        from packaging.requirements import Requirement

        req = Requirement(line)
        name, extras, specifier = req.name, tuple(sorted(req.extras)), str(req.specifier)
        if req.marker is not None:
            applies = req.marker.evaluate({"extra": group or ""})
    except Exception:  # packaging missing or a line it rejects: the plain parse below
        lm = _REQ_LINE.match(spec_part)
        name = lm.group(1) if lm else spec_part.strip()
        extras = tuple(e.strip() for e in (lm.group(2) or "").split(",") if e.strip()) if lm else ()
        specifier = (lm.group(3) if lm else "").strip().strip("()").replace(" ", "")
    return _Requirement(spec_part.strip(), name, extras, specifier, group, applies)


def _version_ok(version: str, specifier: str) -> bool:
    if not specifier:
        return True
    try:
        from packaging.specifiers import SpecifierSet

        return SpecifierSet(specifier).contains(version, prereleases=True)
    except Exception:  # no packaging, or a version it cannot read: do not guess
        return True


def _own_requirements() -> tuple[list[str], list[str]]:
    """(requirement lines, extras) of fmri2image: installed metadata, else pyproject.toml."""
    try:
        meta = importlib.metadata.metadata("fmri2image")
        lines = importlib.metadata.requires("fmri2image") or []
        return list(lines), list(meta.get_all("Provides-Extra") or [])
    except importlib.metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    except (OSError, KeyError, ValueError, ImportError):
        return [], []
    lines = list(project.get("dependencies", []))
    extras = dict(project.get("optional-dependencies", {}))
    for extra, reqs in extras.items():
        lines += [f"{r}; extra == '{extra}'" for r in reqs]
    return lines, list(extras)


@dataclass(frozen=True)
class PackageStatus:
    """One required distribution: installed (at a good version) or what is wrong.

    Attributes
    ----------
    requirement : str
        As pip takes it (``"transformers>=4.40"``).
    name : str
        Distribution name.
    version : str or None
        Installed version (``None``: not installed).
    ok : bool
        Installed, at an accepted version, with its module (and those of its own
        extras, e.g. ``ray[data]``) findable.
    problem : str
        Why not (empty when ok).
    """

    requirement: str
    name: str
    version: str | None
    ok: bool
    problem: str = ""


def _package_status(req: _Requirement) -> PackageStatus:
    version = _dist_version(req.name)
    module = _module_of(req.name)
    if version is None or not module_available(module):
        why = "not installed" if version is None else f"module '{module}' not found"
        return PackageStatus(req.text, req.name, version, False, f"{req.text} ({why})")
    if not _version_ok(version, req.specifier):
        return PackageStatus(
            req.text, req.name, version, False, f"{req.name} {version} (needs {req.specifier})"
        )
    for extra in req.extras:  # one level down: ray[data] needs pandas, ...
        sub = [_parse_requirement(r) for r in importlib.metadata.requires(req.name) or []]
        for r in sub:
            if r.group is None or _normalize(r.group) != _normalize(extra) or not r.applies:
                continue
            if _dist_version(r.name) is None or not module_available(_module_of(r.name)):
                return PackageStatus(
                    req.text,
                    req.name,
                    version,
                    False,
                    f"{req.name}[{extra}] needs {r.text} (not installed)",
                )
    return PackageStatus(req.text, req.name, version, True)


@dataclass
class _Packages:
    core: list[PackageStatus] = field(default_factory=list)
    extras: dict[str, list[PackageStatus]] = field(default_factory=dict)

    def status(self, dist: str) -> PackageStatus | None:
        key = _normalize(dist)
        for s in [*self.core, *(s for group in self.extras.values() for s in group)]:
            if _normalize(s.name) == key:
                return s
        return None

    def missing(self, dists: Iterable[str]) -> list[PackageStatus]:
        """The statuses of ``dists`` that are not ok (checked here if no extra lists one)."""
        out = []
        for d in dists:
            s = self.status(d) or _package_status(_parse_requirement(d))
            if not s.ok:
                out.append(s)
        return out


def _collect_packages() -> _Packages:
    lines, extras = _own_requirements()
    out = _Packages(extras={e: [] for e in extras if e not in _SKIPPED_EXTRAS})
    for line in lines:
        req = _parse_requirement(line)
        if not req.applies or _normalize(req.name) == "fmri2image":
            continue
        if req.group is None:
            out.core.append(_package_status(req))
        elif req.group in out.extras:
            out.extras[req.group].append(_package_status(req))
    return out


def _pip(requirements: Sequence[str]) -> str:
    return "pip install " + " ".join(
        f"'{r}'" if set(r) & set("<>=![]; ") else r for r in requirements
    )


def _package_checks(pk: _Packages) -> list[Check]:
    checks = []
    bad = [s for s in pk.core if not s.ok]
    if bad:
        checks.append(
            Check(
                "core dependencies",
                False,
                "missing or too old: " + ", ".join(s.problem for s in bad),
                f"{_pip([s.requirement for s in bad])} (or reinstall fmri2image: pip install "
                "fmri2image, from a checkout pip install -e .)",
            )
        )
    else:
        checks.append(Check("core dependencies", True, f"all {len(pk.core)} installed"))
    for extra, statuses in pk.extras.items():
        name = f"fmri2image[{extra}]"
        bad = [s for s in statuses if not s.ok]
        if not bad:
            found = ", ".join(f"{s.name} {s.version}" for s in statuses)
            checks.append(Check(name, True, found or "(no packages)"))
            continue
        have = [f"{s.name} {s.version}" for s in statuses if s.ok]
        detail = "missing: " + ", ".join(s.problem for s in bad)
        if have:
            detail += "; installed: " + ", ".join(have)
        fix = f"{_pip([s.requirement for s in bad])} (or the whole extra: pip install '{name}')"
        checks.append(Check(name, False, detail, fix))
    return checks


def _needs_check(pk: _Packages, name: str, what: str, needs: Needs) -> tuple[bool, str, str | None]:
    """(ok, detail, fix) of ``what`` ``name`` needing the packages ``needs`` declares.

    The packages checked are ``needs.packages``, or, when it lists none, those of its
    extra.  ``detail`` is empty when it declares neither an extra nor packages.
    """
    extra = needs.extra
    dists = list(needs.packages) or [s.name for s in pk.extras.get(extra or "", [])]
    if not dists:
        unknown = f"needs fmri2image[{extra}] (not checked: no such extra)"
        return True, unknown if extra else "", None
    label = f"fmri2image[{extra}] ({', '.join(dists)})" if extra else ", ".join(dists)
    bad = pk.missing(dists)
    if not bad:
        return True, f"needs {label}: installed", None
    head = f"needs fmri2image[{extra}]; " if extra else ""
    also = f" (or pip install 'fmri2image[{extra}]')" if extra else ""
    return (
        False,
        f"{head}missing: {', '.join(s.problem for s in bad)}",
        f"{_pip([s.requirement for s in bad])}{also} to use {what} {name}",
    )


def _declared_check(pk: _Packages, name: str, what: str, needs: Needs, detail: str) -> Check:
    """One registry entry: ``detail``, then what its :class:`Needs` declare, installed or not."""
    ok, dep_detail, fix = _needs_check(pk, name, what, needs)
    parts = [detail, dep_detail or "needs only the core dependencies"]
    if needs.gpu:
        parts.append("slow without a GPU")
    return Check(name, ok, "; ".join(p for p in parts if p), fix)


def _weights_text(needs: Needs) -> str:
    """Where the weights declared in ``needs`` come from, in words."""
    if needs.offline:
        return f"offline (weights: {needs.weights})" if needs.weights else "offline (no weights)"
    where = needs.weights or "the internet"
    return f"downloads its weights from {where} on first use (then cached)"


def _target_text(target: Any) -> str:
    """A registered class, or its ``"module:Class"`` path, as text (nothing is imported)."""
    if isinstance(target, str):
        return target
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', target)}"


# --------------------------------------------------------------------------- system


def _nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version line, or ``None`` when there is none."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "present" if Path("/dev/nvidia0").exists() else None
    m = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?([0-9][0-9.]+)", text)
    return m.group(1) if m else "present"


def _system_checks() -> list[Check]:
    """Python, platform, fmri2image, torch and its devices, torchvision."""
    import fmri2image

    checks = [
        Check("python", True, platform.python_version()),
        Check("python executable", True, f"{sys.executable} ({platform.python_implementation()})"),
        Check("platform", True, f"{platform.platform()} ({os.cpu_count()} CPUs)"),
        Check("fmri2image", True, f"{fmri2image.__version__} ({Path(fmri2image.__file__).parent})"),
    ]
    torch_fix = (
        "pip install torch torchvision (the Makefile's TORCH_PIN names the pair the project "
        "tests; for a CUDA build pick the index URL for your CUDA version on pytorch.org)"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch
    except Exception as exc:
        checks.append(Check("torch", False, f"cannot be imported ({exc})", torch_fix))
        return checks
    checks.append(Check("torch", True, torch.__version__))
    checks.append(_cuda_check(torch))
    try:
        mps = bool(torch.backends.mps.is_available())
    except Exception:
        mps = False
    checks.append(
        Check(
            "MPS",
            True,
            "available (Apple GPU: --device mps)"
            if mps
            else "not available (Apple silicon GPUs under macOS only)",
        )
    )
    checks.append(_torchvision_check(torch.__version__))
    return checks


def _torchvision_check(torch_version: str) -> Check:
    """torchvision's version and whether it was built for this torch, without importing it.

    Importing torchvision takes seconds (it loads torch._dynamo); its ``version.py`` is
    read as text instead, and its metadata's torch requirement and CUDA tag are
    compared with torch's (a mismatch breaks its compiled operators).
    """
    fix = (
        f"pip install torchvision, at the release made for torch {torch_version} (see the "
        "compatibility table at github.com/pytorch/vision; the Makefile's TORCH_PIN names "
        "the pair the project tests)"
    )
    meta = _dist_version("torchvision")
    spec = importlib.util.find_spec("torchvision") if module_available("torchvision") else None
    if meta is None or spec is None:
        return Check("torchvision", False, "not installed", fix)
    version = meta
    for folder in spec.submodule_search_locations or ():
        try:
            text = (Path(folder) / "version.py").read_text(encoding="utf-8")
        except OSError:
            continue
        m = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", text, flags=re.M)
        if m:
            version = m.group(1)
            break
    problems = []
    base_torch = torch_version.split("+")[0]
    for line in importlib.metadata.requires("torchvision") or []:
        req = _parse_requirement(line)
        if _normalize(req.name) == "torch" and req.group is None and req.applies:
            if not _version_ok(base_torch, req.specifier):
                problems.append(f"it needs torch {req.specifier}, this is torch {torch_version}")
    tag_tv, tag_torch = version.partition("+")[2], torch_version.partition("+")[2]
    if tag_tv.startswith("cu") and tag_torch.startswith("cu") and tag_tv != tag_torch:
        problems.append(f"it is built for {tag_tv}, torch for {tag_torch}")
    if problems:
        return Check(
            "torchvision", False, f"{version}, not made for this torch: " + "; ".join(problems), fix
        )
    return Check("torchvision", True, version)


def _cuda_check(torch: Any) -> Check:
    built = torch.version.cuda
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            available = bool(torch.cuda.is_available())
        except Exception as exc:  # pragma: no cover - a broken CUDA runtime
            available, caught = False, [warnings.WarningMessage(str(exc), Warning, "", 0)]
    if available:
        n = torch.cuda.device_count()
        names = []
        for i in range(n):
            try:
                names.append(f"cuda:{i} {torch.cuda.get_device_name(i)}")
            except Exception as exc:  # pragma: no cover
                names.append(f"cuda:{i} (name unavailable: {exc})")
        return Check(
            "CUDA",
            True,
            f"available, CUDA {built}, {n} device{'s' if n != 1 else ''}: " + ", ".join(names),
        )
    build = f"torch built for CUDA {built}" if built else "CPU-only torch build"
    driver = _nvidia_driver()
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if driver is None:
        return Check("CUDA", True, f"not available ({build}; no NVIDIA GPU found): CPU only")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return Check(
            "CUDA", True, f"not available: CUDA_VISIBLE_DEVICES={hidden!r} hides the GPUs ({build})"
        )
    said = "; ".join(str(w.message).strip().splitlines()[0] for w in caught if str(w.message))
    detail = f"an NVIDIA GPU is present (driver {driver}) but torch cannot use it ({build})"
    if said:
        detail += f": {said}"
    if built:
        fix = (
            f"torch needs a driver that supports CUDA {built}: update the NVIDIA driver "
            "(nvidia-smi shows the newest CUDA version it supports), or install a torch "
            "build for an older CUDA from the matching index URL on pytorch.org"
        )
    else:
        fix = (
            "install a CUDA build of torch: pip install torch torchvision --index-url "
            "https://download.pytorch.org/whl/cuXYZ (XYZ: a CUDA version your driver "
            "supports, see nvidia-smi)"
        )
    return Check("CUDA", False, detail, fix)


# --------------------------------------------------------------------------- models


def _registries() -> list[Registry[Any]]:
    """Every registry a plugin can add to (encoders, mapping models, generators,
    metrics, datasets), in :data:`~fmri2image.registry.ENTRY_POINT_GROUPS` order."""
    from fmri2image.data import DATASETS
    from fmri2image.evaluation import METRICS
    from fmri2image.features import ENCODERS
    from fmri2image.generation import GENERATORS
    from fmri2image.mapping import MAPPERS

    return [ENCODERS, MAPPERS, GENERATORS, METRICS, DATASETS]


def _plugin_checks() -> list[Check]:
    """Load every installed plugin; one failed check per plugin that does not load."""
    checks, loaded = [], []
    for registry in _registries():
        registry.load_plugins()
        assert registry.group is not None
        points = {ep.name: ep for ep in importlib.metadata.entry_points(group=registry.group)}
        loaded += [f"{registry.kind} {n}" for n in points if n not in registry.plugin_errors]
        for name, error in sorted(registry.plugin_errors.items()):
            dist = getattr(getattr(points.get(name), "dist", None), "name", None)
            fix = (
                f"upgrade or reinstall the plugin package: pip install --upgrade "
                f"--force-reinstall {dist}; or, if you do not use it, uninstall it: "
                f"pip uninstall {dist}"
                if dist
                else f"upgrade or reinstall the package that declares the entry point {name!r} "
                f"of group {registry.group!r}, or uninstall it if you do not use it"
            )
            checks.append(Check(f"{registry.kind} plugin {name}", False, error, fix))
    if not checks:
        detail = f"{len(loaded)} loaded: {', '.join(loaded)}" if loaded else "none installed"
        checks.append(Check("plugins", True, detail))
    return checks


def _needs_of(registry: Registry[Any], name: str) -> Needs:
    try:
        return registry.get(name).needs
    except Exception:  # a name no entry answers to: nothing declared
        return Needs()


def _encoder_checks(pk: _Packages) -> tuple[list[Check], dict[str, Any]]:
    """One check per registered encoder, then the loadable hub-cache models.

    Also returns the catalogue rows by name (the metric networks reuse the Lites').
    """
    from fmri2image.features import ENCODERS, model_catalog

    rows = model_catalog(cached=True)
    by_name = {r.name: r for r in rows}
    checks = []
    for row in rows:
        if (":" in row.name and not row.cached) or row.name in ENCODERS.plugin_errors:
            continue  # a family's pattern ("hf:<hub id or folder>"), or a broken plugin
        notes = "; ".join(row.notes)
        if row.available is None:
            detail = "not checked" + (f" ({notes})" if notes else "")
        else:
            if row.available:
                detail = f"available offline ({row.location or row.weights})"
                if row.cached:
                    detail = f"in the hub cache ({row.location})"
            else:
                detail = f"not available offline (weights: {row.weights})"
            if notes:
                detail += f"; {notes}"
        ok, fix = row.available is not False, (row.how_to_get or None)
        dep_ok, dep_detail, dep_fix = _needs_check(
            pk, row.name, "--model", _needs_of(ENCODERS, row.name)
        )
        if not dep_ok:
            ok = False
            detail += f"; {dep_detail}"
            fix = f"{dep_fix}" + (f"; and {fix}" if fix else "")
        checks.append(Check(row.name, ok, detail, None if ok else fix))
    return checks, by_name


def _generator_checks(pk: _Packages) -> list[Check]:
    from fmri2image.generation import GENERATORS

    checks = []
    names = [(n, n) for n in GENERATORS.names()]
    names += [(f"{p}:<...>", f"{p}:x") for p in GENERATORS.prefixes()]
    for shown, name in names:
        if name in GENERATORS.plugin_errors:
            continue  # reported under plugins
        entry = GENERATORS.get(name)
        detail = f"{entry.conditioning}-conditioned; {_weights_text(entry.needs)}"
        if entry.needs.inputs:
            detail += f"; a run gives it its {', '.join(entry.needs.inputs)}"
        checks.append(_declared_check(pk, shown, "--generator", entry.needs, detail))
    return checks


def _mapper_checks(pk: _Packages) -> list[Check]:
    from fmri2image.mapping import MAPPERS

    checks = []
    for name in MAPPERS.names():
        if name in MAPPERS.plugin_errors:
            continue  # reported under plugins
        entry = MAPPERS.get(name)
        checks.append(
            _declared_check(pk, name, "mapping.mappers", entry.needs, _target_text(entry.target))
        )
    return checks


def _metric_checks(pk: _Packages) -> list[Check]:
    """One check per metric that declares packages; one line for all the others."""
    from fmri2image.evaluation import METRICS

    checks, plain = [], []
    for name in METRICS.names():
        if name in METRICS.plugin_errors:
            continue  # reported under plugins
        metric = METRICS.get(name)
        if metric.needs.extra or metric.needs.packages:
            checks.append(_declared_check(pk, name, "metric", metric.needs, metric.description))
        else:
            plain.append(name)
    if plain:
        detail = (
            f"{len(plain)} need only the core dependencies (and their network's weights, "
            f"see the metric networks): {', '.join(plain)}"
        )
        checks.append(Check("other metrics" if checks else "metrics", True, detail))
    return checks


def _dataset_checks(pk: _Packages) -> list[Check]:
    from fmri2image.data import DATASETS

    checks = []
    for name in DATASETS.names():
        if name in DATASETS.plugin_errors:
            continue  # reported under plugins
        entry = DATASETS.get(name)
        target = entry.target
        detail = getattr(target, "description", "") or _target_text(target)
        checks.append(_declared_check(pk, name, "--dataset", entry.needs, detail))
    return checks


def metric_weights_path(name: str) -> tuple[Path, str] | None:
    """``(path, url)`` of the standard weights of torch-hub metric network ``name``.

    The file :func:`~fmri2image.evaluation.networks.load_network` reads (and would
    download) when no ``weights`` are given: ``torch.hub.get_dir()/checkpoints/<file>``
    (``$TORCH_HOME/hub/checkpoints``), file and URL from
    :func:`~fmri2image.evaluation.networks.torch_hub_weights` (tests check that the
    result is the loader's path).  ``None`` for networks outside the torch hub cache
    (CLIP, the packaged Lites).  Nothing is opened.
    """
    from fmri2image.evaluation.networks import torch_hub_weights

    found = torch_hub_weights(name)
    if found is None:
        return None
    file, url = found
    try:
        import torch

        folder = Path(torch.hub.get_dir()) / "checkpoints"
    except Exception:  # torch unusable: the same folder, resolved as torch would
        from fmri2image.features.encoders._net import torch_checkpoint_dir

        folder = Path(torch_checkpoint_dir())
    return folder / file, url


def _metric_network_checks(pk: _Packages, encoders: dict[str, Any]) -> list[Check]:
    from fmri2image.evaluation.networks import NETWORKS, hf_hub_weights

    checks = []
    for name in NETWORKS.names():
        spec = NETWORKS.get(name)
        skip = f"or pass --metric-weights {name}=PATH to `fmri2image evaluate`"
        found = metric_weights_path(name)
        hub = hf_hub_weights(name)
        if found is not None:
            path, url = found
            if path.is_file():
                checks.append(Check(name, True, f"standard weights present: {path}"))
            else:
                checks.append(
                    Check(
                        name,
                        False,
                        f"standard weights ({spec.weights}) missing: {path} does not exist",
                        f"on a machine with internet download {url} and copy it to {path} "
                        f"(TORCH_HOME/hub/checkpoints/, TORCH_HOME defaulting to "
                        f"~/.cache/torch), {skip}",
                    )
                )
        elif hub is not None:
            checks.append(_hub_network_check(pk, name, *hub, skip))
        elif spec.offline and f"effnet-{name}" in encoders:
            row = encoders[f"effnet-{name}"]
            if row.available:
                checks.append(Check(name, True, f"packaged weights present: {row.location}"))
            else:
                checks.append(
                    Check(
                        name,
                        False,
                        f"packaged weights missing ({'; '.join(row.notes)})",
                        row.how_to_get or "reinstall fmri2image's core dependencies",
                    )
                )
        else:
            checks.append(Check(name, True, "weights not checked (no standard weights known)"))
    return checks


def _hub_network_check(
    pk: _Packages, name: str, repo: str, files: tuple[str, ...], skip: str
) -> Check:
    """A metric network whose weights are hub repository ``repo`` (CLIP)."""
    from fmri2image.features import ENCODERS
    from fmri2image.features.catalog import cached_hub_file
    from fmri2image.features.encoders._net import hf_cache_dir, offline_help

    cache = hf_cache_dir()
    have = {f: cached_hub_file(repo, f, cache) for f in files}
    # It is loaded by the hf: encoder family's code: what that family declares it needs.
    needs = _needs_of(ENCODERS, f"hf:{repo}")
    ok, dep_detail, dep_fix = _needs_check(pk, name, "metric network", needs)
    if all(have.values()):
        where = Path(str(next(iter(have.values())))).parent
        detail = f"standard weights ({repo}) in the hub cache: {where}"
        return Check(name, ok, detail if ok else f"{detail}; {dep_detail}", dep_fix)
    missing = ", ".join(f for f, hit in have.items() if not hit)
    detail = f"standard weights ({repo}) not in the hub cache {cache} (missing: {missing})"
    fix = f"{offline_help(repo, files=' '.join(files), cache_dir=cache)} Or {skip[3:]}."
    if not ok:
        detail += f"; {dep_detail}"
        fix = f"{dep_fix}; {fix}"
    return Check(name, False, detail, fix)


# --------------------------------------------------------------------------- data


def _wordnet_checks() -> list[Check]:
    from fmri2image.errors import Fmri2ImageError
    from fmri2image.wordnet import ENV_VAR, WordNet, find_wordnet_dir

    fix = (
        "apt-get install wordnet-base (Debian/Ubuntu), or `python -m nltk.downloader wordnet` "
        "and unzip nltk_data/corpora/wordnet.zip next to itself, or set "
        f"{ENV_VAR}=DIR to a folder holding the WordNet 3.0 files data.noun and index.noun"
    )
    try:
        folder = find_wordnet_dir()
    except Fmri2ImageError as exc:
        return [Check("WordNet 3.0", False, str(exc).split(" WordNet similarity")[0], fix)]
    try:
        WordNet.load(folder)  # memory-maps the files and checks the version header
    except Fmri2ImageError as exc:
        return [Check("WordNet 3.0", False, f"{folder}: {exc}", fix)]
    source = f" (from {ENV_VAR})" if os.environ.get(ENV_VAR) else ""
    return [Check("WordNet 3.0", True, f"{folder}{source}")]


#: The Dataset seam's splits, as the checks name them.
_SPLIT_WORDS = {"train": "training", "test": "test"}


def _data_checks(
    data: str | os.PathLike | None, dataset: str, options: dict[str, Any] | None = None
) -> list[Check]:
    """A data folder read through the Dataset seam (:func:`~fmri2image.data.get_dataset`):
    the folder, each subject's files (:meth:`~fmri2image.data.Dataset.files`), and the
    training and test stimuli (:meth:`~fmri2image.data.Dataset.stimuli`)."""
    from fmri2image.data import DATASETS, get_dataset
    from fmri2image.errors import Fmri2ImageError

    folder_check = f"{dataset.upper()} folder"
    if data is None:
        return [
            Check(
                folder_check,
                True,
                f"not checked: pass --data DIR (or its alias: pass --god DIR) to check a "
                f"folder of dataset {dataset!r}",
            )
        ]
    try:
        ds = get_dataset(dataset, data, **(options or {}))
    except Fmri2ImageError as exc:  # an unknown name, a bad option, a plugin that fails
        return [
            Check(
                folder_check,
                False,
                str(exc),
                f"pass --dataset NAME with a registered dataset: {', '.join(DATASETS.names())}",
            )
        ]
    folder = ds.path
    get = _layout_hint(ds, dataset)
    blocked = _blocked_folder(folder)  # Path.is_dir raises there (Python < 3.12)
    if blocked is not None:
        return [Check(folder_check, False, blocked[0], blocked[1])]
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        return [Check(folder_check, False, f"{folder} {what}", get)]
    blocked = _unreadable(folder)
    if blocked is None:
        try:
            with os.scandir(folder) as entries:
                next(entries, None)
        except OSError as exc:
            blocked = (f"{folder} cannot be listed ({exc})", _access_fix(folder, "u+rx"))
    if blocked is not None:
        return [Check(folder_check, False, blocked[0], blocked[1])]
    checks = [Check(folder_check, True, str(folder))]
    subjects = ds.subjects()
    if not subjects:
        checks.append(Check("subjects", False, f"no subject's fMRI files in {folder}", get))
    checks += [_subject_check(ds, n) for n in subjects]
    checks += [_stimuli_check(ds, split) for split in _SPLIT_WORDS]
    return checks


def _subject_check(ds: Any, subject: int) -> Check:
    from fmri2image.errors import Fmri2ImageError

    name = f"subject {subject}"
    releases = _god_releases(ds, subject)
    described = [f"{release} release: {', '.join(p.name for p in fs)}" for release, fs in releases]
    if len(releases) > 1:
        files = tuple(p for _, fs in releases for p in fs)
    else:
        try:
            files = tuple(ds.files(subject))
        except Fmri2ImageError as exc:  # the seam's message names the files it looked for
            return _os_error_check(name, "the fMRI files cannot be read", exc) or Check(
                name, False, "no complete set of fMRI files", str(exc)
            )
        except OSError as exc:
            return _os_error_check(name, "the fMRI files cannot be read", exc) or Check(
                name, False, f"the fMRI files cannot be looked up ({exc})", _folder_fix(ds.path)
            )
    detail = "; ".join(described) or ", ".join(_in_folder(p, ds.path) for p in files)
    for path in files:
        problem = _unreadable(path, read=True)
        if problem is not None:
            return Check(name, False, f"{detail}; {problem[0]}", problem[1])
    if len(releases) > 1:
        return Check(
            name,
            True,
            detail + " (both releases)",
            "choose one with --release spm|fmriprep when you run fmri2image (their voxels differ)",
            warning=True,
        )
    return Check(name, True, detail)


def _in_folder(path: Path, folder: Path) -> str:
    """``path`` relative to the data folder (``wds/subj01/train/0.tar``), else its name."""
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return Path(path).name


def _stimuli_check(ds: Any, split: str) -> Check:
    from fmri2image.errors import Fmri2ImageError, MissingDataFileError, MissingImageError

    word = _SPLIT_WORDS[split]
    name = f"{word} stimuli"
    try:
        stim = ds.stimuli(split)
    except MissingImageError as exc:
        return _god_missing_images(ds, split) or Check(
            name, False, f"{word} stimulus images missing", str(exc)
        )
    except MissingDataFileError as exc:  # the seam's message names what it looked for
        return Check(name, False, f"no {word} stimulus list found in {ds.path}", str(exc))
    except Fmri2ImageError as exc:
        return _os_error_check(name, f"the {word} stimuli cannot be read", exc) or Check(
            name, False, f"the {word} stimuli cannot be read", str(exc)
        )
    except OSError as exc:  # an id file or image folder this user cannot read, ...
        return _os_error_check(name, f"the {word} stimuli cannot be read", exc) or Check(
            name, False, f"the {word} stimuli cannot be read ({exc})", _folder_fix(ds.path)
        )
    source = stim.source.name if stim.source is not None else "the dataset"
    if stim.files is None:
        return Check(name, True, f"{len(stim)} stimuli listed in {source} (images inside it)")
    missing, unreadable = _missing_and_unreadable(stim.files)
    folders = sorted({str(p.parent) for p in stim.files})
    where = folders[0] if len(folders) == 1 else f"{len(folders)} folders"
    n = len(stim)
    detail = f"{n - len(missing)} of {n} images listed in {source} present in {where}"
    if not missing and not unreadable:
        return Check(name, True, detail)
    details, fixes = [detail], []
    if missing:
        details.append(f"missing e.g. {missing[0].name}")
        fixes.append(f"put the {len(missing)} missing {word} images back (e.g. {missing[0]})")
    if unreadable:
        why, fix = _unreadable_files(unreadable, f"{word} images")
        details.append(why)
        fixes.append(fix)
    return Check(name, False, "; ".join(details), "; ".join(fixes))


# --------------------------------------------------------------------------- readability
# A file that exists but that this user cannot read is reported as such, with a fix that
# names the permission (never "reinstall"): os.access for each file (one cheap system
# call, so a folder of thousands of images is checked in milliseconds), plus opening
# and reading a few bytes of the few fMRI files.


def _can(path: str | os.PathLike, mode: int) -> bool:
    """``os.access`` for the effective user (the one that will open the file)."""
    if os.access in os.supports_effective_ids:
        return os.access(path, mode, effective_ids=True)
    return os.access(path, mode)


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):03o}"


def _access_fix(path: Path, perm: str, st: os.stat_result | None = None) -> str:
    """The command that gives this user ``perm`` (``u+r``, ``u+rx``, ``-R u+rX``) on ``path``."""
    if st is None:
        try:
            st = path.stat()
        except OSError:
            return f"check the permissions of {path} and of the folders above it"
    quoted = shlex.quote(str(path))
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None or st.st_uid == geteuid():
        return f"chmod {perm} {quoted}"
    others = perm.replace("u+", "a+")
    return (
        f"{path} belongs to another user (uid {st.st_uid}): ask them or an administrator "
        f"to make it readable to you (chmod {others} {quoted}), or copy it to a folder of yours"
    )


def _blocked_folder(path: Path) -> tuple[str, str] | None:
    """The first folder above ``path`` this user cannot enter (no ``x``), with the fix;
    ``None`` when every folder on the way can be entered, or one does not exist."""
    for folder in reversed(path.absolute().parents):
        if _can(folder, os.X_OK):
            continue
        try:  # the folder above it could be entered, so this stat is allowed
            st = folder.stat()
        except OSError:  # it does not exist: not a permission problem
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        return (
            f"the folder {folder} cannot be entered by this user (mode {_mode(st)}), so "
            f"{path.name} in it cannot be read",
            _access_fix(folder, "u+rx", st),
        )
    return None


def _unreadable(path: Path, *, read: bool = False) -> tuple[str, str] | None:
    """``(what is wrong, the fix)`` when this user cannot read ``path`` (a file, or a
    folder: read and enter it); ``None`` when it can.  ``read``: also open the file and
    read a few bytes (what ``os.access`` cannot see: ACLs, file systems that refuse)."""
    blocked = _blocked_folder(path)
    if blocked is not None:
        return blocked
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{path} does not exist", f"put {path.name} back in {path.parent}"
    except OSError as exc:
        return f"{path} cannot be examined ({exc.strerror or exc})", _folder_fix(path.parent)
    is_dir = stat.S_ISDIR(st.st_mode)
    if not _can(path, os.R_OK | (os.X_OK if is_dir else 0)):
        what = "folder " if is_dir else ""
        return (
            f"{what}{path.name} is not readable by this user (mode {_mode(st)})",
            _access_fix(path, "u+rx" if is_dir else "u+r", st),
        )
    if read and not is_dir:
        try:
            with open(path, "rb") as fh:
                fh.read(8)
        except OSError as exc:
            return (
                f"{path.name} cannot be opened for reading ({exc.strerror or exc})",
                f"check that this user can read {path} (its permissions and ACLs, the disk)",
            )
    return None


def _folder_fix(folder: str | os.PathLike) -> str:
    return f"check that this user can read the files and folders in {folder}"


def _os_error_check(name: str, what: str, exc: BaseException) -> Check | None:
    """A failed check naming the file an ``OSError`` (``exc`` itself, or the error it
    was raised from) could not read and why (not readable by this user: the chmod that
    fixes it); ``None`` when no such file is named, or when ``exc`` only wraps the
    error and the file reads fine now (the wrapper's own message is then the better)."""
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.filename and not isinstance(err, FileNotFoundError):
            path = Path(os.fsdecode(err.filename))
            problem = _unreadable(path, read=True)
            if problem is not None:
                return Check(name, False, f"{what}: {problem[0]}", problem[1])
            if err is not exc:
                return None
            return Check(
                name,
                False,
                f"{what}: {path} ({err.strerror or err})",
                f"check that this user can read {path}",
            )
        err = err.__cause__ or err.__context__
    return None


def _missing_and_unreadable(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """The files that do not exist and those this user cannot read: one ``os.access``
    per file (no image is opened or decoded); a stat only for those that fail it."""
    missing: list[Path] = []
    unreadable: list[Path] = []
    for path in files:
        if _can(path, os.R_OK):
            continue
        try:
            path.stat()
        except FileNotFoundError:
            missing.append(path)
            continue
        except OSError:  # a folder above it cannot be entered: it is there, unreadable
            pass
        unreadable.append(path)
    return missing, unreadable


def _unreadable_files(paths: Sequence[Path], what: str) -> tuple[str, str]:
    """``(detail, fix)`` for files that exist but this user cannot read."""
    first = paths[0]
    problem = _unreadable(first) or (
        f"{first.name} is not readable by this user",
        _access_fix(first, "u+r"),
    )
    n = len(paths)
    if n == 1:
        return f"1 not readable: {problem[0]}", problem[1]
    detail = f"{n} not readable by this user, e.g. {problem[0]}"
    folders = sorted({p.parent for p in paths})
    try:
        owner = first.stat().st_uid
    except OSError:  # a folder above it cannot be entered: that folder's fix
        owner = None
    geteuid = getattr(os, "geteuid", None)
    if owner is not None and len(folders) <= 3:
        commands = "; ".join(f"chmod -R u+rX {shlex.quote(str(f))}" for f in folders)
        if geteuid is None or owner == geteuid():
            return detail, f"make the {n} {what} readable: {commands}"
        return detail, (
            f"the {n} {what} belong to another user (uid {owner}): ask them or an "
            f"administrator to make them readable to you ({commands.replace('u+rX', 'a+rX')}), "
            "or copy them to a folder of yours"
        )
    return detail, f"make the {n} {what} readable, e.g. {problem[1]}"


# GOD extras: what the Dataset seam does not say (the release a subject's files belong
# to, how many stimulus images are missing) and GOD's folder layout, in words.

_GOD_LAYOUT = (
    "pass the folder that holds SubjectN.h5 (SPM release) or SubjectN_ImageNetTraining.h5 "
    "and SubjectN_ImageNetTest.h5 (fmriprep release) and the stimulus id files; "
    "`fmri2image make-demo-data DIR` writes a demo folder in this layout"
)


def _is_god(ds: Any) -> bool:
    from fmri2image.data.god import GODDataset

    return isinstance(ds, GODDataset)


def _layout_hint(ds: Any, dataset: str) -> str:
    """What folder to pass: GOD's layout, or the dataset's own description."""
    if _is_god(ds):
        return _GOD_LAYOUT
    about = type(ds).description
    where = type(ds).where_to_get
    return (
        f"pass the folder of dataset {dataset!r}"
        + (f" ({about})" if about else "")
        + (f"; {where}" if where else "")
    )


def _god_releases(ds: Any, subject: int) -> list[tuple[str, tuple[Path, ...]]]:
    """GOD: ``(release, files)`` for each release whose files of ``subject`` are
    complete (read through the seam, one release option at a time)."""
    from fmri2image.errors import Fmri2ImageError

    if not _is_god(ds):
        return []
    found = []
    for release in ("spm", "fmriprep"):
        try:
            files = type(ds)(ds.path, release=release).files(subject)
        except Fmri2ImageError:
            continue
        found.append((release, tuple(files)))
    return found


def _god_missing_images(ds: Any, split: str) -> Check | None:
    """GOD: how many of a split's images are missing (the seam stops at the first)."""
    if not _is_god(ds):
        return None
    from fmri2image.data.stimuli import load_stimulus_set

    word = _SPLIT_WORDS[split]
    stim = load_stimulus_set(ds.path, word, allow_missing=True)  # type: ignore[arg-type]
    if not stim.missing:
        return None
    detail = (
        f"{len(stim) - len(stim.missing)} of {len(stim)} images listed in "
        f"{stim.id_file.name} present in {stim.image_dir}"
    )
    if not stim.image_dir.is_dir():
        detail += " (the folder does not exist)"
    else:
        detail += f"; missing e.g. {Path(stim.missing[0]).name}"
    return Check(
        f"{word} stimuli",
        False,
        detail,
        f"put the {len(stim.missing)} missing {word} images in {stim.image_dir} (the GOD "
        "stimulus images come from the dataset authors); `fmri2image data-info --god "
        f"{ds.path} --subject N` lists every missing image",
    )


# --------------------------------------------------------------------------- disk


def _disk_check(name: str, path: str | os.PathLike, what: str) -> Check:
    target = Path(path).expanduser().absolute()
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError as exc:
        return Check(
            name,
            False,
            f"cannot read the free space at {target} ({exc})",
            f"check that {probe} is readable",
        )
    gb = usage.free / 1e9
    where = str(target) if probe == target else f"{target} (not created yet; measured at {probe})"
    detail = f"{gb:.1f} GB free of {usage.total / 1e9:.1f} GB at {where}; {what}"
    if usage.free >= LOW_DISK_BYTES:
        return Check(name, True, detail)
    return Check(
        name,
        True,
        detail,
        f"less than {LOW_DISK_BYTES / 1e9:.0f} GB free: free some space, or put the caches on "
        "a bigger disk (HF_HOME for the Hugging Face hub, TORCH_HOME for torch checkpoints) "
        "and outputs elsewhere (--out); a Stable Diffusion model alone is ~5 GB",
        warning=True,
    )


def _disk_checks(cache: str | os.PathLike | None) -> list[Check]:
    from fmri2image.features.encoders._net import hf_cache_dir, torch_checkpoint_dir

    if cache is not None:
        checks = [_disk_check("cache (--cache)", cache, "the folder given with --cache")]
    else:
        checks = [
            _disk_check(
                "hub cache",
                hf_cache_dir(),
                "Hugging Face hub downloads (HF_HOME / HF_HUB_CACHE): transformers "
                "encoders, CLIP, Stable Diffusion",
            ),
            _disk_check(
                "torch checkpoints",
                torch_checkpoint_dir(),
                "torch hub downloads (TORCH_HOME): torchvision encoders and metric networks",
            ),
        ]
    checks.append(
        _disk_check("current folder", os.getcwd(), "where relative --out folders are written")
    )
    return checks


# --------------------------------------------------------------------------- entry


def diagnose(
    *,
    data: str | os.PathLike | None = None,
    dataset: str = "god",
    cache: str | os.PathLike | None = None,
    god: str | os.PathLike | None = None,
    options: dict[str, Any] | None = None,
) -> Report:
    """Check this machine (never the network) and return the :class:`Report`.

    Parameters
    ----------
    data : path, optional
        A data folder of ``dataset`` to check (subjects' files, stimuli, images).
    dataset : str
        The :data:`~fmri2image.data.DATASETS` name ``data`` is read as (default GOD).
    cache : path, optional
        The folder whose free space is checked instead of the download caches (the
        Hugging Face hub cache and the torch checkpoint folder).
    god : path, optional
        The former name of ``data`` (a GOD folder), kept as an alias.
    options : dict, optional
        The dataset's options (``data.options``; NSD: ``sessions``).
    """
    data = data if data is not None else god
    try:
        packages = _collect_packages()
    except Exception:  # unreadable metadata: every package then looks missing
        packages = _Packages()
    rows: dict[str, Any] = {}

    def encoders() -> list[Check]:
        checks, found = _encoder_checks(packages)
        rows.update(found)
        return checks

    parts = [
        ("system", "System", _system_checks),
        ("packages", "Packages and optional extras", lambda: _package_checks(packages)),
        ("plugins", "Plugins (installed entry points)", _plugin_checks),
        ("encoders", "Encoders (--model)", encoders),
        ("mappers", "Mapping models (mapping.mappers)", lambda: _mapper_checks(packages)),
        ("generators", "Generators (--generator)", lambda: _generator_checks(packages)),
        (
            "metric_networks",
            "Metric networks (fmri2image evaluate)",
            lambda: _metric_network_checks(packages, rows),
        ),
        ("metrics", "Metrics (fmri2image evaluate)", lambda: _metric_checks(packages)),
        ("datasets", "Datasets (--dataset)", lambda: _dataset_checks(packages)),
        ("wordnet", "WordNet (label similarity)", _wordnet_checks),
        # The key predates --dataset (GOD was the only dataset); kept for JSON readers.
        ("god", f"Data (--data, dataset {dataset})", lambda: _data_checks(data, dataset, options)),
        ("disk", "Disk space", lambda: _disk_checks(cache)),
    ]
    return Report(tuple(_section(key, title, build) for key, title, build in parts))


def _section(key: str, title: str, build: Callable[[], list[Check]]) -> Section:
    """A section; an unexpected error while checking becomes one failed check, not a crash."""
    try:
        return Section(key, title, tuple(build()))
    except Exception as exc:
        unreadable = _os_error_check(f"{key} checks", "could not be checked", exc)
        if unreadable is not None:  # a file this user cannot read: not an install problem
            return Section(key, title, (unreadable,))
        missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
        fix = (
            f"pip install {missing}"
            if missing
            else "reinstall fmri2image (pip install --force-reinstall fmri2image); if the "
            "error stays, report it with this message"
        )
        detail = f"could not be checked ({type(exc).__name__}: {exc})"
        return Section(key, title, (Check(f"{key} checks", False, detail, fix),))
