"""Query images as people make them become MNIST-like digits: what a user relies on."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cbir import preprocess
from cbir.errors import CbirError

# A "4" as a pen would draw it, in a 0..1 box: (down-left stroke, across), then the long stroke.
FOUR = [[(0.62, 0.0), (0.0, 0.62), (0.85, 0.62)], [(0.62, 0.0), (0.62, 1.0)]]


def draw(strokes=FOUR, size=(300, 300), box=(60, 40, 240, 260), pen=10, ink=0, paper=255, mode="L"):
    """Strokes (polylines in a unit box) drawn with a round pen into `box` (x0, y0, x1, y1) of a page."""
    img = Image.new(mode, size, paper)
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    r = pen / 2
    for line in strokes:
        pts = [(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for u, v in line]
        d.line(pts, fill=ink, width=pen)
        for x, y in pts:
            d.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    return img


def save(img, path, **kwargs):
    img.save(path, **kwargs)
    return path


def similarity(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def box_of(digit, level=0.3):
    rows, cols = np.nonzero(digit > level)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


@pytest.fixture
def reference(tmp_path):
    """The "4" as a plain drawing on white, through the same preprocessing."""
    return preprocess.load_digit(save(draw(), tmp_path / "reference.png"))


def photo(strokes=FOUR, size=(1200, 900), box=(500, 330, 650, 530), pen=9, seed=0, strip=None, quality=80):
    """A phone photo: grey paper, light falling off across the page, paper grain, noise, JPEG."""
    rng = np.random.default_rng(seed)
    w, h = size
    coverage = np.asarray(draw(strokes, size, box, pen, ink=255, paper=0), dtype=np.float32) / 255
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    light = 0.95 - 0.5 * (0.7 * x + 0.3 * y)  # bright at the top left, dim at the bottom right
    paper = 0.75 * light * (1 + 0.04 * rng.standard_normal((h, w)).astype(np.float32))
    page = paper * (1 - coverage) + 0.08 * light * coverage
    if strip is not None:
        page[:, : strip] = 0.12  # the desk beyond the page's left edge
    page = page + rng.normal(0, 0.02, (h, w)).astype(np.float32)
    img = Image.fromarray(np.clip(page * 255, 0, 255).astype(np.uint8)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Image.open(buf)


# --- pens and markers ----------------------------------------------------------------------------

def test_a_thin_pen_and_a_thick_marker_give_similar_inputs(tmp_path):
    thin = preprocess.load_digit(save(draw(pen=3), tmp_path / "thin.png"))
    thick = preprocess.load_digit(save(draw(pen=30), tmp_path / "thick.png"))
    assert similarity(thin, thick) > 0.8
    assert 0.67 < thin.sum() / thick.sum() < 1.5  # stroke mass: a thin pen is not a faint grey line
    assert thin.max() == pytest.approx(1.0) and (thin > 0.9).sum() >= 20  # contrast stretched: solid strokes


@pytest.mark.parametrize("pen", [2, 4])
def test_a_thin_pen_is_thickened_to_an_mnist_stroke(tmp_path, pen):
    digit = preprocess.load_digit(save(draw(pen=pen), tmp_path / "thin.png"))
    # The strokes of the "4" are about 20 + 11 + 20 px long in 28x28; MNIST's pen is 2 to 2.8 px wide.
    assert 1.8 <= digit.sum() / 45 <= 3.2


@pytest.mark.parametrize("angle", [0, 30, 45, 80])
def test_stroke_width_is_measured_in_pixels(angle):
    def bar(width):
        img = Image.new("L", (300, 300), 0)
        a = np.deg2rad(angle)
        dx, dy = 100 * np.cos(a), 100 * np.sin(a)
        ImageDraw.Draw(img).line((150 - dx, 150 - dy, 150 + dx, 150 + dy), fill=255, width=width)
        return np.asarray(img) > 127

    ratios = []
    for width in (5, 10, 20):
        mask = bar(width)
        ratios.append(preprocess.stroke_width(mask) / (mask.sum() / 200))  # the drawn width: area / length
    assert all(0.8 <= r <= 1.45 for r in ratios)  # (4/pi is a little too much at 0 degrees)
    assert max(ratios) / min(ratios) <= 1.3  # the same error at every width: a scale, which calibration absorbs


# --- photos: background, light, clutter ----------------------------------------------------------

def test_a_gradient_lit_grey_paper_photo_is_cropped_to_the_digit(reference):
    digit = preprocess.normalize(preprocess.to_gray(photo()))
    assert max(box_of(digit)) >= 19  # the digit fills the 20x20 box: not a small digit inside a grey page
    assert similarity(digit, reference) > 0.8
    border = np.concatenate([digit[:3].ravel(), digit[-3:].ravel(), digit[:, :3].ravel(), digit[:, -3:].ravel()])
    assert border.max() < 0.05  # the paper is black, not grey


def test_a_dark_strip_along_one_edge_is_not_cropped_in(reference):
    digit = preprocess.normalize(preprocess.to_gray(photo(strip=90)))
    assert similarity(digit, reference) > 0.8


@pytest.mark.parametrize("clutter", ["frame", "border at the edge", "ruled lines", "specks", "scribble far away"])
def test_clutter_around_the_digit_is_dropped(tmp_path, reference, clutter):
    img = draw()
    d = ImageDraw.Draw(img)
    if clutter == "frame":
        d.rectangle((25, 15, 275, 285), outline=0, width=4)
    elif clutter == "border at the edge":
        d.rectangle((0, 0, 299, 299), outline=0, width=6)
    elif clutter == "ruled lines":
        for y in range(30, 300, 45):
            d.line((0, y, 299, y), fill=110, width=2)
    elif clutter == "specks":
        rng = np.random.default_rng(3)
        for x, y in rng.uniform(0, 300, (25, 2)):
            d.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=0)
    else:  # in a corner of a bigger page
        img = Image.new("L", (400, 400), 255)
        img.paste(draw(), (50, 50))
        ImageDraw.Draw(img).line((10, 380, 30, 365, 45, 390), fill=0, width=8)
    digit = preprocess.load_digit(save(img, tmp_path / "clutter.png"))
    assert similarity(digit, reference) > 0.9


def test_a_digit_drawn_in_two_parts_keeps_both(tmp_path):
    five = [[(0.9, 0.0), (0.15, 0.0)], [(0.1, 0.12), (0.05, 0.45), (0.6, 0.4), (0.95, 0.7), (0.6, 1.0), (0.0, 0.9)]]
    digit = preprocess.load_digit(save(draw(five, pen=10), tmp_path / "five.png"))  # the bar does not touch the body
    h, w = box_of(digit)
    assert h >= 19  # bar and body both kept: the whole digit's height fits the 20x20 box
    assert digit[:10].sum() > 0.15 * digit.sum()  # and the bar is there at the top


# --- what already worked keeps working --------------------------------------------------------------

def test_mnist_images_are_taken_exactly_as_they_are(tmp_path, mnist_test):
    for i in range(20):
        path = save(Image.fromarray(mnist_test.images[i]), tmp_path / f"mnist{i}.png")
        assert np.array_equal(preprocess.load_digit(path), mnist_test.images[i] / np.float32(255))


def test_a_large_dark_on_light_drawing_becomes_mnist_like(tmp_path, mnist_test):
    digit = mnist_test.images[1]  # a "2"
    big = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (500, 400), 255)
    canvas.paste(big, (20, 90))  # off-centre, on a wide white page
    path = tmp_path / "drawn.jpg"
    canvas.convert("RGB").save(path, quality=95)
    out = preprocess.load_digit(path)
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() == pytest.approx(1.0, abs=0.02)
    assert np.mean(np.concatenate([out[0], out[-1], out[:, 0], out[:, -1]])) < 0.01  # black border
    assert similarity(out, digit / 255.0) > 0.85


def test_the_digit_fits_20x20_and_its_mass_is_centred(tmp_path):
    img = Image.new("L", (300, 100), 255)
    ImageDraw.Draw(img).line((250, 10, 260, 90), fill=0, width=8)  # a "1" far right
    out = preprocess.load_digit(save(img, tmp_path / "one.png"))
    rows, cols = np.nonzero(out > 0.05)
    assert rows.max() - rows.min() + 1 <= 21 and cols.max() - cols.min() + 1 <= 21
    ys, xs = np.indices(out.shape)
    assert abs((ys * out).sum() / out.sum() - 13.5) <= 1
    assert abs((xs * out).sum() / out.sum() - 13.5) <= 1


@pytest.mark.parametrize("kind", ["white on black", "chalk on a dark board", "light paper in dim light"])
def test_which_side_the_ink_is_on_is_found(tmp_path, reference, kind):
    if kind == "white on black":
        img = draw(ink=255, paper=0)
    elif kind == "chalk on a dark board":
        img = draw(ink=210, paper=50)
    else:  # paper darker than mid-grey, ink darker still: the border alone would say "light ink"
        img = draw(ink=15, paper=85)
    digit = preprocess.load_digit(save(img, tmp_path / "q.png"))
    assert similarity(digit, reference) > 0.9


def test_transparent_background_is_composited_over_white(tmp_path):
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))  # transparent *black*
    ImageDraw.Draw(img).ellipse((30, 20, 70, 80), outline=(0, 0, 0, 255), width=6)
    out = preprocess.load_digit(save(img, tmp_path / "zero.png"))
    assert out[0].max() == 0 and out.max() > 0.9  # ring found as ink, background black


def test_coloured_ink_on_tinted_paper(tmp_path, reference):
    img = draw(ink=(30, 40, 200), paper=(250, 235, 160), mode="RGB")  # blue ballpoint on a yellow note
    assert similarity(preprocess.load_digit(save(img, tmp_path / "note.jpg", quality=85)), reference) > 0.9


@pytest.mark.parametrize("orientation, turn", [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90),
                                               (8, Image.Transpose.ROTATE_270)])
def test_exif_rotation_is_applied(tmp_path, reference, orientation, turn):
    # A camera stores the pixels as the sensor saw them and says in EXIF how to turn them upright.
    stored = draw(mode="RGB").transpose(turn)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(stored, tmp_path / "photo.jpg", exif=exif, quality=95)
    assert similarity(preprocess.load_digit(path), reference) > 0.9


@pytest.mark.parametrize("mode", ["I;16", "P", "1", "P+transparency", "LA", "CMYK", "F"])
@pytest.mark.parametrize("side", [300, 2400])
def test_image_modes_small_and_larger_than_the_working_size(tmp_path, reference, mode, side):
    page = draw(size=(side, side), box=(side // 5, side // 8, side * 4 // 5, side * 7 // 8), pen=side // 30)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(page, dtype=np.uint16) * 257)
        path = tmp_path / "q.png"
    elif mode == "F":
        img = Image.fromarray(np.asarray(page, dtype=np.float32) / 255)
        path = tmp_path / "q.tif"
    elif mode == "1":
        img = page.convert("1", dither=Image.Dither.NONE)
        path = tmp_path / "q.png"
    elif mode == "P+transparency":  # the paper is the transparent colour
        img = page.convert("P")
        img.info["transparency"] = img.getpixel((0, 0))
        path = tmp_path / "q.png"
    else:
        img = page.convert(mode)
        path = tmp_path / ("q.jpg" if mode == "CMYK" else "q.png")
    save(img, path)
    assert similarity(preprocess.load_digit(path), reference) > 0.9


def test_a_huge_photo_works(tmp_path, reference):
    img = draw(size=(6000, 4500), box=(2200, 1200, 3800, 3300), pen=150, mode="RGB")
    assert similarity(preprocess.load_digit(save(img, tmp_path / "huge.jpg", quality=90)), reference) > 0.9


@pytest.mark.parametrize("side", [12, 20, 40])
def test_tiny_images_work(tmp_path, side):
    img = draw(size=(side, side), box=(side * 0.2, side * 0.1, side * 0.8, side * 0.9), pen=max(1, side // 10))
    digit = preprocess.load_digit(save(img, tmp_path / "tiny.png"))
    assert digit.shape == (28, 28) and digit.max() == pytest.approx(1.0) and max(box_of(digit)) >= 18


# --- refusals: one clear line -----------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_float_tiff_with_nan_or_infinite_pixels_is_refused(tmp_path, value):
    arr = np.asarray(draw(), dtype=np.float32) / 255
    arr[5:9, 5:9] = value
    path = save(Image.fromarray(arr), tmp_path / "float.tif")
    with pytest.raises(CbirError) as caught:
        preprocess.load_digit(path)
    message = str(caught.value)
    assert str(path) in message and "NaN or infinite" in message and "\n" not in message


@pytest.mark.parametrize("colour", [255, 128, 0])
def test_blank_image_is_refused(tmp_path, colour):
    path = save(Image.new("L", (64, 64), colour), tmp_path / "blank.png")
    with pytest.raises(CbirError, match="no ink found"):
        preprocess.load_digit(path)


def test_blank_paper_photo_is_refused():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 800, dtype=np.float32)[None, :]
    page = 0.8 - 0.3 * x + rng.normal(0, 0.01, (600, 800)).astype(np.float32)  # uneven light, sensor noise
    with pytest.raises(CbirError, match="no ink found"):
        preprocess.normalize(np.clip(page, 0, 1))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b""), "not an image"),
        (lambda p: p.write_text("hello, I am text"), "not an image"),
    ],
)
def test_bad_files_get_a_clear_error(tmp_path, make, message):
    path = tmp_path / "query.png"
    make(path)
    with pytest.raises(CbirError, match=message):
        preprocess.load_digit(path)


def test_truncated_png_is_a_clear_error(tmp_path, mnist_test):
    path = tmp_path / "cut.png"
    Image.fromarray(mnist_test.images[0]).resize((200, 200)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CbirError, match="corrupt or truncated"):
        preprocess.load_digit(path)


# --- the steps, and the parts they are built from --------------------------------------------------

def test_steps_show_every_intermediate_image_in_order():
    gray = np.asarray(draw(), dtype=np.float32) / 255
    names = [name for name, _ in preprocess.steps(gray)]
    assert names == ["gray", "ink", "background removed", "threshold", "clutter dropped", "crop",
                     "stroke normalised", "fit 20x20", "centred by mass"]
    assert np.array_equal(preprocess.steps(gray)[-1][1], preprocess.normalize(gray))


def _flood_fill_count(mask):
    seen = np.zeros_like(mask)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        count += 1
        stack = [start]
        seen[start] = True
        while stack:
            y, x = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    v, u = y + dy, x + dx
                    if 0 <= v < mask.shape[0] and 0 <= u < mask.shape[1] and mask[v, u] and not seen[v, u]:
                        seen[v, u] = True
                        stack.append((v, u))
    return count


def test_connected_components_match_a_flood_fill():
    rng = np.random.default_rng(0)
    for _ in range(40):
        mask = rng.random((rng.integers(1, 30), rng.integers(1, 30))) < rng.uniform(0.1, 0.7)
        rows, starts, ends = preprocess.mask_runs(mask)
        comp, n = preprocess.label_runs(rows, starts, ends, mask.shape[1])
        assert n == _flood_fill_count(mask)
        labels = np.full(mask.shape, -1)
        for r, s, e, c in zip(rows, starts, ends, comp):
            labels[r, s:e] = c
        for y, x in zip(*np.nonzero(mask)):  # 8-neighbours share a component
            for v, u in ((y + 1, x - 1), (y + 1, x), (y + 1, x + 1), (y, x + 1)):
                if 0 <= v < mask.shape[0] and 0 <= u < mask.shape[1] and mask[v, u]:
                    assert labels[v, u] == labels[y, x]


def test_preprocessing_imports_neither_scipy_nor_opencv(tmp_path):
    path = save(draw(), tmp_path / "q.png")
    code = ("import sys\nfrom cbir.preprocess import load_digit\n"
            f"load_digit({str(path)!r})\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'cv2', 'skimage', 'sklearn')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- the benchmark's user-made queries (bench/user_made.py), reused elsewhere -----------------------

def test_user_made_queries_are_reproducible_image_files(monkeypatch, mnist_dir):
    from bench import user_made

    monkeypatch.setenv("CBIR_DATA_DIR", str(mnist_dir))
    user_made.mnist_test.cache_clear()
    assert {"thin-pen", "phone-photo"} <= set(user_made.DIGIT_CONDITIONS) and "letters" in user_made.NON_DIGIT_CONDITIONS
    for condition in ("thin-pen", "letters"):
        first, again = user_made.make_queries(condition, 3, seed=5), user_made.make_queries(condition, 3, seed=5)
        assert [q for q, _ in first] == [q for q, _ in again]  # seeded: the same bytes
        for data, label in first:
            Image.open(io.BytesIO(data)).load()  # a real image file
            assert (label is None) == (condition == "letters")
    _, labels = user_made.mnist_test()
    indices = user_made.test_indices("thin-pen", 3, 5)
    assert [label for _, label in user_made.make_queries("thin-pen", 3, seed=5)] == labels[indices].tolist()
