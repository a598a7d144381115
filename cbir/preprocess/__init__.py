"""Turn any picture of one digit into an MNIST-like 28x28 digit: white ink on black, centred by mass.

MNIST digits are black-and-white drawings fitted into a 20x20 box (the grey levels come from
anti-aliasing) and centred by mass in 28x28. A user's picture is brought to the same form, one
small step at a time (`steps` returns every intermediate image; docs/preprocess-steps.png draws them):

    open_image      decode the file (first frame; big JPEGs decoded at a reduced scale)
    to_gray         any mode -> luminance in [0, 1], transparency over white, EXIF rotation, <= 1024 px
    to_ink          ink bright on black (is the ink darker or lighter than the paper around it?)
    remove_background  subtract the paper: an opening wider than any stroke (uneven light, tinted paper, shadows)
    threshold       ink = brighter than Otsu's threshold on the flattened image, and than the noise
    drop_clutter    connected components: ruled lines, edge strips, frames and specks dropped, the digit kept
    crop            the digit's box, resampled so its longer side is 160 px (8x the final 20)
    normalise_stroke   pen width brought into MNIST's range (thin pens thickened, markers thinned)
    fit_20x20       area-averaged down to fit 20x20 keeping aspect, contrast stretched to a peak of 1
    centre_by_mass  placed in 28x28 with its centre of mass in the middle

numpy and Pillow only: this runs on every `search`, where scipy or OpenCV would cost more to
import than the whole query.

    decode.py   reading a file or bytes, and to_gray
    steps.py    the steps above, one function each
    arrays.py   the array operations they share (rank filters, morphology, run labelling)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cbir.preprocess.arrays import label_runs, mask_runs
from cbir.preprocess.decode import WORKING_SIZE, open_image, open_image_bytes, to_gray
from cbir.preprocess.steps import (
    BOX, SIZE, centre_by_mass, crop, drop_clutter, fit_20x20, is_mnist_style, normalise_stroke, remove_background,
    run_steps, stroke_width, threshold, to_ink,
)

__all__ = [
    "BOX", "SIZE", "WORKING_SIZE", "centre_by_mass", "crop", "drop_clutter", "fit_20x20", "is_mnist_style", "label_runs",
    "load_digit", "load_digit_bytes", "mask_runs", "normalise_stroke", "normalize", "open_image", "open_image_bytes",
    "remove_background", "steps", "stroke_width", "threshold", "to_gray", "to_ink",
]


def steps(gray: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Every intermediate image of `normalize`, in order, as (step name, image) pairs."""
    out: list[tuple[str, np.ndarray]] = [("gray", gray)]
    run_steps(gray, out)
    return out


def normalize(gray: np.ndarray) -> np.ndarray:
    """A grayscale image in [0, 1] -> 28x28 float32 in [0, 1], ink bright on black, like MNIST."""
    return run_steps(gray)


def load_digit(path: Path) -> np.ndarray:
    """Read an image file and return it as an MNIST-like 28x28 float32 array in [0, 1]."""
    return normalize(to_gray(open_image(path)))


def load_digit_bytes(data: bytes, name: str) -> np.ndarray:
    """The same for an image held in memory (an upload), named in messages by name."""
    return normalize(to_gray(open_image_bytes(data, name)))
