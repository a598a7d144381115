"""Custom Keras layers that travel inside saved and exported encoders."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cbir")
class Deskew(keras.layers.Layer):
    """Straighten a slanted digit and centre it by mass: the classic MNIST moment deskew.

    Shear the rows so the ink's row/column covariance vanishes, then resample bilinearly. Written in
    Keras ops so it is part of the exported encoder: the query path runs it inside LiteRT for free.
    """

    def __init__(self, max_shear: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.max_shear = max_shear  # bounds the shear of odd user images (a blot, a line)

    def get_config(self) -> dict:
        return {**super().get_config(), "max_shear": self.max_shear}

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x):
        h, w = 28, 28
        img = ops.reshape(x, (-1, h, w))
        rows = ops.reshape(ops.arange(h, dtype="float32"), (1, h, 1))
        cols = ops.reshape(ops.arange(w, dtype="float32"), (1, 1, w))
        mass = ops.sum(img, axis=(1, 2)) + 1e-6
        r_mean = ops.sum(rows * img, axis=(1, 2)) / mass
        c_mean = ops.sum(cols * img, axis=(1, 2)) / mass
        dr = rows - r_mean[:, None, None]
        dc = cols - c_mean[:, None, None]
        r_var = ops.sum(dr * dr * img, axis=(1, 2)) / mass
        cov = ops.sum(dr * dc * img, axis=(1, 2)) / mass
        shear = ops.clip(cov / (r_var + 1e-6), -self.max_shear, self.max_shear)[:, None, None]
        # Output pixel (r, c) samples the input at the sheared, mass-centred position.
        src_r = rows + (r_mean[:, None, None] - h / 2) + 0.0 * cols
        src_c = cols + shear * (rows - h / 2) + (c_mean[:, None, None] - w / 2)
        r0, c0 = ops.floor(src_r), ops.floor(src_c)
        fr, fc = src_r - r0, src_c - c0
        # One pixel of zero padding makes every out-of-range sample read zero.
        padded = ops.reshape(ops.pad(img, ((0, 0), (1, 1), (1, 1))), (-1, (h + 2) * (w + 2)))

        def sample(r, c):
            r = ops.cast(ops.clip(r, -1, h), "int32") + 1
            c = ops.cast(ops.clip(c, -1, w), "int32") + 1
            flat = ops.reshape(r * (w + 2) + c, (-1, h * w))
            return ops.reshape(ops.take_along_axis(padded, flat, axis=1), (-1, h, w))

        out = ((1 - fr) * (1 - fc) * sample(r0, c0) + (1 - fr) * fc * sample(r0, c0 + 1)
               + fr * (1 - fc) * sample(r0 + 1, c0) + fr * fc * sample(r0 + 1, c0 + 1))
        return ops.reshape(out, ops.shape(x))


@keras.saving.register_keras_serializable(package="cbir")
class UnitContrast(keras.layers.Layer):
    """Per image: subtract the mean pixel, divide by the L2 norm; flat (N, pixels) out.

    Makes pixel distances blind to brightness and contrast, which is what Fashion-MNIST neighbours need.
    """

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 28 * 28)

    def call(self, x):
        flat = ops.reshape(x, (-1, 28 * 28))
        centred = flat - ops.mean(flat, axis=1, keepdims=True)
        return centred / (ops.sqrt(ops.sum(centred * centred, axis=1, keepdims=True)) + 1e-6)
