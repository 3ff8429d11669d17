"""The tiny checkpoint loads in transformers and in vLLM from the same files, and both agree."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from ocrtune_devkit.charset import ALL_CHARS


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def _prompt(processor) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Free OCR."}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def test_every_charset_character_is_one_token_and_round_trips(processor):
    tokenizer = processor.tokenizer
    for ch in ALL_CHARS:
        ids = tokenizer.encode(ch, add_special_tokens=False)
        assert len(ids) == 1, f"{ch!r} is {len(ids)} tokens"
    text = "发票金额：1234元，己已巳。ASCII too"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    assert tokenizer.eos_token == "<|im_end|>"


def test_checkpoint_is_reused_from_the_cache(tiny_model_dir):
    from ocrtune_devkit.tiny_models import build_tiny_qwen2_vl

    stamp = (tiny_model_dir / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_qwen2_vl(tiny_model_dir.parent) == tiny_model_dir
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime_ns == stamp


def _transformers_greedy(tiny_model_dir, processor, images, max_new_tokens=6) -> list[list[int]]:
    from transformers import Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    prompt = _prompt(processor)
    outputs = []
    for image in images:
        inputs = processor(text=[prompt], images=[image], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        outputs.append(out[0, inputs["input_ids"].shape[1]:].tolist())
    return outputs


VLLM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from ocrtune_devkit.synthetic import make_samples

    if __name__ == "__main__":  # vLLM spawns workers: the guard keeps them from re-running this
        from transformers import AutoProcessor
        from vllm import LLM, SamplingParams

        model_dir, count, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        processor = AutoProcessor.from_pretrained(model_dir)
        prompt = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Free OCR."}]}],
            add_generation_prompt=True,
        )
        llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, max_model_len=1024,
                  limit_mm_per_prompt={"image": 1}, enable_lora=True, max_lora_rank=16)
        requests = [{"prompt": prompt, "multi_modal_data": {"image": s.image()}} for s in make_samples(count, seed=1234)]
        outs = llm.generate(requests, SamplingParams(max_tokens=max_tokens, temperature=0.0))
        print("RESULT " + json.dumps([list(o.outputs[0].token_ids) for o in outs]))
    """
)


def test_transformers_and_vllm_generate_the_same_tokens(tiny_model_dir, processor, synthetic_samples, tmp_path):
    images = [s.image() for s in synthetic_samples[:3]]
    expected = _transformers_greedy(tiny_model_dir, processor, images)
    assert all(len(ids) > 0 for ids in expected)

    script = tmp_path / "vllm_generate.py"
    script.write_text(VLLM_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tiny_model_dir), "3", "6"],
        capture_output=True, text=True, timeout=600,
    )
    result_lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and result_lines, done.stderr[-3000:]
    assert json.loads(result_lines[-1][len("RESULT "):]) == expected
