"""Safe image decoding, shared by the inference service, the trainer and the dataset builder.

Everything that turns user bytes into pixels goes through ``decode_image`` so that
corrupt, truncated, zero-size, non-image and decompression-bomb inputs fail the
same way everywhere: an ``ImageDecodeError`` whose message says what is wrong.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000
"""About 6300 x 6300: far above any page scan, far below a bomb's billions."""


class ImageDecodeError(ValueError):
    """The bytes are not a usable image; the message says why."""


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``data`` into an RGB image, fully loaded, or raise ``ImageDecodeError``."""
    if not data:
        raise ImageDecodeError("image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice that; make every bomb an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageDecodeError(f"image has no pixels ({width}x{height})")
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"image is {width}x{height} = {width * height} pixels, above the limit of {max_pixels}"
                )
            image.load()
            # Phone photos store the camera's orientation in EXIF instead of rotating pixels;
            # the model must see the page upright.
            image = ImageOps.exif_transpose(image)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not a recognised image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image rejected as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"image is corrupt or truncated: {exc}") from None
    return image.convert("RGB")
