"""The full-size DeepSeek-OCR-2 stand-in (GPU benchmarks): real shapes, a tokenizer padded to the real vocabulary.

Checked without building its 6.8 GB of weights: the model is instantiated on the meta device.
"""

from __future__ import annotations

import torch


def test_padded_tokenizer_keeps_encodings_and_decodes_every_id():
    from ocrtune_devkit.charset import ALL_CHARS
    from ocrtune_devkit.tokenizer import build_tokenizer

    plain = build_tokenizer(ALL_CHARS, ["<s>", "</s>"])
    padded = build_tokenizer(ALL_CHARS, ["<s>", "</s>"], size=4096)
    assert padded.get_vocab_size() == 4096
    text = "合计金额 128.50 元"
    assert padded.encode(text).ids == plain.encode(text).ids
    filler = plain.get_vocab_size() - 2  # first id after the charset, before the special tokens
    assert padded.decode([filler]) == "unused0"
    assert padded.token_to_id("</s>") == 4095


def test_full_spec_has_the_real_shapes():
    from transformers import DeepseekOcr2ForConditionalGeneration

    from ocrtune_devkit.deepseek import FULL_SPEC, native_config, original_layout_config

    config, tokenizer = native_config(FULL_SPEC)
    assert config.text_config.vocab_size == 129280 == len(tokenizer)
    assert config.text_config.n_routed_experts == 64 and config.text_config.num_hidden_layers == 12
    with torch.device("meta"):
        model = DeepseekOcr2ForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    assert 3.3e9 < params < 3.5e9, params  # docs/models.md: ~3.4 B (6.8 GB in bf16)
    vllm_view = original_layout_config(
        "DeepseekOCR2ForCausalLM", FULL_SPEC["lm"], 129280, tokenizer, projector_input_dim=896, dtype="bfloat16"
    )
    assert vllm_view["torch_dtype"] == vllm_view["language_config"]["torch_dtype"] == "bfloat16"
    assert vllm_view["language_config"]["hidden_size"] == 1280
