"""Qwen2-VL (and the tiny test model): the processor's chat template, images as they are.

Qwen2-VL has no resolution modes: its processor resizes within min/max pixels, so
``OCROptions.resolution`` is ignored here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from ocrtune_inference.families import EnginePrompt, ModelFamily, register
from ocrtune_shared.ocr import OCROptions, OCRTask

TASK_PROMPTS = {
    OCRTask.free_ocr: "Free OCR.",
    OCRTask.markdown: "Convert the document to markdown.",
}


@register
class Qwen2VLFamily(ModelFamily):
    name = "qwen2_vl"

    @classmethod
    def matches(cls, config: dict[str, Any]) -> bool:
        return config.get("model_type") == "qwen2_vl" or "Qwen2VLForConditionalGeneration" in (
            config.get("architectures") or []
        )

    def __init__(self, model_dir: Path) -> None:
        from transformers import AutoTokenizer

        # The tokenizer carries the chat template; the engine's own processor does the images.
        self._tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # The template runs jinja; a handful of instructions cover nearly all requests.
        self._render = lru_cache(maxsize=256)(self._render_uncached)

    def _render_uncached(self, instruction: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
        return self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prompt(self, image: Image.Image, options: OCROptions) -> EnginePrompt:
        return EnginePrompt(text=self._render(options.prompt or TASK_PROMPTS[options.task]), image=image)

    def vllm_model_class(self) -> type:
        from vllm.model_executor.models.qwen2_vl import Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration
