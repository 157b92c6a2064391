"""process_image accepts real images once decoded and refuses everything else by name."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from kai.errors import InvalidImage
from kai.security.images import (
    ImageFormat,
    ImageLimits,
    make_thumbnail,
    process_image,
    sniff_format,
)

LIMITS = ImageLimits(max_pixels=100_000_000, reduced_size_px=32, thumbnail_size_px=16)
RED, BLUE = (255, 0, 0), (0, 0, 255)


def encode(image: Image.Image, pillow_format: str, **options: object) -> bytes:
    output = io.BytesIO()
    image.save(output, format=pillow_format, **options)
    return output.getvalue()


def halves(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue (opaque when the mode has alpha)."""
    image = Image.new(mode, (width, height), BLUE if mode == "RGB" else (*BLUE, 255))
    image.paste(Image.new(mode, (width // 2, height), RED if mode == "RGB" else (*RED, 255)))
    return image


def png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header claims ``width`` x ``height`` RGB pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">L", len(body)) + kind + body + struct.pack(">L", crc)

    header = struct.pack(">LLBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes(3 * width + 1))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def near(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 40 for a, b in zip(pixel, colour, strict=False))


@pytest.mark.parametrize(
    ("pillow_format", "expected"),
    [
        ("JPEG", ImageFormat.JPEG),
        ("PNG", ImageFormat.PNG),
        ("GIF", ImageFormat.GIF),
        ("WEBP", ImageFormat.WEBP),
        ("BMP", ImageFormat.BMP),
        ("TIFF", ImageFormat.TIFF),
    ],
)
def test_accepts_each_format(pillow_format: str, expected: ImageFormat) -> None:
    data = encode(halves(24, 16), pillow_format)

    assert sniff_format(data[:32]) is expected
    image = process_image(data, LIMITS, name=f"a.{expected}")
    assert (image.format, image.width, image.height) == (expected, 24, 16)
    assert image.reduced is None
    assert image.reduced_format is None


def test_reads_jpeg_and_png_dimensions_and_mode() -> None:
    jpeg = process_image(encode(halves(30, 20), "JPEG"), LIMITS, name="a.jpg")
    png = process_image(encode(halves(30, 20, "RGBA"), "PNG"), LIMITS, name="b.png")

    assert (jpeg.format, jpeg.width, jpeg.height, jpeg.mode) == ("jpeg", 30, 20, "RGB")
    assert (png.format, png.width, png.height, png.mode) == ("png", 30, 20, "RGBA")


def test_content_decides_the_format_not_the_name() -> None:
    image = process_image(encode(halves(8, 8), "PNG"), LIMITS, name="actually-png.jpg")

    assert image.format is ImageFormat.PNG


def test_refuses_decompression_bomb_before_decoding() -> None:
    data = png_claiming(30_000, 30_000)
    assert len(data) < 1024

    with pytest.raises(InvalidImage, match=r"bomb\.png .*too many pixels"):
        process_image(data, LIMITS, name="bomb.png")


def test_own_pixel_limit_applies_below_pillows() -> None:
    # 144 megapixels: over Kai's limit, between Pillow's warning and its error.
    data = png_claiming(12_000, 12_000)

    with pytest.raises(InvalidImage) as caught:
        process_image(data, LIMITS, name="big.png")

    assert "big.png claims 12000x12000 pixels" in str(caught.value)
    assert "KAI_MAX_IMAGE_PIXELS" in str(caught.value)
    assert caught.value.details["reason"] == "too_many_pixels"


def test_refuses_images_over_a_small_configured_limit() -> None:
    tight = ImageLimits(max_pixels=500, reduced_size_px=32, thumbnail_size_px=16)

    with pytest.raises(InvalidImage, match="claims 30x20 pixels"):
        process_image(encode(halves(30, 20), "JPEG"), tight, name="a.jpg")


def test_refuses_truncated_jpeg() -> None:
    data = encode(halves(64, 48), "JPEG")

    with pytest.raises(InvalidImage, match=r"cut\.jpg is corrupt or truncated"):
        process_image(data[: len(data) // 2], LIMITS, name="cut.jpg")


def test_refuses_truncated_large_jpeg_read_in_draft_mode() -> None:
    data = encode(halves(400, 300), "JPEG")

    with pytest.raises(InvalidImage, match="truncated"):
        process_image(data[: len(data) * 2 // 3], LIMITS, name="cut.jpg")


def test_refuses_corrupt_png() -> None:
    data = bytearray(encode(halves(32, 32), "PNG"))
    data[60:80] = b"\x00" * 20

    with pytest.raises(InvalidImage, match=r"broken\.png is corrupt"):
        process_image(bytes(data), LIMITS, name="broken.png")


def test_refuses_pdf_named_png() -> None:
    with pytest.raises(InvalidImage, match=r"^x\.png is a PDF, not an image"):
        process_image(b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", LIMITS, name="x.png")


def test_refuses_text_file() -> None:
    with pytest.raises(InvalidImage, match=r"^notes\.jpg is a text file, not an image") as caught:
        process_image(b"label,file\ntile,a.jpg\n", LIMITS, name="notes.jpg")

    assert caught.value.details == {"file": "notes.jpg", "reason": "not_an_image"}


def test_refuses_empty_file() -> None:
    with pytest.raises(InvalidImage, match=r"^empty\.png is empty"):
        process_image(b"", LIMITS, name="empty.png")


def test_reduced_copy_has_longest_side_reduced_size() -> None:
    wide = process_image(encode(halves(80, 40), "JPEG"), LIMITS, name="wide.jpg")
    tall = process_image(encode(halves(40, 100), "PNG"), LIMITS, name="tall.png")

    assert wide.reduced is not None and tall.reduced is not None
    assert (wide.width, wide.height) == (80, 40)
    assert Image.open(io.BytesIO(wide.reduced)).size == (32, 16)
    assert Image.open(io.BytesIO(tall.reduced)).size == (13, 32)
    assert wide.reduced_format == tall.reduced_format == ImageFormat.JPEG
    reduced = Image.open(io.BytesIO(wide.reduced)).convert("RGB")
    assert near(reduced.getpixel((2, 8)), RED) and near(reduced.getpixel((29, 8)), BLUE)


def test_reduced_copy_keeps_transparency_as_png() -> None:
    image = halves(80, 40, "RGBA")
    image.putpixel((0, 0), (0, 0, 0, 0))
    processed = process_image(encode(image, "PNG"), LIMITS, name="alpha.png")

    assert processed.reduced is not None
    reduced = Image.open(io.BytesIO(processed.reduced))
    assert (processed.reduced_format, reduced.format, reduced.mode) == ("png", "PNG", "RGBA")
    assert reduced.size == (32, 16)


def test_reduced_copy_of_palette_gif_with_transparency_is_png() -> None:
    image = Image.new("P", (80, 40), 0)
    image.putpalette([*RED, *BLUE] + [0] * 762)
    image.paste(1, (40, 0, 80, 40))
    data = encode(image, "GIF", transparency=1)

    processed = process_image(data, LIMITS, name="anim.gif")

    assert processed.mode == "P"
    assert processed.reduced is not None
    reduced = Image.open(io.BytesIO(processed.reduced))
    assert (processed.reduced_format, reduced.mode, reduced.size) == ("png", "RGBA", (32, 16))
    assert reduced.getpixel((2, 8)) == (*RED, 255)
    assert reduced.getpixel((29, 8))[3] == 0


def test_reduced_copy_of_16_bit_grey_scales_values() -> None:
    values = np.full((40, 80), 65535, dtype=np.uint16)
    values[:, :40] = 0
    data = encode(Image.fromarray(values), "PNG")

    processed = process_image(data, LIMITS, name="depth.png")

    assert processed.mode.startswith("I")
    assert processed.reduced is not None
    reduced = Image.open(io.BytesIO(processed.reduced))
    assert reduced.mode == "L"
    assert reduced.getpixel((2, 8)) < 20 and reduced.getpixel((29, 8)) > 235


def test_applies_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to display
    data = encode(halves(40, 20), "JPEG", exif=exif.tobytes())

    processed = process_image(data, LIMITS, name="phone.jpg")

    assert (processed.width, processed.height) == (20, 40)
    assert processed.reduced is not None
    upright = Image.open(io.BytesIO(processed.reduced)).convert("RGB")
    assert upright.size == (16, 32)
    assert near(upright.getpixel((8, 2)), RED) and near(upright.getpixel((8, 29)), BLUE)


def test_large_jpeg_is_reduced_through_draft_mode() -> None:
    data = encode(halves(800, 600), "JPEG")

    processed = process_image(data, LIMITS, name="photo.jpg")

    assert (processed.width, processed.height) == (800, 600)
    assert processed.reduced is not None
    reduced = Image.open(io.BytesIO(processed.reduced)).convert("RGB")
    assert reduced.size == (32, 24)
    assert near(reduced.getpixel((3, 12)), RED) and near(reduced.getpixel((28, 12)), BLUE)


def test_thumbnail_is_jpeg_for_opaque_images() -> None:
    thumbnail = Image.open(io.BytesIO(make_thumbnail(encode(halves(80, 40), "PNG"), 16)))

    assert (thumbnail.format, thumbnail.size) == ("JPEG", (16, 8))


def test_thumbnail_is_webp_with_alpha_for_transparent_images() -> None:
    image = halves(80, 40, "RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 10, 10))

    thumbnail = Image.open(io.BytesIO(make_thumbnail(encode(image, "PNG"), 16)))

    assert (thumbnail.format, thumbnail.mode, thumbnail.size) == ("WEBP", "RGBA", (16, 8))
    assert thumbnail.getpixel((0, 0))[3] < 50


def test_thumbnail_is_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(halves(40, 20), "JPEG", exif=exif.tobytes())

    thumbnail = Image.open(io.BytesIO(make_thumbnail(data, 16))).convert("RGB")

    assert thumbnail.size == (8, 16)
    assert near(thumbnail.getpixel((4, 1)), RED)


def test_thumbnail_refuses_non_images() -> None:
    with pytest.raises(InvalidImage, match="PDF"):
        make_thumbnail(b"%PDF-1.4", 16)


def test_pillow_globals_stay_untouched() -> None:
    max_pixels = Image.MAX_IMAGE_PIXELS
    for data in (png_claiming(12_000, 12_000), encode(halves(64, 48), "JPEG")[:300]):
        with pytest.raises(InvalidImage):
            process_image(data, LIMITS, name="x")

    assert max_pixels == Image.MAX_IMAGE_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
