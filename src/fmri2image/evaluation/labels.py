"""Label tables for ``evaluate --labels``: each image's true and predicted WordNet ids.

Two layouts are read:

* a CSV with columns ``image`` (the stem), ``true_wnid`` and ``pred_wnid``; a
  prediction may list several wnids, best first, separated by spaces or ``;``
  (then hit@5 is scored too);
* the per-query table `fmri2image decode` writes
  (``retrieval/<database>/semantic_per_query.parquet``: ``query``, ``true_wnid``,
  ``top1_wnid``, ``rank``).

The scores are :func:`~fmri2image.evaluation.semantic.label_scores`: hit@1, hit@5
and the WordNet Wu–Palmer / path similarity of the top label.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.imagenet import is_wnid

__all__ = ["LABEL_METRICS", "LabelTable", "read_label_table"]

#: The label metrics ``evaluate`` can compute from a label table.
LABEL_METRICS = ("hit1", "hit5", "wup", "path")


@dataclass(frozen=True)
class LabelTable:
    """True and predicted labels per image stem.

    Attributes
    ----------
    path : str
    true : dict of str to str
        Stem -> true wnid.
    top1 : dict of str to str
        Stem -> top predicted wnid.
    rank : dict of str to int
        Stem -> 1-based rank of the true wnid among the predictions (0: absent).
    ranked : bool
        Whether predictions rank more than one label (so hit@5 differs from hit@1).
    """

    path: str
    true: dict[str, str]
    top1: dict[str, str]
    rank: dict[str, int]
    ranked: bool

    def __len__(self) -> int:
        return len(self.true)


def _check_wnid(value: str, where: str) -> str:
    if not is_wnid(value):
        raise DataFormatError(
            f"{where}: {value!r} is not a WordNet id (expected n + 8 digits, e.g. n02123045)."
        )
    return value


def _read_csv(path: Path) -> LabelTable:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = {"image", "true_wnid", "pred_wnid"}
    have = set(rows[0]) if rows else set()
    if not rows or not need <= have:
        raise DataFormatError(
            f"--labels {path}: a label CSV needs the columns image, true_wnid and pred_wnid "
            f"(several predicted wnids, best first, separated by spaces or ';'); found "
            f"{', '.join(sorted(have)) or 'no rows'}."
        )
    true, top1, rank = {}, {}, {}
    ranked = False
    for i, row in enumerate(rows, start=2):
        stem = (row["image"] or "").strip()
        if not stem:
            raise DataFormatError(f"--labels {path}, line {i}: the image column is empty.")
        if stem in true:
            raise DataFormatError(f"--labels {path}: image {stem!r} is listed twice.")
        t = _check_wnid((row["true_wnid"] or "").strip(), f"--labels {path}, line {i}")
        preds = [p for p in re.split(r"[;\s]+", row["pred_wnid"] or "") if p]
        for p in preds:
            _check_wnid(p, f"--labels {path}, line {i}")
        ranked |= len(preds) > 1
        true[stem] = t
        top1[stem] = preds[0] if preds else ""
        rank[stem] = preds.index(t) + 1 if t in preds else 0
    return LabelTable(str(path), true, top1, rank, ranked)


def _read_parquet(path: Path) -> LabelTable:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    need = {"query", "true_wnid", "top1_wnid", "rank"}
    if not need <= set(table.column_names):
        raise DataFormatError(
            f"--labels {path}: a parquet label table needs the columns query, true_wnid, "
            "top1_wnid and rank, as `fmri2image decode` writes in "
            "retrieval/<database>/semantic_per_query.parquet."
        )
    cols = {c: table.column(c).to_pylist() for c in need}
    stems = [str(q) for q in cols["query"]]
    if len(set(stems)) != len(stems):
        raise DataFormatError(f"--labels {path}: some queries are listed twice.")
    return LabelTable(
        str(path),
        dict(zip(stems, map(str, cols["true_wnid"]))),
        dict(zip(stems, (str(p or "") for p in cols["top1_wnid"]))),
        dict(zip(stems, (int(r) for r in cols["rank"]))),
        ranked=bool(np.any(np.asarray(cols["rank"]) > 1)),
    )


def read_label_table(path: str | os.PathLike) -> LabelTable:
    """Read a label CSV or a run's ``semantic_per_query.parquet``
    (``maps/s<S>-<ROI>/<model>/retrieval/<database>/``).

    Raises
    ------
    ConfigError
        The file is missing or neither .csv nor .parquet.
    DataFormatError
        Columns missing, an image listed twice, or a value that is not a wnid.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--labels {path} is not a file.")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise ConfigError(
        f"--labels {path}: give a .csv (image,true_wnid,pred_wnid) or the "
        "semantic_per_query.parquet of a run (maps/s<S>-<ROI>/<model>/retrieval/<database>/)."
    )
