"""Reading a picture: decode a file (or bytes) safely, then any mode -> float luminance in [0, 1]."""

from __future__ import annotations

import io
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cbir.errors import CbirError

WORKING_SIZE = 1024  # larger images are reduced first: the digit ends up 20x20 anyway

_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF",
    b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF",
}


def _claimed(head: bytes) -> str | None:
    """The image format a file's first bytes claim, if any (a RIFF file is WebP only if it says so)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES.items() if head.startswith(magic)), None)


def _looks_like(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return _claimed(fh.read(12))
    except OSError:
        return None


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image file, or raise a CbirError naming the problem.

    A JPEG much larger than the working size is decoded at 1/2, 1/4 or 1/8 scale (the decoder's
    own DCT scaling, still at least WORKING_SIZE on its longer side): a 12-megapixel photo then
    decodes in a fraction of the time.
    """
    path = Path(path)
    if not path.exists():
        raise CbirError(f"{path}: no such file")
    if path.is_dir():
        raise CbirError(f"{path}: is a directory, not an image")
    if not stat.S_ISREG(path.stat().st_mode):
        raise CbirError(f"{path}: not a regular file (a FIFO, socket or device); give image files or folders")
    return _decode(lambda: Image.open(path), str(path), lambda: _looks_like(path))


def open_image_bytes(data: bytes, name: str) -> Image.Image:
    """Open and fully decode an image held in memory, with open_image's checks and messages."""
    if not data:
        raise CbirError(f"{name}: not an image file (or a format Pillow cannot read)")
    return _decode(lambda: Image.open(io.BytesIO(data)), name, lambda: _claimed(data[:12]))


def _decode(opener, path: str, claim) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = opener()
            img.seek(0)  # first frame of an animation
            if img.format == "JPEG" and max(img.size) > 2 * WORKING_SIZE:
                img.draft(img.mode, (WORKING_SIZE, WORKING_SIZE))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CbirError(f"{path}: image is too large to be decoded safely (decompression bomb?)") from None
    except UnidentifiedImageError:
        claimed = claim()
        if claimed:
            raise CbirError(f"{path}: corrupt or truncated image (starts like a {claimed} but cannot be decoded)") from None
        raise CbirError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CbirError(f"{path}: corrupt or truncated image ({exc})") from None
    if img.mode == "F" and not np.isfinite(np.asarray(img)).all():
        raise CbirError(f"{path}: pixel values are NaN or infinite; save the image with finite values")
    return img


# Modes Image.reduce averages correctly; the rest are converted first (palette indices and 1-bit
# pixels cannot be averaged, 16-bit modes cannot be reduced at all).
_PLAIN = {"1": "L", "P": "RGB", "PA": "RGBA", "I;16": "I", "I;16L": "I", "I;16B": "I", "I;16N": "I",
          "La": "LA", "RGBa": "RGBA", "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


def to_gray(img: Image.Image) -> np.ndarray:
    """Any mode -> float32 luminance in [0, 1]; transparency is composited over white."""
    if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation: turn the pixels upright (a copy: only when needed)
        img = ImageOps.exif_transpose(img)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif img.mode in _PLAIN:
        img = img.convert(_PLAIN[img.mode])
    if img.mode == "F" and not np.isfinite(np.asarray(img)).all():
        raise CbirError("pixel values are NaN or infinite; save the image with finite values")
    factor = -(-max(img.size) // WORKING_SIZE)
    if factor > 1:
        img = img.reduce(factor)  # box-average: keeps thin strokes, bounds memory for huge images
    if img.mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        return np.clip(arr / peak, 0, 1).astype(np.float32)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        return np.clip(arr / max(float(arr.max()), 1.0), 0, 1)
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
