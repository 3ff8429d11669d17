"""User bytes -> page images: one image, or each page of a PDF (pypdfium2)."""

from __future__ import annotations

from PIL import Image

from ocrtune_shared.errors import ErrorCode, ServiceError
from ocrtune_shared.images import ImageDecodeError, decode_image

PDF_MAGIC = b"%PDF-"


def is_pdf(data: bytes) -> bool:
    # The header may follow a little junk; readers accept it within the first KiB.
    return PDF_MAGIC in data[:1024]


def load_pages(data: bytes, *, max_pixels: int, max_pages: int, pdf_scale: float, where: str = "file") -> list[Image.Image]:
    """The page images in ``data``; a ``ServiceError`` (4xx) saying what is wrong otherwise."""
    if not data:
        raise ServiceError(422, ErrorCode.invalid_image, "the upload is empty (0 bytes)", where=where)
    if is_pdf(data):
        return _pdf_pages(data, max_pixels=max_pixels, max_pages=max_pages, scale=pdf_scale, where=where)
    try:
        return [decode_image(data, max_pixels=max_pixels)]
    except ImageDecodeError as exc:
        raise ServiceError(422, ErrorCode.invalid_image, str(exc), where=where) from None


def _pdf_pages(data: bytes, *, max_pixels: int, max_pages: int, scale: float, where: str) -> list[Image.Image]:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == 0:
            # PDFium parses a document without a page tree entry but refuses it with "success".
            raise ServiceError(422, ErrorCode.invalid_image, "PDF has no pages", where=where) from None
        raise ServiceError(422, ErrorCode.invalid_image, f"PDF is corrupt or unreadable: {exc}", where=where) from None
    try:
        count = len(pdf)
        if count == 0:
            raise ServiceError(422, ErrorCode.invalid_image, "PDF has no pages", where=where)
        if count > max_pages:
            raise ServiceError(
                413, ErrorCode.payload_too_large, f"PDF has {count} pages, above the limit of {max_pages}", where=where
            )
        pages = []
        for index in range(count):
            page = pdf[index]
            width, height = page.get_size()
            page_scale = scale
            if width * height * scale * scale > max_pixels:
                # Render huge pages smaller rather than refusing them: points are not pixels.
                page_scale = (max_pixels / max(width * height, 1)) ** 0.5
            try:
                pages.append(page.render(scale=page_scale).to_pil().convert("RGB"))
            except pdfium.PdfiumError as exc:
                raise ServiceError(
                    422, ErrorCode.invalid_image, f"PDF page {index + 1} cannot be rendered: {exc}", where=where
                ) from None
        return pages
    finally:
        pdf.close()
