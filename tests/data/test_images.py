"""Tests of image decoding: every PIL mode becomes uint8 RGB with the expected pixel values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from owp.data.images import image_size, read_image_tensor, read_rgb, to_rgb_array
from owp.errors import OwpInputError


def gray(values: list[list[int]]) -> np.ndarray:
    """The uint8 RGB array whose three channels all equal ``values``."""
    return np.repeat(np.array(values, dtype=np.uint8)[:, :, None], 3, axis=2)


def check(array: np.ndarray, expected: np.ndarray) -> None:
    assert array.dtype == np.uint8
    assert array.ndim == 3 and array.shape[2] == 3
    np.testing.assert_array_equal(array, expected)


def test_rgb_png(tmp_path: Path) -> None:
    pixels = np.array([[[1, 2, 3], [250, 128, 0]], [[0, 0, 0], [255, 255, 255]]], np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    check(read_rgb(tmp_path / "rgb.png"), pixels)


def test_grayscale_l(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8)).save(tmp_path / "l.png")
    check(read_rgb(str(tmp_path / "l.png")), gray([[0, 77, 255]]))


def test_grayscale_with_alpha_la(tmp_path: Path) -> None:
    image = Image.new("LA", (2, 1))
    image.putpixel((0, 0), (77, 5))
    image.putpixel((1, 0), (200, 255))
    image.save(tmp_path / "la.png")
    check(read_rgb(tmp_path / "la.png"), gray([[77, 200]]))


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    image = Image.new("RGBA", (2, 1))
    image.putpixel((0, 0), (1, 2, 3, 0))
    image.putpixel((1, 0), (10, 20, 30, 128))
    image.save(tmp_path / "rgba.png")
    check(read_rgb(tmp_path / "rgba.png"), np.array([[[1, 2, 3], [10, 20, 30]]], np.uint8))


@pytest.mark.parametrize("transparency", [None, 0], ids=["opaque", "transparent"])
def test_palette(tmp_path: Path, transparency: int | None) -> None:
    image = Image.new("P", (3, 1))
    image.putpalette([10, 20, 30, 200, 100, 50, 7, 8, 9])
    image.putpixel((1, 0), 1)
    image.putpixel((2, 0), 2)
    if transparency is not None:
        image.info["transparency"] = transparency
    image.save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as reread:
        assert reread.mode == "P"
        assert ("transparency" in reread.info) == (transparency is not None)
    expected = np.array([[[10, 20, 30], [200, 100, 50], [7, 8, 9]]], np.uint8)
    check(read_rgb(tmp_path / "p.png"), expected)


def test_one_bit(tmp_path: Path) -> None:
    image = Image.new("1", (3, 1))
    image.putpixel((1, 0), 1)
    image.save(tmp_path / "bits.png")
    check(read_rgb(tmp_path / "bits.png"), gray([[0, 255, 0]]))


def test_cmyk(tmp_path: Path) -> None:
    image = Image.new("CMYK", (3, 1))
    image.putpixel((0, 0), (255, 0, 0, 0))  # pure cyan
    image.putpixel((1, 0), (0, 0, 0, 255))  # pure black
    image.putpixel((2, 0), (0, 0, 0, 0))  # no ink
    image.save(tmp_path / "cmyk.tif")
    with Image.open(tmp_path / "cmyk.tif") as reread:
        assert reread.mode == "CMYK"
    expected = np.array([[[0, 255, 255], [0, 0, 0], [255, 255, 255]]], np.uint8)
    check(read_rgb(tmp_path / "cmyk.tif"), expected)


def test_sixteen_bit_grayscale_png(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535], [257, 255, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as reread:
        assert reread.mode in ("I;16", "I")
    # scaled from the full 16-bit range: 32768 * 255 / 65535 = 127.50... -> 128
    check(read_rgb(tmp_path / "g16.png"), gray([[0, 128, 255], [1, 1, 4]]))


def test_sixteen_bit_in_memory_keeps_full_scale_for_dark_images() -> None:
    # an explicitly 16-bit image is scaled by 65535 even when all its values are <= 255
    image = Image.fromarray(np.array([[0, 200, 255]], dtype=np.uint16))
    assert image.mode == "I;16"
    check(to_rgb_array(image), gray([[0, 1, 1]]))


def test_mode_i_within_8_bits(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32)).save(tmp_path / "i.tif")
    with Image.open(tmp_path / "i.tif") as reread:
        assert reread.mode == "I"
    check(read_rgb(tmp_path / "i.tif"), gray([[0, 100, 255]]))


def test_mode_i_above_8_bits(tmp_path: Path) -> None:
    values = np.array([[0, 256, 1000, 65535, -5]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "i.tif")
    # peak 65535: scaled by 255 / 65535; negative values clip at 0
    check(read_rgb(tmp_path / "i.tif"), gray([[0, 1, 4, 255, 0]]))


def test_mode_i_above_16_bits(tmp_path: Path) -> None:
    values = np.array([[0, 70000, 2**31 - 1]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "i.tif")
    # peak beyond 65535: scaled by 255 / (2**32 - 1); 70000 -> 0.004 -> 0, 2**31 - 1 -> 127.4999
    check(read_rgb(tmp_path / "i.tif"), gray([[0, 0, 127]]))


@pytest.mark.parametrize(
    ("values", "expected"),
    [([[0.0, 0.5, 1.0]], [[0, 128, 255]]), ([[0.0, 2.0, 300.0]], [[0, 2, 255]])],
    ids=["unit-range", "byte-range"],
)
def test_mode_f(values: list[list[float]], expected: list[list[int]]) -> None:
    image = Image.fromarray(np.array(values, dtype=np.float32))
    assert image.mode == "F"
    check(to_rgb_array(image), gray(expected))


def test_read_image_tensor(tmp_path: Path) -> None:
    pixels = np.array([[[0, 51, 255], [102, 204, 1]]], np.uint8)  # 1 x 2 RGB
    Image.fromarray(pixels).save(tmp_path / "t.png")
    tensor = read_image_tensor(tmp_path / "t.png")
    assert tensor.dtype == torch.float32
    assert tensor.shape == (3, 1, 2)
    assert tensor.is_contiguous()
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    assert torch.equal(tensor, expected)
    assert tensor[:, 0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])


def test_read_image_tensor_of_grayscale(tmp_path: Path) -> None:
    Image.fromarray(np.array([[51]], dtype=np.uint8)).save(tmp_path / "g.png")
    assert read_image_tensor(tmp_path / "g.png").flatten().tolist() == pytest.approx([0.2] * 3)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.png"
    for call in (read_rgb, read_image_tensor, image_size):
        with pytest.raises(OwpInputError) as info:
            call(path)
        assert str(info.value) == f"{path}: image file not found"


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello, not a picture\n")
    for call in (read_rgb, read_image_tensor, image_size):
        with pytest.raises(OwpInputError) as info:
            call(path)
        assert str(info.value).startswith(f"{path}: unreadable image (")
        assert "\n" not in str(info.value)


def test_truncated_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(OwpInputError) as info:
        read_rgb(tmp_path / "t.png")
    assert str(info.value).startswith(f"{tmp_path / 't.png'}: ")
    assert "image" in str(info.value)


def test_image_size(tmp_path: Path) -> None:
    Image.new("RGB", (7, 3)).save(tmp_path / "s.png")
    assert image_size(tmp_path / "s.png") == (7, 3)
