"""The preprocessing steps, in the order they run (see cbir.preprocess for the overview)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cbir.errors import CbirError
from cbir.preprocess.arrays import border, enlarged, label_runs, mask_runs, morph, or_pool, paint, quantile, rank, reduced, sample, sum_pool

SIZE = 28
BOX = 20  # MNIST fits each digit into 20x20, then centres its mass in 28x28
BACKGROUND_SIZE = 128  # the paper is estimated on the image reduced to this size
BACKGROUND_KERNEL = 0.25  # ... with an opening this wide (fraction of the longer side): wider than any stroke
LABEL_SIZE = 256  # connected components are found on the ink mask reduced to at most this size
FINE = 8 * BOX  # the stroke is normalised with the digit drawn 8x its final size
STROKE_RANGE = (2.15, 3.8)  # MNIST's pen: its 25th and 90th percentile stroke widths (test set), in 20x20-box pixels
NOISE_SIGMAS = 5.0  # ink must stand out of the paper's noise by this many standard deviations
TINY = 32  # pictures smaller than this on their longer side are clean drawings (no noise estimate)
MIN_CONTRAST = 0.1  # ... and by at least this much (in [0, 1]) for anything to count as ink

_NO_INK = "no ink found: the image is blank (one colour); draw a digit on a plain background"
_NO_INK_IN_NOISE = "no ink found: nothing stands out of the background's texture or noise; draw a digit on a plain background"



def is_mnist_style(gray: np.ndarray) -> bool:
    """Already 28x28 with a dark background: take it exactly as it is."""
    return gray.shape == (SIZE, SIZE) and border(gray).mean() < 0.5


def _paper(ink: np.ndarray) -> np.ndarray:
    """The paper under bright ink: an opening (min, then max filter) of the image reduced to
    BACKGROUND_SIZE, as wide as BACKGROUND_KERNEL, enlarged bilinearly to the image's size.
    (Not smoothed further: a shadow's edge stays sharp, so it is subtracted, not left as a line.)"""
    small = reduced(ink, BACKGROUND_SIZE)
    size = max(3, int(round(BACKGROUND_KERNEL * max(small.shape))) | 1)
    paper = rank(rank(small, size, np.minimum), size, np.maximum)
    return enlarged(paper, ink.shape)


def _paper_above(ink: np.ndarray) -> np.ndarray:
    """A rough paper level under bright ink, for telling dark ink from light: each 1/16 of the
    image keeps its brightest pixel (so dark strokes vanish), an opening 5 tiles wide removes
    bright strokes, and a max filter one tile wider keeps dark areas from shading their rim."""
    tiles = or_pool(ink, max(1, -(-max(ink.shape) // 16)))
    return enlarged(rank(rank(tiles, 5, np.minimum), 7, np.maximum), ink.shape)


def to_ink(gray: np.ndarray) -> np.ndarray:
    """Ink bright on black: a light margin (a page) means dark ink, a black one light ink; otherwise
    both readings are tried, and the one that leaves more ink standing out of its paper wins.

    Grey paper, light falling off across a photo, dim light and chalk on a board all have
    borders in between. On the image reduced to <= 256 px, the paper is removed as if the ink
    were dark and as if it were light; each reading's ink is what rises above half the strongest
    contrast of either, summed over the middle of the picture (the margins, where a desk or a
    page edge may show, are left out). On a near tie the margin decides: under 0.5, light ink.
    """
    small = reduced(gray, LABEL_SIZE)
    h, w = small.shape
    mh, mw = h * 15 // 100, w * 15 // 100
    margin = np.ones(small.shape, dtype=bool)
    margin[h // 10 : h - h // 10, w // 10 : w - w // 10] = False
    border = quantile(small[margin] if margin.any() else small, 0.5)  # the outer tenth: a frame line does not count
    if border >= 0.75 or border <= 0.1:
        return gray if border <= 0.1 else 1.0 - gray
    lighter, darker = (np.clip(ink - _paper_above(ink), 0, 1)[mh : h - mh, mw : w - mw] for ink in (small, 1.0 - small))
    strong = 0.5 * max(quantile(lighter, 0.999), quantile(darker, 0.999))
    light = float(np.clip(lighter - strong, 0, None).sum())
    dark = float(np.clip(darker - strong, 0, None).sum())
    light_ink = light > 1.25 * dark or (dark <= 1.25 * light and border < 0.5)
    return gray if light_ink else 1.0 - gray


def remove_background(ink: np.ndarray) -> np.ndarray:
    """Subtract the paper: an opening (min then max filter) of the reduced image, wider than any stroke.

    What is narrower than the opening (strokes) is removed from the estimate; what is wider (a light
    gradient, vignetting, grey or tinted paper, a broad shadow) stays in it and is subtracted.
    """
    return np.clip(ink - _paper(ink), 0, None)


def _otsu(values: np.ndarray, top: float, bins: int = 256) -> float:
    """Otsu's threshold: the level that best splits the values into two classes."""
    q = np.clip((values * ((bins - 1) / top)).astype(np.int64), 0, bins - 1)
    hist = np.bincount(q.ravel(), minlength=bins).astype(np.float64)
    levels = (np.arange(bins) + 0.5) * (top / bins)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    total, mean = w0[-1], m0[-1]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean * w0 - m0 * total) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0
    return float((np.argmax(between) + 1) * (top / bins))


def threshold(flat: np.ndarray) -> tuple[np.ndarray, float]:
    """The ink mask, and the level above which a pixel is ink.

    Otsu's threshold on the flattened image, but never inside the paper's noise (the ink of a thin
    pen on a large photo is too few pixels for Otsu alone). Refuses an image with no ink.
    """
    s = sample(flat, 512)
    peak = float(flat.max())
    if max(flat.shape) < TINY:
        # A tiny picture (an icon, a data set's 8x8 digit) is a clean drawing that the ink may mostly
        # fill: its median is no estimate of the paper, and it has no camera noise to rise above.
        floor = quantile(s, 0.1) + MIN_CONTRAST / 2
    else:
        middle = quantile(s, 0.5)
        sigma = 1.4826 * quantile(np.abs(s - middle), 0.5)  # the paper's noise (most pixels are paper)
        floor = middle + max(NOISE_SIGMAS * sigma, MIN_CONTRAST / 2)
    if peak < MIN_CONTRAST:
        raise CbirError(_NO_INK)
    if peak < floor:
        raise CbirError(_NO_INK_IN_NOISE)
    level = max(_otsu(s, peak), floor)
    return flat >= level, level


def _components(shape: tuple[int, int], rows, starts, ends) -> dict:
    """Label runs into components and measure each: area, bounding box, pixels on each image edge."""
    H, W = shape
    comp, n = label_runs(rows, starts, ends, W)
    lengths = ends - starts
    r0, r1, c0, c1 = np.full(n, H), np.full(n, -1), np.full(n, W), np.full(n, -1)
    np.minimum.at(r0, comp, rows)
    np.maximum.at(r1, comp, rows)
    np.minimum.at(c0, comp, starts)
    np.maximum.at(c1, comp, ends - 1)
    count = lambda where, weights=None: np.bincount(comp[where], weights=None if weights is None else weights[where], minlength=n)  # noqa: E731
    return {
        "comp": comp, "n": n, "area": np.bincount(comp, weights=lengths, minlength=n),
        "r0": r0, "r1": r1, "c0": c0, "c1": c1, "h": r1 - r0 + 1, "w": c1 - c0 + 1,
        "edge": np.maximum.reduce([count(rows == 0, lengths), count(rows == H - 1, lengths),
                                   count(starts == 0) * W / H, count(ends == W) * W / H]),  # in units of W
    }


def _thin_lines(rows, starts, ends, height: int, width: int) -> np.ndarray:
    """Which runs belong to thin lines across the picture: runs over 80% of its width, in bands
    of such rows no thicker than a ruled line (~1/64 of the height; a marker's stroke is thicker)."""
    long = (ends - starts) >= 0.8 * width
    if not long.any():
        return long
    flag = np.zeros(height + 2, dtype=np.int8)
    flag[rows[long] + 1] = 1
    edges = np.flatnonzero(np.diff(flag))  # band starts and ends, alternating
    band_of_row = np.zeros(height, dtype=np.int64)
    for first, last in zip(edges[::2], edges[1::2]):
        band_of_row[first:last] = last - first
    return long & (band_of_row[rows] <= max(2, height // 64))


def _sized(c: dict, shape: tuple[int, int]) -> np.ndarray:
    """Components big enough to be a digit (or a part of one), not specks."""
    return np.maximum(c["h"], c["w"]) >= 0.06 * min(shape)


def _encloses(c: dict, inner: np.ndarray) -> np.ndarray:
    """Components whose box holds the whole box of another (`inner`) component: a box drawn
    around the digit. (A digit's loop holds no other sizeable component.)"""
    out = np.zeros(c["n"], dtype=bool)
    for i in np.flatnonzero(inner):
        out |= (c["r0"] < c["r0"][i]) & (c["r1"] > c["r1"][i]) & (c["c0"] < c["c0"][i]) & (c["c1"] > c["c1"][i])
    return out


def _without_strips_and_frames(runs: tuple, shape: tuple[int, int]) -> tuple:
    """Drop components hugging an image edge (over 30% of it: a desk, a shadow, the page's edge),
    long thin ones touching an edge (what is left of such a strip), and frames: hollow components
    around everything or around another sizeable component; unless nothing digit-sized would be left."""
    H, W = shape
    c = _components(shape, *runs)
    touches = (c["r0"] == 0) | (c["r1"] == H - 1) | (c["c0"] == 0) | (c["c1"] == W - 1)
    long_thin = ((c["w"] >= 0.5 * W) & (c["h"] <= 0.25 * H)) | ((c["h"] >= 0.5 * H) & (c["w"] <= 0.25 * W))
    hollow = c["area"] <= 0.25 * c["h"] * c["w"]
    frame = hollow & (((c["h"] >= 0.8 * H) & (c["w"] >= 0.8 * W)) | _encloses(c, _sized(c, shape)))
    clutter = (c["edge"] >= 0.3 * W) | (touches & long_thin) | frame
    if not (_sized(c, shape) & ~clutter).any():
        return runs
    keep = ~clutter[c["comp"]]
    return tuple(r[keep] for r in runs)


def _without_lines(runs: tuple, shape: tuple[int, int]) -> tuple:
    """Drop thin lines across the picture (ruled lines, a margin): long runs, and long runs of the
    transpose; where one crosses the digit, the digit falls into parts that lie close together."""
    H, W = shape
    rows, starts, ends = runs
    lines = _thin_lines(rows, starts, ends, H, W)
    cols, top, bottom = mask_runs(paint(shape, rows, starts, ends).T)
    vertical = _thin_lines(cols, top, bottom, W, H)
    if not (lines.any() or vertical.any()):
        return runs
    rest = paint(shape, rows[~lines], starts[~lines], ends[~lines])
    if vertical.any():
        rest &= ~paint((W, H), cols[vertical], top[vertical], bottom[vertical]).T
    return mask_runs(rest) if rest.any() else runs  # (nothing but lines: keep them)


def _digit(runs: tuple, shape: tuple[int, int], weight: np.ndarray) -> np.ndarray:
    """The digit's mask: the component with the most ink (weighted towards the middle), then the
    parts lying above, below or beside its box (a 5's bar, the halves of a broken 3), not off a corner."""
    H, W = shape
    rows, starts, ends = runs
    c = _components(shape, rows, starts, ends)
    cumulative = np.pad(np.cumsum(weight, axis=1, dtype=np.float64), ((0, 0), (1, 0)))
    ink = np.bincount(c["comp"], weights=cumulative[rows, ends] - cumulative[rows, starts], minlength=c["n"])
    cy, cx = (c["r0"] + c["r1"]) / 2 / H - 0.5, (c["c0"] + c["c1"]) / 2 / W - 0.5
    cut = (c["r0"] == 0) | (c["r1"] == H - 1) | (c["c0"] == 0) | (c["c1"] == W - 1)  # by the picture's edge
    # 1 in the middle, ~0.3 in a corner; halved when cut by the edge (shadows and desks are, digits seldom)
    score = ink * (1.0 - np.sqrt(cx**2 + cy**2)) * np.where(cut, 0.5, 1.0)
    sized = _sized(c, shape)
    main = int(np.argmax(np.where(sized if sized.any() else True, score, -1)))

    r0, r1, c0, c1, area = c["r0"], c["r1"], c["c0"], c["c1"], c["area"]
    box = [r0[main], r1[main], c0[main], c1[main]]
    extent = max(c["h"][main], c["w"][main])
    reach = np.where(area >= 0.1 * area[main], 0.35, 0.2) * extent  # big parts may lie further off
    chosen = np.zeros(c["n"], dtype=bool)
    chosen[main] = True
    candidates = (area >= 0.02 * area[main]) & (~cut | cut[main])  # an edge-cut part joins an edge-cut digit only
    changed = True
    while changed:
        changed = False
        for i in np.flatnonzero(candidates & ~chosen):
            gap_y = max(box[0] - r1[i], r0[i] - box[1], 0)
            gap_x = max(box[2] - c1[i], c0[i] - box[3], 0)
            grown = max(max(box[1], r1[i]) - min(box[0], r0[i]), max(box[3], c1[i]) - min(box[2], c0[i])) + 1
            if min(gap_x, gap_y) == 0 and max(gap_x, gap_y) <= reach[i] and grown <= 2.0 * extent:
                chosen[i] = True
                box = [min(box[0], r0[i]), max(box[1], r1[i]), min(box[2], c0[i]), max(box[3], c1[i])]
                changed = True
    sel = chosen[c["comp"]]
    return paint(shape, rows[sel], starts[sel], ends[sel])


def drop_clutter(mask: np.ndarray, strength: np.ndarray | None = None) -> np.ndarray:
    """Keep the digit, drop the rest: strips along the edges and frames, then lines, then specks and marks.

    Components are found on the mask reduced to <= LABEL_SIZE px (a block is ink if any pixel
    is). `strength` is how far each pixel rises above the threshold (default: 1 for ink): the
    digit is the component with the most of it, so a faint shadow or vignetted corner that just
    crosses the threshold loses to the ink even when it is bigger.
    """
    h, w = mask.shape
    k = max(1, -(-max(h, w) // LABEL_SIZE))
    small = or_pool(mask, k)
    runs = mask_runs(small)
    if len(runs[0]) == 0:
        raise CbirError(_NO_INK)
    runs = _without_lines(_without_strips_and_frames(runs, small.shape), small.shape)
    weight = sum_pool(mask if strength is None else np.where(mask, strength, 0), k)
    keep = _digit(runs, small.shape, weight)
    if k > 1:
        keep = np.repeat(np.repeat(keep, k, axis=0), k, axis=1)[:h, :w]
    return mask & keep


def crop(flat: np.ndarray, keep: np.ndarray, level: float) -> np.ndarray:
    """The digit's box, drawn with its longer side FINE px: a mask of its ink.

    Only kept ink may reach the threshold (clutter next to the digit is held below it), and only
    the kept ink and its next pixels count at all. Boxes larger than FINE are reduced by keeping
    each block's maximum (a thin pen stays connected); smaller ones are enlarged bilinearly from
    the grey levels, so a tiny digit gets smooth edges rather than blocks.
    """
    rows, cols = np.nonzero(keep)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    near = morph(keep, 1)[top:bottom, left:right] if min(keep.shape) > 2 else keep[top:bottom, left:right]
    box = flat[top:bottom, left:right]
    box = np.where(keep[top:bottom, left:right], box, np.minimum(box, level * 0.99))
    box = np.where(near, box / np.float32(level), 0).astype(np.float32)  # the threshold is now 1
    h, w = box.shape
    if max(h, w) > FINE:
        fine = or_pool(box, -(-max(h, w) // FINE))
    else:
        scale = FINE / max(h, w)
        padded = np.pad(box, 1)  # bilinear sampling needs the paper around the ink
        big = Image.fromarray(padded).resize((round((w + 2) * scale), round((h + 2) * scale)), Image.Resampling.BILINEAR)
        fine = np.asarray(big)
    fine = fine >= 1.0
    rows, cols = np.nonzero(fine)
    if len(rows) == 0:
        raise CbirError(_NO_INK)
    return fine[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def stroke_width(mask: np.ndarray) -> float:
    """The mean width of the strokes in a mask, in its pixels.

    Strokes of width w and total length L have area wL and perimeter 2L + 2w: w is the smaller
    root of w^2 - (P/2)w + A = 0. The perimeter counts pixel edges between ink and paper, divided
    by 4/pi (the mean excess of a staircase over a straight edge at a random angle).
    """
    area = float(mask.sum())
    p = np.pad(mask, 1)
    edges = np.count_nonzero(p[1:] != p[:-1]) + np.count_nonzero(p[:, 1:] != p[:, :-1])
    half = edges / (4 / np.pi) / 2
    return (half - np.sqrt(max(half * half - 4 * area, 0.0))) / 2


def normalise_stroke(fine: np.ndarray) -> np.ndarray:
    """Thicken a thin pen, thin a marker: dilate or erode until the stroke is in MNIST's range."""
    long_side = max(fine.shape)
    width = stroke_width(fine) * BOX / long_side  # in pixels of the final 20x20 box
    target = min(max(width, STROKE_RANGE[0]), STROKE_RANGE[1])
    if target == width:
        return fine
    # Growing by r on each side also grows the box by 2r; solve for the width after refitting.
    t = target / BOX
    radius = (t * long_side - width * long_side / BOX) / (2 * (1 - t))
    radius = int(round(radius))
    if radius == 0:
        return fine
    if radius > 0:
        return morph(np.pad(fine, radius), radius)
    thinned = morph(fine, radius)
    return thinned if thinned.any() else fine


def fit_20x20(fine: np.ndarray) -> np.ndarray:
    """Area-average the digit down to fit 20x20 keeping its aspect; stretch its peak to 1."""
    rows, cols = np.nonzero(fine)
    fine = fine[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = fine.shape
    scale = BOX / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray(fine.astype(np.float32)).resize((new_w, new_h), Image.Resampling.BOX)
    small = np.clip(np.asarray(small, dtype=np.float32), 0, None)
    return small / max(float(small.max()), 1e-6)


def centre_by_mass(small: np.ndarray) -> np.ndarray:
    """Put the digit in 28x28 with its centre of mass (as near as the edges allow) in the middle."""
    new_h, new_w = small.shape
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    top, left = (SIZE - new_h) // 2, (SIZE - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = small
    total = canvas.sum()
    if total <= 0:
        return canvas
    ys, xs = np.indices(canvas.shape)
    dy = int(round(SIZE / 2 - 0.5 - (ys * canvas).sum() / total))
    dx = int(round(SIZE / 2 - 0.5 - (xs * canvas).sum() / total))
    # Shift only as far as the ink can go without falling off the canvas.
    rows, cols = np.nonzero(canvas)
    dy = int(np.clip(dy, -rows.min(), SIZE - 1 - rows.max()))
    dx = int(np.clip(dx, -cols.min(), SIZE - 1 - cols.max()))
    return np.roll(canvas, (dy, dx), axis=(0, 1))


def run_steps(gray: np.ndarray, trace: list | None = None) -> np.ndarray:
    """Every step, in order, on a grayscale image in [0, 1]; trace collects (step name, image) pairs."""

    def seen(name: str, image: np.ndarray) -> np.ndarray:
        if trace is not None:
            trace.append((name, image))
        return image

    if not np.isfinite(gray).all():
        raise CbirError("pixel values are NaN or infinite; save the image with finite values")
    if is_mnist_style(gray):
        return seen("mnist as it is", gray.astype(np.float32))
    ink = seen("ink", to_ink(gray))
    flat = seen("background removed", remove_background(ink))
    mask, level = threshold(flat)
    seen("threshold", mask)
    # A tiny picture is a clean drawing: its strokes may run edge to edge, which in a photo would be a strip.
    keep = seen("clutter dropped", mask if max(mask.shape) < TINY else drop_clutter(mask, flat - level))
    fine = seen("crop", crop(flat, keep, level))
    fine = seen("stroke normalised", normalise_stroke(fine))
    small = seen("fit 20x20", fit_20x20(fine))
    return seen("centred by mass", centre_by_mass(small))
