"""Tiny components and the configuration shared by the run / compare / report tests."""

from __future__ import annotations

import dataclasses

import numpy as np
from _planted import PoolEncoder

from fmri2image.generation import GenerationResult, Generator, image_seed
from fmri2image.pipeline.config import (
    DataSection,
    EvaluationSection,
    GenerationSection,
    MappingSection,
    RetrievalSection,
    RunConfig,
)


@dataclasses.dataclass(frozen=True)
class _Opts:
    size: int = 8


class PaintGenerator(Generator):
    """Paints the sign pattern of the embedding plus seeded noise (deterministic)."""

    name = "test-paint"
    conditioning = "embedding"
    Options = _Opts
    fail_after: int | None = None  # class-level: a crash half-way, not an option
    calls = 0

    def generate(self, requests):
        from PIL import Image

        out = []
        for r in requests:
            if PaintGenerator.fail_after is not None and PaintGenerator.calls >= self.fail_after:
                raise KeyboardInterrupt("killed half-way")
            PaintGenerator.calls += 1
            seed = image_seed(r.seed, r.stem)
            rng = np.random.default_rng(seed)
            s = self.options.size
            emb = np.resize(np.asarray(r.embedding) > r.stats.mean, (s, s))
            arr = (emb[..., None] * 200 + rng.integers(0, 30, (s, s, 3))).astype(np.uint8)
            out.append(GenerationResult(r.stem, (Image.fromarray(arr),), "paint", seed))
        return out


ENCODERS = {"pool-a": PoolEncoder("pool-a"), "pool-b": PoolEncoder("pool-b")}


def _config(god, out, **changes) -> RunConfig:
    root, db = god
    config = RunConfig(
        models=("pool-a", "pool-b"),
        out=str(out),
        data=DataSection(path=str(root), rois=("ROI_VC",)),
        mapping=MappingSection(cv=3),
        retrieval=RetrievalSection(databases=("prototypes", str(db))),
        generation=GenerationSection(generators=("test-paint", "retrieve")),
        evaluation=EvaluationSection(metrics=("pixcorr", "ssim"), bootstrap=50),
    )
    return dataclasses.replace(config, **changes)
