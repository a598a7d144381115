import numpy as np
import pytest
from PIL import Image, ImageDraw

from cbir import preprocess
from cbir.errors import CbirError


def test_mnist_images_are_taken_exactly_as_they_are(tmp_path, mnist_test):
    path = tmp_path / "seven.png"
    Image.fromarray(mnist_test.images[0]).save(path)
    assert np.array_equal(preprocess.load_digit(path), mnist_test.images[0] / np.float32(255))


def _similarity(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


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
    assert _similarity(out, digit / 255.0) > 0.85


def test_the_digit_fits_20x20_and_its_mass_is_centred(tmp_path):
    img = Image.new("L", (300, 100), 255)
    ImageDraw.Draw(img).line((250, 10, 260, 90), fill=0, width=8)  # a "1" far right
    path = tmp_path / "one.png"
    img.save(path)
    out = preprocess.load_digit(path)
    rows, cols = np.nonzero(out > 0.05)
    assert rows.max() - rows.min() + 1 <= 21 and cols.max() - cols.min() + 1 <= 21
    ys, xs = np.indices(out.shape)
    assert abs((ys * out).sum() / out.sum() - 13.5) <= 1
    assert abs((xs * out).sum() / out.sum() - 13.5) <= 1


def test_transparent_background_is_composited_over_white(tmp_path):
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))  # transparent *black*
    ImageDraw.Draw(img).ellipse((30, 20, 70, 80), outline=(0, 0, 0, 255), width=6)
    path = tmp_path / "zero.png"
    img.save(path)
    out = preprocess.load_digit(path)
    assert out[0].max() == 0 and out.max() > 0.9  # ring found as ink, background black


def test_blank_image_is_refused(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(path)
    with pytest.raises(CbirError, match="no ink"):
        preprocess.load_digit(path)


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
