"""`pixels`: the 784 raw pixels in [0, 1], the baseline. Nothing to fit."""

from __future__ import annotations

from ingest.encoders.base import EncoderSpec, FitContext, image_input


def fit(images, context: FitContext):
    import keras

    inp = image_input()
    return keras.Model(inp, keras.layers.Flatten(name="pixels")(inp), name="pixels"), {}


ENCODER = EncoderSpec("pixels", "the 784 raw pixels in [0, 1]: the baseline", fit)
