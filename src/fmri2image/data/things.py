"""THINGS-fMRI (Hebart et al. 2023) behind the dataset seam.

Three subjects each saw 8,640 training images once (720 THINGS concepts × 12
images) and 100 test images 12 times (once per session; 12 sessions × 10 runs).
Test images show training concepts but are not training images.  Two releases of
the single-trial responses are read:

* **the table release** (figshare+, DOI 10.25452/figshare.plus.20492835.v2), per
  subject ``N``:

  - ``sub-0N_ResponseData.h5``: one pandas DataFrame (``pd.read_hdf`` without a
    key; the key is ``ResponseData``, fixed format): rows are voxels, columns
    ``voxel_id`` then the trials ``0 .. 9839``;
  - ``sub-0N_StimulusMetadata.csv``: one row per trial (row *i* = trial column
    *i*, named by ``trial_id``): ``trial_type`` (``train``/``test``), ``session``,
    ``run``, ``subject_id``, ``trial_id``, ``stimulus`` (``dog_12s.jpg``),
    ``concept`` (``dog``);
  - ``sub-0N_VoxelMetadata.csv``: one row per voxel (ResponseData's row order):
    ``voxel_id``, ``voxel_x/y/z``, noise ceilings, pRF estimates, the 0/1 ROI
    columns :data:`ROI_COLUMNS` and 180 ``glasser-*`` columns (two of whose names
    hold a line break: ``"glasser-p9-\\n46v"``).

  The three files may sit in the dataset folder or in one folder below it (the
  archive unpacks to ``betas_csv/``).
* **KamitaniLab's BData conversion** (``bdata-datasets/THINGS-fMRI``): ``sub-0N.h5``
  (every trial), or ``sub-0N_training.h5`` + ``sub-0N_test.h5``, in the folder or one
  folder below it (the converter writes ``output/``).  Keys ``VoxelData``,
  ``trial_id``, ``session``, ``run`` (numbered on across sessions), ``trial_type``
  (1 train, 2 test; vmap) and ``stimulus_name`` (vmap to ``dog_12s``), and every
  VoxelMetadata column as a per-voxel key.

With ``release="auto"`` the table release is read when its three files are there,
else the BData conversion.

ROIs are VoxelMetadata column names joined with ``+`` (a union, no quotes needed):
``"V1"``, ``"lFFA + rFFA"``, ``"LO1 (prf)"``, ``"glasser-p9-46v"`` (line breaks and
spaces in names are ignored when matching).  Shorthands: ``"FFA"`` = ``lFFA + rFFA``
(any category ROI without its hemisphere prefix), ``"LO1"`` = ``"LO1 (prf)"``,
``"glasser-V*"`` (wildcard), and ``"VC"`` = the union of the 30 retinotopic and
category-selective columns (:data:`ROI_COLUMNS`, ``IT`` included; no
``glasser-*``), the default.

Stimulus images are those of the THINGS database (OSF, https://osf.io/jum2f/, a
password-protected zip), expected as ``DIR/images/<concept>/<stimulus>``
(``DIR/object_images/`` is accepted too).  Labels are the concept names as text
(``ice_cream`` → ``"ice cream"``); with the THINGS concept table
``DIR/things_concepts.tsv`` they are WordNet ids when every concept has one.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmri2image.data.dataset import Dataset, Recording, RemoteFile, Stimuli, make_dataset_options
from fmri2image.data.fixtures import FixturePictures, Respond
from fmri2image.errors import (
    ConfigError,
    DataFormatError,
    Fmri2ImageError,
    MissingDataFileError,
    MissingImageError,
)
from fmri2image.registry import Needs

__all__ = [
    "CATEGORY_ROIS",
    "FIGSHARE_ARTICLE",
    "RETINOTOPIC_ROIS",
    "ROI_COLUMNS",
    "ThingsDataset",
    "ThingsFixture",
    "ThingsOptions",
    "concept_wnids",
    "resolve_roi",
    "write_things_fixture",
]

logger = logging.getLogger(__name__)

#: figshare+ article of the table release (DOI 10.25452/figshare.plus.20492835.v2).
FIGSHARE_ARTICLE = 20492835
FIGSHARE_DOI = "10.25452/figshare.plus.20492835.v2"
#: Where the THINGS database images are.
IMAGES_URL = "https://osf.io/jum2f/"
#: Retinotopic (pRF-defined) ROI columns of the VoxelMetadata.
RETINOTOPIC_ROIS = (
    "V1", "V2", "V3", "hV4", "VO1", "VO2", "LO1 (prf)", "LO2 (prf)", "TO1", "TO2",
    "V3b", "V3a",
)  # fmt: skip
#: Category-selective (localizer) ROI columns, and IT.
CATEGORY_ROIS = (
    "lEBA", "rEBA", "lFFA", "rFFA", "lOFA", "rOFA", "lSTS", "rSTS", "lPPA", "rPPA",
    "lRSC", "rRSC", "lTOS", "rTOS", "lLOC", "rLOC", "IT",
)  # fmt: skip
#: The 30 ROI columns whose union is ``VC``.
ROI_COLUMNS = RETINOTOPIC_ROIS + CATEGORY_ROIS
#: VoxelMetadata columns that are not ROIs.
VOXEL_INFO_COLUMNS = (
    "voxel_id", "subject_id", "voxel_x", "voxel_y", "voxel_z", "nc_singletrial",
    "nc_testset", "splithalf_uncorrected", "splithalf_corrected", "prf-eccentricity",
    "prf-polarangle", "prf-rsquared", "prf-size",
)  # fmt: skip
GLASSER_PREFIX = "glasser-"
VC = "VC"
#: The HDF key of the ResponseData frame.
RESPONSE_KEY = "ResponseData"
#: BData ``trial_type`` codes (KamitaniLab's conversion).
TRIAL_TYPES = {1: "train", 2: "test"}
_BDATA_KEYS = ("VoxelData", "trial_type", "stimulus_name", "session", "run")
IMAGE_FOLDERS = ("images", "object_images")
CONCEPT_TABLE = "things_concepts.tsv"
_RELEASES = ("auto", "table", "bdata")
_WNID = re.compile(r"^n\d{8}$")
_SYNSET_NAME = re.compile(r"^(?P<lemma>[^\s]+)\.n\.(?P<sense>\d+)$")
_CHUNK_VALUES = 1 << 24  # values per ResponseData read (~128 MB of float64)


def _table_names(n: int) -> tuple[str, str, str]:
    return (
        f"sub-{n:02d}_ResponseData.h5",
        f"sub-{n:02d}_StimulusMetadata.csv",
        f"sub-{n:02d}_VoxelMetadata.csv",
    )


def _display(name: str) -> str:
    """A column name without line breaks (``glasser-p9-\\n46v`` -> ``glasser-p9-46v``)."""
    return name.replace("\r", "").replace("\n", "")


def _canon(name: str) -> str:
    """The matching form of a name: no whitespace at all."""
    return "".join(str(name).split())


def _is_roi_column(name: str) -> bool:
    return name in ROI_COLUMNS or name.startswith(GLASSER_PREFIX)


# ---------------------------------------------------------------------- ROIs
def resolve_roi(expr: str, columns: Sequence[str], *, source: str | os.PathLike = "") -> list[str]:
    """The ROI columns an expression names (their union), in ``columns`` order.

    Parameters
    ----------
    expr : str
        Column names joined with ``+``; see the module docstring for shorthands.
    columns : sequence of str
        The ROI columns a file has (raw names).
    source : str or path, optional
        The file, for error messages.

    Raises
    ------
    ConfigError
        An empty expression, or a name that is no ROI (with close matches).
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigError(f"Empty THINGS-fMRI ROI {expr!r}; name one, e.g. 'VC', 'V1' or 'FFA'.")
    exact = {_canon(c): c for c in columns}
    short: dict[str, list[str]] = {}
    for c in columns:
        if c in CATEGORY_ROIS and c[0] in "lr":
            short.setdefault(_canon(c[1:]), []).append(c)
        if c.endswith("(prf)"):
            short.setdefault(_canon(c[: -len("(prf)")]), []).append(c)
    chosen: set[str] = set()
    for term in expr.split("+"):
        key = _canon(term)
        if not key:
            raise ConfigError(
                f"ROI {expr!r} has an empty term; join column names with ' + ', e.g. 'lFFA + rFFA'."
            )
        if key in exact:
            chosen.add(exact[key])
        elif key == VC:
            chosen.update(c for c in columns if c in ROI_COLUMNS)
        elif key in short:
            chosen.update(short[key])
        elif "*" in key and any(fnmatch.fnmatchcase(_canon(c), key) for c in columns):
            chosen.update(c for c in columns if fnmatch.fnmatchcase(_canon(c), key))
        else:
            names = [VC, *sorted(short), *(_display(c) for c in columns)]
            close = difflib.get_close_matches(term.strip(), names, n=5)
            where = f" in {source}" if source else ""
            raise ConfigError(
                f"THINGS-fMRI ROI {term.strip()!r} (of {expr!r}) is not a ROI column{where}."
                + (f" Did you mean: {', '.join(close)}?" if close else "")
                + " Use VoxelMetadata ROI columns joined with ' + ' (e.g. 'V1', "
                "'lFFA + rFFA', 'LO1 (prf)', 'glasser-V*'), a shorthand without the "
                "hemisphere ('FFA'), or 'VC' (every retinotopic and category ROI)."
            )
    return [c for c in columns if c in chosen]


def _roi_sizes(masks: Mapping[str, np.ndarray]) -> dict[str, int]:
    sizes = {_display(k): int(v.sum()) for k, v in masks.items()}
    vc = [v for k, v in masks.items() if k in ROI_COLUMNS]
    if vc:
        sizes[VC] = int(np.logical_or.reduce(vc).sum())
    return sizes


# ---------------------------------------------------------------------- reading helpers
def _pandas():
    from fmri2image.errors import require

    return require("pandas", "things", "Reading the THINGS-fMRI table release")


def _read_csv(path: Path, what: str, **kw: Any):
    pd = _pandas()
    try:
        return pd.read_csv(path, **kw)
    except FileNotFoundError as exc:
        raise MissingDataFileError(f"{what} {path} does not exist.") from exc
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataFormatError(
            f"{what} {path} cannot be read as a CSV table ({exc}). The file is damaged or "
            "incomplete: download it again (figshare+ "
            f"{FIGSHARE_DOI})."
        ) from exc


def _require_columns(df: Any, path: Path, names: Sequence[str]) -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise DataFormatError(
            f"{path} lacks the column(s) {', '.join(missing)}; columns present: "
            f"{', '.join(map(str, list(df.columns)[:12]))}"
            f"{', ...' if len(df.columns) > 12 else ''}. Is it a THINGS-fMRI table-release "
            f"file (figshare+ {FIGSHARE_DOI})? Download it again."
        )


def _int_column(df: Any, name: str, path: Path) -> np.ndarray:
    values = np.asarray(_pandas().to_numeric(df[name], errors="coerce"), dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        raise DataFormatError(
            f"{int(bad.sum())} rows of {path} have no integer {name!r} (first at row "
            f"{int(np.flatnonzero(bad)[0])}). The file is damaged; download it again."
        )
    return values.astype(np.int64)


def _concept_of(stem: str) -> str:
    """THINGS image stems are ``<concept>_<NN><letter>`` (``ice_cream_03s``)."""
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


@dataclass(frozen=True, eq=False)
class _Trials:
    """One subject's trials (metadata only), in file order; unknown trial types dropped."""

    split: np.ndarray  # object: "train" / "test"
    stem: np.ndarray  # object: "dog_12s"
    filename: np.ndarray  # object: "dog_12s.jpg"
    concept: np.ndarray  # object: "dog"
    runs: np.ndarray  # int64: one number per (session, run)
    keep: np.ndarray  # bool over the file's trials
    sources: tuple[Path, ...]
    columns: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))


def _dense_runs(session: np.ndarray, run: np.ndarray) -> np.ndarray:
    """One integer per distinct (session, run), in session-then-run order."""
    pairs = np.stack([session, run], axis=1)
    _, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def _check_no_leak(trials: _Trials) -> None:
    train = set(trials.stem[trials.split == "train"].tolist())
    both = sorted(train & set(trials.stem[trials.split == "test"].tolist()))
    if both:
        raise DataFormatError(
            f"{len(both)} stimuli of {', '.join(p.name for p in trials.sources)} are both "
            f"training and test trials (e.g. {', '.join(both[:3])}); test images must not be "
            "trained on. The trial_type column is damaged: download the file again."
        )


# ---------------------------------------------------------------------- table release
@dataclass(frozen=True)
class _TableFiles:
    response: Path
    stimulus: Path
    voxel: Path


def _table_trials(files: _TableFiles) -> _Trials:
    path = files.stimulus
    df = _read_csv(path, "THINGS-fMRI stimulus metadata")
    _require_columns(df, path, ("trial_type", "session", "run", "stimulus"))
    ttype = df["trial_type"].astype(str).str.strip().str.lower().to_numpy(dtype=object)
    keep = np.isin(ttype, ["train", "test"])
    if not keep.all():
        logger.info(
            "%s: ignoring %d trials whose trial_type is not train/test",
            path.name,
            int((~keep).sum()),
        )
    session = _int_column(df, "session", path)
    run = _int_column(df, "run", path)
    stim = df["stimulus"].astype(str).str.strip().to_numpy(dtype=object)
    if any(not s or s == "nan" for s in stim[keep]):
        raise DataFormatError(
            f"{path} has trials without a stimulus file name; download the file again."
        )
    filename = np.array([s.replace("\\", "/").rsplit("/", 1)[-1] for s in stim], dtype=object)
    stem = np.array([os.path.splitext(f)[0] for f in filename], dtype=object)
    if "concept" in df.columns:
        concept = df["concept"].astype(str).str.strip().to_numpy(dtype=object)
    else:
        concept = np.array([_concept_of(s) for s in stem], dtype=object)
    columns = np.arange(len(df), dtype=np.int64)
    if "trial_id" in df.columns:
        columns = _int_column(df, "trial_id", path)
    trials = _Trials(
        split=ttype[keep],
        stem=stem[keep],
        filename=filename[keep],
        concept=concept[keep],
        runs=_dense_runs(session[keep], run[keep]),
        keep=keep,
        sources=(files.response, files.stimulus, files.voxel),
        columns=columns,
    )
    _check_no_leak(trials)
    return trials


@dataclass(frozen=True, eq=False)
class _VoxelTable:
    voxel_ids: np.ndarray  # float64
    masks: dict[str, np.ndarray]  # raw ROI column name -> bool


def _voxel_table(path: Path) -> _VoxelTable:
    df = _read_csv(path, "THINGS-fMRI voxel metadata")
    _require_columns(df, path, ("voxel_id",))
    pd = _pandas()
    masks = {}
    for col in df.columns:
        name = str(col)
        if _is_roi_column(name):
            values = np.asarray(pd.to_numeric(df[col], errors="coerce"), dtype=np.float64)
            masks[name] = values == 1
    if not masks:
        raise DataFormatError(
            f"{path} has no ROI column (V1, ..., IT, glasser-*); it is not a THINGS-fMRI "
            "VoxelMetadata file, or it is damaged. Download it again."
        )
    ids = np.asarray(pd.to_numeric(df["voxel_id"], errors="coerce"), dtype=np.float64)
    return _VoxelTable(voxel_ids=ids, masks=masks)


def _hdf_error(path: Path, exc: BaseException) -> DataFormatError:
    return DataFormatError(
        f"{path} cannot be read as the pandas HDF5 table of THINGS-fMRI single-trial "
        f"responses ({type(exc).__name__}: {exc}). A truncated or interrupted download "
        f"causes this: download it again (figshare+ {FIGSHARE_DOI}) and retry."
    )


def _read_responses(
    files: _TableFiles,
    trials: _Trials,
    voxels: _VoxelTable,
    rows: np.ndarray,
) -> np.ndarray:
    """The responses of voxel rows ``rows`` (increasing) to the kept trials, float32 of
    shape (n_kept_trials, len(rows)); read in row chunks so a ROI of a 17 GB file does
    not load it whole.  The voxel ids of the rows read are checked against the
    VoxelMetadata, and so is the row count."""
    pd = _pandas()
    from fmri2image.errors import require

    require("tables", "things", "Reading THINGS-fMRI ResponseData.h5 (pandas HDF)")
    path = files.response
    n_meta = int(voxels.voxel_ids.size)
    n_trials = int(trials.keep.size)
    out = np.empty((int(trials.keep.sum()), rows.size), dtype=np.float32)
    if not path.is_file():
        raise MissingDataFileError(f"THINGS-fMRI response file {path} does not exist.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            store = pd.HDFStore(path, mode="r")
    except Exception as exc:  # PyTables raises many kinds for a bad file
        raise _hdf_error(path, exc) from exc
    try:
        with store:
            keys = [k.lstrip("/") for k in store.keys()]
            if len(keys) == 1:
                key = keys[0]
            elif RESPONSE_KEY in keys:
                key = RESPONSE_KEY
            else:
                raise DataFormatError(
                    f"{path} holds {len(keys)} HDF objects ({', '.join(keys) or 'none'}); the "
                    f"THINGS-fMRI response file holds one DataFrame ({RESPONSE_KEY!r}). Download "
                    "it again."
                )
            # The row count, without reading every row: rows n-1 .. n+1 hold exactly one.
            probe = store.select(key, start=max(n_meta - 1, 0), stop=n_meta + 1)
            if "voxel_id" not in probe.columns:
                raise DataFormatError(
                    f"{path} has no 'voxel_id' column (columns "
                    f"{', '.join(map(str, list(probe.columns)[:5]))}, ...); it is not a "
                    "THINGS-fMRI ResponseData file. Download it again."
                )
            labels = [c for c in probe.columns if c != "voxel_id"]
            if len(labels) != n_trials:
                raise DataFormatError(
                    f"{path} has {len(labels)} trial columns but {files.stimulus} lists "
                    f"{n_trials} trials; the two files must describe the same trials (row i of "
                    "the stimulus metadata = trial column i). Do not mix files of different "
                    "subjects or versions; download both again."
                )
            n_rows = n_meta - 1 + len(probe) if n_meta else len(probe)
            if len(probe) != (1 if n_meta else 0):
                raise DataFormatError(
                    f"{path} does not have the {n_meta} voxel rows that {files.voxel} lists "
                    f"({'more' if len(probe) > 1 else 'fewer'}: {n_rows}). Do not mix files "
                    "of different subjects or versions; download both again."
                )
            position = {str(c): i for i, c in enumerate(probe.columns)}
            wanted = [str(t) for t in trials.columns]
            if all(w in position for w in wanted) and len(set(wanted)) == len(wanted):
                cols = np.asarray([position[w] for w in wanted], dtype=np.int64)
            else:
                logger.info("%s: trial_id does not name the trial columns; reading by position",
                            files.stimulus.name)  # fmt: skip
                cols = np.asarray([position[str(c)] for c in labels], dtype=np.int64)
            cols = cols[trials.keep]
            step = max(1, _CHUNK_VALUES // max(len(probe.columns), 1))
            chunks = np.unique(rows // step)
            done = 0
            for c in chunks.tolist():
                start, stop = c * step, min((c + 1) * step, n_meta)
                sel = rows[(rows >= start) & (rows < stop)]
                frame = store.select(key, start=start, stop=stop)
                block = frame.iloc[sel - start]
                ids = np.asarray(block["voxel_id"], dtype=np.float64)
                expect = voxels.voxel_ids[sel]
                if not np.array_equal(ids, expect, equal_nan=True):
                    k = int(
                        np.flatnonzero(~((ids == expect) | (np.isnan(ids) & np.isnan(expect))))[0]
                    )
                    raise DataFormatError(
                        f"The voxel ids of {path} and {files.voxel} disagree (row {int(sel[k])}: "
                        f"{ids[k]:g} vs {expect[k]:g}); row i of the voxel metadata must describe "
                        "voxel row i of the responses. Do not mix files of different subjects; "
                        "download both again."
                    )
                out[:, done : done + sel.size] = block.iloc[:, cols].to_numpy(np.float32).T
                done += sel.size
            last = np.asarray(probe["voxel_id"], dtype=np.float64)[:1]
            if n_meta and not np.array_equal(last, voxels.voxel_ids[-1:], equal_nan=True):
                raise DataFormatError(
                    f"The voxel ids of {path} and {files.voxel} disagree (last row: "
                    f"{last[0]} vs {voxels.voxel_ids[-1]}). Do not mix files of different "
                    "subjects; download both again."
                )
    except Fmri2ImageError:
        raise
    except Exception as exc:  # damaged HDF data blocks, unpicklable labels
        raise _hdf_error(path, exc) from exc
    return out


# ---------------------------------------------------------------------- BData release
def _bdata_trials(paths: tuple[Path, ...]) -> tuple[_Trials, list[Any]]:
    from fmri2image.data.bdata import read_bdata

    bds = [read_bdata(p) for p in paths]
    parts = []
    for bd in bds:
        missing = [k for k in _BDATA_KEYS if k not in bd]
        if missing:
            raise DataFormatError(
                f"{bd.path} lacks the BData key(s) {', '.join(missing)} of KamitaniLab's "
                f"THINGS-fMRI conversion (keys present: {', '.join(bd.keys[:12])}"
                f"{', ...' if len(bd.keys) > 12 else ''}). Make the file with "
                "bdata-datasets/THINGS-fMRI/make_bdata_thingsfmri.py."
            )
        if "stimulus_name" not in bd.vmap:
            raise DataFormatError(
                f"{bd.path} has no vmap for 'stimulus_name', so its trials cannot be mapped "
                "to images. Make the file with bdata-datasets' make_bdata_thingsfmri.py."
            )
        codes = {k: bd.get(k) for k in ("trial_type", "stimulus_name", "session", "run")}
        for name, arr in codes.items():
            if np.isnan(arr).any():
                raise DataFormatError(
                    f"{int(np.isnan(arr).sum())} samples of {bd.path} have NaN {name}; the "
                    "file is damaged. Make or download it again."
                )
        tmap = {float(k): str(v).strip().lower() for k, v in bd.vmap.get("trial_type", {}).items()}
        tmap = tmap or {float(k): v for k, v in TRIAL_TYPES.items()}
        ttype = np.array([tmap.get(float(v), "") for v in codes["trial_type"]], dtype=object)
        smap = bd.vmap["stimulus_name"]
        unknown = sorted({float(v) for v in codes["stimulus_name"]} - set(smap))
        if unknown:
            raise DataFormatError(
                f"{bd.path}: stimulus_name values {unknown[:3]} are not in its vmap; the file "
                "is damaged. Make it again."
            )
        names = [os.path.splitext(str(smap[float(v)]).strip())[0] for v in codes["stimulus_name"]]
        parts.append((ttype, names, codes["session"], codes["run"]))
    ttype = np.concatenate([p[0] for p in parts])
    stems = np.array([s for p in parts for s in p[1]], dtype=object)
    session = np.concatenate([p[2] for p in parts]).astype(np.int64)
    run = np.concatenate([p[3] for p in parts]).astype(np.int64)
    keep = np.isin(ttype, ["train", "test"])
    trials = _Trials(
        split=ttype[keep],
        stem=stems[keep],
        filename=np.array([f"{s}.jpg" for s in stems[keep]], dtype=object),
        concept=np.array([_concept_of(s) for s in stems[keep]], dtype=object),
        runs=_dense_runs(session[keep], run[keep]),
        keep=keep,
        sources=paths,
    )
    _check_no_leak(trials)
    return trials, bds


def _bdata_roi_masks(bd: Any) -> dict[str, np.ndarray]:
    voxel = bd.metadata("VoxelData") == 1
    masks = {k: (bd.metadata(k) == 1) & voxel for k in bd.keys if _is_roi_column(k)}
    if not masks:
        raise DataFormatError(
            f"{bd.path} has no ROI key (V1, ..., IT, glasser-*); it is not KamitaniLab's "
            "THINGS-fMRI conversion with the voxel metadata. Make it again."
        )
    return masks


# ---------------------------------------------------------------------- concepts
def _wordnet_reader():
    from fmri2image.wordnet import WordNet

    try:
        return WordNet.load()
    except Fmri2ImageError as exc:
        logger.info("WordNet is not available (%s); synset names stay text", exc)
        return None


def _synset_wnid(name: str, wordnet: Any) -> str | None:
    """``fish.n.01`` -> ``n02512053`` by WordNet 3.0's index.noun (nltk's numbering)."""
    if _SYNSET_NAME.match(name) is None or wordnet is None:
        return None
    return wordnet.wnid_of_name(name)


def concept_wnids(
    path: str | os.PathLike, concepts: Sequence[str], *, wordnet: Any = "auto"
) -> dict[str, str]:
    """WordNet ids of THINGS concepts from the concept table ``things_concepts.tsv``.

    Parameters
    ----------
    path : path
        The table (tab-separated, columns ``uniqueID`` and ``Wordnet ID*``).
    concepts : sequence of str
        THINGS unique ids (``"dog"``, ``"ice_cream"``).
    wordnet : WordNet or None or "auto"
        The reader that turns synset names (``fish.n.01``) into ids; ``"auto"``:
        :meth:`fmri2image.wordnet.WordNet.load` when the files are there.

    Returns
    -------
    dict of str to str
        The concepts that have an id (``Wordnet ID4`` first, then the other
        ``Wordnet ID*`` columns in table order; a cell counts when it is an id
        ``n01234567`` or a synset name WordNet knows).
    """
    path = Path(path)
    df = _read_csv(path, "THINGS concept table", sep="\t", dtype=str, keep_default_na=False)
    _require_columns(df, path, ("uniqueID",))
    cols = [c for c in df.columns if str(c).strip().lower().startswith("wordnet id")]
    cols.sort(key=lambda c: (str(c).strip().lower() != "wordnet id4",))
    if wordnet == "auto":
        wordnet = _wordnet_reader() if any(_needs_wordnet(df, cols)) else None
    rows = {str(u).strip(): r for u, r in zip(df["uniqueID"], df[cols].itertuples(index=False))}
    out = {}
    for concept in concepts:
        row = rows.get(concept)
        for cell in row or ():
            cell = str(cell).strip()
            wnid = cell if _WNID.match(cell) else _synset_wnid(cell, wordnet)
            if wnid is not None and (wordnet is None or wnid in wordnet):
                out[concept] = wnid
                break
    return out


def _needs_wordnet(df: Any, cols: list[str]):
    for c in cols:
        yield any(_SYNSET_NAME.match(str(v).strip()) for v in df[c])


# ---------------------------------------------------------------------- the dataset
@dataclass(frozen=True)
class ThingsOptions:
    """Options of the THINGS-fMRI dataset (``data.options``).

    Attributes
    ----------
    release : {"auto", "table", "bdata"}
        ``"table"``: ``sub-0N_ResponseData.h5`` + the two metadata CSVs;
        ``"bdata"``: KamitaniLab's ``sub-0N.h5`` (or ``_training``/``_test``);
        ``"auto"``: the table release when its files are there, else BData.
    """

    release: str = "auto"

    def __post_init__(self) -> None:
        if self.release not in _RELEASES:
            raise ConfigError(
                f"THINGS-fMRI release must be auto, table or bdata, got {self.release!r}."
            )


class ThingsDataset(Dataset):
    """THINGS-fMRI (Hebart et al. 2023): single-trial responses of 3 subjects to
    THINGS images (table release or KamitaniLab's BData conversion; see the module
    docstring).

    Training samples show each training image once; the 12 trials of each test
    image are averaged (voxels).  ``groups`` is the concept; runs are numbered on
    across sessions.  ROIs: VoxelMetadata columns joined with ``+``; ``VC`` (the
    default) is the union of the 30 retinotopic and category-selective ROIs.
    """

    name = "things"
    description = (
        "THINGS-fMRI (Hebart et al. 2023): figshare+ table release (sub-0N_ResponseData.h5 "
        "+ metadata CSVs) or KamitaniLab's BData conversion, THINGS images"
    )
    vocabulary = "text"
    needs = Needs(extra="things", packages=("pandas", "tables"))
    Options = ThingsOptions
    default_rois = (VC,)
    early_visual_rois = ("V1 + V2 + V3",)
    eval_splits = ("test",)
    average = "voxels"
    known_subjects = (1, 2, 3)
    where_to_get = (
        f"figshare+ {FIGSHARE_DOI} (table release: sub-0N_ResponseData.h5, "
        "sub-0N_StimulusMetadata.csv, sub-0N_VoxelMetadata.csv); images: THINGS database, "
        f"{IMAGES_URL} (password-protected zip) under DIR/images/<concept>/"
    )

    # -- files -------------------------------------------------------------------
    def _folders(self) -> list[Path]:
        """The dataset folder, then its subfolders (one level; not the image folders)."""
        if not self.path.is_dir():
            return []
        subs = sorted(p for p in self.path.iterdir() if p.is_dir() and p.name not in IMAGE_FOLDERS)
        return [self.path, *subs]

    def _find(self, names: Sequence[str]) -> tuple[Path, ...] | None:
        """The first folder (the dataset folder, then one below) holding all ``names``."""
        found = [d for d in self._folders() if all((d / n).is_file() for n in names)]
        if not found:
            return None
        if found[0] != self.path and len(found) > 1:
            raise ConfigError(
                f"{', '.join(str(d) for d in found)} all hold {names[0]}; keep one copy of the "
                "THINGS-fMRI files in the dataset folder or in one folder below it."
            )
        return tuple(found[0] / n for n in names)

    def _table_files(self, n: int) -> _TableFiles | None:
        found = self._find(_table_names(n))
        return None if found is None else _TableFiles(*found)

    def _bdata_files(self, n: int) -> tuple[Path, ...] | None:
        return self._find([f"sub-{n:02d}.h5"]) or self._find(
            [f"sub-{n:02d}_training.h5", f"sub-{n:02d}_test.h5"]
        )

    def _release_of(self, n: int) -> str | None:
        release = self.options.release
        if release in ("auto", "table") and self._table_files(n) is not None:
            return "table"
        if release in ("auto", "bdata") and self._bdata_files(n) is not None:
            return "bdata"
        return None

    def subjects(self) -> tuple[int, ...]:
        found = set()
        rx = re.compile(r"sub-(\d+)(?:_ResponseData|_training)?\.h5")
        for d in self._folders():
            for p in d.glob("sub-*.h5"):
                m = rx.fullmatch(p.name)
                if m and int(m.group(1)) > 0:
                    found.add(int(m.group(1)))
        return tuple(sorted(n for n in found if self._release_of(n) is not None))

    def files(self, subject: int) -> tuple[Path, ...]:
        n = _subject_number(subject)
        release = self._release_of(n)
        if release == "table":
            t = self._table_files(n)
            assert t is not None
            return (t.response, t.stimulus, t.voxel)
        if release == "bdata":
            found = self._bdata_files(n)
            assert found is not None
            return found
        looked = {
            "table": list(_table_names(n)),
            "bdata": [f"sub-{n:02d}.h5", f"sub-{n:02d}_training.h5 + sub-{n:02d}_test.h5"],
        }
        wanted = (
            looked
            if self.options.release == "auto"
            else {self.options.release: looked[self.options.release]}
        )
        what = "; or ".join(f"{k}: {', '.join(v)}" for k, v in wanted.items())
        there = "" if self.path.is_dir() else " (the folder does not exist)"
        raise MissingDataFileError(
            f"No THINGS-fMRI files of subject {n} in {self.path}{there} or a folder below it: "
            f"looked for {what}. Subjects found: {list(self.subjects()) or 'none'}. Download "
            f"the table release from figshare+ ({FIGSHARE_DOI}; `fmri2image download "
            "--dataset things`) and unpack it here."
        )

    # -- trials ------------------------------------------------------------------
    def _cache(self, name: str) -> dict:
        return self.__dict__.setdefault(name, {})

    def _trials(self, n: int) -> tuple[str, _Trials, Any]:
        cache = self._cache("_trial_cache")
        files = self.files(n)
        if files not in cache:
            if self._release_of(n) == "table":
                tf = _TableFiles(*files)
                cache[files] = ("table", _table_trials(tf), tf)
            else:
                trials, bds = _bdata_trials(files)
                cache[files] = ("bdata", trials, bds)
        return cache[files]

    def _catalog(self) -> dict[str, list[tuple[str, str, str]]]:
        """Every subject's stimuli per split: sorted (stem, file name, concept)."""
        if "_catalog_" not in self.__dict__:
            subjects = self.subjects()
            if not subjects:
                self.files(1)  # raises, naming what was looked for
            cat: dict[str, dict[str, tuple[str, str]]] = {"train": {}, "test": {}}
            for n in subjects:
                _, trials, _ = self._trials(n)
                for split, stem, fname, concept in zip(
                    trials.split, trials.stem, trials.filename, trials.concept
                ):
                    cat[split].setdefault(stem, (fname, concept))
            leak = sorted(set(cat["train"]) & set(cat["test"]))
            if leak:
                raise DataFormatError(
                    f"{len(leak)} images are training stimuli of one subject and test stimuli "
                    f"of another (e.g. {', '.join(leak[:3])}) in {self.path}; test images must "
                    "not be trained on. Do not mix files of different releases."
                )
            self.__dict__["_catalog_"] = {
                s: [(stem, *v) for stem, v in sorted(d.items())] for s, d in cat.items()
            }
            self.__dict__["_sources_"] = self.files(subjects[0])
        return self.__dict__["_catalog_"]

    def _concepts(self) -> list[str]:
        cat = self._catalog()
        return sorted({c for s in cat.values() for _, _, c in s})

    def _labels(self) -> tuple[dict[str, str], str | None]:
        """Concept -> label, and the vocabulary when it is not the dataset's."""
        if "_labels_" not in self.__dict__:
            concepts = self._concepts()
            text = {c: c.replace("_", " ") for c in concepts}
            result: tuple[dict[str, str], str | None] = (text, None)
            table = self.path / CONCEPT_TABLE
            if table.is_file():
                wnids = concept_wnids(table, concepts)
                lacking = [c for c in concepts if c not in wnids]
                if not lacking:
                    result = (wnids, "wordnet")
                else:
                    logger.warning(
                        "%s gives no WordNet id for %d of %d concepts (%s%s); labels stay text",
                        table.name,
                        len(lacking),
                        len(concepts),
                        ", ".join(lacking[:10]),
                        ", ..." if len(lacking) > 10 else "",
                    )
            self.__dict__["_labels_"] = result
        return self.__dict__["_labels_"]

    # -- stimuli -----------------------------------------------------------------
    def _image_folder(self) -> Path:
        for name in IMAGE_FOLDERS:
            if (self.path / name).is_dir():
                return self.path / name
        raise MissingImageError(
            f"The THINGS images are not in {self.path / IMAGE_FOLDERS[0]} (nor "
            f"{self.path / IMAGE_FOLDERS[1]}). THINGS-fMRI shows images of the THINGS "
            f"database: download it from OSF ({IMAGES_URL}; the images come as a "
            "password-protected zip whose password is given there) and unpack the object "
            f"images so that {self.path / IMAGE_FOLDERS[0]}/<concept>/<image>.jpg exists, "
            f"e.g. {self.path / IMAGE_FOLDERS[0]}/dog/dog_12s.jpg."
        )

    def stimuli(self, split: str) -> Stimuli:
        if split not in ("train", "test"):
            raise ConfigError(f"THINGS-fMRI has train and test stimuli, not {split!r}.")
        items = self._catalog()[split]
        folder = self._image_folder()
        files = tuple(folder / concept / fname for _, fname, concept in items)
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise MissingImageError(
                f"{len(missing)} of {len(files)} THINGS {split} stimulus images are missing "
                f"under {folder} (e.g. {missing[0]}). Get the THINGS database images from "
                f"OSF ({IMAGES_URL}; a password-protected zip, password on that page) and "
                f"unpack them so that {folder}/<concept>/<image>.jpg exists."
            )
        labels, vocabulary = self._labels()
        return Stimuli(
            split=split,
            stems=tuple(stem for stem, _, _ in items),
            labels=tuple(labels[c] for _, _, c in items),
            files=files,
            source=self.__dict__["_sources_"][0],
            vocabulary=vocabulary,
        )

    # -- load --------------------------------------------------------------------
    def load(self, subject: int, roi: str, *, drop_nan_voxels: bool = False) -> Recording:
        n = _subject_number(subject)
        kind, trials, handle = self._trials(n)
        if kind == "table":
            tf: _TableFiles = handle
            vcache = self._cache("_voxel_cache")
            if tf.voxel not in vcache:
                vcache[tf.voxel] = _voxel_table(tf.voxel)
            vt = vcache[tf.voxel]
            masks = vt.masks
            chosen = resolve_roi(roi, list(masks), source=tf.voxel)
            mask = np.logical_or.reduce([masks[c] for c in chosen])
            _check_nonempty(mask, roi, masks, tf.voxel)
            voxels = _read_responses(tf, trials, vt, np.flatnonzero(mask))
        else:
            bds = handle
            masks = _bdata_roi_masks(bds[0])
            chosen = resolve_roi(roi, list(masks), source=bds[0].path)
            mask = np.logical_or.reduce([masks[c] for c in chosen])
            _check_nonempty(mask, roi, masks, bds[0].path)
            query = " + ".join(f'"{c}"' for c in chosen)
            parts = []
            for bd in bds:
                if bd is not bds[0]:
                    _check_same_voxels(bds[0], bd)
                parts.append(bd.select(query, dtype=np.float32))
            voxels = np.concatenate(parts, axis=0)[trials.keep]
        nan_cols = np.isnan(voxels).any(axis=0)
        n_nan = int(nan_cols.sum())
        if n_nan and not drop_nan_voxels:
            raise DataFormatError(
                f"{n_nan} of {voxels.shape[1]} voxels of ROI {roi!r} contain NaN in "
                f"{', '.join(p.name for p in trials.sources)}. Nothing is imputed silently: "
                "pass drop_nan_voxels=True (CLI: --drop-nan-voxels) to drop them, or choose "
                "another ROI."
            )
        if n_nan:
            logger.warning("dropping %d NaN voxels of %s", n_nan, roi)
            voxels = np.ascontiguousarray(voxels[:, ~nan_cols])
        rows = {
            s: {stem: i for i, (stem, _, _) in enumerate(self._catalog()[s])}
            for s in ("train", "test")
        }
        stimulus = np.array(
            [rows[s][stem] for s, stem in zip(trials.split, trials.stem)], dtype=np.int64
        )
        concept_index = {c: i for i, c in enumerate(self._concepts())}
        groups = np.array([concept_index[c] for c in trials.concept], dtype=np.int64)
        return Recording(
            subject=n,
            roi=roi,
            voxels=voxels,
            split=trials.split.astype(object),
            stimulus=stimulus,
            runs=trials.runs,
            groups=groups,
            roi_sizes=_roi_sizes(masks),
            sources=trials.sources,
            n_dropped_nan_voxels=n_nan,
        )

    # -- downloads ---------------------------------------------------------------
    @classmethod
    def remote_files(cls, subjects: Sequence[int], **options: Any) -> tuple[RemoteFile, ...]:
        opts = make_dataset_options(cls.Options, options, dataset=cls.name)
        if opts.release == "bdata":
            raise ConfigError(
                "KamitaniLab's THINGS-fMRI BData files are not published; download the table "
                "release (release='table') and convert it with bdata-datasets' "
                "make_bdata_thingsfmri.py, or read the table release directly."
            )
        out = []
        for s in subjects:
            n = _subject_number(s)
            if n not in cls.known_subjects:
                raise ConfigError(
                    f"THINGS-fMRI has subjects {', '.join(map(str, cls.known_subjects))}, not "
                    f"{s!r}."
                )
            out += [
                RemoteFile(name, url=f"figshare://{FIGSHARE_ARTICLE}/{name}")
                for name in _table_names(n)
            ]
        return tuple(out)


def _subject_number(subject: int | str) -> int:
    if isinstance(subject, (int, np.integer)) and not isinstance(subject, bool):
        n = int(subject)
    else:
        m = re.fullmatch(r"(?:sub-?|subject)?0*(\d+)", str(subject).strip(), re.IGNORECASE)
        n = int(m.group(1)) if m else -1
    if n < 1:
        raise ConfigError(f"Cannot read a THINGS-fMRI subject from {subject!r}; use 1, 2, 3.")
    return n


def _check_nonempty(
    mask: np.ndarray, roi: str, masks: Mapping[str, np.ndarray], source: Path
) -> None:
    if not mask.any():
        empty = ", ".join(_display(k) for k, v in masks.items() if not v.any())
        raise ConfigError(
            f"ROI {roi!r} selects no voxel of {source} (empty ROIs there: {empty}). "
            "Choose another ROI, e.g. 'VC'."
        )


def _check_same_voxels(a: Any, b: Any) -> None:
    for key in ("voxel_id", "VoxelData"):
        if key in a and key in b:
            va, vb = a.metadata(key), b.metadata(key)
            if va.shape != vb.shape or not np.array_equal(va, vb, equal_nan=True):
                raise DataFormatError(
                    f"{a.path.name} and {b.path.name} do not describe the same voxels "
                    f"({key} differs); the training and test files of one subject must "
                    "share their voxel columns. Do not mix subjects; make them again."
                )


# ---------------------------------------------------------------------- fixtures
#: Concept names of the fixture (THINGS unique ids; an underscore, a digit).
FIXTURE_CONCEPTS = (
    "aardvark", "dog", "ice_cream", "mango", "bat1", "candelabra", "panda", "spatula",
    "fire_truck", "cat", "car", "lemon",
)  # fmt: skip


@dataclass(frozen=True)
class ThingsFixture:
    """What :func:`write_things_fixture` wrote.

    Attributes
    ----------
    root : Path
    files : dict of int to tuple of Path
        Per subject, its fMRI files.
    image_dir : Path
    concepts : tuple of str
        Concept of each fixture category (category i -> concepts[i]).
    train_stems, test_stems : tuple of str
        Stimulus stem of each training / test picture (pictures order).
    roi_masks : dict of str to ndarray of bool
        Every ROI column (raw names) over the voxels.
    voxels : dict of int to ndarray (n_trials, n_voxels)
        Per subject, the responses written, in StimulusMetadata order.
    trial_split, trial_stem : dict of int to ndarray
        Per subject and trial: ``"train"``/``"test"`` and the stimulus stem.
    """

    root: Path
    files: dict[int, tuple[Path, ...]]
    image_dir: Path
    concepts: tuple[str, ...]
    train_stems: tuple[str, ...]
    test_stems: tuple[str, ...]
    roi_masks: dict[str, np.ndarray]
    voxels: dict[int, np.ndarray]
    trial_split: dict[int, np.ndarray]
    trial_stem: dict[int, np.ndarray]


def _fixture_masks(n_voxels: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    from fmri2image.data.fixtures import split_voxels

    n_out = n_voxels // 5  # voxels outside every visual ROI (frontal cortex)
    inside = split_voxels(n_voxels - n_out, ROI_COLUMNS)
    masks = {k: np.concatenate([np.zeros(n_out, bool), v]) for k, v in inside.items()}
    outside = np.zeros(n_voxels, bool)
    outside[:n_out] = True
    half = np.zeros(n_voxels, bool)
    half[: n_out // 2] = True
    masks["glasser-V1"] = masks["V1"].copy()
    masks["glasser-FFC"] = masks["lFFA"] | masks["rFFA"]
    masks["glasser-p9-\n46v"] = half
    masks["glasser-a9-\n46v"] = outside & ~half
    masks["glasser-MT"] = masks["TO1"] | masks["TO2"]
    return masks


def write_things_fixture(
    root: str | os.PathLike,
    *,
    subjects: Sequence[int] = (1,),
    release: str = "table",
    train: FixturePictures | None = None,
    test: FixturePictures | None = None,
    n_test_repeats: int = 12,
    runs_per_session: int = 2,
    n_voxels: int = 150,
    respond: Respond | None = None,
    seed: int = 0,
    images: bool = True,
    concept_table: bool | Mapping[str, str] = False,
    concepts: Sequence[str] | None = None,
    subfolder: str | None = None,
) -> ThingsFixture:
    """Write a small THINGS-fMRI folder in a release's exact format.

    Parameters
    ----------
    root : path
        The dataset folder (created).
    subjects : sequence of int
    release : {"table", "bdata", "bdata-split"}
        ``"table"``: ``sub-0N_ResponseData.h5`` (pandas ``to_hdf``, key
        ``ResponseData``, fixed format; ``voxel_id`` then trial columns ``0..``),
        ``sub-0N_StimulusMetadata.csv``, ``sub-0N_VoxelMetadata.csv``; ``"bdata"``:
        KamitaniLab's ``sub-0N.h5`` written with ``bdpy.BData``; ``"bdata-split"``:
        its ``sub-0N_training.h5`` and ``sub-0N_test.h5``.
    train, test : FixturePictures, optional
        The training pictures (each shown once) and test pictures (each shown
        ``n_test_repeats`` times, once per session).  Categories are one space:
        category ``i`` of either is concept ``concepts[i]`` (THINGS tests training
        concepts).  Default: :func:`~fmri2image.data.fixtures.fixture_pictures` of 10
        categories × 7 pictures, the first 6 of each for training, the 7th for test.
    n_test_repeats : int, default 12
        Sessions (each shows every test picture once and its share of the training
        pictures).
    runs_per_session : int, default 2
    n_voxels : int, default 150
        A fifth lie outside every visual ROI (two glasser-* columns there); the rest
        are shared among the 30 ROI columns.
    respond : Respond, optional
        Default :func:`~fmri2image.data.fixtures.planted_response` (seed ``seed``).
    seed : int
    images : bool, default True
        Write the pictures as JPEG under ``images/<concept>/<concept>_NNs.jpg``.
    concept_table : bool or mapping of str to str
        Write ``things_concepts.tsv``: True gives every concept the synset name
        ``<concept>.n.01`` (column ``Wordnet ID4``); a mapping gives concept -> cell
        (missing concepts get an empty cell).
    concepts : sequence of str, optional
        Concept names by category (default :data:`FIXTURE_CONCEPTS`, then
        ``concept<i>``).
    subfolder : str, optional
        Write the fMRI files into ``root/subfolder`` (as the unpacked archive).

    Returns
    -------
    ThingsFixture
    """
    from fmri2image.data.fixtures import fixture_pictures, planted_response

    if release not in ("table", "bdata", "bdata-split"):
        raise ConfigError(f"release must be table, bdata or bdata-split, got {release!r}.")
    if n_test_repeats < 1 or runs_per_session < 1:
        raise ConfigError("n_test_repeats and runs_per_session must be positive.")
    root = Path(root)
    data_dir = root / subfolder if subfolder else root
    data_dir.mkdir(parents=True, exist_ok=True)
    if train is None or test is None:
        pics = fixture_pictures(10, 7, seed=seed)
        last = np.arange(len(pics)) % 7 == 6
        train = train if train is not None else pics.take(np.flatnonzero(~last))
        test = test if test is not None else pics.take(np.flatnonzero(last))
    respond = respond or planted_response(n_voxels, seed=seed)
    n_cat = int(max(train.categories.max(initial=-1), test.categories.max(initial=-1))) + 1
    names = list(concepts or FIXTURE_CONCEPTS)
    names += [f"concept{i}" for i in range(len(names), n_cat)]
    # Stems: <concept>_<NN>s, numbered per concept over training then test pictures.
    counter: dict[str, int] = {}

    def stems_of(p: FixturePictures) -> tuple[str, ...]:
        out = []
        for c in p.categories.tolist():
            counter[names[c]] = counter.get(names[c], 0) + 1
            out.append(f"{names[c]}_{counter[names[c]]:02d}s")
        return tuple(out)

    train_stems, test_stems = stems_of(train), stems_of(test)
    image_dir = root / "images"
    if images:
        from PIL import Image

        for p, stems in ((train, train_stems), (test, test_stems)):
            for img, stem in zip(p.images, stems):
                folder = image_dir / _concept_of(stem)
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.asarray(img, dtype=np.uint8)).convert("RGB").save(
                    folder / f"{stem}.jpg", format="JPEG", quality=92
                )
    if concept_table is not False:
        cells = (
            {c: f"{c}.n.01" for c in names[:n_cat]}
            if concept_table is True
            else dict(concept_table)  # type: ignore[arg-type]
        )
        lines = ["Word\tuniqueID\tWordnet ID4"]
        lines += [f"{c.replace('_', ' ')}\t{c}\t{cells.get(c, '')}" for c in names[:n_cat]]
        (root / CONCEPT_TABLE).write_text("\n".join(lines) + "\n", encoding="utf-8")

    rng = np.random.default_rng(seed)
    masks = _fixture_masks(n_voxels, rng)
    files: dict[int, tuple[Path, ...]] = {}
    voxels_of, split_of, stem_of = {}, {}, {}
    for subject in subjects:
        srng = np.random.default_rng([seed, int(subject)])
        # Sessions: every test picture once, and an even share of the training pictures.
        order = srng.permutation(len(train))
        share = np.array_split(order, n_test_repeats)
        rows = []  # (split, picture index, session, run)
        for s in range(n_test_repeats):
            items = [("train", int(i)) for i in share[s]] + [("test", i) for i in range(len(test))]
            items = [items[k] for k in srng.permutation(len(items))]
            for k, (split, i) in enumerate(items):
                run = 1 + k * runs_per_session // max(len(items), 1)
                rows.append((split, i, s + 1, run))
        split = np.array([r[0] for r in rows], dtype=object)
        pic = np.array([r[1] for r in rows], dtype=np.int64)
        session = np.array([r[2] for r in rows], dtype=np.int64)
        run = np.array([r[3] for r in rows], dtype=np.int64)
        stem = np.array(
            [train_stems[i] if s == "train" else test_stems[i] for s, i in zip(split, pic)],
            dtype=object,
        )
        imgs = np.stack([train.images[i] if s == "train" else test.images[i]
                         for s, i in zip(split, pic)])  # fmt: skip
        vox = np.asarray(respond(imgs, srng), dtype=np.float64)
        if vox.shape != (len(rows), n_voxels):
            raise ConfigError(
                f"respond returned {vox.shape}; expected ({len(rows)}, {n_voxels}) (n_voxels)."
            )
        voxel_meta = _voxel_metadata(subject, masks, srng)
        if release == "table":
            files[subject] = _write_table(
                data_dir, subject, vox, split, stem, session, run, voxel_meta
            )
        else:
            files[subject] = _write_bdata(
                data_dir, subject, vox, split, stem, session, run, voxel_meta,
                split_files=release == "bdata-split",
            )  # fmt: skip
        voxels_of[subject], split_of[subject], stem_of[subject] = vox, split, stem
    return ThingsFixture(
        root=root,
        files=files,
        image_dir=image_dir,
        concepts=tuple(names[:n_cat]),
        train_stems=train_stems,
        test_stems=test_stems,
        roi_masks=masks,
        voxels=voxels_of,
        trial_split=split_of,
        trial_stem=stem_of,
    )


def _voxel_metadata(
    subject: int, masks: Mapping[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """VoxelMetadata columns in the release's order: ids, coordinates, reliabilities,
    pRF estimates, the 30 ROI columns, the glasser-* columns."""
    n = next(iter(masks.values())).size
    side = int(np.ceil(n ** (1 / 3))) + 1
    grid = np.stack(np.unravel_index(np.arange(n), (side, side, side)), axis=1) + 1
    cols: dict[str, np.ndarray] = {
        "voxel_id": np.arange(n, dtype=np.int64),
        "subject_id": np.full(n, subject, dtype=np.int64),
        "voxel_x": grid[:, 0].astype(np.int64),
        "voxel_y": grid[:, 1].astype(np.int64),
        "voxel_z": grid[:, 2].astype(np.int64),
        "nc_singletrial": rng.uniform(0, 5, n),
        "nc_testset": rng.uniform(0, 40, n),
        "splithalf_uncorrected": rng.uniform(-0.05, 0.3, n),
        "splithalf_corrected": rng.uniform(-0.1, 0.5, n),
        "prf-eccentricity": rng.uniform(0, 12, n),
        "prf-polarangle": rng.uniform(0, 360, n),
        "prf-rsquared": rng.uniform(0, 1, n),
        "prf-size": rng.uniform(0, 5, n),
    }
    for name, m in masks.items():
        cols[name] = m.astype(np.int64)
    return cols


def _write_table(
    folder: Path,
    subject: int,
    vox: np.ndarray,
    split: np.ndarray,
    stem: np.ndarray,
    session: np.ndarray,
    run: np.ndarray,
    voxel_meta: Mapping[str, np.ndarray],
) -> tuple[Path, ...]:
    pd = _pandas()
    resp_name, stim_name, vox_name = _table_names(subject)
    n_trials = vox.shape[0]
    frame = pd.DataFrame(vox.T.astype(np.float64), columns=list(range(n_trials)))
    frame.insert(0, "voxel_id", np.asarray(voxel_meta["voxel_id"], dtype=np.int64))
    with warnings.catch_warnings():  # PyTables pickles the mixed 'voxel_id', 0, 1 ... labels
        warnings.simplefilter("ignore")
        frame.to_hdf(folder / resp_name, key=RESPONSE_KEY, mode="w")
    pd.DataFrame(
        {
            "trial_type": split.astype(str),
            "session": session,
            "run": run,
            "subject_id": np.full(n_trials, subject, dtype=np.int64),
            "trial_id": np.arange(n_trials, dtype=np.int64),
            "stimulus": [f"{s}.jpg" for s in stem],
            "concept": [_concept_of(s) for s in stem],
        }
    ).to_csv(folder / stim_name, index=False)
    pd.DataFrame(dict(voxel_meta)).to_csv(folder / vox_name, index=False)
    return (folder / resp_name, folder / stim_name, folder / vox_name)


def _write_bdata(
    folder: Path,
    subject: int,
    vox: np.ndarray,
    split: np.ndarray,
    stem: np.ndarray,
    session: np.ndarray,
    run: np.ndarray,
    voxel_meta: Mapping[str, np.ndarray],
    *,
    split_files: bool,
) -> tuple[Path, ...]:
    """KamitaniLab's conversion, with bdpy's own writer: runs numbered on across
    sessions (run + last run of the session × (session - 1)), trial_type and
    stimulus_name as vmapped codes, every voxel-metadata column a per-voxel key."""
    from fmri2image.errors import require

    bdpy = require("bdpy", "bdpy", "Writing a THINGS-fMRI BData fixture")
    last = {int(s): int(run[session == s][-1]) for s in np.unique(session)}
    run_global = run + np.array([last[int(s)] for s in session]) * (session - 1)
    names = sorted(set(stem.tolist()))
    code = {s: i for i, s in enumerate(names)}
    ttype = np.array([1 if s == "train" else 2 for s in split], dtype=np.float64)

    def make(rows: np.ndarray):
        bd = bdpy.BData()
        bd.add(vox[rows], "VoxelData")
        bd.add(np.flatnonzero(rows).astype(np.float64)[:, None], "trial_id")
        bd.add(session[rows].astype(np.float64)[:, None], "session")
        bd.add(run_global[rows].astype(np.float64)[:, None], "run")
        bd.add(ttype[rows][:, None], "trial_type")
        bd.add_vmap("trial_type", dict(TRIAL_TYPES))
        bd.add(np.array([code[s] for s in stem[rows]], dtype=np.float64)[:, None], "stimulus_name")
        bd.add_vmap("stimulus_name", dict(enumerate(names)))
        for key, values in voxel_meta.items():
            bd.add_metadata(key, np.asarray(values, dtype=np.float64), where="VoxelData")
        return bd

    everything = np.ones(len(split), dtype=bool)
    if not split_files:
        path = folder / f"sub-{subject:02d}.h5"
        make(everything).save(str(path))
        return (path,)
    out = []
    for part, mask in (("training", split == "train"), ("test", split == "test")):
        path = folder / f"sub-{subject:02d}_{part}.h5"
        make(mask).save(str(path))
        out.append(path)
    return tuple(out)
