"""Encoder families. Each module imports its heavy library lazily; use the registry
(:func:`fmri2image.features.get_encoder`) rather than these modules directly."""
