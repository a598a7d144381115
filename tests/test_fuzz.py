"""Property-based tests: whatever bytes arrive, the readers fail only with the project's own error."""

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cbir import preprocess
from cbir.errors import CbirError
from cbir.idx import parse_idx

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=4096))
def test_idx_parser_on_random_bytes(raw):
    try:
        arr = parse_idx(raw)
    except CbirError:
        return
    assert arr.dtype == np.uint8  # anything accepted is a well-formed array


@FUZZ
@given(st.binary(min_size=0, max_size=2048), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff"]))
def test_image_loader_on_random_bytes(tmp_path_factory, body, magic):
    path = tmp_path_factory.mktemp("fuzz") / "q.png"
    path.write_bytes(magic + body)
    try:
        out = preprocess.load_digit(path)
    except CbirError:
        return
    assert out.shape == (28, 28) and np.isfinite(out).all()


@FUZZ
@given(
    st.integers(1, 80), st.integers(1, 80), st.sampled_from(["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "CMYK"]),
    st.sampled_from(["PNG", "GIF", "JPEG", "BMP", "TIFF", "WEBP"]), st.integers(0, 2**32 - 1),
)
def test_image_loader_on_random_valid_images(tmp_path_factory, w, h, mode, fmt, seed):
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).convert(mode) if mode != "I;16" else \
        Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):
        return  # Pillow cannot write this mode in this format: not an input a user could have
    path = tmp_path_factory.mktemp("fuzz") / f"q.{fmt.lower()}"
    path.write_bytes(buf.getvalue())
    try:
        out = preprocess.load_digit(path)
    except CbirError as exc:
        assert "no ink" in str(exc)  # a valid image is either used or found blank
        return
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
