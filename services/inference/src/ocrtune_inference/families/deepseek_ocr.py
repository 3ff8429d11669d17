"""DeepSeek-OCR (v1) and DeepSeek-OCR-2: prompts, resolution modes, the n-gram repetition guard.

Both are served from the ORIGINAL checkpoint layout (``model_type`` ``deepseek_vl_v2``);
vLLM's image processor (``DeepseekOCRProcessor``) does the tiling, steered per request
by ``mm_processor_kwargs``. Prompts are DeepSeek's own, without a chat template.

Resolution modes (DeepSeek-OCR's README):

=======  =========  ==========  =====  ===================
mode     base_size  image_size  crops  vision tokens (v1)
=======  =========  ==========  =====  ===================
tiny     512        512         no     64
small    640        640         no     100
base     1024       1024        no     256
large    1280       1280        no     400
gundam   1024       640         yes    256 + n x 100
=======  =========  ==========  =====  ===================

DeepSeek-OCR-2 has one global view (1024) and 768 px tiles: ``gundam`` (= ``auto``) tiles,
``base`` keeps only the global view; the other modes do not exist for it and are refused.

The repetition guard is DeepSeek's no-repeat n-gram rule (n-gram 30, window 90, table
cell tags whitelisted), as a vLLM logits processor that is ON for every request; a
request opts out with ``SamplingParams.extra_args={"ngram_guard": False}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from ocrtune_inference.families import EnginePrompt, ServingFamily, read_config, register
from ocrtune_shared.families import family_named
from ocrtune_shared.ocr import OCROptions, ResolutionMode

NGRAM_SIZE = 30
NGRAM_WINDOW = 90
# Table cells legitimately repeat (<td></td><td></td>...); DeepSeek whitelists their tokens.
NGRAM_WHITELIST_TOKENS = ("<td>", "</td>")

V1_MODES: dict[ResolutionMode, dict[str, Any]] = {
    ResolutionMode.tiny: {"base_size": 512, "image_size": 512, "crop_mode": False},
    ResolutionMode.small: {"base_size": 640, "image_size": 640, "crop_mode": False},
    ResolutionMode.base: {"base_size": 1024, "image_size": 1024, "crop_mode": False},
    ResolutionMode.large: {"base_size": 1280, "image_size": 1280, "crop_mode": False},
    ResolutionMode.gundam: {"base_size": 1024, "image_size": 640, "crop_mode": True},
}
V2_MODES: dict[ResolutionMode, dict[str, Any]] = {
    ResolutionMode.base: {"crop_mode": False},
    ResolutionMode.gundam: {"crop_mode": True},
}


class UnsupportedResolution(ValueError):
    """A resolution mode the served model does not have (the API answers 422)."""


def _logits_processor_fqcn() -> str:
    return f"{__name__}:DeepseekNoRepeatNGram"


class _DeepseekFamily(ServingFamily):
    modes: dict[ResolutionMode, dict[str, Any]]
    default_mode: ResolutionMode = ResolutionMode.gundam

    def __init__(self, model_dir: Path) -> None:
        self.config = read_config(model_dir)

    def prompt(self, image: Image.Image, options: OCROptions) -> EnginePrompt:
        instruction = self.family.instruction(options.task, options.prompt)
        return EnginePrompt(
            text=self.family.prompt_text(instruction), image=image,
            mm_processor_kwargs=self.processor_kwargs(options.resolution),
        )

    def processor_kwargs(self, mode: ResolutionMode) -> dict[str, Any]:
        mode = self.default_mode if mode is ResolutionMode.auto else mode
        if mode not in self.modes:
            known = ", ".join(m.value for m in (ResolutionMode.auto, *self.modes))
            raise UnsupportedResolution(f"{self.name} has no resolution mode {mode.value!r} (it has: {known})")
        return dict(self.modes[mode])

    def engine_kwargs(self) -> dict[str, Any]:
        from ocrtune_inference import vllm_cpu_moe

        return {"logits_processors": [_logits_processor_fqcn()], **vllm_cpu_moe.engine_kwargs()}


@register
class DeepseekOCRFamily(_DeepseekFamily):
    family = family_named("deepseek_ocr")
    modes = V1_MODES

    def vllm_model_class(self) -> type:
        from vllm.model_executor.models.deepseek_ocr import DeepseekOCRForCausalLM

        return DeepseekOCRForCausalLM


@register
class DeepseekOCR2Family(_DeepseekFamily):
    family = family_named("deepseek_ocr2")
    modes = V2_MODES

    def vllm_model_class(self) -> type:
        from vllm.model_executor.models.deepseek_ocr2 import DeepseekOCR2ForCausalLM

        return DeepseekOCR2ForCausalLM


def _make_logits_processor_class() -> type:
    """vLLM's DeepSeek n-gram processor, but on unless a request opts out.

    vLLM's own ``NGramPerReqLogitsProcessor`` runs only for requests that carry
    ``extra_args={"ngram_size": ...}``; DeepSeek-OCR loops without it, so ours defaults on.
    """
    from vllm.model_executor.models.deepseek_ocr import NGramPerReqLogitsProcessor, NoRepeatNGramLogitsProcessor

    class DeepseekNoRepeatNGram(NGramPerReqLogitsProcessor):
        def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
            super().__init__(vllm_config, device, is_pin_memory)
            self._whitelist = _whitelist_ids(vllm_config)

        @classmethod
        def validate_params(cls, params: Any) -> None:
            extra = params.extra_args or {}
            if extra.get("ngram_guard", True) and "ngram_size" in extra:
                super().validate_params(params)

        def new_req_logits_processor(self, params: Any) -> Any:
            extra = params.extra_args or {}
            if not extra.get("ngram_guard", True):
                return None
            return NoRepeatNGramLogitsProcessor(
                ngram_size=int(extra.get("ngram_size", NGRAM_SIZE)),
                window_size=int(extra.get("window_size", NGRAM_WINDOW)),
                whitelist_token_ids=set(extra.get("whitelist_token_ids", self._whitelist)),
            )

    DeepseekNoRepeatNGram.__module__ = __name__
    return DeepseekNoRepeatNGram


def _whitelist_ids(vllm_config: Any) -> set[int]:
    from vllm.tokenizers import cached_tokenizer_from_config

    vocab = cached_tokenizer_from_config(vllm_config.model_config).get_vocab()
    return {vocab[token] for token in NGRAM_WHITELIST_TOKENS if token in vocab}


def __getattr__(name: str) -> Any:
    # Built on first use: importing vLLM's model module is heavy, and this module is also
    # imported where vLLM is absent (family selection, tests of prompts).
    if name == "DeepseekNoRepeatNGram":
        cls = _make_logits_processor_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
