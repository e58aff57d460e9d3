"""fmri2image: reconstruct seen images from fMRI and compare visual embedding models.

Stages (one subpackage each, data flows one way)::

    data -> features -> mapping -> retrieval -> generation -> evaluation -> report

Heavy libraries (torch, faiss, transformers, diffusers, ray) are imported lazily
inside the functions that need them, so ``import fmri2image`` and
``fmri2image --help`` stay fast.
"""

from fmri2image.errors import Fmri2ImageError

__version__ = "0.1.0.dev0"

__all__ = ["Fmri2ImageError", "__version__"]
