"""Qwen2-VL (the reader, the tiny test model): the tokenizer's chat template, images as they are.

Qwen2-VL has no resolution modes: its processor resizes within min/max pixels, so
``OCROptions.resolution`` is ignored here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import Image

from ocrtune_inference.families import EnginePrompt, ServingFamily, register
from ocrtune_shared.families import family_named
from ocrtune_shared.ocr import OCROptions


@register
class Qwen2VLFamily(ServingFamily):
    family = family_named("qwen2_vl")

    def __init__(self, model_dir: Path) -> None:
        from transformers import AutoTokenizer

        # The tokenizer carries the chat template; the engine's own processor does the images.
        self._tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # The template runs jinja; a handful of instructions cover nearly all requests.
        self._render = lru_cache(maxsize=256)(self._render_uncached)

    def _render_uncached(self, instruction: str) -> str:
        return self.family.prompt_text(instruction, self._tokenizer.apply_chat_template)

    def prompt(self, image: Image.Image, options: OCROptions) -> EnginePrompt:
        return EnginePrompt(text=self._render(self.family.instruction(options.task, options.prompt)), image=image)

    def vllm_model_class(self) -> type:
        from vllm.model_executor.models.qwen2_vl import Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration
