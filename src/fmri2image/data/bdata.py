"""Read and write BData HDF5 files (the format of bdpy and of the GOD release).

A BData file stores one float matrix, ``/dataset`` of shape
``(n_samples, n_columns)``: voxels *and* per-sample labels (``DataType``, ``Run``,
``stimulus_id``, ...) are all columns of it.  Which column is what is described by
``/metadata``:

* ``/metadata/key`` and ``/metadata/description``: byte strings, one per key;
* ``/metadata/value``: float matrix of shape ``(n_keys, n_columns)``.  A
  *column-selector* key (``VoxelData``, ``ROI_VC``, ``DataType``) holds 1 at its
  columns and NaN elsewhere; a *per-column* key (``voxel_x``) holds a value at
  each column it describes.

Files written by old MATLAB tooling spell the groups ``dataSet`` and ``metaData``;
both spellings are read.  ``/header`` and ``/vmap`` are optional.

The reader uses h5py only (bdpy is not needed) and reads just the columns a query
selects.  Its query language and column order are those of
:meth:`bdpy.BData.select`; :class:`BDataBuilder` writes files that
``bdpy.BData(path)`` loads.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmri2image.errors import ConfigError, DataFormatError, MissingDataFileError

__all__ = [
    "BDataBuilder",
    "BDataFile",
    "MetadataKeyError",
    "MissingDataFileError",
    "parse_query",
    "read_bdata",
]


class MetadataKeyError(DataFormatError):
    """A BData query names a metadata key that the file does not contain."""


# --------------------------------------------------------------------------- query


# Same operators and precedence as bdpy's FeatureSelector: '=' binds tightest,
# '|' (alias '+'), '&' and '-' share one level and associate to the left.
_PRECEDENCE = {"=": 10, "|": 5, "&": 5, "-": 5}
_OPERATORS = frozenset(_PRECEDENCE) | {"+", "@"}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _tokenize(expr: str) -> list[str]:
    tokens: list[str] = []
    buf = ""
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch in "\"'":
            end = expr.find(ch, i + 1)
            if end < 0:
                raise ConfigError(
                    f"Unbalanced quote in BData query {expr!r}. Close the quoted key name "
                    f"with a matching {ch}."
                )
            buf += expr[i + 1 : end]
            i = end + 1
            continue
        if ch.isspace() or ch in "()" or ch in _OPERATORS:
            if buf:
                tokens.append(buf)
                buf = ""
            if not ch.isspace():
                tokens.append("|" if ch == "+" else ch)
        else:
            buf += ch
        i += 1
    if buf:
        tokens.append(buf)
    return tokens


def parse_query(expr: str) -> tuple[str, ...]:
    """Parse a BData column query into reverse Polish notation.

    Parameters
    ----------
    expr : str
        Query such as ``"ROI_VC"``, ``"ROI_V1 + ROI_V2"``, ``"ROI_V*"``,
        ``"ROI_VC = 1"`` or ``"(ROI_V1 | ROI_V2) - ROI_LOC"``.

    Returns
    -------
    tuple of str
        Tokens in evaluation order.

    Raises
    ------
    ConfigError
        Empty query, unbalanced parentheses or quotes, or bdpy's ``@`` (top-N
        selection by a score), which is not supported here.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigError(
            f"Empty BData query {expr!r}. Pass a metadata key such as 'ROI_VC', or an "
            "expression like 'ROI_V1 + ROI_V2'."
        )
    out: list[str] = []
    ops: list[str] = []
    for tok in _tokenize(expr):
        if tok == "@":
            raise ConfigError(
                f"The BData query {expr!r} uses '@' (bdpy's top-N voxel selection by a "
                "score), which fmri2image does not support: it must be computed from "
                "training data only. Select the ROI here and do voxel selection in the "
                "mapping stage."
            )
        if tok in _PRECEDENCE:
            while ops and ops[-1] != "(" and _PRECEDENCE[ops[-1]] >= _PRECEDENCE[tok]:
                out.append(ops.pop())
            ops.append(tok)
        elif tok == "(":
            ops.append(tok)
        elif tok == ")":
            while ops and ops[-1] != "(":
                out.append(ops.pop())
            if not ops:
                raise ConfigError(f"Unbalanced ')' in BData query {expr!r}.")
            ops.pop()
        else:
            out.append(tok)
    while ops:
        op = ops.pop()
        if op == "(":
            raise ConfigError(f"Unbalanced '(' in BData query {expr!r}.")
        out.append(op)
    return tuple(out)


# -------------------------------------------------------------------------- reader


def _to_str(x: Any) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, np.ndarray):  # MATLAB-written char arrays
        return "".join(chr(int(c)) for c in x.ravel() if int(c))
    return str(x)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern).replace(r"\*", ".*"))


class BDataFile:
    """A BData HDF5 file opened for reading.

    Metadata is read once at construction; dataset columns are read from disk on
    demand, so selecting one ROI does not load the whole matrix.

    Use :func:`read_bdata` to create one.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    shape : tuple of int
        ``(n_samples, n_columns)`` of ``/dataset``.
    keys : tuple of str
        Metadata keys in file order.
    metadata_values : ndarray of shape (n_keys, n_columns)
        The ``/metadata/value`` matrix (float64, NaN where a key does not apply).
    header : dict
        Contents of ``/header`` (strings or lists of strings), empty if absent.
    vmap : dict of str to dict of float to str
        Value-label maps from ``/vmap``, empty if absent.
    """

    def __init__(
        self,
        path: Path,
        *,
        dataset_name: str,
        keys: tuple[str, ...],
        descriptions: tuple[str, ...],
        metadata_values: np.ndarray,
        shape: tuple[int, int],
        header: dict[str, Any],
        vmap: dict[str, dict[float, str]],
    ) -> None:
        self.path = path
        self._dataset_name = dataset_name
        self.keys = keys
        self._descriptions = dict(zip(keys, descriptions))
        self.metadata_values = metadata_values
        self.shape = shape
        self.header = header
        self.vmap = vmap
        self._dataset_cache: np.ndarray | None = None

    def __repr__(self) -> str:
        return (
            f"BDataFile({str(self.path)!r}, n_samples={self.shape[0]}, "
            f"n_columns={self.shape[1]}, n_keys={len(self.keys)})"
        )

    @property
    def n_samples(self) -> int:
        return self.shape[0]

    @property
    def n_columns(self) -> int:
        return self.shape[1]

    @property
    def dataset(self) -> np.ndarray:
        """The whole ``/dataset`` matrix, shape ``(n_samples, n_columns)``, float64.

        Read from disk on first access and cached.
        """
        if self._dataset_cache is None:
            self._dataset_cache = self._read_columns(np.arange(self.n_columns), np.float64)
        return self._dataset_cache

    def __contains__(self, key: object) -> bool:
        return key in self._descriptions

    def _missing_key(self, key: str) -> MetadataKeyError:
        close = difflib.get_close_matches(key, self.keys, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return MetadataKeyError(
            f"Metadata key {key!r} is not in {self.path}.{hint} The file has "
            f"{len(self.keys)} keys: {', '.join(self.keys)}. Pick one of them (wildcards "
            "like 'ROI_V*' are allowed)."
        )

    def description(self, key: str) -> str:
        """Description string of metadata ``key``."""
        if key not in self._descriptions:
            raise self._missing_key(key)
        return self._descriptions[key]

    def metadata(self, key: str, where: str | None = None) -> np.ndarray:
        """Values of metadata ``key``.

        Parameters
        ----------
        key : str
            Exact metadata key.
        where : str, optional
            A query; if given, only the values at the columns it selects are
            returned (like ``bdpy.BData.get_metadata(key, where=...)``).

        Returns
        -------
        ndarray of shape (n_columns,) or (n_selected,)
            float64, NaN where the key does not apply.
        """
        if key not in self._descriptions:
            raise self._missing_key(key)
        row = self.metadata_values[self.keys.index(key)].copy()
        if where is not None:
            row = row[self.column_mask(where)]
        return row

    def matching_keys(self, pattern: str) -> tuple[str, ...]:
        """Keys matching ``pattern`` (``*`` is a wildcard), in file order."""
        rx = _pattern_regex(pattern)
        return tuple(k for k in self.keys if rx.fullmatch(k))

    def _key_values(self, pattern: str) -> np.ndarray:
        keys = self.matching_keys(pattern)
        if not keys:
            raise self._missing_key(pattern)
        idx = [self.keys.index(k) for k in keys]
        return self.metadata_values[idx]

    def column_mask(self, expr: str) -> np.ndarray:
        """Boolean mask of the columns a query selects.

        Parameters
        ----------
        expr : str
            Query in bdpy's language: a key (``"ROI_VC"``: columns whose value is
            1), a wildcard (``"ROI_V*"``: union over matching keys), ``key = v``
            (columns whose value equals ``v``), combined with ``|`` / ``+``
            (union), ``&`` (intersection), ``-`` (difference) and parentheses.

        Returns
        -------
        ndarray of shape (n_columns,), dtype bool

        Notes
        -----
        ``key = v`` compares metadata *values*, so ``"voxel_x = 10"`` and
        ``"ROI_VC = 1"`` do what they say.  For ``v = 1`` this equals bdpy; bdpy
        instead compares the key's 0/1 membership with ``v``, so there
        ``"ROI_VC = 0"`` means "not in ROI_VC" (write ``"VoxelData - ROI_VC"``).
        """
        stack: list[tuple[str, Any]] = []

        def as_mask(item: tuple[str, Any]) -> np.ndarray:
            kind, val = item
            if kind == "mask":
                return val
            if kind == "key":
                return np.any(self._key_values(val) == 1, axis=0)
            raise ConfigError(
                f"In BData query {expr!r} the number {val!r} is used where a metadata key "
                "is expected. Numbers may only appear on the right of '=' (e.g. 'ROI_VC = 1')."
            )

        for tok in parse_query(expr):
            if tok in _PRECEDENCE:
                if len(stack) < 2:
                    raise ConfigError(
                        f"Operator {'+' if tok == '|' else tok!r} in BData query {expr!r} "
                        "lacks an operand. Write "
                        "e.g. 'ROI_V1 + ROI_V2'."
                    )
                right, left = stack.pop(), stack.pop()
                if tok == "=":
                    if left[0] != "key" or right[0] != "num":
                        raise ConfigError(
                            f"'=' in BData query {expr!r} needs a key on the left and a "
                            "number on the right, e.g. 'ROI_VC = 1'."
                        )
                    mask = np.any(self._key_values(left[1]) == right[1], axis=0)
                else:
                    a, b = as_mask(left), as_mask(right)
                    if tok == "|":
                        mask = a | b
                    elif tok == "&":
                        mask = a & b
                    else:
                        mask = a & ~b
                stack.append(("mask", mask))
            elif _NUMBER.match(tok):
                stack.append(("num", float(tok)))
            else:
                stack.append(("key", tok))
        if len(stack) != 1:
            raise ConfigError(
                f"BData query {expr!r} is not one expression (operands {len(stack)}, "
                "operators missing?). Combine keys with '+', '|', '&' or '-'."
            )
        return np.asarray(as_mask(stack[0]), dtype=bool)

    def column_index(self, expr: str) -> np.ndarray:
        """Increasing column indices selected by ``expr`` (see :meth:`column_mask`)."""
        return np.flatnonzero(self.column_mask(expr))

    def select(self, expr: str, dtype: np.dtype | type = np.float64) -> np.ndarray:
        """Columns of the dataset selected by a query.

        Parameters
        ----------
        expr : str
            Query (see :meth:`column_mask`).
        dtype : numpy dtype, default float64
            Output dtype (bdpy returns float64).

        Returns
        -------
        ndarray of shape (n_samples, n_selected)
            Columns in file order, equal to ``bdpy.BData(path).select(expr)`` for
            the queries both support.
        """
        return self._read_columns(self.column_index(expr), dtype)

    def get(self, key: str, dtype: np.dtype | type = np.float64) -> np.ndarray:
        """Per-sample values of a one-column key (``"DataType"``, ``"Run"``).

        Returns
        -------
        ndarray of shape (n_samples,)

        Raises
        ------
        DataFormatError
            If ``key`` does not select exactly one column.
        """
        if key not in self._descriptions:
            raise self._missing_key(key)
        idx = np.flatnonzero(self.metadata_values[self.keys.index(key)] == 1)
        if idx.size != 1:
            raise DataFormatError(
                f"Metadata key {key!r} in {self.path} selects {idx.size} columns; a "
                "per-sample label must select exactly one. The file is not a valid "
                "BData file for this use; check how it was written."
            )
        return self._read_columns(idx, dtype)[:, 0]

    def _read_columns(self, idx: np.ndarray, dtype: np.dtype | type) -> np.ndarray:

        n = self.n_samples
        out = np.empty((n, idx.size), dtype=dtype)
        if idx.size == 0:
            return out
        if self._dataset_cache is not None:
            out[:] = self._dataset_cache[:, idx]
            return out
        # Contiguous runs of columns: one hyperslab read each (h5py point selection
        # with thousands of indices is slow). Many small runs: read the span.
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [idx.size]])
        with _open_h5(self.path) as fh, _damaged_file_errors(self.path):
            ds = fh[self._dataset_name]
            if starts.size <= 64:
                for a, b in zip(starts, stops):
                    out[:, a:b] = ds[:, idx[a] : idx[b - 1] + 1]
            else:
                lo, hi = int(idx[0]), int(idx[-1]) + 1
                out[:] = ds[:, lo:hi][:, idx - lo]
        return out


def _damaged(path: Path, exc: BaseException) -> DataFormatError:
    return DataFormatError(
        f"{path} cannot be read: the HDF5 file is damaged or incomplete ({exc}). A "
        "truncated or interrupted download causes this: download the file again "
        "(compare its size with the source) and retry."
    )


@contextlib.contextmanager
def _open_h5(path: Path) -> Iterator[Any]:
    """``h5py.File(path, "r")``, with a damaged or truncated file as :class:`DataFormatError`."""
    import h5py

    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise _damaged(path, exc) from exc
    with fh:
        yield fh


@contextlib.contextmanager
def _damaged_file_errors(path: Path) -> Iterator[None]:
    """Reads that fail inside an opened file (truncated data blocks) -> DataFormatError."""
    try:
        yield
    except OSError as exc:
        raise _damaged(path, exc) from exc


def _pick(group: Any, *names: str) -> str | None:
    for name in names:
        if name in group:
            return name
    return None


def read_bdata(path: str | os.PathLike) -> BDataFile:
    """Open a BData HDF5 file (``/dataset`` + ``/metadata``, or legacy spelling).

    Parameters
    ----------
    path : str or path-like
        The ``.h5`` file.

    Returns
    -------
    BDataFile
        Metadata loaded; dataset columns are read on demand.

    Raises
    ------
    MissingDataFileError
        The file does not exist.
    DataFormatError
        The file is not HDF5, lacks ``dataset``/``metadata``, or its metadata
        shape does not match the dataset.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise MissingDataFileError(
            f"BData file {path} does not exist. Check the path (GOD subject files are "
            "named like Subject3.h5 or Subject3_ImageNetTraining.h5)."
        )
    if not h5py.is_hdf5(path):
        raise DataFormatError(
            f"{path} is not an HDF5 file. fmri2image reads BData .h5 files (bdpy format); "
            "MATLAB .mat files must be converted first, e.g. bdpy.BData('x.mat')."
            "save('x.h5'). A truncated download also causes this: download it again."
        )
    with _open_h5(path) as fh, _damaged_file_errors(path):
        ds_name = _pick(fh, "dataset", "dataSet")
        md_name = _pick(fh, "metadata", "metaData")
        if ds_name is None or md_name is None:
            raise DataFormatError(
                f"{path} is HDF5 but not a BData file: it needs a 'dataset' (or 'dataSet') "
                f"matrix and a 'metadata' (or 'metaData') group; found "
                f"{sorted(fh.keys())}. Write BData files with bdpy.BData.save or "
                "fmri2image.data.BDataBuilder."
            )
        md = fh[md_name]
        missing = [k for k in ("key", "description", "value") if k not in md]
        if missing:
            raise DataFormatError(
                f"The metadata group of {path} lacks {missing}; BData metadata has 'key', "
                "'description' and 'value'. The file is damaged or not a BData file."
            )
        ds = fh[ds_name]
        if ds.ndim != 2:
            raise DataFormatError(
                f"'{ds_name}' in {path} has shape {ds.shape}; BData needs a 2-D "
                "(n_samples, n_columns) matrix."
            )
        shape = (int(ds.shape[0]), int(ds.shape[1]))
        keys = tuple(_to_str(k).strip() for k in np.atleast_1d(md["key"][()]))
        descs = tuple(_to_str(k).strip() for k in np.atleast_1d(md["description"][()]))
        values = np.atleast_2d(np.asarray(md["value"][()], dtype=np.float64))
        if values.shape != (len(keys), shape[1]):
            raise DataFormatError(
                f"Metadata values of {path} have shape {values.shape} but the file has "
                f"{len(keys)} keys and {shape[1]} dataset columns; expected "
                f"({len(keys)}, {shape[1]}). The file is damaged or was written with "
                "a transposed matrix."
            )
        if len(descs) != len(keys):
            raise DataFormatError(
                f"{path} has {len(keys)} metadata keys but {len(descs)} descriptions."
            )
        header: dict[str, Any] = {}
        if "header" in fh and isinstance(fh["header"], h5py.Group):
            for k, v in fh["header"].items():
                val = v[()]
                if isinstance(val, np.ndarray):
                    header[k] = [_to_str(x) for x in val.ravel()]
                elif isinstance(val, bytes):
                    header[k] = _to_str(val)
                else:
                    header[k] = val.item() if isinstance(val, np.generic) else val
        vmap: dict[str, dict[float, str]] = {}
        if "vmap" in fh and isinstance(fh["vmap"], h5py.Group):
            for mk, grp in fh["vmap"].items():
                vmap[mk] = {float(k): _to_str(grp[k][()]) for k in grp}
    return BDataFile(
        path,
        dataset_name=ds_name,
        keys=keys,
        descriptions=descs,
        metadata_values=values,
        shape=shape,
        header=header,
        vmap=vmap,
    )


# -------------------------------------------------------------------------- writer


class BDataBuilder:
    """Assemble a BData file column block by column block, then write it.

    Mirrors ``bdpy.BData``'s building API (``add``, ``add_metadata``,
    ``add_vmap``); :meth:`write` produces an HDF5 file that ``bdpy.BData(path)``
    and :func:`read_bdata` load identically.

    Examples
    --------
    >>> b = BDataBuilder()
    >>> b.add(voxels, "VoxelData")                     # (n_samples, n_voxels)
    >>> b.add_metadata("ROI_V1", v1_flags, "1 = V1", where="VoxelData")
    >>> b.add(data_type, "DataType")                   # (n_samples,)
    >>> b.write("Subject1.h5")
    """

    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []
        self._n_samples: int | None = None
        self._n_columns = 0
        self._keys: list[str] = []
        self._descriptions: list[str] = []
        self._values: list[np.ndarray] = []
        self._vmap: dict[str, dict[float, str]] = {}

    @property
    def n_columns(self) -> int:
        return self._n_columns

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def _set(self, key: str, row: np.ndarray, description: str) -> None:
        if key in self._keys:
            i = self._keys.index(key)
            self._values[i] = row
            self._descriptions[i] = description
        else:
            self._keys.append(key)
            self._values.append(row)
            self._descriptions.append(description)

    def add(self, x: np.ndarray, name: str) -> BDataBuilder:
        """Append columns and mark them with selector key ``name``.

        Parameters
        ----------
        x : array-like of shape (n_samples,) or (n_samples, n_new)
            New columns.
        name : str
            Selector key; its value is 1 at the new columns. Adding to an
            existing key extends it (as in bdpy).

        Returns
        -------
        self
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise ConfigError(f"BDataBuilder.add expects a 1-D or 2-D array, got {x.shape}.")
        if self._n_samples is not None and x.shape[0] != self._n_samples:
            raise ConfigError(
                f"BDataBuilder.add({name!r}): {x.shape[0]} samples, but earlier columns "
                f"have {self._n_samples}. All columns need one row per sample."
            )
        self._n_samples = x.shape[0]
        n_old, n_new = self._n_columns, x.shape[1]
        self._blocks.append(x)
        self._n_columns += n_new
        pad = np.full(n_new, np.nan)
        self._values = [np.concatenate([v, pad]) for v in self._values]
        if name in self._keys:
            row = self._values[self._keys.index(name)]
        else:
            row = np.full(self._n_columns, np.nan)
        row[n_old:] = 1.0
        self._set(name, row, f"1 = {name}")
        return self

    def add_metadata(
        self,
        key: str,
        value: np.ndarray | Sequence[float],
        description: str = "",
        where: str | None = None,
    ) -> BDataBuilder:
        """Add (or replace) a metadata row.

        Parameters
        ----------
        key : str
            Metadata key.
        value : array-like of shape (n_columns,) or (n_where,)
            Values for all columns, or, with ``where``, for the columns whose
            ``where`` value is 1 (NaN elsewhere).
        description : str
            Human-readable description.
        where : str, optional
            Existing selector key restricting the columns ``value`` describes.

        Returns
        -------
        self
        """
        value = np.asarray(value, dtype=np.float64).ravel()
        if where is not None:
            if where not in self._keys:
                raise ConfigError(
                    f"add_metadata({key!r}, where={where!r}): no key {where!r} yet. Add the "
                    "columns with add(x, where) first."
                )
            sel = self._values[self._keys.index(where)] == 1
            if value.size != int(sel.sum()):
                raise ConfigError(
                    f"add_metadata({key!r}, where={where!r}) got {value.size} values for "
                    f"{int(sel.sum())} columns."
                )
            row = np.full(self._n_columns, np.nan)
            row[sel] = value
        else:
            if value.size != self._n_columns:
                raise ConfigError(
                    f"add_metadata({key!r}) got {value.size} values for {self._n_columns} "
                    "columns; pass one per column or use where=."
                )
            row = value.copy()
        self._set(key, row, description)
        return self

    def add_vmap(self, key: str, vmap: Mapping[float, str]) -> BDataBuilder:
        """Attach a value→label map to a key (e.g. stimulus names of ``stimulus_id``)."""
        if key not in self._keys:
            raise ConfigError(f"add_vmap({key!r}): no such key; add it first.")
        self._vmap.setdefault(key, {}).update({float(k): str(v) for k, v in vmap.items()})
        return self

    def write(
        self,
        path: str | os.PathLike,
        *,
        header: Mapping[str, str] | None = None,
        legacy_names: bool = False,
        dtype: np.dtype | type = np.float64,
        compression: str | None = None,
    ) -> Path:
        """Write the file atomically.

        Parameters
        ----------
        path : str or path-like
            Destination ``.h5`` file.
        header : mapping of str to str, optional
            Extra ``/header`` entries (a creation time is always recorded).
        legacy_names : bool, default False
            Spell the groups ``dataSet`` / ``metaData`` like old MATLAB files.
        dtype : numpy dtype, default float64
            Storage dtype of the dataset.
        compression : {None, "gzip", "lzf"}
            HDF5 compression filter for the dataset.

        Returns
        -------
        pathlib.Path
        """
        import h5py

        from fmri2image import __version__
        from fmri2image._io import atomic_path

        if not self._blocks:
            raise ConfigError("BDataBuilder.write: nothing to write; call add() first.")
        data = np.hstack(self._blocks).astype(dtype, copy=False)
        values = np.vstack(self._values)
        hdr = {
            "ctime": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "creator": f"fmri2image {__version__}",
            **(dict(header) if header else {}),
        }
        ds_name, md_name = ("dataSet", "metaData") if legacy_names else ("dataset", "metadata")
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
            fh.create_dataset(ds_name, data=data, compression=compression)
            md = fh.create_group(md_name)
            md.create_dataset("key", data=[k.encode("utf-8") for k in self._keys])
            md.create_dataset("description", data=[d.encode("utf-8") for d in self._descriptions])
            md.create_dataset("value", data=values)
            hg = fh.create_group("header")
            for k, v in hdr.items():
                hg.create_dataset(k, data=str(v).encode("utf-8"))
            vg = fh.create_group("vmap")
            for mk, vm in self._vmap.items():
                g = vg.create_group(mk)
                for k, v in vm.items():
                    g.create_dataset(str(k), data=v.encode("utf-8"))
        return Path(path)
