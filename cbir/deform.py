"""Infinite MNIST: new digits made from the training digits by random elastic and affine deformations.

The recipe of Loosli, Canu and Bottou (2007, "Training invariant support vector machines using
selective sampling", the data known as MNIST8M / InfiMNIST): every item has an index i; items
0 .. n-1 are the n training digits themselves, and item i >= n is a pseudo-random deformation
of training digit i % n, derived from (seed, i) alone. So a collection of 1,000,000 items is the
60,000 originals followed by 940,000 deformed copies (about 16 of each), and item i is the same
bytes whatever batch it is made in.

One deformation (Simard, Steinkraus and Platt 2003, plus a small affine transform):

* an elastic field: per pixel, two displacement components drawn uniform in [-1, 1], smoothed
  by a Gaussian of `sigma` px (normalised to sum 1) and scaled by `alpha` px; a field whose longest
  displacement exceeds `max_elastic` px is shrunk as a whole to that length (it stays smooth);
* an affine transform about the frame's centre: rotation within +-`rotation` degrees, digit
  size times 1 +- `scale`, horizontal shear (slant) within +-`shear`, translation within
  +-`translation` px on each axis;
* the output pixel p takes the source at  c + A^-1 (p - c - t) + e(p)  (c the centre, A the
  affine map, t the translation, e the elastic field), by bilinear interpolation, zero outside.

Defaults. alpha 34 px is Simard et al.'s value; their sigma, 4 px, proved too rough at 28x28
here: it moves pixels by 2.0 px rms (vector length), tears thin strokes and blots loops, and for
only 84% of such digits is the nearest other training digit (by the project's default encoder)
of the same class, against 98% for undeformed digits. sigma 6 px gives a smoother, gentler field
(1.3 px rms): strokes bend but stay strokes, and 96% keep a same-class neighbour (sigma 5: 93%,
8: 97%; `bench/deformed_quality.py --sweep`). The cap max_elastic = 4 px is about the 99.7th
percentile of a field's longest displacement: it binds on about 1 field in 300 and makes the bound
explicit. The affine ranges (6 degrees, 10% size, 0.15 slant, 1.5 px) are smaller than the
differences between two writers' digits of one class; alone they keep 97% same-class neighbours.

Reproducibility. The random numbers of deformation seed s are Philox-4x64 (a counter-based
generator: its output is a pure function of key and counter) at counters s*B .. (s+1)*B - 1,
under one fixed key, B blocks per item; consecutive seeds are read in one bulk call. generate()
gives item i of seed k the deformation seed k * 2**40 + i. Everything after the random words is
exact or correctly rounded: the noise is bytes, the Gaussian weights integers, so the smoothing
(two matrix products by BLAS, float32 then float64) adds integers below 2**24 and 2**53, exact in
any order; the rest is elementwise +, -, *, /, sqrt, floor, rint and float64 -> float32 casts (no
trigonometry: the rotation is parametrised by tan(theta/2)), each correctly rounded by IEEE 754.
So the bytes depend neither on the batch split nor on the BLAS or its threads, and on another
machine only if its libm rounds tan or exp (two constants per DeformParams) differently in the
last bit; a test pins a checksum. Changing DeformParams changes every deformed item.

Pure numpy; `python -m cbir.deform bench` times it, `python -m cbir.deform picture OUT.png`
draws docs/deformed.png.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SIZE = 28
CENTRE = (SIZE - 1) / 2  # 13.5: the frame's centre in pixel coordinates
SEED_BITS = 24  # generate()'s seed: 0 <= seed < 2**24
INDEX_BITS = 40  # generate()'s item index: 0 <= i < 2**40 (about 10**12 items)
_KEY = (0x6362_6972_2D64_6566, 1)  # Philox key: b"cbir-def", recipe version 1
RECIPE = "infimnist-cbir-1"  # recorded with collections of deformed digits: a new recipe is a new data set
_CHUNK = 256  # items per internal step: bounds memory, keeps arrays near the caches


@dataclass(frozen=True)
class DeformParams:
    """The deformation distribution. Distances are in pixels of the 28x28 frame."""

    alpha: float = 34.0  # elastic field scale, px (Simard et al. 2003's value)
    sigma: float = 6.0  # Gaussian smoothing of the elastic field, px (Simard et al. used 4: see the module doc)
    max_elastic: float = 4.0  # longest elastic displacement; a longer field is shrunk as a whole
    rotation: float = 6.0  # degrees, uniform-ish in +-rotation (exactly: tan(theta/2) uniform)
    scale: float = 0.1  # the digit's size is multiplied by a factor uniform in 1 +- scale
    shear: float = 0.15  # horizontal shear (slant) factor, uniform in +-shear
    translation: float = 1.5  # px, uniform in +-translation on each axis
    truncate: float = 3.0  # the Gaussian kernel's radius, in sigmas

    def __post_init__(self) -> None:
        if not (self.sigma > 0 and self.truncate > 0):
            raise ValueError("sigma and truncate must be positive")
        if min(self.alpha, self.max_elastic, self.rotation, self.shear, self.translation) < 0:
            raise ValueError("alpha, max_elastic, rotation, shear and translation must be >= 0")
        if not 0 <= self.scale < 1 or self.rotation >= 90:
            raise ValueError("scale must be in [0, 1) and rotation below 90 degrees")

    @property
    def radius(self) -> int:
        """The Gaussian kernel's half width in pixels."""
        return max(1, math.ceil(self.truncate * self.sigma))

    @property
    def max_displacement(self) -> float:
        """A bound on how far any output pixel's source point is from the pixel itself, in px.

        The displacement is d(p) = (M - I)(p - c - t) - t + e(p) with M = A^-1, so
        |d| <= ||M - I|| (r + |t|) + |t| + max_elastic, r the farthest pixel's distance from the
        centre, and ||M - I|| <= |shear| / z_min + (1 / z_min - 1) + 2 sin(rotation / 2).
        At the frame's corners with every parameter at its extreme; digit pixels move far less.
        """
        z_min = 1.0 - self.scale
        m = self.shear / z_min + (1.0 / z_min - 1.0) + 2.0 * math.sin(math.radians(self.rotation) / 2)
        r = math.hypot(CENTRE, CENTRE)
        t = math.hypot(self.translation, self.translation)
        return m * (r + t) + t + self.max_elastic


def _grid(params: DeformParams) -> int:
    """The side of the noise grid: the frame plus the kernel's radius on each side (a stationary field)."""
    return SIZE + 2 * params.radius


def _words_per_item(params: DeformParams) -> int:
    """64-bit random words per item: 4 for the affine parameters, then one byte per noise value,
    rounded up to whole Philox blocks (4 words) so every item starts on a block."""
    g = _grid(params)
    words = 4 + -(-2 * g * g // 8)
    return -(-words // 4) * 4


@lru_cache(maxsize=16)
def _kernel_matrix(params: DeformParams) -> tuple[np.ndarray, float, float]:
    """(K, weight_sum, scale): K (28, G) float32 holds integer Gaussian weights, so K @ B @ K.T is
    the 'valid' convolution of a G x G grid B; scale * (2 K B K.T - 255 weight_sum**2) is then
    Simard's field: uniform [-1, 1] noise (B's bytes mapped to odd integers in [-255, 255])
    smoothed by the Gaussian normalised to sum 1, times alpha.

    Exactness: every partial sum of the first product (float32) is an integer below
    G * 255 * peak, of the second (float64) below G * G * 255 * peak**2; the peak weight (a power
    of two, at most 1024) keeps them below 2**24 and 2**53, so no order of addition rounds.
    """
    g = _grid(params)
    peak = 1024
    while g * 255 * peak >= 2**24:
        peak //= 2
    if peak < 64 or g * g * 255.0 * peak * peak >= 2**53:
        raise ValueError(f"sigma * truncate = {params.sigma * params.truncate} is too large for exact smoothing")
    r = params.radius
    offsets = np.arange(-r, r + 1, dtype=np.float64)
    weights = np.rint(peak * np.exp(-(offsets**2) / (2.0 * params.sigma**2)))
    k = np.zeros((SIZE, g), dtype=np.float32)
    for row in range(SIZE):
        k[row, row : row + 2 * r + 1] = weights
    k.setflags(write=False)
    total = float(weights.sum())
    return k, total, params.alpha / (255.0 * total * total)


def _random_words(seeds: np.ndarray, words: int) -> np.ndarray:
    """(N, words) uint64: the random words of each deformation seed, runs of consecutive seeds in one call."""
    from numpy.random import Philox

    blocks = words // 4
    out = np.empty((len(seeds), words), dtype=np.uint64)
    if len(seeds) == 0:
        return out
    breaks = np.flatnonzero(np.diff(seeds) != 1) + 1
    for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(seeds)]):
        gen = Philox(key=np.array(_KEY, dtype=np.uint64), counter=int(seeds[lo]) * blocks)
        out[lo:hi] = gen.random_raw((hi - lo) * words).reshape(hi - lo, words)
    return out


def _check_seeds(seeds, n: int) -> np.ndarray:
    seeds = np.asarray(seeds)
    if seeds.shape != (n,):
        raise ValueError(f"seeds must have shape ({n},), one per image; got {seeds.shape}")
    if n and seeds.dtype.kind not in "iu":
        raise ValueError(f"seeds must be integers, got {seeds.dtype}")
    if n and seeds.dtype.kind == "i" and seeds.min() < 0:
        raise ValueError("seeds must be >= 0")
    return seeds.astype(np.uint64)


def _fields(words: np.ndarray, params: DeformParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source_y, source_x, elastic): where each output pixel samples its source, (N, 28, 28) float32
    each, and the elastic part (N, 2, 28, 28) float32 as (dy, dx)."""
    n = len(words)
    g = _grid(params)
    k, total, scale = _kernel_matrix(params)

    # the affine parameters: five uniforms in (-1, 1) from 32-bit halves (little-endian, so any machine agrees)
    halves = np.ascontiguousarray(words[:, :4], dtype="<u8").view("<u4")[:, :5].astype(np.float64)
    u = (halves + 0.5) / 2.0**31 - 1.0
    tan_half = u[:, 0] * math.tan(math.radians(params.rotation) / 2)
    cos = (1.0 - tan_half**2) / (1.0 + tan_half**2)
    sin = 2.0 * tan_half / (1.0 + tan_half**2)
    zoom = 1.0 + params.scale * u[:, 1]
    shear = params.shear * u[:, 2]
    tx, ty = params.translation * u[:, 3], params.translation * u[:, 4]
    # M = A^-1 = (1/zoom) H(-shear) R(-theta), with x to the right and y down
    m00, m01 = (cos + shear * sin) / zoom, (sin - shear * cos) / zoom
    m10, m11 = -sin / zoom, cos / zoom

    # the elastic field: random bytes on a G x G grid per component, smoothed along y then x by two
    # matrix products over the whole batch (laid out (G_y, N, 2, G_x) so that each is one product)
    grid = np.ascontiguousarray(words[:, 4:], dtype="<u8").view(np.uint8)[:, : 2 * g * g].reshape(n, 2, g, g)
    grid = np.ascontiguousarray(grid.transpose(2, 0, 1, 3)).astype(np.float32).reshape(g, -1)
    along_y = (k @ grid).reshape(SIZE * n * 2, g).astype(np.float64)  # exact integers
    both = (along_y @ k.T.astype(np.float64)).reshape(SIZE, n, 2, SIZE).transpose(1, 2, 0, 3)  # (N, 2, y, x)
    elastic = ((2.0 * both - 255.0 * total * total) * scale).astype(np.float32)
    longest = np.sqrt((elastic[:, 0] ** 2 + elastic[:, 1] ** 2).reshape(n, -1).max(axis=1))
    over = longest > params.max_elastic
    if over.any():  # shrink the whole field, so it stays smooth
        elastic[over] *= (np.float32(params.max_elastic) / longest[over])[:, None, None, None]

    # the source point: c + M (p - c - t) + e(p)
    axis = np.arange(SIZE, dtype=np.float32) - np.float32(CENTRE)
    vx = axis[None, None, :] - tx.astype(np.float32)[:, None, None]  # (N, 1, 28)
    vy = axis[None, :, None] - ty.astype(np.float32)[:, None, None]  # (N, 28, 1)
    m00, m01, m10, m11 = (m.astype(np.float32)[:, None, None] for m in (m00, m01, m10, m11))
    source_x = m00 * vx + m01 * vy + (elastic[:, 1] + np.float32(CENTRE))
    source_y = m10 * vx + m11 * vy + (elastic[:, 0] + np.float32(CENTRE))
    return source_y, source_x, elastic


def displacement_fields(seeds, params: DeformParams = DeformParams()) -> tuple[np.ndarray, np.ndarray]:
    """(total, elastic) displacement fields of the deformation seeds, each (N, 2, 28, 28) float32 as (dy, dx).

    Output pixel (y, x) of deform(..., seeds) samples its source at (y + dy, x + dx); `elastic` is
    the elastic part alone. |total| <= params.max_displacement and |elastic| <= params.max_elastic.
    """
    seeds = _check_seeds(seeds, len(np.asarray(seeds)))
    source_y, source_x, elastic = _fields(_random_words(seeds, _words_per_item(params)), params)
    axis = np.arange(SIZE, dtype=np.float32)
    return np.stack([source_y - axis[:, None], source_x - axis[None, :]], axis=1), elastic


def _sample(images: np.ndarray, source_y: np.ndarray, source_x: np.ndarray) -> np.ndarray:
    """Bilinear sampling of uint8 images (N, 28, 28) at the source points, zero outside the frame."""
    n = len(images)
    width = SIZE + 4
    padded = np.zeros((n, width, width), dtype=np.float32)  # 2 px of zeros all round
    padded[:, 2:-2, 2:-2] = images
    flat = padded.reshape(-1)
    y = np.clip(source_y, -1.0, float(SIZE))  # beyond the ring of zeros: zero all the same
    x = np.clip(source_x, -1.0, float(SIZE))
    y0, x0 = np.floor(y), np.floor(x)
    fy, fx = y - y0, x - x0
    idx = y0.astype(np.intp) * width + x0.astype(np.intp)
    idx += (np.arange(n, dtype=np.intp) * (width * width) + 2 * width + 2)[:, None, None]
    top = flat[idx]
    top += (flat[idx + 1] - top) * fx
    bottom = flat[idx + width]
    bottom += (flat[idx + width + 1] - bottom) * fx
    top += (bottom - top) * fy
    return np.rint(top, out=top).astype(np.uint8)


_CONTROLLER: list = []


def _one_blas_thread():
    """A context in which BLAS uses one thread (threadpoolctl, which scikit-learn brings), else nothing.

    The smoothing products are mid-sized: on the 2-core machine two BLAS threads made deform()
    half as fast as one. Parallelise over processes instead (`python -m cbir.deform bench`).
    """
    import contextlib

    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
        except Exception:  # not installed, or a BLAS it cannot steer: results are the same, only slower
            _CONTROLLER.append(None)
    controller = _CONTROLLER[0]
    return controller.limit(limits=1, user_api="blas") if controller is not None else contextlib.nullcontext()


def deform(images, seeds, params: DeformParams = DeformParams()) -> np.ndarray:
    """Each uint8 image (N, 28, 28) deformed by its own deformation seed (N,) -> uint8 (N, 28, 28).

    The same (image, seed, params) always gives the same bytes, in any batch. Seeds are integers
    in [0, 2**64); neighbouring seeds give unrelated deformations. BLAS runs on one thread meanwhile.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE) or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, 28, 28); got {images.dtype} {images.shape}")
    seeds = _check_seeds(seeds, len(images))
    words = _words_per_item(params)
    out = np.empty_like(images)
    with _one_blas_thread():
        for lo in range(0, len(images), _CHUNK):
            hi = min(lo + _CHUNK, len(images))
            source_y, source_x, _ = _fields(_random_words(seeds[lo:hi], words), params)
            out[lo:hi] = _sample(images[lo:hi], source_y, source_x)
    return out


def item_seeds(start: int, stop: int, seed: int = 0) -> np.ndarray:
    """The deformation seeds generate() gives items start .. stop-1 of a seed: seed * 2**40 + i."""
    if not 0 <= seed < 2**SEED_BITS:
        raise ValueError(f"seed must be in [0, 2**{SEED_BITS}); got {seed}")
    if not 0 <= start <= stop <= 2**INDEX_BITS:
        raise ValueError(f"need 0 <= start <= stop <= 2**{INDEX_BITS}; got start={start}, stop={stop}")
    return (np.uint64(seed) << np.uint64(INDEX_BITS)) + np.arange(start, stop, dtype=np.uint64)


def generate(train_images, train_labels, start: int, stop: int, seed: int = 0, params: DeformParams = DeformParams()):
    """Items start .. stop-1 of the infinite data set -> (images uint8 (K, 28, 28), labels (K,), source_index (K,)).

    Item i is training digit i % n (n = len(train_images)): the digit itself for i < n, a
    deformation of it for i >= n, with deformation seed seed * 2**40 + i (see item_seeds). The
    label is the source digit's. Item i is the same whatever start and stop are.
    """
    train_images = np.asarray(train_images)
    train_labels = np.asarray(train_labels)
    n = len(train_images)
    if n == 0 or len(train_labels) != n:
        raise ValueError(f"need as many labels as images, and at least one; got {n} images, {len(train_labels)} labels")
    seeds = item_seeds(start, stop, seed)
    index = np.arange(start, stop, dtype=np.int64)
    source = index % n
    images = train_images[source]  # a copy
    deformed = index >= n
    if deformed.any():
        first = int(np.argmax(deformed))  # indices ascend: the deformed items are a suffix
        images[first:] = deform(images[first:], seeds[first:], params)
    return images, train_labels[source], source


def picture(train_images, train_labels, sources, per_row: int = 10, seed: int = 0, params: DeformParams = DeformParams()):
    """A PIL picture: per source digit, a row of the digit and per_row of its deformations (items source + n*j)."""
    from cbir import render

    n = len(train_images)
    rows = []
    for s in sources:
        cells = [(train_images[s] / 255.0, f"train #{s}\nlabel {train_labels[s]}")]
        for j in range(1, per_row + 1):
            image, _, _ = generate(train_images, train_labels, s + j * n, s + j * n + 1, seed, params)
            cells.append((image[0] / 255.0, f"item {s + j * n}"))
        rows.append(cells)
    return render.grid(rows)


def _bench(count: int, total: int, workers: int, data_dir) -> None:
    """Images/s on one core for `count` items, then `total` items on `workers` processes."""
    import os
    import time
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path

    from cbir import datasets
    from cbir.settings import Settings

    load = os.getloadavg()[0]  # other work on the machine skews the wall-clock figures
    settings = Settings.from_env(data_dir=Path(data_dir) if data_dir else None)
    train = datasets.load("mnist", "train", settings.data_dir, settings.home / "data")
    n = len(train)
    generate(train.images, train.labels, n, n + 1000)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    generate(train.images, train.labels, n, n + count)
    single, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"one process: {count} deformed items in {single:.2f} s = {count / single:,.0f} images/s "
          f"({count / cpu:,.0f} per CPU-second; {os.cpu_count()} CPUs visible, load average "
          f"{load:.2f} before)")
    if total:
        step = 50_000
        ranges = [(lo, min(lo + step, total)) for lo in range(0, total, step)]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(train.images, train.labels)) as pool:
            made = sum(pool.map(_worker, ranges))
        took = time.perf_counter() - t0
        print(f"{workers} process{'es' if workers > 1 else ''}: items 0 .. {total - 1} ({made:,} images, {total - n:,} deformed) in {took:.1f} s "
              f"= {made / took:,.0f} images/s, process start-up and MNIST hand-over included")


_WORKER: dict = {}


def _init_worker(images, labels) -> None:
    _WORKER["data"] = (images, labels)


def _worker(bounds) -> int:
    images, labels = _WORKER["data"]
    out, _, _ = generate(images, labels, *bounds)
    return len(out)


def main(argv: list[str] | None = None) -> None:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m cbir.deform", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="time generate(): images/s on one core, then a large run on several processes")
    b.add_argument("--count", type=int, default=10_000)
    b.add_argument("--total", type=int, default=1_000_000, help="0 skips the large run")
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--data-dir", default=None)
    p = sub.add_parser("picture", help="draw source digits and their deformations")
    p.add_argument("out", type=Path)
    p.add_argument("--sources", default="1,3,5,7,2,0,15,17", help="training indices, one row each (default: a 0, 1, 2, 3, 4, 5, 7 and 8)")
    p.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    if args.command == "bench":
        _bench(args.count, args.total, args.workers, args.data_dir)
    else:
        from cbir import datasets, render
        from cbir.settings import Settings

        settings = Settings.from_env(data_dir=Path(args.data_dir) if args.data_dir else None)
        train = datasets.load("mnist", "train", settings.data_dir, settings.home / "data")
        sources = [int(s) for s in args.sources.split(",")]
        render.save_png(picture(train.images, train.labels, sources), args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
