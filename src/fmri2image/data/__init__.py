"""GOD data layer: BData files, stimulus ids and images, splits and normalization.

Public names are imported lazily (PEP 562), so ``import fmri2image.data`` is cheap.

=============================  ===============================================
``Dataset``, ``DATASETS``       the dataset seam (``register_dataset``), ``split_recording``
``GODDataset``                  GOD as a :class:`Dataset` (``data.dataset = "god"``)
``read_bdata``, ``BDataFile``   read BData HDF5 files (bdpy format) with h5py
``BDataBuilder``                write BData HDF5 files that bdpy loads
``stimulus_id_to_wnid`` ...     exact GOD stimulus-id encoding
``find_subject_files``          locate ``SubjectN.h5`` or the split release
``load_god_subject``            -> :class:`GODSubject` (voxels + labels)
``load_stimulus_set``           -> :class:`StimulusSet` (ids, names, image paths)
``make_splits``                 -> :class:`GODSplits` (train/val/test/imagery)
``write_god_subject`` ...       write GOD-layout folders (BData, images, id files)
=============================  ===============================================
"""

from __future__ import annotations

from fmri2image._lazy import lazy_exports

_EXPORTS = {
    # bdata
    "BDataBuilder": "bdata",
    "BDataFile": "bdata",
    "MetadataKeyError": "bdata",
    "MissingDataFileError": "bdata",
    "parse_query": "bdata",
    "read_bdata": "bdata",
    # ids
    "category_of": "ids",
    "image_name_to_stimulus_id": "ids",
    "image_names_to_stimulus_ids": "ids",
    "stimulus_id_key": "ids",
    "stimulus_id_keys": "ids",
    "stimulus_id_to_image_name": "ids",
    "stimulus_id_to_wnid": "ids",
    "stimulus_ids_to_categories": "ids",
    "stimulus_ids_to_image_names": "ids",
    "stimulus_ids_to_wnids": "ids",
    "wnid_to_category": "ids",
    # dataset (the seam every dataset plugs into)
    "DATASETS": "dataset",
    "Dataset": "dataset",
    "DatasetEntry": "dataset",
    "DecodingSplit": "dataset",
    "Recording": "dataset",
    "RemoteFile": "dataset",
    "Stimuli": "dataset",
    "average_rows": "dataset",
    "dataset_class": "dataset",
    "get_dataset": "dataset",
    "register_dataset": "dataset",
    "split_recording": "dataset",
    # god
    "DATA_TYPES": "god",
    "GODDataset": "god",
    "GODSubject": "god",
    "parse_subject": "god",
    "find_subject_files": "god",
    "load_god_subject": "god",
    # stimuli
    "StimulusSet": "stimuli",
    "check_stimulus_ids": "stimuli",
    "find_stimulus_root": "stimuli",
    "load_images": "stimuli",
    "load_stimuli": "stimuli",
    "load_stimulus_set": "stimuli",
    "read_id_file": "stimuli",
    # preprocess
    "GODSplits": "preprocess",
    "NormalizationStats": "preprocess",
    "make_splits": "preprocess",
    "zscore_by_run": "preprocess",
    # layout (GOD-layout writers; the demo dataset lives in fmri2image.demo)
    "GOD_ROI_UNIONS": "layout",
    "StimulusFiles": "layout",
    "god_sample_indices": "layout",
    "roi_masks_with_unions": "layout",
    "write_god_subject": "layout",
    "write_id_file": "layout",
    "write_stimulus_set": "layout",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(
    __name__, {name: f"fmri2image.data.{module}" for name, module in _EXPORTS.items()}
)
