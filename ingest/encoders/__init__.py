"""The encoder registry: every module here that defines ENCODER (an EncoderSpec) is one encoder.

Adding an encoder is adding one module. Importing the registry is cheap: the fitters import
TensorFlow, scikit-learn and UMAP inside fit(), when they run.
"""

from __future__ import annotations

import importlib
import pkgutil

from ingest.encoders.base import EncoderSpec, FitContext

ORDER = ("pixels", "pca", "dae", "dae-umap")  # how tables list them: simplest first; others follow by name


def _discover() -> dict[str, EncoderSpec]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        spec = getattr(module, "ENCODER", None)
        if isinstance(spec, EncoderSpec):
            found[spec.name] = spec
    return {name: found[name] for name in sorted(found, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))}


REGISTRY: dict[str, EncoderSpec] = _discover()

__all__ = ["REGISTRY", "EncoderSpec", "FitContext"]
