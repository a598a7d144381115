"""cbir.deform: infinite MNIST, reproducible and still digits."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from cbir import datasets, deform
from cbir.deform import DeformParams

N = 60_000


@pytest.fixture(scope="module")
def train(mnist_dir) -> datasets.Split:
    return datasets.load_split("mnist", "train", mnist_dir)


def _gen(train, start, stop, **kw):
    return deform.generate(train.images, train.labels, start, stop, **kw)


# --- reproducibility ---------------------------------------------------------------------------


def test_an_item_is_the_same_whatever_the_batch_split(train):
    # 200 source digits, so items 200..999 are deformed: the brief's generate(0, 1000) split test
    images, labels = train.images[:200], train.labels[:200]
    whole = deform.generate(images, labels, 0, 1000)
    parts = [deform.generate(images, labels, a, b) for a, b in ((0, 300), (300, 301), (301, 1000))]
    for got, want in zip(whole, (np.concatenate([p[k] for p in parts]) for k in range(3))):
        assert np.array_equal(got, want)
    # across the originals/deformed boundary of the full training set, and one item alone
    big = _gen(train, N - 100, N + 700)
    split = [_gen(train, a, b) for a, b in ((N - 100, N + 1), (N + 1, N + 333), (N + 333, N + 700))]
    assert np.array_equal(big[0], np.concatenate([s[0] for s in split]))
    for i in (N, N + 517, N + 699):
        assert np.array_equal(_gen(train, i, i + 1)[0][0], big[0][i - (N - 100)])


def test_internal_chunking_and_seed_order_do_not_matter(train, monkeypatch):
    seeds = deform.item_seeds(N, N + 300)
    sources = train.images[:300]
    reference = deform.deform(sources, seeds)
    monkeypatch.setattr(deform, "_CHUNK", 7)
    assert np.array_equal(deform.deform(sources, seeds), reference)
    order = np.random.default_rng(3).permutation(300)  # no runs of consecutive seeds left
    assert np.array_equal(deform.deform(sources[order], seeds[order]), reference[order])


def test_the_recipe_is_pinned(train):
    # The bytes of items 60000..60063, seed 0, default parameters. A change here changes every
    # deformed digit anyone has stored: bump _KEY's version and this checksum together, on purpose.
    images, _, _ = _gen(train, N, N + 64)
    assert hashlib.sha256(images.tobytes()).hexdigest() == "f63f10e9d48b1cefb780b81e5930479c592d80355f1b1f286bb4bed7ee010a71"
    images, _, _ = _gen(train, 123_456_789, 123_456_789 + 64, seed=7)
    assert hashlib.sha256(images.tobytes()).hexdigest() == "91d68ac2c5c87fee6f827a8bfc90e1c25247ff8515974a2fbcf2a108b00f5aa3"


def test_seeds_and_indices_give_different_digits(train):
    a, _, src_a = _gen(train, N, N + 200)
    b, _, src_b = _gen(train, 2 * N, 2 * N + 200)  # the same 200 source digits, their next deformations
    c, _, _ = _gen(train, N, N + 200, seed=1)
    assert np.array_equal(src_a, src_b)
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    for one, other in ((a, b), (a, c), (a, train.images[src_a])):
        assert not (flat(one) == flat(other)).all(axis=1).any()  # no item equals its counterpart
    # neighbouring deformation seeds are unrelated: their displacement fields do not correlate
    total, _ = deform.displacement_fields(np.arange(1000, 1200, dtype=np.uint64))
    dx = total[:, 1].reshape(200, -1)
    r = np.corrcoef(dx[:-1].ravel(), dx[1:].ravel())[0, 1]
    assert abs(r) < 0.1


# --- labels and sources ------------------------------------------------------------------------


def test_labels_and_sources_follow_the_infinite_mnist_numbering(train):
    images, labels, source = _gen(train, N - 50, N + 950)
    index = np.arange(N - 50, N + 950)
    assert np.array_equal(source, index % N)
    assert np.array_equal(labels, train.labels[source])
    assert np.array_equal(images[:50], train.images[N - 50 :])  # items below 60,000 are the originals
    _, labels_far, source_far = _gen(train, 10**9, 10**9 + 100)
    assert np.array_equal(source_far, np.arange(10**9, 10**9 + 100) % N)
    assert np.array_equal(labels_far, train.labels[source_far])


# --- still digits --------------------------------------------------------------------------------


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def digit_likeness_problems(images: np.ndarray, sources: np.ndarray, labels: np.ndarray, train) -> list[str]:
    """What makes these deformed digits unlike their sources; empty when they are fine."""
    n = len(images)
    made = images.reshape(n, -1).astype(np.float64)
    src = train.images[sources].reshape(n, -1).astype(np.float64)
    problems = []
    ink = made.sum(1) / src.sum(1)
    if not (ink.min() > 0.5 and ink.max() < 2.0 and 0.9 < np.median(ink) < 1.1):
        problems.append(f"ink mass ratio min {ink.min():.2f}, median {np.median(ink):.2f}, max {ink.max():.2f}")
    ring = np.ones((28, 28), bool)
    ring[2:-2, 2:-2] = False
    edge = made[:, ring.ravel()].sum(1) / made.sum(1)
    if edge.mean() > 0.03:
        problems.append(f"{edge.mean():.1%} of the ink in the outer 2-px ring (the originals: 0.3%)")
    to_source = _corr(made, src)
    if not (np.median(to_source) > 0.5 and to_source.max() < 0.999):
        problems.append(f"correlation with the source median {np.median(to_source):.2f}, max {to_source.max():.4f}")
    # closer to its own source than to another digit of the same class, for most
    rng = np.random.default_rng(0)
    others = np.array([rng.choice(np.flatnonzero(train.labels[:5000] == label)) for label in labels])
    closer = (to_source > _corr(made, train.images[others].reshape(n, -1).astype(np.float64))).mean()
    if closer < 0.8:
        problems.append(f"only {closer:.0%} are closer to their source than to another digit of their class")
    return problems


def test_deformed_digits_stay_digits(train):
    images, labels, source = _gen(train, N + 5000, N + 6000)
    assert digit_likeness_problems(images, source, labels, train) == []


@pytest.mark.parametrize(
    "params, complaint",
    [
        (DeformParams(translation=6.0), "outer 2-px ring"),
        (DeformParams(scale=0.6), "ink mass ratio"),
        (DeformParams(alpha=400.0, max_elastic=12.0, sigma=3.0), "correlation with the source"),
        (DeformParams(alpha=0.0, rotation=0.0, scale=0.0, shear=0.0, translation=0.0), "max 1.0000"),
    ],
)
def test_the_digit_check_catches_wrecked_or_untouched_digits(train, params, complaint):
    images, labels, source = _gen(train, N + 5000, N + 6000, params=params)
    assert any(complaint in p for p in digit_likeness_problems(images, source, labels, train))


def test_the_digit_check_catches_wrong_sources(train):
    images, labels, source = _gen(train, N + 5000, N + 6000)
    shuffled = np.random.default_rng(1).permutation(source)
    assert any("closer to their source" in p for p in digit_likeness_problems(images, shuffled, labels, train))


def test_bilinear_sampling_matches_a_plain_loop(train):
    seeds = deform.item_seeds(N, N + 3)
    sources = train.images[:3]
    made = deform.deform(sources, seeds)
    total, _ = deform.displacement_fields(seeds)
    for k in range(3):
        img = sources[k].astype(np.float64)
        pixel = lambda y, x: img[y, x] if 0 <= y < 28 and 0 <= x < 28 else 0.0  # noqa: E731
        for y in range(28):
            for x in range(28):
                sy, sx = y + total[k, 0, y, x], x + total[k, 1, y, x]
                y0, x0 = int(np.floor(sy)), int(np.floor(sx))
                fy, fx = sy - y0, sx - x0
                want = (1 - fy) * ((1 - fx) * pixel(y0, x0) + fx * pixel(y0, x0 + 1)) + fy * (
                    (1 - fx) * pixel(y0 + 1, x0) + fx * pixel(y0 + 1, x0 + 1)
                )
                assert abs(int(made[k, y, x]) - want) <= 0.51, (k, y, x)


# --- the displacement bound ------------------------------------------------------------------------


def test_displacements_are_bounded_as_documented():
    params = DeformParams()
    seeds = deform.item_seeds(N, N + 1000)
    total, elastic = deform.displacement_fields(seeds, params)
    length = np.sqrt((total.astype(np.float64) ** 2).sum(1))
    elastic_length = np.sqrt((elastic.astype(np.float64) ** 2).sum(1))
    assert elastic_length.max() <= params.max_elastic + 1e-4
    assert length.max() <= params.max_displacement + 1e-4
    # and the bound is not vacuous, nor the field negligible
    assert length.max() > 0.4 * params.max_displacement
    assert 0.8 < np.sqrt((elastic_length**2).mean()) < 2.0  # rms elastic displacement, px (1.3 measured)
    # a tight cap shrinks nearly every field to exactly that length, and no further
    tight = replace(params, max_elastic=1.0)
    _, capped = deform.displacement_fields(seeds, tight)
    longest = np.sqrt((capped.astype(np.float64) ** 2).sum(1)).reshape(1000, -1).max(1)
    assert longest.max() <= 1.0 + 1e-4 and (np.abs(longest - 1.0) < 1e-4).mean() > 0.95


def test_the_documented_bound_follows_the_parameters():
    base = DeformParams()
    assert replace(base, translation=3.0).max_displacement > base.max_displacement
    assert replace(base, rotation=0.0, scale=0.0, shear=0.0, translation=0.0).max_displacement == pytest.approx(base.max_elastic)


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "images, seeds",
    [
        (np.zeros((2, 28, 28), np.float32), [0, 1]),
        (np.zeros((2, 27, 28), np.uint8), [0, 1]),
        (np.zeros((2, 28, 28), np.uint8), [0]),
        (np.zeros((2, 28, 28), np.uint8), [0, -1]),
        (np.zeros((2, 28, 28), np.uint8), [0.5, 1.0]),
    ],
)
def test_deform_refuses_bad_input(images, seeds):
    with pytest.raises(ValueError):
        deform.deform(images, np.asarray(seeds))


def test_generate_and_params_refuse_bad_input(train):
    with pytest.raises(ValueError):
        _gen(train, 10, 5)
    with pytest.raises(ValueError):
        _gen(train, 0, 10, seed=-1)
    with pytest.raises(ValueError):
        _gen(train, 0, 10, seed=2**24)
    with pytest.raises(ValueError):
        DeformParams(scale=1.0)
    with pytest.raises(ValueError):
        deform.deform(train.images[:1], [N], DeformParams(sigma=200.0))  # too wide for exact smoothing
    assert deform.deform(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64)).shape == (0, 28, 28)
