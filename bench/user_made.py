"""Query images the way people make them, from MNIST *test* digits (never training images).

    from bench.user_made import make_queries, DIGIT_CONDITIONS, NON_DIGIT_CONDITIONS
    queries = make_queries("phone-photo", n=500, seed=0)   # [(image file bytes, label or None), ...]

Each query is the bytes of an image file (PNG or JPEG, as a person would save or send it), so it
goes through the same decoding as `search digit.png`. Digit conditions redraw a test digit: its
skeleton (Zhang-Suen thinning of the digit enlarged 8x) is drawn again with a pen of a chosen
width, at a chosen size, angle and place, on a canvas or on a synthetic photo of paper (uneven
light, paper texture, noise, blur, JPEG). Non-digit conditions (label None) are for a later "no
close match" signal: blank paper, objects, textures, noise, letters.

Everything is seeded: the same (condition, n, seed) gives the same bytes. numpy and Pillow only.
"""

from __future__ import annotations

import io
import os
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont


@dataclass(frozen=True)
class Condition:
    name: str
    description: str
    held_out: bool = False  # kept out of development: its numbers were not looked at while tuning
    digit: bool = True
    round: int = 1  # held-out round: 1 fixed before any tuning, 2 fixed before the post-hoc revision


# Decided before any preprocessing was tuned. The first four held-out conditions (round 1) were
# not looked at until the preprocessing was final (commit 99ffb71; bench/user_queries.py reports
# them in their own table). Round 2 was added then, before the revision that round 1 prompted.
CONDITIONS: dict[str, Condition] = {c.name: c for c in (
    Condition("clean-mnist", "the MNIST test image itself, saved as a 28x28 PNG (the reference)"),
    Condition("redrawn", "redrawn with an MNIST-like pen (11.5% of its height) on a clean 280 px canvas: "
                         "the ceiling of every redrawn condition (a redraw is not the original)"),
    Condition("upscaled", "the test image enlarged (100-600 px, bicubic), dark on light, on a page with margins; PNG or JPEG"),
    Condition("thin-pen", "redrawn on a 250-400 px white canvas with a 2-5 px pen (anti-aliased PNG)"),
    Condition("thick-marker", "redrawn on a canvas with a marker 14-24% of the digit's height"),
    Condition("phone-photo", "a photo of the digit on paper: grey or white paper, light falling off, vignetting, "
                             "paper texture, sensor noise, slight blur, JPEG 70-92"),
    Condition("edge-strip", "a phone photo with a dark strip (desk, page edge) along one side"),
    Condition("ruled-paper", "written on ruled paper: light blue lines that cross the digit, sometimes a red margin"),
    Condition("blur-jpeg", "a canvas drawing blurred (sigma 1-3% of the digit), noisy, JPEG 10-35"),
    Condition("small-marks", "a small digit (12-30% of the page height) off-centre, with specks and scribbles around it"),
    Condition("tinted-colour", "coloured ink (blue, red, green, purple) on tinted paper (yellow, blue, pink, kraft), JPEG"),
    Condition("tilted", "a canvas drawing rotated by 5-15 degrees either way"),
    Condition("transparent", "coloured strokes on a transparent background (RGBA PNG)"),
    Condition("shadow", "a phone photo with a soft-edged cast shadow across part of the page", held_out=True),
    Condition("dim-light", "an underexposed phone photo: dark paper (luminance 0.2-0.4), strong noise", held_out=True),
    Condition("chalkboard", "grainy chalk on a dark green, grey or black board with smudges (light ink on dark)", held_out=True),
    Condition("framed", "the digit inside a hand-drawn box (or a box along the image's edge)", held_out=True),
    # Round 2: added after round 1's numbers were seen and the frame, shadow-edge and noise handling
    # were revised; fixed before any of those revisions were run on them.
    Condition("graph-paper", "a phone photo of a digit on squared paper (light grid lines every 3-7% of the page)",
              held_out=True, round=2),
    Condition("pencil-faint", "a light, grainy pencil (50-70% of the paper's brightness) on a phone photo",
              held_out=True, round=2),
    Condition("perspective", "a phone photo taken at an angle: the page warped in perspective, a desk around it",
              held_out=True, round=2),
    Condition("blank-page", "paper with texture, light falloff and noise, and no ink", digit=False),
    Condition("object", "a photo of a shaded object (a filled ellipse or blob) on paper or a table", digit=False),
    Condition("texture", "a random texture patch (fabric-like stripes and noise) filling the frame", digit=False),
    Condition("smooth-random", "a natural-looking smooth random image (several octaves of colour noise)", digit=False),
    Condition("noise", "pure uniform random noise", digit=False),
    Condition("letters", "a letter of the alphabet (not one that looks like a digit) drawn with a font", digit=False),
)}
DIGIT_CONDITIONS = [c.name for c in CONDITIONS.values() if c.digit]
HELD_OUT = [c.name for c in CONDITIONS.values() if c.held_out]
NON_DIGIT_CONDITIONS = [c.name for c in CONDITIONS.values() if not c.digit]
LETTERS = "ACEFHJKLMNPRTUVWXYacdefhjkmnprtuvwxy"  # no O/o, I/l/i, S/s, Z/z, B/b, G/g, q: they read as digits


# --- MNIST test digits and their skeletons -------------------------------------------------------

def _data_dir() -> Path:
    env = os.environ.get("CBIR_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


@lru_cache(maxsize=1)
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test images (uint8) and labels."""
    from cbir import datasets

    split = datasets.load_split("mnist", "test", _data_dir())
    return split.images, split.labels


def zhang_suen(mask: np.ndarray) -> np.ndarray:
    """Thin a binary shape to a one-pixel skeleton (Zhang & Suen, 1984), on whole arrays."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = np.pad(img, 1)
            n = [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:], p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]
            count = sum(x.astype(np.int8) for x in n)
            trans = sum(((n[i] == 0) & (n[(i + 1) % 8] == 1)).astype(np.int8) for i in range(8))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            if step == 0:
                cond = ((p2 & p4 & p6) == 0) & ((p4 & p6 & p8) == 0)
            else:
                cond = ((p2 & p4 & p8) == 0) & ((p2 & p6 & p8) == 0)
            remove = (img == 1) & (count >= 2) & (count <= 6) & (trans == 1) & cond
            if remove.any():
                img[remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


SKELETON_SCALE = 8  # 8x: smoother skeletons than 4x (a redraw at an MNIST pen then scores 0.975 top-1, not 0.969)


@lru_cache(maxsize=20000)
def skeleton_edges(index: int) -> np.ndarray:
    """The skeleton of test digit `index` (enlarged SKELETON_SCALE times) as line segments (K, 4): y0, x0, y1, x1 in 28x28 units."""
    images, _ = mnist_test()
    s = SKELETON_SCALE
    big = np.asarray(Image.fromarray(images[index]).resize((28 * s, 28 * s), Image.Resampling.BILINEAR)) >= 128
    sk = zhang_suen(big)
    ys, xs = np.nonzero(sk)
    segs = []
    h, w = sk.shape
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each neighbour pair once
        y2, x2 = ys + dy, xs + dx
        ok = (y2 >= 0) & (y2 < h) & (x2 >= 0) & (x2 < w)
        ok[ok] = sk[y2[ok], x2[ok]]
        segs.append(np.stack([ys[ok], xs[ok], y2[ok], x2[ok]], axis=1))
    lone = np.stack([ys, xs, ys, xs], axis=1)  # dots (isolated pixels) are drawn too
    out = np.concatenate(segs + [lone]).astype(np.float32)
    return (out + 0.5) / s


def draw_digit(index: int, size: tuple[int, int], height: float, pen: float, centre: tuple[float, float],
               angle: float = 0.0, supersample: int = 2) -> np.ndarray:
    """Ink coverage (H, W) float in [0, 1]: test digit `index` redrawn `height` px tall with a round pen."""
    images, _ = mnist_test()
    edges = skeleton_edges(index)
    ys, xs = np.nonzero(images[index] > 0)
    cy0, cx0 = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    scale = height / (ys.max() - ys.min() + 1) * supersample
    theta = np.deg2rad(angle)
    cos, sin = np.cos(theta), np.sin(theta)

    def place(y, x):
        y, x = (y - cy0) * scale, (x - cx0) * scale
        return centre[0] * supersample + sin * x + cos * y, centre[1] * supersample + cos * x - sin * y

    y0, x0 = place(edges[:, 0], edges[:, 1])
    y1, x1 = place(edges[:, 2], edges[:, 3])
    w, h = size[0] * supersample, size[1] * supersample
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    width = max(1, int(round(pen * supersample)))
    r = pen * supersample / 2
    for a, b, c, e in zip(x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist()):
        d.line((a, b, c, e), fill=255, width=width)
        if r >= 1.5:
            d.ellipse((a - r, b - r, a + r, b + r), fill=255)
    if r >= 1.5:
        d.ellipse((x1[-1] - r, y1[-1] - r, x1[-1] + r, y1[-1] + r), fill=255)
    if supersample > 1:
        img = img.reduce(supersample)
    return np.asarray(img, dtype=np.float32) / 255.0


# --- paper, light, camera -------------------------------------------------------------------------

def _smooth_noise(rng, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random field in about [-1, 1]: random values on a coarse grid, enlarged bicubically."""
    h, w = shape
    gh, gw = max(2, cells * h // max(h, w) + 2), max(2, cells * w // max(h, w) + 2)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC))


def _lighting(rng, shape, falloff: float) -> np.ndarray:
    """A light field in (0, 1]: a linear gradient in a random direction times radial vignetting."""
    h, w = shape
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    a = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(a) * xx + np.sin(a) * yy) / 2 + 0.5  # 0 .. 1 across the page
    light = 1.0 - falloff * ramp
    vig = rng.uniform(0.0, 0.25)
    cy, cx = rng.uniform(-0.3, 0.3, 2)
    light = light * (1.0 - vig * np.clip(((xx - cx) ** 2 + (yy - cy) ** 2) / 2, 0, 1))
    return light.astype(np.float32)


def _compose(rng, coverage: np.ndarray, paper_rgb, ink_rgb, light: np.ndarray | None = None,
             texture: float = 0.0, noise: float = 0.0, blur: float = 0.0) -> Image.Image:
    """Paper with ink on it, lit, textured, blurred and noisy, as an RGB image."""
    h, w = coverage.shape
    paper = np.asarray(paper_rgb, dtype=np.float32)[None, None, :] / 255.0
    ink = np.asarray(ink_rgb, dtype=np.float32)[None, None, :] / 255.0
    if texture > 0:
        grain = texture * (0.6 * _smooth_noise(rng, (h, w), 60) + 0.4 * _smooth_noise(rng, (h, w), 8))
        paper = paper * (1.0 + grain[..., None])
    a = coverage[..., None]
    img = paper * (1 - a) + ink * a
    if light is not None:
        img = img * light[..., None]
    out = Image.fromarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")
    if blur > 0:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    if noise > 0:
        arr = np.asarray(out, dtype=np.float32) + rng.normal(0, noise * 255, (h, w, 1)).astype(np.float32) \
            + rng.normal(0, noise * 255 * 0.3, (h, w, 3)).astype(np.float32)
        out = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    return out


def _encode(img: Image.Image, fmt: str, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buf, format="JPEG", quality=int(quality))
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


PAPERS = {"white": (246, 244, 238), "grey": (200, 198, 192), "cream": (240, 232, 210), "bluish": (225, 232, 240)}
TINTS = {"yellow": (250, 238, 170), "blue": (196, 216, 248), "pink": (250, 206, 218), "kraft": (196, 164, 122),
         "green": (206, 236, 200)}
INKS = {"black": (25, 25, 30), "blue": (25, 45, 170), "red": (190, 25, 30), "green": (20, 120, 45),
        "purple": (95, 30, 135), "pencil": (80, 80, 85)}


def _photo_size(rng) -> tuple[int, int]:
    w, h = (1200, 900) if rng.random() < 0.6 else (900, 1200)
    return w, h


def _place_digit(rng, size, height, margin=0.1, avoid=None):
    """A centre for a digit `height` px tall (about 0.8 as wide) inside the page, away from `avoid` (x0,y0,x1,y1)."""
    w, h = size
    half_h, half_w = height / 2, height * 0.45
    for _ in range(50):
        cx = rng.uniform(half_w + margin * w, w - half_w - margin * w) if w - 2 * (half_w + margin * w) > 0 else w / 2
        cy = rng.uniform(half_h + margin * h, h - half_h - margin * h) if h - 2 * (half_h + margin * h) > 0 else h / 2
        if avoid is None:
            return cy, cx
        x0, y0, x1, y1 = avoid
        if cx + half_w < x0 or cx - half_w > x1 or cy + half_h < y0 or cy - half_h > y1:
            return cy, cx
    return h / 2, w / 2


# --- the conditions -----------------------------------------------------------------------------

def _clean_mnist(rng, index):
    images, _ = mnist_test()
    return _encode(Image.fromarray(images[index]), "PNG")


def _upscaled(rng, index):
    images, _ = mnist_test()
    side = int(rng.integers(100, 601))
    big = Image.fromarray(255 - images[index]).resize((side, side), Image.Resampling.BICUBIC)
    mw, mh = (int(side * rng.uniform(0, 0.4)) for _ in range(2))
    page = Image.new("L", (side + 2 * mw, side + 2 * mh), 255)
    page.paste(big, (mw + int(rng.integers(-mw, mw + 1) * 0.5), mh + int(rng.integers(-mh, mh + 1) * 0.5)))
    return _encode(page, "JPEG", 95) if rng.random() < 0.5 else _encode(page, "PNG")


def _canvas(rng, index, pen_ratio=None, pen_px=None, angle=0.0, ink="black", paper=(255, 255, 255)):
    side = int(rng.integers(250, 401))
    height = side * rng.uniform(0.55, 0.8)
    pen = pen_px if pen_px is not None else height * pen_ratio
    centre = (side / 2 + rng.uniform(-0.08, 0.08) * side, side / 2 + rng.uniform(-0.08, 0.08) * side)
    cov = draw_digit(index, (side, side), height, pen, centre, angle)
    return cov, side


def _redrawn(rng, index):
    cov = draw_digit(index, (280, 280), 200, 200 * 2.3 / 20, (140, 140))
    return _encode(Image.fromarray(((1 - cov) * 255 + 0.5).astype(np.uint8)), "PNG")


def _thin_pen(rng, index):
    cov, _ = _canvas(rng, index, pen_px=rng.uniform(2, 5))
    return _encode(Image.fromarray(((1 - cov) * 255 + 0.5).astype(np.uint8)), "PNG")


def _thick_marker(rng, index):
    cov, _ = _canvas(rng, index, pen_ratio=rng.uniform(0.14, 0.24))
    return _encode(Image.fromarray(((1 - cov) * 255 + 0.5).astype(np.uint8)), "PNG")


def _tilted(rng, index):
    angle = rng.uniform(5, 15) * rng.choice([-1, 1])
    cov, _ = _canvas(rng, index, pen_ratio=rng.uniform(0.05, 0.12), angle=angle)
    return _encode(Image.fromarray(((1 - cov) * 255 + 0.5).astype(np.uint8)), "PNG")


def _blur_jpeg(rng, index):
    cov, side = _canvas(rng, index, pen_ratio=rng.uniform(0.05, 0.12))
    img = _compose(rng, cov, (255, 255, 255), INKS["black"], blur=side * 0.65 * rng.uniform(0.01, 0.03),
                   noise=rng.uniform(0.005, 0.03))
    return _encode(img, "JPEG", rng.integers(10, 36))


def _transparent(rng, index):
    cov, side = _canvas(rng, index, pen_ratio=rng.uniform(0.04, 0.12))
    colour = INKS[rng.choice(list(INKS))]
    rgba = np.zeros((side, side, 4), dtype=np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = (cov * 255 + 0.5).astype(np.uint8)
    return _encode(Image.fromarray(rgba, "RGBA"), "PNG")


def _tinted_colour(rng, index):
    side = int(rng.integers(400, 801))
    height = side * rng.uniform(0.4, 0.75)
    cov = draw_digit(index, (side, side), height, height * rng.uniform(0.03, 0.1),
                     (side / 2 + rng.uniform(-0.1, 0.1) * side, side / 2 + rng.uniform(-0.1, 0.1) * side))
    paper = TINTS[rng.choice(list(TINTS))]
    ink = INKS[rng.choice(["blue", "red", "green", "purple"])]
    img = _compose(rng, cov, paper, ink, texture=rng.uniform(0, 0.04), noise=rng.uniform(0, 0.015), blur=0.6)
    return _encode(img, "JPEG", rng.integers(75, 96))


def _photo(rng, index, strip=False, ruled=False, shadow=False, dim=False, marks=False, small=False, size=None,
           grid=False, pencil=False, perspective=False):
    w, h = size or _photo_size(rng)
    short = min(w, h)
    strip_box = None
    strip_mask = None
    if strip:
        side = rng.choice(["left", "right", "top", "bottom"])
        frac = rng.uniform(0.04, 0.15)
        tilt = rng.uniform(-0.04, 0.04)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        if side in ("left", "right"):
            edge = frac * w + tilt * (yy - h / 2)
            dist = (xx if side == "left" else (w - 1 - xx)) - edge
            strip_box = (0, 0, frac * w + 0.05 * w, h) if side == "left" else (w - frac * w - 0.05 * w, 0, w, h)
        else:
            edge = frac * h + tilt * (xx - w / 2)
            dist = (yy if side == "top" else (h - 1 - yy)) - edge
            strip_box = (0, 0, w, frac * h + 0.05 * h) if side == "top" else (0, h - frac * h - 0.05 * h, w, h)
        strip_mask = np.clip(0.5 - dist / rng.uniform(1.0, 6.0), 0, 1)
    height = short * (rng.uniform(0.12, 0.3) if small else rng.uniform(0.25, 0.6))
    cy, cx = _place_digit(rng, (w, h), height, margin=0.05, avoid=strip_box)
    if not small and not strip:
        cy, cx = h / 2 + (cy - h / 2) * 0.4, w / 2 + (cx - w / 2) * 0.4  # people aim at the digit
    pen = height * rng.uniform(0.02, 0.08)
    cov = draw_digit(index, (w, h), height, pen, (cy, cx), angle=rng.uniform(-4, 4), supersample=1)
    if marks:
        cov = np.maximum(cov, _stray_marks(rng, (w, h), (cy, cx), height, pen))
    if dim:
        paper = np.array(PAPERS[rng.choice(["white", "cream"])], dtype=np.float32) * rng.uniform(0.25, 0.45) / 0.95
        ink = np.array(INKS[rng.choice(["black", "blue", "pencil"])], dtype=np.float32) * 0.3
    else:
        paper = np.array(PAPERS[rng.choice(list(PAPERS))], dtype=np.float32)
        ink = np.array(INKS[rng.choice(["black", "blue", "black", "pencil"])], dtype=np.float32)
    if pencil:  # a light, grainy pencil: a fraction of the paper's brightness, patchy coverage
        ink = paper * rng.uniform(0.5, 0.7)
        cov = cov * rng.uniform(0.55, 1.0, cov.shape).astype(np.float32)
    page = np.broadcast_to(paper, (h, w, 3))
    if grid:  # squared paper: light lines both ways, under the ink
        lines = _grid_lines(rng, (w, h), short)
        colour = np.array([(165, 185, 215), (185, 185, 185), (150, 200, 170)][rng.integers(3)], np.float32)
        page = page * (1 - lines[..., None]) + colour * lines[..., None]
    if ruled:  # printed lines on the page, under the ink
        lines, margin = _ruled_lines(rng, (w, h), height)
        page = page * (1 - lines[..., None]) + np.array((150, 180, 225), np.float32) * lines[..., None]
        if margin is not None:
            page = page * (1 - margin[..., None]) + np.array((220, 110, 120), np.float32) * margin[..., None]
    a = cov[..., None]
    arr = page * (1 - a) + ink * a
    light = _lighting(rng, (h, w), falloff=rng.uniform(0.15, 0.5))
    if shadow:
        light = light * _shadow(rng, (h, w))
    texture = rng.uniform(0.01, 0.05)
    grain = 1.0 + texture * (0.6 * _smooth_noise(rng, (h, w), 80) + 0.4 * _smooth_noise(rng, (h, w), 10))
    arr = arr * (grain * light)[..., None]
    if strip:
        desk = np.array([(40, 30, 25), (70, 55, 45), (20, 20, 22), (100, 90, 80)][rng.integers(4)], dtype=np.float32)
        arr = arr * (1 - strip_mask[..., None]) + desk * light[..., None] * strip_mask[..., None]
    out = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.4)))
    if perspective:
        out = _tilt_camera(rng, out)
    noise = rng.uniform(0.02, 0.05) if dim else rng.uniform(0.005, 0.025)
    arr = np.asarray(out, dtype=np.float32) + rng.normal(0, noise * 255, (h, w, 1)).astype(np.float32)
    out = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    return _encode(out, "JPEG", rng.integers(60, 86) if dim else rng.integers(70, 93))


def _stray_marks(rng, size, centre, height, pen) -> np.ndarray:
    """Specks and short scribbles away from the digit."""
    w, h = size
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    cy, cx = centre

    def away():
        for _ in range(100):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            if abs(x - cx) > 0.45 * height + 0.5 * height or abs(y - cy) > 0.5 * height + 0.5 * height:
                return x, y
        return 0.0, 0.0

    for _ in range(int(rng.integers(3, 11))):
        x, y = away()
        r = rng.uniform(1, 4)
        d.ellipse((x - r, y - r, x + r, y + r), fill=255)
    for _ in range(int(rng.integers(1, 4))):
        x, y = away()
        pts = [(x, y)]
        for _ in range(int(rng.integers(2, 6))):
            x, y = x + rng.normal(0, 0.06 * height), y + rng.normal(0, 0.06 * height)
            pts.append((x, y))
        d.line(pts, fill=255, width=max(1, int(pen * rng.uniform(0.5, 1.0))))
    return np.asarray(img, dtype=np.float32) / 255.0


def _ruled_lines(rng, size, height):
    """Coverage of ruled lines (crossing the digit) and, sometimes, a vertical margin line."""
    w, h = size
    spacing = height / rng.uniform(0.8, 2.0)
    phase = rng.uniform(0, spacing)
    thick = rng.uniform(1.0, 3.0)
    yy = np.arange(h, dtype=np.float32)[:, None]
    d = np.abs(((yy - phase) % spacing) - spacing / 2) - (spacing / 2 - thick / 2)
    lines = np.broadcast_to(np.clip(d + 0.5, 0, 1), (h, w)).astype(np.float32)
    margin = None
    if rng.random() < 0.5:
        x0 = w * rng.uniform(0.06, 0.14)
        xx = np.arange(w, dtype=np.float32)[None, :]
        margin = np.broadcast_to(np.clip(thick / 2 + 0.5 - np.abs(xx - x0), 0, 1), (h, w)).astype(np.float32)
    return lines, margin


def _grid_lines(rng, size, short) -> np.ndarray:
    """Coverage of a square grid (squared paper): lines every 3-7% of the page's short side."""
    w, h = size
    spacing = short * rng.uniform(0.03, 0.07)
    thick = rng.uniform(0.8, 2.0)
    px, py = rng.uniform(0, spacing, 2)

    def lines(n, phase):
        t = np.arange(n, dtype=np.float32)
        d = np.abs(((t - phase) % spacing) - spacing / 2) - (spacing / 2 - thick / 2)
        return np.clip(d + 0.5, 0, 1)

    return np.maximum(lines(h, py)[:, None], lines(w, px)[None, :]).astype(np.float32)


def _tilt_camera(rng, img: Image.Image) -> Image.Image:
    """The page photographed at an angle: a perspective warp moving each corner inwards by up to
    15% of the side (the far edge shrinks), the uncovered border filled with a dark desk."""
    w, h = img.size
    far = rng.integers(4)  # which edge is further from the camera
    shrink = rng.uniform(0.05, 0.15)
    jitter = rng.uniform(-0.03, 0.03, (4, 2))
    corners = np.array([(0, 0), (w, 0), (w, h), (0, h)], dtype=np.float64)  # tl, tr, br, bl
    moved = corners.copy()
    pairs = {0: (0, 1), 1: (1, 2), 2: (2, 3), 3: (3, 0)}[far]  # the far edge's two corners
    for k in pairs:
        towards = corners[(k + 2) % 4] - corners[k]
        moved[k] += shrink * np.array([towards[0], 0.3 * towards[1]]) if far in (0, 2) else shrink * np.array([0.3 * towards[0], towards[1]])
    moved += jitter * np.array([w, h])
    # Coefficients mapping output (the photo) back to input (the page): solve the 8 unknowns.
    a, b = [], []
    for (x, y), (u, v) in zip(moved, corners):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b += [u, v]
    coeffs = np.linalg.solve(np.array(a), np.array(b))
    desk = tuple(int(c) for c in [(40, 30, 25), (70, 55, 45), (20, 20, 22)][rng.integers(3)])
    return img.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR, fillcolor=desk)


def _shadow(rng, shape) -> np.ndarray:
    """A soft-edged shadow: the page darkened beyond a random line through its middle part."""
    h, w = shape
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    a = rng.uniform(0, 2 * np.pi)
    off = rng.uniform(-0.4, 0.4)
    soft = rng.uniform(0.02, 0.15)
    d = np.cos(a) * xx + np.sin(a) * yy - off
    inside = np.clip(0.5 + d / (2 * soft), 0, 1)
    depth = rng.uniform(0.3, 0.6)
    return 1.0 - depth * inside


def _chalkboard(rng, index):
    w, h = _photo_size(rng)
    height = min(w, h) * rng.uniform(0.3, 0.6)
    cy, cx = h / 2 + rng.uniform(-0.1, 0.1) * h, w / 2 + rng.uniform(-0.1, 0.1) * w
    cov = draw_digit(index, (w, h), height, height * rng.uniform(0.05, 0.12), (cy, cx), rng.uniform(-4, 4), 1)
    grain = np.clip(rng.uniform(0.55, 1.0, (h, w)).astype(np.float32), 0, 1)
    cov = cov * grain
    board = np.array([(30, 60, 45), (40, 42, 45), (15, 15, 18), (35, 50, 40)][rng.integers(4)], dtype=np.float32)
    chalk = np.array([(235, 235, 225), (240, 230, 150), (220, 225, 235)][rng.integers(3)], dtype=np.float32)
    smudge = 1.0 + 0.25 * np.clip(_smooth_noise(rng, (h, w), 6), 0, 1) + 0.05 * _smooth_noise(rng, (h, w), 50)
    light = _lighting(rng, (h, w), falloff=rng.uniform(0.1, 0.4))
    arr = (board[None, None, :] * smudge[..., None] * (1 - cov[..., None]) + chalk * cov[..., None]) * light[..., None]
    out = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(0.8))
    arr = np.asarray(out, dtype=np.float32) + rng.normal(0, 0.02 * 255, (h, w, 1)).astype(np.float32)
    return _encode(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB"), "JPEG", rng.integers(75, 91))


def _framed(rng, index):
    cov, side = _canvas(rng, index, pen_ratio=rng.uniform(0.04, 0.1))
    img = Image.fromarray((cov * 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    width = int(rng.integers(2, 7))
    if rng.random() < 0.5:  # a box along the image's edge
        m = int(rng.integers(0, 8))
        d.rectangle((m, m, side - 1 - m, side - 1 - m), outline=255, width=width)
    else:  # a hand-drawn box around the digit
        ys, xs = np.nonzero(cov > 0.5)
        pad = rng.uniform(0.08, 0.2) * side
        x0, y0 = max(2, xs.min() - pad), max(2, ys.min() - pad)
        x1, y1 = min(side - 3, xs.max() + pad), min(side - 3, ys.max() + pad)
        jit = lambda: rng.normal(0, 2)  # noqa: E731
        d.line([(x0 + jit(), y0 + jit()), (x1 + jit(), y0 + jit()), (x1 + jit(), y1 + jit()), (x0 + jit(), y1 + jit()),
                (x0 + jit(), y0 + jit())], fill=255, width=width)
    return _encode(Image.fromarray(255 - np.asarray(img)), "PNG")


# --- non-digits -------------------------------------------------------------------------------

def _blank_page(rng, _):
    w, h = _photo_size(rng)
    img = _compose(rng, np.zeros((h, w), np.float32), PAPERS[rng.choice(list(PAPERS))], INKS["black"],
                   light=_lighting(rng, (h, w), rng.uniform(0.1, 0.5)), texture=rng.uniform(0.01, 0.05),
                   noise=rng.uniform(0.005, 0.03), blur=0.8)
    return _encode(img, "JPEG", rng.integers(70, 93))


def _object(rng, _):
    w, h = _photo_size(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h / 2 + rng.uniform(-0.15, 0.15) * h, w / 2 + rng.uniform(-0.15, 0.15) * w
    ry, rx = min(w, h) * rng.uniform(0.1, 0.35), min(w, h) * rng.uniform(0.1, 0.35)
    r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    bumpy = r * (1 + 0.15 * _smooth_noise(rng, (h, w), 5))
    cov = np.clip((1 - bumpy) * 20, 0, 1)
    colour = rng.uniform(20, 200, 3)
    shade = np.clip(1.2 - 0.6 * ((yy - cy + ry * 0.4) / ry) ** 2 - 0.3 * ((xx - cx + rx * 0.4) / rx) ** 2, 0.3, 1.2)
    paper = np.array(PAPERS[rng.choice(list(PAPERS))], dtype=np.float32)
    arr = paper * (1 - cov[..., None]) + colour * shade[..., None] * cov[..., None]
    arr = arr * _lighting(rng, (h, w), rng.uniform(0.1, 0.4))[..., None]
    arr += rng.normal(0, 4, (h, w, 1))
    return _encode(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB"), "JPEG", rng.integers(75, 93))


def _texture(rng, _):
    side = int(rng.integers(200, 600))
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    arr = np.zeros((side, side), np.float32)
    for _ in range(int(rng.integers(2, 5))):
        a, f = rng.uniform(0, np.pi), rng.uniform(0.05, 0.4)
        arr += np.sin(f * (np.cos(a) * xx + np.sin(a) * yy) + rng.uniform(0, 6))
    arr = arr / np.abs(arr).max() * 0.3 + 0.5 + rng.normal(0, 0.08, arr.shape)
    tint = rng.uniform(0.5, 1.0, 3)
    rgb = np.clip(arr[..., None] * tint * 255, 0, 255).astype(np.uint8)
    return _encode(Image.fromarray(rgb, "RGB"), "JPEG", 90)


def _smooth_random(rng, _):
    side = int(rng.integers(200, 800))
    arr = sum((0.5 ** o) * np.stack([_smooth_noise(rng, (side, side), 2 ** (o + 1)) for _ in range(3)], -1)
              for o in range(6))
    arr = (arr - arr.min()) / (arr.max() - arr.min() + 1e-6)
    return _encode(Image.fromarray((arr * 255).astype(np.uint8), "RGB"), "PNG" if rng.random() < 0.5 else "JPEG")


def _noise(rng, _):
    side = int(rng.integers(28, 500))
    if rng.random() < 0.5:
        return _encode(Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)), "PNG")
    return _encode(Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "RGB"), "PNG")


def _letters(rng, _):
    side = int(rng.integers(150, 400))
    letter = LETTERS[int(rng.integers(len(LETTERS)))]
    font = ImageFont.load_default(size=int(side * rng.uniform(0.5, 0.8)))
    img = Image.new("L", (side, side), 255)
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = d.textbbox((0, 0), letter, font=font)
    d.text(((side - (x1 - x0)) / 2 - x0, (side - (y1 - y0)) / 2 - y0), letter, fill=0, font=font)
    return _encode(img, "PNG")


MAKERS: dict[str, Callable] = {
    "clean-mnist": _clean_mnist,
    "redrawn": _redrawn,
    "upscaled": _upscaled,
    "thin-pen": _thin_pen,
    "thick-marker": _thick_marker,
    "phone-photo": lambda rng, i: _photo(rng, i),
    "edge-strip": lambda rng, i: _photo(rng, i, strip=True),
    "ruled-paper": lambda rng, i: _photo(rng, i, ruled=True),
    "blur-jpeg": _blur_jpeg,
    "small-marks": lambda rng, i: _photo(rng, i, marks=True, small=True),
    "tinted-colour": _tinted_colour,
    "tilted": _tilted,
    "transparent": _transparent,
    "shadow": lambda rng, i: _photo(rng, i, shadow=True),
    "dim-light": lambda rng, i: _photo(rng, i, dim=True),
    "chalkboard": _chalkboard,
    "framed": _framed,
    "graph-paper": lambda rng, i: _photo(rng, i, grid=True),
    "pencil-faint": lambda rng, i: _photo(rng, i, pencil=True),
    "perspective": lambda rng, i: _photo(rng, i, perspective=True),
    "blank-page": _blank_page,
    "object": _object,
    "texture": _texture,
    "smooth-random": _smooth_random,
    "noise": _noise,
    "letters": _letters,
}


def make_photo(index: int, seed: int = 0, size: tuple[int, int] = (4000, 3000)) -> bytes:
    """One phone-photo query of test digit `index` at a given size (a 12-megapixel one by default)."""
    return _photo(np.random.default_rng([seed, index]), index, size=size)


def test_indices(condition: str, n: int, seed: int) -> np.ndarray:
    """Which MNIST test digits a condition draws (distinct while n <= 10,000)."""
    rng = np.random.default_rng([seed, zlib.crc32(condition.encode())])
    return rng.choice(10000, size=n, replace=n > 10000)


def make_queries(condition: str, n: int, seed: int = 0) -> list[tuple[bytes, int | None]]:
    """n query image files (their bytes) for a condition, with the digit's label (None for non-digits)."""
    if condition not in MAKERS:
        raise ValueError(f"unknown condition {condition!r}; choose one of: {', '.join(MAKERS)}")
    _, labels = mnist_test()
    out = []
    for k, index in enumerate(test_indices(condition, n, seed)):
        rng = np.random.default_rng([seed, zlib.crc32(condition.encode()), k])
        data = MAKERS[condition](rng, int(index))
        out.append((data, int(labels[index]) if CONDITIONS[condition].digit else None))
    return out
