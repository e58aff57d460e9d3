"""Stage composition: run the decoding pipeline for one subject and several encoders.

Nothing in the stage packages imports this module; it sits on top with the CLI.
"""

from fmri2image.pipeline.decoding import (
    DecodingConfig,
    DecodingResult,
    EncoderResult,
    RetrievalSummary,
    run_decoding,
)

__all__ = ["DecodingConfig", "DecodingResult", "EncoderResult", "RetrievalSummary", "run_decoding"]
