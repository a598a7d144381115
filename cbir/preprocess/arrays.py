"""Image arithmetic the preprocessing steps share: rank filters, morphology, pooling, runs and their labelling.

numpy only (scipy.ndimage would cost more to import than a whole query): rank filters and
morphology by shifted views, connected components by labelling runs of pixels row by row.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def border(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])


def quantile(values: np.ndarray, q: float, bins: int = 4096) -> float:
    """A quantile of values in [0, 1], to 1/4096, from a histogram.

    np.median and np.percentile cost ~20 ms of set-up on their first call, and partitioning is
    slow on images that are mostly one value (a clean page).
    """
    counts = np.bincount(np.clip((values.ravel() * (bins - 1) + 0.5).astype(np.int32), 0, bins - 1), minlength=bins)
    k = min(values.size - 1, max(0, int(q * (values.size - 1) + 0.5)))
    return float(np.searchsorted(np.cumsum(counts), k, side="right")) / (bins - 1)


def sample(a: np.ndarray, size: int = 256) -> np.ndarray:
    """A strided subsample of at most about size x size pixels (for statistics)."""
    step = max(1, -(-max(a.shape) // size))
    return a[::step, ::step]


# --- small numpy morphology ----------------------------------------------------------------------

def shifted(p: np.ndarray, axis: int, start: int, n: int) -> np.ndarray:
    """p[start : start + n] along an axis (of a 2-D array)."""
    return p[start : start + n] if axis == 0 else p[:, start : start + n]


def rank_1d(a: np.ndarray, size: int, axis: int, op) -> np.ndarray:
    """A running min or max of `size` pixels along one axis (the window ends at the image edge)."""
    r = size // 2
    fill = np.inf if op is np.minimum else -np.inf
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r, size - 1 - r)
    p = np.pad(a, pad, constant_values=fill)
    n = a.shape[axis]
    out = shifted(p, axis, 0, n).copy()
    for i in range(1, size):
        op(out, shifted(p, axis, i, n), out=out)
    return out


def rank(a: np.ndarray, size: int, op) -> np.ndarray:
    """A square min (op=np.minimum) or max (np.maximum) filter, separable."""
    return rank_1d(rank_1d(a, size, 0, op), size, 1, op)


def disk_step(m: np.ndarray, grow: bool, diagonal: bool) -> np.ndarray:
    """One step of dilation (grow) or erosion by a 3x3 cross, or a 3x3 square when diagonal."""
    op = np.logical_or if grow else np.logical_and
    p = np.pad(m, 1, constant_values=not grow)
    out = m.copy()
    h, w = m.shape
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)) + (((-1, -1), (-1, 1), (1, -1), (1, 1)) if diagonal else ()):
        op(out, p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w], out=out)
    return out


def morph(m: np.ndarray, radius: int) -> np.ndarray:
    """Dilate (radius > 0) or erode (radius < 0) a mask by a disk-like octagon of that radius."""
    grow = radius > 0
    for i in range(abs(radius)):
        m = disk_step(m, grow, diagonal=i % 2 == 1)  # cross, square, cross, ...: an octagon
    return m


def sum_pool(a: np.ndarray, k: int) -> np.ndarray:
    """Reduce an image by k in each direction, summing each block."""
    h, w = a.shape
    H, W = -(-h // k), -(-w // k)
    p = np.zeros((H * k, W * k), dtype=np.float32)
    p[:h, :w] = a
    return p.reshape(H, k, W, k).sum(axis=(1, 3))


def or_pool(m: np.ndarray, k: int) -> np.ndarray:
    """Reduce a mask (or ink image) by k in each direction, keeping a block's maximum."""
    if k <= 1:
        return m
    h, w = m.shape
    H, W = -(-h // k), -(-w // k)
    p = np.zeros((H * k, W * k), dtype=m.dtype)
    p[:h, :w] = m
    return p.reshape(H, k, W, k).max(axis=(1, 3))


# --- connected components: run-length labelling --------------------------------------------------

def mask_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The horizontal runs of a mask, row-major: (row, first column, end column exclusive)."""
    h, w = mask.shape
    p = np.zeros((h, w + 2), dtype=np.int8)
    p[:, 1:-1] = mask
    d = np.diff(p, axis=1)
    rows, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)
    return rows, starts, ends


def paint(shape: tuple[int, int], rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The mask covered by the given runs."""
    h, w = shape
    delta = np.zeros((h, w + 1), dtype=np.int32)
    np.add.at(delta, (rows, starts), 1)
    np.add.at(delta, (rows, ends), -1)
    return np.cumsum(delta, axis=1)[:, :w] > 0


def label_runs(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> tuple[np.ndarray, int]:
    """8-connected components of a mask given as its runs: (component of each run, count).

    Runs on neighbouring rows that overlap (or touch diagonally) are joined; joining is union-find
    done on whole arrays (hook each root to the smaller root, then halve paths) until it settles.
    """
    n = len(rows)
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    stride = width + 2
    key_start = rows * stride + starts
    key_end = rows * stride + ends
    below = (rows + 1) * stride
    lo = np.searchsorted(key_end, below + starts, side="left")  # first run below with end >= my start
    hi = np.searchsorted(key_start, below + ends, side="right")  # past the last run below starting <= my end
    counts = np.clip(hi - lo, 0, None)
    a = np.repeat(np.arange(n), counts)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    b = np.repeat(lo, counts) + (np.arange(len(a)) - offsets)
    parent = np.arange(n)
    while len(a):
        ra, rb = parent[a], parent[b]
        if np.array_equal(ra, rb):
            break
        low = np.minimum(ra, rb)
        np.minimum.at(parent, ra, low)
        np.minimum.at(parent, rb, low)
        while True:  # path halving until every run points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    roots, comp = np.unique(parent, return_inverse=True)
    return comp, len(roots)


# --- the steps -----------------------------------------------------------------------------------

def reduced(a: np.ndarray, size: int) -> np.ndarray:
    """The image box-averaged down to at most about size px on its longer side."""
    factor = max(1, -(-max(a.shape) // size))
    return np.asarray(Image.fromarray(a).reduce(factor), dtype=np.float32) if factor > 1 else a


def enlarged(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if a.shape == shape:
        return a
    return np.asarray(Image.fromarray(a).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
