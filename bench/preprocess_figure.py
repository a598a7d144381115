"""Draw docs/preprocess-steps.png: a few user-made query images, one row each, one column per step.

    CBIR_DATA_DIR=../shared/data/mnist .venv/bin/python bench/preprocess_figure.py [--out docs/preprocess-steps.png]

The examples are made from MNIST test digits by bench/user_made.py (a thin pen, a thick marker,
a phone photo with a desk strip, a transparent PNG) and one MNIST test image, which is taken as it is.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import user_made  # noqa: E402
from cbir import preprocess  # noqa: E402

TILE = 150
LABEL_H = 34
ROW_LABEL_W = 150
COLUMNS = ["gray", "ink", "background removed", "threshold", "clutter dropped", "crop", "stroke normalised",
           "fit 20x20", "centred by mass"]


def examples() -> list[tuple[str, bytes]]:
    images, _ = user_made.mnist_test()
    rng = np.random.default_rng(7)
    thin = user_made.draw_digit(4, (300, 300), 210, 3, (150, 150))  # a "4"
    thick = user_made.draw_digit(2, (300, 300), 210, 40, (150, 150))  # a "1"
    transparent = np.zeros((300, 300, 4), dtype=np.uint8)
    transparent[..., :3] = (40, 60, 190)
    transparent[..., 3] = (user_made.draw_digit(8, (300, 300), 200, 16, (150, 150)) * 255).astype(np.uint8)
    photo = user_made._photo(np.random.default_rng(3), 18, strip=True, size=(1600, 1200))
    out = [
        ("thin pen (3 px)", _png(Image.fromarray(((1 - thin) * 255).astype(np.uint8)))),
        ("thick marker (40 px)", _png(Image.fromarray(((1 - thick) * 255).astype(np.uint8)))),
        ("phone photo: light falloff, noise, JPEG, desk strip", photo),
        ("transparent PNG, blue ink", _png(Image.fromarray(transparent, "RGBA"))),
        ("MNIST test image", _png(Image.fromarray(images[int(rng.integers(10000))]))),
    ]
    return out


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def tile(image: np.ndarray | Image.Image | None) -> Image.Image:
    out = Image.new("RGB", (TILE, TILE), (235, 235, 235))
    if image is None:
        return out
    if isinstance(image, np.ndarray):
        a = image.astype(np.float32)
        a = a / a.max() if a.max() > 0 else a
        image = Image.fromarray((a * 255).astype(np.uint8))
    image = image.convert("RGB")
    w, h = image.size
    scale = (TILE - 6) / max(w, h)
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BOX
    image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)
    out.paste(image, ((TILE - image.size[0]) // 2, (TILE - image.size[1]) // 2))
    return out


def figure(out: Path) -> None:
    font = ImageFont.load_default(size=13)
    rows = examples()
    width = ROW_LABEL_W + TILE * (len(COLUMNS) + 1)
    sheet = Image.new("RGB", (width, LABEL_H + TILE * len(rows)), "white")
    d = ImageDraw.Draw(sheet)
    for j, name in enumerate(["file"] + COLUMNS):
        x = ROW_LABEL_W + j * TILE
        for k, part in enumerate(_wrap(name, 18)):
            d.text((x + 4, 2 + 15 * k), part, fill="black", font=font)
    for i, (label, data) in enumerate(rows):
        y = LABEL_H + i * TILE
        for k, part in enumerate(_wrap(label, 20)):
            d.text((4, y + 8 + 16 * k), part, fill="black", font=font)
        img = Image.open(io.BytesIO(data))
        shown = img.convert("RGBA") if img.mode in ("RGBA", "LA", "P") else img
        if shown.mode == "RGBA":  # transparency over a checkerboard, as image viewers show it
            board = (np.indices(shown.size[::-1]) // 20).sum(0) % 2 * 40 + 200
            back = Image.fromarray(np.repeat(board[..., None], 3, -1).astype(np.uint8)).convert("RGBA")
            shown = Image.alpha_composite(back, shown)
        sheet.paste(tile(shown), (ROW_LABEL_W, y))
        steps = dict(preprocess.steps(preprocess.to_gray(img)))
        for j, name in enumerate(COLUMNS):
            if name in steps:
                sheet.paste(tile(steps[name]), (ROW_LABEL_W + (j + 1) * TILE, y))
        if "mnist as it is" in steps:
            sheet.paste(tile(steps["mnist as it is"]), (ROW_LABEL_W + len(COLUMNS) * TILE, y))
            d.text((ROW_LABEL_W + 2 * TILE + 10, y + TILE // 2 - 8),
                   "28x28 with a dark border: taken exactly as it is", fill="black", font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    print(f"wrote {out} ({sheet.size[0]}x{sheet.size[1]})")


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "preprocess-steps.png")
    figure(parser.parse_args().out)


if __name__ == "__main__":
    main()
