"""Pictures a person can open: rows of enlarged 28x28 digits with captions under each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cbir.errors import CbirError

CELL = 112  # 28 * 4
CAPTION = 30
PAD = 6


def tile(image: np.ndarray) -> Image.Image:
    """A 28x28 float image in [0, 1] -> an enlarged grayscale PIL image."""
    arr = (np.clip(np.asarray(image, dtype=np.float32).reshape(28, 28), 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(arr, mode="L").resize((CELL, CELL), Image.Resampling.NEAREST)


def grid(rows: list[list[tuple]]) -> Image.Image:
    """Lay out rows of (image, caption[, correct]) cells; captions may hold two lines.

    A cell with correct=True gets a green frame, correct=False a red one.
    """
    ncols = max(len(r) for r in rows)
    width = PAD + ncols * (CELL + PAD)
    height = PAD + len(rows) * (CELL + CAPTION + PAD)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for r, row in enumerate(rows):
        y = PAD + r * (CELL + CAPTION + PAD)
        for c, (image, caption, *correct) in enumerate(row):
            x = PAD + c * (CELL + PAD)
            canvas.paste(tile(image), (x, y))
            if correct:
                colour = "#2ca02c" if correct[0] else "#d62728"
                draw.rectangle((x - 3, y - 3, x + CELL + 2, y + CELL + 2), outline=colour, width=3)
            draw.multiline_text((x + 2, y + CELL + 2), caption, fill="black", font=font, spacing=2)
    return canvas


def save_png(image: Image.Image, path: Path) -> Path:
    """Write a PNG, turning file-system errors into a clear message."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG")
    except OSError as exc:
        raise CbirError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
