"""DeepSeek-OCR-2 adapters: transformers + peft vs vLLM on the same weights and the same image.

One reduced checkpoint (full-size vision towers as vLLM builds them, a 2-layer MoE language
model) is loaded by both engines from one weights file. A LoRA is trained on the tiny native
checkpoint (same language model), published through the trainer's conversion and served by
vLLM; both engines must produce the same greedy tokens (and top log-probs within float32
noise) with and without it, and it must change the output.

Routed-expert LoRA cannot run on vLLM's CPU build (``ocrtune_inference.vllm_cpu_moe``): the
notebook-layout adapter is checked numerically in ``test_adapter_layouts.py`` and served in
``test_notebook_adapter_with_experts_served_on_gpu`` where a GPU is present.

Costs on 2 shared cores: ~1-3 min (one vLLM engine, two full-size vision passes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

PROMPT = "<image>\nFree OCR."  # the family's prompt, trained = served (ocrtune_shared.families)
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def image():
    from ocrtune_devkit.synthetic import make_samples

    return make_samples(1, seed=3)[0].image()


def _lm_lora_config(rank: int = 8):
    from peft import LoraConfig

    from ocrtune_devkit.deepseek import LM_LORA_REGEX

    return LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=LM_LORA_REGEX)


@pytest.fixture(scope="module")
def trained_adapter(tiny_deepseek_ocr2, tmp_path_factory) -> Path:
    """A few real optimizer steps on synthetic lines, prompt masked, LoRA on the language model only."""
    from peft import get_peft_model
    from transformers import AutoProcessor, DeepseekOcr2ForConditionalGeneration

    from ocrtune_devkit.synthetic import make_samples
    from ocrtune_trainer.families.deepseek_ocr import DeepseekOcr2Collator

    torch.manual_seed(0)
    processor = AutoProcessor.from_pretrained(tiny_deepseek_ocr2)
    model = DeepseekOcr2ForConditionalGeneration.from_pretrained(tiny_deepseek_ocr2, dtype=torch.float32)
    model = get_peft_model(model, _lm_lora_config())
    assert not any("vision" in n or "sam" in n for n, p in model.named_parameters() if p.requires_grad)
    collator = DeepseekOcr2Collator(processor, PROMPT)
    rows = [{"image": s.image(), "text": s.text} for s in make_samples(4, seed=11)]
    batch = collator(rows)
    assert (batch["labels"][:, : batch["input_ids"].shape[1] - 12] == -100).any()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    losses = []
    model.train()
    for _ in range(4):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    out = tmp_path_factory.mktemp("trained") / "adapter"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def published_adapter(trained_adapter, tmp_path_factory) -> Path:
    """The trainer's publish-time conversion, on a copy of the PEFT files."""
    from ocrtune_shared.adapter_layouts import read_safetensors, unservable_modules
    from ocrtune_shared.families import convert_for_serving, family_named

    folder = tmp_path_factory.mktemp("published")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(trained_adapter / name, folder / name)
    native_names = list(read_safetensors(folder / "adapter_model.safetensors"))
    # As trained, no weight lands on a vLLM module: served as is it would change nothing.
    assert len(unservable_modules(native_names)) == len(native_names) // 2
    assert "q_proj" in convert_for_serving(family_named("deepseek_ocr2"), folder, folder)
    assert unservable_modules(list(read_safetensors(folder / "adapter_model.safetensors"))) == []
    return folder


@pytest.fixture(scope="module")
def transformers_runs(reduced_deepseek_ocr2, trained_adapter, image) -> dict[str, tuple[list[int], list[torch.Tensor]]]:
    """Greedy tokens and per-step log-probs of transformers, base and with the (unconverted) adapter."""
    from transformers import AutoProcessor, DeepseekOcr2ForConditionalGeneration

    from ocrtune_trainer.evaluation import load_adapter_verified

    native = reduced_deepseek_ocr2.native
    processor = AutoProcessor.from_pretrained(native)
    model = DeepseekOcr2ForConditionalGeneration.from_pretrained(native, dtype=torch.float32).eval()
    inputs = processor(images=image, text=PROMPT, return_tensors="pt")
    with torch.no_grad():
        # The vision towers carry no LoRA: encode the image once, decode the language model twice.
        features = model.model.get_image_features(
            pixel_values=inputs["pixel_values"], num_local_patches=inputs["num_local_patches"]
        ).pooler_output
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        mask = (inputs["input_ids"] == model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
        prompt_embeds = embeds.masked_scatter(mask, torch.cat(features).to(embeds.dtype))
    peft_model = load_adapter_verified(model, trained_adapter)
    runs = {}
    with torch.no_grad():
        with peft_model.disable_adapter():
            runs["base"] = _greedy(peft_model, prompt_embeds)
        runs["adapter"] = _greedy(peft_model, prompt_embeds)
    return runs


def _greedy(model, prompt_embeds: torch.Tensor) -> tuple[list[int], list[torch.Tensor]]:
    embeds, tokens, logprobs = prompt_embeds, [], []
    embedding = model.get_input_embeddings()
    for _ in range(MAX_TOKENS):
        logits = model(inputs_embeds=embeds).logits[0, -1]
        step = logits.log_softmax(-1)
        token = int(step.argmax())
        tokens.append(token)
        logprobs.append(step)
        embeds = torch.cat([embeds, embedding(torch.tensor([[token]]))], dim=1)
    return tokens, logprobs


@pytest.fixture(scope="module")
def vllm_engine(reduced_deepseek_ocr2):
    from vllm import LLM

    from ocrtune_inference.families import family_for

    family = family_for(reduced_deepseek_ocr2.vllm)
    assert family.name == "deepseek_ocr2"
    llm = LLM(
        model=str(reduced_deepseek_ocr2.vllm),
        dtype="float32",
        enforce_eager=True,
        max_model_len=2048,
        max_num_seqs=4,
        enable_lora=True,
        max_loras=2,
        max_lora_rank=16,
        limit_mm_per_prompt={"image": 1},
        **family.engine_kwargs(),
    )
    yield llm, family
    llm.llm_engine.engine_core.shutdown()


def test_converted_adapter_changes_vllm_exactly_as_transformers(vllm_engine, published_adapter, transformers_runs, image):
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    from ocrtune_shared.ocr import OCROptions

    llm, family = vllm_engine
    prompt = family.prompt(image, OCROptions())
    assert prompt.text == "<image>\nFree OCR."
    request = {"prompt": PROMPT, "multi_modal_data": {"image": image}, "mm_processor_kwargs": prompt.mm_processor_kwargs}
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, logprobs=5, extra_args={"ngram_guard": False})
    lora = LoRARequest("trained", 1, str(published_adapter))
    # One batch, base and adapter rows mixed: the per-request switch the product promises.
    base, adapted = llm.generate([request, request], params, lora_request=[None, lora])

    for run, out in (("base", base), ("adapter", adapted)):
        hf_tokens, hf_logprobs = transformers_runs[run]
        assert list(out.outputs[0].token_ids) == hf_tokens, run
        for step, lp in enumerate(out.outputs[0].logprobs):
            for token, value in lp.items():
                assert abs(value.logprob - float(hf_logprobs[step][token])) < 2e-3, (run, step, token)
    # The adapter does something, in both engines alike.
    assert transformers_runs["adapter"][0] != transformers_runs["base"][0] or any(
        abs(float(a.max() - b.max())) > 1e-2 for a, b in zip(transformers_runs["adapter"][1], transformers_runs["base"][1], strict=True)
    )
    assert list(adapted.outputs[0].token_ids) != list(base.outputs[0].token_ids) or any(
        abs(next(iter(a.values())).logprob - next(iter(b.values())).logprob) > 1e-2
        for a, b in zip(adapted.outputs[0].logprobs, base.outputs[0].logprobs, strict=True)
    )


def test_resolution_mode_per_request_on_a_wide_image(vllm_engine, image):
    """``base`` (one global view, no tiles) on an image wider than a tile: vLLM 0.32 unpatched kills the engine."""
    from vllm import SamplingParams

    from ocrtune_shared.ocr import OCROptions

    llm, family = vllm_engine
    wide = image.resize((1400, 175))
    prompt = family.prompt(wide, OCROptions(resolution="base"))
    (out,) = llm.generate(prompt.as_vllm(), SamplingParams(temperature=0.0, max_tokens=2))
    image_token = llm.get_tokenizer().convert_tokens_to_ids("<image>")
    assert out.prompt_token_ids.count(image_token) == 16 * 16 + 1
    assert len(out.outputs[0].token_ids) == 2


@pytest.fixture(scope="module")
def looping_adapter(tiny_deepseek_ocr2, tmp_path_factory) -> Path:
    """A LoRA taught to repeat a cycle of tokens forever: the loop DeepSeek-OCR falls into on repeated text."""
    from peft import get_peft_model
    from transformers import AutoTokenizer, DeepseekOcr2ForConditionalGeneration

    from ocrtune_shared.adapter_layouts import convert_adapter_folder

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_deepseek_ocr2)
    model = get_peft_model(
        DeepseekOcr2ForConditionalGeneration.from_pretrained(tiny_deepseek_ocr2, dtype=torch.float32),
        _lm_lora_config(),
    )
    prompt = tokenizer(LOOP_PROMPT)["input_ids"]
    sequence = torch.tensor([prompt + tokenizer("一二三十干千于", add_special_tokens=False)["input_ids"] * 30])
    labels = sequence.clone()
    labels[0, : len(prompt)] = -100
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(30):
        model(input_ids=sequence, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    trained = tmp_path_factory.mktemp("loop") / "peft"
    model.save_pretrained(trained)
    convert_adapter_folder(trained, trained.parent / "served")
    return trained.parent / "served"


LOOP_PROMPT = "Free OCR. "


def test_repetition_guard_stops_a_loop(vllm_engine, looping_adapter):
    """Unguarded, the adapter loops; the default guard forbids any 30-gram repeat within 90 tokens."""
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    from ocrtune_inference.families.deepseek_ocr import NGRAM_SIZE, NGRAM_WINDOW

    llm, _ = vllm_engine
    lora = LoRARequest("loop", 2, str(looping_adapter))
    unguarded, guarded = llm.generate(
        [LOOP_PROMPT, LOOP_PROMPT],
        [
            SamplingParams(temperature=0.0, max_tokens=160, ignore_eos=True, extra_args={"ngram_guard": False}),
            SamplingParams(temperature=0.0, max_tokens=160, ignore_eos=True),
        ],
        lora_request=[lora, lora],
    )
    loop = list(unguarded.outputs[0].token_ids)
    assert _repeats(loop, NGRAM_SIZE, NGRAM_WINDOW), loop
    assert not _repeats(list(guarded.outputs[0].token_ids), NGRAM_SIZE, NGRAM_WINDOW)


def _repeats(tokens: list[int], n: int, window: int) -> bool:
    """Whether an n-gram recurs starting at most ``window - n + 1`` tokens after itself (what the guard bans)."""
    last: dict[tuple[int, ...], int] = {}
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i : i + n])
        if gram in last and i - last[gram] <= window - n + 1:
            return True
        last[gram] = i
    return False


GPU_TOP = 5
GPU_LOGPROB_TOL = 1.0
"""Largest first-step log-probability difference between the engines on one route. bf16 on both
sides, different kernels (FlashAttention 3, fused MoE, Triton LoRA vs eager), random weights:
0.35-0.56 nats measured on the H200 (2026-12-06) on routes whose 12 greedy tokens agreed. An
adapter moves the first step much further (its top-5 shares no token with the base's)."""


def hf_greedy_runs(native: Path, peft_folders: dict[str, Path], image, device: str) -> dict:
    """transformers + peft in bf16: greedy tokens and each step's top-k log-probabilities per route.

    Routes: ``base`` and each adapter (loaded unconverted, as trained), each on a fresh base.
    """
    from transformers import AutoProcessor, DeepseekOcr2ForConditionalGeneration

    from ocrtune_trainer.evaluation import load_adapter_verified

    processor = AutoProcessor.from_pretrained(native)
    inputs = processor(images=image, text=PROMPT, return_tensors="pt").to(device)
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    runs = {}
    for name, folder in peft_folders.items():
        model = DeepseekOcr2ForConditionalGeneration.from_pretrained(native, dtype=torch.bfloat16).to(device).eval()
        peft_model = load_adapter_verified(model, folder)
        runs[name] = _greedy_bf16(peft_model, inputs)
        if "base" not in runs:
            with peft_model.disable_adapter():
                runs["base"] = _greedy_bf16(peft_model, inputs)
        del model, peft_model
    return runs


def _greedy_bf16(model, inputs) -> tuple[list[int], list[dict[int, float]]]:
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=MAX_TOKENS, do_sample=False, output_logits=True,
                             return_dict_in_generate=True)
    tokens = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    steps = []
    for logits in out.logits:
        top = logits[0].float().log_softmax(-1).topk(GPU_TOP)
        steps.append(dict(zip(top.indices.tolist(), top.values.tolist(), strict=True)))
    return tokens, steps


def _close(a: tuple[list[int], list[dict[int, float]]], b: tuple[list[int], list[dict[int, float]]]) -> str | None:
    """vLLM's ``check_logprobs_close``: equal greedy tokens, or at the first difference each token in
    the other's top-k; and the first steps within ``GPU_LOGPROB_TOL``. None if close, else why not."""
    (tokens_a, steps_a), (tokens_b, steps_b) = a, b
    first = _moved(steps_a[0], steps_b[0])
    if first > GPU_LOGPROB_TOL:
        return f"first step: max |logprob diff| {first:.3f} over shared top-{GPU_TOP} tokens"
    for i, (x, y) in enumerate(zip(tokens_a, tokens_b, strict=False)):
        if x != y:
            if x not in steps_b[i] or y not in steps_a[i]:
                return f"step {i}: {x} vs {y}, not in each other's top {GPU_TOP}"
            break
    return None


def _moved(a: dict[int, float], b: dict[int, float]) -> float:
    """How far an adapter moves the first step: the largest log-probability change over shared top tokens."""
    shared = a.keys() & b.keys()
    return max((abs(a[t] - b[t]) for t in shared), default=float("inf")) if len(shared) >= 2 else float("inf")


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="routed-expert LoRA runs in vLLM on a GPU only")
def test_notebook_adapter_with_experts_served_on_gpu(reduced_deepseek_ocr2, tmp_path, image):
    """GPU: python -m pytest -m slow tests/deepseek/test_vllm_parity.py -k notebook (vLLM CUDA build).

    Two adapters in the reference notebook's layout (fused-expert LoRA by ``target_parameters``),
    converted as the trainer publishes them: ``nb`` (attention + MLP + routed experts) and ``ex``
    (routed experts ONLY: whatever it changes, expert LoRA changed). Served by vLLM in ONE batch
    with a base request, each must match transformers + peft with the unconverted adapter
    (tie-aware, see ``_close``), and each must move the output far more than the tolerance.
    """
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from ocrtune_devkit.deepseek import make_random_adapter
    from ocrtune_shared.adapter_layouts import convert_adapter_folder

    native = reduced_deepseek_ocr2.native
    peft_folders = {
        "nb": make_random_adapter(native, tmp_path / "nb", experts=True, seed=2),
        # Larger factors: the reduced model has one MoE layer, and at the default scale experts alone
        # moved its first step by 0.08 nats (transformers, bf16, CPU), under the tolerance.
        "ex": make_random_adapter(native, tmp_path / "ex", experts=True, linear=False, seed=3, scale=3.0),
    }
    for name, folder in peft_folders.items():
        convert_adapter_folder(folder, tmp_path / f"served-{name}")
    hf = hf_greedy_runs(native, peft_folders, image, "cuda")
    torch.cuda.empty_cache()
    # bfloat16: vLLM's Triton LoRA kernels take fp16/bf16 only (lora_shrink_op asserts it; float32
    # failed there on the H200, 2026-12-02), so transformers decodes in bfloat16 on the GPU too.
    llm = LLM(model=str(reduced_deepseek_ocr2.vllm), dtype="bfloat16", enable_lora=True, max_lora_rank=16,
              max_loras=2, max_model_len=2048, limit_mm_per_prompt={"image": 1}, gpu_memory_utilization=0.5)
    request = {"prompt": PROMPT, "multi_modal_data": {"image": image}}
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, logprobs=GPU_TOP, extra_args={"ngram_guard": False})
    routes = ["base", "nb", "ex"]
    loras = [None, LoRARequest("nb", 1, str(tmp_path / "served-nb")), LoRARequest("ex", 2, str(tmp_path / "served-ex"))]
    outputs = llm.generate([request] * 3, params, lora_request=loras)  # one batch: base and both adapters mixed
    served = {
        route: (list(out.outputs[0].token_ids),
                [{t: lp.logprob for t, lp in step.items() if lp.rank is not None and lp.rank <= GPU_TOP}
                 for step in out.outputs[0].logprobs])
        for route, out in zip(routes, outputs, strict=True)
    }
    report = {
        route: {
            "hf": hf[route][0], "vllm": served[route][0], "mismatch": _close(served[route], hf[route]),
            "first_step_to_own_route": _moved(served[route][1][0], hf[route][1][0]),
            "first_step_to_other_routes": min(_moved(served[route][1][0], hf[o][1][0]) for o in routes if o != route),
            "adapter_moved_hf_first_step": _moved(hf[route][1][0], hf["base"][1][0]),
        }
        for route in routes
    }
    print(json.dumps(report, indent=1))  # the figures, also when an assertion below fails
    for route in routes:
        assert report[route]["mismatch"] is None, (route, report[route])
        # Each route's answer is its own: far nearer transformers' same route than any other route.
        assert report[route]["first_step_to_other_routes"] > 2 * report[route]["first_step_to_own_route"], route
    for route in ("nb", "ex"):
        # Not blind: each adapter (ex: routed experts alone) moves transformers' output beyond the tolerance.
        assert report[route]["adapter_moved_hf_first_step"] > GPU_LOGPROB_TOL, (route, report[route])
    assert json.loads((tmp_path / "served-ex" / "adapter_config.json").read_text())["target_modules"]
