"""The demo dataset: GOD's layout from real photographs and a simulated brain.

``write_demo_dataset(out_dir)`` writes a folder with exactly the layout of the
Generic Object Decoding release (``SubjectN.h5``, ``training/``, ``test/``, id
files) plus a labelled image database (``database/<wnid>/``) and a manifest
(``demo_dataset.json``), from photos that ship with installed packages (19
categories from the scikit-image / scikit-learn wheels, 65 with the Debian photo
packages) and fMRI from a documented encoding model.  See ``docs/demo-dataset.md``.

=================================  =============================================
``write_demo_dataset``             write the dataset -> :class:`DemoDatasetInfo`
``DemoDatasetInfo.load(folder)``   read a written dataset's info back
``read_demo_manifest(folder)``     its ``demo_dataset.json`` as a dict
``resolve_demo_request``           validate arguments, resolve defaults
``CATALOGUE``, ``DemoCategory``    the photo catalogue (wnid, name, regions)
``available_categories``           the entries whose photos are installed
``split_categories``               training / test / distractor choice
``DEBIAN_PHOTO_ROOTS``             where the Debian photos are looked for
``ROI_FRACTIONS``                  voxel share of each simulated ROI
=================================  =============================================

Modules: :mod:`~fmri2image.demo.catalogue` (photos and labels),
:mod:`~fmri2image.demo.stimuli` (crops, JPEG bytes), :mod:`~fmri2image.demo.brain`
(the encoding model), :mod:`~fmri2image.demo.design` (trial design),
:mod:`~fmri2image.demo.database` (the image database),
:mod:`~fmri2image.demo.writer` and :mod:`~fmri2image.demo.info`.  Importing the
package is cheap: torch loads only when features are computed.
"""

from __future__ import annotations

from fmri2image.demo.brain import ROI_FRACTIONS
from fmri2image.demo.catalogue import (
    CATALOGUE,
    DEBIAN_PHOTO_ROOTS,
    PIP_PACKAGES,
    CategorySplit,
    DemoCategory,
    PhotoRegion,
    available_categories,
    default_n_test_categories,
    find_photo,
    split_categories,
)
from fmri2image.demo.database import DATABASE_DIR, DatabaseInfo
from fmri2image.demo.info import MANIFEST_NAME, DemoDatasetInfo, read_demo_manifest
from fmri2image.demo.writer import DemoRequest, resolve_demo_request, write_demo_dataset

__all__ = [
    "CATALOGUE",
    "DATABASE_DIR",
    "DEBIAN_PHOTO_ROOTS",
    "MANIFEST_NAME",
    "PIP_PACKAGES",
    "ROI_FRACTIONS",
    "CategorySplit",
    "DatabaseInfo",
    "DemoCategory",
    "DemoDatasetInfo",
    "DemoRequest",
    "PhotoRegion",
    "available_categories",
    "default_n_test_categories",
    "find_photo",
    "read_demo_manifest",
    "resolve_demo_request",
    "split_categories",
    "write_demo_dataset",
]
