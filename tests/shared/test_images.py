import io

import pytest
from PIL import Image

from ocrtune_shared.images import ImageDecodeError, decode_image


def _png(size=(32, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, format="PNG")
    return buffer.getvalue()


def test_decodes_a_good_image_to_rgb():
    image = decode_image(_png())
    assert image.mode == "RGB" and image.size == (32, 16)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "empty"),
        (b"hello, I am text", "not a recognised image"),
        (_png()[:60], "corrupt or truncated"),
        (b"%PDF-1.4\n", "not a recognised image"),
    ],
)
def test_bad_bytes_fail_with_a_reason(data, fragment):
    with pytest.raises(ImageDecodeError, match=fragment):
        decode_image(data)


def test_image_bomb_is_refused_before_decoding():
    # A 20000 x 20000 PNG compresses to a few hundred KB but would take 1.2 GB decoded.
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")
    with pytest.raises(ImageDecodeError, match="pixels|bomb"):
        decode_image(buffer.getvalue())
    with pytest.raises(ImageDecodeError, match="above the limit"):
        decode_image(_png((100, 100)), max_pixels=5000)


def test_phone_photo_is_turned_upright_by_its_exif_orientation():
    # A camera held sideways stores the pixels landscape and says "rotate 90" in EXIF (tag 0x0112 = 6).
    image = Image.new("RGB", (40, 10), "white")
    image.paste((0, 0, 0), (0, 0, 10, 10))  # a black square at the left end
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    upright = decode_image(buffer.getvalue())
    assert upright.size == (10, 40)
    assert sum(upright.getpixel((5, 5))) < 100  # rotated 90 clockwise: the left end is now the top
    assert sum(upright.getpixel((5, 35))) > 600
